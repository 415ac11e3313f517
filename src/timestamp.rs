//! Points in time as the API and CLI accept them: Unix seconds, or RFC 3339 text.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// What every time input accepts, for error messages.
const EXPECTED: &str = "Unix seconds or an RFC 3339 time like 2030-01-31T12:00:00Z";

/// A Unix millisecond as the API shows times: RFC 3339, UTC, milliseconds.
pub fn format_millis(at_ms: i64) -> String {
    DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Parses `1705312200` or `2024-01-15T10:00:00Z`.
pub fn parse(text: &str) -> Result<DateTime<Utc>> {
    let text = text.trim();
    let parsed = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>()
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
    } else {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    parsed.ok_or_else(|| Error::BadRequest(format!("invalid time '{text}': expected {EXPECTED}")))
}

/// A time in a JSON body: a number of Unix seconds or an RFC 3339 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WhenVisitor;

        impl Visitor<'_> for WhenVisitor {
            type Value = When;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<When, E> {
                DateTime::from_timestamp(secs, 0)
                    .map(When)
                    .ok_or_else(|| E::custom(format!("{secs} is out of range")))
            }

            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<When, E> {
                let secs = i64::try_from(secs).map_err(|_| E::custom("time out of range"))?;
                self.visit_i64(secs)
            }

            /// `1.7e9` is a whole number of seconds too (JSON has one number type).
            fn visit_f64<E: de::Error>(self, secs: f64) -> Result<When, E> {
                if secs.fract() != 0.0 || secs.abs() >= 9.0e15 {
                    return Err(E::custom(format!(
                        "{secs} is not a whole number of seconds"
                    )));
                }
                // Exact: a whole number below 2^53.
                self.visit_i64(secs as i64)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<When, E> {
                parse(text).map(When).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(WhenVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_float_seconds_are_seconds() {
        let at: When = serde_json::from_str("1705312200.0").unwrap();
        assert_eq!(at.0.timestamp(), 1_705_312_200);
        assert!(serde_json::from_str::<When>("1705312200.5").is_err());
    }

    #[test]
    fn accepts_unix_seconds_and_rfc3339() {
        assert_eq!(parse("1705312200").unwrap().timestamp(), 1_705_312_200);
        assert_eq!(
            parse("2024-01-15T10:00:00Z").unwrap().timestamp(),
            1_705_312_800
        );
        assert_eq!(
            parse("2024-01-15T11:00:00+01:00").unwrap().timestamp(),
            1_705_312_800
        );
        let from_json: When = serde_json::from_str("1705312200").unwrap();
        assert_eq!(from_json.0.timestamp(), 1_705_312_200);
        let from_json: When = serde_json::from_str("\"2024-01-15T10:00:00Z\"").unwrap();
        assert_eq!(from_json.0.timestamp(), 1_705_312_800);
    }

    #[test]
    fn rejects_anything_else_saying_what_is_expected() {
        for bad in ["", "yesterday", "-5", "2024-01-15", "1e9"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{bad}");
            assert!(err.to_string().contains("RFC 3339"), "{err}");
        }
        let err = serde_json::from_str::<When>("true").unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }
}
