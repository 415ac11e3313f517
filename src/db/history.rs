//! The `history` table: one row per lifecycle or management event, kept after the instance is gone.

use super::Db;
use crate::error::Result;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Definition stored.
    Created,
    /// Definition changed.
    Updated,
    /// Definition removed.
    Deleted,
    /// A start was asked for (API, restore on boot, on-demand by an inference request).
    StartRequested,
    /// The backend answered `/health` with 200.
    Ready,
    /// A stop was asked for.
    StopRequested,
    /// The backend is gone after a stop.
    Stopped,
    /// The backend exited by itself while running.
    Crashed,
    /// The backend is being started again after a crash.
    Restarted,
    /// The backend could not start, or crashed too often.
    Failed,
    /// A stale child of a killed predecessor was ended on boot.
    OrphanKilled,
    /// Stopped to make room for another instance at the running limit (least recently used).
    Evicted,
    /// Stopped because nobody used it for its `idle_timeout`.
    IdleStopped,
}

impl Event {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Created => "created",
            Event::Updated => "updated",
            Event::Deleted => "deleted",
            Event::StartRequested => "start_requested",
            Event::Ready => "ready",
            Event::StopRequested => "stop_requested",
            Event::Stopped => "stopped",
            Event::Crashed => "crashed",
            Event::Restarted => "restarted",
            Event::Failed => "failed",
            Event::OrphanKilled => "orphan_killed",
            Event::Evicted => "evicted",
            Event::IdleStopped => "idle_stopped",
        }
    }
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// Row id, increasing.
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The instance concerned.
    pub instance: Option<String>,
    /// What happened.
    pub event: String,
    /// Who caused it.
    pub actor: String,
    /// More about it.
    pub detail: Option<String>,
}

impl Db {
    /// Appends one event.
    pub async fn record(
        &self,
        instance: Option<&str>,
        event: Event,
        actor: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        let at_ms = chrono::Utc::now().timestamp_millis();
        let event = event.as_str();
        sqlx::query!(
            "INSERT INTO history (at_ms, instance, event, actor, detail) VALUES (?, ?, ?, ?, ?)",
            at_ms,
            instance,
            event,
            actor,
            detail
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The events of one instance, oldest first.
    pub async fn instance_history(&self, instance: &str) -> Result<Vec<HistoryRow>> {
        let rows = sqlx::query_as!(
            HistoryRow,
            r#"SELECT id as "id!", at_ms, instance, event, actor, detail
               FROM history WHERE instance = ? ORDER BY id"#,
            instance
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }
}
