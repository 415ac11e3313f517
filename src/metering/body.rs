//! The answer's body on its way to the client: every frame is passed on as it arrives (nothing is
//! buffered or re-encoded); its end is copied into a small [`Tail`] for the token counts, and the
//! exchange is counted when the last frame has gone, or when the client left. For a key with token
//! limits, a stream's events are counted too, for the estimate charged if it reports no usage.

use super::estimate::Events;
use super::{Exchange, Outcome, Tail};
use crate::activity::Route;
use crate::supervisor::InFlight;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::Response;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A metered answer body; it also holds the instance's in-flight count until its end.
pub(crate) struct Metered {
    inner: Body,
    exchange: Option<Exchange>,
    in_flight: Option<InFlight>,
    outcome: Outcome,
    /// `None` where the answer cannot carry token counts (reads: health, props, models).
    tail: Option<Tail>,
    /// The events passed, for a stream charged to a key with token limits; `None` otherwise.
    events: Option<Events>,
    /// Whether the last frame was sent.
    complete: bool,
}

impl Metered {
    /// `resp` with its body metered for `exchange` (if metering is on), holding `in_flight` until
    /// the body's end.
    pub(crate) fn wrap(
        resp: Response<Body>,
        exchange: Option<Exchange>,
        in_flight: InFlight,
    ) -> Response<Body> {
        let streamed = crate::upstream::is_event_stream(resp.headers());
        let outcome = Outcome {
            status: resp.status().as_u16(),
            streamed,
            ..Outcome::default()
        };
        let tail = exchange
            .as_ref()
            .filter(|e| e.route() != Route::Read)
            .map(|_| Tail::for_answer(streamed));
        let events = exchange
            .as_ref()
            .filter(|e| streamed && e.estimate().is_some())
            .map(|_| Events::default());
        resp.map(|inner| {
            Body::new(Metered {
                inner,
                exchange,
                in_flight: Some(in_flight),
                outcome,
                tail,
                events,
                complete: false,
            })
        })
    }
}

impl Metered {
    /// Counts the exchange once, and lets go of the instance.
    fn end(&mut self) {
        self.count();
        self.in_flight = None;
    }

    /// Counts (and charges) the exchange, once.
    fn count(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            if let Some(tail) = &mut self.tail {
                self.outcome.tokens = tail.tokens();
            }
            if let Some(estimate) = exchange.estimate() {
                let events = self.events.as_ref().map(Events::count);
                // An empty body may never be polled: it is whole all the same.
                let complete = self.complete || self.inner.is_end_stream();
                self.outcome.estimate = estimate.charge(self.outcome.tokens, events, complete);
            }
            let instance = self
                .in_flight
                .as_ref()
                .map(|f| f.instance().metrics().as_ref());
            exchange.finish(self.outcome, instance);
        }
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if this.outcome.first_byte.is_none()
                        && !data.is_empty()
                        && this.exchange.is_some()
                    {
                        this.outcome.first_byte = this.exchange.as_ref().map(Exchange::elapsed);
                    }
                    if let Some(tail) = &mut this.tail {
                        tail.push(data);
                    }
                    if let Some(events) = &mut this.events {
                        events.push(data);
                    }
                }
                // A stream is whole for its client at `data: [DONE]`: it is counted and charged
                // there, before the client can read it, so the client's next request already
                // sees the charge (the backend may end its body a moment later). The instance is
                // still held until the body's end.
                if this.outcome.streamed
                    && this.exchange.is_some()
                    && this.tail.as_ref().is_some_and(Tail::ends_with_done)
                {
                    this.complete = true;
                    this.count();
                }
                if this.inner.is_end_stream() {
                    this.complete = true;
                    this.end();
                }
            }
            Poll::Ready(None) => {
                this.complete = true;
                this.end();
            }
            Poll::Ready(Some(Err(_))) => this.end(),
            Poll::Pending => {}
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

impl Drop for Metered {
    fn drop(&mut self) {
        // The client left before the end (or the answer was never polled): counted as it stands.
        self.end();
    }
}
