//! The operator's dashboard at `/`: server-rendered pages (askama templates, checked against their
//! Rust types at build time) and assets compiled into the binary, so it works offline.
//!
//! - `cookie`: the session cookie, read and written;
//! - `signed_in`: the extractor that turns a request's cookie into the API's [`Caller`];
//! - `forms`: the checks on every mutating request (same origin, the session's CSRF token);
//! - `headers`: the security headers every page carries;
//! - `pages`: the handlers; `templates`: what they render (the HTML is in the crate's
//!   `templates/`); `assets`: the stylesheet.
//!
//! [`Caller`]: crate::auth::Caller

mod assets;
mod cookie;
mod forms;
mod headers;
mod pages;
mod signed_in;
mod templates;

use crate::http::AppState;
use axum::routing::get;
use axum::{middleware, Router};

/// The dashboard's routes, each answer with the security headers.
pub fn router(_state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/sign-in", get(pages::sign_in_form).post(pages::sign_in))
        .route("/sign-out", axum::routing::post(pages::sign_out))
        .route("/assets/app.css", get(assets::stylesheet))
        .layer(middleware::map_response(headers::secure))
}
