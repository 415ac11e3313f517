//! One instance's counters and histograms. They live with the instance (its handle), so a deleted
//! instance takes its series with it and the number of series stays bounded by the definitions.

use crate::activity::Route;
use crate::audit::Event;
use crate::metering::Tokens;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Request latency buckets, seconds: a health check takes milliseconds, a long answer minutes.
pub(super) const LATENCY_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Start duration buckets, seconds: a small model loads in about a second, a large one in minutes.
const START_BUCKETS: [f64; 11] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Why a request was refused by an instance's queue, as `/metrics` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueRefusal {
    /// `max_queue` requests were waiting already (503).
    Full,
    /// It waited `queue_timeout` for a place among `max_concurrent` (503).
    Timeout,
    /// No running instance could be freed for it within `on_demand_start_timeout` (409).
    NoRoom,
    /// At `max_running_instances` with eviction off, or not allowed to this key (409).
    EvictionOff,
}

impl QueueRefusal {
    /// Every reason, in the order the counters are kept.
    pub(crate) const ALL: [QueueRefusal; 4] = [
        QueueRefusal::Full,
        QueueRefusal::Timeout,
        QueueRefusal::NoRoom,
        QueueRefusal::EvictionOff,
    ];
}

/// One request waiting in a queue of the instance: counted in the queue's length until dropped,
/// when its wait is recorded.
#[derive(Debug)]
pub struct Waiting {
    metrics: Arc<InstanceMetrics>,
    since: Instant,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.metrics.queued.dec();
        self.metrics
            .queue_wait
            .observe(self.since.elapsed().as_secs_f64());
    }
}

/// Request duration and time to first byte for one route class.
#[derive(Debug)]
pub(super) struct Latency {
    pub(super) duration: Histogram,
    pub(super) first_byte: Histogram,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            duration: Histogram::new(LATENCY_BUCKETS),
            first_byte: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

/// What one instance has served and been through since llamactl started.
#[derive(Debug)]
pub struct InstanceMetrics {
    pub(super) requests: RwLock<HashMap<(Route, u16), Counter>>,
    pub(super) latency: RwLock<HashMap<Route, Latency>>,
    pub(super) prompt_tokens: Counter,
    pub(super) completion_tokens: Counter,
    pub(super) restarts: Counter,
    pub(super) crashes: Counter,
    pub(super) on_demand_starts: Counter,
    pub(super) evictions: Counter,
    pub(super) idle_stops: Counter,
    pub(super) unresponsive: Counter,
    pub(super) stalled_answers: Counter,
    pub(super) start_duration: Histogram,
    pub(super) queued: Gauge,
    pub(super) queue_wait: Histogram,
    pub(super) swaps: Counter,
    pub(super) queue_refusals: [Counter; 4],
}

impl Default for InstanceMetrics {
    fn default() -> Self {
        InstanceMetrics {
            requests: RwLock::default(),
            latency: RwLock::default(),
            prompt_tokens: Counter::default(),
            completion_tokens: Counter::default(),
            restarts: Counter::default(),
            crashes: Counter::default(),
            on_demand_starts: Counter::default(),
            evictions: Counter::default(),
            idle_stops: Counter::default(),
            unresponsive: Counter::default(),
            stalled_answers: Counter::default(),
            start_duration: Histogram::new(START_BUCKETS),
            queued: Gauge::default(),
            queue_wait: Histogram::new(LATENCY_BUCKETS),
            swaps: Counter::default(),
            queue_refusals: Default::default(),
        }
    }
}

impl InstanceMetrics {
    /// Counts one request that ended with `status`. Only the first request of a (route, status)
    /// pair takes the write lock; the rest share the read lock and one atomic add.
    pub(crate) fn request(
        &self,
        route: Route,
        status: u16,
        duration: Duration,
        first_byte: Option<Duration>,
        tokens: Tokens,
    ) {
        let counted = self
            .requests
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(route, status))
            .map(Counter::inc)
            .is_some();
        if !counted {
            self.requests
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry((route, status))
                .or_default()
                .inc();
        }
        let observe = |latency: &Latency| {
            latency.duration.observe(duration.as_secs_f64());
            if let Some(first_byte) = first_byte {
                latency.first_byte.observe(first_byte.as_secs_f64());
            }
        };
        let seen = self
            .latency
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&route)
            .map(observe)
            .is_some();
        if !seen {
            observe(
                self.latency
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(route)
                    .or_default(),
            );
        }
        if let Some(n) = tokens.prompt {
            self.prompt_tokens.inc_by(n);
        }
        if let Some(n) = tokens.completion {
            self.completion_tokens.inc_by(n);
        }
    }

    /// Counts a lifecycle event: crashes, hangs, restarts, evictions and idle stops.
    pub(crate) fn lifecycle(&self, event: Event) {
        let counter = match event {
            Event::Crashed => &self.crashes,
            Event::Restarted => &self.restarts,
            Event::Evicted => &self.evictions,
            Event::IdleStopped => &self.idle_stops,
            Event::Unresponsive => &self.unresponsive,
            _ => return,
        };
        counter.inc();
    }

    /// Counts an answer ended because the backend sent nothing for `stream_idle_timeout`.
    pub(crate) fn stalled_answer(&self) {
        self.stalled_answers.inc();
    }

    /// Counts a start made by an inference request.
    pub(crate) fn on_demand_start(&self) {
        self.on_demand_starts.inc();
    }

    /// Records how long a start took, from spawn to ready.
    pub(crate) fn started_in(&self, took: Duration) {
        self.start_duration.observe(took.as_secs_f64());
    }

    /// Counts a request as waiting in one of the instance's queues until the guard is dropped.
    pub(crate) fn waiting(self: &Arc<Self>) -> Waiting {
        self.queued.inc();
        Waiting {
            metrics: self.clone(),
            since: Instant::now(),
        }
    }

    /// Requests waiting in the instance's queues now.
    pub(crate) fn queued_now(&self) -> i64 {
        self.queued.get()
    }

    /// Counts a start that stopped another instance to make room for this one.
    pub(crate) fn swapped_in(&self) {
        self.swaps.inc();
    }

    /// Counts a request the queue refused.
    pub(crate) fn queue_refused(&self, why: QueueRefusal) {
        self.queue_refusals[why as usize].inc();
    }
}
