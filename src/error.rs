//! The one error type of the crate, and how it maps onto the API's status codes and `{"error": "..."}` body.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Crate-wide result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure a request or the supervisor can meet, each with its HTTP meaning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid input: malformed JSON, bad names, bad options (400).
    #[error("{0}")]
    BadRequest(String),
    /// Missing, unknown, expired or revoked key (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid key of the wrong kind or scope (403).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown instance or route (404).
    #[error("{0}")]
    NotFound(String),
    /// A route that exists, called with a method it does not take (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Duplicate name, limit reached, port taken (409).
    #[error("{0}")]
    Conflict(String),
    /// A request body that stopped arriving (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// Body larger than the route accepts (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Body with the wrong content type (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many failed attempts (429); the client may try again after `retry_after` seconds.
    #[error("{message}")]
    TooManyRequests {
        /// What the client sees.
        message: String,
        /// Seconds until the next attempt is allowed, sent as `Retry-After`.
        retry_after: u64,
    },
    /// The backend could not be reached or answered garbage (502).
    #[error("{0}")]
    BadGateway(String),
    /// The backend sent nothing in time (504).
    #[error("{0}")]
    GatewayTimeout(String),
    /// Instance not running, or a cold start timed out (503).
    #[error("{0}")]
    Unavailable(String),
    /// An instance could not be started: its backend could not be spawned, or (for a request
    /// that waits for it) exited before it was ready (500, "Failed to start instance" in the API
    /// reference). The reason may quote the backend's log, so only operators see it (see
    /// `Caller::shield`).
    #[error("failed to start instance '{instance}': {reason}")]
    StartFailed {
        /// The instance.
        instance: String,
        /// Why, with the last lines of its log.
        reason: String,
    },
    /// A failure whose message is safe and useful to show (500), e.g. a backend that cannot be spawned.
    #[error("{0}")]
    Failed(String),
    /// Database failure; details are logged, never sent.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migration failure at startup.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// File-system failure on a known path: `cannot <op> <path>: <cause>`; logged, never sent.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `create data directory`.
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// File-system failure where no path is at hand; details are logged, never sent.
    #[error("i/o error: {0}")]
    IoUnnamed(#[from] std::io::Error),
    /// Any other internal failure; details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Error::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::StartFailed { .. }
            | Error::Failed(_)
            | Error::Database(_)
            | Error::Migrate(_)
            | Error::Io { .. }
            | Error::IoUnnamed(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// An I/O failure of `op` (e.g. `create data directory`) on `path`.
    pub fn io(
        op: &'static str,
        path: impl Into<std::path::PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The answer to a request whose body stopped arriving.
    pub fn body_stalled() -> Self {
        Error::RequestTimeout(
            "the request body stopped arriving (server.request_body_timeout)".to_string(),
        )
    }

    /// The message a client may see: internal details stay in the log.
    fn public_message(&self) -> String {
        match self {
            Error::Database(_)
            | Error::Migrate(_)
            | Error::Io { .. }
            | Error::IoUnnamed(_)
            | Error::Internal(_) => "internal server error".to_string(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = axum::Json(json!({ "error": self.public_message() }));
        match self {
            Error::TooManyRequests { retry_after, .. } => {
                (status, [(header::RETRY_AFTER, retry_after)], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}

/// Work on the blocking pool that panicked (or was cancelled).
impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(format!("background task failed: {e}"))
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let text = rejection.body_text();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge(text),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType(
                "expected a JSON body with 'Content-Type: application/json'".to_string(),
            ),
            _ => Error::BadRequest(text),
        }
    }
}

impl From<BytesRejection> for Error {
    fn from(rejection: BytesRejection) -> Self {
        if crate::http::connection::body_stalled(&rejection) {
            return Error::body_stalled();
        }
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Error::PayloadTooLarge(format!("request body too large: {}", rejection.body_text()))
            }
            _ => Error::BadRequest(rejection.body_text()),
        }
    }
}

impl From<PathRejection> for Error {
    fn from(rejection: PathRejection) -> Self {
        Error::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for Error {
    fn from(rejection: QueryRejection) -> Self {
        Error::BadRequest(rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_are_not_sent() {
        let err = Error::Internal("secret path /etc/x".into());
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.public_message(), "internal server error");
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let response = Error::TooManyRequests {
            message: "slow down".into(),
            retry_after: 7,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn io_errors_name_the_operation_and_path_but_clients_see_neither() {
        let source = std::io::Error::from_raw_os_error(libc::ENOTDIR);
        let err = Error::io("create data directory", "/etc/passwd/x", source);
        assert!(
            err.to_string()
                .starts_with("cannot create data directory /etc/passwd/x: Not a directory"),
            "{err}"
        );
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.public_message(), "internal server error");
    }

    #[test]
    fn client_errors_keep_their_message() {
        let err = Error::Conflict("instance 'a' already exists".into());
        assert_eq!(err.status(), StatusCode::CONFLICT);
        assert_eq!(err.public_message(), "instance 'a' already exists");
    }
}
