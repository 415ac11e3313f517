//! Measures each inference exchange (a request routed to an instance, and its answer): how long it
//! took, how long until the answer's first byte, the status the client got, and the tokens the
//! backend reported. The answer streams through untouched ([`Metered`]); when it has been sent (or
//! the client left), the exchange is counted once: in the instance's and the key's metrics, and
//! (unless it was a read: health, props, models, slots) in the activity record and the request log.

mod body;
mod tokens;

pub(crate) use body::Metered;
pub use tokens::{Tail, Tokens};

use crate::activity::{Record, Recorder, Route};
use crate::audit::Actor;
use crate::metrics::{InstanceMetrics, KeyLabels, Metrics};
use crate::names;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where finished exchanges go; cheap to clone. With all three off, nothing is measured at all.
#[derive(Debug, Clone)]
pub struct Meter {
    /// Prometheus counters; `None` while `/metrics` is off (nobody could read them).
    pub metrics: Option<Metrics>,
    /// The activity record; `None` while `activity.enabled` is off.
    pub activity: Option<Recorder>,
    /// One log line per exchange.
    pub log_requests: bool,
}

impl Meter {
    fn is_on(&self) -> bool {
        self.metrics.is_some() || self.activity.is_some() || self.log_requests
    }

    /// Starts measuring a request by `caller` to `instance`; `None` when metering is off.
    pub(crate) fn begin(&self, caller: &Actor, instance: &str, route: Route) -> Option<Exchange> {
        if !self.is_on() {
            return None;
        }
        Some(Exchange {
            meter: self.clone(),
            started: Instant::now(),
            arrived: SystemTime::now(),
            key_id: caller.key_id.clone(),
            key_name: caller.name.clone(),
            client: caller.addr,
            instance: instance.to_string(),
            route,
        })
    }
}

/// One request being measured; counted once, by [`Exchange::finish`].
#[derive(Debug)]
pub(crate) struct Exchange {
    meter: Meter,
    started: Instant,
    arrived: SystemTime,
    key_id: Option<String>,
    key_name: String,
    client: Option<IpAddr>,
    instance: String,
    route: Route,
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Outcome {
    /// The status the client got.
    pub(crate) status: u16,
    /// Time to the first byte of the answer's body, if one was sent.
    pub(crate) first_byte: Option<Duration>,
    /// What the backend said the request cost.
    pub(crate) tokens: Tokens,
    /// Whether the answer was a server-sent-event stream.
    pub(crate) streamed: bool,
}

impl Exchange {
    /// The instance asked for.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// The route class being measured.
    pub(crate) fn route(&self) -> Route {
        self.route
    }

    /// Time since the request arrived.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts the exchange: in `instance`'s metrics (the instance it reached, if any) and the
    /// key's, the activity record, the request log line.
    pub(crate) fn finish(self, outcome: Outcome, instance: Option<&InstanceMetrics>) {
        let duration = self.started.elapsed();
        let Outcome {
            status,
            first_byte,
            tokens,
            streamed,
        } = outcome;
        if let (Some(m), Some(_)) = (instance, &self.meter.metrics) {
            m.request(self.route, status, duration, first_byte, tokens);
        }
        if let Some(metrics) = &self.meter.metrics {
            let key = KeyLabels {
                key_id: self.key_id.clone().unwrap_or_default(),
                key_name: self.key_name.clone(),
            };
            metrics.key_request(&key, tokens);
        }
        // Reads (health, props, models, slots) are counted in the metrics only: they are no
        // inference, and a load balancer's health probes would flood the log and the record.
        let inference = self.route != Route::Read;
        let at_ms = || {
            let since_epoch = self.arrived.duration_since(UNIX_EPOCH).unwrap_or_default();
            i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
        };
        if self.meter.log_requests && inference {
            tracing::info!(
                target: "llamactl::request",
                key_id = self.key_id.as_deref().unwrap_or_default(),
                key = %self.key_name,
                instance = %self.instance,
                route = %names::name_of(&self.route),
                status,
                duration_ms = duration.as_millis() as u64,
                first_byte_ms = first_byte.map(|d| d.as_millis() as u64),
                prompt_tokens = tokens.prompt,
                completion_tokens = tokens.completion,
                streamed,
                client = self.client.map(tracing::field::display),
                at_ms = at_ms(),
                "inference request"
            );
        }
        if let (Some(activity), true) = (&self.meter.activity, inference) {
            let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            activity.record(Record {
                at_ms: at_ms(),
                key_id: self.key_id,
                key_name: self.key_name,
                instance: self.instance,
                route: self.route,
                status,
                duration_ms: millis(duration),
                ttfb_ms: first_byte.map(millis),
                prompt_tokens: tokens.prompt,
                completion_tokens: tokens.completion,
                streamed,
                client_addr: self.client,
            });
        }
    }
}
