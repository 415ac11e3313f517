//! Rate limiting of failed authentication, per client IP, with tower-governor.
//!
//! The governor guards only the refusal path: a request whose key was rejected is answered by a
//! tiny service behind the governor, which says 401 while the client's budget lasts and 429 with
//! `Retry-After` once it is spent. Requests with a valid key never reach it, so they cost nothing
//! and are never limited, however many requests they make and whoever else fails from their IP.

use crate::error::{Error, Result};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use governor::middleware::NoOpMiddleware;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceExt};
use tower_governor::governor::{Governor, GovernorConfigBuilder};
use tower_governor::key_extractor::PeerIpKeyExtractor;
use tower_governor::GovernorError;

/// Why a request was refused, carried to the responder.
#[derive(Debug, Clone)]
struct Refusal(String);

/// Answers a refused request with 401 and the reason.
#[derive(Debug, Clone, Copy)]
struct Refuse;

impl Service<Request<Body>> for Refuse {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let message = req
            .extensions()
            .get::<Refusal>()
            .map_or_else(|| "invalid API key".to_string(), |r| r.0.clone());
        ready(Ok(Error::Unauthorized(message).into_response()))
    }
}

type Gate = Governor<PeerIpKeyExtractor, NoOpMiddleware, Refuse, Body>;

/// Per-client budget of failed authentications.
#[derive(Debug, Clone)]
pub struct FailureLimiter {
    gate: Gate,
}

impl FailureLimiter {
    /// `burst` failures in a row, then one more per `period`.
    pub fn new(burst: u32, period: Duration) -> Result<Self> {
        let config = GovernorConfigBuilder::default()
            .period(period)
            .burst_size(burst)
            .finish()
            .ok_or_else(|| {
                Error::Internal("failed-auth burst and period must not be zero".into())
            })?;
        let gate = Governor::new(Refuse, &config).error_handler(|error| match error {
            // tower-governor rounds the wait down; round up so a client that waits as told is let in.
            GovernorError::TooManyRequests { wait_time, .. } => Error::TooManyRequests {
                message: "too many failed authentication attempts; try again later".into(),
                retry_after: wait_time + 1,
            }
            .into_response(),
            other => Error::Internal(format!("rate limiter: {other}")).into_response(),
        });
        Ok(FailureLimiter { gate })
    }

    /// The answer to a request from `client` refused for `reason`: 401, or 429 past the budget.
    pub async fn refuse(&self, client: Option<IpAddr>, reason: String) -> Response<Body> {
        let ip = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut req = Request::new(Body::empty());
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 0)));
        req.extensions_mut().insert(Refusal(reason));
        match self.gate.clone().oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Forgets clients whose budget is full again, so the table does not grow without bound.
    pub fn forget_recovered(&self) {
        self.gate.limiter.retain_recent();
    }
}
