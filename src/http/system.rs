//! `/api/v1/version` and `/api/v1/server/*`: what this server and the backend binary are.

use super::AppState;
use crate::error::{Error, Result};
use axum::extract::State;
use std::time::Duration;

/// `Version:/Commit:/Build Time:` as plain text.
pub async fn version() -> String {
    format!(
        "Version: {}\nCommit: {}\nBuild Time: {}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("LLAMACTL_COMMIT").unwrap_or("unknown"),
        option_env!("LLAMACTL_BUILD_TIME").unwrap_or("unknown"),
    )
}

/// `llama-server --help`.
pub async fn help(State(state): State<AppState>) -> Result<String> {
    run_backend(&state, "--help").await
}

/// `llama-server --version`.
pub async fn backend_version(State(state): State<AppState>) -> Result<String> {
    run_backend(&state, "--version").await
}

/// `llama-server --list-devices`.
pub async fn devices(State(state): State<AppState>) -> Result<String> {
    run_backend(&state, "--list-devices").await
}

/// Runs the configured backend (with its configured leading args) with one flag and returns what it
/// printed (stdout, then stderr).
async fn run_backend(state: &AppState, flag: &str) -> Result<String> {
    let backend = &state.cfg.backends.llama_cpp;
    let mut cmd = tokio::process::Command::new(&backend.command);
    cmd.args(&backend.args)
        .arg(flag)
        .envs(&backend.environment)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| {
            Error::Failed(format!(
                "'{} {flag}' did not finish within 30 s",
                backend.command
            ))
        })?
        .map_err(|e| Error::Failed(format!("failed to run '{}': {e}", backend.command)))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(text)
}
