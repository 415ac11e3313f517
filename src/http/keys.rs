//! `/api/v1/auth/keys...`: create (the secret is in this answer only), list, show, change the
//! policy, revoke; and `/api/v1/auth/whoami`: the caller's own key and what it allows.

use super::extract::{Json, Path};
use super::openapi::ErrorBody;
use super::AppState;
use crate::auth::model::{CreateKey, KeyInfo, KeyKind, UpdateKey};
use crate::auth::policy::{Limits, Priority, RouteClass};
use crate::auth::store::CreatedKey;
use crate::auth::Caller;
use crate::error::Result;
use crate::quota::QuotaUsage;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Serialize;

/// Creates a key: 201 with the key and its token.
#[utoipa::path(post, path = "/api/v1/auth/keys", tag = "Keys", request_body = CreateKey,
    responses((status = 201, description = "Created; `key` is the token, shown this once", body = CreatedKey),
        (status = 400, description = "Invalid request", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CreateKey>,
) -> Result<(StatusCode, axum::Json<CreatedKey>)> {
    let new = body.validate(chrono::Utc::now().timestamp())?;
    let created = state.auth.keys().create(new, &caller.actor).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// Every key, without secrets.
#[utoipa::path(get, path = "/api/v1/auth/keys", tag = "Keys",
    responses((status = 200, description = "Every key, never its secret", body = [KeyInfo])))]
pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Vec<KeyInfo>>> {
    Ok(axum::Json(state.auth.keys().list().await?))
}

/// One key, without its secret.
#[utoipa::path(get, path = "/api/v1/auth/keys/{id}", tag = "Keys", params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, description = "The key", body = KeyInfo),
        (status = 404, description = "No such key", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<KeyInfo>> {
    Ok(axum::Json(state.auth.keys().get(&id).await?))
}

/// Revokes a key: 204; refused from the next request on.
#[utoipa::path(delete, path = "/api/v1/auth/keys/{id}", tag = "Keys", params(("id" = String, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked"),
        (status = 404, description = "No such key", body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.auth.keys().revoke(&id, &caller.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a key's policy (each field given replaces the key's): in force from the next request.
#[utoipa::path(patch, path = "/api/v1/auth/keys/{id}", tag = "Keys", params(("id" = String, Path, description = "The key's id")),
    request_body = UpdateKey,
    responses((status = 200, description = "The key, changed", body = KeyInfo),
        (status = 400, description = "Invalid change", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 409, description = "The key is revoked", body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<UpdateKey>,
) -> Result<axum::Json<KeyInfo>> {
    let key = state.auth.keys().update(&id, body, &caller.actor).await?;
    Ok(axum::Json(key))
}

/// The key a request was made with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhoamiKey {
    /// Public id; `null` for a key from the configuration file.
    pub id: Option<String>,
    /// Label (`config-management-key` or `config-inference-key` for configuration keys).
    pub name: String,
    /// What it is for.
    pub kind: KeyKind,
}

/// `GET /api/v1/auth/whoami`: the caller's key, what it may reach and do, and its limits.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Whoami {
    /// The key presented; `null` when no key is needed (auth is off).
    pub key: Option<WhoamiKey>,
    /// May it use the management API (`/api/v1`), besides inference.
    pub management: bool,
    /// Instance names and `*` patterns it is limited to; `null` = all.
    pub instances: Option<Vec<String>>,
    /// May its requests start a stopped instance on demand.
    pub can_start: bool,
    /// May such a start stop another instance at the running limit.
    pub can_evict: bool,
    /// Route classes it is limited to; `null` = all.
    pub routes: Option<Vec<RouteClass>>,
    /// Queue priority.
    pub priority: Priority,
    /// Limits; `null` = unlimited.
    pub limits: Limits,
    /// Usage against each limit, with what is left and when it resets; `null` without limits
    /// (configuration-file keys, and everyone while auth is off, are unlimited).
    pub usage: Option<QuotaUsage>,
}

/// Tells the caller its own key and policy; any valid key may ask.
#[utoipa::path(get, path = "/api/v1/auth/whoami", tag = "Keys",
    responses((status = 200, description = "The caller's key, scope, policy, limits and usage", body = Whoami)))]
pub async fn whoami(Extension(caller): Extension<Caller>) -> axum::Json<Whoami> {
    let key = caller.kind().map(|kind| WhoamiKey {
        id: caller.actor.key_id.clone(),
        name: caller.actor.name.clone(),
        kind,
    });
    let access = caller.access();
    let policy = &access.policy;
    axum::Json(Whoami {
        key,
        management: caller.is_operator(),
        instances: access.scope.names(),
        can_start: policy.can_start,
        can_evict: policy.can_evict,
        routes: policy.routes.list(),
        priority: policy.priority,
        limits: policy.limits,
        usage: caller.usage(),
    })
}
