//! Many streamed chats at once (issue 11): N = 100, 1,000 and 2,000 concurrent streams, each 64
//! token events 20 ms apart from the stand-in backend (`stand_in.rs`, no inference), straight to
//! it, through nginx, through the Go proxy (when built), through the bare hyper proxy, and
//! through llamactl's `/v1` and instance proxy, the sides taking turns in every round. Reports
//! events/s, time to first event p50/p99 (from connecting), whole-stream p99, failed streams, and
//! the peak RSS and RSS per open stream over idle of llamactl and of the bare hyper proxy.
//!
//! With `BENCH_BASELINE`, that build runs too (its own llamactl and stand-in, the same limits),
//! and its `/v1` and proxy are sides of the same rounds: a before/after from one run.
//!
//! Runs its own llamactl, with the stand-in as its instance's backend, started with the soft
//! open-file limit a systemd service gets by default (1024, the hard limit left as is): llamactl
//! must raise its own, and so is the Go proxy (Go's runtime raises it). nginx raises its own with
//! `worker_rlimit_nofile`; the stand-in and the bench raise theirs at start.

use crate::bare_proxy::BareProxy;
use crate::client::{self, Req, Target};
use crate::goproxy::GoProxy;
use crate::llamactl::Llamactl;
use crate::nginx::Nginx;
use crate::open_files;
use crate::procs;
use crate::report::{Row, Verdict};
use crate::rig::{self, Rig, Via};
use crate::scenario::{rotated, Side, BARE, BASELINE, BASELINE_V1, DIRECT, GO_PROXY, NGINX, PROXY};
use crate::stats::{median, ms, quantile};
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use serde_json::json;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Streams open at once, one comparison each.
const LEVELS: [usize; 3] = [100, 1_000, 2_000];
/// The levels the issue sets goals for.
const JUDGED_FROM: usize = 1_000;
/// The soft open-file limit llamactl starts with (systemd's default).
const SOFT_FILES: u64 = 1024;
/// The instance llamactl runs the stand-in as.
const INSTANCE: &str = "streams";
/// Token events per stream (`max_tokens`); each stream also carries the closing `usage` event.
const TOKENS: u64 = crate::stand_in::EVENTS;
/// How long one stream may take from connecting to its end (it needs 1.3 s unhindered).
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// A pause after each run, so its sockets are closed before the next side starts.
const SETTLE: Duration = Duration::from_secs(1);
/// The end of a stream: the last event, then a blank line.
const DONE: &[u8] = b"data: [DONE]\n\n";

/// Through llamactl's OpenAI-compatible route.
const V1: Side = Side {
    label: "llamactl /v1",
    via: Via::Llamactl,
};
/// The sides, direct first (the reference for ratios), then nginx; the Go proxy is left out when
/// it was not built. The bare hyper proxy shows what the stack costs without llamactl's own work.
const SIDES: [Side; 6] = [DIRECT, NGINX, GO_PROXY, BARE, V1, PROXY];

/// llamactl with the stand-in as its instance, and nginx and the Go proxy in front of the same
/// stand-in.
struct Stage {
    llamactl: Llamactl,
    /// The `BENCH_BASELINE` build, with its own stand-in instance, for a before/after.
    baseline: Option<Llamactl>,
    nginx: Nginx,
    goproxy: Option<GoProxy>,
    bare: BareProxy,
    backend: SocketAddr,
}

impl Stage {
    async fn up(rig: &Rig) -> Stage {
        let dir = rig.tmp.path().join("streams");
        let (llamactl, port) = Self::llamactl(&Llamactl::built(), &dir).await;
        let baseline = match &rig.opts.baseline {
            Some(binary) => Some(Self::llamactl(binary, &dir.join("baseline")).await.0),
            None => None,
        };
        let backend: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .expect("loopback address");
        let nginx = Nginx::start(&rig.opts.nginx, &dir.join("nginx"), backend, rig::cores());
        let goproxy = rig::go_proxy(&rig.opts, backend, Some(SOFT_FILES));
        let bare = BareProxy::start(backend, Some(SOFT_FILES));
        Stage {
            llamactl,
            baseline,
            nginx,
            goproxy,
            bare,
            backend,
        }
    }

    /// `binary` started with the soft open-file limit of a systemd service, in `dir`, running
    /// the stand-in as its instance; and the stand-in's port.
    async fn llamactl(binary: &std::path::Path, dir: &std::path::Path) -> (Llamactl, u16) {
        let port = procs::free_port();
        let exe = std::env::current_exe().expect("the bench knows its own executable");
        // The stand-in is this executable: the config's `args` put its switch before the flags.
        let yaml = Llamactl::config(dir, &exe.display().to_string(), [port, port]).replacen(
            "\ndata_dir:",
            &format!("\n    args: [{}]\ndata_dir:", json!(crate::stand_in::ARG)),
            1,
        );
        let llamactl = Llamactl::start_yaml_with(binary, dir, &yaml, |cmd| {
            // SAFETY: between fork and exec only getrlimit/setrlimit run; nothing allocates.
            unsafe { cmd.pre_exec(|| open_files::lower_soft(SOFT_FILES)) };
        });
        let body = json!({"model": "/stand-in.gguf", "port": port, "restart_delay": 0});
        llamactl.create(INSTANCE, body).await;
        llamactl.wait_status(INSTANCE, "running", rig::READY).await;
        (llamactl, port)
    }

    /// The llamactl a side goes through, if any.
    fn llamactl_of(&self, via: Via) -> Option<&Llamactl> {
        match via {
            Via::Baseline | Via::BaselineV1 => self.baseline.as_ref(),
            via if via.is_llamactl() => Some(&self.llamactl),
            _ => None,
        }
    }

    /// [`SIDES`] without the ones this stage cannot reach.
    fn sides(&self) -> Vec<Side> {
        let baseline = self.baseline.iter().flat_map(|_| [BASELINE_V1, BASELINE]);
        SIDES
            .into_iter()
            .filter(|s| s.via != Via::GoProxy || self.goproxy.is_some())
            .chain(baseline)
            .collect()
    }

    fn target(&self, via: Via) -> Target {
        let req = Req::post_json(
            "/v1/chat/completions",
            &json!({
                "model": INSTANCE,
                "messages": [{"role": "user", "content": "Tell me a story."}],
                "max_tokens": TOKENS,
                "stream": true,
            }),
        );
        let (addr, path) = match via {
            Via::Direct => (self.backend, req.path.clone()),
            Via::Nginx => (self.nginx.addr, req.path.clone()),
            Via::GoProxy => (
                self.goproxy
                    .as_ref()
                    .expect("go proxy side without the go proxy")
                    .addr,
                req.path.clone(),
            ),
            Via::Bare => (self.bare.addr, req.path.clone()),
            Via::Proxy | Via::Baseline => (
                self.llamactl_of(via).expect("a llamactl side").addr,
                format!("/api/v1/instances/{INSTANCE}/proxy{}", req.path),
            ),
            _ => (
                self.llamactl_of(via).expect("a llamactl side").addr,
                req.path.clone(),
            ),
        };
        rig::side_target(via, addr, path, req)
    }
}

/// One stream as the client saw it.
struct One {
    /// From connecting until the first complete event (None if none came).
    first: Option<Duration>,
    /// From connecting until the end (or the failure).
    whole: Duration,
    /// Complete `data:` events, the closing `[DONE]` not counted.
    events: u64,
    /// Why it failed, if it did.
    failure: Option<String>,
}

/// Counts complete events (each ends at a blank line) across reads, and keeps the stream's last
/// bytes to see whether it ended with `[DONE]`; no allocation per read.
#[derive(Default)]
struct Events {
    ends: u64,
    newline: bool,
    tail: Vec<u8>,
}

impl Events {
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                if self.newline {
                    self.ends += 1;
                }
                self.newline = !self.newline;
            } else {
                self.newline = false;
            }
        }
        let keep = data.len().min(DONE.len());
        self.tail.extend_from_slice(&data[data.len() - keep..]);
        let extra = self.tail.len().saturating_sub(DONE.len());
        self.tail.drain(..extra);
    }

    fn done(&self) -> bool {
        self.tail == DONE
    }

    /// `data:` events other than `[DONE]`.
    fn events(&self) -> u64 {
        self.ends - u64::from(self.done())
    }
}

/// Opens a connection, sends the chat and follows its events to the end.
async fn one(target: Arc<Target>) -> One {
    let began = Instant::now();
    let mut seen = Events::default();
    let mut first = None;
    let follow = async {
        let mut conn = client::connect(target.addr).await?;
        conn.ready().await.map_err(|e| e.to_string())?;
        let mut body = client::send_ok(&mut conn, &target).await?.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(data) = frame.data_ref() {
                seen.feed(data);
                if seen.ends > 0 {
                    first.get_or_insert_with(|| began.elapsed());
                }
            }
        }
        Ok(())
    };
    let outcome = tokio::time::timeout(STREAM_TIMEOUT, follow)
        .await
        .unwrap_or_else(|_| Err(format!("not finished within {STREAM_TIMEOUT:?}")));
    let expected = TOKENS + 1;
    let failure = match outcome {
        Err(e) => Some(e),
        Ok(()) if !seen.done() => Some(format!("ended without [DONE] after {} events", seen.ends)),
        Ok(()) if seen.events() != expected => {
            Some(format!("{} events, not {expected}", seen.events()))
        }
        Ok(()) => None,
    };
    One {
        first,
        whole: began.elapsed(),
        events: seen.events(),
        failure,
    }
}

/// `n` streams at once against one side.
#[derive(Clone, Debug)]
struct Run {
    events_per_sec: f64,
    first_p50: f64,
    first_p99: f64,
    whole_p99: f64,
    failed: usize,
    first_failure: Option<String>,
    /// llamactl's peak resident memory during the run, KiB (llamactl's sides only).
    peak_kib: Option<u64>,
}

/// A field of `/proc/<pid>/status` in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS (Linux ≥ 4.0, our own child).
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

async fn run(target: &Target, n: usize, llamactl: Option<u32>) -> Run {
    if let Some(pid) = llamactl {
        if !reset_peak(pid) {
            eprintln!("bench: cannot reset llamactl's peak RSS; the figure is its lifetime peak");
        }
    }
    let target = Arc::new(target.clone());
    let started = Instant::now();
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(one(target.clone()))).collect();
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        all.push(task.await.unwrap_or_else(|e| One {
            first: None,
            whole: started.elapsed(),
            events: 0,
            failure: Some(format!("stream task failed: {e}")),
        }));
    }
    let wall = started.elapsed();
    let peak_kib = llamactl.and_then(|pid| status_kib(pid, "VmHWM:"));
    let events: u64 = all.iter().map(|o| o.events).sum();
    let mut first: Vec<Duration> = all.iter().filter_map(|o| o.first).collect();
    let mut whole: Vec<Duration> = all.iter().map(|o| o.whole).collect();
    let failures: Vec<&String> = all.iter().filter_map(|o| o.failure.as_ref()).collect();
    Run {
        events_per_sec: events as f64 / wall.as_secs_f64(),
        first_p50: ms(quantile(&mut first, 0.50)),
        first_p99: ms(quantile(&mut first, 0.99)),
        whole_p99: ms(quantile(&mut whole, 0.99)),
        failed: failures.len(),
        first_failure: failures.first().map(|s| s.to_string()),
        peak_kib,
    }
}

/// The medians over rounds for one side, and its per-round runs.
struct Sided<'a> {
    side: Side,
    runs: Vec<&'a Run>,
    /// Its llamactl's (or the bare proxy's) resident memory when idle, KiB (0 for the others).
    idle_kib: u64,
}

impl Sided<'_> {
    fn med(&self, f: impl Fn(&Run) -> f64) -> f64 {
        median(&self.runs.iter().map(|r| f(r)).collect::<Vec<_>>())
    }

    /// Median over rounds of this side's figure against the same round's `other`.
    fn paired(&self, other: &Sided, f: impl Fn(&Run, &Run) -> f64) -> f64 {
        let values: Vec<f64> = self
            .runs
            .iter()
            .zip(&other.runs)
            .map(|(a, b)| f(a, b))
            .collect();
        median(&values)
    }

    /// Median over rounds of this side's `f` over the highest `f` among `others` in the same round.
    fn of_best(&self, others: &[&Sided], f: impl Fn(&Run) -> f64) -> f64 {
        let values: Vec<f64> = self
            .runs
            .iter()
            .enumerate()
            .map(|(round, run)| {
                let best = others
                    .iter()
                    .filter_map(|o| o.runs.get(round))
                    .map(|r| f(r))
                    .fold(f64::MIN, f64::max);
                f(run) / best
            })
            .collect();
        median(&values)
    }

    fn against(&self, other: &Sided) -> String {
        format!(
            "{:.2}× events/s, first event p99 {:+.1} ms",
            self.paired(other, |a, b| a.events_per_sec / b.events_per_sec),
            self.paired(other, |a, b| a.first_p99 - b.first_p99)
        )
    }
}

fn kib_per_stream(peak: f64, idle: u64, n: usize) -> f64 {
    (peak - idle as f64) / n as f64
}

/// Table lines and verdicts for one level.
fn judge(n: usize, sides: &[Sided]) -> (Vec<Row>, Vec<Verdict>) {
    let scenario = format!("streams: {n} concurrent streamed chats");
    let (direct, nginx) = (&sides[0], &sides[1]);
    // The yardsticks for throughput: the issue asks for the best of nginx and the Go proxy.
    let references: Vec<&Sided> = sides
        .iter()
        .filter(|s| matches!(s.side.via, Via::Nginx | Via::GoProxy))
        .collect();
    let best_goal = match references.len() {
        1 => "nginx's",
        _ => "the best of nginx's and the Go proxy's",
    };
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for s in sides {
        let failed: usize = s.runs.iter().map(|r| r.failed).sum();
        let mut result = format!(
            "{:.0} events/s, first event p50 {:.1} ms p99 {:.1} ms, whole stream p99 {:.0} ms",
            s.med(|r| r.events_per_sec),
            s.med(|r| r.first_p50),
            s.med(|r| r.first_p99),
            s.med(|r| r.whole_p99)
        );
        if failed > 0 {
            result.push_str(&format!(", **{failed} failed**"));
        }
        let llamactl = s.side.via.is_llamactl();
        let peak = s.med(|r| r.peak_kib.unwrap_or_default() as f64);
        let per_stream = kib_per_stream(peak, s.idle_kib, n);
        if llamactl || s.side.via == Via::Bare {
            result.push_str(&format!(
                ", peak RSS {:.1} MiB ({per_stream:.1} KiB per stream over idle)",
                peak / 1024.0
            ));
        }
        let is_direct = s.side.via == Via::Direct;
        rows.push(Row {
            scenario: scenario.clone(),
            side: s.side.label.into(),
            result,
            vs_direct: if is_direct {
                String::new()
            } else {
                s.against(direct)
            },
            vs_nginx: if llamactl {
                s.against(nginx)
            } else {
                String::new()
            },
        });
        // The baseline is there for the before/after, not judged.
        let baseline = matches!(s.side.via, Via::Baseline | Via::BaselineV1);
        if !llamactl || baseline || n < JUDGED_FROM {
            continue;
        }
        let what = format!("{scenario}, {}", s.side.label);
        let of_direct = s.paired(direct, |a, b| a.events_per_sec / b.events_per_sec);
        let of_best = s.of_best(&references, |r| r.events_per_sec);
        let each_reference: Vec<String> = references
            .iter()
            .map(|r| {
                let ratio = s.paired(r, |a, b| a.events_per_sec / b.events_per_sec);
                format!("{ratio:.2}× {}", r.side.label)
            })
            .collect();
        // Added time to first event, against nginx's added time: both over the same direct run.
        let first_vs_nginx = s.paired(nginx, |a, b| a.first_p99 - b.first_p99);
        let verdict = |goal: &str, got: String, met: bool| Verdict {
            what: what.clone(),
            goal: goal.into(),
            got,
            met,
        };
        verdicts.extend([
            verdict(
                "no failed streams (soft limit 1024)",
                format!("{failed} failed"),
                failed == 0,
            ),
            verdict(
                "events/s ≥ 0.95× direct",
                format!("{of_direct:.2}× direct"),
                of_direct >= 0.95,
            ),
            verdict(
                &format!("events/s ≥ {best_goal}"),
                format!("{of_best:.2}× the best ({})", each_reference.join(", ")),
                of_best >= 1.0,
            ),
            verdict(
                "added first-event p99 ≤ nginx's",
                format!("{first_vs_nginx:+.1} ms vs nginx"),
                first_vs_nginx <= 0.0,
            ),
            verdict(
                "RSS per open stream < 32 KiB",
                format!("{per_stream:.1} KiB"),
                per_stream < 32.0,
            ),
        ]);
    }
    (rows, verdicts)
}

/// The scenario: every level, every side, interleaved per round.
pub fn concurrent(rig: &Rig) -> BoxFuture<'_, (Vec<Row>, Vec<Verdict>)> {
    Box::pin(async move {
        let stage = Stage::up(rig).await;
        let all_sides = stage.sides();
        let targets: Vec<Target> = all_sides.iter().map(|s| stage.target(s.via)).collect();
        // Whose memory is measured on a side: its llamactl's, or the bare proxy's (hyper's floor).
        let llamactl_pid = |side: &Side| match side.via {
            Via::Bare => Some(stage.bare.pid()),
            via => stage.llamactl_of(via).map(Llamactl::pid),
        };
        // One unmeasured run per side: connections, pools and allocators warm up.
        for (side, target) in all_sides.iter().zip(&targets) {
            let warm = run(target, LEVELS[0], llamactl_pid(side)).await;
            if warm.failed > 0 {
                eprintln!(
                    "bench: streams warm-up {}: {} failed, first: {}",
                    side.label,
                    warm.failed,
                    warm.first_failure.unwrap_or_default()
                );
            }
            tokio::time::sleep(SETTLE).await;
        }
        // Each llamactl's resident memory when idle, the base its per-stream figure is over.
        let idle_kib: Vec<u64> = all_sides
            .iter()
            .map(|side| {
                llamactl_pid(side)
                    .and_then(|pid| status_kib(pid, "VmRSS:"))
                    .unwrap_or_default()
            })
            .collect();
        eprintln!("bench: streams: resident when idle after warm-up {idle_kib:?} KiB by side");
        let (mut rows, mut verdicts) = (Vec::new(), Vec::new());
        for n in LEVELS {
            // runs[round][side]
            let mut runs: Vec<Vec<Option<Run>>> = Vec::new();
            for round in 0..rig.opts.rounds {
                let mut this = vec![None; all_sides.len()];
                for (i, side) in rotated(&all_sides, round) {
                    let r = run(&targets[i], n, llamactl_pid(&side)).await;
                    eprintln!(
                        "bench: streams n={n} round {} {}: {:.0} events/s, first event p50 {:.1} ms p99 {:.1} ms, whole p99 {:.0} ms, {} failed{}{}",
                        round + 1,
                        side.label,
                        r.events_per_sec,
                        r.first_p50,
                        r.first_p99,
                        r.whole_p99,
                        r.failed,
                        r.first_failure.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
                        r.peak_kib.map(|k| format!(", peak RSS {k} KiB")).unwrap_or_default(),
                    );
                    this[i] = Some(r);
                    tokio::time::sleep(SETTLE).await;
                }
                runs.push(this);
            }
            let sides: Vec<Sided> = all_sides
                .iter()
                .enumerate()
                .map(|(i, side)| Sided {
                    side: *side,
                    runs: runs.iter().filter_map(|round| round[i].as_ref()).collect(),
                    idle_kib: idle_kib[i],
                })
                .collect();
            let (r, v) = judge(n, &sides);
            rows.extend(r);
            verdicts.extend(v);
        }
        (rows, verdicts)
    })
}
