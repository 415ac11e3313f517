//! Logs that a fault can repeat on every request (a full disk, a locked database) are written at
//! most once per period, with how many were left out, so the fault does not fill the disk further
//! or bury everything else in the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one log line through per period and counts the ones it holds back.
#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    /// When a line last went through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    /// A throttle letting one line through per `period`.
    pub const fn new(period: Duration) -> Self {
        LogThrottle {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last line)` when a line may be written now; `None` otherwise.
    pub fn due(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.period => {
                state.1 += 1;
                None
            }
            _ => {
                let held = state.1;
                *state = (Some(now), 0);
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_a_count_of_the_rest() {
        let throttle = LogThrottle::new(Duration::from_millis(200));
        assert_eq!(throttle.due(), Some(0), "the first line goes through");
        assert_eq!(throttle.due(), None);
        assert_eq!(throttle.due(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(
            throttle.due(),
            Some(2),
            "the next line says how many were held back"
        );
        assert_eq!(throttle.due(), None);
    }
}
