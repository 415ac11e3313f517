//! What the pages render: one struct per template in the crate's `templates/`, so a template that names a
//! field the struct lacks does not compile. askama escapes every value for HTML.

use crate::error::Error;
use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// The sign-in form.
#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// The landing page of a signed-in viewer.
#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    /// Whose key it is.
    pub name: String,
    /// `management` or `inference`.
    pub kind: String,
    /// Which instances the key reaches, in words.
    pub scope: String,
    /// When the session ends (RFC 3339), if it is a session.
    pub expires: Option<String>,
    /// The session's CSRF token for the sign-out form, if it is a session.
    pub csrf: Option<String>,
    /// llamactl's version.
    pub version: &'static str,
}

/// A refusal or failure, as a page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    reason: &'static str,
    message: String,
}

/// Renders a page with `status`.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => PageError(Error::Internal(format!("cannot render a page: {e}"))).into_response(),
    }
}

/// An [`Error`] shown as a page, with the status and message the API would give.
#[derive(Debug)]
pub struct PageError(pub Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status.is_server_error() {
            tracing::error!(error = %self.0, "dashboard request failed");
        }
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message: self.0.public_message(),
        };
        let html = page.render().unwrap_or_else(|_| page.message.clone());
        let mut response = (status, Html(html)).into_response();
        if let Error::TooManyRequests { retry_after, .. } = self.0 {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after.into());
        }
        response
    }
}
