//! The per-client (IP) budget of failed authentications, kept by governor's keyed rate limiter.
//!
//! Only failures spend it, so valid keys are never limited by it. It is checked before a key is
//! verified: a client whose budget is spent is refused at once with 429 and `Retry-After`, which
//! costs no argon2 verification. `burst` failures in a row are allowed, then one more per `period`.

use crate::error::{Error, Result};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Budget =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// Per-client budget of failed authentications.
#[derive(Debug)]
pub struct FailureLimiter {
    budget: Budget,
    period: Duration,
    /// Clients with no failure left, and until when: read before every verification, so a spent
    /// client costs a map lookup, not a hash.
    spent: Mutex<HashMap<IpAddr, Instant>>,
}

fn too_many(wait: Duration) -> Error {
    // Rounded up, so a client that waits as told is let in.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Error::TooManyRequests {
        message: "too many failed authentication attempts; try again later".into(),
        retry_after: secs.max(1),
    }
}

impl FailureLimiter {
    /// `burst` failures in a row, then one more per `period`.
    pub fn new(burst: u32, period: Duration) -> Result<Self> {
        let burst = NonZeroU32::new(burst);
        let quota = Quota::with_period(period)
            .zip(burst)
            .map(|(quota, burst)| quota.allow_burst(burst))
            .ok_or_else(|| {
                Error::Internal("failed-auth burst and period must not be zero".into())
            })?;
        Ok(FailureLimiter {
            budget: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            period,
            spent: Mutex::new(HashMap::new()),
        })
    }

    fn spent(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.spent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// 429 if `client` has no failure left; asked before its key is verified.
    pub fn admit(&self, client: IpAddr) -> Result<()> {
        let until = self.spent().get(&client).copied();
        match until.map(|until| until.saturating_duration_since(Instant::now())) {
            Some(wait) if !wait.is_zero() => Err(too_many(wait)),
            _ => Ok(()),
        }
    }

    /// Spends one failure of `client`'s budget; the answer is 401 for `reason`, or 429 if the
    /// budget was already spent (by attempts verified at the same time).
    pub fn fail(&self, client: IpAddr, reason: String) -> Error {
        match self.budget.check_key(&client) {
            Ok(state) => {
                if state.remaining_burst_capacity() == 0 {
                    // The next failure is allowed within one period (governor does not tell
                    // when exactly); until then the client is refused without verifying.
                    self.spent().insert(client, Instant::now() + self.period);
                }
                Error::Unauthorized(reason)
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.budget.clock().now());
                self.spent().insert(client, Instant::now() + wait);
                too_many(wait)
            }
        }
    }

    /// Forgets clients whose budget is full again, so the tables do not grow without bound.
    pub fn forget_recovered(&self) {
        self.budget.retain_recent();
        let now = Instant::now();
        self.spent().retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<()>) -> u16 {
        result.err().map_or(200, |e| e.status().as_u16())
    }

    #[test]
    fn a_spent_budget_refuses_before_verifying_until_the_period_passes() {
        let limiter = FailureLimiter::new(2, Duration::from_millis(300)).unwrap();
        let bad: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(code(limiter.admit(bad)), 200);
            assert_eq!(limiter.fail(bad, "no".into()).status().as_u16(), 401);
        }
        let Err(Error::TooManyRequests { retry_after, .. }) = limiter.admit(bad) else {
            panic!("a spent client was admitted");
        };
        assert_eq!(retry_after, 1);
        assert_eq!(code(limiter.admit(other)), 200);
        // Two attempts verified at once, both failed: the second finds the budget spent.
        assert_eq!(limiter.fail(bad, "no".into()).status().as_u16(), 429);

        std::thread::sleep(Duration::from_millis(700));
        limiter.forget_recovered();
        for _ in 0..2 {
            assert_eq!(code(limiter.admit(bad)), 200);
            assert_eq!(limiter.fail(bad, "no".into()).status().as_u16(), 401);
        }
        assert_eq!(code(limiter.admit(bad)), 429);
    }

    #[test]
    fn zero_is_refused() {
        assert!(FailureLimiter::new(0, Duration::from_secs(1)).is_err());
        assert!(FailureLimiter::new(1, Duration::ZERO).is_err());
    }
}
