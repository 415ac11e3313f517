//! Test harness: runs the real `llamactl` binary on port 0 with a fresh data dir, and talks to it
//! through one method per endpoint.
#![allow(dead_code)]

pub mod browser;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Management key every test server accepts.
pub const ADMIN_KEY: &str = "test-management-key";
/// Inference key every test server accepts.
pub const INFERENCE_KEY: &str = "test-inference-key";

/// The stand-in backend.
pub fn fake_backend() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_llama_server.py")
}

/// A port range nobody else in this test run uses: tests run in parallel, each gets its own.
pub fn port_range() -> [u16; 2] {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::SeqCst);
    // Spread test binaries apart by their process id so parallel test binaries do not collide, and
    // give each binary room for 30 tests: tests that count the backends in their range must not
    // share it with another test running at the same time. All below 32768, where Linux's
    // ephemeral ports begin: a test holding a thousand client connections would otherwise take a
    // backend's port from under it ("Address already in use").
    let base = 20000 + (std::process::id() % 40) as u16 * 300;
    let lo = base + (slot % 30) * 10;
    [lo, lo + 9]
}

/// A whole `GET /api/v1/version` with the admin key, keeping the connection open: a request
/// for tests that speak HTTP on a raw socket.
pub fn version_request() -> Vec<u8> {
    format!("GET /api/v1/version HTTP/1.1\r\nHost: llamactl\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\r\n")
        .into_bytes()
}

/// The head of the answer in `text` once it is whole (its `Content-Length` body has arrived);
/// `None` while more is to come. Panics on an answer without `Content-Length`.
pub fn whole_answer_head(text: &str) -> Option<&str> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .expect("content-length");
    (body.len() >= length).then_some(head)
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Extra YAML appended to the generated config file.
    pub yaml: String,
    /// `backends.llama-cpp.command`.
    pub command: String,
    /// `backends.llama-cpp.args`.
    pub args: Vec<String>,
    /// `backends.llama-cpp.environment`.
    pub backend_env: Vec<(String, String)>,
    /// Instance ports.
    pub port_range: [u16; 2],
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// `server.host`; `None` leaves it to llamactl.
    pub host: Option<String>,
    /// The server's open-file limits (soft, hard), if they must differ from the test's.
    pub open_files: Option<(u64, u64)>,
}

impl Options {
    /// A server whose backend is the stand-in.
    pub fn fake() -> Self {
        Options {
            yaml: String::new(),
            command: "python3".into(),
            args: vec![fake_backend().display().to_string()],
            backend_env: Vec::new(),
            port_range: port_range(),
            env: Vec::new(),
            host: Some("127.0.0.1".into()),
            open_files: None,
        }
    }

    /// A server whose backend is the given executable.
    pub fn real(command: &str) -> Self {
        Options {
            command: command.into(),
            args: Vec::new(),
            ..Options::fake()
        }
    }

    /// Starts the server with this open-file limit (soft and hard), as a host short of descriptors.
    pub fn with_open_files(mut self, limit: u64) -> Self {
        self.open_files = Some((limit, limit));
        self
    }

    /// Starts the server with these soft and hard open-file limits, as systemd starts a service
    /// (soft 1024, hard 524288 by default). `hard` must not exceed the test's own hard limit.
    pub fn with_open_file_limits(mut self, soft: u64, hard: u64) -> Self {
        self.open_files = Some((soft, hard));
        self
    }

    /// Adds YAML to the config file (a top-level `instances:` block is merged by the caller's care).
    pub fn with_yaml(mut self, yaml: &str) -> Self {
        self.yaml.push_str(yaml);
        self
    }
}

/// An answer's status and body: JSON if it parses, else the text as a JSON string.
async fn status_and_body(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A running `llamactl` process.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The data directory (kept across restarts of the same server).
    pub data_dir: PathBuf,
    /// The generated config file.
    pub config: PathBuf,
    /// Everything the server wrote to stderr so far.
    pub output: Arc<Mutex<String>>,
    child: Option<Child>,
    client: reqwest::Client,
    _tmp: Option<tempfile::TempDir>,
    opts: Options,
}

impl TestServer {
    /// The address the server listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base
            .trim_start_matches("http://")
            .parse()
            .expect("server address")
    }

    /// Starts a server with a fresh data dir.
    pub async fn start(opts: Options) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().to_path_buf();
        let mut server = Self::spawn(data_dir, opts).await;
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server whose data dir is `data_dir` (which the caller creates and removes).
    pub async fn start_in(data_dir: &Path, opts: Options) -> TestServer {
        Self::spawn(data_dir.to_path_buf(), opts).await
    }

    async fn spawn(data_dir: PathBuf, opts: Options) -> TestServer {
        let config = data_dir.join("llamactl.yaml");
        let yaml = format!(
            "server:\n{host}  port: 0\nbackends:\n  llama-cpp:\n    command: {cmd}\n    args: {args}\n    environment: {env}\ndata_dir: {dir}\nauth:\n  management_keys: [{ADMIN_KEY}]\n  inference_keys: [{INFERENCE_KEY}]\n{extra}",
            cmd = json!(opts.command),
            args = json!(opts.args),
            env = json!(opts
                .backend_env
                .iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>()),
            dir = json!(data_dir.display().to_string()),
            extra = opts.yaml,
            host = opts
                .host
                .as_ref()
                .map(|h| format!("  host: {}\n", json!(h)))
                .unwrap_or_default(),
        );
        let yaml = if yaml.contains("\ninstances:\n") {
            yaml.replace(
                "\ninstances:\n",
                &format!(
                    "\ninstances:\n  port_range: [{}, {}]\n",
                    opts.port_range[0], opts.port_range[1]
                ),
            )
        } else {
            format!(
                "{yaml}instances:\n  port_range: [{}, {}]\n",
                opts.port_range[0], opts.port_range[1]
            )
        };
        std::fs::write(&config, yaml).expect("write config");
        let mut command = Command::new(env!("CARGO_BIN_EXE_llamactl"));
        command
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(opts.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((soft, hard)) = opts.open_files {
            use std::os::unix::process::CommandExt;
            let rlimit = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().expect("spawn llamactl");
        let stderr = child.stderr.take().expect("stderr");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    if let Some(tx) = tx.take() {
                        // The address ends where the text line or the JSON string does.
                        let addr: String = addr
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
                            .collect();
                        let _ = tx.send(addr);
                    }
                }
                let mut out = sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "llamactl did not start; output:\n{}",
                    output.lock().unwrap()
                )
            });
        TestServer {
            base: format!("http://{addr}"),
            data_dir,
            config,
            output,
            child: Some(child),
            client: reqwest::Client::new(),
            _tmp: None,
            opts,
        }
    }

    /// The port range its instances get.
    pub fn port_range(&self) -> [u16; 2] {
        self.opts.port_range
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal to the server and waits for it to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        child.wait().expect("wait llamactl")
    }

    /// Starts a new server on the same data dir and config (after a stop or kill).
    pub async fn restart(mut self) -> TestServer {
        if self.child.is_some() {
            self.signal_and_wait(libc::SIGTERM);
        }
        let tmp = self._tmp.take();
        let mut next = Self::spawn(self.data_dir.clone(), self.opts.clone()).await;
        next._tmp = tmp;
        next
    }

    /// Sends a request with the admin key.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(Some(ADMIN_KEY), method, path, body).await
    }

    /// Sends a request with the given key (or none); returns status and JSON (or a string).
    pub async fn call_as(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request(key, method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        status_and_body(req.send().await.expect("request")).await
    }

    /// A request to `path` with the given key (or none), ready to add to and send.
    fn request(&self, key: Option<&str>, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.base));
        match key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// `POST /api/v1/instances/{name}`.
    pub async fn create(&self, name: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/api/v1/instances/{name}"),
            Some(body),
        )
        .await
    }

    /// Creates an instance that must be accepted (201) and waits until it runs, up to `timeout`.
    pub async fn create_running(&self, name: &str, body: Value, timeout: Duration) -> Value {
        let (code, created) = self.create(name, body).await;
        assert_eq!(code, StatusCode::CREATED, "create {name}: {created}");
        self.wait_status(name, "running", timeout).await
    }

    /// `GET /api/v1/instances/{name}`.
    pub async fn get(&self, name: &str) -> (StatusCode, Value) {
        self.call(Method::GET, &format!("/api/v1/instances/{name}"), None)
            .await
    }

    /// `PUT /api/v1/instances/{name}`.
    pub async fn update(&self, name: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            Method::PUT,
            &format!("/api/v1/instances/{name}"),
            Some(body),
        )
        .await
    }

    /// `DELETE /api/v1/instances/{name}`.
    pub async fn delete(&self, name: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, &format!("/api/v1/instances/{name}"), None)
            .await
    }

    /// `POST /api/v1/instances/{name}/{op}` for start, stop, restart.
    pub async fn op(&self, name: &str, op: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/api/v1/instances/{name}/{op}"),
            None,
        )
        .await
    }

    /// `GET /api/v1/instances/{name}/logs?lines=N`.
    pub async fn logs(&self, name: &str, lines: Option<i64>) -> (StatusCode, Value) {
        let q = lines.map(|n| format!("?lines={n}")).unwrap_or_default();
        self.call(
            Method::GET,
            &format!("/api/v1/instances/{name}/logs{q}"),
            None,
        )
        .await
    }

    /// `POST /v1/chat/completions` for `model` with the inference key; `extra` adds body fields.
    pub async fn chat(&self, model: &str, extra: Value) -> (StatusCode, Value) {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.call_as(
            Some(INFERENCE_KEY),
            Method::POST,
            "/v1/chat/completions",
            Some(body),
        )
        .await
    }

    /// A streamed chat completion for `model`, returned as soon as its headers arrive.
    pub async fn chat_stream(
        &self,
        model: &str,
        max_tokens: u32,
        chunk_delay: f64,
    ) -> reqwest::Response {
        let body = json!({
            "model": model, "stream": true, "max_tokens": max_tokens,
            "fake_chunk_delay": chunk_delay,
            "messages": [{"role": "user", "content": "hi"}]
        });
        self.request(Some(INFERENCE_KEY), Method::POST, "/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .expect("streamed request")
    }

    /// `POST {path}` with raw body bytes, extra headers and the given key (or none).
    pub async fn post_raw(
        &self,
        key: Option<&str>,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .request(key, Method::POST, path)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        status_and_body(req.send().await.expect("request")).await
    }

    /// The lifecycle history of one instance, oldest first, from `GET /api/v1/instances/{name}/history`.
    pub async fn instance_history(&self, name: &str) -> Vec<HistoryEntry> {
        let (code, page) = self
            .call(
                Method::GET,
                &format!("/api/v1/instances/{name}/history?limit=1000"),
                None,
            )
            .await;
        if code == StatusCode::NOT_FOUND {
            return Vec::new(); // no event yet
        }
        assert_eq!(code, StatusCode::OK, "history of {name}: {page}");
        let mut entries: Vec<HistoryEntry> = page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| HistoryEntry {
                event: e["event"].as_str().unwrap_or_default().to_string(),
                actor: e["actor"].as_str().unwrap_or_default().to_string(),
                detail: e["detail"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        entries.reverse(); // the API pages newest first
        entries
    }

    /// Polls until the instance's history has an `event`, failing after `timeout`; returns it.
    pub async fn wait_event(&self, name: &str, event: &str, timeout: Duration) -> HistoryEntry {
        let deadline = Instant::now() + timeout;
        loop {
            let history = self.instance_history(name).await;
            if let Some(found) = history.iter().rev().find(|h| h.event == event) {
                return found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no '{event}' for {name} after {timeout:?}; history: {history:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The instance's status string.
    pub async fn status(&self, name: &str) -> String {
        let (_, v) = self.get(name).await;
        v["status"].as_str().unwrap_or("?").to_string()
    }

    /// Polls until the instance has `want` status, failing after `timeout`; returns the instance.
    pub async fn wait_status(&self, name: &str, want: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, v) = self.get(name).await;
            if v["status"] == want {
                return v;
            }
            if Instant::now() >= deadline {
                // Copied out first: panicking while holding the lock would poison it.
                let output = self.output.lock().map(|o| o.clone()).unwrap_or_default();
                panic!("instance {name} not {want} after {timeout:?}: {code} {v}\nserver output:\n{output}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child process.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }
}

/// The `pid` of an instance as the API shows it.
pub fn pid_of(instance: &Value) -> u64 {
    instance["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid in {instance}"))
}

/// One lifecycle event as the history stores it.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    /// What happened (`evicted`, `idle_stopped`, ...).
    pub event: String,
    /// Who caused it.
    pub actor: String,
    /// More about it.
    pub detail: String,
}

/// True while a process with this PID exists and is not a zombie.
pub fn process_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Polls `cond` until it holds, failing with `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Live (non-zombie) processes whose command line has `needle` and a `--port` inside `range`.
pub fn backends_in_range(needle: &str, range: [u16; 2]) -> Vec<u64> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.iter().any(|a| a.contains(needle)) {
            continue;
        }
        let port = args
            .iter()
            .position(|a| a == "--port")
            .and_then(|i| args.get(i + 1))
            .and_then(|p| p.parse::<u16>().ok());
        if matches!(port, Some(p) if p >= range[0] && p <= range[1]) && process_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// The real llama-server and model for end-to-end tests (set by `make test`).
#[derive(Clone, Debug)]
pub struct RealBackend {
    /// Path of the llama-server executable.
    pub server: String,
    /// Path of the GGUF model.
    pub model: String,
}

/// Reads the real backend's paths from the environment; panics with the fix when unset.
pub fn real_backend() -> RealBackend {
    let get = |var: &str| {
        std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: run end-to-end tests with `make e2e` (or `make test`), which installs llama-server and the model and sets it")
        })
    };
    let backend = RealBackend {
        server: get("LLAMACTL_TEST_LLAMA_SERVER"),
        model: get("LLAMACTL_TEST_MODEL"),
    };
    assert!(
        Path::new(&backend.model).is_file(),
        "model missing: {}",
        backend.model
    );
    backend
}

// --- API keys, history and the CLI (issue 4) ---

impl Options {
    /// Adds an environment variable for the server (e.g. `LLAMACTL_MANAGEMENT_KEYS=""`).
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// What `llamactl keys ...` printed, and whether it succeeded.
#[derive(Debug)]
pub struct CliRun {
    /// Exit status was 0.
    pub ok: bool,
    /// Exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl TestServer {
    /// Everything the server wrote to stderr so far.
    pub fn output_text(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("llamactl.db")
    }

    /// Sends a request with the given key (or none) and returns the raw response.
    pub async fn raw(&self, key: Option<&str>, method: Method, path: &str) -> reqwest::Response {
        self.request(key, method, path)
            .send()
            .await
            .expect("request")
    }

    /// `DELETE /api/v1/auth/keys/{id}` with the admin key; returns the status.
    pub async fn revoke_key(&self, id: &str) -> StatusCode {
        self.call(Method::DELETE, &format!("/api/v1/auth/keys/{id}"), None)
            .await
            .0
    }

    /// `POST /api/v1/auth/keys` with the admin key.
    pub async fn create_key(&self, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/api/v1/auth/keys", Some(body))
            .await
    }

    /// Creates a key that must succeed; returns (token, id).
    pub async fn new_key(&self, body: Value) -> (String, String) {
        let (code, v) = self.create_key(body).await;
        assert_eq!(code, StatusCode::CREATED, "{v}");
        (
            v["key"].as_str().expect("key").to_string(),
            v["id"].as_str().expect("id").to_string(),
        )
    }

    /// `GET /api/v1/history?<query>` with the admin key.
    pub async fn history(&self, query: &str) -> (StatusCode, Value) {
        self.call(Method::GET, &format!("/api/v1/history?{query}"), None)
            .await
    }

    /// `GET /api/v1/activity?<query>` with the admin key.
    pub async fn activity(&self, query: &str) -> (StatusCode, Value) {
        self.call(Method::GET, &format!("/api/v1/activity?{query}"), None)
            .await
    }

    /// `GET /api/v1/usage?<query>` with the admin key.
    pub async fn usage(&self, query: &str) -> (StatusCode, Value) {
        self.call(Method::GET, &format!("/api/v1/usage?{query}"), None)
            .await
    }

    /// Runs `llamactl --config <this server's config> <args>`.
    pub fn cli(&self, args: &[&str]) -> CliRun {
        let out = Command::new(env!("CARGO_BIN_EXE_llamactl"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("NO_COLOR", "1")
            .envs(self.opts.env.iter().cloned())
            .output()
            .expect("run llamactl");
        CliRun {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Stops the server (SIGTERM) and keeps the data dir for a later [`TestServer::restart`].
    pub fn stop(&mut self) {
        if self.child.is_some() {
            self.signal_and_wait(libc::SIGTERM);
        }
    }
}

/// Polls an async condition until it holds, failing with `what` after `timeout`.
pub async fn eventually_async<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads a streamed answer to its end: how many pieces arrived off the wire, and the text.
pub async fn read_stream(resp: reqwest::Response) -> (usize, String) {
    use futures_util::StreamExt;
    let mut pieces = 0;
    let mut text = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        pieces += 1;
        text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    (pieces, text)
}

/// The test process's own open-file limits (soft, hard), after raising the soft one to the hard
/// one: a test that holds many client sockets needs it.
pub fn raise_own_open_files() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit),
            0,
            "cannot raise the test's own open-file limit"
        );
    }
    (limit.rlim_cur, limit.rlim_max)
}
