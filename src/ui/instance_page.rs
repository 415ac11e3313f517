//! One instance's page: its live row and buttons, its requests and tokens over time (see
//! `usage_chart`), and for operators its definition, the command line it runs, its live log and
//! its history. The log is the API's follow stream
//! (`Supervisor::follow_logs`, as `GET /api/v1/instances/{name}/logs?follow=true`) behind the
//! session; the page's script follows, pauses and searches it.

use super::chrome::Chrome;
use super::rows::{tokens_today, InstanceRow};
use super::signed_in::SignedIn;
use super::templates::{render, HistoryLine, InstancePage, PageError};
use super::usage_chart;
use crate::db::history::HistoryFilter;
use crate::http::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

/// History rows the page shows.
const HISTORY_ROWS: i64 = 50;

/// Log lines the viewer starts with before following.
const LOG_LINES: usize = 500;

/// `GET /instances/{name}`.
pub async fn show(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    viewer.caller.ensure_instance(&name)?;
    let inst = state.supervisor.instance(&name)?;
    state.activity.flush().await;
    let row = InstanceRow::of(&inst, &tokens_today(&state, &viewer.caller).await?);
    let operator = viewer.caller.is_operator();
    let key = usage_chart::scope_of(&viewer.caller);
    let usage_scope = if key.is_some() {
        "Your key's requests only."
    } else {
        "Every key's requests."
    };
    let periods = usage_chart::periods(&state, &name, key, chrono::Utc::now()).await?;
    let (definition, command, history) = if operator {
        let definition = serde_json::to_string_pretty(&inst.spec().redacted())
            .map_err(|e| crate::error::Error::Internal(format!("definition as JSON: {e}")))?;
        let command = state
            .supervisor
            .command_line(&name)?
            .iter()
            .map(|arg| shell_word(arg))
            .collect::<Vec<_>>()
            .join(" ");
        let filter = HistoryFilter {
            instance: Some(name.clone()),
            ..HistoryFilter::default()
        };
        let history = state
            .db
            .history(&filter, HISTORY_ROWS)
            .await?
            .into_iter()
            .map(HistoryLine::from)
            .collect();
        (definition, command, history)
    } else {
        (String::new(), String::new(), Vec::new())
    };
    Ok(render(
        StatusCode::OK,
        &InstancePage {
            chrome: Chrome::of(&viewer, "instances"),
            name,
            rows: vec![row],
            definition,
            command,
            history,
            periods,
            usage_scope,
        },
    ))
}

/// `GET /instances/{name}/log`: the last lines, then each new one, as plain text (operators only,
/// as the API's logs route).
pub async fn log(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    viewer.ensure_operator()?;
    let live = state.supervisor.follow_logs(&name, Some(LOG_LINES)).await?;
    let body = Body::from_stream(live.map(Ok::<_, std::convert::Infallible>));
    let headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
        (HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    Ok((headers, body).into_response())
}

/// `arg` as a POSIX shell would need it to read back the same word.
fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_are_quoted_only_when_a_shell_needs_it() {
        let cases = [
            ("--ctx-size", "--ctx-size"),
            ("/m/a b.gguf", "'/m/a b.gguf'"),
            ("it's", r"'it'\''s'"),
            ("", "''"),
        ];
        for (arg, want) in cases {
            assert_eq!(super::shell_word(arg), want);
        }
    }
}
