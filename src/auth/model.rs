//! What a key is: its kind, the instances it may reach, the validated request to create one, and
//! how the API shows one (never with its secret, except once at creation).

use super::policy::{InstanceList, Limits, Policy, Priority, RouteClass, Routes};
use crate::db::keys::KeyRow;
use crate::error::{Error, Result};
use crate::timestamp::When;
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;

/// Longest key name.
pub const MAX_KEY_NAME_LEN: usize = 64;

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// The `/api/v1` management API (and inference too).
    Management,
    /// Inference only: `/v1` and the instance proxy.
    Inference,
}

/// Which instances a key may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    /// Every instance.
    All,
    /// Only these names and patterns (compiled once, shared by every request with the key).
    Only(Arc<InstanceList>),
}

impl KeyScope {
    /// The scope of these entries (names or `*` patterns); 400 if one is invalid.
    pub fn of(entries: &[String]) -> Result<KeyScope> {
        Ok(KeyScope::Only(Arc::new(InstanceList::parse(entries)?)))
    }

    /// True if an instance of this name is within the scope.
    pub fn allows(&self, instance: &str) -> bool {
        match self {
            KeyScope::All => true,
            KeyScope::Only(list) => list.allows(instance),
        }
    }

    /// The stored form: `None` for all, else a JSON array.
    pub fn to_stored(&self) -> Option<String> {
        match self {
            KeyScope::All => None,
            KeyScope::Only(list) => serde_json::to_string(list.entries()).ok(),
        }
    }

    /// The scope of a stored key; an unreadable list allows nothing, so a damaged row fails closed.
    pub fn from_stored(stored: Option<&str>) -> KeyScope {
        let Some(json) = stored else {
            return KeyScope::All;
        };
        let parsed = serde_json::from_str::<Vec<String>>(json)
            .map_err(|e| e.to_string())
            .and_then(|entries| InstanceList::parse(&entries).map_err(|e| e.to_string()));
        let list = parsed.unwrap_or_else(|e| {
            tracing::error!(error = %e, "stored key scope unreadable; key allows no instance");
            InstanceList::parse(&[]).unwrap_or_else(|_| unreachable!("an empty list is valid"))
        });
        KeyScope::Only(Arc::new(list))
    }

    /// The names and patterns, or `None` for all.
    pub fn names(&self) -> Option<Vec<String>> {
        match self {
            KeyScope::All => None,
            KeyScope::Only(list) => Some(list.entries().to_vec()),
        }
    }
}

/// Everything a key may do: its instances and its policy. One per verified key, shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Which instances.
    pub scope: KeyScope,
    /// What else.
    pub policy: Policy,
}

impl Access {
    /// Everything, no limits (configuration keys, and everyone when auth is off).
    pub fn open() -> Arc<Access> {
        static OPEN: std::sync::LazyLock<Arc<Access>> = std::sync::LazyLock::new(|| {
            Arc::new(Access {
                scope: KeyScope::All,
                policy: Policy::OPEN,
            })
        });
        OPEN.clone()
    }

    /// The access of a stored key.
    pub fn of_row(row: &KeyRow) -> Access {
        Access {
            scope: KeyScope::from_stored(row.instances.as_deref()),
            policy: Policy {
                can_start: row.can_start,
                can_evict: row.can_evict,
                routes: Routes::from_stored(row.routes.as_deref()),
                priority: crate::names::parse(&row.priority).unwrap_or_else(|e| {
                    tracing::error!(key = %row.id, error = %e, "stored key priority unreadable");
                    Priority::Low
                }),
                limits: Limits::from_stored(
                    row.requests_per_minute,
                    row.tokens_per_minute,
                    row.tokens_per_day,
                ),
            },
        }
    }
}

/// Reads a field that is present (even as `null`) as `Some`, so that PATCH tells "set to null"
/// from "leave as is" (absent, via `#[serde(default)]`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The instance list of a request: `None` = all; 400 if empty or given for a management key.
fn scope_of(kind: KeyKind, instances: Option<Vec<String>>) -> Result<KeyScope> {
    match instances {
        None => Ok(KeyScope::All),
        Some(_) if kind == KeyKind::Management => Err(Error::BadRequest(
            "only inference keys can be limited to instances".into(),
        )),
        Some(list) if list.is_empty() => Err(Error::BadRequest(
            "instances must name at least one instance (leave it out for all)".into(),
        )),
        Some(list) => KeyScope::of(&list),
    }
}

/// The route classes of a request: `None` = all; 400 if empty or given for a management key.
fn routes_of(kind: KeyKind, routes: Option<Vec<RouteClass>>) -> Result<Routes> {
    match routes {
        None => Ok(Routes::ALL),
        Some(_) if kind == KeyKind::Management => Err(Error::BadRequest(
            "only inference keys can be limited to route classes".into(),
        )),
        Some(list) if list.is_empty() => Err(Error::BadRequest(
            "routes must name at least one route class (leave it out for all)".into(),
        )),
        Some(list) => Ok(Routes::of(&list)),
    }
}

/// The body of `POST /api/v1/auth/keys` (and the CLI's `keys create`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Label: 1 to 64 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// `management` or `inference`.
    pub kind: KeyKind,
    /// Instances an inference key is limited to (at least one); absent = all. Not for management keys.
    #[serde(default)]
    #[schema(min_items = 1, value_type = Option<Vec<String>>)]
    pub instances: Option<Vec<String>>,
    /// When the key stops working, in the future: Unix seconds or RFC 3339; absent = never.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<When>,
    /// May its requests start a stopped instance on demand (default true).
    #[serde(default)]
    pub can_start: Option<bool>,
    /// May such a start stop another instance at the running limit (default true).
    #[serde(default)]
    pub can_evict: Option<bool>,
    /// Route classes an inference key is limited to (at least one); absent = all.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub routes: Option<Vec<RouteClass>>,
    /// Queue priority (default `normal`).
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Limits per minute and per day (fixed UTC windows); absent or `null` fields = unlimited.
    #[serde(default, deserialize_with = "super::policy::limits_object")]
    pub limits: Option<Limits>,
}

/// The body of `PATCH /api/v1/auth/keys/{id}` (and the CLI's `keys update`): each field present
/// replaces the key's; absent ones stay. `instances` and `routes` may be `null` (= all);
/// `limits`, when present, replaces all three limits (a field left out = unlimited).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// May its requests start a stopped instance on demand.
    #[serde(default)]
    pub can_start: Option<bool>,
    /// May such a start stop another instance at the running limit.
    #[serde(default)]
    pub can_evict: Option<bool>,
    /// Instance names or `*` patterns (inference keys); `null` = all.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>, min_items = 1)]
    pub instances: Option<Option<Vec<String>>>,
    /// Route classes (inference keys); `null` = all.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<RouteClass>>, min_items = 1, nullable = true)]
    pub routes: Option<Option<Vec<RouteClass>>>,
    /// Queue priority.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// All three limits; `null` = none.
    #[serde(default, deserialize_with = "super::policy::limits_change")]
    #[schema(value_type = Option<Limits>, nullable = true)]
    pub limits: Option<Option<Limits>>,
}

impl UpdateKey {
    /// The access of a key of `kind` that had `before`, with this change applied; 400 if it
    /// breaks a rule or changes nothing at all.
    pub fn apply(self, kind: KeyKind, before: &Access) -> Result<Access> {
        let mut after = before.clone();
        let mut given = false;
        if let Some(v) = self.can_start {
            after.policy.can_start = v;
            given = true;
        }
        if let Some(v) = self.can_evict {
            after.policy.can_evict = v;
            given = true;
        }
        if let Some(v) = self.instances {
            after.scope = scope_of(kind, v)?;
            given = true;
        }
        if let Some(v) = self.routes {
            after.policy.routes = routes_of(kind, v)?;
            given = true;
        }
        if let Some(v) = self.priority {
            after.policy.priority = v;
            given = true;
        }
        if let Some(v) = self.limits {
            after.policy.limits = v.unwrap_or_default().validate()?;
            given = true;
        }
        if !given {
            return Err(Error::BadRequest(
                "nothing to change: give at least one of can_start, can_evict, instances,                  routes, priority, limits"
                    .into(),
            ));
        }
        Ok(after)
    }
}

/// A key request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Label, trimmed.
    pub name: String,
    /// What it is for.
    pub kind: KeyKind,
    /// Which instances it reaches, and what else it may do.
    pub access: Access,
    /// Unix seconds; `None` = never.
    pub expires_at: Option<i64>,
}

impl CreateKey {
    /// Checks the request against the rules, at time `now` (Unix seconds).
    pub fn validate(self, now: i64) -> Result<NewKey> {
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_KEY_NAME_LEN {
            return Err(Error::BadRequest(format!(
                "key name must be 1 to {MAX_KEY_NAME_LEN} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::BadRequest(
                "key name must not contain control characters".into(),
            ));
        }
        let scope = scope_of(self.kind, self.instances)?;
        let policy = Policy {
            can_start: self.can_start.unwrap_or(true),
            can_evict: self.can_evict.unwrap_or(true),
            routes: routes_of(self.kind, self.routes)?,
            priority: self.priority.unwrap_or_default(),
            limits: self.limits.unwrap_or_default().validate()?,
        };
        let expires_at = match self.expires_at {
            Some(When(at)) if at.timestamp() <= now => {
                return Err(Error::BadRequest("expires_at must be in the future".into()))
            }
            Some(When(at)) => Some(at.timestamp()),
            None => None,
        };
        Ok(NewKey {
            name,
            kind: self.kind,
            access: Access { scope, policy },
            expires_at,
        })
    }
}

/// Whether a key works now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// In force.
    Active,
    /// Past its `expires_at`.
    Expired,
    /// Revoked.
    Revoked,
}

/// A key as the API and CLI show it: everything but the secret and its hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// Public id.
    pub id: String,
    /// Label.
    pub name: String,
    /// What it is for.
    pub kind: KeyKind,
    /// Instance names and `*` patterns it is limited to; `null` = all.
    pub instances: Option<Vec<String>>,
    /// May its requests start a stopped instance on demand.
    pub can_start: bool,
    /// May such a start stop another instance at the running limit.
    pub can_evict: bool,
    /// Route classes it is limited to; `null` = all.
    pub routes: Option<Vec<RouteClass>>,
    /// Queue priority.
    pub priority: Priority,
    /// Limits; `null` = unlimited.
    pub limits: Limits,
    /// Current usage against each limit, with what is left and when it resets; `null` when the
    /// key has no limits.
    pub usage: Option<crate::quota::QuotaUsage>,
    /// Whether it works now.
    pub status: KeyStatus,
    /// Unix seconds.
    pub created_at: i64,
    /// Who created it.
    pub created_by: String,
    /// Unix seconds; `null` = never.
    pub expires_at: Option<i64>,
    /// Unix seconds; `null` = never used.
    pub last_used_at: Option<i64>,
    /// Unix seconds; `null` = in force.
    pub revoked_at: Option<i64>,
}

impl KeyInfo {
    /// The view of a stored key at time `now` (Unix seconds).
    pub fn of(row: KeyRow, now: i64) -> Result<Self> {
        let kind = crate::names::parse(&row.kind)
            .map_err(|e| Error::Internal(format!("key {} has kind '{}': {e}", row.id, row.kind)))?;
        let status = if row.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if row.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        };
        let access = Access::of_row(&row);
        Ok(KeyInfo {
            instances: access.scope.names(),
            can_start: access.policy.can_start,
            can_evict: access.policy.can_evict,
            routes: access.policy.routes.list(),
            priority: access.policy.priority,
            limits: access.policy.limits,
            usage: None,
            id: row.id,
            name: row.name,
            kind,
            status,
            created_at: row.created_at,
            created_by: row.created_by,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn request(body: serde_json::Value) -> Result<NewKey> {
        let req: CreateKey =
            serde_json::from_value(body).map_err(|e| Error::BadRequest(e.to_string()))?;
        req.validate(NOW)
    }

    #[test]
    fn valid_requests() {
        let key = request(json!({"name": " ci ", "kind": "management"})).unwrap();
        assert_eq!(key.name, "ci");
        assert_eq!(key.access, *Access::open());
        let key = request(json!({
            "name": "app", "kind": "inference", "instances": ["a", "b", "a"],
            "expires_at": NOW + 60
        }))
        .unwrap();
        assert_eq!(key.access.scope.names(), Some(vec!["a".into(), "b".into()]));
        assert_eq!(key.expires_at, Some(NOW + 60));
        let key = request(json!({
            "name": "app", "kind": "inference", "instances": ["gemma-*"], "can_start": false,
            "can_evict": false, "routes": ["chat", "embeddings"], "priority": "low",
            "limits": {"requests_per_minute": 60, "tokens_per_day": 100000}
        }))
        .unwrap();
        let p = key.access.policy;
        assert!(!p.can_start && !p.can_evict && p.priority == Priority::Low);
        assert!(key.access.scope.allows("gemma-3") && !key.access.scope.allows("qwen"));
        assert_eq!(
            p.routes.list(),
            Some(vec![RouteClass::Chat, RouteClass::Embeddings])
        );
        assert_eq!(p.limits.requests_per_minute, Some(60));
        assert_eq!(p.limits.tokens_per_minute, None);
    }

    #[test]
    fn invalid_requests_are_400_saying_why() {
        let cases = [
            (json!({"kind": "management"}), "name"),
            (json!({"name": "", "kind": "management"}), "1 to 64"),
            (
                json!({"name": "x".repeat(65), "kind": "management"}),
                "1 to 64",
            ),
            (json!({"name": "a\nb", "kind": "management"}), "control"),
            (json!({"name": "n"}), "kind"),
            (json!({"name": "n", "kind": "root"}), "unknown variant"),
            (
                json!({"name": "n", "kind": "management", "instances": ["a"]}),
                "only inference",
            ),
            (
                json!({"name": "n", "kind": "inference", "instances": []}),
                "at least one",
            ),
            (
                json!({"name": "n", "kind": "inference", "instances": ["../x"]}),
                "invalid instance name",
            ),
            (
                json!({"name": "n", "kind": "inference", "expires_at": NOW}),
                "future",
            ),
            (
                json!({"name": "n", "kind": "inference", "expires_at": "soon"}),
                "RFC 3339",
            ),
            (
                json!({"name": "n", "kind": "inference", "rate": 1}),
                "unknown field",
            ),
            (
                json!({"name": "n", "kind": "management", "routes": ["chat"]}),
                "only inference",
            ),
            (
                json!({"name": "n", "kind": "inference", "routes": []}),
                "at least one route",
            ),
            (
                json!({"name": "n", "kind": "inference", "routes": ["chats"]}),
                "unknown variant",
            ),
            (
                json!({"name": "n", "kind": "inference", "priority": "urgent"}),
                "unknown variant",
            ),
            (
                json!({"name": "n", "kind": "inference", "limits": {"tokens_per_minute": 0}}),
                "at least 1",
            ),
            (
                json!({"name": "n", "kind": "inference", "limits": {"rpm": 1}}),
                "unknown field",
            ),
            (
                json!({"name": "n", "kind": "inference", "limits": [null, null]}),
                "invalid type",
            ),
            (
                json!({"name": "n", "kind": "inference", "instances": ["a/*"]}),
                "invalid instance pattern",
            ),
        ];
        for (body, want) in cases {
            let err = request(body.clone()).unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{body}");
            assert!(err.to_string().contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn scope_round_trips_and_damaged_scope_allows_nothing() {
        let only = KeyScope::of(&["m".to_string(), "g-*".to_string()]).unwrap();
        let stored = only.to_stored();
        assert_eq!(stored.as_deref(), Some(r#"["g-*","m"]"#));
        assert_eq!(KeyScope::from_stored(stored.as_deref()), only);
        assert!(only.allows("m") && !only.allows("n"));
        assert!(KeyScope::from_stored(None).allows("anything"));
        assert!(!KeyScope::from_stored(Some("not json")).allows("m"));
        assert!(!KeyScope::from_stored(Some(r#"["../x"]"#)).allows("m"));
    }

    #[test]
    fn updates_change_only_what_they_name() {
        let update = |body: serde_json::Value, kind| {
            let change: UpdateKey =
                serde_json::from_value(body).map_err(|e| Error::BadRequest(e.to_string()))?;
            change.apply(kind, &Access::open())
        };
        let after = update(json!({"can_start": false}), KeyKind::Inference).unwrap();
        assert!(!after.policy.can_start && after.policy.can_evict);
        assert_eq!(after.scope, KeyScope::All);
        let after = update(
            json!({"instances": ["a"], "limits": {"tokens_per_day": 5}}),
            KeyKind::Inference,
        )
        .unwrap();
        assert!(after.scope.allows("a") && !after.scope.allows("b"));
        assert_eq!(after.policy.limits.tokens_per_day, Some(5));
        let reset = UpdateKey {
            instances: Some(None),
            limits: Some(None),
            ..UpdateKey::default()
        };
        let back = reset.apply(KeyKind::Inference, &after).unwrap();
        assert_eq!(back, *Access::open());
        for (body, kind, want) in [
            (json!({}), KeyKind::Inference, "nothing to change"),
            (
                json!({"routes": ["chat"]}),
                KeyKind::Management,
                "only inference",
            ),
            (json!({"instances": []}), KeyKind::Inference, "at least one"),
            (json!({"name": "x"}), KeyKind::Inference, "unknown field"),
        ] {
            let err = update(body.clone(), kind).unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{body}");
            assert!(err.to_string().contains(want), "{body}: {err}");
        }
    }
}
