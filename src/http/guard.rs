//! Route-group middleware that checks the presented key before a handler runs, and hands the
//! handler the [`Caller`](crate::auth::Caller).

use super::AppState;
use crate::auth::Scope;
use crate::error::Error;
use axum::extract::{ConnectInfo, Request, State};
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
    match state.auth.authorize(req.headers(), scope, addr).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        // Only refusals of the key itself spend the client's budget of failed attempts.
        Err(Error::Unauthorized(reason)) => state.auth.refuse(addr, reason).await,
        Err(other) => other.into_response(),
    }
}

/// The peer's IP, with IPv4-mapped IPv6 addresses folded to IPv4 so one client is one address.
fn client_addr(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_canonical())
}
