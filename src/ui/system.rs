//! The system page (operators): llamactl's version and build, the backend's version and devices
//! (what `/api/v1/version` and `/api/v1/server/*` answer, by the same function), instances
//! running against the limit, and memory: llamactl's and each backend's resident size.

use super::chrome::Chrome;
use super::signed_in::SignedIn;
use super::templates::{render, PageError, ProcessLine, SystemPage};
use crate::http::system::run_backend;
use crate::http::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

/// `GET /system`.
pub async fn show(State(state): State<AppState>, viewer: SignedIn) -> Result<Response, PageError> {
    viewer.ensure_operator()?;
    // A backend that cannot run says why, in place of its answer.
    let (version, devices) = tokio::join!(
        run_backend(&state, "--version"),
        run_backend(&state, "--list-devices")
    );
    let text = |r: crate::error::Result<String>| r.unwrap_or_else(|e| e.public_message());
    let all = state.supervisor.list();
    let mut processes: Vec<ProcessLine> = all
        .iter()
        .filter_map(|inst| {
            let pid = inst.snapshot().pid?;
            Some(ProcessLine {
                name: inst.name.clone(),
                pid,
                memory: megabytes(crate::metrics::resident_bytes(pid)),
            })
        })
        .collect();
    processes.sort_by(|a, b| a.name.cmp(&b.name));
    let limits = &state.cfg.instances;
    let limit = |n: i64| {
        if n < 0 {
            "no limit".to_string()
        } else {
            n.to_string()
        }
    };
    Ok(render(
        StatusCode::OK,
        &SystemPage {
            chrome: Chrome::of(&viewer, "system"),
            version: env!("CARGO_PKG_VERSION"),
            commit: option_env!("LLAMACTL_COMMIT").unwrap_or("unknown"),
            build_time: option_env!("LLAMACTL_BUILD_TIME").unwrap_or("unknown"),
            backend: state.backend.configured().to_string(),
            backend_version: text(version).trim().to_string(),
            devices: text(devices).trim().to_string(),
            instances: all.len(),
            running: all
                .iter()
                .filter(|inst| inst.snapshot().status.is_active())
                .count(),
            max_instances: limit(limits.max_instances),
            max_running: limit(limits.max_running_instances),
            own_memory: megabytes(crate::metrics::own_resident_bytes()),
            processes,
        },
    ))
}

/// Bytes as the page shows them.
fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "unknown".into(),
        |b| format!("{:.1} MiB", b as f64 / 1_048_576.0),
    )
}
