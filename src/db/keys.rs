//! Queries on the `api_keys` table. Secrets never reach this module: only their argon2id hash.

use super::{is_unique_violation, Db, OnDb};
use crate::error::{Error, Result};

/// One stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Short public id, also part of the token.
    pub id: String,
    /// Label.
    pub name: String,
    /// `management` or `inference`.
    pub kind: String,
    /// argon2id PHC string of the secret part.
    pub secret_hash: String,
    /// JSON array of instance names, or `None` for all instances.
    pub instances: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Who created it.
    pub created_by: String,
    /// Unix seconds; `None` = never.
    pub expires_at: Option<i64>,
    /// Unix seconds, as last flushed.
    pub last_used_at: Option<i64>,
    /// Unix seconds; `None` = in force.
    pub revoked_at: Option<i64>,
    /// May its requests start instances on demand.
    pub can_start: bool,
    /// May such a start evict another instance.
    pub can_evict: bool,
    /// JSON array of route classes, or `None` for all.
    pub routes: Option<String>,
    /// `high`, `normal` or `low`.
    pub priority: String,
    /// `None` = unlimited.
    pub requests_per_minute: Option<i64>,
    /// `None` = unlimited.
    pub tokens_per_minute: Option<i64>,
    /// `None` = unlimited.
    pub tokens_per_day: Option<i64>,
    /// Grows with each change of the policy.
    pub revision: i64,
}

/// The policy columns of a key, as [`Db::update_key_policy`] writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// JSON array of instance names and patterns, or `None` for all.
    pub instances: Option<String>,
    /// See [`KeyRow::can_start`].
    pub can_start: bool,
    /// See [`KeyRow::can_evict`].
    pub can_evict: bool,
    /// See [`KeyRow::routes`].
    pub routes: Option<String>,
    /// See [`KeyRow::priority`].
    pub priority: String,
    /// See [`KeyRow::requests_per_minute`].
    pub requests_per_minute: Option<i64>,
    /// See [`KeyRow::tokens_per_minute`].
    pub tokens_per_minute: Option<i64>,
    /// See [`KeyRow::tokens_per_day`].
    pub tokens_per_day: Option<i64>,
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The key was in force and is now revoked.
    Now,
    /// The key had been revoked before; nothing changed.
    Already,
}

impl Db {
    /// Stores a new key; an id that is taken is a conflict (the caller draws a new one).
    pub async fn insert_key(&self, row: &KeyRow) -> Result<()> {
        sqlx::query!(
            "INSERT INTO api_keys (id, name, kind, secret_hash, instances, created_at, created_by,
                                   expires_at, can_start, can_evict, routes, priority,
                                   requests_per_minute, tokens_per_minute, tokens_per_day)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row.id,
            row.name,
            row.kind,
            row.secret_hash,
            row.instances,
            row.created_at,
            row.created_by,
            row.expires_at,
            row.can_start,
            row.can_evict,
            row.routes,
            row.priority,
            row.requests_per_minute,
            row.tokens_per_minute,
            row.tokens_per_day
        )
        .execute(self.pool())
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("key id '{}' is taken", row.id))
            } else {
                self.failed(e)
            }
        })?;
        Ok(())
    }

    /// The key with this id.
    pub async fn key(&self, id: &str) -> Result<Option<KeyRow>> {
        let row = sqlx::query_as!(
            KeyRow,
            r#"SELECT id as "id!", name, kind, secret_hash, instances, created_at, created_by,
                      expires_at, last_used_at, revoked_at, can_start as "can_start: bool",
                      can_evict as "can_evict: bool", routes, priority, requests_per_minute,
                      tokens_per_minute, tokens_per_day, revision
               FROM api_keys WHERE id = ?"#,
            id
        )
        .fetch_optional(self.pool())
        .await
        .on(self)?;
        Ok(row)
    }

    /// Every key, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        let rows = sqlx::query_as!(
            KeyRow,
            r#"SELECT id as "id!", name, kind, secret_hash, instances, created_at, created_by,
                      expires_at, last_used_at, revoked_at, can_start as "can_start: bool",
                      can_evict as "can_evict: bool", routes, priority, requests_per_minute,
                      tokens_per_minute, tokens_per_day, revision
               FROM api_keys ORDER BY created_at, rowid"#
        )
        .fetch_all(self.pool())
        .await
        .on(self)?;
        Ok(rows)
    }

    /// Revokes a key at `now`; `None` if there is no such key.
    pub async fn revoke_key(&self, id: &str, now: i64) -> Result<Option<Revoked>> {
        // The key's dashboard sessions end with it, in the same transaction, whoever revokes it
        // (the API or the CLI).
        let mut tx = self.pool().begin().await.on(self)?;
        let changed = sqlx::query!(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            now,
            id
        )
        .execute(&mut *tx)
        .await
        .on(self)?
        .rows_affected();
        sqlx::query!("DELETE FROM sessions WHERE key_id = ?", id)
            .execute(&mut *tx)
            .await
            .on(self)?;
        tx.commit().await.on(self)?;
        if changed > 0 {
            return Ok(Some(Revoked::Now));
        }
        Ok(self.key(id).await?.map(|_| Revoked::Already))
    }

    /// Changes a key's policy and bumps its revision; `false` if there is no such key.
    pub async fn update_key_policy(&self, id: &str, p: &PolicyRow) -> Result<bool> {
        let changed = sqlx::query!(
            "UPDATE api_keys SET instances = ?, can_start = ?, can_evict = ?, routes = ?,
                 priority = ?, requests_per_minute = ?, tokens_per_minute = ?, tokens_per_day = ?,
                 revision = revision + 1
             WHERE id = ?",
            p.instances,
            p.can_start,
            p.can_evict,
            p.routes,
            p.priority,
            p.requests_per_minute,
            p.tokens_per_minute,
            p.tokens_per_day,
            id
        )
        .execute(self.pool())
        .await
        .on(self)?
        .rows_affected();
        Ok(changed > 0)
    }

    /// Of these cached keys (id, revision seen), those revoked or changed since (by anyone, e.g.
    /// the CLI in another process).
    pub async fn stale_among(&self, cached: &[(String, i64)]) -> Result<Vec<String>> {
        if cached.is_empty() {
            return Ok(Vec::new());
        }
        // One statement for any number of keys: the list travels as a JSON array of pairs.
        let cached = serde_json::to_string(cached).map_err(|e| Error::Internal(e.to_string()))?;
        let stale = sqlx::query_scalar!(
            r#"SELECT k.id as "id!" FROM api_keys k
               JOIN json_each(?) c ON k.id = json_extract(c.value, '$[0]')
               WHERE k.revoked_at IS NOT NULL OR k.revision != json_extract(c.value, '$[1]')"#,
            cached
        )
        .fetch_all(self.pool())
        .await
        .on(self)?;
        Ok(stale)
    }

    /// Records when keys were last used, in one transaction; never moves a time backwards.
    pub async fn touch_keys(&self, used: &[(String, i64)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await.on(self)?;
        for (id, at) in used {
            sqlx::query!(
                "UPDATE api_keys SET last_used_at = ?1
                 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)",
                at,
                id
            )
            .execute(&mut *tx)
            .await
            .on(self)?;
        }
        tx.commit().await.on(self)?;
        Ok(())
    }

    /// Management keys in force at `now` (neither revoked nor expired).
    pub async fn count_active_management_keys(&self, now: i64) -> Result<i64> {
        let n = sqlx::query_scalar!(
            r#"SELECT COUNT(*) as "n!: i64" FROM api_keys
               WHERE kind = 'management' AND revoked_at IS NULL
                 AND (expires_at IS NULL OR expires_at > ?)"#,
            now
        )
        .fetch_one(self.pool())
        .await
        .on(self)?;
        Ok(n)
    }

    /// True if a management key was ever created in this database (a trigger remembers it in
    /// `meta`, so revoking, expiring or even deleting keys does not forget it).
    pub async fn management_key_ever_created(&self) -> Result<bool> {
        let found = sqlx::query_scalar!(
            r#"SELECT EXISTS(SELECT 1 FROM meta WHERE name = 'first_management_key_at') as "found!: bool""#
        )
        .fetch_one(self.pool())
        .await.on(self)?;
        Ok(found)
    }
}
