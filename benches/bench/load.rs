//! Closed-loop load: `concurrency` connections, each sending its next request as soon as the last
//! answer is read, for a fixed time. Throughput and latency count only answers that complete inside
//! the measured window (after a warm-up that opens the connections and fills the pools).

use crate::client::{self, Target};
use crate::stats::{ms, quantile};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bound on requests per worker and run, so no loop is unbounded even on a very fast target.
const MAX_REQUESTS_PER_WORKER: usize = 2_000_000;
/// How long a request that is still open at the end of the window may take to finish (it is not
/// counted; letting it finish spares the backends a storm of aborted requests between runs).
const DRAIN: Duration = Duration::from_secs(30);

/// One timed run against one target.
#[derive(Clone, Debug)]
pub struct Run {
    /// Successful answers per second inside the window.
    pub rps: f64,
    /// Median latency, ms.
    pub p50: f64,
    /// 99th percentile latency, ms.
    pub p99: f64,
    /// Failed requests (transport errors and non-2xx answers) inside the window.
    pub errors: usize,
    /// The first failure seen, for the log.
    pub first_error: Option<String>,
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

impl Tally {
    fn fail(&mut self, counted: bool, why: String) {
        if counted {
            self.errors += 1;
        }
        self.first_error.get_or_insert(why);
    }
}

/// Runs `concurrency` workers against `target` for `warmup + window`.
pub async fn run(target: &Target, concurrency: usize, warmup: Duration, window: Duration) -> Run {
    let target = Arc::new(target.clone());
    let start = Instant::now();
    let (from, until) = (start + warmup, start + warmup + window);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(target.clone(), from, until)))
        .collect();
    let mut all = Tally::default();
    for w in workers {
        match w.await {
            Ok(t) => {
                all.latencies.extend(t.latencies);
                all.errors += t.errors;
                if all.first_error.is_none() {
                    all.first_error = t.first_error;
                }
            }
            Err(e) => all.fail(true, format!("worker panicked: {e}")),
        }
    }
    Run {
        rps: all.latencies.len() as f64 / window.as_secs_f64(),
        p50: ms(quantile(&mut all.latencies, 0.50)),
        p99: ms(quantile(&mut all.latencies, 0.99)),
        errors: all.errors,
        first_error: all.first_error,
    }
}

async fn worker(target: Arc<Target>, from: Instant, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<client::Conn> = None;
    let mut sent = 0;
    while Instant::now() < until && sent < MAX_REQUESTS_PER_WORKER {
        let deadline = tokio::time::Instant::from_std(until + DRAIN);
        let open = match conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => match tokio::time::timeout_at(deadline, client::connect(target.addr))
                .await
                .unwrap_or_else(|_| Err("connect did not finish after the window".into()))
            {
                Ok(c) => c,
                Err(e) => {
                    tally.fail(Instant::now() >= from, e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let mut open = open;
        sent += 1;
        let began = Instant::now();
        let answer = tokio::time::timeout_at(deadline, client::exchange(&mut open, &target)).await;
        let done = Instant::now();
        let counted = done >= from && done <= until;
        match answer {
            Ok(Ok(a)) if a.status.is_success() => {
                if counted {
                    tally.latencies.push(done - began);
                }
                if !a.close {
                    conn = Some(open);
                }
            }
            Ok(Ok(a)) => {
                tally.fail(counted, format!("HTTP {}", a.status));
                if !a.close {
                    conn = Some(open);
                }
            }
            Ok(Err(e)) => tally.fail(counted, e),
            Err(_) => tally.fail(true, "request did not finish after the window".into()),
        }
    }
    tally
}
