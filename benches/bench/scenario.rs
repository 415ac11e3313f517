//! What a scenario is, and how each kind runs: sides take turns in every round (the order rotates),
//! so machine noise hits all sides alike; figures are medians across rounds, and ratios are medians
//! of the per-round ratios (each round's sides ran back to back).

use crate::client::{self, Req, Streamed};
use crate::load::{self, Run};
use crate::report::{Report, Row, Verdict};
use crate::rig::{Rig, Via};
use crate::stats::{median, ms};
use futures_util::future::BoxFuture;
use std::time::Duration;

/// One side of a comparison: a label for the table and how requests get to llama-server.
#[derive(Clone, Copy, Debug)]
pub struct Side {
    /// Shown in the table.
    pub label: &'static str,
    /// The route.
    pub via: Via,
}

/// Straight to llama-server.
pub const DIRECT: Side = Side {
    label: "direct",
    via: Via::Direct,
};
/// Through nginx.
pub const NGINX: Side = Side {
    label: "nginx",
    via: Via::Nginx,
};
/// Through the Go reference proxy (left out when it was not built).
pub const GO_PROXY: Side = Side {
    label: "go proxy",
    via: Via::GoProxy,
};
/// Through the bare hyper proxy (`bare_proxy.rs`): the stack llamactl is built on, alone.
pub const BARE: Side = Side {
    label: "bare hyper proxy",
    via: Via::Bare,
};
/// Through llamactl's instance proxy.
pub const PROXY: Side = Side {
    label: "llamactl proxy",
    via: Via::Proxy,
};

/// Through the baseline llamactl's proxy (added by the rig when `BENCH_BASELINE` is set).
pub const BASELINE: Side = Side {
    label: "baseline proxy",
    via: Via::Baseline,
};

/// To the baseline llamactl's `/v1` (added by the rig when `BENCH_BASELINE` is set).
pub const BASELINE_V1: Side = Side {
    label: "baseline /v1",
    via: Via::BaselineV1,
};

/// What a load comparison must reach (from the issue).
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// llamactl's throughput at least nginx's, and its added p50 latency at most nginx's.
    NginxOrBetter,
    /// llamactl's throughput at least this fraction of direct's.
    OfDirect(f64),
}

/// Closed-loop load on each side, at each concurrency.
pub struct Load {
    /// Table name.
    pub name: &'static str,
    /// The request, as sent to llama-server.
    pub req: Req,
    /// Connections kept busy at once; one comparison each.
    pub concurrency: &'static [usize],
    /// Sides, the first being the baseline for ratios (put `DIRECT` first).
    pub sides: Vec<Side>,
    /// The target.
    pub goal: Goal,
}

/// One streamed request per side and round: time to first event and event count.
pub struct Stream {
    /// Table name.
    pub name: &'static str,
    /// The request (with `"stream": true`).
    pub req: Req,
    /// Sides, `DIRECT` first.
    pub sides: Vec<Side>,
}

/// Anything else: a function that measures and returns its table lines.
pub type Measure = for<'a> fn(&'a Rig) -> BoxFuture<'a, Vec<Row>>;

/// Like [`Measure`], with verdicts against the targets too.
pub type Judge = for<'a> fn(&'a Rig) -> BoxFuture<'a, (Vec<Row>, Vec<Verdict>)>;

/// A scenario of any kind.
pub enum Scenario {
    /// See [`Load`].
    Load(Load),
    /// See [`Stream`].
    Stream(Stream),
    /// A named [`Measure`].
    Custom(&'static str, Measure),
    /// A named [`Judge`].
    Judged(&'static str, Judge),
}

impl Scenario {
    /// The name filters (`BENCH_ONLY`) match against.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Load(l) => l.name,
            Scenario::Stream(s) => s.name,
            Scenario::Custom(name, _) | Scenario::Judged(name, _) => name,
        }
    }

    /// Runs it and adds its lines (and verdicts) to `report`.
    pub async fn run(&self, rig: &Rig, report: &mut Report) {
        match self {
            Scenario::Load(l) => run_load(l, rig, report).await,
            Scenario::Stream(s) => run_stream(s, rig, report).await,
            Scenario::Custom(_, measure) => report.rows.extend(measure(rig).await),
            Scenario::Judged(_, judge) => {
                let (rows, verdicts) = judge(rig).await;
                report.rows.extend(rows);
                report.verdicts.extend(verdicts);
            }
        }
    }
}

/// `sides` in the order round `round` runs them.
pub fn rotated(sides: &[Side], round: usize) -> Vec<(usize, Side)> {
    let mut order: Vec<(usize, Side)> = sides.iter().copied().enumerate().collect();
    if !order.is_empty() {
        let len = order.len();
        order.rotate_left(round % len);
    }
    order
}

fn index_of(sides: &[Side], via: Via) -> Option<usize> {
    sides.iter().position(|s| s.via == via)
}

/// Median over rounds of `f(this round's side run, this round's reference run)`.
fn paired(runs: &[Vec<Run>], side: usize, reference: usize, f: impl Fn(&Run, &Run) -> f64) -> f64 {
    let values: Vec<f64> = runs
        .iter()
        .map(|round| f(&round[side], &round[reference]))
        .collect();
    median(&values)
}

fn compare(runs: &[Vec<Run>], side: usize, reference: Option<usize>) -> Option<(f64, f64)> {
    let r = reference.filter(|&r| r != side)?;
    Some((
        paired(runs, side, r, |a, b| a.rps / b.rps),
        paired(runs, side, r, |a, b| a.p50 - b.p50),
    ))
}

fn ratio_cell(cmp: Option<(f64, f64)>) -> String {
    cmp.map_or_else(String::new, |(ratio, added)| {
        format!("{ratio:.2}× req/s, p50 {added:+.3} ms")
    })
}

async fn run_load(l: &Load, rig: &Rig, report: &mut Report) {
    let sides = rig.sides(&l.sides);
    let targets: Vec<_> = sides.iter().map(|s| rig.target(s.via, &l.req)).collect();
    for &c in l.concurrency {
        let name = format!("{} c={c}", l.name);
        // runs[round][side]
        let mut runs: Vec<Vec<Run>> = Vec::new();
        for round in 0..rig.opts.rounds {
            let mut this: Vec<Option<Run>> = vec![None; sides.len()];
            for (i, side) in rotated(&sides, round) {
                let run = load::run(&targets[i], c, rig.opts.warmup, rig.opts.window).await;
                eprintln!(
                    "bench: {name} round {} {}: {:.0} req/s p50 {:.3} ms p99 {:.3} ms{}",
                    round + 1,
                    side.label,
                    run.rps,
                    run.p50,
                    run.p99,
                    run.first_error
                        .as_deref()
                        .map(|e| format!(" ({} errors, first: {e})", run.errors))
                        .unwrap_or_default()
                );
                this[i] = Some(run);
            }
            runs.push(this.into_iter().flatten().collect());
        }
        let direct = index_of(&sides, Via::Direct);
        let nginx = index_of(&sides, Via::Nginx);
        for (i, side) in sides.iter().enumerate() {
            let col =
                |f: fn(&Run) -> f64| median(&runs.iter().map(|r| f(&r[i])).collect::<Vec<_>>());
            let errors: usize = runs.iter().map(|r| r[i].errors).sum();
            let mut result = format!(
                "{:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                col(|r| r.rps),
                col(|r| r.p50),
                col(|r| r.p99)
            );
            if errors > 0 {
                result.push_str(&format!(", **{errors} errors**"));
            }
            let vs_direct = compare(&runs, i, direct);
            let vs_nginx = compare(&runs, i, nginx).filter(|_| side.via.is_llamactl());
            report.rows.push(Row {
                scenario: name.clone(),
                side: side.label.into(),
                result,
                vs_direct: ratio_cell(vs_direct),
                vs_nginx: ratio_cell(vs_nginx),
            });
            if side.via.is_llamactl() {
                report
                    .verdicts
                    .extend(verdicts(l.goal, &name, side.label, vs_direct, vs_nginx));
            }
        }
    }
}

fn verdicts(
    goal: Goal,
    name: &str,
    side: &str,
    vs_direct: Option<(f64, f64)>,
    vs_nginx: Option<(f64, f64)>,
) -> Vec<Verdict> {
    let what = format!("{name}, {side}");
    match (goal, vs_direct, vs_nginx) {
        (Goal::NginxOrBetter, _, Some((ratio, added))) => vec![
            Verdict {
                what: what.clone(),
                goal: "req/s ≥ nginx's".into(),
                got: format!("{ratio:.2}× nginx"),
                met: ratio >= 1.0,
            },
            Verdict {
                what,
                goal: "added p50 ≤ nginx's".into(),
                got: format!("p50 {added:+.3} ms vs nginx"),
                met: added <= 0.0,
            },
        ],
        (Goal::OfDirect(min), Some((ratio, _)), _) => vec![Verdict {
            what,
            goal: format!("req/s ≥ {min:.2}× direct"),
            got: format!("{ratio:.3}× direct"),
            met: ratio >= min,
        }],
        _ => Vec::new(),
    }
}

/// How long one streamed answer may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(120);

async fn run_stream(s: &Stream, rig: &Rig, report: &mut Report) {
    let sides = rig.sides(&s.sides);
    let targets: Vec<_> = sides
        .iter()
        .map(|side| rig.target(side.via, &s.req))
        .collect();
    // One unmeasured answer per side first: the first completion after start-up (or after other
    // requests) pays for filling llama-server's prompt cache, whichever side sends it.
    for (target, side) in targets.iter().zip(&sides) {
        if let Err(e) = client::stream(target, STREAM_TIMEOUT).await {
            panic!("{}: {} failed in warm-up: {e}", s.name, side.label);
        }
    }
    // got[side] = one answer per round
    let mut got: Vec<Vec<Streamed>> = vec![Vec::new(); sides.len()];
    for round in 0..rig.opts.rounds {
        for (i, side) in rotated(&sides, round) {
            let answer = client::stream(&targets[i], STREAM_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("{}: {} failed: {e}", s.name, side.label));
            assert!(
                answer.status.is_success(),
                "{}: {} answered {}",
                s.name,
                side.label,
                answer.status
            );
            eprintln!(
                "bench: {} round {} {}: first event {:.1} ms, {} events in {} reads, {:.1} ms total",
                s.name,
                round + 1,
                side.label,
                ms(answer.first_event),
                answer.events,
                answer.reads,
                ms(answer.total)
            );
            got[i].push(answer);
        }
    }
    let med = |i: usize, f: fn(&Streamed) -> f64| median(&got[i].iter().map(f).collect::<Vec<_>>());
    let direct = index_of(&sides, Via::Direct);
    for (i, side) in sides.iter().enumerate() {
        let ttfc = med(i, |a| ms(a.first_event));
        let events = med(i, |a| a.events as f64);
        let vs_direct = direct.filter(|&d| d != i).map_or_else(String::new, |d| {
            let paired: Vec<f64> = got[i]
                .iter()
                .zip(&got[d])
                .map(|(a, b)| ms(a.first_event) - ms(b.first_event))
                .collect();
            format!(
                "first event {:+.2} ms, events {:+.0}",
                median(&paired),
                events - med(d, |a| a.events as f64)
            )
        });
        report.rows.push(Row {
            scenario: s.name.into(),
            side: side.label.into(),
            result: format!(
                "first event {ttfc:.1} ms, {events:.0} events in {:.0} reads, total {:.1} ms",
                med(i, |a| a.reads as f64),
                med(i, |a| ms(a.total))
            ),
            vs_direct,
            vs_nginx: String::new(),
        });
    }
}
