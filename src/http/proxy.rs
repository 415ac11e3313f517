//! `/api/v1/instances/{name}/proxy/*`: the request, minus that prefix, to the instance's backend.
//!
//! This route group is matched by [`ProxyFirst`] before the router: it is the hot path, and axum's
//! routing, path-parameter extraction and middleware cost about 30 heap allocations per request,
//! two thirds of what a proxied request allocated (see docs/benchmarks.md). Its path is parsed by
//! hand anyway, because the rest must be forwarded byte for byte.

use super::AppState;
use crate::auth::Scope;
use crate::error::Result;
use crate::instances::name;
use axum::body::Body;
use axum::extract::Request;
use axum::http::Response;
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

/// Checks the inference key and forwards to the running instance; 503 if it is not running.
async fn forward(state: &AppState, req: Request) -> Result<Response<Body>> {
    state.keys.authorize(req.headers(), Scope::Inference)?;
    let Some((instance, rest)) = split_path(req.uri().path()) else {
        return Err(crate::Error::NotFound("no such route".into()));
    };
    name::validate(instance)?;
    let port = state.supervisor.running_port(instance)?;
    let mut target = rest.to_string();
    if let Some(query) = req.uri().query() {
        target.push('?');
        target.push_str(query);
    }
    crate::proxy::forward(&state.http, port, &target, req).await
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
            Box::pin(async move {
                Ok(match forward(&inner.0, req).await {
                    Ok(resp) => resp,
                    Err(e) => e.into_response(),
                })
            })
        } else {
            Box::pin(self.inner.1.clone().oneshot(req))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_path;

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
