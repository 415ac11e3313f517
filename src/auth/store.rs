//! Stored API keys: create, list, revoke, and authenticate a token (cache first, then one row read
//! by public id and one argon2 verify, also when no row is found).
//!
//! Revocation or a policy change through the API evicts the key from the cache at once. Another
//! process (the CLI) can revoke or change a key too; [`KeyStore::sync_revocations`], run every
//! couple of seconds, asks the database which cached keys are revoked or changed (their revision
//! moved), in one query. Last-use times are kept in memory and written in batches.

use super::cache::{Cache, CachedKey};
use super::hash::{Hasher, Lane};
use super::model::{Access, KeyInfo, KeyKind, NewKey, UpdateKey};
use super::policy::Limits;
use super::token::{Token, PREFIX};
use crate::audit::{Actor, Event};
use crate::db::history::Subject;
use crate::db::keys::{KeyRow, PolicyRow, Revoked};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::quota::{self, Moment, Quotas};
use serde::Serialize;
use std::sync::Arc;

/// Attempts at drawing an unused id before giving up (a clash is already a one in 10^15 event).
const ID_ATTEMPTS: usize = 3;

/// The answer to creating a key: the key, and its token shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The stored key.
    #[serde(flatten)]
    pub info: KeyInfo,
    /// The whole token; it is not stored and cannot be shown again.
    #[schema(value_type = String)]
    pub key: Token,
}

/// The stored keys and the cache of verified ones.
#[derive(Debug)]
pub struct KeyStore {
    db: Db,
    cache: Cache,
    hasher: Hasher,
    quotas: Quotas,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn invalid() -> Error {
    Error::Unauthorized("invalid API key".into())
}

impl KeyStore {
    /// Keys in `db`.
    pub fn new(db: Db) -> Self {
        KeyStore {
            db,
            cache: Cache::default(),
            hasher: Hasher::new(),
            quotas: Quotas::default(),
        }
    }

    /// The key of an already verified token (by its SHA-256 `digest`), if it is cached; an
    /// expired one is refused.
    pub fn cached(&self, digest: &[u8; 32]) -> Result<Option<Arc<CachedKey>>> {
        let Some(key) = self.cache.get(digest) else {
            return Ok(None);
        };
        let now = now();
        if key.expired(now) {
            return Err(Error::Unauthorized("API key expired".into()));
        }
        key.touch(now);
        Ok(Some(key))
    }

    /// The stored key a token that is not cached belongs to, if the token is right and the key
    /// in force: one row read by public id and one argon2 verification, queued in `lane`.
    ///
    /// Every token that could be ours costs one verification, whether its id exists or not and
    /// whatever its kind, so timing does not tell which ids exist.
    pub async fn verify(
        &self,
        token: &str,
        digest: &[u8; 32],
        lane: Lane,
    ) -> Result<Arc<CachedKey>> {
        let Some(parsed) = Token::parse(token) else {
            if token.starts_with(PREFIX) {
                self.hasher.verify_nothing(token, lane).await?;
            }
            return Err(invalid());
        };
        let seen = self.cache.generation();
        let row = self.db.key(&parsed.id).await?;
        let matches = match &row {
            Some(row) => {
                self.hasher
                    .verify(parsed.secret(), &row.secret_hash, lane)
                    .await?
            }
            None => {
                self.hasher.verify_nothing(parsed.secret(), lane).await?;
                false
            }
        };
        // The secret is checked before anything about the key is told, so a guessed id alone
        // learns nothing.
        let row = match row {
            Some(row) if matches && row.kind == crate::names::name_of(&parsed.kind) => row,
            _ => return Err(invalid()),
        };
        let now = now();
        if row.revoked_at.is_some() {
            return Err(Error::Unauthorized("API key revoked".into()));
        }
        if row.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::Unauthorized("API key expired".into()));
        }
        let mut key = CachedKey::verified(row, parsed.kind, now);
        if quota::any(&key.access.policy.limits) {
            key.quota = Some(self.quotas.of(&key.id));
        }
        let key = Arc::new(key);
        self.cache.insert(*digest, key.clone(), seen);
        Ok(key)
    }

    /// Creates a key, records who did, and returns it with its token (shown this once).
    pub async fn create(&self, new: NewKey, actor: &Actor) -> Result<CreatedKey> {
        let now = now();
        for _ in 0..ID_ATTEMPTS {
            let token = Token::generate(new.kind);
            let policy = policy_row(&new.access);
            let row = KeyRow {
                id: token.id.clone(),
                name: new.name.clone(),
                kind: crate::names::name_of(&new.kind),
                secret_hash: self.hasher.hash(token.secret()).await?,
                instances: policy.instances,
                created_at: now,
                created_by: actor.to_string(),
                expires_at: new.expires_at,
                last_used_at: None,
                revoked_at: None,
                can_start: policy.can_start,
                can_evict: policy.can_evict,
                routes: policy.routes,
                priority: policy.priority,
                requests_per_minute: policy.requests_per_minute,
                tokens_per_minute: policy.tokens_per_minute,
                tokens_per_day: policy.tokens_per_day,
                revision: 0,
            };
            match self.db.insert_key(&row).await {
                Ok(()) => {}
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
            let mut detail = policy_json(&new.access);
            detail["name"] = serde_json::json!(new.name);
            detail["kind"] = serde_json::json!(new.kind);
            detail["expires_at"] = serde_json::json!(new.expires_at);
            let detail = detail.to_string();
            self.record(&token.id, Event::KeyCreated, actor, &detail)
                .await;
            let info = self.info(row, now)?;
            return Ok(CreatedKey { info, key: token });
        }
        Err(Error::Internal("could not draw an unused key id".into()))
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<KeyInfo>> {
        let now = now();
        self.db
            .list_keys()
            .await?
            .into_iter()
            .map(|row| self.info(row, now))
            .collect()
    }

    /// One key; 404 if there is none with this id.
    pub async fn get(&self, id: &str) -> Result<KeyInfo> {
        let row = self.db.key(id).await?.ok_or_else(|| not_found(id))?;
        self.info(row, now())
    }

    /// Revokes a key: refused from the next request on. Revoking a revoked key changes nothing.
    pub async fn revoke(&self, id: &str, actor: &Actor) -> Result<()> {
        let outcome = self
            .db
            .revoke_key(id, now())
            .await?
            .ok_or_else(|| not_found(id))?;
        self.cache.evict(&[id.to_string()]);
        if outcome == Revoked::Now {
            self.record(id, Event::KeyRevoked, actor, "").await;
        }
        Ok(())
    }

    /// Changes a key's policy: in force from the next request on (the cached copy is dropped), and
    /// recorded in the history with the actor and the policy before and after. 404 for no such
    /// key, 409 for a revoked one, 400 for a change that breaks a rule.
    pub async fn update(&self, id: &str, change: UpdateKey, actor: &Actor) -> Result<KeyInfo> {
        let row = self.db.key(id).await?.ok_or_else(|| not_found(id))?;
        if row.revoked_at.is_some() {
            return Err(Error::Conflict(format!("API key '{id}' is revoked")));
        }
        let kind: KeyKind = crate::names::parse(&row.kind)
            .map_err(|e| Error::Internal(format!("key {id} has kind '{}': {e}", row.kind)))?;
        let before = Access::of_row(&row);
        let after = change.apply(kind, &before)?;
        if !self.db.update_key_policy(id, &policy_row(&after)).await? {
            return Err(not_found(id));
        }
        self.cache.evict(&[id.to_string()]);
        let detail = serde_json::json!({
            "before": policy_json(&before),
            "after": policy_json(&after),
        })
        .to_string();
        self.record(id, Event::KeyUpdated, actor, &detail).await;
        self.get(id).await
    }

    /// True if a management key is in force.
    pub async fn has_management_key(&self) -> Result<bool> {
        Ok(self.db.count_active_management_keys(now()).await? > 0)
    }

    /// True if a management key was ever stored in this database, even one since revoked.
    pub async fn had_management_key(&self) -> Result<bool> {
        self.db.management_key_ever_created().await
    }

    /// The hasher, for tests that count verifications.
    #[cfg(test)]
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// Evicts cached keys that were revoked or changed elsewhere (the CLI) or have expired.
    pub async fn sync_revocations(&self) -> Result<()> {
        self.cache.evict_expired(now());
        let stale = self.db.stale_among(&self.cache.ids()).await?;
        if !stale.is_empty() {
            self.cache.evict(&stale);
        }
        Ok(())
    }

    /// Writes last-use times gathered since the previous flush.
    pub async fn flush_usage(&self) -> Result<()> {
        self.db.touch_keys(&self.cache.take_unflushed()).await
    }

    /// The quota counters of key `id`, if `limits` set any (the same ones its requests use).
    pub fn quota_of(&self, id: &str, limits: &Limits) -> Option<Arc<quota::KeyQuota>> {
        quota::any(limits).then(|| self.quotas.of(id))
    }

    /// Reads the stored quota counters (at start).
    pub async fn load_quotas(&self) -> Result<()> {
        self.quotas.load(&self.db).await
    }

    /// Writes quota counters that changed since the last flush.
    pub async fn flush_quotas(&self) -> Result<()> {
        self.quotas.flush(&self.db).await
    }

    /// The quota usage of key `id` under `limits` now; `None` if it has no limits.
    pub fn usage(&self, id: &str, limits: &Limits) -> Option<quota::QuotaUsage> {
        self.quotas.usage(id, limits, Moment::now())
    }

    /// The API's view, with a last use that may not be flushed yet, and its quota usage.
    fn info(&self, mut row: KeyRow, now: i64) -> Result<KeyInfo> {
        row.last_used_at = row.last_used_at.max(self.cache.last_used(&row.id));
        let mut info = KeyInfo::of(row, now)?;
        info.usage = self.usage(&info.id, &info.limits);
        Ok(info)
    }

    async fn record(&self, id: &str, event: Event, actor: &Actor, detail: &str) {
        let subject = Subject {
            instance: None,
            key_id: Some(id),
        };
        let detail = (!detail.is_empty()).then_some(detail);
        if let Err(e) = self.db.record_event(subject, event, actor, detail).await {
            tracing::error!(key = id, error = %e, "could not record history");
        }
    }
}

/// The stored columns of a key's access.
fn policy_row(access: &Access) -> PolicyRow {
    let p = &access.policy;
    PolicyRow {
        instances: access.scope.to_stored(),
        can_start: p.can_start,
        can_evict: p.can_evict,
        routes: p.routes.to_stored(),
        priority: crate::names::name_of(&p.priority),
        requests_per_minute: Limits::stored(p.limits.requests_per_minute),
        tokens_per_minute: Limits::stored(p.limits.tokens_per_minute),
        tokens_per_day: Limits::stored(p.limits.tokens_per_day),
    }
}

/// A key's access as the history records it (the key resource's field names; never a secret).
fn policy_json(access: &Access) -> serde_json::Value {
    let p = &access.policy;
    serde_json::json!({
        "instances": access.scope.names(),
        "can_start": p.can_start,
        "can_evict": p.can_evict,
        "routes": p.routes.list(),
        "priority": p.priority,
        "limits": p.limits,
    })
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("API key '{id}' not found"))
}
