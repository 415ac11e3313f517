//! Measures each inference exchange (a request routed to an instance, and its answer): how long it
//! took, how long until the answer's first byte, the status the client got, and the tokens the
//! backend reported. The answer streams through untouched ([`Metered`]); when it has been sent (or
//! the client left), the exchange is counted once: in the instance's and the key's metrics, in the
//! activity record, and in the request log.

mod body;
mod tokens;

pub(crate) use body::Metered;
pub use tokens::{Tail, Tokens};

use crate::activity::{Record, Recorder, Route};
use crate::audit::Actor;
use crate::metrics::{InstanceMetrics, KeyLabels, Metrics};
use crate::names;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// Starts measuring a request by `caller` to `instance` (whose metrics, if it exists, are
    /// `instance_metrics`); `None` when metering is off.
    pub(crate) fn begin(
        &self,
        caller: &Actor,
        instance: &str,
        route: Route,
        instance_metrics: impl FnOnce() -> Option<Arc<InstanceMetrics>>,
    ) -> Option<Exchange> {
        if !self.is_on() {
            return None;
        }
        let instance_metrics = self.metrics.as_ref().and_then(|_| instance_metrics());
        Some(Exchange {
            meter: self.clone(),
            started: Instant::now(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            key_id: caller.key_id.clone(),
            key_name: caller.name.clone(),
            client: caller.addr,
            instance: instance.to_string(),
            route,
            instance_metrics,
        })
    }
}

/// One request being measured; counted once, by [`Exchange::finish`].
#[derive(Debug)]
pub(crate) struct Exchange {
    meter: Meter,
    started: Instant,
    at_ms: i64,
    key_id: Option<String>,
    key_name: String,
    client: Option<IpAddr>,
    instance: String,
    route: Route,
    instance_metrics: Option<Arc<InstanceMetrics>>,
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
    /// The route class being measured.
    pub(crate) fn route(&self) -> Route {
        self.route
    }

    /// Time since the request arrived.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts the exchange: instance and key metrics, the activity record, the request log line.
    pub(crate) fn finish(self, outcome: Outcome) {
        let duration = self.started.elapsed();
        let Outcome {
            status,
            first_byte,
            tokens,
            streamed,
        } = outcome;
        if let Some(m) = &self.instance_metrics {
            m.request(self.route, status, duration, first_byte, tokens);
        }
        if let Some(metrics) = &self.meter.metrics {
            let key = KeyLabels {
                key_id: self.key_id.clone().unwrap_or_default(),
                key_name: self.key_name.clone(),
            };
            metrics.key_request(&key, tokens);
        }
        if self.meter.log_requests {
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
                at_ms = self.at_ms,
                "inference request"
            );
        }
        if let Some(activity) = &self.meter.activity {
            let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            activity.record(Record {
                at_ms: self.at_ms,
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
