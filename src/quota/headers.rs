//! The `x-ratelimit-*` headers OpenAI's API sends and its clients read, on every answer to a key
//! with limits: the requests headers for `requests_per_minute`, the tokens headers for the tighter
//! of `tokens_per_minute` and `tokens_per_day` (the one with less left, so a client that paces
//! itself by them is never surprised by the other). A limit that is not set sends no headers.

use super::window::{Counters, Moment};
use super::Limit;
use crate::auth::policy::Limits;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// A key's standing at one moment, as the headers tell it.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    pub(super) limits: Limits,
    pub(super) counters: Counters,
    pub(super) at: Moment,
}

impl Standing {
    /// Adds the headers for each limit that is set.
    pub fn write(&self, headers: &mut HeaderMap) {
        if let Some(limit) = self.limits.requests_per_minute {
            let used = self.counters.used(Limit::RequestsPerMinute);
            let reset = self.at.until_reset(Limit::RequestsPerMinute);
            headers.insert(LIMIT_REQUESTS, HeaderValue::from(limit));
            headers.insert(
                REMAINING_REQUESTS,
                HeaderValue::from(limit.saturating_sub(used)),
            );
            headers.insert(RESET_REQUESTS, reset_value(reset));
        }
        if let Some((limit, kind)) = self.tighter_tokens() {
            let used = self.counters.used(kind);
            headers.insert(LIMIT_TOKENS, HeaderValue::from(limit));
            headers.insert(
                REMAINING_TOKENS,
                HeaderValue::from(limit.saturating_sub(used)),
            );
            headers.insert(RESET_TOKENS, reset_value(self.at.until_reset(kind)));
        }
    }

    /// The token limit with less left (on a tie, the one that resets later), and its kind.
    fn tighter_tokens(&self) -> Option<(u64, Limit)> {
        let candidates = [
            (self.limits.tokens_per_minute, Limit::TokensPerMinute),
            (self.limits.tokens_per_day, Limit::TokensPerDay),
        ];
        candidates
            .into_iter()
            .filter_map(|(limit, kind)| limit.map(|l| (l, kind)))
            .min_by_key(|(limit, kind)| {
                let left = limit.saturating_sub(self.counters.used(*kind));
                (left, -self.at.until_reset(*kind))
            })
    }
}

fn reset_value(ms: i64) -> HeaderValue {
    HeaderValue::from_str(&reset_text(ms)).unwrap_or(HeaderValue::from_static("0s"))
}

/// A time until a reset as OpenAI writes it (Go's duration format): `250ms` under a second, else
/// whole seconds rounded up, `45s`, `6m0s`, `13h2m5s`.
pub fn reset_text(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = (ms + 999) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_read_like_openais() {
        let cases = [
            (0, "0ms"),
            (250, "250ms"),
            (1000, "1s"),
            (1001, "2s"),
            (59_500, "1m0s"),
            (360_000, "6m0s"),
            (47_000_000, "13h3m20s"),
        ];
        for (ms, want) in cases {
            assert_eq!(reset_text(ms), want, "{ms}");
        }
    }

    #[test]
    fn the_tighter_token_limit_is_the_one_with_less_left() {
        let at = Moment(1_800_000_030_000); // 30 s into a minute
        let limits = Limits {
            requests_per_minute: Some(10),
            tokens_per_minute: Some(1000),
            tokens_per_day: Some(5000),
        };
        let mut counters = Counters::default();
        counters.roll(at);
        counters.minute_requests = 4;
        counters.charge(100);
        let mut h = HeaderMap::new();
        Standing {
            limits,
            counters,
            at,
        }
        .write(&mut h);
        let get = |name: &str| h[name].to_str().unwrap().to_string();
        assert_eq!(get("x-ratelimit-limit-requests"), "10");
        assert_eq!(get("x-ratelimit-remaining-requests"), "6");
        assert_eq!(get("x-ratelimit-reset-requests"), "30s");
        assert_eq!(get("x-ratelimit-limit-tokens"), "1000");
        assert_eq!(get("x-ratelimit-remaining-tokens"), "900");
        assert_eq!(get("x-ratelimit-reset-tokens"), "30s");

        counters.day_tokens = 4950; // earlier minutes of the day
        let mut h = HeaderMap::new();
        Standing {
            limits,
            counters,
            at,
        }
        .write(&mut h);
        assert_eq!(h["x-ratelimit-limit-tokens"], "5000");
        assert_eq!(h["x-ratelimit-remaining-tokens"], "50");
        assert_eq!(h["x-ratelimit-reset-tokens"], "15h59m30s");

        let mut h = HeaderMap::new();
        let only_day = Limits {
            tokens_per_day: Some(5000),
            ..Limits::default()
        };
        Standing {
            limits: only_day,
            counters,
            at,
        }
        .write(&mut h);
        assert!(h.get("x-ratelimit-limit-requests").is_none());
        assert_eq!(h["x-ratelimit-limit-tokens"], "5000");
    }
}
