//! The `key_usage` table: each limited key's quota counters, loaded at start and written in batches.

use super::{Db, OnDb};
use crate::error::Result;

/// One key's counters as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The key's public id.
    pub key_id: String,
    /// The minute window (Unix seconds / 60) the minute counters belong to.
    pub minute: i64,
    /// Requests admitted in that minute.
    pub minute_requests: i64,
    /// Tokens charged in that minute.
    pub minute_tokens: i64,
    /// The day window (Unix seconds / 86400) the day counter belongs to.
    pub day: i64,
    /// Tokens charged in that day.
    pub day_tokens: i64,
}

impl Db {
    /// Every key's stored counters.
    pub async fn key_usage(&self) -> Result<Vec<UsageRow>> {
        sqlx::query_as!(
            UsageRow,
            "SELECT key_id, minute, minute_requests, minute_tokens, day, day_tokens FROM key_usage"
        )
        .fetch_all(self.pool())
        .await
        .on(self)
    }

    /// Writes these keys' counters, in one transaction.
    pub async fn save_key_usage(&self, rows: &[UsageRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await.on(self)?;
        for r in rows {
            sqlx::query!(
                "INSERT INTO key_usage (key_id, minute, minute_requests, minute_tokens, day, day_tokens)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (key_id) DO UPDATE SET minute = ?2, minute_requests = ?3,
                     minute_tokens = ?4, day = ?5, day_tokens = ?6",
                r.key_id,
                r.minute,
                r.minute_requests,
                r.minute_tokens,
                r.day,
                r.day_tokens
            )
            .execute(&mut *tx)
            .await
            .on(self)?;
        }
        tx.commit().await.on(self)?;
        Ok(())
    }
}
