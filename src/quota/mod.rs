//! Per-key quotas: requests per minute, tokens per minute and tokens per day.
//!
//! - Requests are counted at admission, under the key's lock: of N concurrent requests against a
//!   budget of B, exactly B pass.
//! - Tokens are charged when the answer's usage is known (see [`crate::metering`]), also for a
//!   stream, which is never cut: a request is admitted while some token budget is left, so a window
//!   overshoots by at most the answers already in flight when it ran out. Their whole usage is
//!   charged to the window in which they end; the key is refused until that window resets. An
//!   answer that ends without its usage (cut short) is charged an estimate instead, for a key with
//!   token limits (see [`crate::metering`]'s `estimate`).
//! - Counters live in memory, one [`KeyQuota`] per limited key, reached from the cached key: the
//!   hot path takes one uncontended lock. They are written to the database in batches
//!   ([`Quotas::flush`]) and read back at start ([`Quotas::load`]).

mod headers;
mod window;

pub use headers::{reset_text, Standing};
pub use window::{Counters, Moment};

use crate::auth::policy::Limits;
use crate::db::key_usage::UsageRow;
use crate::db::Db;
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// One of a key's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `limits.requests_per_minute`.
    RequestsPerMinute,
    /// `limits.tokens_per_minute`.
    TokensPerMinute,
    /// `limits.tokens_per_day`.
    TokensPerDay,
}

impl Limit {
    /// The field's name, as the key resource spells it (also the metrics label).
    pub fn name(self) -> &'static str {
        match self {
            Limit::RequestsPerMinute => "requests_per_minute",
            Limit::TokensPerMinute => "tokens_per_minute",
            Limit::TokensPerDay => "tokens_per_day",
        }
    }

    const ALL: [Limit; 3] = [
        Limit::RequestsPerMinute,
        Limit::TokensPerMinute,
        Limit::TokensPerDay,
    ];

    fn of(self, limits: &Limits) -> Option<u64> {
        match self {
            Limit::RequestsPerMinute => limits.requests_per_minute,
            Limit::TokensPerMinute => limits.tokens_per_minute,
            Limit::TokensPerDay => limits.tokens_per_day,
        }
    }
}

/// True if any limit is set.
pub fn any(limits: &Limits) -> bool {
    Limit::ALL.iter().any(|l| l.of(limits).is_some())
}

/// True if a token limit is set (then an answer without usage is charged an estimate).
pub fn limits_tokens(limits: &Limits) -> bool {
    limits.tokens_per_minute.is_some() || limits.tokens_per_day.is_some()
}

#[derive(Debug, Default)]
struct State {
    counters: Counters,
    /// Changed since the last flush.
    dirty: bool,
}

/// One key's counters; shared by every cached copy of the key.
#[derive(Debug)]
pub struct KeyQuota {
    id: String,
    state: Mutex<State>,
}

// A key's counters are one thing however many handles point at them.
impl PartialEq for KeyQuota {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for KeyQuota {}

/// A request turned away by a limit: 429 with `Retry-After` and the `x-ratelimit-*` headers.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The limit that refused (the one that resets last, if several are spent).
    pub limit: Limit,
    /// Whole seconds until it resets, at least 1.
    pub retry_after: u64,
    /// The key's standing, for the headers.
    pub standing: Standing,
}

impl Refusal {
    /// What the client reads.
    pub fn message(&self) -> String {
        let value = self.limit.of(&self.standing.limits).unwrap_or(0);
        format!(
            "rate limit reached: this API key's limits.{} ({value}) is used up; it resets in {}",
            self.limit.name(),
            reset_text(self.standing.at.until_reset(self.limit))
        )
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        Error::QuotaExceeded(Box::new(r))
    }
}

impl KeyQuota {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one request under `limits` at `at` (counting it), or says which limit refuses it.
    pub fn admit(&self, limits: Limits, at: Moment) -> std::result::Result<Standing, Refusal> {
        let mut state = self.lock();
        state.counters.roll(at);
        let counters = state.counters;
        let spent = Limit::ALL
            .into_iter()
            .filter(|l| l.of(&limits).is_some_and(|max| counters.used(*l) >= max))
            // Retrying before the last spent limit resets would only be refused again.
            .max_by_key(|l| at.until_reset(*l));
        if let Some(limit) = spent {
            let ms = at.until_reset(limit);
            return Err(Refusal {
                limit,
                retry_after: u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1),
                standing: Standing {
                    limits,
                    counters,
                    at,
                },
            });
        }
        state.counters.minute_requests += 1;
        state.dirty = true;
        Ok(Standing {
            limits,
            counters: state.counters,
            at,
        })
    }

    /// Charges an answer's tokens to the windows holding `at`.
    pub fn charge(&self, tokens: u64, at: Moment) {
        if tokens == 0 {
            return;
        }
        let mut state = self.lock();
        state.counters.roll(at);
        state.counters.charge(tokens);
        state.dirty = true;
    }

    /// The counters as of `at`.
    pub fn counters(&self, at: Moment) -> Counters {
        let mut counters = self.lock().counters;
        counters.roll(at);
        counters
    }
}

/// Every limited key's counters, by key id.
#[derive(Debug, Default)]
pub struct Quotas {
    by_key: RwLock<HashMap<String, Arc<KeyQuota>>>,
}

impl Quotas {
    /// The counters of key `id`, created (at zero) on first use.
    pub fn of(&self, id: &str) -> Arc<KeyQuota> {
        if let Some(q) = self.read().get(id) {
            return q.clone();
        }
        self.write()
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(KeyQuota {
                    id: id.to_string(),
                    state: Mutex::default(),
                })
            })
            .clone()
    }

    /// The usage of key `id` under `limits` at `at`; `None` if it has no limits.
    pub fn usage(&self, id: &str, limits: &Limits, at: Moment) -> Option<QuotaUsage> {
        if !any(limits) {
            return None;
        }
        let counters = self
            .read()
            .get(id)
            .map(|q| q.counters(at))
            .unwrap_or_else(|| {
                let mut c = Counters::default();
                c.roll(at);
                c
            });
        Some(QuotaUsage::of(limits, &counters, at))
    }

    /// Reads the stored counters (at start, before any request).
    pub async fn load(&self, db: &Db) -> Result<()> {
        let rows = db.key_usage().await?;
        let mut by_key = self.write();
        for row in rows {
            let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
            let counters = Counters {
                minute: row.minute,
                minute_requests: unsigned(row.minute_requests),
                minute_tokens: unsigned(row.minute_tokens),
                day: row.day,
                day_tokens: unsigned(row.day_tokens),
            };
            by_key.insert(
                row.key_id.clone(),
                Arc::new(KeyQuota {
                    id: row.key_id,
                    state: Mutex::new(State {
                        counters,
                        dirty: false,
                    }),
                }),
            );
        }
        Ok(())
    }

    /// Writes the counters that changed since the last flush; on failure they stay pending.
    pub async fn flush(&self, db: &Db) -> Result<()> {
        let pending: Vec<Arc<KeyQuota>> = self
            .read()
            .values()
            .filter(|q| q.lock().dirty)
            .cloned()
            .collect();
        let rows: Vec<UsageRow> = pending
            .iter()
            .map(|q| {
                let mut state = q.lock();
                state.dirty = false;
                let c = state.counters;
                let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                UsageRow {
                    key_id: q.id.clone(),
                    minute: c.minute,
                    minute_requests: signed(c.minute_requests),
                    minute_tokens: signed(c.minute_tokens),
                    day: c.day,
                    day_tokens: signed(c.day_tokens),
                }
            })
            .collect();
        let saved = db.save_key_usage(&rows).await;
        if saved.is_err() {
            for q in &pending {
                q.lock().dirty = true;
            }
        }
        saved
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<KeyQuota>>> {
        self.by_key.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<KeyQuota>>> {
        self.by_key.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// One limit's budget now.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct QuotaBudget {
    /// The limit.
    pub limit: u64,
    /// Used in the current window (tokens may exceed the limit by answers that were in flight).
    pub used: u64,
    /// Left in the current window.
    pub remaining: u64,
    /// Unix seconds at which the window ends and the count starts again from zero.
    pub resets_at: i64,
    /// Seconds until then, rounded up.
    pub resets_in: u64,
}

/// A key's usage against each limit that is set (a limit not set is `null`); windows are fixed UTC
/// minutes and days.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct QuotaUsage {
    /// Requests admitted this minute.
    pub requests_per_minute: Option<QuotaBudget>,
    /// Tokens charged this minute.
    pub tokens_per_minute: Option<QuotaBudget>,
    /// Tokens charged today (UTC).
    pub tokens_per_day: Option<QuotaBudget>,
}

impl QuotaUsage {
    /// The usage `counters` show against `limits` at `at`.
    pub fn of(limits: &Limits, counters: &Counters, at: Moment) -> QuotaUsage {
        let budget = |limit: Limit| {
            limit.of(limits).map(|max| {
                let used = counters.used(limit);
                QuotaBudget {
                    limit: max,
                    used,
                    remaining: max.saturating_sub(used),
                    resets_at: at.reset_at(limit),
                    resets_in: u64::try_from((at.until_reset(limit) + 999) / 1000).unwrap_or(0),
                }
            })
        };
        QuotaUsage {
            requests_per_minute: budget(Limit::RequestsPerMinute),
            tokens_per_minute: budget(Limit::TokensPerMinute),
            tokens_per_day: budget(Limit::TokensPerDay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u64>, tpm: Option<u64>, tpd: Option<u64>) -> Limits {
        Limits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            tokens_per_day: tpd,
        }
    }

    #[test]
    fn exactly_the_budget_of_concurrent_requests_pass() {
        let quotas = Arc::new(Quotas::default());
        let at = Moment(1_800_000_010_000);
        let l = limits(Some(10), None, None);
        let passed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..50)
                .map(|_| {
                    let q = quotas.of("k");
                    s.spawn(move || q.admit(l, at).is_ok() as usize)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(passed, 10);
        let refusal = quotas.of("k").admit(l, at).unwrap_err();
        assert_eq!(refusal.limit, Limit::RequestsPerMinute);
        assert_eq!(refusal.retry_after, 50);
        assert!(refusal
            .message()
            .contains("limits.requests_per_minute (10)"));
        // The next minute starts from zero.
        assert!(quotas.of("k").admit(l, Moment(at.0 + 50_000)).is_ok());
    }

    #[test]
    fn tokens_admit_while_some_are_left_and_the_last_spent_limit_is_named() {
        let q = Quotas::default().of("k");
        let at = Moment(1_800_000_000_000);
        let l = limits(None, Some(100), Some(150));
        assert!(q.admit(l, at).is_ok());
        q.charge(99, at);
        assert!(q.admit(l, at).is_ok());
        q.charge(30, at); // an answer crossing the minute's limit is charged whole
        let r = q.admit(l, at).unwrap_err();
        assert_eq!(r.limit, Limit::TokensPerMinute);
        assert_eq!(q.counters(at).minute_tokens, 129);
        // Next minute: the day has 21 left, then none; retry after the day's end.
        let later = Moment(at.0 + 60_000);
        assert!(q.admit(l, later).is_ok());
        q.charge(100, later);
        let r = q.admit(l, later).unwrap_err();
        assert_eq!(r.limit, Limit::TokensPerDay);
        assert_eq!(r.retry_after, 16 * 3600 - 60);
    }

    #[test]
    fn usage_shows_each_set_limit() {
        let quotas = Quotas::default();
        let at = Moment(1_800_000_000_500);
        let l = limits(Some(5), None, Some(1000));
        assert!(quotas.usage("k", &Limits::default(), at).is_none());
        let fresh = quotas.usage("k", &l, at).unwrap();
        assert_eq!(fresh.requests_per_minute.unwrap().used, 0);
        quotas.of("k").admit(l, at).unwrap();
        quotas.of("k").charge(40, at);
        let u = quotas.usage("k", &l, at).unwrap();
        let rpm = u.requests_per_minute.unwrap();
        assert_eq!((rpm.used, rpm.remaining, rpm.resets_in), (1, 4, 60));
        assert_eq!(rpm.resets_at, 1_800_000_060);
        assert!(u.tokens_per_minute.is_none());
        assert_eq!(u.tokens_per_day.unwrap().remaining, 960);
    }
}
