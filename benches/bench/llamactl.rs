//! A llamactl process of the release build, on a free port with a temp data dir, and the few
//! management calls the bench makes.

use crate::procs::{self, Guard};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The management key in every config the bench writes.
pub const ADMIN_KEY: &str = "bench-management-key";
/// The inference key in every config the bench writes; inference sides present it.
pub const INFERENCE_KEY: &str = "bench-inference-key";

/// How long llamactl may take to print its address.
const BOOT: Duration = Duration::from_secs(30);

/// A running llamactl.
pub struct Llamactl {
    guard: Guard,
    binary: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data dir (kept when it is restarted with [`Llamactl::restart`]).
    pub data_dir: PathBuf,
    api: reqwest::Client,
}

impl Llamactl {
    /// The llamactl this bench was built with (release profile).
    pub fn built() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_llamactl"))
    }

    /// The config the bench runs llamactl with: backend `command`, instance ports `port_range`,
    /// the bench's two keys, everything else default. Scenarios that need other settings edit it
    /// (e.g. add `  require_inference_auth: false` under `auth:`) and use [`Llamactl::start_yaml`].
    pub fn config(data_dir: &Path, command: &str, port_range: [u16; 2]) -> String {
        format!(
            "server:\n  host: 127.0.0.1\n  port: 0\n\
             backends:\n  llama-cpp:\n    command: {command}\n\
             data_dir: {dir}\n\
             instances:\n  port_range: [{lo}, {hi}]\n\
             auth:\n  management_keys: [{ADMIN_KEY}]\n  inference_keys: [{INFERENCE_KEY}]\n",
            command = json!(command),
            dir = json!(data_dir.display().to_string()),
            lo = port_range[0],
            hi = port_range[1],
        )
    }

    /// Starts the llamactl `binary` in `data_dir` with [`Llamactl::config`].
    pub fn start(binary: &Path, data_dir: &Path, command: &str, port_range: [u16; 2]) -> Llamactl {
        Self::start_yaml(
            binary,
            data_dir,
            &Self::config(data_dir, command, port_range),
        )
    }

    /// Starts the llamactl `binary` in `data_dir` with the config `yaml`.
    pub fn start_yaml(binary: &Path, data_dir: &Path, yaml: &str) -> Llamactl {
        Self::start_yaml_with(binary, data_dir, yaml, |_| {})
    }

    /// [`Llamactl::start_yaml`], with the command changed by `prepare` first (e.g. a `pre_exec`
    /// that sets a resource limit).
    pub fn start_yaml_with(
        binary: &Path,
        data_dir: &Path,
        yaml: &str,
        prepare: impl FnOnce(&mut std::process::Command),
    ) -> Llamactl {
        std::fs::create_dir_all(data_dir).expect("create llamactl data dir");
        std::fs::write(data_dir.join("llamactl.yaml"), yaml).expect("write llamactl config");
        Self::boot_with(binary, data_dir, prepare)
    }

    /// Stops this llamactl and starts a new one on the same data dir and config.
    pub fn restart(mut self) -> Llamactl {
        self.guard.stop();
        Self::boot(&self.binary, &self.data_dir)
    }

    fn boot(binary: &Path, data_dir: &Path) -> Llamactl {
        Self::boot_with(binary, data_dir, |_| {})
    }

    fn boot_with(
        binary: &Path,
        data_dir: &Path,
        prepare: impl FnOnce(&mut std::process::Command),
    ) -> Llamactl {
        let mut cmd = procs::quiet(&binary.display().to_string());
        cmd.arg("--config")
            .arg(data_dir.join("llamactl.yaml"))
            .env("NO_COLOR", "1");
        prepare(&mut cmd);
        // Stopping waits for llamactl to stop its backends (SIGTERM, grace, SIGKILL).
        let grace = Duration::from_secs(30);
        let (guard, addr) =
            procs::start_listening("llamactl", cmd, None, grace, "listening on http://", BOOT);
        Llamactl {
            guard,
            binary: binary.to_path_buf(),
            addr,
            data_dir: data_dir.to_path_buf(),
            api: reqwest::Client::new(),
        }
    }

    /// llamactl's process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Calls the management API; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("http://{}{path}", self.addr);
        let mut req = self.api.request(method, &url).bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("llamactl did not answer {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates an instance (llamactl starts it at once); panics unless 201.
    pub async fn create(&self, name: &str, body: Value) {
        let path = format!("/api/v1/instances/{name}");
        let (status, answer) = self.call(reqwest::Method::POST, &path, Some(body)).await;
        assert_eq!(status, 201, "create {name}: {answer}");
    }

    /// `POST /api/v1/instances/{name}/{op}` (start, stop, restart); panics unless 200.
    pub async fn op(&self, name: &str, op: &str) {
        let path = format!("/api/v1/instances/{name}/{op}");
        let (status, answer) = self.call(reqwest::Method::POST, &path, None).await;
        assert_eq!(status, 200, "{op} {name}: {answer}");
    }

    /// Polls the instance every 5 ms until its status is `want`; the time it took.
    pub async fn wait_status(&self, name: &str, want: &str, timeout: Duration) -> Duration {
        let path = format!("/api/v1/instances/{name}");
        let started = Instant::now();
        loop {
            let (_, view) = self.call(reqwest::Method::GET, &path, None).await;
            if view["status"] == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "instance {name} not {want} within {timeout:?}: {view}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
