//! Configuration: built-in defaults < YAML file < `LLAMACTL_*` environment variables.
//!
//! Every struct denies unknown fields, so a typo in the file is a startup error that names the key.

use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape (unknown key, wrong type).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, naming the key.
        message: String,
    },
    /// An environment variable holds a value of the wrong type.
    #[error("invalid value for {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// Values that parse but make no sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener settings.
    pub server: ServerConfig,
    /// Backend executables.
    pub backends: BackendsConfig,
    /// Holds the SQLite file and the logs.
    pub data_dir: PathBuf,
    /// Database settings.
    pub database: DatabaseConfig,
    /// Instance defaults and limits.
    pub instances: InstancesConfig,
    /// API key settings.
    pub auth: AuthConfig,
    /// Audit and lifecycle history settings.
    pub history: HistoryConfig,
    /// The record of inference requests.
    pub activity: ActivityConfig,
    /// llamactl's own log.
    pub log: LogConfig,
    /// The web dashboard.
    pub ui: UiConfig,
}

/// The web dashboard at `/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Seconds a sign-in session lives at most (it also ends with its key).
    pub session_ttl: u64,
    /// Mark the session cookie `Secure` (sent over HTTPS only). llamactl speaks plain HTTP; set
    /// this when a TLS-terminating proxy in front of it is the only way browsers reach it.
    pub secure_cookie: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            session_ttl: 12 * 60 * 60,
            secure_cookie: false,
        }
    }
}

/// llamactl's own log (on stderr).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Lines for people (`text`) or one JSON object per line for machines (`json`).
    pub format: LogFormat,
    /// One line per inference request: key, instance, route, status, duration, tokens.
    pub requests: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (journald, Loki, Elasticsearch).
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            requests: true,
        }
    }
}

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind; unset means every interface, or loopback only while any auth is off
    /// (see [`Config::listen_host`]).
    pub host: Option<String>,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// CORS origins; none by default, `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Host names (besides IP literals and `localhost`) requests may be addressed to; checked
    /// while any auth is off, and always once the list is not empty (DNS-rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// Serve the OpenAPI document under `/swagger/`.
    pub enable_swagger: bool,
    /// Seconds a request head may take to arrive whole (from a connection's start, or from the
    /// first byte of a later request on a kept-alive connection).
    pub header_read_timeout: u64,
    /// Seconds a connection may sit idle, before its first request or between requests.
    pub keep_alive_timeout: u64,
    /// Seconds a request body may go without sending anything.
    pub request_body_timeout: u64,
    /// Seconds an answer may wait for a client that does not read it.
    pub response_write_timeout: u64,
    /// Connections one client address may hold at once; 0 = a quarter of the open-file limit.
    pub max_connections_per_client: usize,
    /// Serve Prometheus metrics at `/metrics` (behind a management key or a metrics key while
    /// management auth is required).
    pub metrics: bool,
}

/// Executables per backend type.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BackendsConfig {
    /// llama.cpp's `llama-server`.
    #[serde(rename = "llama-cpp", alias = "llama_cpp")]
    pub llama_cpp: BackendConfig,
}

/// How to run one backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// The executable (a path, or a name looked up on PATH).
    pub command: String,
    /// Arguments put before the instance's own flags.
    pub args: Vec<String>,
    /// Added to the child's environment.
    pub environment: BTreeMap<String, String>,
}

/// Database settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// SQLite file; empty means `<data_dir>/llamactl.db`, relative paths are under `data_dir`.
    pub path: PathBuf,
}

/// Instance defaults and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstancesConfig {
    /// Inclusive range of ports handed to instances.
    pub port_range: [u16; 2],
    /// Directory of `<name>.log` files; empty means `<data_dir>/logs`.
    pub logs_dir: PathBuf,
    /// Directory holding one `<name>/` per instance for `slot_save_path`; empty means
    /// `<data_dir>/slots`.
    pub slots_dir: PathBuf,
    /// Most instances that may be defined; -1 = no limit.
    pub max_instances: i64,
    /// Most instances that may run at once; -1 = no limit.
    pub max_running_instances: i64,
    /// At the running limit, stop the least recently used instance instead of refusing.
    pub enable_lru_eviction: bool,
    /// Default for an instance's `auto_restart`.
    pub default_auto_restart: bool,
    /// Default for an instance's `max_restarts`.
    pub default_max_restarts: u32,
    /// Default for an instance's `restart_delay`, in seconds.
    pub default_restart_delay: u64,
    /// Default for an instance's `on_demand_start`.
    pub default_on_demand_start: bool,
    /// Seconds an inference request waits for a cold instance.
    pub on_demand_start_timeout: u64,
    /// Default for an instance's `idle_timeout`, in minutes; 0 = never.
    pub default_idle_timeout: Minutes,
    /// Seconds between two liveness probes (`/health`) of a running instance; 0 = no probes.
    pub health_check_interval: u64,
    /// Probes missed in a row after which a running instance is killed as unresponsive.
    pub health_check_failures: u32,
    /// Seconds an answer may go without a byte from the backend (or the client may take nothing)
    /// before it is ended.
    pub stream_idle_timeout: u64,
}

/// A span of minutes as users write it: whole minutes as in the Go llamactl, or fractions
/// (`0.5` = 30 s). Never negative, never NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Deserialize)]
#[serde(try_from = "f64")]
pub struct Minutes(f64);

impl Minutes {
    /// The span, or `None` for 0 (which means "never") or one too long to represent.
    pub fn duration(self) -> Option<Duration> {
        if self.0 == 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(self.0 * 60.0).ok()
    }
}

impl TryFrom<f64> for Minutes {
    type Error = String;

    fn try_from(minutes: f64) -> Result<Self, Self::Error> {
        if minutes.is_finite() && minutes >= 0.0 {
            Ok(Minutes(minutes))
        } else {
            Err(format!(
                "{minutes} is not a number of minutes (0 or more; 0 = never)"
            ))
        }
    }
}

impl std::str::FromStr for Minutes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let minutes: f64 = s.parse().map_err(|e| format!("{e}"))?;
        Minutes::try_from(minutes)
    }
}

impl std::fmt::Display for Minutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Minutes {
    /// Whole minutes stay integers, so stored and shown definitions read as they were written.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const EXACT: f64 = (1u64 << 53) as f64;
        if self.0.fract() == 0.0 && self.0 < EXACT {
            s.serialize_u64(self.0 as u64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

/// API key settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require a management key on `/api/v1`.
    pub require_management_auth: bool,
    /// Require an inference (or management) key on `/v1` and the instance proxy.
    pub require_inference_auth: bool,
    /// Management keys given in the file.
    pub management_keys: Vec<String>,
    /// Inference keys given in the file.
    pub inference_keys: Vec<String>,
    /// Keys given in the file that may read `/metrics` and nothing else (for a Prometheus server).
    pub metrics_keys: Vec<String>,
    /// Failed authentications a client (by IP) may make in a row before it gets 429.
    pub failed_auth_burst: u32,
    /// Seconds after which a limited client earns one more attempt.
    pub failed_auth_period: u64,
}

/// Audit and lifecycle history settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Most events kept; the oldest are deleted beyond it.
    pub max_events: u64,
}

/// The record of inference requests (`/api/v1/activity`, `/api/v1/usage`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivityConfig {
    /// Record inference requests at all.
    pub enabled: bool,
    /// Most records kept; the oldest are deleted beyond it.
    pub max_records: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            backends: BackendsConfig::default(),
            data_dir: PathBuf::from("./data"),
            database: DatabaseConfig::default(),
            instances: InstancesConfig::default(),
            auth: AuthConfig::default(),
            history: HistoryConfig::default(),
            log: LogConfig::default(),
            ui: UiConfig::default(),
            activity: ActivityConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: None,
            port: 8080,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            enable_swagger: false,
            header_read_timeout: 15,
            keep_alive_timeout: 75,
            request_body_timeout: 60,
            response_write_timeout: 300,
            max_connections_per_client: 0,
            metrics: true,
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            command: "llama-server".into(),
            args: Vec::new(),
            environment: BTreeMap::new(),
        }
    }
}

impl Default for InstancesConfig {
    fn default() -> Self {
        InstancesConfig {
            port_range: [8000, 9000],
            logs_dir: PathBuf::new(),
            slots_dir: PathBuf::new(),
            max_instances: -1,
            max_running_instances: -1,
            enable_lru_eviction: true,
            default_auto_restart: true,
            default_max_restarts: 3,
            default_restart_delay: 5,
            default_on_demand_start: true,
            on_demand_start_timeout: 120,
            default_idle_timeout: Minutes(0.0),
            health_check_interval: 10,
            health_check_failures: 3,
            stream_idle_timeout: 300,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            require_management_auth: true,
            require_inference_auth: true,
            management_keys: Vec::new(),
            inference_keys: Vec::new(),
            metrics_keys: Vec::new(),
            failed_auth_burst: 10,
            failed_auth_period: 6,
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_events: 100_000,
        }
    }
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            enabled: true,
            max_records: 1_000_000,
        }
    }
}

/// Where the configuration came from, for the startup log.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration in force.
    pub config: Config,
    /// The file read, if any.
    pub file: Option<PathBuf>,
}

/// Files searched, in order, when neither `--config` nor `LLAMACTL_CONFIG_PATH` is given.
pub fn search_paths(home: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("llamactl.yaml"), PathBuf::from("config.yaml")];
    if let Some(home) = home {
        paths.push(home.join(".config/llamactl/config.yaml"));
    }
    paths.push(PathBuf::from("/etc/llamactl/config.yaml"));
    paths
}

/// Loads the configuration from the process environment and file system.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    let home = env("HOME").map(PathBuf::from);
    load_with(explicit, &env, home.as_deref())
}

/// Loads the configuration with an injectable environment (for tests).
pub fn load_with(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<Loaded, ConfigError> {
    let chosen = explicit
        .map(Path::to_path_buf)
        .or_else(|| env("LLAMACTL_CONFIG_PATH").map(PathBuf::from));
    let file = match chosen {
        // An explicitly named file must exist.
        Some(path) => Some(path),
        None => search_paths(home).into_iter().find(|p| p.is_file()),
    };
    let mut config = match &file {
        Some(path) => parse_file(path)?,
        None => Config::default(),
    };
    apply_env(&mut config, env)?;
    config.validate()?;
    Ok(Loaded { config, file })
}

fn parse_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses YAML text; an empty file means all defaults.
pub fn parse_str(text: &str) -> Result<Config, String> {
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    serde_norway::from_str(text).map_err(|e| e.to_string())
}

type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// Every supported environment variable and how it changes the configuration.
const ENV_VARS: &[(&str, Setter)] = &[
    ("LLAMACTL_HOST", |c, v| {
        c.server.host = Some(v.to_string());
        Ok(())
    }),
    ("LLAMACTL_PORT", |c, v| parse_into(v, &mut c.server.port)),
    ("LLAMACTL_ALLOWED_ORIGINS", |c, v| {
        c.server.allowed_origins = split_list(v);
        Ok(())
    }),
    ("LLAMACTL_ALLOWED_HOSTS", |c, v| {
        c.server.allowed_hosts = split_list(v);
        Ok(())
    }),
    ("LLAMACTL_ENABLE_SWAGGER", |c, v| {
        parse_bool_into(v, &mut c.server.enable_swagger)
    }),
    ("LLAMACTL_HEADER_READ_TIMEOUT", |c, v| {
        parse_into(v, &mut c.server.header_read_timeout)
    }),
    ("LLAMACTL_KEEP_ALIVE_TIMEOUT", |c, v| {
        parse_into(v, &mut c.server.keep_alive_timeout)
    }),
    ("LLAMACTL_REQUEST_BODY_TIMEOUT", |c, v| {
        parse_into(v, &mut c.server.request_body_timeout)
    }),
    ("LLAMACTL_RESPONSE_WRITE_TIMEOUT", |c, v| {
        parse_into(v, &mut c.server.response_write_timeout)
    }),
    ("LLAMACTL_MAX_CONNECTIONS_PER_CLIENT", |c, v| {
        parse_into(v, &mut c.server.max_connections_per_client)
    }),
    ("LLAMACTL_DATA_DIRECTORY", |c, v| {
        c.data_dir = PathBuf::from(v);
        Ok(())
    }),
    ("LLAMACTL_DATABASE_PATH", |c, v| {
        c.database.path = PathBuf::from(v);
        Ok(())
    }),
    ("LLAMACTL_LOGS_DIR", |c, v| {
        c.instances.logs_dir = PathBuf::from(v);
        Ok(())
    }),
    ("LLAMACTL_SLOTS_DIR", |c, v| {
        c.instances.slots_dir = PathBuf::from(v);
        Ok(())
    }),
    ("LLAMACTL_INSTANCE_PORT_RANGE", |c, v| {
        c.instances.port_range = parse_port_range(v)?;
        Ok(())
    }),
    ("LLAMACTL_MAX_INSTANCES", |c, v| {
        parse_into(v, &mut c.instances.max_instances)
    }),
    ("LLAMACTL_MAX_RUNNING_INSTANCES", |c, v| {
        parse_into(v, &mut c.instances.max_running_instances)
    }),
    ("LLAMACTL_ENABLE_LRU_EVICTION", |c, v| {
        parse_bool_into(v, &mut c.instances.enable_lru_eviction)
    }),
    ("LLAMACTL_DEFAULT_AUTO_RESTART", |c, v| {
        parse_bool_into(v, &mut c.instances.default_auto_restart)
    }),
    ("LLAMACTL_DEFAULT_MAX_RESTARTS", |c, v| {
        parse_into(v, &mut c.instances.default_max_restarts)
    }),
    ("LLAMACTL_DEFAULT_RESTART_DELAY", |c, v| {
        parse_into(v, &mut c.instances.default_restart_delay)
    }),
    ("LLAMACTL_DEFAULT_ON_DEMAND_START", |c, v| {
        parse_bool_into(v, &mut c.instances.default_on_demand_start)
    }),
    ("LLAMACTL_ON_DEMAND_START_TIMEOUT", |c, v| {
        parse_into(v, &mut c.instances.on_demand_start_timeout)
    }),
    ("LLAMACTL_DEFAULT_IDLE_TIMEOUT", |c, v| {
        parse_into(v, &mut c.instances.default_idle_timeout)
    }),
    ("LLAMACTL_HEALTH_CHECK_INTERVAL", |c, v| {
        parse_into(v, &mut c.instances.health_check_interval)
    }),
    ("LLAMACTL_HEALTH_CHECK_FAILURES", |c, v| {
        parse_into(v, &mut c.instances.health_check_failures)
    }),
    ("LLAMACTL_STREAM_IDLE_TIMEOUT", |c, v| {
        parse_into(v, &mut c.instances.stream_idle_timeout)
    }),
    ("LLAMACTL_LLAMACPP_COMMAND", |c, v| {
        c.backends.llama_cpp.command = v.to_string();
        Ok(())
    }),
    ("LLAMACTL_REQUIRE_MANAGEMENT_AUTH", |c, v| {
        parse_bool_into(v, &mut c.auth.require_management_auth)
    }),
    ("LLAMACTL_REQUIRE_INFERENCE_AUTH", |c, v| {
        parse_bool_into(v, &mut c.auth.require_inference_auth)
    }),
    ("LLAMACTL_MANAGEMENT_KEYS", |c, v| {
        c.auth.management_keys = split_list(v);
        Ok(())
    }),
    ("LLAMACTL_INFERENCE_KEYS", |c, v| {
        c.auth.inference_keys = split_list(v);
        Ok(())
    }),
    ("LLAMACTL_FAILED_AUTH_BURST", |c, v| {
        parse_into(v, &mut c.auth.failed_auth_burst)
    }),
    ("LLAMACTL_FAILED_AUTH_PERIOD", |c, v| {
        parse_into(v, &mut c.auth.failed_auth_period)
    }),
    ("LLAMACTL_HISTORY_MAX_EVENTS", |c, v| {
        parse_into(v, &mut c.history.max_events)
    }),
    ("LLAMACTL_ACTIVITY", |c, v| {
        parse_bool_into(v, &mut c.activity.enabled)
    }),
    ("LLAMACTL_ACTIVITY_MAX_RECORDS", |c, v| {
        parse_into(v, &mut c.activity.max_records)
    }),
    ("LLAMACTL_UI_SESSION_TTL", |c, v| {
        parse_into(v, &mut c.ui.session_ttl)
    }),
    ("LLAMACTL_UI_SECURE_COOKIE", |c, v| {
        parse_bool_into(v, &mut c.ui.secure_cookie)
    }),
    ("LLAMACTL_METRICS", |c, v| {
        parse_bool_into(v, &mut c.server.metrics)
    }),
    ("LLAMACTL_METRICS_KEYS", |c, v| {
        c.auth.metrics_keys = split_list(v);
        Ok(())
    }),
    ("LLAMACTL_LOG_FORMAT", |c, v| {
        c.log.format = crate::names::parse(v)?;
        Ok(())
    }),
    ("LLAMACTL_LOG_REQUESTS", |c, v| {
        parse_bool_into(v, &mut c.log.requests)
    }),
];

/// Applies every `LLAMACTL_*` variable that is set.
pub fn apply_env(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (var, set) in ENV_VARS {
        if let Some(value) = env(var) {
            set(config, value.trim()).map_err(|message| ConfigError::Env {
                var: (*var).to_string(),
                message,
            })?;
        }
    }
    Ok(())
}

fn parse_into<T: std::str::FromStr>(value: &str, slot: &mut T) -> Result<(), String>
where
    T::Err: std::fmt::Display,
{
    *slot = value
        .parse()
        .map_err(|e: T::Err| format!("'{value}': {e}"))?;
    Ok(())
}

fn parse_bool_into(value: &str, slot: &mut bool) -> Result<(), String> {
    *slot = match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => true,
        "0" | "false" | "no" | "off" => false,
        _ => return Err(format!("'{value}' is not a boolean (true/false)")),
    };
    Ok(())
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn parse_port_range(value: &str) -> Result<[u16; 2], String> {
    let (lo, hi) = value
        .split_once(['-', ','])
        .ok_or_else(|| format!("'{value}' is not a range like 8000-9000"))?;
    let lo = lo.trim().parse().map_err(|e| format!("'{lo}': {e}"))?;
    let hi = hi.trim().parse().map_err(|e| format!("'{hi}': {e}"))?;
    Ok([lo, hi])
}

/// The longest connection timeout, in seconds (a day): longer is no deadline at all.
const MAX_CONNECTION_TIMEOUT: u64 = 86_400;

impl Config {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let [lo, hi] = self.instances.port_range;
        if lo == 0 || lo > hi {
            return Err(ConfigError::Invalid(format!(
                "instances.port_range [{lo}, {hi}] must be a non-empty range of non-zero ports"
            )));
        }
        if self.backends.llama_cpp.command.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "backends.llama-cpp.command must not be empty".into(),
            ));
        }
        // llamactl's own settings (keys among them) never reach a backend.
        if let Some(name) = self
            .backends
            .llama_cpp
            .environment
            .keys()
            .find(|name| name.starts_with("LLAMACTL_"))
        {
            return Err(ConfigError::Invalid(format!(
                "backends.llama-cpp.environment: {name}: LLAMACTL_* variables are never passed to backends"
            )));
        }
        for (key, value) in [
            ("instances.max_instances", self.instances.max_instances),
            (
                "instances.max_running_instances",
                self.instances.max_running_instances,
            ),
        ] {
            if value < -1 || value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be -1 (no limit) or a positive number, not {value}"
                )));
            }
        }
        for (key, value) in [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.keep_alive_timeout", self.server.keep_alive_timeout),
            (
                "server.request_body_timeout",
                self.server.request_body_timeout,
            ),
            (
                "server.response_write_timeout",
                self.server.response_write_timeout,
            ),
            (
                "instances.stream_idle_timeout",
                self.instances.stream_idle_timeout,
            ),
        ] {
            // A connection with no deadline is what a slow client exploits; there is no "off".
            if !(1..=MAX_CONNECTION_TIMEOUT).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be between 1 and {MAX_CONNECTION_TIMEOUT} seconds, not {value}"
                )));
            }
        }
        for (key, value) in [
            (
                "auth.failed_auth_burst",
                u64::from(self.auth.failed_auth_burst),
            ),
            ("auth.failed_auth_period", self.auth.failed_auth_period),
            ("history.max_events", self.history.max_events),
            ("activity.max_records", self.activity.max_records),
            ("ui.session_ttl", self.ui.session_ttl),
            (
                "instances.health_check_failures",
                u64::from(self.instances.health_check_failures),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
            }
        }
        Ok(())
    }

    /// True while the management or the inference API is open to callers without a key.
    pub fn auth_is_off(&self) -> bool {
        !self.auth.require_management_auth || !self.auth.require_inference_auth
    }

    /// The address to listen on: the configured one, else every interface while auth is on and
    /// loopback only while it is off (an open API must not be reachable from the network unless
    /// the operator says so).
    pub fn listen_host(&self) -> &str {
        match &self.server.host {
            Some(host) => host,
            None if self.auth_is_off() => "127.0.0.1",
            None => "0.0.0.0",
        }
    }

    /// The SQLite file in force.
    pub fn database_path(&self) -> PathBuf {
        if self.database.path.as_os_str().is_empty() {
            self.data_dir.join("llamactl.db")
        } else {
            self.data_dir.join(&self.database.path)
        }
    }

    /// The directory of per-instance slot directories in force.
    pub fn slots_dir(&self) -> PathBuf {
        if self.instances.slots_dir.as_os_str().is_empty() {
            self.data_dir.join("slots")
        } else {
            self.data_dir.join(&self.instances.slots_dir)
        }
    }

    /// The directory of instance logs in force.
    pub fn logs_dir(&self) -> PathBuf {
        if self.instances.logs_dir.as_os_str().is_empty() {
            self.data_dir.join("logs")
        } else {
            self.data_dir.join(&self.instances.logs_dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_match_the_reference() {
        let c = Config::default();
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.listen_host(), "0.0.0.0");
        assert!(
            c.server.allowed_origins.is_empty(),
            "no cross-origin access by default"
        );
        assert_eq!(c.instances.port_range, [8000, 9000]);
        assert_eq!(c.database_path(), PathBuf::from("./data/llamactl.db"));
        assert_eq!(c.logs_dir(), PathBuf::from("./data/logs"));
        assert_eq!(c.slots_dir(), PathBuf::from("./data/slots"));
        assert!(c.auth.require_management_auth);
        assert_eq!(c.backends.llama_cpp.command, "llama-server");
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let mut c = parse_str(
            "server:\n  port: 9090\n  host: 127.0.0.1\ninstances:\n  max_running_instances: 2\n",
        )
        .unwrap();
        assert_eq!(c.server.port, 9090);
        apply_env(
            &mut c,
            &env_of(&[
                ("LLAMACTL_PORT", "7070"),
                ("LLAMACTL_MANAGEMENT_KEYS", "a, b,,c"),
                ("LLAMACTL_REQUIRE_INFERENCE_AUTH", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.port, 7070);
        assert_eq!(c.listen_host(), "127.0.0.1");
        assert_eq!(c.instances.max_running_instances, 2);
        assert_eq!(c.auth.management_keys, vec!["a", "b", "c"]);
        assert!(!c.auth.require_inference_auth);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = parse_str("server:\n  prot: 1\n").unwrap_err();
        assert!(err.contains("prot"), "{err}");
        let err = parse_str("bogus: 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn wrong_type_is_an_error_naming_the_key() {
        let err = parse_str("server:\n  port: lots\n").unwrap_err();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let mut c = Config::default();
        let err = apply_env(&mut c, &env_of(&[("LLAMACTL_PORT", "x")])).unwrap_err();
        assert!(err.to_string().contains("LLAMACTL_PORT"), "{err}");
        let err = apply_env(
            &mut c,
            &env_of(&[("LLAMACTL_ENABLE_LRU_EVICTION", "maybe")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("LLAMACTL_ENABLE_LRU_EVICTION"));
    }

    #[test]
    fn backend_section_uses_the_go_name() {
        let c = parse_str("backends:\n  llama-cpp:\n    command: /opt/llama-server\n    args: [\"--log-disable\"]\n").unwrap();
        assert_eq!(c.backends.llama_cpp.command, "/opt/llama-server");
        assert_eq!(c.backends.llama_cpp.args, vec!["--log-disable"]);
    }

    #[test]
    fn backend_environment_may_not_carry_llamactl_settings() {
        let c =
            parse_str("backends:\n  llama-cpp:\n    environment: {LLAMACTL_MANAGEMENT_KEYS: x}\n")
                .unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("LLAMACTL_MANAGEMENT_KEYS"), "{err}");
        let mut c = Config::default();
        apply_env(&mut c, &env_of(&[("LLAMACTL_SLOTS_DIR", "/srv/slots")])).unwrap();
        assert_eq!(c.slots_dir(), PathBuf::from("/srv/slots"));
    }

    #[test]
    fn explicit_file_wins_over_search_and_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "server:\n  port: 1234\n").unwrap();
        let loaded = load_with(Some(&path), &env_of(&[]), None).unwrap();
        assert_eq!(loaded.config.server.port, 1234);
        let via_env = load_with(
            None,
            &env_of(&[("LLAMACTL_CONFIG_PATH", path.to_str().unwrap())]),
            None,
        )
        .unwrap();
        assert_eq!(via_env.file.as_deref(), Some(path.as_path()));
        let missing = dir.path().join("nope.yaml");
        assert!(matches!(
            load_with(Some(&missing), &env_of(&[]), None),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn home_config_is_searched() {
        let home = tempfile::tempdir().unwrap();
        let paths = search_paths(Some(home.path()));
        assert_eq!(paths[0], PathBuf::from("llamactl.yaml"));
        assert!(paths.contains(&home.path().join(".config/llamactl/config.yaml")));
        assert_eq!(
            paths.last().unwrap(),
            &PathBuf::from("/etc/llamactl/config.yaml")
        );
    }

    #[test]
    fn the_example_config_parses_to_the_defaults() {
        let example = parse_str(include_str!("../config/llamactl.yaml")).unwrap();
        let defaults = Config::default();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn minutes_take_fractions_and_refuse_negatives() {
        let c = parse_str("instances:\n  default_idle_timeout: 0.5\n").unwrap();
        assert_eq!(
            c.instances.default_idle_timeout.duration(),
            Some(Duration::from_secs(30))
        );
        let c = parse_str("instances:\n  default_idle_timeout: 10\n").unwrap();
        assert_eq!(
            c.instances.default_idle_timeout.duration(),
            Some(Duration::from_secs(600))
        );
        assert_eq!(Minutes::default().duration(), None, "0 means never");
        let err = parse_str("instances:\n  default_idle_timeout: -1\n").unwrap_err();
        assert!(err.contains("minutes"), "{err}");
        let mut c = Config::default();
        assert!(apply_env(&mut c, &env_of(&[("LLAMACTL_DEFAULT_IDLE_TIMEOUT", "x")])).is_err());
        assert_eq!(serde_json::to_string(&Minutes(5.0)).unwrap(), "5");
        assert_eq!(serde_json::to_string(&Minutes(0.25)).unwrap(), "0.25");
    }

    #[test]
    fn an_open_api_listens_on_loopback_unless_a_host_is_given() {
        let mut c = Config::default();
        c.auth.require_inference_auth = false;
        assert_eq!(c.listen_host(), "127.0.0.1");
        apply_env(&mut c, &env_of(&[("LLAMACTL_HOST", "0.0.0.0")])).unwrap();
        assert_eq!(c.listen_host(), "0.0.0.0", "the operator's word wins");
        let c = parse_str("server:\n  host: \"::1\"\nauth:\n  require_management_auth: false\n")
            .unwrap();
        assert_eq!(c.listen_host(), "::1");
    }

    #[test]
    fn invalid_ranges_are_rejected() {
        let mut c = Config::default();
        c.instances.port_range = [9000, 8000];
        assert!(c.validate().is_err());
        let mut c = Config::default();
        apply_env(
            &mut c,
            &env_of(&[("LLAMACTL_INSTANCE_PORT_RANGE", "8100-8200")]),
        )
        .unwrap();
        assert_eq!(c.instances.port_range, [8100, 8200]);
        c.instances.max_running_instances = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn connection_limits_have_defaults_env_overrides_and_bounds() {
        let c = Config::default();
        assert_eq!(c.server.header_read_timeout, 15);
        assert_eq!(c.server.keep_alive_timeout, 75);
        assert_eq!(c.server.request_body_timeout, 60);
        assert_eq!(c.server.response_write_timeout, 300);
        assert_eq!(c.server.max_connections_per_client, 0, "automatic");
        let mut c = parse_str("server:\n  keep_alive_timeout: 5\n").unwrap();
        assert_eq!(c.server.keep_alive_timeout, 5);
        apply_env(
            &mut c,
            &env_of(&[
                ("LLAMACTL_HEADER_READ_TIMEOUT", "2"),
                ("LLAMACTL_KEEP_ALIVE_TIMEOUT", "3"),
                ("LLAMACTL_REQUEST_BODY_TIMEOUT", "4"),
                ("LLAMACTL_RESPONSE_WRITE_TIMEOUT", "6"),
                ("LLAMACTL_MAX_CONNECTIONS_PER_CLIENT", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(
            [
                c.server.header_read_timeout,
                c.server.keep_alive_timeout,
                c.server.request_body_timeout,
                c.server.response_write_timeout,
            ],
            [2, 3, 4, 6]
        );
        assert_eq!(c.server.max_connections_per_client, 7);
        c.validate().unwrap();
        for yaml in [
            "server:\n  header_read_timeout: 0\n",
            "server:\n  keep_alive_timeout: 0\n",
            "server:\n  request_body_timeout: 0\n",
            "server:\n  response_write_timeout: 86401\n",
        ] {
            let err = parse_str(yaml).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains("server."), "{yaml}: {err}");
        }
        assert!(parse_str("server:\n  max_connections_per_client: -1\n").is_err());
    }

    #[test]
    fn liveness_settings_have_defaults_env_overrides_and_bounds() {
        let c = Config::default();
        assert_eq!(c.instances.health_check_interval, 10);
        assert_eq!(c.instances.health_check_failures, 3);
        assert_eq!(c.instances.stream_idle_timeout, 300);
        let mut c = parse_str("instances:\n  health_check_interval: 0\n").unwrap();
        c.validate().unwrap();
        apply_env(
            &mut c,
            &env_of(&[
                ("LLAMACTL_HEALTH_CHECK_INTERVAL", "2"),
                ("LLAMACTL_HEALTH_CHECK_FAILURES", "5"),
                ("LLAMACTL_STREAM_IDLE_TIMEOUT", "7"),
            ]),
        )
        .unwrap();
        let i = &c.instances;
        assert_eq!(
            (
                i.health_check_interval,
                i.health_check_failures,
                i.stream_idle_timeout
            ),
            (2, 5, 7)
        );
        for yaml in [
            "instances:\n  health_check_failures: 0\n",
            "instances:\n  stream_idle_timeout: 0\n",
        ] {
            let err = parse_str(yaml).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains("instances."), "{yaml}: {err}");
        }
    }

    #[test]
    fn auth_and_history_limits_have_defaults_env_overrides_and_bounds() {
        let c = Config::default();
        assert_eq!(c.auth.failed_auth_burst, 10);
        assert_eq!(c.auth.failed_auth_period, 6);
        assert_eq!(c.history.max_events, 100_000);
        let mut c = parse_str("history:\n  max_events: 50\n").unwrap();
        assert_eq!(c.history.max_events, 50);
        apply_env(
            &mut c,
            &env_of(&[
                ("LLAMACTL_FAILED_AUTH_BURST", "3"),
                ("LLAMACTL_FAILED_AUTH_PERIOD", "60"),
                ("LLAMACTL_HISTORY_MAX_EVENTS", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(c.auth.failed_auth_burst, 3);
        assert_eq!(c.auth.failed_auth_period, 60);
        assert_eq!(c.history.max_events, 7);
        for yaml in [
            "auth:\n  failed_auth_burst: 0\n",
            "auth:\n  failed_auth_period: 0\n",
            "history:\n  max_events: 0\n",
        ] {
            assert!(parse_str(yaml).unwrap().validate().is_err(), "{yaml}");
        }
    }

    #[test]
    fn activity_retention_has_a_default_an_env_override_and_a_bound() {
        assert_eq!(Config::default().activity.max_records, 1_000_000);
        let mut c = parse_str("activity:\n  max_records: 50\n").unwrap();
        assert_eq!(c.activity.max_records, 50);
        apply_env(&mut c, &env_of(&[("LLAMACTL_ACTIVITY_MAX_RECORDS", "7")])).unwrap();
        assert_eq!(c.activity.max_records, 7);
        assert!(apply_env(&mut c, &env_of(&[("LLAMACTL_ACTIVITY_MAX_RECORDS", "-1")])).is_err());
        let err = parse_str("activity:\n  max_records: 0\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("activity.max_records"), "{err}");
    }
}
