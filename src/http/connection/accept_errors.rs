//! What the acceptor does when `accept` fails, so that running out of descriptors is visible to
//! clients and operators and ends by itself.
//!
//! Out of descriptors (EMFILE, ENFILE), the waiting connection stays in the listen backlog and the
//! listener stays readable: a plain retry spins, and the client hangs until it gives up. Instead,
//! as libuv does, one descriptor is held in reserve: it is given up to take the waiting
//! connections one by one, answer each `503` and close it, and is then taken back. The listener is
//! then empty, so the acceptor sleeps until the next client instead of spinning; once connections
//! close, the next ones are served as usual. Each refused connection is counted in
//! `llamactl_accept_errors_total`, and the condition is logged at most once a minute.

use super::open_files;
use crate::metrics::{AcceptError, Metrics};
use futures_util::FutureExt;
use std::fs::File;
use std::io;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// The answer a refused connection gets before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 66\r\n\
\r\n\
{\"error\":\"llamactl is out of file descriptors; try again shortly\"}";

/// How long the acceptor pauses after a failure it cannot answer (no reserve descriptor, or a
/// cause other than descriptors): long enough not to spin, short enough to resume promptly.
const PAUSE: Duration = Duration::from_millis(50);

/// The most connections refused in one go, so a flood cannot keep the acceptor here.
const MOST_REFUSED_AT_ONCE: usize = 1024;

/// How often the condition is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The acceptor's handling of failed accepts: the reserve descriptor, the count and the log.
#[derive(Debug)]
pub(crate) struct AcceptErrors {
    reserve: Option<File>,
    metrics: Metrics,
    logged: Option<Instant>,
    /// Failures since the last message.
    unlogged: u64,
}

/// A descriptor that can be given up when none is left (`/dev/null`: always there, costs nothing).
fn open_reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Why `err` happened, or `None` if the connection itself was lost before it was taken (nothing
/// is wrong with llamactl then).
fn classify(err: &io::Error) -> Option<AcceptError> {
    match err.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => Some(AcceptError::OutOfDescriptors),
        Some(libc::ENOBUFS | libc::ENOMEM) => Some(AcceptError::OutOfMemory),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM) => None,
        _ => Some(AcceptError::Other),
    }
}

/// Answers `stream` 503 and closes it; best effort, without waiting.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(REFUSAL);
    // A request already received but left unread would make the close a reset, which can lose
    // the answer on the client's side: read what is there first.
    let mut unread = [0u8; 4096];
    for _ in 0..4 {
        match stream.try_read(&mut unread) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

impl AcceptErrors {
    /// Takes the reserve descriptor; failures are counted in `metrics`.
    pub(crate) fn new(metrics: Metrics) -> Self {
        AcceptErrors {
            reserve: open_reserve(),
            metrics,
            logged: None,
            unlogged: 0,
        }
    }

    /// After a successful accept: takes the reserve back if it could not be taken before.
    pub(crate) fn accepted(&mut self) {
        if self.reserve.is_none() {
            self.reserve = open_reserve();
        }
    }

    /// Handles `err` from accepting on `listener`: refuses what waits there if descriptors ran
    /// out, or pauses; returns once the acceptor may accept again.
    pub(crate) async fn failed(&mut self, listener: &TcpListener, err: io::Error) {
        let Some(why) = classify(&err) else {
            return;
        };
        let refused = match why {
            AcceptError::OutOfDescriptors => self.refuse_waiting(listener),
            _ => 0,
        };
        if refused == 0 {
            self.metrics.accept_error(why);
            self.log(why, &err, 1);
            tokio::time::sleep(PAUSE).await;
        } else {
            self.log(why, &err, refused);
        }
    }

    /// Gives up the reserve descriptor to answer and close the connections waiting on
    /// `listener`; how many were refused (0 without a reserve).
    fn refuse_waiting(&mut self, listener: &TcpListener) -> u64 {
        let Some(reserve) = self.reserve.take() else {
            return 0;
        };
        drop(reserve);
        let mut refused = 0;
        for _ in 0..MOST_REFUSED_AT_ONCE {
            // Only what is waiting now: `None` means the backlog is empty.
            match listener.accept().now_or_never() {
                Some(Ok((stream, _))) => {
                    refuse(stream);
                    self.metrics.accept_error(AcceptError::OutOfDescriptors);
                    refused += 1;
                }
                Some(Err(_)) | None => break,
            }
        }
        // Another thread may have taken the freed descriptor: then the next accept retakes it.
        self.reserve = open_reserve();
        refused
    }

    /// Logs the condition at most once a minute, with how many failures the silence covered.
    fn log(&mut self, why: AcceptError, err: &io::Error, failures: u64) {
        self.unlogged += failures;
        if self.logged.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        let failures = std::mem::take(&mut self.unlogged);
        self.logged = Some(Instant::now());
        match why {
            AcceptError::OutOfDescriptors => tracing::warn!(
                error = %err,
                open_files = open_files::current(),
                refused = failures,
                "out of file descriptors: new connections are answered 503 and closed until \
                 some close (next message in a minute at most); raise the open-file limit \
                 (LimitNOFILE= in a systemd unit)"
            ),
            _ => tracing::warn!(
                error = %err,
                failures,
                "cannot accept connections; retrying (next message in a minute at most)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_503_with_a_json_error() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let error: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(error["error"]
            .as_str()
            .unwrap()
            .contains("file descriptors"));
    }

    #[test]
    fn running_out_of_descriptors_is_told_apart_from_a_lost_connection() {
        let of = |code| classify(&io::Error::from_raw_os_error(code));
        assert_eq!(of(libc::EMFILE), Some(AcceptError::OutOfDescriptors));
        assert_eq!(of(libc::ENFILE), Some(AcceptError::OutOfDescriptors));
        assert_eq!(of(libc::ENOBUFS), Some(AcceptError::OutOfMemory));
        assert_eq!(of(libc::ECONNABORTED), None);
        assert_eq!(of(libc::EINVAL), Some(AcceptError::Other));
    }
}
