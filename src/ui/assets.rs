//! The dashboard's static files, compiled into the binary: no CDN, nothing read from disk.

use axum::http::header;
use axum::response::IntoResponse;

/// The stylesheet.
const APP_CSS: &str = include_str!("assets/app.css");

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
