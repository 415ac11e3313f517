//! The activity and usage page (operators): the latest requests (key, instance, status, duration,
//! tokens) and the sums per key, per instance and per day over a chosen range, read by the
//! queries behind `/api/v1/activity` and `/api/v1/usage`. The charts are `<meter>` bars: no
//! script and no inline style (the CSP allows neither).

use super::chrome::Chrome;
use super::signed_in::SignedIn;
use super::templates::{render, ActivityLine, ActivityPage, PageError, UsageLine};
use crate::db::activity::{ActivityFilter, UsageFilter, UsageRow};
use crate::http::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

/// Requests listed.
const RECENT: i64 = 50;

/// The ranges offered.
pub const RANGES: &[(&str, &str, i64)] = &[
    ("1h", "Last hour", 3_600_000),
    ("24h", "Last 24 hours", 86_400_000),
    ("7d", "Last 7 days", 7 * 86_400_000),
    ("30d", "Last 30 days", 30 * 86_400_000),
];

/// `?range=`.
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    /// One of [`RANGES`]; default 24h.
    range: Option<String>,
}

/// `GET /activity`.
pub async fn show(
    State(state): State<AppState>,
    viewer: SignedIn,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    viewer.ensure_operator()?;
    // A query that does not parse shows the default range.
    let asked = query.ok().and_then(|Query(q)| q.range);
    let (range, _, span) = RANGES
        .iter()
        .find(|(id, _, _)| Some(*id) == asked.as_deref())
        .copied()
        .unwrap_or(RANGES[1]);
    let until_ms = chrono::Utc::now().timestamp_millis();
    let since_ms = until_ms - span;
    // What the recorder holds in memory is counted too.
    state.activity.flush().await;
    let recent = state
        .db
        .activity(
            &ActivityFilter {
                since_ms: Some(since_ms),
                ..ActivityFilter::default()
            },
            RECENT,
        )
        .await?;
    let sums = |by_key, by_instance, by_day| UsageFilter {
        since_ms,
        until_ms,
        by_key,
        by_instance,
        by_day,
        ..UsageFilter::default()
    };
    let db = &state.db;
    let per_key = lines(db.usage(&sums(true, false, false)).await?, |r| {
        r.key_name.clone().unwrap_or_default()
    });
    let per_instance = lines(db.usage(&sums(false, true, false)).await?, |r| {
        r.instance.clone().unwrap_or_default()
    });
    let per_day = lines(db.usage(&sums(false, false, true)).await?, |r| {
        r.day.clone().unwrap_or_default()
    });
    Ok(render(
        StatusCode::OK,
        &ActivityPage {
            chrome: Chrome::of(&viewer, "activity"),
            range,
            recent: recent.into_iter().map(ActivityLine::from).collect(),
            per_key,
            per_instance,
            per_day,
        },
    ))
}

/// The rows as lines labelled by `label`, each with the largest token count for its bar's scale.
fn lines(rows: Vec<UsageRow>, label: impl Fn(&UsageRow) -> String) -> Vec<UsageLine> {
    let most = rows
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .max()
        .unwrap_or(0)
        .max(1);
    rows.iter()
        .map(|r| UsageLine {
            label: label(r),
            requests: r.requests,
            errors: r.errors,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            scale: most,
        })
        .collect()
}
