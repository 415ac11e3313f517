//! How llamactl's allocator gives memory back.
//!
//! Each argon2id verification of a stored key (a wrong key costs one too) allocates about 19 MiB
//! and frees it some 40 ms later, on a thread of the blocking pool. glibc's malloc maps a block
//! that large on its own at first, but each such free raises its mmap threshold above the block's
//! size (up to 32 MiB), so the next ones come from the thread's arena and stay there once freed.
//! The blocking pool's threads come and go, so up to 8 arenas per core each kept about 58 MiB: a
//! server idle at 10 MiB stood at 500+ MiB after a minute of key checks (found by `make soak`).
//! A fixed threshold turns that adjustment off: large blocks are mapped and unmapped every time.

/// Allocations of at least this many bytes are mapped on their own and unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Makes large allocations go back to the system when freed (glibc's malloc; a no-op elsewhere).
/// Call it first thing in `main`, before other threads exist.
pub fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: sets one of malloc's parameters; no memory is touched, and no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
