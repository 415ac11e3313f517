//! Measures each inference exchange (a request routed to an instance, and its answer): how long it
//! took, how long until the answer's first byte, the status the client got, and the tokens the
//! backend reported. The answer streams through untouched ([`Metered`]); when it has been sent (or
//! the client left), the exchange is counted once: in the instance's and the key's metrics, and
//! (unless it was a read: health, props, models, slots) in the activity record and the request log.

mod awaiting;
mod body;
mod estimate;
mod tokens;

pub(crate) use awaiting::Awaiting;
pub(crate) use body::Metered;
pub(crate) use estimate::Estimate;
pub use tokens::{Tail, Tokens};

use crate::activity::{Record, Recorder, Route};
use crate::audit::Actor;
use crate::metrics::{InstanceMetrics, KeyLabels, Metrics};
use crate::names;
use crate::quota::KeyQuota;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where finished exchanges go. With all three off, nothing is measured at all.
#[derive(Debug)]
pub struct Sinks {
    /// Prometheus counters; `None` while `/metrics` is off (nobody could read them).
    pub metrics: Option<Metrics>,
    /// The activity record; `None` while `activity.enabled` is off.
    pub activity: Option<Recorder>,
    /// One log line per exchange.
    pub log_requests: bool,
}

/// Measures exchanges into its [`Sinks`]; cheap to clone (one reference count).
#[derive(Debug, Clone)]
pub struct Meter {
    sinks: Arc<Sinks>,
}

impl Meter {
    /// A meter counting into `sinks`.
    pub fn new(sinks: Sinks) -> Self {
        Meter {
            sinks: Arc::new(sinks),
        }
    }

    /// Starts measuring a request that arrived at `started`, made by `caller` to `instance`,
    /// whose tokens are charged as `charge` says (if its key has limits); `None` when metering is
    /// off and there is nothing to charge. The caller is taken, not copied: the hot path
    /// allocates nothing more for a read.
    pub(crate) fn begin(
        &self,
        started: Instant,
        caller: Actor,
        instance: &str,
        route: Route,
        charge: Option<Charge>,
    ) -> Option<Exchange> {
        let sinks = &self.sinks;
        if sinks.metrics.is_none()
            && sinks.activity.is_none()
            && !sinks.log_requests
            && charge.is_none()
        {
            return None;
        }
        Some(Exchange {
            charge,
            meter: self.clone(),
            started,
            caller,
            // Reads go to the metrics only, which reach the instance through the request's hold.
            instance: (route != Route::Read).then(|| instance.to_string()),
            route,
        })
    }
}

/// Where a limited key's answer is charged.
#[derive(Debug)]
pub(crate) struct Charge {
    /// The key's counters.
    pub(crate) quota: Arc<KeyQuota>,
    /// What to charge if the answer ends without usage; `None` unless the key has token limits.
    pub(crate) estimate: Option<Estimate>,
}

/// One request being measured; counted once, by [`Exchange::finish`].
#[derive(Debug)]
pub(crate) struct Exchange {
    meter: Meter,
    started: Instant,
    caller: Actor,
    /// Where the answer's tokens are charged, if the key has limits.
    charge: Option<Charge>,
    /// The instance asked for; `None` for reads, which are not recorded or logged.
    instance: Option<String>,
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
    /// The tokens charged instead of `tokens`, when the answer ended without them (see
    /// [`Estimate`]); never in the metrics or the activity record, which keep what was reported.
    pub(crate) estimate: Option<u64>,
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

    /// What to charge if the answer ends without usage; `None` unless the key has token limits.
    pub(crate) fn estimate(&self) -> Option<Estimate> {
        self.charge.as_ref().and_then(|c| c.estimate)
    }

    /// Charges the estimate of an answer that never came: the request was sent to the backend,
    /// and dropped (the client left) before the answer began. Nothing else is counted.
    fn abandon(self) {
        if let Some(Charge {
            quota,
            estimate: Some(estimate),
        }) = self.charge
        {
            if let Some(tokens) = estimate.charge(Tokens::default(), None, false) {
                quota.charge(tokens, crate::quota::Moment::now());
            }
        }
    }

    /// Counts the exchange: in `instance`'s metrics (the instance it reached, if any) and the
    /// key's; unless it was a read (health, props, models, slots: no inference, and a load
    /// balancer's probes would flood them), in the activity record and the request log.
    pub(crate) fn finish(self, outcome: Outcome, instance: Option<&InstanceMetrics>) {
        let duration = self.started.elapsed();
        let Outcome {
            status,
            first_byte,
            tokens,
            streamed,
            estimate,
        } = outcome;
        if let Some(charge) = &self.charge {
            let used = estimate
                .unwrap_or_else(|| tokens.prompt.unwrap_or(0) + tokens.completion.unwrap_or(0));
            charge.quota.charge(used, crate::quota::Moment::now());
        }
        let sinks = &*self.meter.sinks;
        let Actor {
            name,
            key_id,
            addr: client,
        } = self.caller;
        let key = KeyLabels {
            key_id: key_id.unwrap_or_default(),
            key_name: name,
        };
        if let Some(metrics) = &sinks.metrics {
            if let Some(m) = instance {
                m.request(self.route, status, duration, first_byte, tokens);
            }
            metrics.key_request(&key, tokens);
        }
        let Some(instance) = self.instance else {
            return;
        };
        let arrived = SystemTime::now()
            .checked_sub(duration)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let at_ms = i64::try_from(arrived.as_millis()).unwrap_or(i64::MAX);
        if sinks.log_requests {
            tracing::info!(
                target: "llamactl::request",
                key_id = %key.key_id,
                key = %key.key_name,
                instance = %instance,
                route = %names::name_of(&self.route),
                status,
                duration_ms = duration.as_millis() as u64,
                first_byte_ms = first_byte.map(|d| d.as_millis() as u64),
                prompt_tokens = tokens.prompt,
                completion_tokens = tokens.completion,
                streamed,
                client = client.map(tracing::field::display),
                at_ms,
                "inference request"
            );
        }
        if let Some(activity) = &sinks.activity {
            let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            activity.record(Record {
                at_ms,
                key_id: (!key.key_id.is_empty()).then_some(key.key_id),
                key_name: key.key_name,
                instance,
                route: self.route,
                status,
                duration_ms: millis(duration),
                ttfb_ms: first_byte.map(millis),
                prompt_tokens: tokens.prompt,
                completion_tokens: tokens.completion,
                streamed,
                client_addr: client,
            });
        }
    }
}
