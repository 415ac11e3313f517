//! One scrape: the counters kept between scrapes, plus what is read now (each instance's status,
//! in-flight requests and memory; llamactl's own process figures; open connections), encoded in
//! the format the scraper asked for.

use super::instance::{InstanceMetrics, QueueRefusal};
use super::process;
use super::Metrics;
use crate::names;
use crate::supervisor::Status;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;

/// The exposition format: OpenMetrics for scrapers that ask for it (Prometheus does), the classic
/// Prometheus text format otherwise (curl, older tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4`.
    Prometheus,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub(crate) fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The answer's `Content-Type`.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// One instance as a scrape sees it.
#[derive(Debug)]
pub(crate) struct InstanceSample {
    pub(crate) name: String,
    pub(crate) status: Status,
    pub(crate) in_flight: usize,
    pub(crate) pid: Option<u32>,
    pub(crate) metrics: Arc<InstanceMetrics>,
}

/// What a scrape reads at the moment it happens.
#[derive(Debug)]
pub(crate) struct Scrape {
    pub(crate) instances: Vec<InstanceSample>,
    pub(crate) open_connections: usize,
    pub(crate) activity_dropped: u64,
    /// Tasks alive on llamactl's runtimes (the main one and every HTTP worker's).
    pub(crate) tasks: usize,
}

/// Reads one counter of an instance.
type Read = fn(&InstanceMetrics) -> u64;

/// Every status an instance can have: each gets a series, 1 for the current one.
const STATUSES: [Status; 6] = [
    Status::Stopped,
    Status::Starting,
    Status::Running,
    Status::Stopping,
    Status::Restarting,
    Status::Failed,
];

impl Metrics {
    /// Every metric, encoded in `format`.
    pub(crate) fn render(&self, scrape: Scrape, format: Format) -> Result<String, fmt::Error> {
        let f = &self.inner;
        let mut registry = Registry::default();
        registry.register(
            "llamactl_build",
            "llamactl's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "llamactl_key_requests",
            "Inference requests by API key",
            f.key_requests.clone(),
        );
        registry.register(
            "llamactl_key_prompt_tokens",
            "Prompt tokens by API key, as the backends reported them",
            f.key_prompt_tokens.clone(),
        );
        registry.register(
            "llamactl_key_completion_tokens",
            "Completion tokens by API key, as the backends reported them",
            f.key_completion_tokens.clone(),
        );
        registry.register(
            "llamactl_auth_failures",
            "Requests refused for a missing, unknown, expired or revoked key (401) or a key of the wrong kind or scope (403)",
            f.auth_failures.clone(),
        );
        registry.register(
            "llamactl_auth_rate_limited",
            "Requests refused with 429 because their client failed authentication too often",
            f.auth_rate_limited.clone(),
        );
        registry.register(
            "llamactl_quota_refusals",
            "Requests refused with 429 because their key's limit was used up, by limit \
             (requests_per_minute, tokens_per_minute, tokens_per_day)",
            f.quota_refusals.clone(),
        );
        registry.register(
            "llamactl_accept_errors",
            "Connections llamactl could not take at accept, by cause: out_of_descriptors ones were \
             answered 503 and closed",
            f.accept_errors.clone(),
        );
        registry.register_collector(Box::new(scrape));
        let mut out = String::with_capacity(16 * 1024);
        match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
            }
        }
        Ok(out)
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.encode_server(&mut enc)?;
        self.encode_instances(&mut enc)
    }
}

/// Encodes one gauge or counter family whose samples are `(labels, value)`.
macro_rules! family {
    ($enc:expr, $name:expr, $help:expr, $kind:expr, $samples:expr, $metric:path) => {{
        let mut m = $enc.encode_descriptor($name, $help, None, $kind)?;
        for (labels, value) in $samples {
            $metric(value).encode(m.encode_family(&labels)?)?;
        }
    }};
}

impl Scrape {
    fn encode_server(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let own = process::this_process();
        let none: [(&str, &str); 0] = [];
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory of llamactl itself",
                own.resident_bytes.map(|b| b as i64),
            ),
            (
                "process_open_fds",
                "Open file descriptors of llamactl",
                own.open_fds.map(|n| n as i64),
            ),
            (
                "llamactl_open_connections",
                "Client connections open now",
                Some(self.open_connections as i64),
            ),
            (
                "llamactl_tasks",
                "Async tasks alive now on llamactl's runtimes (the main one and each HTTP worker's)",
                Some(self.tasks as i64),
            ),
        ];
        for (name, help, value) in gauges {
            family!(
                enc,
                name,
                help,
                MetricType::Gauge,
                value.into_iter().map(|v| (none, v)),
                ConstGauge::new
            );
        }
        if let Some(seconds) = own.start_time_seconds {
            family!(
                enc,
                "process_start_time_seconds",
                "When llamactl started, Unix seconds",
                MetricType::Gauge,
                [(none, seconds)],
                ConstGauge::new
            );
        }
        if let Some(seconds) = own.cpu_seconds {
            family!(
                enc,
                "process_cpu_seconds",
                "CPU time llamactl used, user and system",
                MetricType::Counter,
                [(none, seconds)],
                ConstCounter::new
            );
        }
        family!(
            enc,
            "llamactl_activity_dropped",
            "Activity records dropped because the writer fell behind",
            MetricType::Counter,
            [(none, self.activity_dropped)],
            ConstCounter::new
        );
        Ok(())
    }

    fn encode_instances(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let instances = &self.instances;
        let one = |s: &InstanceSample| [("instance", s.name.clone())];
        family!(
            enc,
            "llamactl_instance_status",
            "1 for the instance's current status, 0 for the others",
            MetricType::Gauge,
            instances.iter().flat_map(|s| {
                STATUSES.iter().map(|status| {
                    let labels = [
                        ("instance", s.name.clone()),
                        ("status", names::name_of(status)),
                    ];
                    (labels, i64::from(*status == s.status))
                })
            }),
            ConstGauge::new
        );
        family!(
            enc,
            "llamactl_instance_requests_in_flight",
            "Requests being answered by the instance now (a cold start being waited on counts)",
            MetricType::Gauge,
            instances.iter().map(|s| (one(s), s.in_flight as i64)),
            ConstGauge::new
        );
        family!(
            enc,
            "llamactl_instance_queue_length",
            "Requests waiting now: for a place among the instance's max_concurrent, or for room at max_running_instances",
            MetricType::Gauge,
            instances.iter().map(|s| (one(s), s.metrics.queued_now())),
            ConstGauge::new
        );
        family!(
            enc,
            "llamactl_instance_queue_refusals",
            "Requests the instance's queue refused, by reason: full (max_queue, 503), timeout (queue_timeout, 503), no_room (nothing freed within on_demand_start_timeout, 409), eviction_off (409)",
            MetricType::Counter,
            instances.iter().flat_map(|s| {
                QueueRefusal::ALL.iter().map(|why| {
                    let labels = [
                        ("instance", s.name.clone()),
                        ("reason", names::name_of(why)),
                    ];
                    (labels, s.metrics.queue_refusals[*why as usize].get())
                })
            }),
            ConstCounter::new
        );
        family!(
            enc,
            "llamactl_instance_resident_memory_bytes",
            "Resident memory of the instance's backend process",
            MetricType::Gauge,
            instances.iter().filter_map(|s| {
                let bytes = process::resident_bytes(s.pid?)?;
                Some((one(s), bytes as i64))
            }),
            ConstGauge::new
        );
        {
            let mut m = enc.encode_descriptor(
                "llamactl_instance_requests",
                "Requests forwarded to the instance, by route class and status code",
                None,
                MetricType::Counter,
            )?;
            for s in instances {
                let requests = s.metrics.requests.read().unwrap_or_else(|p| p.into_inner());
                for ((route, code), counter) in requests.iter() {
                    let labels = [
                        ("instance", s.name.clone()),
                        ("route", names::name_of(route)),
                        ("code", code.to_string()),
                    ];
                    counter.encode(m.encode_family(&labels)?)?;
                }
            }
        }
        for (name, help, first_byte) in [
            (
                "llamactl_instance_request_duration_seconds",
                "Time from a request's arrival to the last byte of its answer",
                false,
            ),
            (
                "llamactl_instance_time_to_first_byte_seconds",
                "Time from a request's arrival to the first byte of the answer's body (the first \
                 token of a stream)",
                true,
            ),
        ] {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for s in instances {
                let latency = s.metrics.latency.read().unwrap_or_else(|p| p.into_inner());
                for (route, l) in latency.iter() {
                    let labels = [
                        ("instance", s.name.clone()),
                        ("route", names::name_of(route)),
                    ];
                    let histogram = if first_byte {
                        &l.first_byte
                    } else {
                        &l.duration
                    };
                    histogram.encode(m.encode_family(&labels)?)?;
                }
            }
        }
        let counters: [(&str, &str, Read); 10] = [
            (
                "llamactl_instance_swaps",
                "Starts of the instance that stopped another one to make room at max_running_instances",
                |m| m.swaps.get(),
            ),
            (
                "llamactl_instance_prompt_tokens",
                "Prompt tokens the instance's backend reported",
                |m| m.prompt_tokens.get(),
            ),
            (
                "llamactl_instance_completion_tokens",
                "Completion tokens the instance's backend reported",
                |m| m.completion_tokens.get(),
            ),
            (
                "llamactl_instance_restarts",
                "Restarts after a crash",
                |m| m.restarts.get(),
            ),
            (
                "llamactl_instance_crashes",
                "Backend exits while running",
                |m| m.crashes.get(),
            ),
            (
                "llamactl_instance_on_demand_starts",
                "Starts made by an inference request",
                |m| m.on_demand_starts.get(),
            ),
            (
                "llamactl_instance_evictions",
                "Stops to make room for another instance at the running limit",
                |m| m.evictions.get(),
            ),
            (
                "llamactl_instance_idle_stops",
                "Stops after the instance's idle_timeout",
                |m| m.idle_stops.get(),
            ),
            (
                "llamactl_instance_unresponsive",
                "Kills after the instance missed instances.health_check_failures health checks in a row",
                |m| m.unresponsive.get(),
            ),
            (
                "llamactl_instance_stalled_answers",
                "Answers ended because the backend sent nothing for instances.stream_idle_timeout",
                |m| m.stalled_answers.get(),
            ),
        ];
        for (name, help, read) in counters {
            family!(
                enc,
                name,
                help,
                MetricType::Counter,
                instances.iter().map(|s| (one(s), read(&s.metrics))),
                ConstCounter::new
            );
        }
        {
            let mut m = enc.encode_descriptor(
                "llamactl_instance_queue_wait_seconds",
                "Time a request waited in a queue of the instance (for a place among max_concurrent, or for room at max_running_instances), whether it was let in or refused",
                None,
                MetricType::Histogram,
            )?;
            for s in instances {
                s.metrics.queue_wait.encode(m.encode_family(&one(s))?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "llamactl_instance_start_duration_seconds",
            "Time from spawning the backend to its first healthy answer",
            None,
            MetricType::Histogram,
        )?;
        for s in instances {
            s.metrics.start_duration.encode(m.encode_family(&one(s))?)?;
        }
        Ok(())
    }
}
