//! The operator's dashboard at `/`: server-rendered pages (askama templates, checked against their
//! Rust types at build time) and assets compiled into the binary, so it works offline.
//!
//! - `cookie`: the session cookie, read and written;
//! - `signed_in`: the extractor that turns a request's cookie into the API's [`Caller`];
//! - `forms`: the checks on every mutating request (same origin, the session's CSRF token);
//! - `headers`: the security headers every page carries;
//! - `chrome`: what frames every signed-in page (who, navigation, sign-out);
//! - `pages`: sign-in and sign-out; `instances`: the instances table and its buttons, with
//!   `rows` (one instance as a row) and `instance_form` (the create form and its errors);
//!   `instance_page`: one instance (definition, command line, live log, history), with
//!   `playground` (a chat with it, streamed) and `usage_chart` (its requests and tokens over
//!   time, as SVG bars);
//!   `keys`: the keys page (list, create with the secret shown once, revoke);
//!   `activity`: recent requests and usage per key, instance and day;
//!   `system`: versions, devices, running against the limit, memory;
//!   `live`: the event stream the pages' script listens to;
//! - `templates`: what they render (the HTML is in the crate's `templates/`); `assets`: the
//!   stylesheet and the script.
//!
//! The routes are HTML for people, not API: they are left out of the OpenAPI document.
//!
//! [`Caller`]: crate::auth::Caller

mod activity;
mod assets;
mod chrome;
mod cookie;
mod forms;
mod headers;
mod instance_form;
mod instance_page;
mod instances;
mod keys;
mod live;
mod pages;
mod playground;
mod rows;
mod signed_in;
mod system;
mod templates;
mod usage_chart;

use crate::http::AppState;
use axum::routing::{get, post};
use axum::{middleware, Router};

/// The dashboard's routes, each answer with the security headers.
pub fn router(_state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(instances::list))
        .route("/sign-in", get(pages::sign_in_form).post(pages::sign_in))
        .route("/sign-out", post(pages::sign_out))
        .route("/ui/events", get(live::events))
        .route(
            "/instances/new",
            get(instances::new_form).post(instances::create),
        )
        .route("/instances/{name}", get(instance_page::show))
        .route("/instances/{name}/row", get(instances::row))
        .route("/instances/{name}/log", get(instance_page::log))
        .route("/instances/{name}/chat", post(playground::chat))
        .route(
            "/instances/{name}/edit",
            get(instances::edit_form).post(instances::edit),
        )
        .route("/instances/{name}/{operation}", post(instances::operate))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/system", get(system::show))
        .route("/activity", get(activity::show))
        .route("/assets/app.css", get(assets::stylesheet))
        .route("/assets/app.js", get(assets::script))
        .layer(middleware::map_response(headers::secure))
}
