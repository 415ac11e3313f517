//! A backend's answer that cannot hang forever: if the backend sends nothing for the idle limit
//! while the client waits for more, the answer ends cleanly. An event stream gets a last
//! `event: error` with `{"error": "..."}` first (as it also does when the backend's connection
//! breaks mid-stream), so an OpenAI client reports the cause instead of a cut connection; any
//! other body just ends.
//!
//! The clock runs only while a frame is awaited, so a client that is slow to read never makes the
//! backend look quiet (a client that stops reading is the connection's `response_write_timeout`,
//! see `http::connection`). One timer serves the whole answer: a frame only notes when the next
//! wait began (one clock read), and the timer, when it fires, moves itself to the current wait's
//! deadline if that is later. A timer per frame (tower-http's `TimeoutBody`) cost a timer-wheel
//! insertion and removal for every streamed event.

use axum::body::{Body, Bytes, HttpBody};
use axum::http::Response;
use hyper::body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Called once if the backend went quiet (to count it).
pub type OnStall = Box<dyn FnOnce() + Send>;

/// An answer body that ends when its backend goes quiet for `limit`.
pub(crate) struct StallGuard {
    inner: Body,
    limit: Duration,
    /// When the wait for the next frame began (`None` while no frame is awaited).
    waiting_since: Option<Instant>,
    /// Fires at or before the current wait's deadline; made at the first wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// An event stream, which can tell the client why it ends.
    sse: bool,
    on_stall: Option<OnStall>,
    ended: bool,
}

impl StallGuard {
    /// `resp` with its body ended after `limit` without a frame; `on_stall` is called if it is.
    pub(crate) fn wrap(resp: Response<Body>, limit: Duration, on_stall: OnStall) -> Response<Body> {
        let sse = super::is_event_stream(resp.headers());
        resp.map(|body| {
            Body::new(StallGuard {
                inner: body,
                limit,
                waiting_since: None,
                timer: None,
                sse,
                on_stall: Some(on_stall),
                ended: false,
            })
        })
    }
}

impl StallGuard {
    /// While a frame is awaited: `Ready` once the backend has been quiet for the limit, else
    /// `Pending` with the timer set to wake the task by then.
    fn poll_quiet_too_long(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let due = *self.waiting_since.get_or_insert_with(Instant::now) + self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        // The timer may still be set for an earlier wait's deadline: it is moved on when it fires.
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            timer.as_mut().reset(due);
        }
        Poll::Pending
    }
}

/// The last event of a stream that could not go on.
fn error_event(message: &str) -> Bytes {
    let data = serde_json::json!({ "error": message });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

impl HttpBody for StallGuard {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let err = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting_since = None;
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(None) => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(err))) => Some(err),
            Poll::Pending => {
                ready!(this.poll_quiet_too_long(cx));
                None
            }
        };
        this.ended = true;
        let message = match &err {
            None => {
                if let Some(count) = this.on_stall.take() {
                    count();
                }
                format!(
                    "the backend sent nothing for {} s (instances.stream_idle_timeout); the answer was ended",
                    this.limit.as_secs()
                )
            }
            Some(err) => format!("the backend's answer broke off: {err}"),
        };
        tracing::warn!(reason = %message, "answer ended early");
        match err {
            _ if this.sse => Poll::Ready(Some(Ok(Frame::data(error_event(&message))))),
            None => Poll::Ready(None),
            Some(err) => Poll::Ready(Some(Err(err))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.sse {
            // A last event may be added: the length is not known in advance.
            return SizeHint::default();
        }
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;
    use futures_util::{stream, StreamExt};
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// An answer of `content_type` that sends `first` and then nothing, ever.
    fn quiet_after(content_type: &str, first: &'static str) -> Response<Body> {
        let frames = stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from(first)))])
            .chain(stream::pending());
        Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::new(StreamBody::new(frames)))
            .unwrap()
    }

    fn counter() -> (Arc<AtomicUsize>, OnStall) {
        let stalls = Arc::new(AtomicUsize::new(0));
        let count = stalls.clone();
        (
            stalls,
            Box::new(move || {
                count.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_event_stream_ends_with_an_error_event() {
        let (stalls, on_stall) = counter();
        let resp = StallGuard::wrap(
            quiet_after("text/event-stream", "data: {}\n\n"),
            Duration::from_secs(300),
            on_stall,
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        let (first, last) = body.split_once("\n\n").unwrap();
        assert_eq!(first, "data: {}");
        let data = last
            .strip_prefix("event: error\ndata: ")
            .and_then(|d| d.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not an error event: {last:?}"));
        let data: serde_json::Value = serde_json::from_str(data).unwrap();
        let message = data["error"].as_str().unwrap();
        assert!(message.contains("stream_idle_timeout"), "{message}");
        assert_eq!(stalls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_plain_body_just_ends() {
        let (stalls, on_stall) = counter();
        let resp = StallGuard::wrap(
            quiet_after("application/json", "{\"partial\":"),
            Duration::from_secs(1),
            on_stall,
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"partial\":");
        assert_eq!(stalls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_stream_is_not_cut() {
        let (stalls, on_stall) = counter();
        let ticks = stream::unfold(0, |n| async move {
            (n < 5).then_some(())?;
            tokio::time::sleep(Duration::from_secs(50)).await;
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from("data: x\n\n"))),
                n + 1,
            ))
        });
        let resp = Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::new(StreamBody::new(ticks)))
            .unwrap();
        let resp = StallGuard::wrap(resp, Duration::from_secs(60), on_stall);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 5 * "data: x\n\n".len());
        assert_eq!(stalls.load(Ordering::SeqCst), 0);
    }
}
