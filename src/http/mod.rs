//! The HTTP layer: shared state, the router, and one file per route group.

mod browser;
pub mod connection;
mod extract;
mod forward;
mod guard;
mod history;
mod holding;
mod instances;
mod keys;
mod openai;
pub mod openapi;
mod proxy;
pub mod serve;
mod system;

use crate::auth::Auth;
use crate::backends::BackendCommand;
use crate::config::Config;
use crate::db::Db;
use crate::error::Error;
use crate::supervisor::Supervisor;
use crate::upstream::Pool;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use axum::routing::{any, get, post};
use axum::{middleware, Router};
use browser::{BrowserGuard, BrowserGuardLayer};
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
    /// The backend's program and base environment, resolved at startup.
    pub backend: Arc<BackendCommand>,
    /// Instances and their processes.
    pub supervisor: Supervisor,
    /// API keys and who may call what.
    pub auth: Auth,
    /// The database, for reading history.
    pub db: Db,
    /// Pooled client for backends.
    pub upstream: Pool,
}

/// The router: every route. The instance proxy's are answered by [`ProxyFirst`] before the router
/// is reached (see [`service`]), with the same function.
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
        .route("/api/v1/instances/{name}/history", get(history::instance))
        .route("/api/v1/history", get(history::all))
        .route("/api/v1/auth/keys", get(keys::list).post(keys::create))
        .route(
            "/api/v1/auth/keys/{id}",
            get(keys::get).delete(keys::revoke),
        )
        .layer(DefaultBodyLimit::max(MANAGEMENT_BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::management,
        ));

    // Bodies are read whole (the `model` field routes them), so they get a generous limit.
    let inference = Router::new()
        .route("/v1/models", get(openai::models))
        .route("/v1/{*rest}", post(openai::forward))
        .layer(DefaultBodyLimit::max(forward::BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::inference,
        ));

    // The proxy checks keys itself (see `proxy.rs`), and streams bodies without a limit.
    let instance_proxy = Router::new()
        .route("/api/v1/instances/{name}/proxy", any(proxy::route))
        .route("/api/v1/instances/{name}/proxy/{*rest}", any(proxy::route));

    let swagger = state.cfg.server.enable_swagger;
    let app = management
        .merge(inference)
        .merge(instance_proxy)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state);
    // The API description is public, like any published API reference.
    if swagger {
        app.merge(openapi::router())
    } else {
        app
    }
}

/// The whole HTTP service: CORS and the browser checks around the instance proxy (matched first,
/// see [`ProxyFirst`]) and the router. Bodies stream through the proxy untouched, so no body limit
/// applies there.
pub fn service(state: AppState) -> Cors<BrowserGuard<ProxyFirst>> {
    let cors = cors(&state.cfg.server.allowed_origins);
    let guard = BrowserGuardLayer::new(&state.cfg);
    let router = router(state.clone());
    ServiceBuilder::new()
        .layer(cors)
        .layer(guard)
        .service(ProxyFirst::new(state, router))
}

async fn not_found() -> Error {
    Error::NotFound("no such route".into())
}

async fn method_not_allowed(method: Method) -> Error {
    Error::MethodNotAllowed(format!("method {method} is not allowed on this route"))
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
