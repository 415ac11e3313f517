//! Keep-alive HTTP/1.1 connections to backends on loopback, pooled per port.
//!
//! Leaner than hyper-util's general client, which costs a spawned task per request (to put the
//! connection back once it is ready), URI and pool-key hashing, and a scheme/authority lookup: on
//! 2 cores that was a tenth of the proxy's throughput. Here a connection goes back to its port's
//! idle list the moment its response body ends; whoever takes it next waits for it to be ready.

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long opening a connection to a backend may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per backend; more are closed when they come back.
const MAX_IDLE_PER_PORT: usize = 256;

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened.
    #[error("cannot connect to port {port}: {reason}")]
    Connect {
        /// The backend's port.
        port: u16,
        /// The cause.
        reason: String,
    },
    /// The connection failed while the request was sent or the answer read.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

struct Idle {
    conn: SendRequest<Body>,
    since: Instant,
}

#[derive(Default)]
struct Inner {
    idle: Mutex<HashMap<u16, Vec<Idle>>>,
}

/// Pooled connections to every backend; cheap to clone.
#[derive(Clone, Default)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// Sends `req` (origin-form URI, `Host` set by the caller) to `127.0.0.1:<port>`. The answer's
    /// body streams; its connection returns to the pool when the body has been read to the end.
    pub async fn send(&self, port: u16, req: Request<Body>) -> Result<Response<Body>, SendError> {
        let mut conn = self.checkout(port).await?;
        let resp = match conn.try_send_request(req).await {
            Ok(resp) => resp,
            // A pooled connection the backend closed just now fails before anything is written;
            // hyper then hands the request back, and it goes once more on a fresh connection.
            Err(mut e) => match e.take_message() {
                Some(unsent) => {
                    conn = self.connect(port).await?;
                    conn.send_request(unsent).await?
                }
                None => return Err(e.into_error().into()),
            },
        };
        let (parts, body) = resp.into_parts();
        let body = Returning {
            body,
            home: Some((conn, port, self.clone())),
        };
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// A ready idle connection to `port`, or a new one.
    async fn checkout(&self, port: u16) -> Result<SendRequest<Body>, SendError> {
        while let Some(mut idle) = self.pop(port) {
            if idle.conn.is_closed() || idle.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // Returned at the end of its body, it may need a moment to be ready for the next one.
            if idle.conn.ready().await.is_ok() {
                return Ok(idle.conn);
            }
        }
        self.connect(port).await
    }

    fn pop(&self, port: u16) -> Option<Idle> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get_mut(&port).and_then(Vec::pop)
    }

    fn checkin(&self, port: u16, conn: SendRequest<Body>) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(port).or_default();
        // Oldest first: drop those that waited too long, so a backend that stopped being used does
        // not keep sockets open forever.
        let stale = list
            .iter()
            .take_while(|i| i.since.elapsed() > IDLE_TIMEOUT)
            .count();
        list.drain(..stale);
        if list.len() < MAX_IDLE_PER_PORT {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, port: u16) -> Result<SendRequest<Body>, SendError> {
        let failed = |reason: String| SendError::Connect { port, reason };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| failed(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        // Small requests and streamed chunks must leave at once, not wait for an ACK.
        stream
            .set_nodelay(true)
            .map_err(|e| failed(e.to_string()))?;
        let (conn, driver) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                tracing::debug!(port, error = %e, "backend connection ended");
            }
        });
        Ok(conn)
    }
}

/// A backend's response body that gives its connection back to the pool once read to the end.
struct Returning {
    body: Incoming,
    home: Option<(SendRequest<Body>, u16, Pool)>,
}

impl Returning {
    fn go_home(&mut self) {
        if let Some((conn, port, pool)) = self.home.take() {
            pool.checkin(port, conn);
        }
    }
}

impl hyper::body::Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.go_home();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // A server that knows the length stops polling after the last byte, without reading the
        // end; a body dropped half-read leaves its connection unusable, so it is not returned.
        if hyper::body::Body::is_end_stream(&self.body) {
            self.go_home();
        }
    }
}
