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

/// The `Host` a backend on `port` is addressed as. Each thread keeps the last one it made: a
/// worker usually talks to the same few backends, and this runs for every forwarded request.
fn host(port: u16) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u16, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((p, value)) if *p == port => value.clone(),
        _ => {
            let value = HeaderValue::from_str(&format!("127.0.0.1:{port}"))
                .unwrap_or(HeaderValue::from_static("127.0.0.1"));
            *last = Some((port, value.clone()));
            value
        }
    })
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

/// Headers that describe one hop, never forwarded either way (RFC 9110 §7.6.1); `Keep-Alive` is
/// one too, though not a standard name.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    HeaderName::from_static("keep-alive"),
];

/// The caller's credentials, which a backend never sees.
static CREDENTIALS: [HeaderName; 2] = [header::AUTHORIZATION, HeaderName::from_static("x-api-key")];

/// The most headers one message can have removed without an allocation.
const FEW: usize = 8;

/// The names of the headers found to be removed.
type Found = smallvec::SmallVec<[HeaderName; FEW]>;

/// Removes the hop-by-hop headers, those named in `Connection`, and the `extra` ones. Each name
/// present is checked against the lists once; only the names found are looked up to be removed
/// (a request usually carries none but `Host` and its key; this runs twice per request).
fn strip_hop_headers(headers: &mut HeaderMap, extra: &[HeaderName]) {
    let connection = headers.get_all(header::CONNECTION);
    let named = |name: &HeaderName| {
        connection
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|n| n.trim().eq_ignore_ascii_case(name.as_str()))
    };
    let dropped =
        |name: &HeaderName| HOP_BY_HOP.contains(name) || extra.contains(name) || named(name);
    let found: Found = headers.keys().filter(|n| dropped(n)).cloned().collect();
    for name in &found {
        headers.remove(name);
    }
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
    strip_hop_headers(&mut parts.headers, &CREDENTIALS);
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
    strip_hop_headers(&mut parts.headers, &[]);
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
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        h.insert("x-api-key", HeaderValue::from_static("k"));
        h.insert(header::HOST, HeaderValue::from_static("llamactl"));
        strip_hop_headers(&mut h, &CREDENTIALS);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn keeps_a_message_without_hop_by_hop_headers_whole() {
        let mut h = HeaderMap::new();
        for i in 0..(FEW + 4) {
            h.insert(
                HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        let before = h.clone();
        strip_hop_headers(&mut h, &[]);
        assert_eq!(h, before);
    }

    #[test]
    fn drops_more_named_headers_than_fit_without_allocating() {
        let mut h = HeaderMap::new();
        let names: Vec<String> = (0..(FEW + 4)).map(|i| format!("x-hop-{i}")).collect();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_str(&names.join(", ")).unwrap(),
        );
        for name in &names {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_headers(&mut h, &[]);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }
}
