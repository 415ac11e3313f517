//! What a key is: its kind, the instances it may reach, the validated request to create one, and
//! how the API shows one (never with its secret, except once at creation).

use crate::db::keys::KeyRow;
use crate::definitions::name;
use crate::error::{Error, Result};
use crate::timestamp::When;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
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
    /// Only these (shared, so handing it to each request is cheap).
    Only(Arc<BTreeSet<String>>),
}

impl KeyScope {
    /// True if an instance of this name is within the scope.
    pub fn allows(&self, instance: &str) -> bool {
        match self {
            KeyScope::All => true,
            KeyScope::Only(names) => names.contains(instance),
        }
    }

    /// The stored form: `None` for all, else a JSON array.
    pub fn to_stored(&self) -> Option<String> {
        match self {
            KeyScope::All => None,
            KeyScope::Only(names) => serde_json::to_string(&**names).ok(),
        }
    }

    /// The scope of a stored key; an unreadable list allows nothing, so a damaged row fails closed.
    pub fn from_stored(stored: Option<&str>) -> KeyScope {
        match stored {
            None => KeyScope::All,
            Some(json) => {
                let names: BTreeSet<String> = serde_json::from_str(json).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "stored key scope unreadable; key allows no instance");
                    BTreeSet::new()
                });
                KeyScope::Only(Arc::new(names))
            }
        }
    }

    /// The names, or `None` for all.
    pub fn names(&self) -> Option<Vec<String>> {
        match self {
            KeyScope::All => None,
            KeyScope::Only(names) => Some(names.iter().cloned().collect()),
        }
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
}

/// A key request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Label, trimmed.
    pub name: String,
    /// What it is for.
    pub kind: KeyKind,
    /// Which instances it reaches.
    pub scope: KeyScope,
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
        let scope = match self.instances {
            None => KeyScope::All,
            Some(_) if self.kind == KeyKind::Management => {
                return Err(Error::BadRequest(
                    "only inference keys can be limited to instances".into(),
                ))
            }
            Some(list) if list.is_empty() => {
                return Err(Error::BadRequest(
                    "instances must name at least one instance (leave it out for all)".into(),
                ))
            }
            Some(list) => {
                for instance in &list {
                    name::validate(instance)?;
                }
                KeyScope::Only(Arc::new(list.into_iter().collect()))
            }
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
            scope,
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
    /// Instances it is limited to; `null` = all.
    pub instances: Option<Vec<String>>,
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
        Ok(KeyInfo {
            instances: KeyScope::from_stored(row.instances.as_deref()).names(),
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
        assert_eq!(key.scope, KeyScope::All);
        let key = request(json!({
            "name": "app", "kind": "inference", "instances": ["a", "b", "a"],
            "expires_at": NOW + 60
        }))
        .unwrap();
        assert_eq!(key.scope.names(), Some(vec!["a".into(), "b".into()]));
        assert_eq!(key.expires_at, Some(NOW + 60));
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
        ];
        for (body, want) in cases {
            let err = request(body.clone()).unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{body}");
            assert!(err.to_string().contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn scope_round_trips_and_damaged_scope_allows_nothing() {
        let only = KeyScope::Only(Arc::new(["m".to_string()].into_iter().collect()));
        let stored = only.to_stored();
        assert_eq!(stored.as_deref(), Some(r#"["m"]"#));
        assert_eq!(KeyScope::from_stored(stored.as_deref()), only);
        assert!(only.allows("m") && !only.allows("n"));
        assert!(KeyScope::from_stored(None).allows("anything"));
        assert!(!KeyScope::from_stored(Some("not json")).allows("m"));
    }
}
