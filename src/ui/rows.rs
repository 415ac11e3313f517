//! One instance as a row of the dashboard's table: what the API's view says, plus what only the
//! runtime knows (requests in flight, when it was last used, when its process started).

use crate::auth::Caller;
use crate::db::activity::UsageFilter;
use crate::error::Result;
use crate::http::AppState;
use crate::supervisor::Handle;
use std::collections::HashMap;

/// Tokens each instance served since midnight UTC, as `/api/v1/usage?group_by=instance` sums them
/// (what the activity recorder still holds in memory counts at its next flush): every key's for an
/// operator, only the viewer's own key's for an inference key, as on the instance's charts.
pub async fn tokens_today(state: &AppState, viewer: &Caller) -> Result<HashMap<String, i64>> {
    let now = chrono::Utc::now();
    let midnight = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now.timestamp_millis(), |t| t.and_utc().timestamp_millis());
    let rows = state
        .db
        .usage(&UsageFilter {
            since_ms: midnight,
            until_ms: now.timestamp_millis(),
            by_key: false,
            by_instance: true,
            by_day: false,
            key: super::usage_chart::scope_of(viewer),
            ..UsageFilter::default()
        })
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.instance?, r.prompt_tokens + r.completion_tokens)))
        .collect())
}

/// A table row.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    /// Instance name (also the row's id: names are `[A-Za-z0-9._-]`).
    pub name: String,
    /// Lifecycle status.
    pub status: String,
    /// Port of the running backend, or the fixed port of a stopped one.
    pub port: Option<u16>,
    /// PID of the backend, while there is one.
    pub pid: Option<u32>,
    /// Unix seconds when the backend process started, while there is one.
    pub started_at: Option<i64>,
    /// Restarts in a row after crashes.
    pub restarts: u32,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Unix seconds of the last request (or start).
    pub last_used_at: i64,
    /// Why the last start or run failed.
    pub last_error: Option<String>,
    /// Prompt and completion tokens since midnight UTC.
    pub tokens_today: i64,
    /// Holds (or is about to hold) a process: offer stop and restart rather than start.
    pub active: bool,
}

impl InstanceRow {
    /// The row of an instance now, with `tokens_today` from [`tokens_today`].
    pub fn of(inst: &Handle, tokens_today: &HashMap<String, i64>) -> InstanceRow {
        let state = inst.snapshot();
        let now = chrono::Utc::now().timestamp();
        let idle = i64::try_from(inst.idle_for().as_secs()).unwrap_or(i64::MAX);
        InstanceRow {
            name: inst.name.clone(),
            status: crate::names::name_of(&state.status),
            port: state.port.or(inst.spec().port),
            pid: state.pid,
            started_at: state
                .pid
                .and_then(crate::metrics::started_at)
                .map(|at| at as i64),
            restarts: state.restarts,
            in_flight: inst.in_flight(),
            last_used_at: now.saturating_sub(idle),
            last_error: state.last_error,
            tokens_today: tokens_today.get(&inst.name).copied().unwrap_or(0),
            active: state.status.is_active(),
        }
    }

    /// How long its process has run, in words, at render time (the page's script keeps it going).
    pub fn uptime(&self) -> String {
        self.started_at
            .map(|at| ago(chrono::Utc::now().timestamp() - at))
            .unwrap_or_default()
    }

    /// How long ago it was last used, in words.
    pub fn idle(&self) -> String {
        ago(chrono::Utc::now().timestamp() - self.last_used_at)
    }
}

/// `secs` as the page shows a span: `42s`, `3m 4s`, `2h 5m`, `3d 4h`.
pub fn ago(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans_read_as_the_script_writes_them() {
        let cases = [
            (-3, "0s"),
            (42, "42s"),
            (184, "3m 4s"),
            (7500, "2h 5m"),
            (273_600, "3d 4h"),
        ];
        for (secs, want) in cases {
            assert_eq!(super::ago(secs), want);
        }
    }
}
