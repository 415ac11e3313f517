//! The activity record of inference requests. (Placeholder for the route classes until the
//! activity store lands.)

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// What kind of inference request it was.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Chat completions.
    ChatCompletions,
    /// Text completions.
    Completions,
    /// Embeddings.
    Embeddings,
    /// Reranking.
    Rerank,
    /// Tokenize, detokenize, apply-template.
    Tokenize,
    /// Code infill.
    Infill,
    /// Any GET: health, props, models, slots.
    Read,
    /// Anything else.
    Other,
}

/// The route class of a request for `path` as forwarded to the backend.
pub(crate) fn classify(method: &Method, path: &str) -> Route {
    if method == Method::GET || method == Method::HEAD {
        return Route::Read;
    }
    let path = path.split('?').next().unwrap_or(path);
    let path = path.strip_prefix("/v1").unwrap_or(path);
    match path {
        "/chat/completions" => Route::ChatCompletions,
        "/completion" | "/completions" => Route::Completions,
        "/embedding" | "/embeddings" => Route::Embeddings,
        "/rerank" | "/reranking" => Route::Rerank,
        "/tokenize" | "/detokenize" | "/apply-template" => Route::Tokenize,
        "/infill" => Route::Infill,
        _ => Route::Other,
    }
}
