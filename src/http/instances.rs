//! `/api/v1/instances...`: definitions, lifecycle operations and logs.

use super::extract::{Json, Path, Query};
use super::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::supervisor::InstanceView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use serde_json::{Map, Value};

/// All instances.
pub async fn list(State(state): State<AppState>) -> axum::Json<Vec<InstanceView>> {
    axum::Json(state.supervisor.list())
}

/// One instance.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    Ok(axum::Json(state.supervisor.get(&name)?))
}

/// Creates and starts an instance: 201.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Result<(StatusCode, axum::Json<InstanceView>)> {
    let view = state.supervisor.create(&name, body, &caller.actor).await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// Changes an instance's definition.
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Result<axum::Json<InstanceView>> {
    Ok(axum::Json(
        state.supervisor.update(&name, body, &caller.actor).await?,
    ))
}

/// Stops and removes an instance: 204.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    state.supervisor.delete(&name, &caller.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts an instance.
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    Ok(axum::Json(
        state.supervisor.start(&name, &caller.actor).await?,
    ))
}

/// Stops an instance.
pub async fn stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    Ok(axum::Json(
        state.supervisor.stop(&name, &caller.actor).await?,
    ))
}

/// Restarts an instance.
pub async fn restart(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    Ok(axum::Json(
        state.supervisor.restart(&name, &caller.actor).await?,
    ))
}

/// `?lines=N`: the last N lines; absent or -1 means all.
#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    lines: Option<i64>,
}

/// An instance's log as plain text.
pub async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<String> {
    let lines = match query.lines {
        None | Some(-1) => None,
        Some(n) if n >= 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => {
            return Err(Error::BadRequest(format!(
                "lines must be -1 (all) or a number of lines, not {n}"
            )))
        }
    };
    state.supervisor.logs(&name, lines).await
}
