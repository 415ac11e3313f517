//! The Go reference proxy (`benches/goproxy`, built into `target/goproxy` by `make goproxy`): a
//! plain `httputil.ReverseProxy`, the proxy core of the Go llamactl and of llama-swap, run as a
//! child the bench owns. Optional: without Go, `make bench` leaves this side out.

use crate::procs::{self, Guard};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long it may take to print its address.
const BOOT: Duration = Duration::from_secs(10);

/// A running Go proxy in front of one backend.
pub struct GoProxy {
    _guard: Guard,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl GoProxy {
    /// Starts the Go proxy `binary` on a free loopback port in front of `upstream`. With
    /// `soft_files`, it starts with that soft open-file limit (the hard one left as is) and must
    /// raise its own, as Go's runtime does since Go 1.19.
    pub fn start(binary: &Path, upstream: SocketAddr, soft_files: Option<u64>) -> GoProxy {
        let mut cmd = procs::quiet(&binary.display().to_string());
        cmd.arg("-listen")
            .arg("127.0.0.1:0")
            .arg("-upstream")
            .arg(format!("http://{upstream}"));
        let grace = Duration::from_secs(5);
        let (guard, addr) =
            procs::start_listening("go proxy", cmd, soft_files, grace, "listening on ", BOOT);
        GoProxy {
            _guard: guard,
            addr,
        }
    }
}

/// The Go version `binary` was built with, e.g. `go1.19.8`, or None if it does not run.
pub fn version(binary: &Path) -> Option<String> {
    let out = Command::new(binary).arg("-version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().last().map(str::to_string)
}
