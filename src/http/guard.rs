//! Route-group middleware that checks the presented key before a handler runs.

use super::AppState;
use crate::auth::Scope;
use crate::error::Result;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Requires a management key.
pub async fn management(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response> {
    let caller = state.keys.authorize(req.headers(), Scope::Management)?;
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// Requires an inference (or management) key.
// The instance proxy checks its key in `proxy::ProxyFirst`; this is for inference routes that go
// through the router (the OpenAI-compatible `/v1` ones).
#[allow(dead_code)]
pub async fn inference(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response> {
    let caller = state.keys.authorize(req.headers(), Scope::Inference)?;
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}
