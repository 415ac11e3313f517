//! Cold start: llama-server's own spawn-to-healthy time against llamactl's `start` → `running`, and
//! against the first request to a stopped instance through `/v1` (on-demand start plus one token).

use crate::client::{self, Req, Target};
use crate::procs::{self, Guard};
use crate::report::Row;
use crate::rig::{self, Rig, Via, INSTANCE, READY};
use crate::stats::{median, ms};
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often the bench polls for health: finer than llamactl's probe, so the bare figure is tight.
const POLL: Duration = Duration::from_millis(5);

/// The instance's options as llama-server flags (what llamactl passes, less its own defaults).
fn flags(options: &Value) -> Vec<String> {
    let mut args = Vec::new();
    for (key, value) in options.as_object().into_iter().flatten() {
        if key == "restart_delay" {
            continue; // llamactl's own setting, not a llama-server flag
        }
        args.push(format!("--{}", key.replace('_', "-")));
        args.push(
            value
                .as_str()
                .map_or_else(|| value.to_string(), String::from),
        );
    }
    args
}

/// True once `GET /health` answers 200.
async fn healthy(addr: SocketAddr) -> bool {
    let target = Target {
        addr,
        path: "/health".into(),
        key: None,
        req: Req::get("/health"),
    };
    let probe = async {
        let mut conn = client::connect(addr).await?;
        client::exchange(&mut conn, &target).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(a)) if a.status.is_success()
    )
}

/// Spawns llama-server with the instance's options on a free port; time until /health is 200.
async fn bare(rig: &Rig) -> Duration {
    let port = procs::free_port();
    let mut cmd = procs::quiet(&rig.opts.llama_server);
    cmd.args(flags(&rig::instance_options(&rig.opts)))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stderr(std::process::Stdio::null());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("loopback");
    let started = Instant::now();
    let mut server = Guard::spawn("llama-server", cmd, Duration::from_secs(10));
    while !healthy(addr).await {
        assert!(server.alive(), "bare llama-server exited while starting");
        assert!(
            started.elapsed() < READY,
            "bare llama-server never became healthy"
        );
        tokio::time::sleep(POLL).await;
    }
    started.elapsed()
}

/// Stops the instance, then times `POST …/start` until the API shows `running`.
async fn via_api(rig: &Rig) -> Duration {
    rig.llamactl.op(INSTANCE, "stop").await;
    rig.llamactl.wait_status(INSTANCE, "stopped", READY).await;
    let started = Instant::now();
    rig.llamactl.op(INSTANCE, "start").await;
    rig.llamactl.wait_status(INSTANCE, "running", READY).await;
    started.elapsed()
}

/// Stops the instance, then times its first `/v1/chat/completions` (one token) through llamactl:
/// the on-demand start, the wait until ready, and the answer.
async fn via_on_demand(rig: &Rig) -> Duration {
    rig.llamactl.op(INSTANCE, "stop").await;
    rig.llamactl.wait_status(INSTANCE, "stopped", READY).await;
    // An operator's stop holds against requests unless the definition allows them to start it.
    // Set while stopped (a running instance would restart), and only here: a baseline build from
    // before the setting existed would pass it to llama-server as a flag.
    let path = format!("/api/v1/instances/{INSTANCE}");
    let allow = json!({"on_demand_after_stop": true});
    let (status, answer) = rig
        .llamactl
        .call(reqwest::Method::PUT, &path, Some(allow))
        .await;
    assert_eq!(status, 200, "allow on-demand starts: {answer}");
    let req = Req::post_json(
        "/v1/chat/completions",
        &json!({"model": INSTANCE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}),
    );
    let target = rig.target(Via::Llamactl, &req);
    let started = Instant::now();
    let mut conn = client::connect(target.addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to llamactl: {e}"));
    let answer = tokio::time::timeout(READY, client::exchange(&mut conn, &target))
        .await
        .expect("on-demand request timed out")
        .unwrap_or_else(|e| panic!("on-demand request failed: {e}"));
    assert!(
        answer.status.is_success(),
        "on-demand request: {}",
        answer.status
    );
    started.elapsed()
}

/// A way llamactl gets an instance from stopped to serving.
type Start = for<'a> fn(&'a Rig) -> BoxFuture<'a, Duration>;

/// Alternates a bare llama-server start with `start`, `rounds` times each; the two medians (ms).
async fn alternate(rig: &Rig, what: &str, start: Start) -> (f64, f64) {
    let (mut bare_ms, mut llamactl_ms) = (Vec::new(), Vec::new());
    for round in 0..rig.opts.rounds {
        // Rotate which goes first, as the load scenarios do.
        for step in 0..2 {
            if (round + step) % 2 == 0 {
                bare_ms.push(ms(bare(rig).await));
            } else {
                llamactl_ms.push(ms(start(rig).await));
            }
        }
        eprintln!(
            "bench: cold start round {}: llama-server alone {:.0} ms, llamactl {what} {:.0} ms",
            round + 1,
            bare_ms.last().copied().unwrap_or_default(),
            llamactl_ms.last().copied().unwrap_or_default()
        );
    }
    (median(&bare_ms), median(&llamactl_ms))
}

fn rows(name: &str, bare: f64, side: &str, result: String, llamactl: f64) -> Vec<Row> {
    vec![
        Row {
            scenario: name.into(),
            side: "llama-server alone".into(),
            result: format!("spawn → /health 200: {bare:.0} ms"),
            vs_direct: String::new(),
            vs_nginx: String::new(),
        },
        Row {
            scenario: name.into(),
            side: side.into(),
            result,
            vs_direct: format!("{:+.0} ms", llamactl - bare),
            vs_nginx: String::new(),
        },
    ]
}

/// `POST …/start` until `running`, against a bare start; leaves the instance running.
pub fn api_start(rig: &Rig) -> BoxFuture<'_, Vec<Row>> {
    Box::pin(async move {
        let (b, a) = alternate(rig, "start→running", |rig| Box::pin(via_api(rig))).await;
        rows(
            "cold start",
            b,
            "llamactl API",
            format!("POST start → status running: {a:.0} ms"),
            a,
        )
    })
}

/// The first `/v1` request to a stopped instance, against a bare start; leaves it running.
pub fn on_demand(rig: &Rig) -> BoxFuture<'_, Vec<Row>> {
    Box::pin(async move {
        let (b, a) = alternate(rig, "on-demand first request", |rig| {
            Box::pin(via_on_demand(rig))
        })
        .await;
        rows(
            "cold start, on demand",
            b,
            "llamactl /v1",
            format!("first chat request (1 token) answered: {a:.0} ms"),
            a,
        )
    })
}
