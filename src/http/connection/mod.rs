//! One client connection, served with hyper's HTTP/1.1 (keep-alive included) and bounded in time
//! and number, so slow or idle clients cannot hold the server's descriptors or an instance.
//!
//! - `deadlines`: the request head, idling between requests, and an answer the client does not read.
//! - a request body that makes no progress for `request_body` fails (tower-http's `TimeoutBody`,
//!   whose clock runs only while a frame is awaited), so the handler or proxy sees an error.
//! - `per_client`: connections one client address may hold; `open_files`: the descriptor limit;
//!   `accept_errors`: what happens when descriptors run out anyway.
//!
//! When a deadline passes, hyper closes the connection and drops the answer under way, and with it
//! whatever the answer held (an instance's in-flight count).

mod accept_errors;
mod deadlines;
pub mod open_files;
mod per_client;

pub(crate) use accept_errors::AcceptErrors;
pub(crate) use per_client::{PerClient, Slot};

use crate::config::ServerConfig;
use crate::http::holding::Holding;
use crate::http::serve::HttpService;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use deadlines::{Activity, Answering, Deadlines, Timeouts};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tower::util::Oneshot;
use tower::ServiceExt;
use tower_http::timeout::{TimeoutBody, TimeoutError};

/// The most of an answer hyper holds for a client that reads slowly (its default is about
/// 400 KiB): past it, nothing more is taken from the backend until the client reads, so thousands
/// of slow readers cost little memory. Also the largest request head accepted.
const MAX_BUFFERED: usize = 64 * 1024;

/// The fewest connections a client address is allowed when the cap is automatic.
const MIN_PER_CLIENT: usize = 16;

/// How long each step of a connection may take, and how many one client address may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A request head must be whole within this.
    pub header_read: Duration,
    /// An idle connection (before a request, or between two) is closed after this.
    pub keep_alive: Duration,
    /// A request body sending nothing for this long fails.
    pub request_body: Duration,
    /// An answer the client does not read for this long is cut.
    pub response_write: Duration,
    /// Connections one client address may hold at once.
    pub per_client: usize,
}

impl Limits {
    /// The limits `cfg` sets; an automatic per-client cap is a quarter of `open_files`.
    pub fn new(cfg: &ServerConfig, open_files: u64) -> Self {
        let per_client = match cfg.max_connections_per_client {
            0 => usize::try_from(open_files / 4)
                .unwrap_or(usize::MAX)
                .max(MIN_PER_CLIENT),
            n => n,
        };
        Limits {
            header_read: Duration::from_secs(cfg.header_read_timeout),
            keep_alive: Duration::from_secs(cfg.keep_alive_timeout),
            request_body: Duration::from_secs(cfg.request_body_timeout),
            response_write: Duration::from_secs(cfg.response_write_timeout),
            per_client,
        }
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            header_read: self.header_read,
            keep_alive: self.keep_alive,
            response_write: self.response_write,
        }
    }
}

/// True if `err` (or what caused it) is a request body that stopped sending in time.
pub fn body_stalled(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.is::<TimeoutError>() {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Serves `stream` from `peer` on the calling worker's runtime until it closes, a deadline passes
/// or `graceful` shuts down; `slot` (the peer's place under its cap) is given back at the end.
pub(crate) fn spawn<S: HttpService>(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    svc: S,
    limits: &Limits,
    graceful: &GracefulShutdown,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Deadlines::new(stream, activity.clone(), limits.timeouts()));
    let service = Served {
        inner: svc,
        peer: ConnectInfo(peer),
        activity,
        request_body: limits.request_body,
    };
    let conn = hyper::server::conn::http1::Builder::new()
        // hyper's own head timeout also runs while a kept-alive connection idles, which would
        // make it the idle timeout too; `Deadlines` keeps the two apart.
        .header_read_timeout(None)
        .max_buf_size(MAX_BUFFERED)
        .serve_connection(io, service);
    let served = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = served.await {
            tracing::debug!(%peer, error = %e, "connection ended");
        }
        drop(slot);
    });
}

/// The service for one connection's requests: each gets the peer's address as `ConnectInfo` (as
/// axum's `into_make_service_with_connect_info` would; the failed-auth limiter keys on it) and a
/// body with a progress timeout, and counts as answering until its answer's body ends.
struct Served<S> {
    inner: S,
    peer: ConnectInfo<SocketAddr>,
    activity: Arc<Activity>,
    request_body: Duration,
}

impl<S: HttpService> hyper::service::Service<Request<Incoming>> for Served<S> {
    type Response = Response<Holding<Answering>>;
    type Error = Infallible;
    type Future = Answer<Oneshot<S, Request<Body>>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let answering = self.activity.answer();
        let mut req = req.map(|body| Body::new(TimeoutBody::new(self.request_body, body)));
        req.extensions_mut().insert(self.peer);
        Answer {
            inner: self.inner.clone().oneshot(req),
            answering: Some(answering),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer being made; its body then holds the [`Answering`] mark.
    struct Answer<F> {
        #[pin]
        inner: F,
        answering: Option<Answering>,
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Holding<Answering>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.inner.poll(cx))?;
        let answering = this.answering.take();
        Poll::Ready(Ok(resp.map(|body| Holding::new(body, answering))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_automatic_cap_is_a_quarter_of_the_descriptors_and_at_least_sixteen() {
        let mut cfg = ServerConfig::default();
        assert_eq!(Limits::new(&cfg, 1024).per_client, 256);
        assert_eq!(Limits::new(&cfg, 40).per_client, 16);
        cfg.max_connections_per_client = 3;
        assert_eq!(Limits::new(&cfg, 1024).per_client, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_recognised_through_the_errors_it_caused() {
        use http_body_util::{BodyExt, StreamBody};
        let silent =
            futures_util::stream::pending::<Result<hyper::body::Frame<bytes::Bytes>, Infallible>>();
        let body = Body::new(TimeoutBody::new(
            Duration::from_secs(1),
            StreamBody::new(silent),
        ));
        let stalled = body.collect().await.unwrap_err();
        assert!(body_stalled(&stalled), "{stalled}");
        assert!(!body_stalled(&std::io::Error::other("reset")));
    }
}
