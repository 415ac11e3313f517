//! What authentication costs: `GET /v1/models` requests per second with auth off, with a key stored
//! in the database while 1 key is stored and while 1,000 are, and with a key from the config file.
//! Runs its own two llamactls (auth on, auth off), each with the same one stopped instance, so the
//! answers are identical and only the auth path differs. Sides alternate in every round.

use crate::client::{Req, Target};
use crate::llamactl::{self, Llamactl};
use crate::load::{self, Run};
use crate::procs;
use crate::report::Row;
use crate::rig::{self, Rig};
use crate::stats::median;
use futures_util::future::BoxFuture;
use serde_json::json;
use std::net::SocketAddr;

/// Keys stored for the "many keys" measurement.
const MANY: usize = 1000;
/// Connections kept busy at once.
const CONCURRENCY: usize = 8;

/// One measured side: a label and where its requests go with which key.
struct AuthSide {
    label: String,
    target: Target,
}

fn models(addr: SocketAddr, key: Option<String>) -> Target {
    Target {
        addr,
        path: "/v1/models".into(),
        key,
        req: Req::get("/v1/models"),
    }
}

/// One stopped instance, so `/v1/models` lists the same on both servers.
async fn define_one(server: &Llamactl, rig: &Rig) {
    let mut body = rig::instance_options(&rig.opts);
    body["auto_restart"] = json!(false);
    server.create("m", body).await;
    server.op("m", "stop").await;
    server.wait_status("m", "stopped", rig::READY).await;
}

/// Creates a stored inference key; its token.
async fn stored_key(server: &Llamactl, name: &str) -> String {
    let (status, answer) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/keys",
            Some(json!({"name": name, "kind": "inference"})),
        )
        .await;
    assert_eq!(status, 201, "create key {name}: {answer}");
    answer["key"].as_str().expect("token").to_string()
}

/// `rounds` rounds, every side once per round (order rotating); median req/s per side, and the
/// median of each side's per-round ratio to the first side.
async fn measure(rig: &Rig, sides: &[AuthSide]) -> Vec<(f64, f64, usize)> {
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    let mut errors = vec![0; sides.len()];
    for round in 0..rig.opts.rounds {
        let mut this_round = vec![0.0; sides.len()];
        for step in 0..sides.len() {
            let i = (round + step) % sides.len();
            let run: Run = load::run(
                &sides[i].target,
                CONCURRENCY,
                rig.opts.warmup,
                rig.opts.window,
            )
            .await;
            if let Some(e) = &run.first_error {
                eprintln!("bench: auth {}: {e}", sides[i].label);
            }
            errors[i] += run.errors;
            this_round[i] = run.rps;
        }
        for (i, r) in this_round.iter().enumerate() {
            rps[i].push(*r);
        }
    }
    (0..sides.len())
        .map(|i| {
            let ratios: Vec<f64> = rps[i]
                .iter()
                .zip(&rps[0])
                .map(|(r, base)| r / base)
                .collect();
            (median(&rps[i]), median(&ratios), errors[i])
        })
        .collect()
}

fn rows(phase: &str, sides: &[AuthSide], figures: &[(f64, f64, usize)]) -> Vec<Row> {
    sides
        .iter()
        .zip(figures)
        .map(|(side, (rps, ratio, errors))| Row {
            scenario: format!("auth: GET /v1/models, c={CONCURRENCY}, {phase}"),
            side: side.label.clone(),
            result: format!("{rps:.0} req/s, {errors} errors (429s included)"),
            vs_direct: format!("{ratio:.2}× auth off"),
            vs_nginx: String::new(),
        })
        .collect()
}

/// The auth comparison.
pub fn keys(rig: &Rig) -> BoxFuture<'_, Vec<Row>> {
    Box::pin(async move {
        let port = procs::free_port();
        let on_dir = rig.tmp.path().join("auth-on");
        let on = Llamactl::start(
            &Llamactl::built(),
            &on_dir,
            "true",
            [port, port.saturating_add(4)],
        );
        let off_dir = rig.tmp.path().join("auth-off");
        let off_yaml = Llamactl::config(
            &off_dir,
            "true",
            [port.saturating_add(5), port.saturating_add(9)],
        )
        .replace("auth:\n", "auth:\n  require_inference_auth: false\n");
        let off = Llamactl::start_yaml(&Llamactl::built(), &off_dir, &off_yaml);
        define_one(&on, rig).await;
        define_one(&off, rig).await;

        let token = stored_key(&on, "bench-0").await;
        let sides = vec![
            AuthSide {
                label: "auth off".into(),
                target: models(off.addr, None),
            },
            AuthSide {
                label: "stored key".into(),
                target: models(on.addr, Some(token.clone())),
            },
            AuthSide {
                label: "config-file key".into(),
                target: models(on.addr, Some(llamactl::INFERENCE_KEY.into())),
            },
        ];
        let one = measure(rig, &sides).await;
        let mut out = rows("1 key stored", &sides, &one);

        eprintln!(
            "bench: auth: storing {} more keys (one argon2 hash each)",
            MANY - 1
        );
        for i in 1..MANY {
            stored_key(&on, &format!("bench-{i}")).await;
        }
        let many = measure(rig, &sides[..2]).await;
        out.extend(rows("1,000 keys stored", &sides[..2], &many));
        out
    })
}
