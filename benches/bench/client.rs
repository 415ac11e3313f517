//! The one HTTP/1.1 client every side is measured with: a plain hyper connection per worker, so the
//! client adds the same small cost everywhere and no pool decides when connections open.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A request as a scenario writes it: method, path on the target, optional JSON body.
#[derive(Clone, Debug)]
pub struct Req {
    /// GET, POST, ...
    pub method: Method,
    /// Path and query as the backend sees it (`/health`).
    pub path: String,
    /// A JSON body, sent with `Content-Type: application/json`.
    pub body: Option<Bytes>,
}

impl Req {
    /// `GET path`.
    pub fn get(path: &str) -> Req {
        Req {
            method: Method::GET,
            path: path.into(),
            body: None,
        }
    }

    /// `POST path` with a JSON body.
    pub fn post_json(path: &str, body: &serde_json::Value) -> Req {
        Req {
            method: Method::POST,
            path: path.into(),
            body: Some(Bytes::from(body.to_string())),
        }
    }
}

/// Where one side sends a request: address, full path there, and the key to present (if any).
#[derive(Clone, Debug)]
pub struct Target {
    /// Loopback address of the server.
    pub addr: SocketAddr,
    /// Path and query on that server.
    pub path: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub key: Option<String>,
    /// The request's method and body.
    pub req: Req,
}

impl Target {
    /// A fresh hyper request for this target.
    pub fn request(&self) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(self.req.method.clone())
            .uri(self.path.as_str())
            .header(HOST, self.addr.to_string());
        if let Some(key) = &self.key {
            builder = builder.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        if self.req.body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        builder
            .body(Full::new(self.req.body.clone().unwrap_or_default()))
            .expect("a request built from a valid target")
    }
}

/// One open HTTP/1.1 connection.
pub type Conn = SendRequest<Full<Bytes>>;

/// Opens a connection (with TCP_NODELAY, as any latency-minded client would).
pub async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// What one request came to.
pub struct Answer {
    /// Response status.
    pub status: StatusCode,
    /// The server asked to close the connection after this response.
    pub close: bool,
}

/// Sends one request on `conn` and reads the whole answer.
pub async fn exchange(conn: &mut Conn, target: &Target) -> Result<Answer, String> {
    conn.ready().await.map_err(|e| e.to_string())?;
    let resp = conn
        .send_request(target.request())
        .await
        .map_err(|e| e.to_string())?;
    let close = resp
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let status = resp.status();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| e.to_string())?;
    }
    Ok(Answer { status, close })
}

/// Sends `target`'s request on `conn`; its answer, or its status and body as the error when it
/// is not a success.
pub async fn send_ok(
    conn: &mut Conn,
    target: &Target,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let resp = conn
        .send_request(target.request())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.into_body().collect().await.map(|b| b.to_bytes());
    let text = text.map_or_else(|e| e.to_string(), |b| String::from_utf8_lossy(&b).into());
    Err(format!("HTTP {status}: {}", text.trim()))
}

/// One streamed answer, as the client saw it.
#[derive(Clone, Debug)]
pub struct Streamed {
    /// Response status.
    pub status: StatusCode,
    /// From sending the request until the first complete `data:` event.
    pub first_event: Duration,
    /// From sending the request until the end of the body.
    pub total: Duration,
    /// `data:` events, not counting the closing `[DONE]`.
    pub events: usize,
    /// Body reads (transport chunks): fewer than events means something coalesced them.
    pub reads: usize,
}

/// Sends one request on a fresh connection and follows its server-sent events to the end.
pub async fn stream(target: &Target, timeout: Duration) -> Result<Streamed, String> {
    let run = async {
        let mut conn = connect(target.addr).await?;
        conn.ready().await.map_err(|e| e.to_string())?;
        let started = Instant::now();
        let resp = send_ok(&mut conn, target).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut pending = Vec::new();
        let (mut events, mut reads, mut first_event) = (0, 0, None);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            reads += 1;
            pending.extend_from_slice(data);
            // An event ends at a blank line; count each complete one once.
            while let Some(end) = find(&pending, b"\n\n") {
                let event = pending.drain(..end + 2).collect::<Vec<u8>>();
                let text = String::from_utf8_lossy(&event);
                let text = text.trim();
                if text.starts_with("data:") && !text.ends_with("[DONE]") {
                    events += 1;
                    first_event.get_or_insert_with(|| started.elapsed());
                }
            }
        }
        Ok(Streamed {
            status,
            first_event: first_event.unwrap_or_default(),
            total: started.elapsed(),
            events,
            reads,
        })
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| format!("no complete answer within {timeout:?}"))?
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
