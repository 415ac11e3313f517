//! The one error type of the crate, and how it maps onto the API's status codes and `{"error": "..."}` body.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Seconds a client is told to wait (`Retry-After`) when the database is locked by another process.
pub const DATABASE_BUSY_RETRY_AFTER: u64 = 2;

/// SQLite's primary result codes for a lock held elsewhere (`SQLITE_BUSY`, `SQLITE_LOCKED`) and
/// for a full disk (`SQLITE_FULL`); extended codes carry them in their low byte.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_FULL: i32 = 13;

/// A full disk or a locked database fails every write the same way: one log line a minute says so.
static STORAGE_FULL_LOG: crate::throttle::LogThrottle =
    crate::throttle::LogThrottle::new(Duration::from_secs(60));
static DATABASE_BUSY_LOG: crate::throttle::LogThrottle =
    crate::throttle::LogThrottle::new(Duration::from_secs(60));

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
    /// A key's quota is used up (429, with `Retry-After` and the `x-ratelimit-*` headers).
    #[error("{}", .0.message())]
    QuotaExceeded(Box<crate::quota::Refusal>),
    /// The backend could not be reached or answered garbage (502).
    #[error("{0}")]
    BadGateway(String),
    /// The backend sent nothing in time (504).
    #[error("{0}")]
    GatewayTimeout(String),
    /// Instance not running, or a cold start timed out (503).
    #[error("{0}")]
    Unavailable(String),
    /// A request queue that is full or was waited in too long (503); the client may try again after
    /// `retry_after` seconds.
    #[error("{message}")]
    QueueRefused {
        /// What the client sees.
        message: String,
        /// Seconds to wait before trying again, sent as `Retry-After`.
        retry_after: u64,
    },
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
    /// A write failed for lack of space or quota: ENOSPC, EDQUOT or SQLite's `SQLITE_FULL` (507).
    /// Nothing was changed; writes work again once space is freed.
    #[error(
        "insufficient storage: no space left on the device holding {place}; nothing was changed \
         (free some space there: llamactl recovers by itself)"
    )]
    StorageFull {
        /// The directory, for a person: `the database directory /var/lib/llamactl`.
        place: String,
        /// The failed operation and the system's words, for the log.
        cause: String,
    },
    /// The database stayed locked by another process for longer than the busy timeout (503, with
    /// `Retry-After`).
    #[error(
        "the database is locked by another process (a sqlite3 shell or a copy holding a write \
         lock?); nothing was changed, try again shortly (`llamactl backup` copies the database \
         without locking it)"
    )]
    DatabaseBusy,
    /// Database failure; details are logged, never sent.
    #[error("database error: {0}")]
    Database(sqlx::Error),
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
    IoUnnamed(std::io::Error),
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
            Error::TooManyRequests { .. } | Error::QuotaExceeded(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Error::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Error::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Unavailable(_) | Error::QueueRefused { .. } | Error::DatabaseBusy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::StorageFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
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
        let path = path.into();
        if is_storage_full(&source) {
            // A file's directory is what an operator frees space in.
            let dir = match path.parent() {
                Some(parent) if !path.is_dir() && !parent.as_os_str().is_empty() => parent,
                _ => &path,
            };
            return Error::StorageFull {
                place: format!("directory {}", dir.display()),
                cause: format!("cannot {op} {}: {source}", path.display()),
            };
        }
        Error::Io { op, path, source }
    }

    /// A failed query on the database in `dir` (`None` when unknown): a lock held elsewhere, a full
    /// disk, or another database failure.
    pub fn database(e: sqlx::Error, dir: Option<&Path>) -> Self {
        let full = |cause: String| Error::StorageFull {
            place: dir.map_or_else(
                || "the database directory".to_string(),
                |d| format!("the database directory {}", d.display()),
            ),
            cause,
        };
        match &e {
            sqlx::Error::Database(db) => {
                let primary = db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map(|c| c & 0xff);
                match primary {
                    Some(SQLITE_BUSY | SQLITE_LOCKED) => Error::DatabaseBusy,
                    Some(SQLITE_FULL) => full(e.to_string()),
                    _ => Error::Database(e),
                }
            }
            // Every connection waited out its busy timeout behind the same lock.
            sqlx::Error::PoolTimedOut => Error::DatabaseBusy,
            sqlx::Error::Io(io) if is_storage_full(io) => full(e.to_string()),
            _ => Error::Database(e),
        }
    }

    /// The answer to a request whose body stopped arriving.
    pub fn body_stalled() -> Self {
        Error::RequestTimeout(
            "the request body stopped arriving (server.request_body_timeout)".to_string(),
        )
    }

    /// The message a client may see: internal details stay in the log.
    pub(crate) fn public_message(&self) -> String {
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
        match &self {
            Error::StorageFull { place, cause } => {
                if let Some(held_back) = STORAGE_FULL_LOG.due() {
                    tracing::error!(%place, %cause, held_back, "disk full: writes are refused (507) until space is freed");
                }
            }
            Error::DatabaseBusy => {
                if let Some(held_back) = DATABASE_BUSY_LOG.due() {
                    tracing::warn!(
                        held_back,
                        "database locked by another process: writes are refused (503)"
                    );
                }
            }
            _ if status.is_server_error() => tracing::error!(error = %self, "request failed"),
            _ => {}
        }
        let body = axum::Json(json!({ "error": self.public_message() }));
        match self {
            Error::TooManyRequests { retry_after, .. }
            | Error::QueueRefused { retry_after, .. } => {
                (status, [(header::RETRY_AFTER, retry_after)], body).into_response()
            }
            Error::QuotaExceeded(refusal) => {
                let mut response =
                    (status, [(header::RETRY_AFTER, refusal.retry_after)], body).into_response();
                refusal.standing.write(response.headers_mut());
                response
            }
            Error::DatabaseBusy => (
                status,
                [(header::RETRY_AFTER, DATABASE_BUSY_RETRY_AFTER)],
                body,
            )
                .into_response(),
            _ => (status, body).into_response(),
        }
    }
}

/// True when an I/O error means the disk (or the user's quota) is full.
pub fn is_storage_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// A query failure where the database's directory is not at hand (`Db` names it where it can).
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::database(e, None)
    }
}

/// An I/O failure where no path is at hand; a full disk is still a full disk.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if is_storage_full(&e) {
            return Error::StorageFull {
                place: "a directory llamactl writes to".to_string(),
                cause: e.to_string(),
            };
        }
        Error::IoUnnamed(e)
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

    /// A database failure with SQLite's (extended) result `code`.
    #[derive(Debug)]
    struct Sqlite(i32);

    impl std::fmt::Display for Sqlite {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "(code: {}) test", self.0)
        }
    }

    impl std::error::Error for Sqlite {}

    impl sqlx::error::DatabaseError for Sqlite {
        fn message(&self) -> &str {
            "test"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.to_string().into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn sqlite(code: i32) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Sqlite(code)))
    }

    #[test]
    fn a_full_disk_is_507_naming_the_directory_whatever_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.log");
        let cases = [
            Error::io(
                "open instance log",
                &file,
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ),
            Error::io(
                "create slot directory",
                dir.path(),
                std::io::Error::from_raw_os_error(libc::EDQUOT),
            ),
            Error::database(sqlite(13), Some(dir.path())),
            Error::database(
                sqlx::Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC)),
                Some(dir.path()),
            ),
        ];
        for err in cases {
            assert_eq!(err.status(), StatusCode::INSUFFICIENT_STORAGE, "{err:?}");
            let message = err.public_message();
            assert!(message.contains("no space left"), "{message}");
            assert!(
                message.contains(&dir.path().display().to_string()),
                "{message}"
            );
            assert!(
                !message.contains("m.log"),
                "the directory, not the file: {message}"
            );
        }
    }

    #[test]
    fn a_database_locked_elsewhere_is_503_with_retry_after() {
        // SQLITE_BUSY, SQLITE_LOCKED, and SQLITE_BUSY_SNAPSHOT (an extended code).
        for code in [5, 6, 517] {
            let err = Error::database(sqlite(code), None);
            assert!(matches!(err, Error::DatabaseBusy), "code {code}: {err:?}");
            assert!(err.public_message().contains("locked by another process"));
            let response = err.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response.headers()[header::RETRY_AFTER],
                DATABASE_BUSY_RETRY_AFTER.to_string().as_str()
            );
        }
        let other = Error::from(sqlite(1));
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(other.public_message(), "internal server error");
    }

    #[test]
    fn client_errors_keep_their_message() {
        let err = Error::Conflict("instance 'a' already exists".into());
        assert_eq!(err.status(), StatusCode::CONFLICT);
        assert_eq!(err.public_message(), "instance 'a' already exists");
    }
}
