//! `/api/v1/version` and `/api/v1/server/*`: what this server and the backend binary are.

use super::openapi::ErrorBody;
use super::AppState;
use crate::error::{Error, Result};
use axum::extract::State;
use std::time::Duration;

/// `Version:/Commit:/Build Time:` as plain text.
#[utoipa::path(get, path = "/api/v1/version", tag = "System",
    responses((status = 200, description = "`Version:`, `Commit:` and `Build Time:` lines", body = String, content_type = "text/plain")))]
pub async fn version() -> String {
    format!(
        "Version: {}\nCommit: {}\nBuild Time: {}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("LLAMACTL_COMMIT").unwrap_or("unknown"),
        option_env!("LLAMACTL_BUILD_TIME").unwrap_or("unknown"),
    )
}

/// `llama-server --help`.
#[utoipa::path(get, path = "/api/v1/server/help", tag = "System",
    responses((status = 200, description = "What `llama-server --help` printed", body = String, content_type = "text/plain"),
        (status = 500, description = "The backend could not be run", body = ErrorBody)))]
pub async fn help(State(state): State<AppState>) -> Result<String> {
    run_backend(&state, "--help").await
}

/// `llama-server --version`.
#[utoipa::path(get, path = "/api/v1/server/version", tag = "System",
    responses((status = 200, description = "What `llama-server --version` printed", body = String, content_type = "text/plain"),
        (status = 500, description = "The backend could not be run", body = ErrorBody)))]
pub async fn backend_version(State(state): State<AppState>) -> Result<String> {
    run_backend(&state, "--version").await
}

/// `llama-server --list-devices`.
#[utoipa::path(get, path = "/api/v1/server/devices", tag = "System",
    responses((status = 200, description = "What `llama-server --list-devices` printed", body = String, content_type = "text/plain"),
        (status = 500, description = "The backend could not be run", body = ErrorBody)))]
pub async fn devices(State(state): State<AppState>) -> Result<String> {
    run_backend(&state, "--list-devices").await
}

/// Runs the backend resolved at startup (with its configured leading args and the environment every
/// child starts from) with one flag and returns what it printed (stdout, then stderr).
pub(crate) async fn run_backend(state: &AppState, flag: &str) -> Result<String> {
    let backend = &state.backend;
    let program = backend.program().map_err(Error::Failed)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(backend.args())
        .arg(flag)
        .env_clear()
        .envs(backend.environment(None))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| {
            Error::Failed(format!(
                "'{} {flag}' did not finish within 30 s",
                backend.configured()
            ))
        })?
        .map_err(|e| Error::Failed(format!("failed to run '{}': {e}", backend.configured())))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(text)
}
