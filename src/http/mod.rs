//! The HTTP layer: shared state, the router, and one file per route group.

mod activity;
mod browser;
pub mod connection;
pub(crate) mod events;
mod extract;
pub(crate) mod forward;
pub(crate) mod guard;
mod history;
mod holding;
mod instances;
mod keys;
mod metrics;
mod openai;
pub mod openapi;
mod proxy;
pub mod serve;
pub(crate) mod system;
mod usage;

use crate::activity::Recorder;
use crate::auth::sessions::Sessions;
use crate::auth::Auth;
use crate::backends::BackendCommand;
use crate::config::Config;
use crate::db::Db;
use crate::error::Error;
use crate::events::Events;
use crate::metering::Meter;
use crate::metrics::Metrics;
use crate::supervisor::Supervisor;
use crate::upstream::Pool;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use axum::routing::{any, post};
use axum::{middleware, Router};
use browser::{BrowserGuard, BrowserGuardLayer};
use connection::PerClient;
use proxy::ProxyFirst;
use std::sync::Arc;
use tower::util::Either;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, Any, Cors, CorsLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// The dashboard's sign-in sessions.
    pub sessions: Sessions,
    /// The database, for reading history.
    pub db: Db,
    /// Pooled client for backends.
    pub upstream: Pool,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Measures each inference request.
    pub meter: Meter,
    /// Client connections open now, per address.
    pub(crate) connections: Arc<PerClient>,
    /// The record of inference requests.
    pub activity: Recorder,
    /// Live events, for `GET /api/v1/events`.
    pub(crate) events: Events,
}

/// The router: every route. Each handler but the proxy's is registered with its `#[utoipa::path]`
/// annotation, which gives both its route and its part of the OpenAPI document: the document cannot
/// name a route the router lacks, nor miss one it serves. The instance proxy's routes are answered
/// by [`ProxyFirst`] before the router is reached (see [`service`]), with the same function.
pub fn router(state: AppState) -> Router {
    let management = OpenApiRouter::new()
        .routes(routes!(system::version))
        .routes(routes!(system::help))
        .routes(routes!(system::backend_version))
        .routes(routes!(system::devices))
        .routes(routes!(instances::list))
        .routes(routes!(
            instances::get,
            instances::create,
            instances::update,
            instances::delete
        ))
        .routes(routes!(instances::start))
        .routes(routes!(instances::stop))
        .routes(routes!(instances::restart))
        .routes(routes!(instances::logs))
        .routes(routes!(history::instance))
        .routes(routes!(history::all))
        .routes(routes!(events::stream))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::get, keys::update, keys::revoke))
        .routes(routes!(activity::list))
        .routes(routes!(usage::usage))
        .layer(DefaultBodyLimit::max(MANAGEMENT_BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::management,
        ));

    // Bodies are read whole (the `model` field routes them), so they get a generous limit. The
    // forward takes every `POST /v1/*`; the document describes the inference routes it serves
    // (see `openapi`).
    let inference = OpenApiRouter::new()
        .routes(routes!(openai::models))
        .routes(routes!(keys::whoami))
        .route("/v1/{*rest}", post(openai::forward))
        .layer(DefaultBodyLimit::max(forward::BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::inference,
        ));

    // The proxy checks keys itself (see `proxy.rs`) and streams bodies without a limit; the
    // document describes it by hand (see `openapi`).
    let instance_proxy = Router::new()
        .route("/api/v1/instances/{name}/proxy", any(proxy::route))
        .route("/api/v1/instances/{name}/proxy/{*rest}", any(proxy::route));

    // `/metrics` checks its keys itself: a metrics key reads it and nothing else.
    let metrics = if state.cfg.server.metrics {
        OpenApiRouter::new().routes(routes!(metrics::metrics))
    } else {
        OpenApiRouter::new()
    };

    let (routes, described) = management.merge(inference).merge(metrics).split_for_parts();
    let swagger = state
        .cfg
        .server
        .enable_swagger
        .then(|| openapi::document(described, &state.cfg));
    let app = routes
        .merge(instance_proxy)
        .merge(crate::ui::router(state.clone()))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state);
    // The API description is public, like any published API reference.
    match swagger {
        Some(document) => app.merge(openapi::router(document)),
        None => app,
    }
}

/// The whole HTTP service: CORS (when `server.allowed_origins` lists any) and the browser checks
/// around the instance proxy (matched first, see [`ProxyFirst`]) and the router. Bodies stream
/// through the proxy untouched, so no body limit applies there.
pub fn service(
    state: AppState,
) -> Either<Cors<BrowserGuard<ProxyFirst>>, BrowserGuard<ProxyFirst>> {
    // Without an allowed origin CORS grants nothing; leaving its layer out spares every request
    // its header work (and every answer its `Vary`).
    let origins = &state.cfg.server.allowed_origins;
    let cors = (!origins.is_empty()).then(|| cors(origins));
    let guard = BrowserGuardLayer::new(&state.cfg);
    let router = router(state.clone());
    ServiceBuilder::new()
        .option_layer(cors)
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
