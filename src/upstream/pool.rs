//! Keep-alive HTTP/1.1 connections to backends on loopback, pooled per port.
//!
//! Leaner than hyper-util's general client, which costs a spawned task per request (to put the
//! connection back once it is ready), URI and pool-key hashing, and a scheme/authority lookup: on
//! 2 cores that was a tenth of the proxy's throughput. Here a connection goes back to its port's
//! idle list the moment its response body ends; whoever takes it next waits for it to be ready.
//!
//! A connection is reused only where the backend will keep it: llama-server closes the connection
//! right after a streamed (chunked) answer although it announces keep-alive, and it closes idle
//! ones after its `Keep-Alive: timeout`. Sending on such a connection in the moment before hyper
//! has seen the close loses the request, so those connections are not reused at all.

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long opening a connection to a backend may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most a backend connection reads at once (hyper's default lets it grow to about 400 KiB
/// when reads keep filling it): an answer arriving faster than it is sent on then waits in the
/// kernel's buffers, not in llamactl's memory, and a thousand busy streams stay small.
const READ_BUFFER: usize = 16 * 1024;
/// Idle connections kept per backend and HTTP worker; more are closed when they come back.
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
    /// The path to send to is not a valid URI.
    #[error("invalid path: {0}")]
    Target(String),
    /// The backend sent no answer within the idle limit (`instances.stream_idle_timeout`).
    #[error("the backend sent nothing for {} s", .0.as_secs())]
    Silent(Duration),
    /// The connection failed while the request was sent or the answer read.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

struct Idle {
    conn: SendRequest<Body>,
    /// When it went idle, and how long the backend keeps it open from then.
    since: Instant,
    keep: Duration,
}

/// How long an idle connection may be reused after `resp`, or `None` if it must not be: after a
/// chunked answer, and when the backend asks to close. The backend's advertised keep-alive timeout
/// (`Keep-Alive: timeout=N`) is trusted with a margin of a second, so the backend never closes a
/// connection just as a request is sent on it.
fn reusable_for(headers: &hyper::HeaderMap) -> Option<Duration> {
    use hyper::header::{CONNECTION, TRANSFER_ENCODING};
    let has = |name, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v: &hyper::header::HeaderValue| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
    };
    if has(TRANSFER_ENCODING, "chunked") || has(CONNECTION, "close") {
        return None;
    }
    let advertised = headers
        .get("keep-alive")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|p| p.trim().strip_prefix("timeout="))
                .find_map(|n| n.trim().parse::<u64>().ok())
        });
    Some(match advertised {
        Some(secs) => Duration::from_secs(secs.saturating_sub(1)).min(IDLE_TIMEOUT),
        None => IDLE_TIMEOUT,
    })
}

/// Idle connections by backend port and lane (see [`super::Lane`]).
type Key = (u16, usize);

/// Lists of idle connections, one lock per lane (modulo this): HTTP workers never wait on each
/// other's lock to take or give back a connection.
const SHARDS: usize = 16;

#[derive(Default)]
struct Inner {
    idle: [Mutex<HashMap<Key, Vec<Idle>>>; SHARDS],
}

impl Inner {
    fn idle(&self, key: Key) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<Idle>>> {
        self.idle[key.1 % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
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
    /// body streams; its connection returns to the pool when the body has been read to the end
    /// (if the backend will keep it).
    ///
    /// A pooled connection is driven by its own task, as it must be while it idles. A new one is
    /// driven by the caller's task (its future, then its answer's body) for as long as it serves
    /// this request, and gets a task of its own only if it goes back to the pool: a streamed
    /// answer, never reused, then costs no hand-off between two tasks for each event, and events
    /// that arrive together leave together (see [`Driven`]).
    pub async fn send(
        &self,
        lane: super::Lane,
        port: u16,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, SendError> {
        // The connection comes from, and goes back to, this lane's list.
        let key = (port, lane);
        if let Some(mut conn) = self.checkout(key).await {
            match conn.try_send_request(req).await {
                Ok(resp) => return Ok(self.answer(resp, conn, None, key)),
                // A pooled connection the backend closed just now fails before anything is
                // written; hyper then hands the request back, and it goes on a new connection.
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let (mut sender, conn) = self.connect(port).await?;
        let mut conn = Some(Box::pin(conn));
        let answer = sender.send_request(req);
        tokio::pin!(answer);
        let resp = std::future::poll_fn(|cx| {
            drive(&mut conn, port, cx);
            answer.as_mut().poll(cx)
        })
        .await?;
        Ok(self.answer(resp, sender, conn, key))
    }

    /// The answer `resp` from `sender`'s connection (`conn` if this task drives it), with a body
    /// that returns the connection to `key`'s list at its end if the backend will keep it.
    fn answer(
        &self,
        resp: Response<Incoming>,
        sender: SendRequest<Body>,
        conn: Option<Pin<Box<Connection>>>,
        key: Key,
    ) -> Response<Body> {
        let (parts, body) = resp.into_parts();
        let body = match reusable_for(&parts.headers) {
            Some(keep) => {
                if let Some(conn) = conn {
                    // It may idle in the pool: from now on it needs a task of its own.
                    spawn_driver(key.0, conn);
                }
                let home = Home {
                    conn: sender,
                    key,
                    keep,
                    pool: self.clone(),
                };
                Body::new(Returning {
                    body,
                    home: Some(home),
                })
            }
            // Not reused: `sender` goes, and the connection ends with this answer.
            None => match conn {
                Some(conn) => Body::new(Driven {
                    conn: Some(conn),
                    port: key.0,
                    body,
                    held: None,
                    done: false,
                }),
                None => Body::new(Returning { body, home: None }),
            },
        };
        Response::from_parts(parts, body)
    }

    /// A ready idle connection for `key`, if there is one.
    async fn checkout(&self, key: Key) -> Option<SendRequest<Body>> {
        while let Some(mut idle) = self.pop(key) {
            if idle.conn.is_closed() || idle.since.elapsed() >= idle.keep {
                continue;
            }
            // Returned at the end of its body, it may need a moment to be ready for the next one.
            if idle.conn.ready().await.is_ok() {
                return Some(idle.conn);
            }
        }
        None
    }

    fn pop(&self, key: Key) -> Option<Idle> {
        let mut idle = self.inner.idle(key);
        idle.get_mut(&key).and_then(Vec::pop)
    }

    fn checkin(&self, key: Key, conn: SendRequest<Body>, keep: Duration) {
        if conn.is_closed() || keep.is_zero() {
            return;
        }
        let mut idle = self.inner.idle(key);
        let list = idle.entry(key).or_default();
        // Drop those that waited too long, so a backend that stopped being used does not keep
        // sockets open forever. One clock read for the whole list: this runs for every request.
        let now = Instant::now();
        list.retain(|i| now.duration_since(i.since) < i.keep && !i.conn.is_closed());
        if list.len() < MAX_IDLE_PER_PORT {
            list.push(Idle {
                conn,
                since: now,
                keep,
            });
        }
    }

    /// A new connection to `port`, not yet driven by any task.
    async fn connect(&self, port: u16) -> Result<(SendRequest<Body>, Connection), SendError> {
        let failed = |reason: String| SendError::Connect { port, reason };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| failed(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        // Small requests and streamed chunks must leave at once, not wait for an ACK.
        stream
            .set_nodelay(true)
            .map_err(|e| failed(e.to_string()))?;
        Ok(http1::Builder::new()
            .max_buf_size(READ_BUFFER)
            .handshake(TokioIo::new(stream))
            .await?)
    }
}

/// A connection to a backend: it reads and writes only while it is polled.
type Connection = http1::Connection<TokioIo<TcpStream>, Body>;

/// Drives `conn` on a task of its own until it closes.
fn spawn_driver(port: u16, conn: Pin<Box<Connection>>) {
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(port, error = %e, "backend connection ended");
        }
    });
}

/// Lets `conn` read and write what it can now; forgets it once it has ended (its answer, if
/// any, then ends too, or fails).
fn drive(conn: &mut Option<Pin<Box<Connection>>>, port: u16, cx: &mut Context<'_>) {
    if let Some(driven) = conn {
        if let Poll::Ready(ended) = driven.as_mut().poll(cx) {
            if let Err(e) = ended {
                tracing::debug!(port, error = %e, "backend connection ended");
            }
            *conn = None;
        }
    }
}

/// The most bytes of events that arrived together sent on as one frame (a slow client's answer
/// is held up to about this plus the connection's write limit).
const MOST_JOINED: usize = 16 * 1024;

/// The body of an answer whose connection is not reused (a stream), driving that connection
/// itself. Each poll passes on everything the connection has already read as one frame, so
/// events that arrived together leave in one write; nothing is ever held back waiting for more.
struct Driven {
    conn: Option<Pin<Box<Connection>>>,
    port: u16,
    body: Incoming,
    /// What came after the joined data (trailers or an error), for the next poll.
    held: Option<Result<Frame<Bytes>, hyper::Error>>,
    /// The body has ended.
    done: bool,
}

impl Driven {
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        drive(&mut self.conn, self.port, cx);
        let polled = hyper::body::Body::poll_frame(Pin::new(&mut self.body), cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }
}

impl hyper::body::Body for Driven {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(held) = this.held.take() {
            return Poll::Ready(Some(held));
        }
        let first = match std::task::ready!(this.poll_next(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let first = match first.into_data() {
            Ok(data) => data,
            Err(frame) => return Poll::Ready(Some(Ok(frame))),
        };
        let mut joined: Option<bytes::BytesMut> = None;
        while joined.as_ref().map_or(first.len(), |j| j.len()) < MOST_JOINED {
            let Poll::Ready(Some(next)) = this.poll_next(cx) else {
                break;
            };
            match next.map(Frame::into_data) {
                Ok(Ok(more)) => {
                    let joined = joined.get_or_insert_with(|| {
                        let mut j = bytes::BytesMut::with_capacity(first.len() + more.len());
                        j.extend_from_slice(&first);
                        j
                    });
                    joined.extend_from_slice(&more);
                }
                Ok(Err(frame)) => {
                    this.held = Some(Ok(frame));
                    break;
                }
                Err(e) => {
                    this.held = Some(Err(e));
                    break;
                }
            }
        }
        let data = joined.map_or(first, bytes::BytesMut::freeze);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && (self.done || self.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Where a connection goes back to, and for how long it stays usable there.
struct Home {
    conn: SendRequest<Body>,
    key: Key,
    keep: Duration,
    pool: Pool,
}

/// A backend's response body that gives its connection back to the pool once read to the end
/// (if the connection may be reused).
struct Returning {
    body: Incoming,
    home: Option<Home>,
}

impl Returning {
    fn go_home(&mut self) {
        if let Some(home) = self.home.take() {
            home.pool.checkin(home.key, home.conn, home.keep);
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::header::HeaderValue;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Response headers, and the seconds a connection may then stay idle (`None`: not reused).
    type Case = (&'static [(&'static str, &'static str)], Option<u64>);

    #[test]
    fn reuse_follows_what_the_backend_will_keep() {
        let cases: &[Case] = &[
            (&[("content-length", "2")], Some(IDLE_TIMEOUT.as_secs())),
            (&[("keep-alive", "timeout=5, max=100")], Some(4)),
            (&[("keep-alive", "max=100, timeout=1")], Some(0)),
            (&[("transfer-encoding", "chunked")], None),
            (&[("connection", "keep-alive, Close")], None),
        ];
        for (headers, want) in cases {
            let mut map = hyper::HeaderMap::new();
            for (name, value) in *headers {
                map.insert(*name, HeaderValue::from_static(value));
            }
            let got = reusable_for(&map).map(|d| d.as_secs());
            assert_eq!(got, *want, "{headers:?}");
        }
    }

    /// Answers each request on a connection (with `answer`), keeping the connection open unless
    /// `close_after` is set, in which case it closes it a moment later without having said so, as
    /// llama-server does after a streamed answer. Counts connections.
    async fn backend(answer: &'static str, close_after: bool) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                        if close_after {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            break;
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    async fn get(pool: &Pool, port: u16) -> String {
        let req = Request::get("/").body(Body::empty()).unwrap();
        let resp = pool.send(0, port, req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn a_streamed_answer_s_connection_is_not_reused() {
        let (port, accepted) = backend(
            "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            true,
        )
        .await;
        let pool = Pool::default();
        for _ in 0..5 {
            assert_eq!(get(&pool, port).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_sized_answer_s_connection_is_reused() {
        let (port, accepted) = backend(
            "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: 2\r\n\r\nok",
            false,
        )
        .await;
        let pool = Pool::default();
        for _ in 0..5 {
            assert_eq!(get(&pool, port).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    /// Frames of an answer's body as the client side sees them.
    async fn frames(resp: Response<Body>) -> Vec<String> {
        let mut body = resp.into_body();
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                seen.push(String::from_utf8_lossy(&data).into_owned());
            }
        }
        seen
    }

    #[tokio::test]
    async fn events_that_arrive_together_leave_together_and_later_ones_on_their_own() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (next_tx, mut next_rx) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await.unwrap();
            // Two events in one write, then a third once the client has seen them.
            socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                      3\r\na\n\n\r\n3\r\nb\n\n\r\n",
                )
                .await
                .unwrap();
            next_rx.recv().await;
            socket.write_all(b"3\r\nc\n\n\r\n0\r\n\r\n").await.unwrap();
        });
        let pool = Pool::default();
        let req = Request::get("/").body(Body::empty()).unwrap();
        let resp = pool.send(0, port, req).await.unwrap();
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"a\n\nb\n\n");
        next_tx.send(()).await.unwrap();
        let rest = frames(Response::new(body)).await;
        assert_eq!(rest, ["c\n\n"]);
    }
}
