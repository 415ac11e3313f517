//! What the kernel says about a process, read from `/proc` at scrape time: resident memory, CPU time,
//! open descriptors and start time (the standard `process_*` metrics), and a backend's memory.

use std::path::Path;

/// One process's figures; `None` where `/proc` could not tell.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Sample {
    pub(super) resident_bytes: Option<u64>,
    pub(super) cpu_seconds: Option<f64>,
    pub(super) open_fds: Option<u64>,
    pub(super) start_time_seconds: Option<f64>,
}

/// llamactl itself.
pub(super) fn this_process() -> Sample {
    let dir = Path::new("/proc/self");
    let stat = std::fs::read_to_string(dir.join("stat")).ok();
    let fields = stat.as_deref().and_then(stat_fields);
    let ticks = clock_ticks();
    let cpu_seconds = fields.as_ref().and_then(|f| {
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        Some((utime + stime) / ticks?)
    });
    let start_time_seconds = fields.as_ref().and_then(|f| {
        let started: f64 = f.get(19)?.parse().ok()?;
        Some(boot_time()? + started / ticks?)
    });
    let open_fds = std::fs::read_dir(dir.join("fd"))
        .ok()
        .map(|entries| entries.count() as u64);
    Sample {
        resident_bytes: resident_bytes_of("self"),
        cpu_seconds,
        open_fds,
        start_time_seconds,
    }
}

/// When process `pid` started, in Unix seconds (for an instance's uptime).
pub(crate) fn started_at(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    let started: f64 = fields.get(19)?.parse().ok()?;
    Some(boot_time()? + started / clock_ticks()?)
}

/// Resident memory of llamactl itself.
pub(crate) fn own_resident_bytes() -> Option<u64> {
    resident_bytes_of("self")
}

/// Resident memory of process `pid`.
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    resident_bytes_of(&pid.to_string())
}

fn resident_bytes_of(pid: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size()?)
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and parentheses),
/// so that index 0 is the state (field 3 in proc(5)).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().collect())
}

fn page_size() -> Option<u64> {
    // SAFETY: sysconf reads a constant; no memory is touched.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: as above.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

/// Unix seconds the machine booted, from `/proc/stat`'s `btime`.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|t| t.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let sample = this_process();
        assert!(sample.resident_bytes.unwrap() > 1024 * 1024);
        assert!(sample.cpu_seconds.unwrap() >= 0.0);
        assert!(sample.open_fds.unwrap() >= 3);
        let now = chrono::Utc::now().timestamp() as f64;
        let started = sample.start_time_seconds.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started}"
        );
        assert!(resident_bytes(std::process::id()).is_some());
        assert_eq!(resident_bytes(u32::MAX), None);
    }

    #[test]
    fn the_command_name_may_hold_spaces_and_parentheses() {
        let fields = stat_fields("42 (a) b (c)) S 1 2 3").unwrap();
        assert_eq!(fields, ["S", "1", "2", "3"]);
    }
}
