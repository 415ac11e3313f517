//! The process's open-file limit: raised from its soft value to its hard one at startup, as nginx
//! (`worker_rlimit_nofile`) and Go's runtime do, since every client connection takes a descriptor.

/// Raises the soft open-file limit to the hard limit; the limit in force afterwards.
pub fn raise() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
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
    Ok(limit.rlim_cur)
}
