//! `/api/v1/instances/{name}/proxy/*`: the request, minus that prefix, to the instance's backend.

use super::AppState;
use crate::auth::Caller;
use crate::error::Result;
use crate::instances::name;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Response;
use axum::Extension;

/// Forwards to the running instance; 403 outside the key's instances, 503 if it is not running.
/// The request counts as in flight (no eviction, no idle stop) until its answer has been sent.
pub async fn forward(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Result<Response<Body>> {
    let (instance, rest) = split_path(req.uri().path());
    name::validate(instance)?;
    caller.ensure_instance(instance)?;
    let (port, in_flight) = state.supervisor.use_running(instance)?;
    let mut target = rest.to_string();
    if let Some(query) = req.uri().query() {
        target.push('?');
        target.push_str(query);
    }
    let resp = crate::proxy::forward(&state.http, port, &target, req).await?;
    Ok(crate::proxy::hold_while_sending(resp, in_flight))
}

/// `/api/v1/instances/<name>/proxy<rest>` → (`<name>`, `<rest>` or `/`), on the raw path.
fn split_path(path: &str) -> (&str, &str) {
    let after = path.strip_prefix("/api/v1/instances/").unwrap_or_default();
    let (instance, tail) = after.split_once('/').unwrap_or((after, ""));
    let rest = tail.strip_prefix("proxy").unwrap_or_default();
    (instance, if rest.is_empty() { "/" } else { rest })
}

#[cfg(test)]
mod tests {
    use super::split_path;

    #[test]
    fn strips_the_prefix_and_keeps_the_raw_rest() {
        assert_eq!(
            split_path("/api/v1/instances/m/proxy/health"),
            ("m", "/health")
        );
        assert_eq!(split_path("/api/v1/instances/m/proxy"), ("m", "/"));
        assert_eq!(split_path("/api/v1/instances/m/proxy/"), ("m", "/"));
        assert_eq!(
            split_path("/api/v1/instances/m.1/proxy/v1/chat%2Fx"),
            ("m.1", "/v1/chat%2Fx")
        );
    }
}
