//! Cold start: llama-server's own spawn-to-healthy time against llamactl's `start` → `running`.

use crate::client::{self, Req, Target};
use crate::procs::{self, Guard};
use crate::report::Row;
use crate::rig::{self, Rig, INSTANCE, READY};
use crate::stats::{median, ms};
use futures_util::future::BoxFuture;
use serde_json::Value;
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
    let Ok(mut conn) = client::connect(addr).await else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client::exchange(&mut conn, &target)).await,
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

/// Alternates the two, `rounds` times each; leaves the instance running.
pub fn api_start(rig: &Rig) -> BoxFuture<'_, Vec<Row>> {
    Box::pin(async move {
        let (mut bare_ms, mut api_ms) = (Vec::new(), Vec::new());
        for round in 0..rig.opts.rounds {
            // Rotate which goes first, as the load scenarios do.
            for step in 0..2 {
                if (round + step) % 2 == 0 {
                    bare_ms.push(ms(bare(rig).await));
                } else {
                    api_ms.push(ms(via_api(rig).await));
                }
            }
            eprintln!(
                "bench: cold start round {}: llama-server alone {:.0} ms, llamactl start→running {:.0} ms",
                round + 1,
                bare_ms.last().copied().unwrap_or_default(),
                api_ms.last().copied().unwrap_or_default()
            );
        }
        let (b, a) = (median(&bare_ms), median(&api_ms));
        let name = "cold start";
        vec![
            Row {
                scenario: name.into(),
                side: "llama-server alone".into(),
                result: format!("spawn → /health 200: {b:.0} ms"),
                vs_direct: String::new(),
                vs_nginx: String::new(),
            },
            Row {
                scenario: name.into(),
                side: "llamactl API".into(),
                result: format!("POST start → status running: {a:.0} ms"),
                vs_direct: format!("{:+.0} ms", a - b),
                vs_nginx: String::new(),
            },
        ]
    })
}
