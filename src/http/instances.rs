//! `/api/v1/instances...`: definitions, lifecycle operations and logs.

use super::extract::{Json, Path, Query};
use super::AppState;
use crate::auth::Caller;
use crate::definitions::{InstanceSpec, SpecPatch};
use crate::error::{Error, Result};
use crate::supervisor::{Handle, Status};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An instance as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// Unique name.
    pub name: String,
    /// Lifecycle status.
    pub status: Status,
    /// Unix seconds.
    pub created: i64,
    /// Port of the running backend, or the fixed port of a stopped one.
    pub port: Option<u16>,
    /// PID of the backend process, while there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The definition, with secret-looking values hidden.
    pub options: InstanceSpec,
    /// Restarts in a row after crashes.
    pub restarts: u32,
    /// Why the last start or run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl InstanceView {
    /// The view of a running instance's handle.
    pub fn of(inst: &Handle) -> Self {
        let state = inst.snapshot();
        let options = inst.spec().redacted();
        InstanceView {
            name: inst.name.clone(),
            status: state.status,
            created: inst.created,
            port: state.port.or(options.port),
            pid: state.pid,
            options,
            restarts: state.restarts,
            last_error: state.last_error,
        }
    }
}

/// All instances.
pub async fn list(State(state): State<AppState>) -> axum::Json<Vec<InstanceView>> {
    let all = state.supervisor.list();
    axum::Json(all.iter().map(|inst| InstanceView::of(inst)).collect())
}

/// One instance.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    let inst = state.supervisor.instance(&name)?;
    Ok(axum::Json(InstanceView::of(&inst)))
}

/// Creates and starts an instance: 201.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Result<(StatusCode, axum::Json<InstanceView>)> {
    let patch = SpecPatch::from_body(body)?;
    let inst = state.supervisor.create(&name, patch, &caller.actor).await?;
    Ok((StatusCode::CREATED, axum::Json(InstanceView::of(&inst))))
}

/// Changes an instance's definition.
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Result<axum::Json<InstanceView>> {
    let patch = SpecPatch::from_body(body)?;
    let inst = state.supervisor.update(&name, patch, &caller.actor).await?;
    Ok(axum::Json(InstanceView::of(&inst)))
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
    let inst = state.supervisor.start(&name, &caller.actor).await?;
    Ok(axum::Json(InstanceView::of(&inst)))
}

/// Stops an instance.
pub async fn stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    let inst = state.supervisor.stop(&name, &caller.actor).await?;
    Ok(axum::Json(InstanceView::of(&inst)))
}

/// Restarts an instance.
pub async fn restart(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    let inst = state.supervisor.restart(&name, &caller.actor).await?;
    Ok(axum::Json(InstanceView::of(&inst)))
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
