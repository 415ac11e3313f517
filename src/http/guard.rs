//! Route-group middleware that checks the presented key before a handler runs, and hands the
//! handler the [`Caller`](crate::auth::Caller).

use super::AppState;
use crate::auth::{Caller, Scope};
use crate::error::Error;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};

/// Requires a management key.
pub async fn management(State(state): State<AppState>, req: Request, next: Next) -> Response {
    check(&state, Scope::Management, req, next).await
}

/// Requires an inference (or management) key.
pub async fn inference(State(state): State<AppState>, req: Request, next: Next) -> Response {
    check(&state, Scope::Inference, req, next).await
}

async fn check(state: &AppState, scope: Scope, mut req: Request, next: Next) -> Response {
    let addr = client_addr(&req);
    match authenticate(state, scope, req.headers(), addr).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(refusal) => refusal,
    }
}

/// The one auth decision for every route group (the router's middleware and the instance proxy's
/// fast path): the caller, or the ready refusal (401, 403, 429 with `Retry-After`, 503).
pub async fn authenticate(
    state: &AppState,
    scope: Scope,
    headers: &HeaderMap,
    addr: Option<IpAddr>,
) -> Result<Caller, Response> {
    state
        .auth
        .authorize(headers, scope, addr)
        .await
        .map_err(|e| refusal(state, e))
}

/// The response for a refused request, counted in the metrics by its kind.
pub fn refusal(state: &AppState, e: Error) -> Response {
    match &e {
        Error::Unauthorized(_) | Error::Forbidden(_) => {
            state.metrics.auth_failed(e.status().as_u16())
        }
        Error::TooManyRequests { .. } => state.metrics.auth_rate_limited(),
        _ => {}
    }
    e.into_response()
}

/// The peer's IP, with IPv4-mapped IPv6 addresses folded to IPv4 so one client is one address.
pub fn client_addr(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_canonical())
}
