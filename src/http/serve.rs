//! Serving HTTP on one single-threaded runtime per core, fed connections by one acceptor.
//!
//! This is nginx's shape: a connection, and the backend connections its requests use, are handled
//! start to end on one thread. On tokio's work-stealing runtime the tasks of one proxied request
//! (the client's connection, the backend connection's driver) wake each other across threads,
//! which costs futex calls and cache misses; with one runtime per thread they never leave it.
//! Measured on the proxy's hot path, that was about a seventh of llamactl's CPU per request
//! (see docs/benchmarks.md).
//!
//! The acceptor hands connections out in turn, so the load spreads evenly even when clients open
//! all their connections at once; it closes a connection at once when its client address holds
//! its cap already. Each connection is served, within its deadlines, by `crate::http::connection`.
//! Control-plane work (the supervisor, the database) stays on the main runtime; handlers reach it
//! through channels, which work across runtimes.

use crate::error::{Error, Result};
use crate::http::connection::{self, AcceptErrors, Limits, PerClient, Slot};
use crate::metrics::{Metrics, Runtimes};
use axum::extract::Request;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

thread_local! {
    /// Which HTTP worker this thread is (1-based), or 0 outside them.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The HTTP worker the calling thread is (1-based), 0 for any other thread. The backend pool keeps
/// each worker's connections apart, so a connection is driven where it is used.
pub fn current() -> usize {
    WORKER.with(|w| w.get())
}

/// How many HTTP workers to run: one per core the process may use.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Connections the kernel may hold for the acceptor (capped by `net.core.somaxconn`, 4096 by
/// default). tokio's default of 1024 overflows when a thousand clients connect at once, and a
/// dropped SYN costs its client a one-second retransmission.
const BACKLOG: u32 = 65_535;

/// Listens on `host` (a name or address) and `port` with a backlog deep enough for bursts of
/// connections; the first of `host`'s addresses that can be bound.
pub async fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As std's `TcpListener::bind` does: a restart may bind while old connections linger.
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}

/// A connection handed to a worker, with its peer's address and its place under the peer's cap.
type Handoff = (std::net::TcpStream, SocketAddr, Slot);

/// What the workers serve: the whole HTTP service, shared by every worker thread.
pub trait HttpService:
    tower::Service<Request, Response = axum::response::Response, Error = Infallible, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<
            Request,
            Response = axum::response::Response,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Completes once `stop` is true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Serves `svc` on `listener` with `count` worker threads, each connection within `limits`,
/// until `stop` turns true; then lets open connections finish (the caller bounds how long it waits).
/// Each worker's runtime is in `metrics`' runtimes while it runs; failed accepts are counted there.
pub async fn serve<S: HttpService>(
    listener: TcpListener,
    svc: S,
    count: usize,
    limits: Limits,
    per_client: Arc<PerClient>,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let runtimes = metrics.runtimes().clone();
    let mut feeds = Vec::with_capacity(count);
    let mut ended = Vec::with_capacity(count);
    for index in 1..=count.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done, finished) = oneshot::channel();
        let (svc, stop, runtimes) = (svc.clone(), stop.clone(), runtimes.clone());
        std::thread::Builder::new()
            .name(format!("llamactl-http-{index}"))
            .spawn(move || {
                let _ = done.send(run_worker(index, rx, svc, limits, &runtimes, stop));
            })
            .map_err(|e| Error::Failed(format!("cannot start an HTTP worker thread: {e}")))?;
        feeds.push(tx);
        ended.push(finished);
    }
    let errors = AcceptErrors::new(metrics);
    accept(&listener, &feeds, per_client, errors, stop).await;
    drop(feeds);
    for finished in ended {
        match finished.await {
            Ok(result) => result?,
            Err(_) => return Err(Error::Internal("an HTTP worker thread panicked".into())),
        }
    }
    Ok(())
}

/// One worker: a single-threaded runtime serving the connections its feed brings.
fn run_worker<S: HttpService>(
    index: usize,
    feed: mpsc::UnboundedReceiver<Handoff>,
    svc: S,
    limits: Limits,
    runtimes: &Runtimes,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    WORKER.with(|w| w.set(index));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start an HTTP worker runtime: {e}")))?;
    let _counted = runtimes.register(runtime.handle().clone());
    runtime.block_on(serve_feed(feed, svc, limits, stop));
    // Whatever is still running there (a key check on the blocking pool) gets a moment to end.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// Serves each connection of `feed` until `stop`, then asks them to finish (idle ones close at
/// once, busy ones after their answer) and waits for them.
async fn serve_feed<S: HttpService>(
    mut feed: mpsc::UnboundedReceiver<Handoff>,
    svc: S,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let stop = stopped(stop);
    tokio::pin!(stop);
    loop {
        let handoff = tokio::select! {
            _ = &mut stop => break,
            handoff = feed.recv() => handoff,
        };
        let Some((stream, peer, slot)) = handoff else {
            // The acceptor has stopped; the shutdown it stopped for follows.
            (&mut stop).await;
            break;
        };
        // Registers the socket with this worker's reactor.
        match TcpStream::from_std(stream) {
            Ok(io) => connection::spawn(io, peer, slot, svc.clone(), &limits, &graceful),
            Err(e) => tracing::debug!(error = %e, "cannot adopt a connection"),
        }
    }
    graceful.shutdown().await;
}

/// Accepts until `stop`, handing connections to the workers in turn.
async fn accept(
    listener: &TcpListener,
    feeds: &[mpsc::UnboundedSender<Handoff>],
    per_client: Arc<PerClient>,
    mut errors: AcceptErrors,
    stop: watch::Receiver<bool>,
) {
    let stop = stopped(stop);
    tokio::pin!(stop);
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of descriptors and the like: refuse visibly or pause, never spin.
                errors.failed(listener, e).await;
                continue;
            }
        };
        errors.accepted();
        // A client at its cap is closed before it costs more than the accept.
        let Some(slot) = per_client.admit(peer.ip()) else {
            continue;
        };
        // Streamed answers go out chunk by chunk: with Nagle's algorithm a chunk could wait for
        // the client's ACK of the previous one (up to its delayed-ACK timeout).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let mut unsent = match stream.into_std() {
            Ok(stream) => Some((stream, peer, slot)),
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand a connection over");
                continue;
            }
        };
        // A worker whose runtime could not start has dropped its feed: the next one takes over.
        for _ in 0..feeds.len() {
            let Some(conn) = unsent.take() else { break };
            if let Err(mpsc::error::SendError(conn)) = feeds[next].send(conn) {
                unsent = Some(conn);
            }
            next = (next + 1) % feeds.len();
        }
        if unsent.is_some() {
            tracing::error!("every HTTP worker has stopped; no longer accepting connections");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One request on its own connection; the answer's body.
    async fn get_once(addr: SocketAddr) -> String {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn connections_go_to_every_worker_in_turn_and_shutdown_ends_them() {
        // Each answer names the worker thread that served it, and the peer it saw.
        let app = axum::Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("{} {}", current(), peer.ip())
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let limits = Limits::new(&crate::config::ServerConfig::default(), 1024);
        let server = tokio::spawn(serve(
            listener,
            app,
            3,
            limits,
            PerClient::new(limits.per_client),
            Metrics::default(),
            stop_rx,
        ));

        let mut workers = Vec::new();
        for _ in 0..6 {
            let answer = get_once(addr).await;
            let (worker, peer) = answer.split_once(' ').unwrap();
            assert_eq!(peer, "127.0.0.1");
            workers.push(worker.parse::<usize>().unwrap());
        }
        assert_eq!(workers, [1, 2, 3, 1, 2, 3]);

        stop_tx.send(true).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(5), server).await;
        assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }
}
