//! A request at the backend whose answer has not begun. A non-streamed answer begins only when
//! the backend has generated all of it, so a client that leaves before then (its request is
//! dropped while it waits) would be charged nothing: dropped here, a key with token limits is
//! charged the estimate of a cut answer (see [`super::Estimate`]).

use super::Exchange;

/// An exchange waiting for its answer; [`Awaiting::answered`] takes it back once it began.
#[derive(Debug)]
pub(crate) struct Awaiting(Option<Exchange>);

impl Awaiting {
    /// `exchange`, whose request is about to be sent.
    pub(crate) fn new(exchange: Option<Exchange>) -> Self {
        Awaiting(exchange)
    }

    /// The exchange back, once the backend answered (or failed to).
    pub(crate) fn answered(mut self) -> Option<Exchange> {
        self.0.take()
    }
}

impl Drop for Awaiting {
    fn drop(&mut self) {
        if let Some(exchange) = self.0.take() {
            exchange.abandon();
        }
    }
}
