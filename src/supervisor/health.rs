//! Polls a backend's `/health`: a starting one until it answers 200 (ready), then a running one
//! every `health_check_interval` until it misses `health_check_failures` probes in a row
//! (unresponsive: hung, deadlocked, stopped). llama-server answers `/health` while its slots are
//! all generating, so a busy backend passes.

use crate::upstream::{self, Pool};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

/// How long a readiness probe may take.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a liveness probe may take at most (less if probes come more often).
const LIVE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the probes found about one process (by its generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// `/health` answered 200 for the first time.
    Ready(u64),
    /// `/health` failed this many times in a row while running.
    Unresponsive(u64),
}

/// How often a running backend is probed, and how many misses in a row make it unresponsive.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// Time between two probes.
    pub every: Duration,
    /// Misses in a row that count as a hang.
    pub failures: u32,
}

/// Shortest and longest pause between two probes.
const MIN_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(100);

/// The pause after a failed probe: a hundredth of the time spent starting so far, so noticing
/// readiness late adds at most about 1% to any start and never more than 100 ms (a user waits on
/// this: a swap at the running limit is a stop plus this start). A probe is one request on a kept
/// connection, answered 503 at once while the model loads, so even a long load probed ten times a
/// second costs the backend next to nothing.
fn next_delay(starting_for: Duration) -> Duration {
    (starting_for / 100).clamp(MIN_DELAY, MAX_DELAY)
}

/// Polls `/health` until it answers 200, then reports `generation` ready.
pub async fn probe_until_ready(
    client: Pool,
    port: u16,
    generation: u64,
    report: mpsc::UnboundedSender<Report>,
) {
    let started = Instant::now();
    loop {
        if upstream::is_healthy(&client, port, READY_PROBE_TIMEOUT).await {
            let _ = report.send(Report::Ready(generation));
            return;
        }
        tokio::time::sleep(next_delay(started.elapsed())).await;
    }
}

/// Probes a running backend every `live.every` (each probe given at most that long, so probes
/// never overlap) and reports `generation` unresponsive after `live.failures` misses in a row.
pub async fn watch_liveness(
    client: Pool,
    port: u16,
    generation: u64,
    live: Liveness,
    report: mpsc::UnboundedSender<Report>,
) {
    let timeout = live.every.min(LIVE_PROBE_TIMEOUT);
    // Probes keep their rhythm: a hang is noticed within about `every` × `failures`.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + live.every, live.every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut missed = 0;
    loop {
        ticks.tick().await;
        if upstream::is_healthy(&client, port, timeout).await {
            if missed > 0 {
                tracing::info!(port, missed, "backend answers its health checks again");
            }
            missed = 0;
            continue;
        }
        missed += 1;
        tracing::warn!(
            port,
            missed,
            of = live.failures,
            "backend missed a health check"
        );
        if missed >= live.failures {
            let _ = report.send(Report::Unresponsive(generation));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend on loopback that accepts connections and never answers (as a stopped process).
    async fn silent_backend() -> (u16, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        (listener.local_addr().unwrap().port(), listener)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_backend_is_reported_after_the_misses_in_a_row() {
        let (port, _listener) = silent_backend().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let live = Liveness {
            every: Duration::from_secs(10),
            failures: 3,
        };
        let started = tokio::time::Instant::now();
        tokio::spawn(watch_liveness(Pool::default(), port, 7, live, tx));
        assert_eq!(rx.recv().await, Some(Report::Unresponsive(7)));
        // Three probes 10 s apart, the last one timing out after 5 s.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(30) && took <= Duration::from_secs(36),
            "{took:?}"
        );
    }

    #[test]
    fn delay_grows_with_the_time_spent_starting_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(next_delay(ms(0)), MIN_DELAY);
        assert_eq!(next_delay(ms(1300)), ms(13));
        assert_eq!(next_delay(Duration::from_secs(60)), MAX_DELAY);
    }
}
