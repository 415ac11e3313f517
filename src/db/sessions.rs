//! Queries on the `sessions` table. Session tokens never reach this module: only their SHA-256.

use super::{Db, OnDb};
use crate::error::Result;

/// One stored dashboard session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the token in the browser's cookie.
    pub token_hash: Vec<u8>,
    /// The stored key it was made with; `None` for a key from the configuration file.
    pub key_id: Option<String>,
    /// The key's name (or the configuration key's label), for the history.
    pub key_name: String,
    /// `management` or `inference`.
    pub kind: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Db {
    /// Stores a new session, and drops the expired ones while at it (sign-ins are rare, so this is
    /// all the sweeping the table needs).
    pub async fn insert_session(&self, row: &SessionRow) -> Result<()> {
        let mut tx = self.pool().begin().await.on(self)?;
        sqlx::query!("DELETE FROM sessions WHERE expires_at <= ?", row.created_at)
            .execute(&mut *tx)
            .await
            .on(self)?;
        sqlx::query!(
            "INSERT INTO sessions (token_hash, key_id, key_name, kind, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
            row.token_hash,
            row.key_id,
            row.key_name,
            row.kind,
            row.created_at,
            row.expires_at
        )
        .execute(&mut *tx)
        .await
        .on(self)?;
        tx.commit().await.on(self)?;
        Ok(())
    }

    /// The session with this token hash, if it is in force at `now` and its key is not revoked
    /// (the revocation deletes it too; this also holds should a row outlive its key somehow).
    pub async fn session(&self, token_hash: &[u8], now: i64) -> Result<Option<SessionRow>> {
        let row = sqlx::query_as!(
            SessionRow,
            r#"SELECT s.token_hash as "token_hash!", s.key_id, s.key_name, s.kind,
                      s.created_at, s.expires_at
               FROM sessions s LEFT JOIN api_keys k ON k.id = s.key_id
               WHERE s.token_hash = ? AND s.expires_at > ?
                 AND k.revoked_at IS NULL
                 AND (k.expires_at IS NULL OR k.expires_at > ?)"#,
            token_hash,
            now,
            now
        )
        .fetch_optional(self.pool())
        .await
        .on(self)?;
        Ok(row)
    }

    /// Ends the session with this token hash (signing out); ending one that is gone is no error.
    pub async fn delete_session(&self, token_hash: &[u8]) -> Result<()> {
        sqlx::query!("DELETE FROM sessions WHERE token_hash = ?", token_hash)
            .execute(self.pool())
            .await
            .on(self)?;
        Ok(())
    }

    /// Ends every session of a configuration key: at startup, since the file may have changed.
    pub async fn delete_config_key_sessions(&self) -> Result<u64> {
        let done = sqlx::query!("DELETE FROM sessions WHERE key_id IS NULL")
            .execute(self.pool())
            .await
            .on(self)?;
        Ok(done.rows_affected())
    }
}
