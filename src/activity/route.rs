//! What kind of inference request a record is: a short, fixed set of names, so that it can also
//! label metrics without letting request paths make the label set unbounded.

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// The kind of an inference request, by the backend path it was forwarded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `/v1/chat/completions`, `/chat/completions`.
    ChatCompletions,
    /// `/completion`, `/completions`, `/v1/completions`.
    Completions,
    /// `/embedding`, `/embeddings`, `/v1/embeddings`.
    Embeddings,
    /// `/rerank`, `/reranking`, `/v1/rerank`, `/v1/reranking`.
    Rerank,
    /// `/tokenize`, `/detokenize`, `/apply-template`.
    Tokenize,
    /// `/infill`.
    Infill,
    /// Any `GET` or `HEAD`: health, props, models, slots.
    Read,
    /// Anything else.
    Other,
}

/// The kind of a request for `path` on the backend (a query string is ignored).
pub(crate) fn classify(method: &Method, path: &str) -> Route {
    if method == Method::GET || method == Method::HEAD {
        return Route::Read;
    }
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    match path {
        "/v1/chat/completions" | "/chat/completions" => Route::ChatCompletions,
        "/completion" | "/completions" | "/v1/completions" => Route::Completions,
        "/embedding" | "/embeddings" | "/v1/embeddings" => Route::Embeddings,
        "/rerank" | "/reranking" | "/v1/rerank" | "/v1/reranking" => Route::Rerank,
        "/tokenize" | "/detokenize" | "/apply-template" => Route::Tokenize,
        "/infill" => Route::Infill,
        _ => Route::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    #[test]
    fn paths_are_classified_by_what_the_backend_does_with_them() {
        let post = Method::POST;
        let cases = [
            (&post, "/v1/chat/completions", Route::ChatCompletions),
            (&post, "/chat/completions", Route::ChatCompletions),
            (&post, "/v1/chat/completions?x=1", Route::ChatCompletions),
            (&post, "/completion", Route::Completions),
            (&post, "/completions", Route::Completions),
            (&post, "/v1/completions", Route::Completions),
            (&post, "/embedding", Route::Embeddings),
            (&post, "/embeddings", Route::Embeddings),
            (&post, "/v1/embeddings", Route::Embeddings),
            (&post, "/rerank", Route::Rerank),
            (&post, "/reranking", Route::Rerank),
            (&post, "/v1/rerank", Route::Rerank),
            (&post, "/v1/reranking", Route::Rerank),
            (&post, "/infill", Route::Infill),
            (&post, "/tokenize", Route::Tokenize),
            (&post, "/detokenize", Route::Tokenize),
            (&post, "/apply-template", Route::Tokenize),
            (&Method::GET, "/health", Route::Read),
            (&Method::GET, "/props", Route::Read),
            (&Method::GET, "/v1/models", Route::Read),
            (&Method::HEAD, "/slots", Route::Read),
            (&Method::GET, "/v1/chat/completions", Route::Read),
            (&post, "/slots/0?action=save", Route::Other),
            (&post, "/v1/chat/completions/", Route::Other),
            (&post, "/v1/messages", Route::Other),
            (&Method::PUT, "/props", Route::Other),
            (&post, "", Route::Other),
        ];
        for (method, path, want) in cases {
            assert_eq!(classify(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn routes_have_short_stable_names() {
        assert_eq!(names::name_of(&Route::ChatCompletions), "chat_completions");
        assert_eq!(names::name_of(&Route::Read), "read");
        assert_eq!(names::parse::<Route>("tokenize"), Ok(Route::Tokenize));
        let err = names::parse::<Route>("chat").unwrap_err();
        assert!(err.contains("chat_completions"), "{err}");
    }
}
