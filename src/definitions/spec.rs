//! An instance's definition (what the user asked for), how request bodies become one, and its checks.
//!
//! Two body shapes are accepted: flat (instance-level keys beside llama.cpp options, as in the API
//! reference) and structured (`backend_type` / `backend_options`). Both turn into a [`SpecPatch`], which
//! creates a definition or updates one.

use super::{environment, options, secrets};
use crate::config::{InstancesConfig, Minutes};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Which inference server runs the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackendType {
    /// llama.cpp's `llama-server`.
    #[default]
    LlamaCpp,
}

impl BackendType {
    fn parse(value: &Value) -> Result<Self> {
        match value.as_str() {
            Some("llama_cpp") | Some("llama-cpp") | Some("llamacpp") => Ok(BackendType::LlamaCpp),
            _ => Err(Error::BadRequest(format!(
                "unsupported backend_type {value} (supported: \"llama_cpp\")"
            ))),
        }
    }
}

/// The stored definition of an instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceSpec {
    /// The backend kind.
    pub backend_type: BackendType,
    /// Options passed to the backend as flags, in the order given.
    #[schema(value_type = Object)]
    pub backend_options: Map<String, Value>,
    /// Restart after a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_restart: Option<bool>,
    /// Restarts in a row before giving up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// Seconds to wait before a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_delay: Option<u64>,
    /// Start on the first inference request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_start: Option<bool>,
    /// Start on demand even after an operator stopped it through the API (default: no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_after_stop: Option<bool>,
    /// Minutes without requests before the instance is stopped; 0 = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, minimum = 0)]
    pub idle_timeout: Option<Minutes>,
    /// Extra environment for the child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    /// A fixed port inside the configured range; otherwise one is chosen at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Requests answered at once; more wait in the instance's queue (unset: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 65536)]
    pub max_concurrent: Option<u32>,
    /// Requests that may wait beyond `max_concurrent`; more are refused with 503 (unset: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 1000000)]
    pub max_queue: Option<u32>,
    /// Seconds a request may wait in the queue before it is refused with 503 (unset: the
    /// server's `instances.on_demand_start_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86400)]
    pub queue_timeout: Option<u64>,
}

/// Largest `max_concurrent`, `max_queue` and `queue_timeout` accepted.
const MAX_CONCURRENT: u32 = 65_536;
const MAX_QUEUE: u32 = 1_000_000;
const MAX_QUEUE_TIMEOUT: u64 = 86_400;

/// How an instance's request queue is set, with the server's defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Requests answered at once (`None`: no limit, no queue).
    pub max_concurrent: Option<usize>,
    /// Requests that may wait (`None`: no limit).
    pub max_queue: Option<usize>,
    /// Seconds one may wait.
    pub queue_timeout: u64,
}

/// Lifecycle settings after defaults are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifecycle {
    /// Restart after a crash.
    pub auto_restart: bool,
    /// Restarts in a row before giving up.
    pub max_restarts: u32,
    /// Seconds to wait before a restart.
    pub restart_delay: u64,
    /// Start on the first inference request.
    pub on_demand_start: bool,
    /// Start on demand even after an operator stopped it.
    pub on_demand_after_stop: bool,
    /// Minutes idle before stopping; 0 = never.
    pub idle_timeout: Minutes,
}

impl InstanceSpec {
    /// The lifecycle settings in force, with the config's defaults for what the spec leaves open.
    pub fn lifecycle(&self, defaults: &InstancesConfig) -> Lifecycle {
        Lifecycle {
            auto_restart: self.auto_restart.unwrap_or(defaults.default_auto_restart),
            max_restarts: self.max_restarts.unwrap_or(defaults.default_max_restarts),
            restart_delay: self.restart_delay.unwrap_or(defaults.default_restart_delay),
            on_demand_start: self
                .on_demand_start
                .unwrap_or(defaults.default_on_demand_start),
            on_demand_after_stop: self.on_demand_after_stop.unwrap_or(false),
            idle_timeout: self.idle_timeout.unwrap_or(defaults.default_idle_timeout),
        }
    }

    /// The request queue in force, with the config's defaults for what the spec leaves open.
    pub fn queue_limits(&self, defaults: &InstancesConfig) -> QueueLimits {
        QueueLimits {
            max_concurrent: self.max_concurrent.map(|n| n as usize),
            max_queue: self.max_queue.map(|n| n as usize),
            queue_timeout: self
                .queue_timeout
                .unwrap_or(defaults.on_demand_start_timeout),
        }
    }

    /// Checks the definition against the server's limits and what an API caller may choose:
    /// options (`options.rs`) and environment variables (`environment.rs`), where `operator_env` is
    /// the operator's `backends.*.environment`, which an instance may not override.
    pub fn validate(
        &self,
        limits: &InstancesConfig,
        operator_env: &BTreeMap<String, String>,
    ) -> Result<()> {
        options::validate(&self.backend_options)?;
        if let Some(port) = self.port {
            let [lo, hi] = limits.port_range;
            if port < lo || port > hi {
                return Err(Error::BadRequest(format!(
                    "port {port} is outside the configured port_range [{lo}, {hi}]"
                )));
            }
        }
        check_range("max_concurrent", self.max_concurrent, 1, MAX_CONCURRENT)?;
        check_range("max_queue", self.max_queue, 0, MAX_QUEUE)?;
        check_range("queue_timeout", self.queue_timeout, 1, MAX_QUEUE_TIMEOUT)?;
        for (name, value) in self.environment.iter().flatten() {
            environment::check_variable(name, |n| operator_env.contains_key(n))?;
            environment::check_value(name, value)?;
        }
        Ok(())
    }

    /// Applies a patch: given fields replace, the rest stay. A secret value sent back as the
    /// redaction placeholder keeps the stored one (`secrets.rs`).
    pub fn apply(&mut self, mut patch: SpecPatch) -> Result<()> {
        if let Some(backend_type) = patch.backend_type {
            self.backend_type = backend_type;
        }
        match &mut patch.options {
            OptionsPatch::Keep => {}
            OptionsPatch::Replace(map) | OptionsPatch::Merge(map) => {
                secrets::keep_options(map, &self.backend_options)?
            }
        }
        if let Some(Some(env)) = &mut patch.fields.environment {
            secrets::keep_environment(env, self.environment.as_ref())?;
        }
        match patch.options {
            OptionsPatch::Keep => {}
            OptionsPatch::Replace(map) => self.backend_options = map,
            OptionsPatch::Merge(map) => {
                for (key, value) in map {
                    if value.is_null() {
                        self.backend_options.shift_remove(&key);
                    } else {
                        self.backend_options.insert(key, value);
                    }
                }
            }
        }
        let f = patch.fields;
        set(&mut self.auto_restart, f.auto_restart);
        set(&mut self.max_restarts, f.max_restarts);
        set(&mut self.restart_delay, f.restart_delay);
        set(&mut self.on_demand_start, f.on_demand_start);
        set(&mut self.on_demand_after_stop, f.on_demand_after_stop);
        set(&mut self.idle_timeout, f.idle_timeout);
        set(&mut self.environment, f.environment);
        set(&mut self.port, f.port);
        set(&mut self.max_concurrent, f.max_concurrent);
        set(&mut self.max_queue, f.max_queue);
        set(&mut self.queue_timeout, f.queue_timeout);
        Ok(())
    }
}

/// 400 unless an optional number lies within `lo..=hi`.
fn check_range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    value: Option<T>,
    lo: T,
    hi: T,
) -> Result<()> {
    match value {
        Some(v) if v < lo || v > hi => Err(Error::BadRequest(format!(
            "{key} must be between {lo} and {hi}, not {v}"
        ))),
        _ => Ok(()),
    }
}

/// `None` keeps the value, `Some(None)` resets it to the default, `Some(Some(v))` sets it.
fn set<T>(slot: &mut Option<T>, change: Option<Option<T>>) {
    if let Some(value) = change {
        *slot = value;
    }
}

/// How a body changes the backend options.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum OptionsPatch {
    /// Not mentioned.
    #[default]
    Keep,
    /// Structured body: `backend_options` replaces the whole set.
    Replace(Map<String, Value>),
    /// Flat body: each option given replaces that option; `null` removes it.
    Merge(Map<String, Value>),
}

/// Instance-level fields of a body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldsPatch {
    auto_restart: Option<Option<bool>>,
    max_restarts: Option<Option<u32>>,
    restart_delay: Option<Option<u64>>,
    on_demand_start: Option<Option<bool>>,
    on_demand_after_stop: Option<Option<bool>>,
    idle_timeout: Option<Option<Minutes>>,
    environment: Option<Option<BTreeMap<String, String>>>,
    port: Option<Option<u16>>,
    max_concurrent: Option<Option<u32>>,
    max_queue: Option<Option<u32>>,
    queue_timeout: Option<Option<u64>>,
}

/// A parsed create or update body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpecPatch {
    backend_type: Option<BackendType>,
    options: OptionsPatch,
    fields: FieldsPatch,
}

/// Keys that belong to the instance rather than to the backend.
const INSTANCE_KEYS: &[&str] = &[
    "auto_restart",
    "max_restarts",
    "restart_delay",
    "on_demand_start",
    "on_demand_after_stop",
    "idle_timeout",
    "environment",
    "port",
    "max_concurrent",
    "max_queue",
    "queue_timeout",
];

impl SpecPatch {
    /// Parses a JSON object body of either shape.
    pub fn from_body(body: Map<String, Value>) -> Result<Self> {
        let structured = body.contains_key("backend_type") || body.contains_key("backend_options");
        let mut patch = SpecPatch::default();
        let mut flat_options = Map::new();
        for (key, value) in body {
            match key.as_str() {
                "backend_type" => patch.backend_type = Some(BackendType::parse(&value)?),
                "backend_options" => match value {
                    Value::Object(map) => patch.options = OptionsPatch::Replace(map),
                    Value::Null => patch.options = OptionsPatch::Replace(Map::new()),
                    other => {
                        return Err(Error::BadRequest(format!(
                            "backend_options must be an object, not {}",
                            type_name(&other)
                        )))
                    }
                },
                k if INSTANCE_KEYS.contains(&k) => patch.fields.set(k, value)?,
                _ if structured => {
                    return Err(Error::BadRequest(format!(
                        "unknown field '{key}' (llama.cpp options go inside backend_options)"
                    )))
                }
                _ => {
                    flat_options.insert(key, value);
                }
            }
        }
        if !structured && !flat_options.is_empty() {
            patch.options = OptionsPatch::Merge(flat_options);
        }
        if let OptionsPatch::Replace(map) = &mut patch.options {
            // `null` inside a full set means "absent".
            map.retain(|_, v| !v.is_null());
        }
        Ok(patch)
    }

    /// A new definition from a create body.
    pub fn into_new_spec(self) -> Result<InstanceSpec> {
        let mut spec = InstanceSpec::default();
        spec.apply(self)?;
        Ok(spec)
    }
}

impl FieldsPatch {
    fn set(&mut self, key: &str, value: Value) -> Result<()> {
        match key {
            "auto_restart" => self.auto_restart = Some(typed(key, value)?),
            "max_restarts" => self.max_restarts = Some(typed(key, value)?),
            "restart_delay" => self.restart_delay = Some(typed(key, value)?),
            "on_demand_start" => self.on_demand_start = Some(typed(key, value)?),
            "on_demand_after_stop" => self.on_demand_after_stop = Some(typed(key, value)?),
            "idle_timeout" => self.idle_timeout = Some(typed(key, value)?),
            "environment" => self.environment = Some(typed(key, value)?),
            "port" => self.port = Some(typed(key, value)?),
            "max_concurrent" => self.max_concurrent = Some(typed(key, value)?),
            "max_queue" => self.max_queue = Some(typed(key, value)?),
            "queue_timeout" => self.queue_timeout = Some(typed(key, value)?),
            _ => return Err(Error::Internal(format!("unhandled instance key {key}"))),
        }
        Ok(())
    }
}

fn typed<T: serde::de::DeserializeOwned>(key: &str, value: Value) -> Result<Option<T>> {
    if value.is_null() {
        return Ok(None);
    }
    // JSON has one number type: `3.0` is the integer 3 (as JSON Schema says), though serde's
    // integer types refuse it.
    let value = match value.as_f64() {
        Some(f) if value.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => json_integer(f),
        _ => value,
    };
    let shown = value.to_string();
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| Error::BadRequest(format!("invalid value {shown} for '{key}': {e}")))
}

/// An integral float as a JSON integer (the caller checked it is one, and exactly representable).
fn json_integer(f: f64) -> Value {
    // `as` is exact here: |f| < 2^53 and f has no fraction.
    Value::from(f as i64)
}

pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn defaults() -> InstancesConfig {
        InstancesConfig::default()
    }

    #[test]
    fn integral_floats_are_integers() {
        let spec = SpecPatch::from_body(body(json!({"max_restarts": 3.0, "restart_delay": 5.0})))
            .unwrap()
            .into_new_spec()
            .unwrap();
        assert_eq!((spec.max_restarts, spec.restart_delay), (Some(3), Some(5)));
        assert!(SpecPatch::from_body(body(json!({"max_restarts": 3.5}))).is_err());
    }

    #[test]
    fn flat_body_splits_instance_keys_from_options() {
        let spec = SpecPatch::from_body(body(json!({
            "model": "/m.gguf", "ctx_size": 2048, "on_demand_start": false, "port": 8100
        })))
        .unwrap()
        .into_new_spec()
        .unwrap();
        assert_eq!(
            spec.backend_options,
            body(json!({"model": "/m.gguf", "ctx_size": 2048}))
        );
        assert_eq!(spec.on_demand_start, Some(false));
        assert_eq!(spec.port, Some(8100));
        assert!(spec.validate(&defaults(), &BTreeMap::new()).is_ok());
    }

    #[test]
    fn structured_body_is_accepted_and_rejects_stray_keys() {
        let spec = SpecPatch::from_body(body(json!({
            "backend_type": "llama_cpp",
            "backend_options": {"model": "/m.gguf"},
            "auto_restart": false
        })))
        .unwrap()
        .into_new_spec()
        .unwrap();
        assert_eq!(spec.backend_options, body(json!({"model": "/m.gguf"})));
        assert_eq!(spec.auto_restart, Some(false));

        let err =
            SpecPatch::from_body(body(json!({"backend_options": {}, "model": "x"}))).unwrap_err();
        assert!(err.to_string().contains("unknown field 'model'"));
    }

    #[test]
    fn bad_bodies_are_rejected_with_a_reason() {
        let cases = [
            json!({"backend_type": "vllm2"}),
            json!({"backend_options": [1]}),
            json!({"auto_restart": "yes"}),
            json!({"max_restarts": -1}),
            json!({"port": 70000}),
            json!({"environment": {"A": 1}}),
            json!({"idle_timeout": -1}),
            json!({"idle_timeout": "5"}),
            json!({"max_concurrent": -1}),
            json!({"max_concurrent": 1.5}),
            json!({"queue_timeout": "5"}),
        ];
        for case in cases {
            assert!(
                matches!(
                    SpecPatch::from_body(body(case.clone())),
                    Err(Error::BadRequest(_))
                ),
                "{case}"
            );
        }
    }

    #[test]
    fn invalid_options_fail_validation() {
        let cases = [
            json!({"model": {"nested": 1}}),
            json!({"model": null, "x": [{"a": 1}]}),
            json!({"--model": "x"}),
            json!({"bad key": 1}),
            json!({"host": "0.0.0.0"}),
            json!({"backend_options": {"port": 1}}),
            json!({"port": 80}),
            json!({"environment": {"1BAD": "x"}}),
            json!({"max_concurrent": 0}),
            json!({"max_concurrent": 70000}),
            json!({"max_queue": 2000000}),
            json!({"queue_timeout": 0}),
            json!({"queue_timeout": 100000}),
        ];
        for case in cases {
            let spec = SpecPatch::from_body(body(case.clone()))
                .unwrap()
                .into_new_spec()
                .unwrap();
            assert!(
                matches!(
                    spec.validate(&defaults(), &BTreeMap::new()),
                    Err(Error::BadRequest(_))
                ),
                "{case}"
            );
        }
    }

    #[test]
    fn environment_is_checked_against_the_allowlist_and_the_operator() {
        let operator: BTreeMap<String, String> =
            [("CUDA_VISIBLE_DEVICES".to_string(), "0".to_string())].into();
        for (env, ok) in [
            (json!({"OMP_NUM_THREADS": "2"}), true),
            (json!({"PATH": "/somewhere"}), false),
            (json!({"LD_PRELOAD": "/x.so"}), false),
            (json!({"LLAMA_ARG_PORT": "1"}), false),
            (json!({"CUDA_VISIBLE_DEVICES": "1"}), false),
        ] {
            let spec = SpecPatch::from_body(body(json!({ "environment": env })))
                .unwrap()
                .into_new_spec()
                .unwrap();
            assert_eq!(spec.validate(&defaults(), &operator).is_ok(), ok, "{env}");
        }
    }

    #[test]
    fn a_put_of_the_redacted_view_keeps_the_secrets() {
        let mut spec = SpecPatch::from_body(body(json!({
            "model": "/a.gguf", "api_key": "real-key", "environment": {"HF_TOKEN": "real-token"}
        })))
        .unwrap()
        .into_new_spec()
        .unwrap();
        let shown = serde_json::to_value(spec.redacted()).unwrap();
        assert_eq!(shown["backend_options"]["api_key"], "***");
        let mut echoed = body(shown);
        echoed["backend_options"]["model"] = json!("/b.gguf");
        spec.apply(SpecPatch::from_body(echoed).unwrap()).unwrap();
        assert_eq!(spec.backend_options["api_key"], "real-key");
        assert_eq!(spec.backend_options["model"], "/b.gguf");
        assert_eq!(spec.environment.unwrap()["HF_TOKEN"], "real-token");
    }

    #[test]
    fn flat_update_merges_and_null_removes() {
        let mut spec = SpecPatch::from_body(body(
            json!({"model": "/a.gguf", "ctx_size": 512, "auto_restart": false}),
        ))
        .unwrap()
        .into_new_spec()
        .unwrap();
        spec.apply(
            SpecPatch::from_body(body(
                json!({"ctx_size": 1024, "threads": 2, "auto_restart": null}),
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            spec.backend_options,
            body(json!({"model": "/a.gguf", "ctx_size": 1024, "threads": 2}))
        );
        assert_eq!(spec.auto_restart, None);
        spec.apply(SpecPatch::from_body(body(json!({"threads": null}))).unwrap())
            .unwrap();
        assert!(!spec.backend_options.contains_key("threads"));
    }

    #[test]
    fn structured_update_replaces_options() {
        let mut spec = SpecPatch::from_body(body(json!({"model": "/a.gguf", "ctx_size": 512})))
            .unwrap()
            .into_new_spec()
            .unwrap();
        spec.apply(
            SpecPatch::from_body(body(json!({"backend_options": {"model": "/b.gguf"}}))).unwrap(),
        )
        .unwrap();
        assert_eq!(spec.backend_options, body(json!({"model": "/b.gguf"})));
    }

    #[test]
    fn lifecycle_uses_config_defaults() {
        let spec = SpecPatch::from_body(body(json!({"max_restarts": 7})))
            .unwrap()
            .into_new_spec()
            .unwrap();
        let life = spec.lifecycle(&defaults());
        assert_eq!(life.max_restarts, 7);
        assert!(life.auto_restart);
        assert_eq!(life.restart_delay, 5);
    }

    #[test]
    fn idle_timeout_takes_fractions_of_a_minute() {
        let spec = SpecPatch::from_body(body(json!({"idle_timeout": 0.05})))
            .unwrap()
            .into_new_spec()
            .unwrap();
        let idle = spec.lifecycle(&defaults()).idle_timeout.duration();
        assert_eq!(idle, Some(std::time::Duration::from_secs(3)));
        let whole = SpecPatch::from_body(body(json!({"idle_timeout": 5})))
            .unwrap()
            .into_new_spec()
            .unwrap();
        assert_eq!(serde_json::to_value(&whole).unwrap()["idle_timeout"], 5);
    }

    #[test]
    fn stored_form_round_trips() {
        let spec = SpecPatch::from_body(body(json!({"model": "/a.gguf", "port": 8001})))
            .unwrap()
            .into_new_spec()
            .unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<InstanceSpec>(&text).unwrap(), spec);
    }
}
