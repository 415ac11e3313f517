//! `make soak`: llamactl (release build) with the stand-in backend under mixed load for minutes —
//! chats plain and streamed through `/v1` and the instance proxy, key checks, instance churn,
//! backends killed — then its resident memory, open descriptors and tasks against where they were
//! after the warm-up, and every answer by status class. Prints one table and writes it into
//! `docs/soak.md`; exits non-zero when a goal is missed.
//!
//! A bench target (`harness = false`) rather than a test: it runs for minutes, is built in release
//! like llamactl beside it (`CARGO_BIN_EXE_llamactl`), and shares the bench's process guard and
//! llamactl launcher; `cargo test --all-targets` only builds it.

mod chat;
mod churn;
mod crashes;
mod figures;
mod keys;
mod load;
mod opts;
mod report;
mod tally;
// Shared with `make bench`; the soak uses part of each.
#[path = "../bench/generated.rs"]
mod generated;
#[allow(dead_code)]
#[path = "../bench/llamactl.rs"]
mod llamactl;
#[allow(dead_code)]
#[path = "../bench/open_files.rs"]
mod open_files;
#[allow(dead_code)]
#[path = "../bench/procs.rs"]
mod procs;

use figures::Figures;
use llamactl::{Llamactl, ADMIN_KEY, INFERENCE_KEY};
use load::{Ctx, Shared, STABLE};
use opts::Opts;
use report::Report;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ports handed to the soak's instances (llamactl skips any in use): below Linux's ephemeral
/// range, so the soak's own connections cannot take one between llamactl's check and the bind.
const PORTS: [u16; 2] = [10100, 10299];
/// How often figures are read during the load.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How long the server may take to be quiet after a phase.
const QUIET: Duration = Duration::from_secs(30);

fn config(opts: &Opts, data_dir: &std::path::Path) -> String {
    format!(
        "server:\n  host: 127.0.0.1\n  port: 0\n\
         backends:\n  llama-cpp:\n    command: {python}\n    args: [{fixture}]\n\
         data_dir: {dir}\n\
         instances:\n  port_range: [{lo}, {hi}]\n\
         auth:\n  management_keys: [{ADMIN_KEY}]\n  inference_keys: [{INFERENCE_KEY}]\n",
        python = json!(opts.python),
        fixture = json!(Opts::fixture().display().to_string()),
        dir = json!(data_dir.display().to_string()),
        lo = PORTS[0],
        hi = PORTS[1],
    )
}

/// One management call that must answer `want`; its body.
async fn must(
    client: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    want: u16,
) -> Value {
    let mut req = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN_KEY);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, want, "{path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Polls until `name` runs with a backend other than `not_pid`.
async fn running(client: &reqwest::Client, base: &str, name: &str, not_pid: Option<u64>) {
    let path = format!("/api/v1/instances/{name}");
    let deadline = Instant::now() + QUIET;
    loop {
        let view = must(client, base, reqwest::Method::GET, &path, None, 200).await;
        if view["status"] == "running" && view["pid"].as_u64() != not_pid {
            return;
        }
        assert!(Instant::now() < deadline, "{name} not running: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stable instances, a stored inference key, and a stored key already revoked.
async fn set_up(base: &str) -> (String, String) {
    let client = reqwest::Client::new();
    for name in STABLE {
        // Killed every so often: restarted after a second, as often as it takes.
        let body = json!({"model": "/m.gguf", "restart_delay": 1, "max_restarts": 100000});
        let path = format!("/api/v1/instances/{name}");
        must(&client, base, reqwest::Method::POST, &path, Some(body), 201).await;
        running(&client, base, name, None).await;
    }
    let key = |name: &str| {
        let body = json!({"name": name, "kind": "inference"});
        let client = client.clone();
        async move {
            let path = "/api/v1/auth/keys";
            let made = must(&client, base, reqwest::Method::POST, path, Some(body), 201).await;
            let id = made["id"].as_str().expect("a key id").to_string();
            let secret = made["key"].as_str().expect("a key").to_string();
            (id, secret)
        }
    };
    let (_, stored) = key("soak-stored").await;
    let (id, revoked) = key("soak-revoked").await;
    let path = format!("/api/v1/auth/keys/{id}");
    must(&client, base, reqwest::Method::DELETE, &path, None, 204).await;
    (stored, revoked)
}

/// Brings the server to the same quiet state after each phase, then reads its figures: every
/// client connection closed, and each stable instance restarted, so the backend connections the
/// load left in llamactl's pool (as many as the load happened to need) go with their backend.
async fn quiet(base: &str) -> Figures {
    let client = reqwest::Client::new();
    for name in STABLE {
        let path = format!("/api/v1/instances/{name}");
        let view = must(&client, base, reqwest::Method::GET, &path, None, 200).await;
        let restart = format!("{path}/restart");
        must(&client, base, reqwest::Method::POST, &restart, None, 200).await;
        running(&client, base, name, view["pid"].as_u64()).await;
    }
    // Still until two reads a second apart agree, with only this client connected.
    let deadline = Instant::now() + QUIET;
    let mut last: Option<Figures> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = figures::read(&client, base, ADMIN_KEY)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let still = last.is_some_and(|l| l.fds == now.fds && l.tasks == now.tasks);
        if (still && now.connections <= 1.0) || Instant::now() > deadline {
            if Instant::now() > deadline {
                eprintln!("soak: llamactl did not settle within {QUIET:?}; reading it as it is");
            }
            return now;
        }
        last = Some(now);
    }
}

/// Reads the figures every [`SAMPLE_EVERY`] until `stop`; the highest of each.
async fn sample(base: String, stop: Arc<AtomicBool>) -> Figures {
    let client = reqwest::Client::new();
    let mut peak = Figures::default();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(f) = figures::read(&client, &base, ADMIN_KEY).await {
            peak.rss = peak.rss.max(f.rss);
            peak.fds = peak.fds.max(f.fds);
            peak.tasks = peak.tasks.max(f.tasks);
            peak.connections = peak.connections.max(f.connections);
            eprintln!(
                "soak: rss {:.1} MiB, {} fds, {} tasks, {} connections",
                f.rss / 1048576.0,
                f.fds,
                f.tasks,
                f.connections
            );
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    peak
}

fn header(opts: &Opts, shared: &Shared) -> String {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "Measured {date} on {cores} cores; llamactl `{commit}`, release build, with the stand-in \
         backend. {secs:.0} s of load after {warmup:.0} s of warm-up: {clients} chat clients, key \
         checks, {kills} backends killed with SIGKILL, {churns} instance cycles (create → update \
         → stop → on-demand start → crash loop → start → delete), {keys} keys made and revoked \
         through the API. Answers are counted over the warm-up and the load.\n",
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        secs = opts.duration.as_secs_f64(),
        warmup = opts.warmup.as_secs_f64(),
        clients = opts.clients,
        kills = shared.kills.load(Ordering::Relaxed),
        churns = shared.churns.load(Ordering::Relaxed),
        keys = shared.key_cycles.load(Ordering::Relaxed),
    )
}

async fn run(opts: Opts) -> bool {
    let data = tempfile::tempdir().expect("a temp data dir");
    eprintln!("soak: starting llamactl (release build) with the stand-in backend");
    let server = Llamactl::start_yaml(&Llamactl::built(), data.path(), &config(&opts, data.path()));
    let base = format!("http://{}", server.addr);
    let (stored_key, revoked_key) = set_up(&base).await;
    let shared = Arc::new(Shared {
        tally: Default::default(),
        stored_key,
        revoked_key,
        kills: Default::default(),
        churns: Default::default(),
        churn_failures: Default::default(),
        key_cycles: Default::default(),
        opts: opts.clone(),
    });

    eprintln!("soak: warm-up, {:?}", opts.warmup);
    load::run(Arc::new(Ctx::new(
        &base,
        shared.clone(),
        "warmup",
        opts.warmup,
    )))
    .await;
    let start = quiet(&base).await;
    eprintln!(
        "soak: after warm-up {start:?}; load for {:?}",
        opts.duration
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(base.clone(), stop.clone()));
    load::run(Arc::new(Ctx::new(
        &base,
        shared.clone(),
        "soak",
        opts.duration,
    )))
    .await;
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await.unwrap_or_default();
    let end = quiet(&base).await;

    let report = Report {
        header: header(&opts, &shared),
        start,
        end,
        peak,
        counts: shared.tally.counts(),
        churn_failures: shared.churn_failures.load(Ordering::Relaxed),
        unexplained: shared.tally.unexplained(),
    };
    drop(server);
    let template = format!(
        "# Soak\n\nRerun with `make soak`.\n\n{}\n",
        report::markers()
    );
    report
        .write(&opts.out, &template)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", opts.out.display()));
    println!("\n{}\n{}", report.header, report.markdown());
    eprintln!("soak: written to {}", opts.out.display());
    report.met()
}

fn main() -> ExitCode {
    // `cargo test --all-targets` runs bench targets without `--bench`: nothing to test here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("llamactl soak: not run under `cargo test`; use `make soak`");
        return ExitCode::SUCCESS;
    }
    let opts = Opts::from_env();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        tokio::select! {
            met = run(opts) => if met { ExitCode::SUCCESS } else { ExitCode::FAILURE },
            _ = tokio::signal::ctrl_c() => {
                // Dropping the run drops llamactl's guard, which stops it and its backends.
                eprintln!("soak: interrupted; stopping everything it started");
                ExitCode::from(130)
            }
        }
    })
}
