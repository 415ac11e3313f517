//! The chat playground on an instance's page: the page's script posts the conversation here and
//! reads the streamed answer. The request goes the way a `/v1/chat/completions` request does
//! (`http::forward`, with the session's caller: its instances, its route classes, its right to
//! start the instance), so it is authorised, metered and recorded as one.

use super::signed_in::SignedIn;
use crate::error::{Error, Result};
use crate::http::forward::{forward, Start};
use crate::http::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Request, Response};
use serde_json::{Map, Value};

/// Largest conversation the playground sends.
const BODY_LIMIT: usize = 1024 * 1024;

/// `POST /instances/{name}/chat`: a chat completion request body (JSON, `X-CSRF-Token` header);
/// its `model` is the instance. Errors are the API's `{"error": ...}` answers.
pub async fn chat(
    State(state): State<AppState>,
    viewer: SignedIn,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response<Body>> {
    viewer.check_form(&headers, "")?;
    if body.len() > BODY_LIMIT {
        return Err(Error::PayloadTooLarge(format!(
            "a playground conversation may be {BODY_LIMIT} bytes at most"
        )));
    }
    let mut request: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("the body is not a JSON object: {e}")))?;
    request.insert("model".into(), Value::String(name.clone()));
    let body = serde_json::to_vec(&request)
        .map_err(|e| Error::Internal(format!("chat request as JSON: {e}")))?;
    let req = Request::post("/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .map_err(|e| Error::Internal(format!("chat request: {e}")))?;
    forward(
        &state,
        viewer.caller,
        &name,
        Start::OnDemand,
        "/v1/chat/completions".into(),
        req,
    )
    .await
}
