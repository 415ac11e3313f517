//! A client connection's socket with deadlines: for the next request's head, for idling between
//! requests, and for a client that stops reading its answer.
//!
//! hyper's own `header_read_timeout` (1.x) is armed whenever it starts waiting for a head: when the
//! connection opens and again as soon as an answer is done. One value would then bound both the
//! head and the idle time between requests. Here the two are apart, as in nginx and Go: until the
//! first byte of a later request a kept-alive connection may idle for `keep_alive`; from that
//! byte its head must be whole within `header_read`. A connection's first head is due within
//! `header_read` of its start (and within `keep_alive` if that is shorter).
//!
//! Whether the connection is between requests is told by [`Activity`]: the request service marks
//! an answer begun and ended. Reads while an answer is under way are request bodies, which have a
//! progress timeout of their own (see `super`). When an answer ends, hyper does not read again by
//! itself until the socket is readable, so the end of an answer wakes the connection's task: its
//! next read arms the idle deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Whether a connection is answering a request, and since when it has waited for the next one.
#[derive(Debug)]
pub(super) struct Activity {
    inner: Mutex<Waits>,
}

#[derive(Debug)]
struct Waits {
    /// Requests whose answer is not finished (one at a time in HTTP/1.1).
    answering: usize,
    /// How many waits for a request began; the first is the connection's start.
    count: u64,
    /// When the current wait began.
    since: Instant,
    /// The task that last read the connection, to wake when an answer ends.
    reader: Option<Waker>,
}

/// One wait for a request: which one, and when it began.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Wait {
    number: u64,
    since: Instant,
}

impl Activity {
    /// A connection that just opened: waiting for its first request.
    pub(super) fn new() -> Self {
        Activity {
            inner: Mutex::new(Waits {
                answering: 0,
                count: 0,
                since: Instant::now(),
                reader: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waits> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a request's head read and its answer begun, until the returned guard drops.
    pub(super) fn answer(self: &Arc<Self>) -> Answering {
        self.lock().answering += 1;
        Answering(self.clone())
    }

    /// The wait in progress, or `None` while an answer is under way; `reader` is woken when an
    /// answer ends.
    fn waiting(&self, reader: &Waker) -> Option<Wait> {
        let mut w = self.lock();
        if !w.reader.as_ref().is_some_and(|r| r.will_wake(reader)) {
            w.reader = Some(reader.clone());
        }
        (w.answering == 0).then_some(Wait {
            number: w.count,
            since: w.since,
        })
    }
}

/// An answer in progress; dropping it (when the answer's body ends or is dropped) starts the
/// wait for the next request.
#[derive(Debug)]
pub(super) struct Answering(Arc<Activity>);

impl Drop for Answering {
    fn drop(&mut self) {
        let mut w = self.0.lock();
        w.answering = w.answering.saturating_sub(1);
        if w.answering > 0 {
            return;
        }
        w.count += 1;
        w.since = Instant::now();
        let reader = w.reader.clone();
        drop(w);
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

/// The limits a [`Deadlines`] enforces.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    /// A request head must be whole within this.
    pub(super) header_read: Duration,
    /// A connection may wait this long for the first byte of a request.
    pub(super) keep_alive: Duration,
    /// A write may stay blocked (the client not reading) this long.
    pub(super) response_write: Duration,
}

/// A timer that can be armed, disarmed and re-armed without a new allocation.
#[derive(Default)]
struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Deadline {
    fn arm(&mut self, at: Instant) {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = true;
    }

    fn disarm(&mut self) {
        self.armed = false;
    }

    /// True once the armed deadline has passed; otherwise wakes the task when it does.
    fn poll_passed(&mut self, cx: &mut Context<'_>) -> bool {
        match (&mut self.sleep, self.armed) {
            (Some(sleep), true) => sleep.as_mut().poll(cx).is_ready(),
            _ => false,
        }
    }
}

/// The head being waited for: which wait, and whether a byte of it has arrived.
#[derive(Clone, Copy)]
struct Head {
    wait: u64,
    started: bool,
}

/// `io` whose reads fail once a head or an idle wait is overdue, and whose writes fail once they
/// have been blocked for `response_write`. hyper then closes the connection, dropping whatever
/// answer was under way.
pub(super) struct Deadlines<T> {
    io: T,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    head: Option<Head>,
    read_by: Deadline,
    write_by: Deadline,
}

impl<T> Deadlines<T> {
    /// Wraps `io`, whose requests and answers `activity` follows.
    pub(super) fn new(io: T, activity: Arc<Activity>, timeouts: Timeouts) -> Self {
        Deadlines {
            io,
            activity,
            timeouts,
            head: None,
            read_by: Deadline::default(),
            write_by: Deadline::default(),
        }
    }

    /// Arms the read deadline for a wait seen for the first time: the idle limit until a byte
    /// arrives (for a new connection, its head limit as well).
    fn begin_wait(&mut self, wait: Wait) -> Head {
        let t = self.timeouts;
        let limit = match wait.number {
            0 => t.keep_alive.min(t.header_read),
            _ => t.keep_alive,
        };
        self.read_by.arm(wait.since + limit);
        let head = Head {
            wait: wait.number,
            started: false,
        };
        self.head = Some(head);
        head
    }

    /// A head's first byte arrived: from now on its whole head is due.
    fn head_started(&mut self, wait: Wait) {
        let from = match wait.number {
            0 => wait.since,
            _ => Instant::now(),
        };
        self.read_by.arm(from + self.timeouts.header_read);
        self.head = Some(Head {
            wait: wait.number,
            started: true,
        });
    }

    /// A write could not proceed: `Pending` until the client has not read for too long.
    fn write_blocked<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        if !self.write_by.armed {
            self.write_by
                .arm(Instant::now() + self.timeouts.response_write);
        }
        if self.write_by.poll_passed(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading its answer (server.response_write_timeout, at most instances.stream_idle_timeout)",
            )));
        }
        Poll::Pending
    }

    /// Passes a write's outcome on, timing how long it stays blocked.
    fn timed_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => self.write_blocked(cx),
            done => {
                self.write_by.disarm();
                done
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlines<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(wait) = this.activity.waiting(cx.waker()) else {
            // A request body: its own progress timeout applies.
            this.head = None;
            this.read_by.disarm();
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        let head = match this.head {
            Some(head) if head.wait == wait.number => head,
            _ => this.begin_wait(wait),
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if !head.started && buf.filled().len() > before => {
                this.head_started(wait);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.read_by.poll_passed(cx) => {
                let what = match head.started {
                    true => "the request head did not arrive in time (server.header_read_timeout)",
                    false => "no request came in time (server.keep_alive_timeout)",
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
            }
            polled => polled,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlines<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.timed_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.timed_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.timed_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        keep_alive: Duration::from_secs(60),
        response_write: Duration::from_secs(30),
    };

    /// A connection's server side with deadlines, and its client side.
    fn pair() -> (
        Deadlines<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<Activity>,
    ) {
        let (server, client) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::new());
        (
            Deadlines::new(server, activity.clone(), T),
            client,
            activity,
        )
    }

    async fn read_some(conn: &mut Deadlines<tokio::io::DuplexStream>) -> io::Result<usize> {
        let mut buf = [0u8; 64];
        conn.read(&mut buf).await
    }

    /// `elapsed` is `want`, give or take the timer's millisecond ticks (the clock is paused).
    fn assert_about(elapsed: Duration, want: Duration) {
        let slack = Duration::from_millis(10);
        assert!(
            elapsed + slack >= want && elapsed <= want + slack,
            "{elapsed:?} is not {want:?}"
        );
    }

    fn timed_out(read: io::Result<usize>) -> bool {
        matches!(read, Err(e) if e.kind() == io::ErrorKind::TimedOut)
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_head_is_due_within_the_header_timeout_of_the_start() {
        let (mut server, mut client, _) = pair();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(read_some(&mut server).await.unwrap(), 16);
        let started = Instant::now();
        assert!(timed_out(read_some(&mut server).await));
        assert_about(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_the_idle_limit_holds_until_a_byte_then_the_head_limit() {
        let (mut server, mut client, activity) = pair();
        drop(activity.answer());
        let started = Instant::now();
        let idle = tokio::spawn(async move {
            let timed = timed_out(read_some(&mut server).await);
            (timed, server)
        });
        let (timed, mut server) = idle.await.unwrap();
        assert!(timed);
        assert_about(started.elapsed(), T.keep_alive);

        // A new wait: 50 s idle is fine, then the head must be whole within 10 s of its start.
        drop(activity.answer());
        tokio::time::sleep(Duration::from_secs(50)).await;
        client.write_all(b"GET").await.unwrap();
        assert_eq!(read_some(&mut server).await.unwrap(), 3);
        let first_byte = Instant::now();
        assert!(timed_out(read_some(&mut server).await));
        assert_about(first_byte.elapsed(), T.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_an_answer_starts_the_idle_clock_of_a_reader_already_waiting() {
        let (mut server, _client, activity) = pair();
        let answering = activity.answer();
        // hyper reads (for the body or an early close) while the answer is under way ...
        let reader = tokio::spawn(async move { timed_out(read_some(&mut server).await) });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        // ... and is not told when the answer ends: the end wakes it.
        drop(answering);
        let ended = Instant::now();
        let closed = tokio::time::timeout(T.keep_alive * 2, reader).await;
        assert!(matches!(closed, Ok(Ok(true))), "still waiting: {closed:?}");
        assert_about(ended.elapsed(), T.keep_alive);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_while_answering_have_no_deadline_here() {
        let (mut server, mut client, activity) = pair();
        let answering = activity.answer();
        let read = tokio::spawn(async move { read_some(&mut server).await });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        client.write_all(b"body").await.unwrap();
        assert_eq!(read.await.unwrap().unwrap(), 4);
        drop(answering);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_too_long_fails_and_progress_resets_the_clock() {
        let (mut server, mut client, _) = pair();
        // The pipe holds 64 bytes: the rest waits for the client to read.
        let writer = tokio::spawn(async move {
            let wrote = server.write_all(&[0u8; 256]).await;
            (wrote, server)
        });
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            let mut buf = [0u8; 64];
            client.read_exact(&mut buf).await.unwrap();
        }
        let (wrote, mut server) = writer.await.unwrap();
        assert!(wrote.is_ok(), "a slow reader that keeps reading is served");

        let started = Instant::now();
        let stuck = server.write_all(&[0u8; 256]).await;
        assert!(matches!(stuck, Err(e) if e.kind() == io::ErrorKind::TimedOut));
        assert_about(started.elapsed(), T.response_write);
    }
}
