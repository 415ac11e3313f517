//! Swap storm (issue 13): llamactl with `max_running_instances: 1` and two instances of the real
//! model; 16 concurrent `/v1` chat requests alternating between them. Reported: whether all were
//! answered, the swaps made (evictions in the history), the time to drain the storm, and the bound
//! it should stay under: swaps × (stop + spawn-to-healthy, both measured by hand in the same run)
//! plus the requests' own time (each model's 8 requests answered by a loaded instance, measured
//! the same way).

use crate::llamactl::{self, Llamactl};
use crate::procs;
use crate::report::Row;
use crate::rig::{self, Rig, READY};
use crate::stats::ms;
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const NAMES: [&str; 2] = ["storm-a", "storm-b"];

/// Concurrent requests in the storm, alternating between the two instances.
const STORM: usize = 16;

/// One chat request (a few tokens) for `model`; its status.
async fn ask(client: &reqwest::Client, llamactl: &Llamactl, model: &str) -> u16 {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Name a colour."}],
                      "max_tokens": 4, "temperature": 0});
    let resp = client
        .post(format!("http://{}/v1/chat/completions", llamactl.addr))
        .bearer_auth(llamactl::INFERENCE_KEY)
        .json(&body)
        .timeout(READY * 4)
        .send()
        .await;
    match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let _ = resp.bytes().await;
            status
        }
        Err(e) => panic!("storm request for {model} failed: {e}"),
    }
}

/// Evictions recorded so far.
async fn evictions(llamactl: &Llamactl) -> usize {
    let (_, page) = llamactl
        .call(reqwest::Method::GET, "/api/v1/history?limit=1000", None)
        .await;
    page["events"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["event"] == "evicted").count())
}

/// `n` concurrent requests for `model`: how long until all were answered, and their statuses.
async fn batch(
    client: &reqwest::Client,
    llamactl: &Llamactl,
    models: &[&str],
) -> (Duration, Vec<u16>) {
    let started = Instant::now();
    let statuses =
        futures_util::future::join_all(models.iter().map(|m| ask(client, llamactl, m))).await;
    (started.elapsed(), statuses)
}

/// The scenario.
pub fn storm(rig: &Rig) -> BoxFuture<'_, Vec<Row>> {
    Box::pin(async move {
        let dir = rig.tmp.path().join("swap-storm");
        let ports = [procs::free_port(), procs::free_port()];
        let range = [ports[0].min(ports[1]), ports[0].max(ports[1])];
        let yaml = Llamactl::config(&dir, &rig.opts.llama_server, range).replacen(
            "instances:\n",
            "instances:\n  max_running_instances: 1\n  enable_lru_eviction: true\n",
            1,
        );
        let llamactl = Llamactl::start_yaml(&Llamactl::built(), &dir, &yaml);
        for (name, port) in NAMES.iter().zip(ports) {
            let mut body: Value = rig::instance_options(&rig.opts);
            body["port"] = json!(port);
            body["on_demand_after_stop"] = json!(true);
            llamactl.create(name, body).await;
            llamactl.wait_status(name, "running", READY).await;
        }
        let client = reqwest::Client::new();

        // By hand, same run: stop the loaded one, start the other, and each model's batch of 8 on
        // a loaded instance (storm-b ends up loaded, as before the storm).
        let stop = {
            let t = Instant::now();
            llamactl.op(NAMES[1], "stop").await;
            llamactl.wait_status(NAMES[1], "stopped", READY).await;
            t.elapsed()
        };
        let start = {
            let t = Instant::now();
            llamactl.op(NAMES[0], "start").await;
            llamactl.wait_status(NAMES[0], "running", READY).await;
            t.elapsed()
        };
        let (own_a, _) = batch(&client, &llamactl, &[NAMES[0]; STORM / 2]).await;
        llamactl.op(NAMES[0], "stop").await;
        llamactl.wait_status(NAMES[0], "stopped", READY).await;
        llamactl.op(NAMES[1], "start").await;
        llamactl.wait_status(NAMES[1], "running", READY).await;
        let (own_b, _) = batch(&client, &llamactl, &[NAMES[1]; STORM / 2]).await;

        let before = evictions(&llamactl).await;
        let models: Vec<&str> = (0..STORM).map(|i| NAMES[i % 2]).collect();
        let (drain, statuses) = batch(&client, &llamactl, &models).await;
        let swaps = evictions(&llamactl).await - before;
        let answered = statuses.iter().filter(|s| **s == 200).count();

        let own = own_a + own_b;
        let bound = (stop + start) * swaps as u32 + own;
        eprintln!(
            "bench: swap storm: {answered}/{STORM} answered ({statuses:?}), {swaps} swaps, \
             drained in {:.0} ms; stop {:.0} ms, start {:.0} ms, own {:.0} ms, bound {:.0} ms",
            ms(drain),
            ms(stop),
            ms(start),
            ms(own),
            ms(bound)
        );
        let name = "swap storm: max_running_instances 1, 16 concurrent requests alternating";
        vec![Row {
            scenario: name.into(),
            side: "llamactl /v1".into(),
            result: format!(
                "{answered}/{STORM} answered, {swaps} swaps, drained in {:.0} ms",
                ms(drain)
            ),
            vs_direct: format!(
                "bound {:.0} ms = {swaps} × (stop {:.0} + start {:.0}) + own {:.0} ({})",
                ms(bound),
                ms(stop),
                ms(start),
                ms(own),
                if drain <= bound { "within" } else { "over" }
            ),
            vs_nginx: String::new(),
        }]
    })
}
