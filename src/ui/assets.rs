//! The dashboard's static files, compiled into the binary: no CDN, nothing read from disk.

use axum::http::header;
use axum::response::IntoResponse;

/// The stylesheet.
const APP_CSS: &str = include_str!("assets/app.css");

/// The one script: confirmations, live rows from the event stream, the log viewer, copy buttons.
/// Hand-written and small, so there is no build step and nothing fetched from elsewhere.
const APP_JS: &str = include_str!("assets/app.js");

/// `GET /assets/app.css`.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            // Changes only with the binary; an hour keeps page loads quick without going stale long.
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        APP_CSS,
    )
}

/// `GET /assets/app.js`.
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        APP_JS,
    )
}
