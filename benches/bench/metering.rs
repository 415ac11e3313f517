//! What metering costs a request: the same llamactl build with metering on (the default:
//! Prometheus counters, token counts, the activity record, the request log line) and with it all
//! off, each with its own instance, taking turns in every round. The ratio is the median of the
//! per-round ratios (the goal: ≥ 0.98×, within noise).

use crate::client::Req;
use crate::load;
use crate::report::Row;
use crate::rig::{Rig, Via};
use crate::scenarios::chat;
use crate::stats::median;
use futures_util::future::BoxFuture;

/// One comparison: a request, its concurrency, and the route on each side.
struct Case {
    name: &'static str,
    req: Req,
    concurrency: usize,
    on: Via,
    off: Via,
}

/// `GET /health` c=32 through the proxy and a chat c=8 through `/v1`, metering on vs off.
pub fn on_vs_off(rig: &Rig) -> BoxFuture<'_, Vec<Row>> {
    Box::pin(async move {
        let cases = [
            Case {
                name: "metering: GET /health (proxy) c=32",
                req: Req::get("/health"),
                concurrency: 32,
                on: Via::Proxy,
                off: Via::Unmetered,
            },
            Case {
                name: "metering: POST chat, max_tokens 1 (/v1) c=8",
                req: Req::post_json("/v1/chat/completions", &chat(1, false)),
                concurrency: 8,
                on: Via::Llamactl,
                off: Via::UnmeteredV1,
            },
        ];
        let mut rows = Vec::new();
        for case in cases {
            let on = rig.target(case.on, &case.req);
            let off = rig.target(case.off, &case.req);
            let (mut on_rps, mut off_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rig.opts.rounds {
                // The order alternates, so neither side always runs on a warmer machine.
                let mut pair = [(&on, true), (&off, false)];
                if round % 2 == 1 {
                    pair.reverse();
                }
                let (mut a, mut b) = (0.0, 0.0);
                for (target, metered) in pair {
                    let run =
                        load::run(target, case.concurrency, rig.opts.warmup, rig.opts.window).await;
                    eprintln!(
                        "bench: {} round {} metering {}: {:.0} req/s p50 {:.3} ms ({} errors)",
                        case.name,
                        round + 1,
                        if metered { "on" } else { "off" },
                        run.rps,
                        run.p50,
                        run.errors
                    );
                    if metered {
                        a = run.rps;
                    } else {
                        b = run.rps;
                    }
                }
                on_rps.push(a);
                off_rps.push(b);
                ratios.push(a / b);
            }
            let ratio = median(&ratios);
            rows.push(Row {
                scenario: case.name.into(),
                side: "metering on".into(),
                result: format!("{:.0} req/s", median(&on_rps)),
                vs_direct: format!("{ratio:.3}× metering off (goal ≥ 0.98×)"),
                vs_nginx: String::new(),
            });
            rows.push(Row {
                scenario: case.name.into(),
                side: "metering off".into(),
                result: format!("{:.0} req/s", median(&off_rps)),
                vs_direct: String::new(),
                vs_nginx: String::new(),
            });
        }
        rows
    })
}
