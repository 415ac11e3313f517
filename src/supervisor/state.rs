//! What an instance is doing right now (runtime only; the database holds what it *should* do).

use serde::Serialize;

/// Lifecycle status as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No process.
    #[default]
    Stopped,
    /// Process spawned, `/health` not yet 200.
    Starting,
    /// `/health` answered 200: ready to serve.
    Running,
    /// Being stopped.
    Stopping,
    /// Crashed or asked to restart; a new process follows.
    Restarting,
    /// Could not start, or crashed more often than allowed.
    Failed,
}

impl Status {
    /// True while the instance holds (or is about to hold) a process and a port.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Status::Starting | Status::Running | Status::Restarting
        )
    }
}

/// The runtime picture of one instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeState {
    /// Status.
    pub status: Status,
    /// Port of the current process.
    pub port: Option<u16>,
    /// PID of the current process.
    pub pid: Option<u32>,
    /// Restarts in a row after crashes.
    pub restarts: u32,
    /// Why the last start or run failed.
    pub last_error: Option<String>,
}
