//! `/api/v1/auth/keys...`: create (the secret is in this answer only), list, show, revoke.

use super::extract::{Json, Path};
use super::openapi::ErrorBody;
use super::AppState;
use crate::auth::model::{CreateKey, KeyInfo};
use crate::auth::store::CreatedKey;
use crate::auth::Caller;
use crate::error::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;

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
