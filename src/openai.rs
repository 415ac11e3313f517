//! The OpenAI-compatible API: the model list, and every `POST /v1/*` routed by the `model` field of
//! its body to that instance's backend.
//!
//! The body is forwarded byte for byte: only `model` is parsed out of it, so nothing a backend
//! understands (and we do not) is lost or reordered. The answer streams back as it comes.

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::supervisor::Supervisor;
use crate::upstream::{self, Pool};
use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{header, Request, Response};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Largest request body on `/v1` (images travel inline, base64-encoded).
pub const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// `GET /v1/models`, in OpenAI's list format.
#[derive(Debug, Serialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// One entry per instance.
    pub data: Vec<Model>,
}

/// One model: an instance, by name.
#[derive(Debug, Serialize)]
pub struct Model {
    /// The instance name, which requests put in `model`.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds the instance was created.
    pub created: i64,
    /// Always `llamactl`.
    pub owned_by: &'static str,
}

/// Every instance the caller may use, as a model.
pub fn models(supervisor: &Supervisor, caller: &Caller) -> ModelList {
    let mut instances = supervisor.list();
    caller.retain_allowed(&mut instances, |inst| &inst.name);
    let data = instances
        .into_iter()
        .map(|inst| Model {
            id: inst.name,
            object: "model",
            created: inst.created,
            owned_by: "llamactl",
        })
        .collect();
    ModelList {
        object: "list",
        data,
    }
}

/// The one field routing needs; serde skips the rest without building it.
#[derive(Deserialize)]
struct Routing<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

/// The instance a request body names in `model`; 400 if the body is not a JSON object or names none.
pub fn model_of(body: &[u8]) -> Result<String> {
    // serde would also read a struct from an array; OpenAI bodies are objects.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Error::BadRequest(
            "invalid request body: expected a JSON object with a 'model' field".into(),
        ));
    }
    let routing: Routing = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("invalid request body: {e}")))?;
    match routing.model {
        Some(model) if !model.is_empty() => Ok(model.into_owned()),
        _ => Err(Error::BadRequest(
            "missing model name: set 'model' to an instance name".into(),
        )),
    }
}

/// Bodies up to this size are parsed for `model` in place; larger ones (inline images) on the
/// blocking pool, so that other connections of the same HTTP worker are not held up meanwhile.
const INLINE_PARSE_LIMIT: usize = 256 * 1024;

/// [`model_of`], off the async thread for large bodies.
async fn routed_model(body: &Bytes) -> Result<String> {
    if body.len() <= INLINE_PARSE_LIMIT {
        return model_of(body);
    }
    let body = body.clone();
    tokio::task::spawn_blocking(move || model_of(&body)).await?
}

/// Sends one request to the instance its body names (starting it on demand, on behalf of `caller`)
/// and returns the streaming answer; the instance counts as busy until the answer is sent.
/// A key limited to other instances gets 403 before anything is looked up.
pub async fn forward(
    supervisor: &Supervisor,
    http: &Pool,
    caller: &Caller,
    mut parts: Parts,
    body: Bytes,
) -> Result<Response<Body>> {
    let model = routed_model(&body).await?;
    caller.ensure_instance(&model)?;
    let evictable = |name: &str| caller.may_use(name);
    let (port, in_flight) = supervisor
        .acquire(&model, &caller.actor, &evictable)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!("model '{model}' not found")),
            other => caller.shield(other),
        })?;
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    // The body is complete already; a backend must not wait to invite it.
    parts.headers.remove(header::EXPECT);
    let req = Request::from_parts(parts, Body::from(body));
    let resp = upstream::forward(http, port, target, req).await?;
    Ok(upstream::hold_while_sending(resp, in_flight))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_read_from_any_position_and_escapes_are_decoded() {
        let body = br#"{"messages": [{"role": "user", "content": "{\"model\": \"no\"}"}], "model": "m\u002e1"}"#;
        assert_eq!(model_of(body).unwrap(), "m.1");
        assert_eq!(model_of(b"  {\"model\":\"a\"}\n").unwrap(), "a");
    }

    #[test]
    fn bodies_without_a_usable_model_are_400() {
        let cases: &[&[u8]] = &[
            b"",
            b"not json",
            b"[\"m\"]",
            b"{\"model\": \"m\"",
            b"{\"model\": \"m\"} trailing",
            b"{}",
            b"{\"model\": null}",
            b"{\"model\": \"\"}",
            b"{\"model\": 7}",
            b"{\"model\": \"a\", \"model\": \"b\"}",
        ];
        for body in cases {
            let err = model_of(body).unwrap_err();
            assert!(
                matches!(err, Error::BadRequest(_)),
                "{}: {err:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
