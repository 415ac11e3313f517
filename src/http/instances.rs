//! `/api/v1/instances...`: definitions, lifecycle operations and logs.

use super::extract::{Json, Path, Query};
use super::openapi::{ErrorBody, InstanceBody};
use super::AppState;
use crate::auth::Caller;
use crate::definitions::{InstanceSpec, SpecPatch};
use crate::error::{Error, Result};
use crate::supervisor::{Handle, Status};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::IntoParams;

/// An instance as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
#[utoipa::path(get, path = "/api/v1/instances", tag = "Instances",
    responses((status = 200, description = "All instances", body = [InstanceView])))]
pub async fn list(State(state): State<AppState>) -> axum::Json<Vec<InstanceView>> {
    let all = state.supervisor.list();
    axum::Json(all.iter().map(|inst| InstanceView::of(inst)).collect())
}

/// One instance.
#[utoipa::path(get, path = "/api/v1/instances/{name}", tag = "Instances", params(("name" = String, Path, description = "Instance name: 1-64 of A-Z a-z 0-9 . _ -, not . or ..")),
    responses((status = 200, description = "The instance", body = InstanceView),
        (status = 404, description = "No such instance", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    let inst = state.supervisor.instance(&name)?;
    Ok(axum::Json(InstanceView::of(&inst)))
}

/// Creates and starts an instance: 201.
#[utoipa::path(post, path = "/api/v1/instances/{name}", tag = "Instances", params(("name" = String, Path, description = "Instance name: 1-64 of A-Z a-z 0-9 . _ -, not . or ..")),
    request_body(content = InstanceBody, description = "The definition, flat or structured"),
    responses((status = 201, description = "Created; it starts unless it failed at once", body = InstanceView),
        (status = 400, description = "Invalid name or definition", body = ErrorBody),
        (status = 409, description = "An instance of this name exists, or max_instances or max_running_instances is reached", body = ErrorBody),
        (status = 500, description = "The backend could not be spawned; the definition is kept, status failed", body = ErrorBody)))]
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
#[utoipa::path(put, path = "/api/v1/instances/{name}", tag = "Instances", params(("name" = String, Path, description = "Instance name: 1-64 of A-Z a-z 0-9 . _ -, not . or ..")),
    request_body(content = InstanceBody, description = "Given fields replace; the rest stay. A running instance restarts."),
    responses((status = 200, description = "Updated", body = InstanceView),
        (status = 400, description = "Invalid definition", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "The change conflicts with the stored definition, or the changed instance cannot be restarted (a limit, a port)", body = ErrorBody),
        (status = 500, description = "The running instance could not be restarted with the new definition (it keeps running as it was)", body = ErrorBody),
        (status = 503, description = "The instance is being removed, or the server is shutting down", body = ErrorBody)))]
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
#[utoipa::path(delete, path = "/api/v1/instances/{name}", tag = "Instances", params(("name" = String, Path, description = "Instance name: 1-64 of A-Z a-z 0-9 . _ -, not . or ..")),
    responses((status = 204, description = "Stopped and removed"),
        (status = 404, description = "No such instance", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    state.supervisor.delete(&name, &caller.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts an instance.
#[utoipa::path(post, path = "/api/v1/instances/{name}/start", tag = "Instances", params(("name" = String, Path, description = "Instance name: 1-64 of A-Z a-z 0-9 . _ -, not . or ..")),
    responses((status = 200, description = "Starting (or already running)", body = InstanceView),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "max_running_instances is reached and nothing can be evicted", body = ErrorBody),
        (status = 500, description = "The backend could not be spawned", body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    let inst = state.supervisor.start(&name, &caller.actor).await?;
    Ok(axum::Json(InstanceView::of(&inst)))
}

/// Stops an instance.
#[utoipa::path(post, path = "/api/v1/instances/{name}/stop", tag = "Instances", params(("name" = String, Path, description = "Instance name: 1-64 of A-Z a-z 0-9 . _ -, not . or ..")),
    responses((status = 200, description = "Stopping (or already stopped)", body = InstanceView),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "max_running_instances is reached and nothing can be evicted", body = ErrorBody),
        (status = 500, description = "The backend could not be spawned", body = ErrorBody)))]
pub async fn stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    let inst = state.supervisor.stop(&name, &caller.actor).await?;
    Ok(axum::Json(InstanceView::of(&inst)))
}

/// Restarts an instance.
#[utoipa::path(post, path = "/api/v1/instances/{name}/restart", tag = "Instances", params(("name" = String, Path, description = "Instance name: 1-64 of A-Z a-z 0-9 . _ -, not . or ..")),
    responses((status = 200, description = "Restarting", body = InstanceView),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "max_running_instances is reached and nothing can be evicted", body = ErrorBody),
        (status = 500, description = "The backend could not be spawned", body = ErrorBody)))]
pub async fn restart(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<InstanceView>> {
    let inst = state.supervisor.restart(&name, &caller.actor).await?;
    Ok(axum::Json(InstanceView::of(&inst)))
}

/// `?lines=N`: the last N lines; absent or -1 means all. `?follow=true`: then what is written.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// The last N lines; -1 or absent: all.
    #[param(minimum = -1)]
    lines: Option<i64>,
    /// `true`: after the last lines, keep the answer open and stream new lines as they are
    /// written (across restarts and rotation), until the client leaves, the instance is deleted or
    /// the server shuts down.
    follow: Option<bool>,
}

/// An instance's log as plain text: its last lines, and with `follow=true` what is written next.
#[utoipa::path(get, path = "/api/v1/instances/{name}/logs", tag = "Instances", params(("name" = String, Path, description = "Instance name: 1-64 of A-Z a-z 0-9 . _ -, not . or .."), LogsQuery),
    responses((status = 200, description = "The log's last lines; with `follow=true`, then each new line as it is written (a reader that fell behind gets `=== llamactl: N chunks skipped: this reader fell behind ===`)", body = String, content_type = "text/plain"),
        (status = 400, description = "Invalid lines or follow", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 503, description = "With follow: the instance is being removed, or the server is shutting down", body = ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Response> {
    let lines = match query.lines {
        None | Some(-1) => None,
        Some(n) if n >= 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => {
            return Err(Error::BadRequest(format!(
                "lines must be -1 (all) or a number of lines, not {n}"
            )))
        }
    };
    if query.follow != Some(true) {
        return Ok(state.supervisor.logs(&name, lines).await?.into_response());
    }
    let live = state.supervisor.follow_logs(&name, lines).await?;
    let body = Body::from_stream(live.map(Ok::<_, std::convert::Infallible>));
    let headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
        // A buffering proxy in front (nginx) would hold the lines back.
        (HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    Ok((headers, body).into_response())
}
