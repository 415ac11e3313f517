//! `/v1/*`: the OpenAI-compatible API (model list, and every `POST` routed by `model`).

use super::forward::{self, Start};
use super::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, Request, Response};
use axum::Extension;
use serde::Serialize;

/// `GET /v1/models`, in OpenAI's list format.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// Always `list`.
    #[schema(value_type = String)]
    pub object: &'static str,
    /// One entry per instance.
    pub data: Vec<Model>,
}

/// One model: an instance, by name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Model {
    /// The instance name, which requests put in `model`.
    pub id: String,
    /// Always `model`.
    #[schema(value_type = String)]
    pub object: &'static str,
    /// Unix seconds the instance was created.
    pub created: i64,
    /// Always `llamactl`.
    #[schema(value_type = String)]
    pub owned_by: &'static str,
}

/// `GET /v1/models`: the instances this key may use.
#[utoipa::path(get, path = "/v1/models", tag = "OpenAI",
    responses((status = 200, description = "The instances this key may use, as models", body = ModelList)))]
pub async fn models(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> axum::Json<ModelList> {
    let mut instances = state.supervisor.list();
    caller.retain_allowed(&mut instances, |inst| &inst.name);
    let data = instances
        .into_iter()
        .map(|inst| Model {
            id: inst.name.clone(),
            object: "model",
            created: inst.created,
            owned_by: "llamactl",
        })
        .collect();
    axum::Json(ModelList {
        object: "list",
        data,
    })
}

/// `POST /v1/*`: forwarded to the instance named by `model`, started on demand.
pub async fn forward(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    mut parts: Parts,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response<Body>> {
    let body = body?;
    let model = forward::routed_model(&body).await?;
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    // The body is complete already; a backend must not wait to invite it.
    parts.headers.remove(header::EXPECT);
    let req = Request::from_parts(parts, Body::from(body));
    forward::forward(&state, caller, &model, Start::OnDemand, target, req)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!("model '{model}' not found")),
            other => other,
        })
}
