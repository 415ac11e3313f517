//! `/api/v1/history` and `/api/v1/instances/{name}/history`: the audit and lifecycle record, newest
//! first, filtered and paged by cursor. An instance's history stays readable after it is deleted.

use super::extract::{Path, Query};
use super::openapi::ErrorBody;
use super::AppState;
use crate::audit::Event;
use crate::db::history::{HistoryFilter, HistoryRow};
use crate::definitions::name;
use crate::error::{Error, Result};
use crate::timestamp;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Events per page unless `limit` says otherwise.
const DEFAULT_LIMIT: i64 = 100;

/// Most events per page.
const MAX_LIMIT: i64 = 1000;

/// Filters and paging; every field optional.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only this instance.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    instance: Option<String>,
    /// Only events by or about this API key id.
    key: Option<String>,
    /// Only this event (`created`, `key_revoked`, ...).
    #[param(value_type = Option<crate::audit::Event>)]
    event: Option<String>,
    /// At or after this time (Unix seconds or RFC 3339).
    since: Option<String>,
    /// At or before this time (Unix seconds or RFC 3339).
    until: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
}

/// One event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// Increasing id.
    id: i64,
    /// RFC 3339, UTC, milliseconds.
    time: String,
    /// Unix milliseconds.
    at_ms: i64,
    /// What happened.
    event: String,
    /// The instance concerned.
    instance: Option<String>,
    /// The API key concerned (created, revoked).
    key_id: Option<String>,
    /// Who caused it: a key's name, a config key, `cli:<user>`, or `system`.
    actor: String,
    /// The id of the API key that caused it.
    actor_key_id: Option<String>,
    /// The address the request came from.
    client_addr: Option<String>,
    /// More about it.
    detail: Option<String>,
}

/// One page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    /// Newest first.
    events: Vec<HistoryEntry>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `GET /api/v1/history`.
#[utoipa::path(get, path = "/api/v1/history", tag = "History", params(HistoryQuery),
    responses((status = 200, description = "Events, newest first", body = HistoryPage),
        (status = 400, description = "Invalid filter or cursor", body = ErrorBody)))]
pub async fn all(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<HistoryPage>> {
    let (filter, limit) = query.into_filter()?;
    page(&state, &filter, limit).await
}

/// `GET /api/v1/instances/{name}/history`; 404 only for a name that never had any.
#[utoipa::path(get, path = "/api/v1/instances/{name}/history", tag = "History",
    params(("name" = String, Path, description = "Instance name"),
        ("key" = Option<String>, Query, description = "Only events by or about this API key id"),
        ("event" = Option<crate::audit::Event>, Query, description = "Only this event"),
        ("since" = Option<String>, Query, description = "At or after this time (Unix seconds or RFC 3339)"),
        ("until" = Option<String>, Query, description = "At or before this time (Unix seconds or RFC 3339)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Events per page, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, pattern = "^[1-9][0-9]{0,17}$", description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "The instance's events, newest first (also after it was deleted)", body = HistoryPage),
        (status = 400, description = "Invalid name, filter or cursor", body = ErrorBody),
        (status = 404, description = "No instance of this name ever had an event", body = ErrorBody)))]
pub async fn instance(
    State(state): State<AppState>,
    Path(instance): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<HistoryPage>> {
    name::validate(&instance)?;
    if query.instance.is_some() {
        return Err(Error::BadRequest(
            "the instance is given by the path; leave out 'instance'".into(),
        ));
    }
    let (mut filter, limit) = query.into_filter()?;
    if state.supervisor.instance(&instance).is_err() && !state.db.has_history(&instance).await? {
        return Err(Error::NotFound(format!(
            "instance '{instance}' not found and has no history"
        )));
    }
    filter.instance = Some(instance);
    page(&state, &filter, limit).await
}

async fn page(
    state: &AppState,
    filter: &HistoryFilter,
    limit: i64,
) -> Result<axum::Json<HistoryPage>> {
    // One row more than asked tells whether another page follows.
    let mut rows = state.db.history(filter, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let events = rows.into_iter().map(HistoryEntry::from).collect();
    Ok(axum::Json(HistoryPage {
        events,
        next_cursor,
    }))
}

impl HistoryQuery {
    /// The database filter and page size; 400 for anything malformed.
    fn into_filter(self) -> Result<(HistoryFilter, i64)> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::BadRequest(format!(
                "limit must be 1 to {MAX_LIMIT}, not {limit}"
            )));
        }
        let event = match self.event.as_deref() {
            None => None,
            Some(text) => Some(
                crate::names::parse::<Event>(text)
                    .map_err(|e| Error::BadRequest(format!("unknown event '{text}': {e}")))?,
            ),
        };
        let before_id = match self.cursor.as_deref() {
            None => None,
            Some(text) => Some(
                text.parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| Error::BadRequest(format!("invalid cursor '{text}'")))?,
            ),
        };
        let millis = |t: Option<String>| -> Result<Option<i64>> {
            t.map(|t| timestamp::parse(&t).map(|at| at.timestamp_millis()))
                .transpose()
        };
        if let Some(instance) = &self.instance {
            name::validate(instance)?;
        }
        let filter = HistoryFilter {
            instance: self.instance,
            key: self.key,
            event,
            since_ms: millis(self.since)?,
            until_ms: millis(self.until)?,
            before_id,
        };
        Ok((filter, limit))
    }
}

impl From<HistoryRow> for HistoryEntry {
    fn from(row: HistoryRow) -> Self {
        let time = timestamp::format_millis(row.at_ms);
        HistoryEntry {
            id: row.id,
            time,
            at_ms: row.at_ms,
            event: row.event,
            instance: row.instance,
            key_id: row.key_id,
            actor: row.actor,
            actor_key_id: row.actor_key_id,
            client_addr: row.client_addr,
            detail: row.detail,
        }
    }
}
