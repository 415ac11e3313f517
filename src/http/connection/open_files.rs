//! The process's open-file limit: raised from its soft value to its hard one at startup, as nginx
//! (`worker_rlimit_nofile`) and Go's runtime do, since every client connection takes a descriptor.
//! systemd gives services a soft limit of 1024 and a hard one of 524288 by default: without the
//! raise, about a thousand open streams would exhaust llamactl.

/// The open-file limit before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The soft limit llamactl was started with.
    pub was: u64,
    /// The soft limit in force now: how many descriptors llamactl may hold.
    pub soft: u64,
    /// The hard limit: the most the soft one can be raised to.
    pub hard: u64,
}

/// The soft limit llamactl was started with, once [`raise`] has run (0 before).
static STARTED_WITH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The limits a backend process gets: the soft limit llamactl was started with, as Go's `os/exec`
/// restores it, since a program may size tables by it or use `select()`, which breaks on
/// descriptors past 1024; `None` when it was not raised.
pub fn for_children() -> Option<libc::rlimit> {
    let soft = STARTED_WITH.load(std::sync::atomic::Ordering::Relaxed);
    let now = read().ok()?;
    (soft != 0 && soft < now.rlim_cur).then_some(libc::rlimit {
        rlim_cur: soft,
        ..now
    })
}

/// The soft and hard open-file limits now.
fn read() -> std::io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit)
}

/// The soft open-file limit in force now, if it can be read.
pub fn current() -> Option<u64> {
    read().ok().map(|limit| limit.rlim_cur)
}

/// Raises the soft open-file limit to the hard limit; the budget before and after.
pub fn raise() -> std::io::Result<Budget> {
    let mut limit = read()?;
    let was = limit.rlim_cur;
    STARTED_WITH.store(was, std::sync::atomic::Ordering::Relaxed);
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            ..limit
        };
        // SAFETY: setrlimit reads only the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(error = %e, soft = limit.rlim_cur, hard = limit.rlim_max,
                "cannot raise the open-file limit");
        } else {
            limit = raised;
        }
    }
    Ok(Budget {
        was,
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}
