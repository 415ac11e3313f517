//! What a web page in someone's browser may make of llamactl: nothing it was not allowed.
//!
//! CORS (in [`super::service`]) keeps other origins from reading answers. Two attacks need no
//! answer, and are stopped here, before any route (the instance proxy included):
//! - **DNS rebinding**: a page on `evil.example` re-resolves its own name to 127.0.0.1 and then talks
//!   to llamactl as a same-origin page. Its requests still say `Host: evil.example`, so while any
//!   auth is off (or once `server.allowed_hosts` is set) a request must address llamactl by an IP
//!   literal, `localhost`, or a listed name.
//! - **Simple-request CSRF**: a page may POST cross-origin without a preflight as long as the
//!   request looks like a form (no body type, or a form or text one, and no custom header). Such a
//!   request carries no key, so with auth on it is refused anyway; with auth off it would act. A POST
//!   must therefore say it is JSON (or any non-form type), or carry a key or `X-Requested-With`,
//!   all of which make a browser ask first.

use crate::config::Config;
use crate::error::Error;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Which requests a browser could have been tricked into sending.
#[derive(Debug)]
struct Rules {
    /// Check `Host` at all.
    check_host: bool,
    /// Names besides IP literals and `localhost`, lower case; `*` allows any.
    allowed_hosts: Vec<String>,
    /// Refuse form-like POSTs: only while some route takes requests without a key. With every
    /// route needing one, such a request carries none and is refused 401 by the route's own check,
    /// the answer every client (and schemathesis' auth check) expects for a missing key.
    check_forms: bool,
}

impl Rules {
    fn of(cfg: &Config) -> Self {
        let allowed_hosts: Vec<String> = cfg
            .server
            .allowed_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        Rules {
            check_host: cfg.auth_is_off() || !allowed_hosts.is_empty(),
            allowed_hosts,
            check_forms: cfg.auth_is_off(),
        }
    }

    /// Why this request is refused, if it is.
    fn refusal(&self, req: &Request) -> Option<Error> {
        if self.check_host {
            if let Some(host) = addressed_host(req) {
                if !self.host_allowed(&host) {
                    return Some(Error::Forbidden(format!(
                        "this server is not '{host}': address it by IP address, as localhost, or by \
                         a name listed in server.allowed_hosts"
                    )));
                }
            }
        }
        if self.check_forms
            && *req.method() == Method::POST
            && !dashboard_path(req.uri().path())
            && looks_like_a_form(req.headers())
        {
            return Some(Error::UnsupportedMediaType(
                "a POST needs 'Content-Type: application/json' (or an API key or an \
                 'X-Requested-With' header): form-like requests are refused, since any web page \
                 could send them"
                    .into(),
            ));
        }
        None
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok()
            || host == "localhost"
            || host.ends_with(".localhost")
            || self.allowed_hosts.iter().any(|h| h == "*" || *h == host)
    }
}

/// The host name a request addresses (without the port): the URI's authority (HTTP/2, absolute
/// form) or the `Host` header. `None` when neither names one (HTTP/1.0), which no browser sends.
fn addressed_host(req: &Request) -> Option<String> {
    let authority = match req.uri().authority() {
        Some(authority) => authority.as_str().to_string(),
        None => req.headers().get(header::HOST)?.to_str().ok()?.to_string(),
    };
    let authority = authority.rsplit_once('@').map_or(&*authority, |(_, h)| h);
    let host = if authority.starts_with('[') {
        // [v6]:port
        authority.split_inclusive(']').next().unwrap_or(authority)
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    Some(host.to_string())
}

/// True for the dashboard's paths (everything outside `/api` and `/v1`): its forms are posted as
/// forms by design, and it refuses other sites' itself (`Sec-Fetch-Site`, `Origin`, and a session's
/// CSRF token: see `crate::ui::forms`), so the form rule would only lock its own pages out.
fn dashboard_path(path: &str) -> bool {
    let under = |root: &str| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    !under("/api") && !under("/v1")
}

/// True for a request a browser sends cross-origin without asking first: no key, no
/// `X-Requested-With`, and no body type or a form or plain-text one.
fn looks_like_a_form(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key("x-api-key")
        || headers.contains_key("x-requested-with")
    {
        return false;
    }
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let essence = content_type
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "" | "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
    )
}

/// Wraps the service in the browser checks.
#[derive(Debug, Clone)]
pub struct BrowserGuardLayer {
    rules: Arc<Rules>,
}

impl BrowserGuardLayer {
    /// The checks `cfg` calls for.
    pub fn new(cfg: &Config) -> Self {
        BrowserGuardLayer {
            rules: Arc::new(Rules::of(cfg)),
        }
    }
}

impl<S> Layer<S> for BrowserGuardLayer {
    type Service = BrowserGuard<S>;

    fn layer(&self, inner: S) -> BrowserGuard<S> {
        BrowserGuard {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The service behind the browser checks.
#[derive(Debug, Clone)]
pub struct BrowserGuard<S> {
    inner: S,
    rules: Arc<Rules>,
}

impl<S> Service<Request> for BrowserGuard<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match self.rules.refusal(&req) {
            Some(refusal) => Either::Left(futures_util::future::ready(Ok(refusal.into_response()))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn the_dashboard_is_everything_outside_the_api() {
        for path in [
            "/",
            "/sign-in",
            "/instances/new",
            "/keys/x/revoke",
            "/apis",
            "/v1x",
        ] {
            assert!(dashboard_path(path), "{path}");
        }
        for path in ["/api", "/api/v1/instances/x", "/v1", "/v1/chat/completions"] {
            assert!(!dashboard_path(path), "{path}");
        }
    }

    fn rules(auth_off: bool, allowed: &[&str]) -> Rules {
        let mut cfg = Config::default();
        cfg.auth.require_management_auth = !auth_off;
        cfg.server.allowed_hosts = allowed.iter().map(|s| s.to_string()).collect();
        Rules::of(&cfg)
    }

    fn request(method: Method, host: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder()
            .method(method)
            .uri("/api/v1/instances/a/start")
            .header("host", host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    fn status(rules: &Rules, req: &Request) -> Option<u16> {
        rules.refusal(req).map(|e| e.status().as_u16())
    }

    #[test]
    fn with_auth_off_only_ips_localhost_and_listed_names_are_served() {
        let r = rules(true, &["llm.lan"]);
        let json = [("content-type", "application/json")];
        for host in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "app.localhost:8080",
            "[::1]:8080",
            "192.168.1.20:8080",
            "llm.lan:8080",
        ] {
            assert_eq!(
                status(&r, &request(Method::POST, host, &json)),
                None,
                "{host}"
            );
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
        ] {
            assert_eq!(
                status(&r, &request(Method::GET, host, &[])),
                Some(403),
                "{host}"
            );
        }
        // With auth on and no list, any name is fine: a key is needed anyway.
        let on = rules(false, &[]);
        assert_eq!(
            status(&on, &request(Method::GET, "evil.example", &[])),
            None
        );
    }

    #[test]
    fn form_like_posts_are_refused_and_everything_else_passes() {
        let r = rules(true, &[]);
        let refused: &[&[(&str, &str)]] = &[
            &[],
            &[("content-type", "text/plain")],
            &[("content-type", "application/x-www-form-urlencoded")],
            &[("content-type", "multipart/form-data; boundary=x")],
        ];
        for headers in refused {
            assert_eq!(
                status(&r, &request(Method::POST, "localhost", headers)),
                Some(415),
                "{headers:?}"
            );
        }
        let passed: &[&[(&str, &str)]] = &[
            &[("content-type", "application/json")],
            &[("content-type", "application/json; charset=utf-8")],
            &[("authorization", "Bearer k")],
            &[("x-api-key", "k")],
            &[("x-requested-with", "curl")],
        ];
        for headers in passed {
            assert_eq!(
                status(&r, &request(Method::POST, "localhost", headers)),
                None,
                "{headers:?}"
            );
        }
        // With every route needing a key, a keyless form is left to the key check (401).
        let on = rules(false, &[]);
        assert_eq!(status(&on, &request(Method::POST, "localhost", &[])), None);
        // Other methods always make a browser ask first.
        assert_eq!(status(&r, &request(Method::DELETE, "localhost", &[])), None);
        assert_eq!(status(&r, &request(Method::GET, "localhost", &[])), None);
    }
}
