//! What a key's quotas cost a request: a stored key with limits (high enough never to refuse) and
//! priority high against a stored key without either, on the same llamactl and instance, taking
//! turns in every round. `GET /v1/models` is not counted against a quota (it runs no inference), so
//! it measures what the key's policy costs the lookup; a chat through `/v1` pays the admission
//! (one lock), the `x-ratelimit-*` headers and the token charge at the answer's end. The ratio is
//! the median of the per-round ratios (the goal: ≥ 0.98×).

use crate::client::{Req, Target};
use crate::load;
use crate::report::Row;
use crate::rig::{Rig, Via};
use crate::scenarios::chat;
use crate::stats::median;
use futures_util::future::BoxFuture;
use serde_json::{json, Value};

/// Connections kept busy at once.
const CONCURRENCY: usize = 8;

/// Creates a stored inference key with `policy`; its token and id.
async fn key(rig: &Rig, name: &str, policy: Value) -> (String, String) {
    let mut body = json!({"name": name, "kind": "inference"});
    if let (Some(body), Some(policy)) = (body.as_object_mut(), policy.as_object()) {
        body.extend(policy.clone());
    }
    let (status, answer) = rig
        .llamactl
        .call(reqwest::Method::POST, "/api/v1/auth/keys", Some(body))
        .await;
    assert_eq!(status, 201, "create key {name}: {answer}");
    let field = |f: &str| answer[f].as_str().expect(f).to_string();
    (field("key"), field("id"))
}

/// Limited vs unlimited key on `GET /v1/models` and a chat (max_tokens 1) through `/v1`.
pub fn limited_vs_unlimited(rig: &Rig) -> BoxFuture<'_, Vec<Row>> {
    Box::pin(async move {
        let limits = json!({"limits": {"requests_per_minute": 1_000_000_000u64,
            "tokens_per_minute": 1_000_000_000_000u64, "tokens_per_day": 1_000_000_000_000u64},
            "priority": "high"});
        let (limited, limited_id) = key(rig, "bench-limited", limits).await;
        let (plain, _) = key(rig, "bench-plain", json!({})).await;
        let cases = [
            ("quota: GET /v1/models c=8", Req::get("/v1/models")),
            (
                "quota: POST chat, max_tokens 1 (/v1) c=8",
                Req::post_json("/v1/chat/completions", &chat(1, false)),
            ),
        ];
        let mut rows = Vec::new();
        for (name, req) in cases {
            let with_key = |token: &str| Target {
                key: Some(token.to_string()),
                ..rig.target(Via::Llamactl, &req)
            };
            let sides = [with_key(&limited), with_key(&plain)];
            let (mut rps, mut errors, mut ratios) = ([vec![], vec![]], [0, 0], vec![]);
            for round in 0..rig.opts.rounds {
                // The order alternates, so neither side always runs on a warmer machine.
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                let mut this = [0.0; 2];
                for i in order {
                    let run =
                        load::run(&sides[i], CONCURRENCY, rig.opts.warmup, rig.opts.window).await;
                    if let Some(e) = &run.first_error {
                        eprintln!("bench: {name} side {i}: {e}");
                    }
                    eprintln!(
                        "bench: {name} round {} {}: {:.0} req/s p50 {:.3} ms ({} errors)",
                        round + 1,
                        ["limited key", "key without limits"][i],
                        run.rps,
                        run.p50,
                        run.errors
                    );
                    this[i] = run.rps;
                    errors[i] += run.errors;
                }
                rps[0].push(this[0]);
                rps[1].push(this[1]);
                ratios.push(this[0] / this[1]);
            }
            let ratio = median(&ratios);
            rows.push(Row {
                scenario: name.into(),
                side: "key with limits, priority high".into(),
                result: format!("{:.0} req/s, {} errors", median(&rps[0]), errors[0]),
                vs_direct: format!("{ratio:.3}× key without limits (goal ≥ 0.98×)"),
                vs_nginx: String::new(),
            });
            rows.push(Row {
                scenario: name.into(),
                side: "key without limits".into(),
                result: format!("{:.0} req/s, {} errors", median(&rps[1]), errors[1]),
                vs_direct: String::new(),
                vs_nginx: String::new(),
            });
        }
        // The limited key was counted: its usage shows the chats (not the model lists).
        let (_, shown) = rig
            .llamactl
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/auth/keys/{limited_id}"),
                None,
            )
            .await;
        eprintln!("bench: quota: the limited key's usage: {}", shown["usage"]);
        rows
    })
}
