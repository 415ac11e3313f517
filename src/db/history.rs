//! The `history` table: one row per lifecycle or management event, kept after the instance (or key)
//! is gone, and bounded in size by `history.max_events`.

use super::{Db, OnDb};
use crate::audit::{Actor, Event};
use crate::error::Result;
use crate::events::LiveEvent;
use crate::names;
use std::sync::Arc;

/// One stored event.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// Row id, increasing; also the pagination cursor.
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The instance concerned.
    pub instance: Option<String>,
    /// The API key concerned (created, revoked).
    pub key_id: Option<String>,
    /// What happened.
    pub event: String,
    /// Who caused it.
    pub actor: String,
    /// The API key that caused it.
    pub actor_key_id: Option<String>,
    /// The address the request came from.
    pub client_addr: Option<String>,
    /// More about it.
    pub detail: Option<String>,
}

/// Which events to read: every field narrows the result; `before_id` pages backwards.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Only this instance.
    pub instance: Option<String>,
    /// Only events by or about this API key.
    pub key: Option<String>,
    /// Only this event.
    pub event: Option<Event>,
    /// At or after this Unix millisecond.
    pub since_ms: Option<i64>,
    /// At or before this Unix millisecond.
    pub until_ms: Option<i64>,
    /// Only rows older than this id (the previous page's cursor).
    pub before_id: Option<i64>,
}

/// What an event is about.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// The instance concerned.
    pub instance: Option<&'a str>,
    /// The API key concerned.
    pub key_id: Option<&'a str>,
}

impl Db {
    /// Appends one event about an instance.
    pub async fn record(
        &self,
        instance: Option<&str>,
        event: Event,
        actor: &Actor,
        detail: Option<&str>,
    ) -> Result<()> {
        let subject = Subject {
            instance,
            key_id: None,
        };
        self.record_event(subject, event, actor, detail).await
    }

    /// Appends one event, then drops the oldest beyond the retention bound.
    pub async fn record_event(
        &self,
        subject: Subject<'_>,
        event: Event,
        actor: &Actor,
        detail: Option<&str>,
    ) -> Result<()> {
        let at_ms = chrono::Utc::now().timestamp_millis();
        let event = names::name_of(&event);
        let addr = actor.addr.map(|a| a.to_string());
        let id = sqlx::query_scalar!(
            r#"INSERT INTO history (at_ms, instance, key_id, event, actor, actor_key_id, client_addr, detail)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id as "id!""#,
            at_ms,
            subject.instance,
            subject.key_id,
            event,
            actor.name,
            actor.key_id,
            addr,
            detail
        )
        .fetch_one(self.pool())
        .await.on(self)?;
        self.events()
            .publish(LiveEvent::History(Arc::new(HistoryRow {
                id,
                at_ms,
                instance: subject.instance.map(str::to_string),
                key_id: subject.key_id.map(str::to_string),
                event: event.to_string(),
                actor: actor.name.clone(),
                actor_key_id: actor.key_id.clone(),
                client_addr: addr,
                detail: detail.map(str::to_string),
            })));
        // Rows are only ever deleted oldest-first, so this keeps at most (in practice exactly)
        // `max_events` rows; the delete is a primary-key range scan, usually of one row.
        let cutoff = id - self.history_limit();
        if cutoff > 0 {
            sqlx::query!("DELETE FROM history WHERE id <= ?", cutoff)
                .execute(self.pool())
                .await
                .on(self)?;
        }
        Ok(())
    }

    /// Events matching `filter`, newest first, at most `limit`.
    pub async fn history(&self, filter: &HistoryFilter, limit: i64) -> Result<Vec<HistoryRow>> {
        let event = filter.event.as_ref().map(names::name_of);
        let rows = sqlx::query_as!(
            HistoryRow,
            r#"SELECT id as "id!", at_ms, instance, key_id, event, actor, actor_key_id, client_addr, detail
               FROM history
               WHERE (?1 IS NULL OR instance = ?1)
                 AND (?2 IS NULL OR key_id = ?2 OR actor_key_id = ?2)
                 AND (?3 IS NULL OR event = ?3)
                 AND (?4 IS NULL OR at_ms >= ?4)
                 AND (?5 IS NULL OR at_ms <= ?5)
                 AND (?6 IS NULL OR id < ?6)
               ORDER BY id DESC
               LIMIT ?7"#,
            filter.instance,
            filter.key,
            event,
            filter.since_ms,
            filter.until_ms,
            filter.before_id,
            limit
        )
        .fetch_all(self.pool())
        .await.on(self)?;
        Ok(rows)
    }

    /// True if any event was ever recorded for this instance (it may be deleted since).
    pub async fn has_history(&self, instance: &str) -> Result<bool> {
        let found = sqlx::query_scalar!(
            r#"SELECT EXISTS(SELECT 1 FROM history WHERE instance = ?) as "found!: bool""#,
            instance
        )
        .fetch_one(self.pool())
        .await
        .on(self)?;
        Ok(found)
    }
}
