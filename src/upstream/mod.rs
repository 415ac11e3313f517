//! Forwards a request to a backend on loopback and streams the answer back, chunk by chunk.
//!
//! One pool serves every backend (it keeps idle connections per backend port, see `pool`), so the
//! proxy does not open a new upstream connection per request.

mod pool;
mod stall;

pub use pool::{Pool, SendError};
pub use stall::OnStall;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use std::time::Duration;

/// Which pool lane a caller uses: the HTTP worker thread it runs on (1-based), or 0 for the main
/// runtime. A connection's driver runs on the runtime that opened it, so it is reused there only.
pub type Lane = usize;

/// True if an answer with `headers` is a server-sent event stream.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The `Host` a backend on `port` is addressed as.
fn host(port: u16) -> HeaderValue {
    HeaderValue::from_str(&format!("127.0.0.1:{port}"))
        .unwrap_or(HeaderValue::from_static("127.0.0.1"))
}

/// True if the backend at `port` answers `GET /health` with 200 within `timeout` (from the main
/// runtime).
pub async fn is_healthy(pool: &Pool, port: u16, timeout: Duration) -> bool {
    let Ok(req) = Request::get("/health")
        .header(header::HOST, host(port))
        .body(Body::empty())
    else {
        return false;
    };
    let probe = async {
        let resp = pool.send(0, port, req).await?;
        let status = resp.status();
        // Read to the end, so the connection can be reused.
        let _ = resp.into_body().collect().await;
        Ok::<_, SendError>(status)
    };
    matches!(
        tokio::time::timeout(timeout, probe).await,
        Ok(Ok(StatusCode::OK))
    )
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus the caller's credentials.
const DROPPED: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

fn strip_hop_headers(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(DROPPED) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

/// How long a backend may stay quiet in the middle of an answer, and what to do if it does.
pub struct Quiet {
    /// Longest time without a byte from the backend while the client waits for one.
    pub limit: Duration,
    /// Called once if the backend stayed quiet that long.
    pub on_stall: OnStall,
}

/// Sends `req` to `http://127.0.0.1:<port><path_and_query>` over `lane`'s connections and returns
/// the streaming response, without the hop-by-hop headers and the caller's credentials.
/// (`path_and_query` is taken by value: the URI then keeps its buffer instead of copying it.)
/// A backend quiet for `quiet.limit` before its answer's head is [`SendError::Silent`]; during its
/// body, the body ends (see `stall`).
pub async fn forward(
    pool: &Pool,
    lane: Lane,
    port: u16,
    path_and_query: String,
    req: Request<Body>,
    quiet: Quiet,
) -> Result<Response<Body>, SendError> {
    let (mut parts, body) = req.into_parts();
    parts.uri = Uri::try_from(path_and_query).map_err(|e| SendError::Target(e.to_string()))?;
    strip_hop_headers(&mut parts.headers);
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove("x-api-key");
    parts.headers.insert(header::HOST, host(port));
    parts.version = axum::http::Version::HTTP_11;
    let sent = pool.send(lane, port, Request::from_parts(parts, body));
    // Dropping the request on time-out closes its connection: the backend sees it cancelled.
    let upstream = match tokio::time::timeout(quiet.limit, sent).await {
        Ok(sent) => sent?,
        Err(_) => {
            (quiet.on_stall)();
            return Err(SendError::Silent(quiet.limit));
        }
    };
    let (mut parts, body) = upstream.into_parts();
    strip_hop_headers(&mut parts.headers);
    Ok(stall::StallGuard::wrap(
        Response::from_parts(parts, body),
        quiet.limit,
        quiet.on_stall,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn drops_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        strip_hop_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }
}
