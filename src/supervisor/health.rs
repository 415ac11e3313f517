//! Polls a starting backend's `/health` until it answers 200.

use crate::upstream::{self, Pool};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Shortest and longest pause between two probes.
const MIN_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_millis(200);

/// The pause after a failed probe: a twentieth of the time spent starting so far, so noticing
/// readiness late adds at most about 5% to any start (a user waits on this), while a slow model
/// load is still only probed a few times a second.
fn next_delay(starting_for: Duration) -> Duration {
    (starting_for / 20).clamp(MIN_DELAY, MAX_DELAY)
}

/// Polls `/health` until it answers 200, then sends `generation`.
pub async fn probe_until_ready(
    client: Pool,
    port: u16,
    generation: u64,
    ready: mpsc::UnboundedSender<u64>,
) {
    let started = Instant::now();
    loop {
        if upstream::is_healthy(&client, port).await {
            let _ = ready.send(generation);
            return;
        }
        tokio::time::sleep(next_delay(started.elapsed())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_with_the_time_spent_starting_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(next_delay(ms(0)), MIN_DELAY);
        assert_eq!(next_delay(ms(800)), ms(40));
        assert_eq!(next_delay(Duration::from_secs(60)), MAX_DELAY);
    }
}
