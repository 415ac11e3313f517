//! The one path from a request to an instance's backend, for `/v1` and the instance proxy alike:
//! the key's scope, the instance (started on demand, or used only if running), the upstream call,
//! and the instance held in use (no eviction, no idle stop) until the answer has been sent. Each
//! request routed here is metered (see [`crate::metering`]), whatever its outcome.
//!
//! `/v1` bodies are forwarded byte for byte: only `model` is parsed out of them ([`model_of`]), so
//! nothing a backend understands (and we do not) is lost or reordered. Answers stream back as they
//! come.

use super::serve;
use super::AppState;
use crate::activity;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::metering::{Awaiting, Charge, Estimate, Exchange, Metered, Outcome};
use crate::supervisor::{Handle, Rights, Status};
use crate::upstream::{self, Quiet, SendError};
use axum::body::{Body, Bytes};
use axum::http::{Request, Response};
use serde::Deserialize;
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// Largest request body on `/v1` (images travel inline, base64-encoded).
pub(crate) const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Whether a request may start the instance it goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// `/v1`: a cold instance is started (as the caller, evicting only what the caller may use)
    /// and waited for.
    OnDemand,
    /// The instance proxy: only a running instance is used; 503 otherwise. Its inference requests
    /// wait for a place among `max_concurrent` as `/v1`'s do.
    IfRunning,
}

/// Sends `req` to `instance`'s backend at `target` (path and query) and returns the streaming
/// answer. 403 outside the caller's instances or route classes, before anything is looked up.
pub(crate) async fn forward(
    state: &AppState,
    caller: Caller,
    instance: &str,
    start: Start,
    target: String,
    req: Request<Body>,
) -> Result<Response<Body>> {
    caller.ensure_instance(instance)?;
    let started = Instant::now();
    let route = activity::classify(req.method(), &target);
    caller.ensure_route(route)?;
    // Counted before the instance is touched, so a refused request starts nothing.
    let admitted = caller.admit(route).map_err(|refusal| {
        state.metrics.quota_refused(refusal.limit);
        Error::from(refusal)
    })?;
    let acquired = match start {
        Start::OnDemand => {
            let evictable = |name: &str| caller.may_use(name);
            let rights = Rights {
                start: caller.policy().can_start,
                evict: caller.policy().can_evict,
                evictable: &evictable,
                priority: caller.policy().priority,
            };
            state
                .supervisor
                .acquire(instance, &caller.actor, rights)
                .await
                .map_err(|e| caller.shield(e))
        }
        Start::IfRunning => {
            // Inference waits for a place among max_concurrent as on /v1; a read (health, props,
            // models, slots) runs none, and must not wait behind it.
            let queued = (route != activity::Route::Read).then_some(caller.policy().priority);
            state.supervisor.use_running(instance, queued).await
        }
    };
    let charge = admitted.as_ref().map(|a| Charge {
        quota: a.quota.clone(),
        estimate: crate::quota::limits_tokens(&caller.policy().limits)
            .then(|| Estimate::of_request(body_length(&req))),
    });
    let exchange = state
        .meter
        .begin(started, caller.into_actor(), instance, route, charge);
    let (port, in_flight) = match acquired {
        Ok(acquired) => acquired,
        Err(e) => return Err(refused(state, instance, exchange, e)),
    };
    let quiet = quiet(state, in_flight.instance());
    // Dropped while the backend works on the request (the client left): charged an estimate.
    let awaiting = Awaiting::new(exchange);
    match upstream::forward(&state.upstream, serve::current(), port, target, req, quiet).await {
        Ok(resp) => {
            let mut resp = Metered::wrap(resp, awaiting.answered(), in_flight);
            if let Some(admitted) = &admitted {
                admitted.standing.write(resp.headers_mut());
            }
            Ok(resp)
        }
        Err(e) => {
            let e = upstream_error(state, instance, port, e);
            Err(refused(state, instance, awaiting.answered(), e))
        }
    }
}

/// The request body's length: exact for `/v1` (read whole) and for a proxied body with a
/// `Content-Length`; 0 for a chunked one, whose length is known only once sent.
fn body_length(req: &Request<Body>) -> u64 {
    let hint = axum::body::HttpBody::size_hint(req.body());
    hint.exact().unwrap_or(hint.lower())
}

/// How long `instance`'s backend may stay quiet mid-answer; a stall is counted in its metrics.
pub(crate) fn quiet(state: &AppState, instance: &Handle) -> Quiet {
    let metrics = instance.metrics().clone();
    Quiet {
        limit: Duration::from_secs(state.cfg.instances.stream_idle_timeout),
        on_stall: Box::new(move || metrics.stalled_answer()),
    }
}

/// Counts an exchange that ended without an answer from the backend, with the error's status
/// (in the instance's metrics too, if the instance exists).
fn refused(state: &AppState, instance: &str, exchange: Option<Exchange>, e: Error) -> Error {
    if let Some(exchange) = exchange {
        let instance = state.supervisor.instance(instance).ok();
        let outcome = Outcome {
            status: e.status().as_u16(),
            ..Outcome::default()
        };
        exchange.finish(outcome, instance.as_ref().map(|i| i.metrics().as_ref()));
    }
    e
}

/// What the client is told when the backend could not be reached, went down or stayed silent, or
/// the client's body stalled.
fn upstream_error(state: &AppState, instance: &str, port: u16, e: SendError) -> Error {
    if super::connection::body_stalled(&e) {
        return Error::body_stalled();
    }
    if let SendError::Silent(limit) = e {
        return Error::GatewayTimeout(format!(
            "instance '{instance}' sent nothing for {} s (instances.stream_idle_timeout)",
            limit.as_secs()
        ));
    }
    // A backend killed while the request waited on it (it hung, or crashed): the instance is down
    // for now, which is not the same as a backend answering garbage.
    let status = state
        .supervisor
        .instance(instance)
        .map(|i| i.snapshot().status);
    match status {
        Ok(status) if status != Status::Running => Error::Unavailable(format!(
            "instance '{instance}' went down while answering and is {}; try again",
            crate::names::name_of(&status)
        )),
        _ => Error::BadGateway(format!("backend on port {port} did not answer: {e}")),
    }
}

/// The one field routing needs; serde skips the rest without building it.
#[derive(Deserialize)]
struct Routing<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

/// The instance a request body names in `model`; 400 if the body is not a JSON object or names none.
pub(crate) fn model_of(body: &[u8]) -> Result<String> {
    // serde would also read a struct from an array; OpenAI bodies are objects.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Error::BadRequest(
            "invalid request body: expected a JSON object with a 'model' field".into(),
        ));
    }
    let routing: Routing = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("invalid request body: {e}")))?;
    match routing.model {
        Some(model) if !model.is_empty() => Ok(model.into_owned()),
        _ => Err(Error::BadRequest(
            "missing model name: set 'model' to an instance name".into(),
        )),
    }
}

/// Bodies up to this size are parsed for `model` in place; larger ones (inline images) on the
/// blocking pool, so that other connections of the same HTTP worker are not held up meanwhile.
const INLINE_PARSE_LIMIT: usize = 256 * 1024;

/// [`model_of`], off the async thread for large bodies.
pub(crate) async fn routed_model(body: &Bytes) -> Result<String> {
    if body.len() <= INLINE_PARSE_LIMIT {
        return model_of(body);
    }
    let body = body.clone();
    tokio::task::spawn_blocking(move || model_of(&body)).await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_read_from_any_position_and_escapes_are_decoded() {
        let body = br#"{"messages": [{"role": "user", "content": "{\"model\": \"no\"}"}], "model": "m\u002e1"}"#;
        assert_eq!(model_of(body).unwrap(), "m.1");
        assert_eq!(model_of(b"  {\"model\":\"a\"}\n").unwrap(), "a");
    }

    #[test]
    fn bodies_without_a_usable_model_are_400() {
        let cases: &[&[u8]] = &[
            b"",
            b"not json",
            b"[\"m\"]",
            b"{\"model\": \"m\"",
            b"{\"model\": \"m\"} trailing",
            b"{}",
            b"{\"model\": null}",
            b"{\"model\": \"\"}",
            b"{\"model\": 7}",
            b"{\"model\": \"a\", \"model\": \"b\"}",
        ];
        for body in cases {
            let err = model_of(body).unwrap_err();
            assert!(
                matches!(err, Error::BadRequest(_)),
                "{}: {err:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
