//! Who is using an instance right now, and since when nobody has: what LRU eviction and idle stops
//! decide on.
//!
//! A request counts from the moment it picks its instance (before any on-demand start) until its
//! response body is finished or dropped, so a cold start being waited on, a slow answer or a long
//! stream all keep the instance from being evicted or stopped for idleness.

use super::Handle;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Requests in flight and the last time one began or ended.
#[derive(Debug)]
pub(super) struct Usage {
    inner: Mutex<Counts>,
}

#[derive(Debug)]
struct Counts {
    in_flight: usize,
    last_used: Instant,
}

impl Usage {
    /// Nobody in flight, last used now.
    pub(super) fn new() -> Self {
        Usage {
            inner: Mutex::new(Counts {
                in_flight: 0,
                last_used: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self) {
        let mut c = self.lock();
        c.in_flight += 1;
        c.last_used = Instant::now();
    }

    fn end(&self) {
        let mut c = self.lock();
        c.in_flight = c.in_flight.saturating_sub(1);
        c.last_used = Instant::now();
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

/// One request using an instance: the instance counts as busy until this is dropped.
#[derive(Debug)]
pub struct InFlight {
    inst: Arc<Handle>,
}

impl InFlight {
    /// Counts one more request on `inst`.
    pub(super) fn begin(inst: Arc<Handle>) -> Self {
        inst.usage().begin();
        InFlight { inst }
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
        usage.begin();
        assert_eq!(usage.in_flight(), 1);
        assert!(!usage.if_unused(|_| true), "busy instance is not claimable");
        usage.end();
        assert_eq!(usage.in_flight(), 0);
        assert!(usage.if_unused(|_| true));
        assert!(!usage.if_unused(|_| false), "the decision is the caller's");
    }

    #[test]
    fn ending_a_request_counts_as_a_use() {
        let usage = Usage::new();
        let before = usage.last_used();
        usage.begin();
        usage.end();
        assert!(usage.last_used() >= before);
    }
}
