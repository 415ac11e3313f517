//! Forwards a request to a backend on loopback and streams the answer back, chunk by chunk.
//!
//! One pool serves every backend (it keeps idle connections per backend port, see `pool`), so the
//! proxy does not open a new upstream connection per request.

mod pool;

pub use pool::{Pool, SendError};

use crate::error::{Error, Result};
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The `Host` a backend on `port` is addressed as.
fn host(port: u16) -> HeaderValue {
    HeaderValue::from_str(&format!("127.0.0.1:{port}"))
        .unwrap_or(HeaderValue::from_static("127.0.0.1"))
}

/// `GET path` on the backend at `port`: the status, after reading the (small) body so the
/// connection can be reused.
pub async fn get_status(
    client: &Pool,
    port: u16,
    path: &str,
) -> std::result::Result<StatusCode, SendError> {
    let req = Request::get(path)
        .header(header::HOST, host(port))
        .body(Body::empty())
        .map_err(|e| SendError::Connect {
            port,
            reason: e.to_string(),
        })?;
    let resp = client.send(port, req).await?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    Ok(status)
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

/// Sends `req` to `http://127.0.0.1:<port><path_and_query>` and returns the streaming response.
/// (`path_and_query` is taken by value: the URI then keeps its buffer instead of copying it.)
pub async fn forward(
    client: &Pool,
    port: u16,
    path_and_query: String,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let (mut parts, body) = req.into_parts();
    parts.uri = Uri::try_from(path_and_query)
        .map_err(|e| Error::BadRequest(format!("invalid path: {e}")))?;
    strip_hop_headers(&mut parts.headers);
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove("x-api-key");
    parts.headers.insert(header::HOST, host(port));
    parts.version = axum::http::Version::HTTP_11;
    let upstream = client
        .send(port, Request::from_parts(parts, body))
        .await
        .map_err(|e| {
            if crate::http::connection::body_stalled(&e) {
                Error::body_stalled()
            } else {
                Error::BadGateway(format!("backend on port {port} did not answer: {e}"))
            }
        })?;
    let (mut parts, body) = upstream.into_parts();
    strip_hop_headers(&mut parts.headers);
    Ok(Response::from_parts(parts, body))
}

/// Keeps `token` alive while `resp`'s body is being sent: until its last frame, or until it is
/// dropped (the client went away). Size hints pass through, so a `Content-Length` stays one.
pub fn hold_while_sending<T>(resp: Response<Body>, token: T) -> Response<Body>
where
    T: Send + Unpin + 'static,
{
    resp.map(|inner| Body::new(Holding::new(inner, Some(token))))
}

/// A body that drops its token at its end (its last frame or an error), or when it is dropped.
pub(crate) struct Holding<T> {
    inner: Body,
    token: Option<T>,
}

impl<T> Holding<T> {
    /// `inner`, holding `token` (if any) until its end.
    pub(crate) fn new(inner: Body, token: Option<T>) -> Self {
        Holding { inner, token }
    }
}

impl<T: Unpin> HttpBody for Holding<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.token = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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

    #[tokio::test]
    async fn the_token_lives_until_the_body_is_read_or_dropped() {
        use http_body_util::BodyExt;
        let token = std::sync::Arc::new(());
        let resp = hold_while_sending(Response::new(Body::from("abc")), token.clone());
        assert_eq!(resp.body().size_hint().exact(), Some(3));
        assert_eq!(std::sync::Arc::strong_count(&token), 2, "held while unsent");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abc");
        assert_eq!(
            std::sync::Arc::strong_count(&token),
            1,
            "released at the end"
        );

        let resp = hold_while_sending(Response::new(Body::from("abc")), token.clone());
        drop(resp);
        assert_eq!(std::sync::Arc::strong_count(&token), 1, "released on drop");
    }
}
