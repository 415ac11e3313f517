//! What a key may do besides reaching its instances: start and evict instances on demand, which
//! classes of inference request it may send, its queue priority and its limits.
//!
//! Built once per verified key (see [`super::cache`]) and shared with every request made with it,
//! so a check on the hot path is a bit test or a pattern match, never a parse.

use crate::activity::Route;
use crate::definitions::name;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A class of inference request a key may be limited to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RouteClass {
    /// Chat completions.
    Chat,
    /// Text completions, including infill.
    Completions,
    /// Embeddings.
    Embeddings,
    /// Reranking.
    Rerank,
    /// Everything else: tokenize, templates, reads (`GET`) and unknown routes.
    Other,
}

impl RouteClass {
    /// Every class, in a stable order.
    pub const ALL: [RouteClass; 5] = [
        RouteClass::Chat,
        RouteClass::Completions,
        RouteClass::Embeddings,
        RouteClass::Rerank,
        RouteClass::Other,
    ];

    /// The class of a request the activity record classified as `route`.
    pub fn of(route: Route) -> RouteClass {
        match route {
            Route::ChatCompletions => RouteClass::Chat,
            Route::Completions | Route::Infill => RouteClass::Completions,
            Route::Embeddings => RouteClass::Embeddings,
            Route::Rerank => RouteClass::Rerank,
            Route::Tokenize | Route::Read | Route::Other => RouteClass::Other,
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of route classes, as bits (a check is one `and`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routes(u8);

impl Routes {
    /// Every class.
    pub const ALL: Routes = Routes(0b1_1111);

    /// The set of these classes.
    pub fn of(classes: &[RouteClass]) -> Routes {
        Routes(classes.iter().fold(0, |bits, c| bits | c.bit()))
    }

    /// True if `class` is in the set.
    pub fn allows(self, class: RouteClass) -> bool {
        self.0 & class.bit() != 0
    }

    /// The classes, or `None` for all.
    pub fn list(self) -> Option<Vec<RouteClass>> {
        (self != Routes::ALL).then(|| {
            RouteClass::ALL
                .into_iter()
                .filter(|c| self.allows(*c))
                .collect()
        })
    }

    /// The stored form: `None` for all, else a JSON array.
    pub fn to_stored(self) -> Option<String> {
        self.list().and_then(|l| serde_json::to_string(&l).ok())
    }

    /// The routes of a stored key; an unreadable list allows none, so a damaged row fails closed.
    pub fn from_stored(stored: Option<&str>) -> Routes {
        match stored {
            None => Routes::ALL,
            Some(json) => match serde_json::from_str::<Vec<RouteClass>>(json) {
                Ok(list) => Routes::of(&list),
                Err(e) => {
                    tracing::error!(error = %e, "stored key routes unreadable; key allows no route");
                    Routes(0)
                }
            },
        }
    }
}

/// Where a key's waiting requests stand in a queue (stored now; the queue uses it later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Served first.
    High,
    /// The default.
    #[default]
    Normal,
    /// Served last.
    Low,
}

/// A key's limits; `null` = unlimited. Enforced by [`crate::quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1)]
    pub requests_per_minute: Option<u64>,
    /// Prompt + completion tokens per minute.
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1)]
    pub tokens_per_minute: Option<u64>,
    /// Prompt + completion tokens per day.
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1)]
    pub tokens_per_day: Option<u64>,
}

/// A limit: a whole number, also when written as `60.0` (JSON does not tell the two apart).
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_u64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        // Below 2^53, a float that is whole is exactly that integer.
        Some(f) if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "expected a whole number of at least 1, got {number}"
        ))),
    }
}

/// `limits` in a request: an object or `null` (serde alone would also read a struct from an array).
pub fn limits_object<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Limits>, D::Error> {
    let Some(map) = Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)? else {
        return Ok(None);
    };
    serde_json::from_value(serde_json::Value::Object(map)).map_err(serde::de::Error::custom)
}

/// [`limits_object`] for a PATCH: present (even `null`) is `Some`.
pub fn limits_change<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<Limits>>, D::Error> {
    limits_object(d).map(Some)
}

impl Limits {
    /// 400 if a limit is 0 (it would refuse everything; revoke the key instead) or does not fit
    /// the database.
    pub fn validate(self) -> Result<Limits> {
        for (field, value) in [
            ("requests_per_minute", self.requests_per_minute),
            ("tokens_per_minute", self.tokens_per_minute),
            ("tokens_per_day", self.tokens_per_day),
        ] {
            if value.is_some_and(|v| v == 0 || v > i64::MAX as u64) {
                return Err(Error::BadRequest(format!(
                    "limits.{field} must be at least 1 (null or absent = unlimited)"
                )));
            }
        }
        Ok(self)
    }

    /// The limits of a stored key (negative values cannot be stored through the API; they read
    /// as 0, which refuses, should a row be damaged).
    pub fn from_stored(rpm: Option<i64>, tpm: Option<i64>, tpd: Option<i64>) -> Limits {
        let unsigned = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
        Limits {
            requests_per_minute: unsigned(rpm),
            tokens_per_minute: unsigned(tpm),
            tokens_per_day: unsigned(tpd),
        }
    }

    /// The stored form of one limit.
    pub fn stored(value: Option<u64>) -> Option<i64> {
        value.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// One entry of a key's instance list: a name, or a pattern where `*` stands for any run of
/// characters (possibly empty). No other character is special.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstancePattern {
    /// Exactly this name.
    Name(String),
    /// The pattern's pieces between `*`s: the first is a prefix, the last a suffix, the rest
    /// appear in order between them.
    Glob(Vec<String>),
}

impl InstancePattern {
    /// Parses and checks one entry: a valid instance name, in which `*` may also appear.
    pub fn parse(entry: &str) -> Result<InstancePattern> {
        if !entry.contains('*') {
            name::validate(entry)?;
            return Ok(InstancePattern::Name(entry.to_string()));
        }
        // The pattern with each `*` taken as one letter must be a valid name.
        name::validate(&entry.replace('*', "x")).map_err(|e| {
            Error::BadRequest(format!(
                "invalid instance pattern '{entry}' ('*' matches any characters): {e}"
            ))
        })?;
        Ok(InstancePattern::Glob(
            entry.split('*').map(str::to_string).collect(),
        ))
    }

    /// True if the instance `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            InstancePattern::Name(exact) => exact == name,
            InstancePattern::Glob(pieces) => glob_matches(pieces, name),
        }
    }
}

/// Matches `name` against pieces split at `*` (at least two pieces).
fn glob_matches(pieces: &[String], name: &str) -> bool {
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
        return false;
    };
    if name.len() < first.len() + last.len() || !name.starts_with(first.as_str()) {
        return false;
    }
    if !name.ends_with(last.as_str()) {
        return false;
    }
    // Leftmost matching of the middle pieces is enough: `*` absorbs whatever lies between.
    let mut rest = &name[first.len()..name.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// A key's instance list, compiled: exact names in a set, patterns in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceList {
    listed: Vec<String>,
    names: BTreeSet<String>,
    globs: Vec<InstancePattern>,
}

impl InstanceList {
    /// Compiles entries, each checked by [`InstancePattern::parse`]; duplicates are dropped.
    pub fn parse(entries: &[String]) -> Result<InstanceList> {
        let mut list = InstanceList {
            listed: Vec::new(),
            names: BTreeSet::new(),
            globs: Vec::new(),
        };
        let unique: BTreeSet<&String> = entries.iter().collect();
        for entry in unique {
            match InstancePattern::parse(entry)? {
                InstancePattern::Name(n) => {
                    list.names.insert(n);
                }
                glob => list.globs.push(glob),
            }
            list.listed.push(entry.clone());
        }
        Ok(list)
    }

    /// The entries as given (sorted, without duplicates).
    pub fn entries(&self) -> &[String] {
        &self.listed
    }

    /// True if `instance` is one of the names or matches one of the patterns.
    pub fn allows(&self, instance: &str) -> bool {
        self.names.contains(instance) || self.globs.iter().any(|g| g.matches(instance))
    }
}

/// What a key may do besides reaching instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// May its requests start a stopped instance on demand.
    pub can_start: bool,
    /// May such a start stop another instance at the running limit.
    pub can_evict: bool,
    /// The route classes it may use.
    pub routes: Routes,
    /// Its queue priority.
    pub priority: Priority,
    /// Its limits.
    pub limits: Limits,
}

impl Policy {
    /// Everything allowed, no limits: configuration keys, and everyone when auth is off.
    pub const OPEN: Policy = Policy {
        can_start: true,
        can_evict: true,
        routes: Routes::ALL,
        priority: Priority::Normal,
        limits: Limits {
            requests_per_minute: None,
            tokens_per_minute: None,
            tokens_per_day: None,
        },
    };
}

impl Default for Policy {
    fn default() -> Self {
        Policy::OPEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> InstanceList {
        InstanceList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn patterns_match_names_with_star_as_any_run() {
        let l = list(&["gemma-*", "exact", "*-q4", "a*b*c"]);
        for yes in [
            "gemma-",
            "gemma-3-270m",
            "exact",
            "x-q4",
            "-q4",
            "abc",
            "a-b-c",
            "abbc",
        ] {
            assert!(l.allows(yes), "{yes}");
        }
        for no in ["gemma", "exactly", "x-q5", "ab", "acb", "Gemma-3", "cab"] {
            assert!(!l.allows(no), "{no}");
        }
        assert!(list(&["*"]).allows("anything"));
        assert_eq!(list(&["b", "a", "b"]).entries(), ["a", "b"]);
    }

    #[test]
    fn bad_patterns_are_400() {
        for bad in ["", "gemma/*", "a b*", ".", "*/..", &"x".repeat(65)] {
            let err = InstancePattern::parse(bad).unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{bad}");
        }
    }

    #[test]
    fn routes_map_activity_classes_and_round_trip() {
        assert_eq!(RouteClass::of(Route::ChatCompletions), RouteClass::Chat);
        assert_eq!(RouteClass::of(Route::Infill), RouteClass::Completions);
        assert_eq!(RouteClass::of(Route::Read), RouteClass::Other);
        assert_eq!(RouteClass::of(Route::Tokenize), RouteClass::Other);
        let r = Routes::of(&[RouteClass::Embeddings, RouteClass::Chat]);
        assert!(r.allows(RouteClass::Chat) && !r.allows(RouteClass::Other));
        let stored = r.to_stored();
        assert_eq!(stored.as_deref(), Some(r#"["chat","embeddings"]"#));
        assert_eq!(Routes::from_stored(stored.as_deref()), r);
        assert_eq!(Routes::from_stored(None), Routes::ALL);
        assert_eq!(Routes::ALL.to_stored(), None);
        assert!(!Routes::from_stored(Some("nonsense")).allows(RouteClass::Chat));
    }

    #[test]
    fn zero_limits_are_refused() {
        let zero = Limits {
            tokens_per_day: Some(0),
            ..Limits::default()
        };
        assert!(zero
            .validate()
            .unwrap_err()
            .to_string()
            .contains("tokens_per_day"));
        assert!(Limits::default().validate().is_ok());
        let whole: Limits = serde_json::from_str(r#"{"tokens_per_day": 130.0}"#).unwrap();
        assert_eq!(whole.tokens_per_day, Some(130));
        for bad in [r#"{"tokens_per_day": 1.5}"#, r#"{"tokens_per_day": -1}"#] {
            assert!(serde_json::from_str::<Limits>(bad).is_err(), "{bad}");
        }
    }
}
