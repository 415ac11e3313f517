//! A key's counters in fixed UTC windows: the current minute (requests, tokens) and the current
//! day (tokens). A window that has passed reads as zero; nothing ever needs to expire them.
//!
//! Fixed windows, not sliding ones: a count per window is one integer (exact under a lock, cheap,
//! stored as one row), and "resets at the next full minute / at 00:00 UTC" is what a client can be
//! told in `x-ratelimit-reset-*`. The price is a burst at a boundary (up to twice a minute's
//! requests within a few seconds around it), which per-day and per-minute budgets tolerate.

use super::Limit;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// A moment, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(pub i64);

impl Moment {
    /// Now, from the system clock.
    pub fn now() -> Moment {
        Moment(chrono::Utc::now().timestamp_millis())
    }

    fn minute(self) -> i64 {
        self.0.div_euclid(MINUTE_MS)
    }

    fn day(self) -> i64 {
        self.0.div_euclid(DAY_MS)
    }

    /// Milliseconds until the window of `limit` that holds this moment ends.
    pub fn until_reset(self, limit: Limit) -> i64 {
        let span = match limit {
            Limit::RequestsPerMinute | Limit::TokensPerMinute => MINUTE_MS,
            Limit::TokensPerDay => DAY_MS,
        };
        span - self.0.rem_euclid(span)
    }

    /// Unix seconds at which the window of `limit` that holds this moment ends.
    pub fn reset_at(self, limit: Limit) -> i64 {
        (self.0 + self.until_reset(limit)).div_euclid(1000)
    }
}

/// What a key used in its current windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// The minute window (Unix minutes) the minute counts belong to.
    pub minute: i64,
    /// Requests admitted in that minute.
    pub minute_requests: u64,
    /// Tokens charged in that minute.
    pub minute_tokens: u64,
    /// The day window (Unix days) the day count belongs to.
    pub day: i64,
    /// Tokens charged in that day.
    pub day_tokens: u64,
}

impl Counters {
    /// Moves to the windows holding `at`, starting from zero in any that is new.
    pub fn roll(&mut self, at: Moment) {
        if self.minute != at.minute() {
            self.minute = at.minute();
            self.minute_requests = 0;
            self.minute_tokens = 0;
        }
        if self.day != at.day() {
            self.day = at.day();
            self.day_tokens = 0;
        }
    }

    /// The count `limit` is measured against.
    pub fn used(&self, limit: Limit) -> u64 {
        match limit {
            Limit::RequestsPerMinute => self.minute_requests,
            Limit::TokensPerMinute => self.minute_tokens,
            Limit::TokensPerDay => self.day_tokens,
        }
    }

    /// Adds tokens to both windows.
    pub fn charge(&mut self, tokens: u64) {
        self.minute_tokens = self.minute_tokens.saturating_add(tokens);
        self.day_tokens = self.day_tokens.saturating_add(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_from_zero_when_they_change() {
        let t = Moment(1_800_000_000_000); // 2027-01-15T08:00:00Z, a whole minute
        let mut c = Counters::default();
        c.roll(t);
        c.minute_requests = 3;
        c.charge(10);
        c.roll(Moment(t.0 + 59_999));
        assert_eq!(
            (c.minute_requests, c.minute_tokens, c.day_tokens),
            (3, 10, 10)
        );
        c.roll(Moment(t.0 + 60_000));
        assert_eq!(
            (c.minute_requests, c.minute_tokens, c.day_tokens),
            (0, 0, 10)
        );
        assert_eq!(t.until_reset(Limit::RequestsPerMinute), 60_000);
        assert_eq!(
            Moment(t.0 + 59_001).until_reset(Limit::TokensPerMinute),
            999
        );
        assert_eq!(t.until_reset(Limit::TokensPerDay), 16 * 3_600_000);
        assert_eq!(t.reset_at(Limit::TokensPerDay), 1_800_000_000 + 16 * 3600);
    }
}
