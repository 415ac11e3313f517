//! Model swap (issue 11): llamactl with `max_running_instances: 1` and two instances of the real
//! model; a `/v1` request for the stopped one evicts the running one and starts it. Timed until its
//! answer, against the same swap done by hand on the same llamactl (stop the running one through
//! the API until `stopped`, start the other until `running`, then the request), interleaved per
//! round. With `BENCH_BASELINE`, the baseline build gets its own pair and takes turns too.

use crate::client::{self, Req, Target};
use crate::llamactl::{self, Llamactl};
use crate::procs;
use crate::report::Row;
use crate::rig::{self, Rig, READY};
use crate::stats::{median, ms};
use futures_util::future::BoxFuture;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// The two instances; one runs at a time.
const NAMES: [&str; 2] = ["swap-a", "swap-b"];

/// A llamactl at its running limit of one, and which of its two instances runs.
struct Pair {
    llamactl: Llamactl,
    running: usize,
}

impl Pair {
    /// Starts `binary` with the limit, creates both instances (the second evicts the first) and
    /// waits until the second runs.
    async fn up(rig: &Rig, binary: &Path, dir: &str) -> Pair {
        let dir = rig.tmp.path().join(dir);
        let ports = [procs::free_port(), procs::free_port()];
        let range = [ports[0].min(ports[1]), ports[0].max(ports[1])];
        let yaml = Llamactl::config(&dir, &rig.opts.llama_server, range).replacen(
            "instances:\n",
            "instances:\n  max_running_instances: 1\n  enable_lru_eviction: true\n",
            1,
        );
        let llamactl = Llamactl::start_yaml(binary, &dir, &yaml);
        for (name, port) in NAMES.iter().zip(ports) {
            let mut body = rig::instance_options(&rig.opts);
            body["port"] = json!(port);
            // The by-hand swap stops instances as an operator; requests must still start them.
            body["on_demand_after_stop"] = json!(true);
            llamactl.create(name, body).await;
            llamactl.wait_status(name, "running", READY).await;
        }
        Pair {
            llamactl,
            running: 1,
        }
    }

    fn stopped(&self) -> usize {
        1 - self.running
    }

    /// One chat request (one token) for instance `i` on a new connection, until its answer.
    async fn ask(&self, i: usize) {
        let req = Req::post_json(
            "/v1/chat/completions",
            &json!({"model": NAMES[i], "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}),
        );
        let target = Target {
            addr: self.llamactl.addr,
            path: req.path.clone(),
            key: Some(llamactl::INFERENCE_KEY.to_string()),
            req,
        };
        let mut conn = client::connect(target.addr)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to llamactl: {e}"));
        let answer = tokio::time::timeout(READY, client::exchange(&mut conn, &target))
            .await
            .expect("swap request timed out")
            .unwrap_or_else(|e| panic!("swap request failed: {e}"));
        assert!(
            answer.status.is_success(),
            "request for {}: {}",
            NAMES[i],
            answer.status
        );
    }

    /// The request for the stopped instance, which evicts the running one: until its answer.
    async fn swap(&mut self) -> Duration {
        let next = self.stopped();
        let started = Instant::now();
        self.ask(next).await;
        let took = started.elapsed();
        self.running = next;
        took
    }

    /// The same by hand: stop until `stopped`, start until `running`, then the request.
    async fn by_hand(&mut self) -> Duration {
        let (now, next) = (NAMES[self.running], self.stopped());
        let started = Instant::now();
        self.llamactl.op(now, "stop").await;
        self.llamactl.wait_status(now, "stopped", READY).await;
        self.llamactl.op(NAMES[next], "start").await;
        self.llamactl
            .wait_status(NAMES[next], "running", READY)
            .await;
        self.ask(next).await;
        let took = started.elapsed();
        self.running = next;
        took
    }
}

/// One llamactl build's swaps and by-hand swaps, in ms, one of each per round.
#[derive(Default)]
struct Figures {
    swap: Vec<f64>,
    by_hand: Vec<f64>,
}

impl Figures {
    fn diffs(&self) -> Vec<f64> {
        self.swap
            .iter()
            .zip(&self.by_hand)
            .map(|(s, h)| s - h)
            .collect()
    }
}

/// Median and p90 (nearest rank) of `values` (ms; differences may be negative).
fn p50_p90(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((0.9 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    (
        median(values),
        sorted.get(rank - 1).copied().unwrap_or(f64::NAN),
    )
}

fn rows(name: &str, who: &str, f: &Figures) -> Vec<Row> {
    let (s50, s90) = p50_p90(&f.swap);
    let (h50, h90) = p50_p90(&f.by_hand);
    let (d50, d90) = p50_p90(&f.diffs());
    vec![
        Row {
            scenario: name.into(),
            side: format!("{who} by hand"),
            result: format!(
                "stop → stopped, start → running, request answered: p50 {h50:.0} ms, p90 {h90:.0} ms"
            ),
            vs_direct: String::new(),
            vs_nginx: String::new(),
        },
        Row {
            scenario: name.into(),
            side: format!("{who} /v1 swap"),
            result: format!(
                "request for the stopped instance answered: p50 {s50:.0} ms, p90 {s90:.0} ms"
            ),
            vs_direct: format!("{d50:+.0} ms p50, {d90:+.0} ms p90 vs by hand"),
            vs_nginx: String::new(),
        },
    ]
}

/// The scenario: per round, a swap and a by-hand swap on each build, in rotating order.
pub fn swap(rig: &Rig) -> BoxFuture<'_, Vec<Row>> {
    Box::pin(async move {
        let mut pairs = vec![("llamactl", Pair::up(rig, &Llamactl::built(), "swap").await)];
        if let Some(binary) = &rig.opts.baseline {
            pairs.push(("baseline", Pair::up(rig, binary, "swap-baseline").await));
        }
        // One unmeasured swap each way: page cache and connections warm up.
        for (_, pair) in &mut pairs {
            pair.swap().await;
            pair.by_hand().await;
        }
        let mut figures: Vec<Figures> = pairs.iter().map(|_| Figures::default()).collect();
        let steps = pairs.len() * 2;
        for round in 0..rig.opts.rounds {
            for step in 0..steps {
                let turn = (round + step) % steps;
                let pair = &mut pairs[turn / 2].1;
                let f = &mut figures[turn / 2];
                if turn % 2 == 0 {
                    f.swap.push(ms(pair.swap().await));
                } else {
                    f.by_hand.push(ms(pair.by_hand().await));
                }
            }
            for ((who, _), f) in pairs.iter().zip(&figures) {
                eprintln!(
                    "bench: swap round {} {who}: swap {:.0} ms, by hand {:.0} ms",
                    round + 1,
                    f.swap.last().copied().unwrap_or_default(),
                    f.by_hand.last().copied().unwrap_or_default()
                );
            }
        }
        let name = "swap: max_running_instances 1, request for the stopped instance";
        pairs
            .iter()
            .zip(&figures)
            .flat_map(|((who, _), f)| rows(name, who, f))
            .collect()
    })
}
