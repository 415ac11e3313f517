//! What every mutating dashboard request must show, beyond SameSite=Strict (which older browsers
//! and same-site subdomains do not honour):
//! - it comes from llamactl's own pages: `Sec-Fetch-Site`, when the browser sends it, says
//!   same-origin (or none: typed by the user), and `Origin`, when it names one, names the host
//!   addressed;
//! - with a session, it carries the session's CSRF token (a form field or the `X-CSRF-Token`
//!   header), which a page of another origin cannot read.

use crate::auth::sessions::{csrf_matches, Session};
use crate::error::{Error, Result};
use axum::http::{header, HeaderMap};

/// The header a script sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// 403 unless the request was sent by a page of this server (as far as the browser says).
pub fn same_origin(headers: &HeaderMap) -> Result<()> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if !matches!(site, "same-origin" | "none") {
            return Err(cross_site());
        }
    }
    // Our pages send no Referer (Referrer-Policy: no-referrer), so the browser sends their form
    // posts with `Origin: null`, which says nothing either way: `Sec-Fetch-Site` and the CSRF token
    // decide then.
    if let Some(origin) = text(header::ORIGIN).filter(|o| *o != "null") {
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        if authority.is_none() || authority != text(header::HOST) {
            return Err(cross_site());
        }
    }
    Ok(())
}

/// 403 unless the form field (or the header) carries the session's CSRF token.
pub fn csrf(session: &Session, headers: &HeaderMap, field: Option<&str>) -> Result<()> {
    let presented = field.or_else(|| headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()));
    match presented {
        Some(token) if csrf_matches(session, token) => Ok(()),
        _ => Err(Error::Forbidden(
            "this form is stale or was not sent by llamactl's own page: reload and try again"
                .into(),
        )),
    }
}

fn cross_site() -> Error {
    Error::Forbidden("this request came from another site's page".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_requests_from_our_own_pages_pass() {
        let ok: &[&[(&str, &str)]] = &[
            &[],
            &[("host", "127.0.0.1:8080")],
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ],
            &[("sec-fetch-site", "same-origin")],
            &[("sec-fetch-site", "none")],
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "null"),
                ("sec-fetch-site", "same-origin"),
            ],
        ];
        for pairs in ok {
            assert!(same_origin(&headers(pairs)).is_ok(), "{pairs:?}");
        }
        let refused: &[&[(&str, &str)]] = &[
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ],
            &[("origin", "null"), ("sec-fetch-site", "cross-site")],
            &[("origin", "http://127.0.0.1:8080")],
        ];
        for pairs in refused {
            assert_eq!(
                same_origin(&headers(pairs)).unwrap_err().status().as_u16(),
                403,
                "{pairs:?}"
            );
        }
    }
}
