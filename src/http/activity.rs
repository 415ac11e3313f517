//! `/api/v1/activity`: the record of inference requests, newest first, filtered and paged by
//! cursor. What is still queued for the database is written first, so a page shows every request
//! that has finished.

use super::extract::Query;
use super::openapi::ErrorBody;
use super::AppState;
use crate::activity::Route;
use crate::db::activity::{ActivityFilter, ActivityRow};
use crate::definitions::name;
use crate::error::{Error, Result};
use crate::timestamp;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Records per page unless `limit` says otherwise.
const DEFAULT_LIMIT: i64 = 100;

/// Most records per page.
const MAX_LIMIT: i64 = 1000;

/// Filters and paging; every field optional.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    /// Only requests to this instance.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    instance: Option<String>,
    /// Only requests made with this API key id.
    key: Option<String>,
    /// Only this kind of request (`chat_completions`, `embeddings`, ...).
    #[param(value_type = Option<Route>)]
    route: Option<String>,
    /// Only requests answered with this status.
    #[param(minimum = 100, maximum = 599)]
    status: Option<u16>,
    /// At or after this time (Unix seconds or RFC 3339).
    since: Option<String>,
    /// At or before this time (Unix seconds or RFC 3339).
    until: Option<String>,
    /// Records per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^-?[0-9]{1,18}_[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
}

/// One inference request as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityEntry {
    /// Increasing in the order records were written.
    id: i64,
    /// When it arrived: RFC 3339, UTC, milliseconds.
    time: String,
    /// When it arrived: Unix milliseconds.
    at_ms: i64,
    /// The API key that made it (`null` for a config-file key, or with auth off).
    key_id: Option<String>,
    /// The caller's name: the key's name, `config-inference-key`, ...
    key_name: String,
    /// The instance it went to.
    instance: String,
    /// What kind of request it was.
    #[schema(value_type = Route)]
    route: String,
    /// The status the client got.
    status: i64,
    /// Milliseconds from arrival to the last byte sent (or to the client leaving).
    duration_ms: i64,
    /// Milliseconds from arrival to the answer's head (`null` if none was sent).
    ttfb_ms: Option<i64>,
    /// Prompt tokens, as the backend reported them (`null` when it did not).
    prompt_tokens: Option<i64>,
    /// Completion tokens, likewise.
    completion_tokens: Option<i64>,
    /// Whether the answer was streamed (server-sent events).
    streamed: bool,
    /// The client's address.
    client_addr: Option<String>,
}

/// One page of records.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityPage {
    /// Newest first (by arrival).
    records: Vec<ActivityEntry>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `GET /api/v1/activity`.
#[utoipa::path(get, path = "/api/v1/activity", tag = "Activity", params(ActivityQuery),
    responses((status = 200, description = "Inference requests, newest first", body = ActivityPage),
        (status = 400, description = "Invalid filter or cursor", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ActivityQuery>,
) -> Result<axum::Json<ActivityPage>> {
    let (filter, limit) = query.into_filter()?;
    state.activity.flush().await;
    // One row more than asked tells whether another page follows.
    let mut rows = state.db.activity(&filter, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more
        .then(|| rows.last().map(|r| format!("{}_{}", r.at_ms, r.id)))
        .flatten();
    let records = rows.into_iter().map(ActivityEntry::from).collect();
    Ok(axum::Json(ActivityPage {
        records,
        next_cursor,
    }))
}

impl ActivityQuery {
    /// The database filter and page size; 400 for anything malformed.
    fn into_filter(self) -> Result<(ActivityFilter, i64)> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::BadRequest(format!(
                "limit must be 1 to {MAX_LIMIT}, not {limit}"
            )));
        }
        let route = match self.route.as_deref() {
            None => None,
            Some(text) => Some(
                crate::names::parse::<Route>(text)
                    .map_err(|e| Error::BadRequest(format!("unknown route '{text}': {e}")))?,
            ),
        };
        if let Some(status) = self.status.filter(|s| !(100..=599).contains(s)) {
            return Err(Error::BadRequest(format!(
                "status must be 100 to 599, not {status}"
            )));
        }
        let before = match self.cursor.as_deref() {
            None => None,
            Some(text) => Some(parse_cursor(text)?),
        };
        if let Some(instance) = &self.instance {
            name::validate(instance)?;
        }
        let filter = ActivityFilter {
            instance: self.instance,
            key: self.key,
            route,
            status: self.status,
            since_ms: millis(self.since)?,
            until_ms: millis(self.until)?,
            before,
        };
        Ok((filter, limit))
    }
}

/// A time filter as Unix milliseconds.
pub(super) fn millis(text: Option<String>) -> Result<Option<i64>> {
    text.map(|t| timestamp::parse(&t).map(|at| at.timestamp_millis()))
        .transpose()
}

/// `<at_ms>_<id>`, as `next_cursor` gives it: the last record of the previous page.
fn parse_cursor(text: &str) -> Result<(i64, i64)> {
    text.split_once('_')
        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.parse::<i64>().ok()?)))
        .filter(|(_, id)| *id > 0)
        .ok_or_else(|| Error::BadRequest(format!("invalid cursor '{text}'")))
}

impl From<ActivityRow> for ActivityEntry {
    fn from(row: ActivityRow) -> Self {
        let time = chrono::DateTime::from_timestamp_millis(row.at_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        ActivityEntry {
            id: row.id,
            time,
            at_ms: row.at_ms,
            key_id: row.key_id,
            key_name: row.key_name,
            instance: row.instance,
            route: row.route,
            status: row.status,
            duration_ms: row.duration_ms,
            ttfb_ms: row.ttfb_ms,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            streamed: row.streamed,
            client_addr: row.client_addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn cursors_are_the_time_and_id_of_the_last_record() {
        assert_eq!(
            parse_cursor("1700000000000_42").unwrap(),
            (1_700_000_000_000, 42)
        );
        for bad in [
            "",
            "42",
            "_42",
            "1_0",
            "1_-3",
            "x_1",
            "1_2_3",
            "1_99999999999999999999",
        ] {
            assert_eq!(
                parse_cursor(bad).unwrap_err().status().as_u16(),
                400,
                "{bad}"
            );
        }
    }
}
