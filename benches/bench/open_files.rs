//! The open-file limit of the bench and of what it starts: thousands of streams take thousands of
//! descriptors in the client, in each proxy and in the backend.

use std::io;

fn get() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

fn set(limit: &libc::rlimit) -> io::Result<()> {
    // SAFETY: setrlimit reads only the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The hard limit.
pub fn hard() -> io::Result<u64> {
    get().map(|l| l.rlim_max)
}

/// Raises this process's soft limit to its hard limit; the soft limit in force afterwards.
pub fn raise() -> io::Result<u64> {
    let limit = get()?;
    set(&libc::rlimit {
        rlim_cur: limit.rlim_max,
        ..limit
    })?;
    Ok(limit.rlim_max)
}

/// Lowers this process's soft limit to `soft` (the hard limit stays): what a systemd service gets
/// by default (1024), for a child that must raise its own. Safe to call between fork and exec
/// (two system calls, no allocation).
pub fn lower_soft(soft: u64) -> io::Result<()> {
    let limit = get()?;
    set(&libc::rlimit {
        rlim_cur: soft.min(limit.rlim_max),
        ..limit
    })
}
