//! A response body that keeps something alive until it has been sent: the instance's in-flight
//! count while a backend's answer streams, or a connection's write deadline while it is answered.

use axum::body::{Body, Bytes, HttpBody};
use axum::http::Response;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

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
