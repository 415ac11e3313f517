//! Prometheus metrics, built on `prometheus-client` (the Prometheus project's Rust client: the
//! exposition formats, counters and histograms are its; what is counted is ours).
//!
//! Counters that requests move are atomics updated where the request ends (see `metering`); what
//! is a state rather than an event (status, in-flight requests, memory, open connections) is read
//! when `/metrics` is scraped, so it costs nothing in between. Per-instance series live with the
//! instance ([`InstanceMetrics`]), per-key series with the key's id: every label comes from a
//! bounded set (definitions, keys, route classes, status codes), never from a request's path.

mod collect;
mod instance;
mod process;
mod runtimes;

pub(crate) use collect::{Format, InstanceSample, Scrape};
pub use instance::{InstanceMetrics, QueueRefusal};
pub(crate) use process::{own_resident_bytes, resident_bytes, started_at};
pub use runtimes::Runtimes;

use crate::metering::Tokens;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::Arc;

/// A key as metrics name it: by id and name, never by its secret. Config-file keys and open access
/// have no id and are named by their actor name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KeyLabels {
    pub(crate) key_id: String,
    pub(crate) key_name: String,
}

/// The server-wide metrics; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Families>,
    runtimes: Runtimes,
}

#[derive(Debug, Default)]
struct Families {
    key_requests: Family<KeyLabels, Counter>,
    key_prompt_tokens: Family<KeyLabels, Counter>,
    key_completion_tokens: Family<KeyLabels, Counter>,
    auth_failures: Family<CodeLabel, Counter>,
    auth_rate_limited: Counter,
    quota_refusals: Family<LimitLabel, Counter>,
    accept_errors: Family<KindLabel, Counter>,
}

/// Why a connection could not be accepted.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// The process (EMFILE) or the system (ENFILE) had no descriptor left.
    OutOfDescriptors,
    /// The kernel had no memory for the socket (ENOBUFS, ENOMEM).
    OutOfMemory,
    /// Any other failure of `accept`.
    Other,
}

/// An accept failure's kind, as a label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// The key limit that refused a request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

/// A refusal's status code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

impl Metrics {
    /// The runtimes whose live tasks a scrape counts; each registers itself while it runs.
    pub fn runtimes(&self) -> &Runtimes {
        &self.runtimes
    }

    /// Counts one inference request by `key` and the tokens it cost.
    pub(crate) fn key_request(&self, key: &KeyLabels, tokens: Tokens) {
        let f = &self.inner;
        f.key_requests.get_or_create(key).inc();
        if let Some(n) = tokens.prompt {
            f.key_prompt_tokens.get_or_create(key).inc_by(n);
        }
        if let Some(n) = tokens.completion {
            f.key_completion_tokens.get_or_create(key).inc_by(n);
        }
    }

    /// Counts a request refused for a missing or unknown key (401) or a key of the wrong kind or
    /// scope (403).
    pub(crate) fn auth_failed(&self, code: u16) {
        self.inner
            .auth_failures
            .get_or_create(&CodeLabel { code })
            .inc();
    }

    /// Counts one connection refused or lost at accept, for `why`.
    pub(crate) fn accept_error(&self, why: AcceptError) {
        let kind = match why {
            AcceptError::OutOfDescriptors => "out_of_descriptors",
            AcceptError::OutOfMemory => "out_of_memory",
            AcceptError::Other => "other",
        };
        self.inner
            .accept_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// Counts a request refused with 429 because its key's `limit` was used up.
    pub(crate) fn quota_refused(&self, limit: crate::quota::Limit) {
        self.inner
            .quota_refusals
            .get_or_create(&LimitLabel {
                limit: limit.name(),
            })
            .inc();
    }

    /// Counts a request refused with 429 because its client failed too often.
    pub(crate) fn auth_rate_limited(&self) {
        self.inner.auth_rate_limited.inc();
    }
}
