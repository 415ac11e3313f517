//! `GET /metrics`: llamactl's Prometheus metrics, or with `?instance=NAME` the instance's own
//! (llama-server's `/metrics`, served when the instance runs with `metrics: true`), passed through.
//!
//! Readable with a management key or one of `auth.metrics_keys` (so a Prometheus server needs no
//! key that can change anything); open while management auth is off.

use super::holding::Holding;
use super::openapi::ErrorBody;
use super::{guard, serve, AppState};
use crate::definitions::name;
use crate::error::{Error, Result};
use crate::metrics::{Format, InstanceSample, Scrape};
use crate::upstream;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Response};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;

/// Which metrics to read.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// A running instance whose backend's own `/metrics` to pass through instead.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    instance: Option<String>,
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "System", params(MetricsQuery),
    responses(
        (status = 200, description = "Prometheus text format (OpenMetrics when the `Accept` header asks for it)",
            content((String = "text/plain"), (String = "application/openmetrics-text"))),
        (status = 400, description = "Invalid instance name or query", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 502, description = "The instance's backend did not answer", body = ErrorBody),
        (status = 503, description = "The instance is not running", body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, req: Request) -> Response<Body> {
    let addr = guard::client_addr(&req);
    if let Err(e) = state.auth.authorize_metrics(req.headers(), addr).await {
        return guard::refusal(&state, e);
    }
    answer(&state, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn answer(state: &AppState, req: Request) -> Result<Response<Body>> {
    let axum::extract::Query(query) =
        axum::extract::Query::<MetricsQuery>::try_from_uri(req.uri())?;
    if let Some(instance) = query.instance {
        return backend_metrics(state, &instance, req).await;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let text = state
        .metrics
        .render(scrape(state), format)
        .map_err(|e| Error::Internal(format!("cannot encode metrics: {e}")))?;
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}

/// What is read at scrape time.
fn scrape(state: &AppState) -> Scrape {
    let instances = state
        .supervisor
        .list()
        .into_iter()
        .map(|inst| {
            let runtime = inst.snapshot();
            InstanceSample {
                name: inst.name.clone(),
                status: runtime.status,
                in_flight: inst.in_flight(),
                pid: runtime.pid,
                metrics: inst.metrics().clone(),
            }
        })
        .collect();
    Scrape {
        instances,
        open_connections: state.connections.total(),
        activity_dropped: state.activity.dropped(),
        tasks: state.metrics.runtimes().alive_tasks(),
    }
}

/// The running instance's own `/metrics`, as its backend answers it.
async fn backend_metrics(state: &AppState, instance: &str, req: Request) -> Result<Response<Body>> {
    name::validate(instance)?;
    // A read: it never waits behind inference for a place among max_concurrent.
    let (port, in_flight) = state.supervisor.use_running(instance, None).await?;
    let mut upstream_req = Request::new(Body::empty());
    if let Some(accept) = req.headers().get(header::ACCEPT) {
        upstream_req
            .headers_mut()
            .insert(header::ACCEPT, accept.clone());
    }
    let resp = upstream::forward(
        &state.upstream,
        serve::current(),
        port,
        "/metrics".into(),
        upstream_req,
        super::forward::quiet(state, in_flight.instance()),
    )
    .await
    .map_err(|e| Error::BadGateway(format!("backend on port {port} did not answer: {e}")))?;
    Ok(resp.map(|body| Body::new(Holding::new(body, Some(in_flight)))))
}
