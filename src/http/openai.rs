//! `/v1/*`: the OpenAI-compatible API (model list, and every `POST` routed by `model`).

use super::AppState;
use crate::auth::Caller;
use crate::error::Result;
use crate::openai::{self, ModelList};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::Response;
use axum::Extension;

/// `GET /v1/models`: the instances this key may use.
pub async fn models(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> axum::Json<ModelList> {
    axum::Json(openai::models(&state.supervisor, &caller))
}

/// `POST /v1/*`: forwarded to the instance named by `model`, started on demand.
pub async fn forward(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    parts: Parts,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response<Body>> {
    openai::forward(&state.supervisor, &state.upstream, &caller, parts, body?).await
}
