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
            "INSERT INTO api_keys (id, name, kind, secret_hash, instances, created_at, created_by, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            row.id,
            row.name,
            row.kind,
            row.secret_hash,
            row.instances,
            row.created_at,
            row.created_by,
            row.expires_at
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
                      expires_at, last_used_at, revoked_at
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
                      expires_at, last_used_at, revoked_at
               FROM api_keys ORDER BY created_at, rowid"#
        )
        .fetch_all(self.pool())
        .await
        .on(self)?;
        Ok(rows)
    }

    /// Revokes a key at `now`; `None` if there is no such key.
    pub async fn revoke_key(&self, id: &str, now: i64) -> Result<Option<Revoked>> {
        let changed = sqlx::query!(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            now,
            id
        )
        .execute(self.pool())
        .await
        .on(self)?
        .rows_affected();
        if changed > 0 {
            return Ok(Some(Revoked::Now));
        }
        Ok(self.key(id).await?.map(|_| Revoked::Already))
    }

    /// Of these ids, those revoked (by anyone, e.g. the CLI in another process).
    pub async fn revoked_among(&self, ids: &[&str]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One statement for any number of ids: the list travels as a JSON array.
        let ids = serde_json::to_string(ids).map_err(|e| Error::Internal(e.to_string()))?;
        let revoked = sqlx::query_scalar!(
            r#"SELECT id as "id!" FROM api_keys
               WHERE revoked_at IS NOT NULL AND id IN (SELECT value FROM json_each(?))"#,
            ids
        )
        .fetch_all(self.pool())
        .await
        .on(self)?;
        Ok(revoked)
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
