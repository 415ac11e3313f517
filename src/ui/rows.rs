//! One instance as a row of the dashboard's table: what the API's view says, plus what only the
//! runtime knows (requests in flight, when it was last used, when its process started).

use crate::supervisor::Handle;

/// A table row.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    /// Instance name (also the row's id: names are `[A-Za-z0-9._-]`).
    pub name: String,
    /// Lifecycle status.
    pub status: String,
    /// Port of the running backend, or the fixed port of a stopped one.
    pub port: Option<u16>,
    /// PID of the backend, while there is one.
    pub pid: Option<u32>,
    /// Unix seconds when the backend process started, while there is one.
    pub started_at: Option<i64>,
    /// Restarts in a row after crashes.
    pub restarts: u32,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Unix seconds of the last request (or start).
    pub last_used_at: i64,
    /// Why the last start or run failed.
    pub last_error: Option<String>,
    /// Holds (or is about to hold) a process: offer stop and restart rather than start.
    pub active: bool,
}

impl InstanceRow {
    /// The row of an instance now.
    pub fn of(inst: &Handle) -> InstanceRow {
        let state = inst.snapshot();
        let now = chrono::Utc::now().timestamp();
        let idle = i64::try_from(inst.idle_for().as_secs()).unwrap_or(i64::MAX);
        InstanceRow {
            name: inst.name.clone(),
            status: crate::names::name_of(&state.status),
            port: state.port.or(inst.spec().port),
            pid: state.pid,
            started_at: state
                .pid
                .and_then(crate::metrics::started_at)
                .map(|at| at as i64),
            restarts: state.restarts,
            in_flight: inst.in_flight(),
            last_used_at: now.saturating_sub(idle),
            last_error: state.last_error,
            active: state.status.is_active(),
        }
    }

    /// How long its process has run, in words, at render time (the page's script keeps it going).
    pub fn uptime(&self) -> String {
        self.started_at
            .map(|at| ago(chrono::Utc::now().timestamp() - at))
            .unwrap_or_default()
    }

    /// How long ago it was last used, in words.
    pub fn idle(&self) -> String {
        ago(chrono::Utc::now().timestamp() - self.last_used_at)
    }
}

/// `secs` as the page shows a span: `42s`, `3m 4s`, `2h 5m`, `3d 4h`.
pub fn ago(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans_read_as_the_script_writes_them() {
        let cases = [
            (-3, "0s"),
            (42, "42s"),
            (184, "3m 4s"),
            (7500, "2h 5m"),
            (273_600, "3d 4h"),
        ];
        for (secs, want) in cases {
            assert_eq!(super::ago(secs), want);
        }
    }
}
