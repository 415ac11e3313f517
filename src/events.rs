//! The live event bus behind `GET /api/v1/events`: every history row as it is stored (published by
//! `Db::record_event`) and every runtime status change (published by the instance's `Handle`).
//!
//! One bounded broadcast ring: a reader that falls behind loses the oldest events and is told how
//! many, so no reader can make the server hold more than the ring.

use crate::db::history::HistoryRow;
use crate::supervisor::Status;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// Events the ring holds.
const CAPACITY: usize = 1024;

/// Something that happened, as it happened.
#[derive(Debug, Clone)]
pub(crate) enum LiveEvent {
    /// A history row, just stored.
    History(Arc<HistoryRow>),
    /// An instance's status changed.
    Status(Arc<StatusChange>),
}

impl LiveEvent {
    /// The instance it concerns, if any.
    pub(crate) fn instance(&self) -> Option<&str> {
        match self {
            LiveEvent::History(row) => row.instance.as_deref(),
            LiveEvent::Status(change) => Some(&change.instance),
        }
    }
}

/// An instance's runtime status changed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatusChange {
    /// The instance.
    pub(crate) instance: String,
    /// Its status now.
    pub(crate) status: Status,
    /// Its status before.
    pub(crate) previous: Status,
    /// When, in Unix milliseconds.
    pub(crate) at_ms: i64,
}

/// What a subscriber gets next.
#[derive(Debug)]
pub(crate) enum Received {
    /// The next event.
    Event(LiveEvent),
    /// This many events were lost: the reader fell behind.
    Lagged(u64),
}

/// The bus; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    ring: broadcast::Sender<LiveEvent>,
    /// True once the server shuts down: every subscription ends.
    closed: Arc<watch::Sender<bool>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::with_capacity(CAPACITY)
    }
}

impl Events {
    /// A bus whose ring holds `capacity` events.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Events {
            ring: broadcast::channel(capacity).0,
            closed: Arc::new(watch::channel(false).0),
        }
    }

    /// Announces an event to whoever listens now.
    pub(crate) fn publish(&self, event: LiveEvent) {
        // Nobody listening is fine.
        let _ = self.ring.send(event);
    }

    /// Listens from now on.
    pub(crate) fn subscribe(&self) -> Subscription {
        Subscription {
            ring: self.ring.subscribe(),
            closed: self.closed.subscribe(),
        }
    }

    /// Ends every subscription: the server is shutting down.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// One listener.
#[derive(Debug)]
pub(crate) struct Subscription {
    ring: broadcast::Receiver<LiveEvent>,
    closed: watch::Receiver<bool>,
}

impl Subscription {
    /// The next event, or how many were missed; `None` once the server shuts down.
    pub(crate) async fn next(&mut self) -> Option<Received> {
        tokio::select! {
            biased;
            _ = closed(&mut self.closed) => None,
            received = self.ring.recv() => match received {
                Ok(event) => Some(Received::Event(event)),
                Err(broadcast::error::RecvError::Lagged(missed)) => Some(Received::Lagged(missed)),
                Err(broadcast::error::RecvError::Closed) => None,
            },
        }
    }
}

/// Completes once the bus is closed (or gone).
async fn closed(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|closed| *closed).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(instance: &str, status: Status) -> LiveEvent {
        LiveEvent::Status(Arc::new(StatusChange {
            instance: instance.into(),
            status,
            previous: Status::Stopped,
            at_ms: 0,
        }))
    }

    fn status_of(received: Option<Received>) -> Status {
        match received {
            Some(Received::Event(LiveEvent::Status(c))) => c.status,
            other => panic!("not a status change: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_is_told_how_many_it_missed_and_goes_on() {
        let events = Events::with_capacity(2);
        let mut sub = events.subscribe();
        for status in [Status::Starting, Status::Running, Status::Stopping] {
            events.publish(change("m", status));
        }
        assert!(matches!(sub.next().await, Some(Received::Lagged(1))));
        assert_eq!(status_of(sub.next().await), Status::Running);
        assert_eq!(status_of(sub.next().await), Status::Stopping);
        events.publish(change("m", Status::Stopped));
        assert_eq!(status_of(sub.next().await), Status::Stopped);
    }

    #[tokio::test]
    async fn closing_ends_every_subscription() {
        let events = Events::default();
        let mut sub = events.subscribe();
        events.close();
        assert!(sub.next().await.is_none());
        assert!(events.subscribe().next().await.is_none());
    }
}
