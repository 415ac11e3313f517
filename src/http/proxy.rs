//! `/api/v1/instances/{name}/proxy/*`: the request, minus that prefix, to the instance's backend.
//!
//! The proxy is an operator's tool: llama-server's native API also changes the server for everyone
//! (`POST /props`, `/lora-adapters`, slot erase/save/restore). A caller who is not an operator (an
//! inference key) reaches only [`INFERENCE_ROUTES`]: inference and read-only endpoints.
//!
//! This route group is matched by [`ProxyFirst`] before the router: it is the hot path, and axum's
//! routing, path-parameter extraction and middleware cost about 30 heap allocations per request,
//! two thirds of what a proxied request allocated (see docs/benchmarks.md). Its path is parsed by
//! hand anyway, because the rest must be forwarded byte for byte.

use super::forward::Start;
use super::{guard, AppState};
use crate::auth::{Caller, Scope};
use crate::definitions::name;
use crate::error::{Error, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, Response};
use axum::response::IntoResponse;
use axum::Router;
use futures_util::future::BoxFuture;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

const PREFIX: &str = "/api/v1/instances/";

/// `/api/v1/instances/<name>/proxy<rest>` (rest empty or starting with `/`) → (`<name>`, `<rest>` or
/// `/`), on the raw path; `None` for any other path.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let (instance, tail) = path.strip_prefix(PREFIX)?.split_once('/')?;
    let rest = tail.strip_prefix("proxy")?;
    match rest {
        "" => Some((instance, "/")),
        _ if rest.starts_with('/') => Some((instance, rest)),
        _ => None,
    }
}

/// The router's entry for the proxy's paths, which [`ProxyFirst`] answers before the router does:
/// the same function, so both ways behave alike.
pub async fn route(State(state): State<AppState>, req: Request) -> Response<Body> {
    forward(&state, req).await
}

/// Checks the key with the same decision as every route group (401 and the failure budget, 403 for
/// the wrong kind), then forwards.
async fn forward(state: &AppState, req: Request) -> Response<Body> {
    if !PROXY_METHODS.contains(req.method()) {
        return method_not_allowed(req.method());
    }
    let addr = guard::client_addr(&req);
    match guard::authenticate(state, Scope::Inference, req.headers(), addr).await {
        Ok(caller) => forward_as(state, caller, req)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Err(refusal) => refusal,
    }
}

/// The methods llama-server serves (the API reference's `GET` and `POST`, and `HEAD`, which is a
/// `GET`); any other is answered here, as the router answers it, instead of reaching the backend.
const PROXY_METHODS: &[Method] = &[Method::GET, Method::HEAD, Method::POST];

/// 405 with `Allow`, as the router's own 405s.
fn method_not_allowed(method: &Method) -> Response<Body> {
    let mut response = Error::MethodNotAllowed(format!(
        "method {method} is not allowed through the instance proxy"
    ))
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD,POST"));
    response
}

/// Forwards to the running instance (see [`super::forward::forward`]); 403 outside the key's
/// instances or, for an inference key, outside [`INFERENCE_ROUTES`]; 503 if it is not running.
async fn forward_as(state: &AppState, caller: Caller, req: Request) -> Result<Response<Body>> {
    let Some((instance, rest)) = split_path(req.uri().path()) else {
        return Err(Error::NotFound("no such route".into()));
    };
    name::validate(instance)?;
    if !caller.is_operator() && !inference_may_use(req.method(), rest) {
        return Err(Error::Forbidden(format!(
            "an inference key may not use {} {rest} through the proxy: only llama-server's \
             inference and read-only endpoints (a management key reaches all)",
            req.method()
        )));
    }
    let mut target = rest.to_string();
    if let Some(query) = req.uri().query() {
        target.push('?');
        target.push_str(query);
    }
    let instance = instance.to_string();
    super::forward::forward(state, caller, &instance, Start::IfRunning, target, req).await
}

/// What a caller who is not an operator may reach through the proxy: (method, path) with `*` for
/// one or more further segments.
const INFERENCE_ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/props"),
    ("GET", "/slots"),
    ("GET", "/models"),
    ("GET", "/v1/*"),
    ("POST", "/v1/*"),
    ("POST", "/completion"),
    ("POST", "/completions"),
    ("POST", "/tokenize"),
    ("POST", "/detokenize"),
    ("POST", "/embedding"),
    ("POST", "/embeddings"),
    ("POST", "/infill"),
    ("POST", "/apply-template"),
    ("POST", "/rerank"),
    ("POST", "/reranking"),
];

/// True if `path` (raw, as forwarded) is one of [`INFERENCE_ROUTES`] for `method`. Only plain
/// segments match: a percent-escape, an empty, `.` or `..` segment could make the backend read the
/// path as another route than the one checked here.
fn inference_may_use(method: &axum::http::Method, path: &str) -> bool {
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if !rest.split('/').all(plain) {
        return false;
    }
    // Compared segment by segment, without collecting either side: this runs for every proxied
    // request of an inference key.
    INFERENCE_ROUTES.iter().any(|(m, route)| {
        if *m != method.as_str() {
            return false;
        }
        let mut segments = rest.split('/');
        let mut pattern = route[1..].split('/').peekable();
        while let Some(want) = pattern.next() {
            match segments.next() {
                // `*` (last) stands for one or more further segments.
                Some(_) if want == "*" && pattern.peek().is_none() => return true,
                Some(seg) if seg == want => {}
                _ => return false,
            }
        }
        segments.next().is_none()
    })
}

/// The instance proxy in front of the router: proxy paths are answered here, everything else goes
/// to the router.
#[derive(Clone, Debug)]
pub struct ProxyFirst {
    // One reference count per clone: hyper clones the service for every request.
    inner: Arc<(AppState, Router)>,
}

impl ProxyFirst {
    /// Serves the proxy from `state`, the rest with `router`.
    pub fn new(state: AppState, router: Router) -> Self {
        ProxyFirst {
            inner: Arc::new((state, router)),
        }
    }
}

impl Service<Request> for ProxyFirst {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, std::result::Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        // Both inner paths are always ready (the router is, and the proxy needs nothing).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if split_path(req.uri().path()).is_some() {
            let inner = self.inner.clone();
            Box::pin(async move { Ok(forward(&inner.0, req).await) })
        } else {
            Box::pin(self.inner.1.clone().oneshot(req))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{inference_may_use, split_path};
    use axum::http::Method;

    #[test]
    fn inference_keys_reach_only_inference_and_read_only_routes() {
        let allowed = [
            (Method::GET, "/health"),
            (Method::GET, "/props"),
            (Method::GET, "/slots"),
            (Method::GET, "/v1/models"),
            (Method::POST, "/v1/chat/completions"),
            (Method::POST, "/completion"),
            (Method::POST, "/tokenize"),
            (Method::POST, "/embeddings"),
            (Method::POST, "/apply-template"),
            (Method::POST, "/reranking"),
        ];
        for (method, path) in &allowed {
            assert!(inference_may_use(method, path), "{method} {path}");
        }
        let refused = [
            (Method::POST, "/props"),
            (Method::POST, "/lora-adapters"),
            (Method::GET, "/lora-adapters"),
            (Method::POST, "/slots/0"),
            (Method::POST, "/slots"),
            (Method::GET, "/metrics"),
            (Method::DELETE, "/v1/chat/completions"),
            (Method::POST, "/v1"),
            (Method::POST, "/v1/../props"),
            (Method::POST, "/v1/%2e%2e/props"),
            (Method::POST, "//props"),
            (Method::POST, "/completion/"),
            (Method::POST, "/./props"),
            (Method::GET, "/health/../slots/0"),
            (Method::POST, "completion"),
            (Method::POST, "/"),
        ];
        for (method, path) in &refused {
            assert!(!inference_may_use(method, path), "{method} {path}");
        }
    }

    #[test]
    fn strips_the_prefix_and_keeps_the_raw_rest() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("/api/v1/instances/m/proxy/health", Some(("m", "/health"))),
            ("/api/v1/instances/m/proxy", Some(("m", "/"))),
            ("/api/v1/instances/m/proxy/", Some(("m", "/"))),
            (
                "/api/v1/instances/m.1/proxy/v1/chat%2Fx",
                Some(("m.1", "/v1/chat%2Fx")),
            ),
            ("/api/v1/instances/m/proxyx", None),
            ("/api/v1/instances/m/logs", None),
            ("/api/v1/instances/m", None),
            ("/api/v1/instances", None),
            ("/v1/chat/completions", None),
        ];
        for (path, want) in cases {
            assert_eq!(split_path(path), *want, "{path}");
        }
    }
}
