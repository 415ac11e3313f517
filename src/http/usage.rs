//! `/api/v1/usage`: requests, errors and tokens over a time range, summed by the database per key,
//! instance and UTC day (any of them), with a grand total.

use super::activity::millis;
use super::extract::Query;
use super::openapi::ErrorBody;
use super::AppState;
use crate::db::activity::{UsageFilter, UsageRow};
use crate::error::{Error, Result};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The range summed when `since` is not given: this long before `until`.
const DEFAULT_RANGE_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// What usage can be split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// The API key (id and name).
    Key,
    /// The instance.
    Instance,
    /// The UTC day.
    Day,
}

/// The range and the grouping; every field optional.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// From this time (Unix seconds or RFC 3339); default 30 days before `until`. A `since` after
    /// `until` is an empty range.
    since: Option<String>,
    /// To this time (Unix seconds or RFC 3339); default now.
    until: Option<String>,
    /// Comma-separated: any of `key`, `instance`, `day` (default all three; empty for the total only).
    #[param(
        example = "key,instance,day",
        pattern = "^((key|instance|day)(,(key|instance|day))*)?$"
    )]
    group_by: Option<String>,
}

/// Requests and tokens, summed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Totals {
    /// Requests made.
    requests: i64,
    /// Requests answered with a status of 400 or more.
    errors: i64,
    /// Prompt tokens the backends reported.
    prompt_tokens: i64,
    /// Completion tokens the backends reported.
    completion_tokens: i64,
}

/// An API key as usage names it.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRef {
    /// The stored key's id; `null` for a config-file key or with auth off.
    id: Option<String>,
    /// The key's name (`config-inference-key`, ... for the others).
    name: String,
}

/// The sums for one group; only the fields grouped by are present.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageGroup {
    /// The key (with `group_by` including `key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<KeyRef>,
    /// The instance (with `group_by` including `instance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    /// The UTC day, `YYYY-MM-DD` (with `group_by` including `day`).
    #[serde(skip_serializing_if = "Option::is_none")]
    day: Option<String>,
    /// Requests made.
    requests: i64,
    /// Requests answered with a status of 400 or more.
    errors: i64,
    /// Prompt tokens the backends reported.
    prompt_tokens: i64,
    /// Completion tokens the backends reported.
    completion_tokens: i64,
}

/// Usage over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    /// Start of the range (RFC 3339, UTC, milliseconds), inclusive.
    since: String,
    /// End of the range, inclusive.
    until: String,
    /// What the groups are split by.
    group_by: Vec<Grouping>,
    /// One entry per combination that had requests, by day, then instance, then key.
    groups: Vec<UsageGroup>,
    /// Everything in the range.
    total: Totals,
}

/// `GET /api/v1/usage`.
#[utoipa::path(get, path = "/api/v1/usage", tag = "Activity", params(UsageQuery),
    responses((status = 200, description = "Requests and tokens in the range, grouped, with a total", body = Usage),
        (status = 400, description = "Invalid range or grouping", body = ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    Query(query): Query<UsageQuery>,
) -> Result<axum::Json<Usage>> {
    let (filter, group_by) = query.into_filter(chrono::Utc::now().timestamp_millis())?;
    state.activity.flush().await;
    let rows = state.db.usage(&filter).await?;
    let mut total = Totals::default();
    for row in &rows {
        total.requests += row.requests;
        total.errors += row.errors;
        total.prompt_tokens += row.prompt_tokens;
        total.completion_tokens += row.completion_tokens;
    }
    Ok(axum::Json(Usage {
        since: rfc3339(filter.since_ms),
        until: rfc3339(filter.until_ms),
        group_by,
        groups: rows.into_iter().map(UsageGroup::from).collect(),
        total,
    }))
}

impl UsageQuery {
    /// The database query and the grouping as asked; 400 for anything malformed.
    fn into_filter(self, now_ms: i64) -> Result<(UsageFilter, Vec<Grouping>)> {
        let until_ms = millis(self.until)?.unwrap_or(now_ms);
        let since_ms = millis(self.since)?.unwrap_or(until_ms.saturating_sub(DEFAULT_RANGE_MS));
        let group_by = match self.group_by.as_deref() {
            None => vec![Grouping::Key, Grouping::Instance, Grouping::Day],
            Some(text) => parse_grouping(text)?,
        };
        let filter = UsageFilter {
            since_ms,
            until_ms,
            by_key: group_by.contains(&Grouping::Key),
            by_instance: group_by.contains(&Grouping::Instance),
            by_day: group_by.contains(&Grouping::Day),
            ..UsageFilter::default()
        };
        Ok((filter, group_by))
    }
}

/// `key,day` → [Key, Day]; repeats are kept once; empty means no grouping.
fn parse_grouping(text: &str) -> Result<Vec<Grouping>> {
    let mut groups = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let group = crate::names::parse::<Grouping>(part)
            .map_err(|e| Error::BadRequest(format!("cannot group by '{part}': {e}")))?;
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    Ok(groups)
}

fn rfc3339(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl From<UsageRow> for UsageGroup {
    fn from(row: UsageRow) -> Self {
        UsageGroup {
            key: row.key_name.map(|name| KeyRef {
                id: row.key_id,
                name,
            }),
            instance: row.instance,
            day: row.day,
            requests: row.requests,
            errors: row.errors,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(since: Option<&str>, until: Option<&str>, group_by: Option<&str>) -> UsageQuery {
        UsageQuery {
            since: since.map(String::from),
            until: until.map(String::from),
            group_by: group_by.map(String::from),
        }
    }

    #[test]
    fn the_default_range_is_the_last_30_days_grouped_by_everything() {
        let now = 1_800_000_000_000;
        let (filter, group_by) = query(None, None, None).into_filter(now).unwrap();
        assert_eq!(filter.until_ms, now);
        assert_eq!(filter.since_ms, now - 30 * 86_400_000);
        assert_eq!(group_by, [Grouping::Key, Grouping::Instance, Grouping::Day]);
        assert!(filter.by_key && filter.by_instance && filter.by_day);
        let (filter, _) = query(None, Some("1000"), None).into_filter(now).unwrap();
        assert_eq!(
            filter.since_ms,
            1_000_000 - 30 * 86_400_000,
            "30 days before until"
        );
    }

    #[test]
    fn grouping_is_any_subset_and_unknown_names_are_refused() {
        let now = 1_800_000_000_000;
        let (filter, group_by) = query(None, None, Some("day, key,day"))
            .into_filter(now)
            .unwrap();
        assert_eq!(group_by, [Grouping::Day, Grouping::Key]);
        assert!(filter.by_key && !filter.by_instance && filter.by_day);
        let (filter, group_by) = query(None, None, Some("")).into_filter(now).unwrap();
        assert!(group_by.is_empty());
        assert!(!filter.by_key && !filter.by_instance && !filter.by_day);
        for (since, until, group_by) in [
            (None, None, Some("model")),
            (Some("yesterday"), None, None),
            (None, Some("2030-13-01T00:00:00Z"), None),
        ] {
            let err = query(since, until, group_by).into_filter(now).unwrap_err();
            assert_eq!(
                err.status().as_u16(),
                400,
                "{since:?} {until:?} {group_by:?}"
            );
        }
    }
}
