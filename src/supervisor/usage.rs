//! Who is using an instance right now, and since when nobody has: what LRU eviction and idle stops
//! decide on.
//!
//! A request counts from the moment it picks its instance (before any on-demand start) until its
//! response body is finished or dropped, so a cold start being waited on, a slow answer or a long
//! stream all keep the instance from being evicted or stopped for idleness.
//!
//! An instance chosen for eviction while busy is *draining*: it takes no new request, so what it
//! has in flight (queued requests included) ends, and then it is stopped.

use super::queue::Permit;
use super::Handle;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

/// Requests in flight and the last time one began or ended.
#[derive(Debug)]
pub(super) struct Usage {
    inner: Mutex<Counts>,
    /// Woken when the last request ends or draining begins or ends.
    changed: Notify,
}

#[derive(Debug)]
struct Counts {
    in_flight: usize,
    last_used: Instant,
    /// Drains under way (each eviction that waits for this instance holds one).
    draining: usize,
}

impl Usage {
    /// Nobody in flight, last used now.
    pub(super) fn new() -> Self {
        Usage {
            inner: Mutex::new(Counts {
                in_flight: 0,
                last_used: Instant::now(),
                draining: 0,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one more request unless the instance is draining.
    fn try_begin(&self) -> bool {
        let mut c = self.lock();
        if c.draining > 0 {
            return false;
        }
        c.in_flight += 1;
        c.last_used = Instant::now();
        true
    }

    fn end(&self) {
        let mut c = self.lock();
        c.in_flight = c.in_flight.saturating_sub(1);
        c.last_used = Instant::now();
        let last = c.in_flight == 0;
        drop(c);
        if last {
            self.changed.notify_waiters();
        }
    }

    /// Starts or ends one drain: while any is under way, no request begins.
    pub(super) fn set_draining(&self, draining: bool) {
        {
            let mut c = self.lock();
            c.draining = match draining {
                true => c.draining + 1,
                false => c.draining.saturating_sub(1),
            };
        }
        self.changed.notify_waiters();
    }

    /// Whether the instance is draining.
    pub(super) fn draining(&self) -> bool {
        self.lock().draining > 0
    }

    /// Returns once no request is in flight.
    pub(super) async fn drained(&self) {
        self.wait_until(|c| c.in_flight == 0).await
    }

    /// Returns once the instance no longer drains.
    pub(super) async fn drain_ended(&self) {
        self.wait_until(|c| c.draining == 0).await
    }

    async fn wait_until(&self, done: impl Fn(&Counts) -> bool) {
        loop {
            // Registered before the check, so a change right after it still wakes us.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.lock()) {
                return;
            }
            notified.await;
        }
    }

    /// Marks the instance used now (a start counts as a use, so a fresh start is not the LRU).
    pub(super) fn touch(&self) {
        self.lock().last_used = Instant::now();
    }

    /// When a request last began or ended (or the instance was last started or became ready).
    pub(super) fn last_used(&self) -> Instant {
        self.lock().last_used
    }

    /// Requests in flight right now.
    pub(super) fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Runs `decide` with the last-use time only if no request is in flight, holding the count
    /// locked so no request can begin in between; false if a request is in flight.
    ///
    /// `decide` must not block: it runs under a lock every request takes.
    pub(super) fn if_unused(&self, decide: impl FnOnce(Instant) -> bool) -> bool {
        let c = self.lock();
        c.in_flight == 0 && decide(c.last_used)
    }
}

/// One request using an instance: the instance counts as busy until this is dropped, and its
/// place among the instance's `max_concurrent` (if it has one) is held as long.
#[derive(Debug)]
pub struct InFlight {
    // Declared first, so the place is handed on before the request stops counting.
    permit: Option<Permit>,
    inst: Arc<Handle>,
}

impl InFlight {
    /// Counts one more request on `inst`, unless it is draining.
    pub(super) fn try_begin(inst: Arc<Handle>) -> Option<Self> {
        // Built only when counted: a guard made and dropped for a refused request would end a
        // request that never began, and let a busy instance be evicted under its answers.
        inst.usage()
            .try_begin()
            .then(|| InFlight { permit: None, inst })
    }

    /// Holds `permit` as long as the request.
    pub(super) fn hold(&mut self, permit: Permit) {
        self.permit = Some(permit);
    }

    /// The instance in use.
    pub fn instance(&self) -> &Handle {
        &self.inst
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inst.usage().end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_blocks_a_claim_until_the_request_ends() {
        let usage = Usage::new();
        assert!(usage.try_begin());
        assert_eq!(usage.in_flight(), 1);
        assert!(!usage.if_unused(|_| true), "busy instance is not claimable");
        usage.end();
        assert_eq!(usage.in_flight(), 0);
        assert!(usage.if_unused(|_| true));
        assert!(!usage.if_unused(|_| false), "the decision is the caller's");
    }

    #[tokio::test]
    async fn a_draining_instance_takes_no_request_and_reports_when_drained() {
        let usage = Usage::new();
        assert!(usage.try_begin());
        usage.set_draining(true);
        assert!(!usage.try_begin(), "no new request while draining");
        let drained = usage.drained();
        tokio::pin!(drained);
        assert!(futures_util::poll!(drained.as_mut()).is_pending());
        usage.end();
        drained.await;
        usage.set_draining(false);
        usage.drain_ended().await;
        assert!(usage.try_begin());
    }

    #[test]
    fn ending_a_request_counts_as_a_use() {
        let usage = Usage::new();
        let before = usage.last_used();
        assert!(usage.try_begin());
        usage.end();
        assert!(usage.last_used() >= before);
    }
}
