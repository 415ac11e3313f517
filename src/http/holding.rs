//! A response body that keeps something alive until it has been sent: a connection's write
//! deadline while it is answered. (A backend's answer is held by `metering::Metered`.)

use axum::body::{Body, Bytes, HttpBody};
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

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
        let held = |token| Body::new(Holding::new(Body::from("abc"), Some(token)));
        let resp = held(token.clone());
        assert_eq!(resp.size_hint().exact(), Some(3));
        assert_eq!(std::sync::Arc::strong_count(&token), 2, "held while unsent");
        let bytes = resp.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abc");
        assert_eq!(
            std::sync::Arc::strong_count(&token),
            1,
            "released at the end"
        );

        drop(held(token.clone()));
        assert_eq!(std::sync::Arc::strong_count(&token), 1, "released on drop");
    }
}
