//! Process identity on Linux: a PID plus its start time and the boot it belongs to, so that a PID the
//! kernel handed to someone else is never signalled as if it were our child.

use crate::db::instances::ProcessMark;
use std::time::{Duration, Instant};

/// The current kernel boot id, or an empty string where the kernel does not say.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `/proc/<pid>/stat`: the state letter and start time (field 22), if the process exists.
fn stat(pid: i64) -> Option<(char, i64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After ')' come fields 3.. ; starttime is field 22, i.e. the 20th here (index 19).
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Marks a freshly spawned process so it can be recognised later.
pub fn mark(pid: u32, boot_id: &str) -> Option<ProcessMark> {
    let (_, start_ticks) = stat(i64::from(pid))?;
    Some(ProcessMark {
        pid: i64::from(pid),
        start_ticks,
        boot_id: boot_id.to_string(),
    })
}

/// True while the marked process is still the same, living process (a zombie counts as gone).
pub fn is_alive(mark: &ProcessMark, current_boot: &str) -> bool {
    if mark.boot_id != current_boot || mark.pid <= 1 {
        return false;
    }
    matches!(stat(mark.pid), Some((state, start)) if start == mark.start_ticks && state != 'Z' && state != 'X')
}

/// Sends a signal to a whole process group; a group that is already gone is fine.
pub fn signal_group(pgid: i64, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Ends a child left behind by a killed predecessor: SIGTERM to its group, then SIGKILL after `grace`.
/// Returns true if such a process was found.
pub async fn end_orphan(mark: &ProcessMark, current_boot: &str, grace: Duration) -> bool {
    if !is_alive(mark, current_boot) {
        return false;
    }
    signal_group(mark.pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while is_alive(mark, current_boot) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if is_alive(mark, current_boot) {
        signal_group(mark.pid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_alive(mark, current_boot) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_recognises_this_process() {
        let boot = boot_id();
        let me = mark(std::process::id(), &boot).expect("own stat");
        assert!(is_alive(&me, &boot));
        let reused = ProcessMark {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(
            !is_alive(&reused, &boot),
            "a different start time is another process"
        );
        let other_boot = ProcessMark {
            boot_id: "another-boot".into(),
            ..me
        };
        assert!(!is_alive(&other_boot, &boot));
    }
}
