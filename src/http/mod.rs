//! The HTTP layer: shared state, the router, and one file per route group.

mod extract;
mod guard;
mod instances;
mod proxy;
mod system;

use crate::auth::Keys;
use crate::config::Config;
use crate::error::Error;
use crate::proxy::HttpClient;
use crate::supervisor::Supervisor;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use axum::routing::{get, post};
use axum::{middleware, Router};
use proxy::ProxyFirst;
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, Any, Cors, CorsLayer};

/// Largest management request body (instance definitions are small).
const MANAGEMENT_BODY_LIMIT: usize = 1024 * 1024;

/// Everything a handler may need.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The configuration in force.
    pub cfg: Arc<Config>,
    /// Instances and their processes.
    pub supervisor: Supervisor,
    /// API keys.
    pub keys: Arc<Keys>,
    /// Pooled client for backends.
    pub http: HttpClient,
}

/// The router for every route but the instance proxy's.
pub fn router(state: AppState) -> Router {
    let management = Router::new()
        .route("/api/v1/version", get(system::version))
        .route("/api/v1/server/help", get(system::help))
        .route("/api/v1/server/version", get(system::backend_version))
        .route("/api/v1/server/devices", get(system::devices))
        .route("/api/v1/instances", get(instances::list))
        .route(
            "/api/v1/instances/{name}",
            get(instances::get)
                .post(instances::create)
                .put(instances::update)
                .delete(instances::delete),
        )
        .route("/api/v1/instances/{name}/start", post(instances::start))
        .route("/api/v1/instances/{name}/stop", post(instances::stop))
        .route("/api/v1/instances/{name}/restart", post(instances::restart))
        .route("/api/v1/instances/{name}/logs", get(instances::logs))
        .layer(DefaultBodyLimit::max(MANAGEMENT_BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::management,
        ));

    management.fallback(not_found).with_state(state)
}

/// The whole HTTP service: CORS around the instance proxy (matched first, see [`ProxyFirst`]) and
/// the router. Bodies stream through the proxy untouched, so no body limit applies there.
pub fn service(state: AppState) -> Cors<ProxyFirst> {
    let cors = cors(&state.cfg.server.allowed_origins);
    let router = router(state.clone());
    ServiceBuilder::new()
        .layer(cors)
        .service(ProxyFirst::new(state, router))
}

async fn not_found() -> Error {
    Error::NotFound("no such route".into())
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(Any);
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}
