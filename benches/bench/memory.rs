//! llamactl's resident memory idle and with 100 defined, stopped instances, and the time to list
//! them. Runs its own llamactl, whose backend command is `true`: the definitions are real, but no
//! model is ever loaded, so nothing but llamactl is measured.

use crate::client::{Req, Target};
use crate::llamactl::{self, Llamactl};
use crate::load;
use crate::procs;
use crate::report::Row;
use crate::rig::{self, Rig};
use futures_util::future::BoxFuture;
use serde_json::json;
use std::time::Duration;

/// How many instances to define.
const INSTANCES: usize = 100;
/// Let start-up allocations settle before reading VmRSS.
const SETTLE: Duration = Duration::from_secs(1);

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn rss(server: &Llamactl) -> u64 {
    procs::rss_kib(server.pid()).expect("llamactl's /proc status is readable")
}

/// Idle RSS, RSS with 100 stopped instances (after defining them, and after a fresh boot on that
/// database), and `GET /api/v1/instances` latency with them.
pub fn hundred_stopped(rig: &Rig) -> BoxFuture<'_, Vec<Row>> {
    Box::pin(async move {
        let port = procs::free_port();
        let dir = rig.tmp.path().join("memory");
        let server = Llamactl::start(
            &Llamactl::built(),
            &dir,
            "true",
            [port, port.saturating_add(20)],
        );
        tokio::time::sleep(SETTLE).await;
        let idle = rss(&server);

        let mut body = rig::instance_options(&rig.opts);
        body["auto_restart"] = json!(false);
        for i in 0..INSTANCES {
            let name = format!("m{i:03}");
            server.create(&name, body.clone()).await;
            server.op(&name, "stop").await;
            server.wait_status(&name, "stopped", rig::READY).await;
        }
        tokio::time::sleep(SETTLE).await;
        let defined = rss(&server);

        let server = server.restart();
        tokio::time::sleep(SETTLE).await;
        let booted = rss(&server);

        let (_, list) = server
            .call(reqwest::Method::GET, "/api/v1/instances", None)
            .await;
        let count = list.as_array().map_or(0, Vec::len);
        let bytes = list.to_string().len();
        let target = Target {
            addr: server.addr,
            path: "/api/v1/instances".into(),
            key: Some(llamactl::ADMIN_KEY.into()),
            req: Req::get("/api/v1/instances"),
        };
        let listing = load::run(&target, 1, rig.opts.warmup, rig.opts.window).await;
        let after_list = rss(&server);
        eprintln!(
            "bench: memory idle {idle} KiB, 100 defined {defined} KiB, fresh boot {booted} KiB, after listing {after_list} KiB"
        );

        let per_instance = |kib: u64| {
            format!(
                "{:+.1} KiB per instance",
                (kib as f64 - idle as f64) / INSTANCES as f64
            )
        };
        let row = |scenario: &str, side: &str, result: String, note: String| Row {
            scenario: scenario.into(),
            side: side.into(),
            result,
            vs_direct: note,
            vs_nginx: String::new(),
        };
        vec![
            row(
                "memory (VmRSS)",
                "llamactl idle, no instances",
                mib(idle),
                String::new(),
            ),
            row(
                "memory (VmRSS)",
                "100 stopped, just defined",
                mib(defined),
                per_instance(defined),
            ),
            row(
                "memory (VmRSS)",
                "100 stopped, fresh boot",
                mib(booted),
                per_instance(booted),
            ),
            row(
                "memory (VmRSS)",
                "100 stopped, after listing",
                mib(after_list),
                per_instance(after_list),
            ),
            row(
                "list instances",
                "GET /api/v1/instances",
                format!(
                    "{count} instances, {:.0} KiB: p50 {:.2} ms, p99 {:.2} ms, {:.0} req/s (c=1)",
                    bytes as f64 / 1024.0,
                    listing.p50,
                    listing.p99,
                    listing.rps
                ),
                String::new(),
            ),
        ]
    })
}
