//! Processes the bench starts (llamactl, nginx, a bare llama-server): each is stopped when its guard
//! drops, so an error, a panic or Ctrl-C leaves nothing running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process that is sent SIGTERM (then SIGKILL after `grace`) and reaped on drop.
pub struct Guard {
    name: String,
    child: Option<Child>,
    grace: Duration,
}

impl Guard {
    /// Spawns `cmd`; the child also gets SIGTERM if the bench itself dies without unwinding.
    pub fn spawn(name: &str, mut cmd: Command, grace: Duration) -> Guard {
        // SAFETY: prctl only sets a flag on the new process; it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Guard {
            name: name.to_string(),
            child: Some(child),
            grace,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// The child's piped stderr, taken once.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }

    /// True while the child has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// SIGTERM, wait up to the grace period, SIGKILL, reap.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: signals our own child, which has not been reaped yet (so the pid is still ours).
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("bench: {} did not stop in time; killing it", self.name);
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `cmd` as `name` (stopped within `grace`), with the soft open-file limit `soft_files` if
/// one is given (the hard one left as is), and waits up to `boot` for it to print `marker` and
/// then the address it listens on, on stderr.
pub fn start_listening(
    name: &str,
    mut cmd: Command,
    soft_files: Option<u64>,
    grace: Duration,
    marker: &'static str,
    boot: Duration,
) -> (Guard, SocketAddr) {
    cmd.stderr(Stdio::piped());
    if let Some(soft) = soft_files {
        // SAFETY: between fork and exec only getrlimit/setrlimit run; nothing allocates.
        unsafe { cmd.pre_exec(move || crate::open_files::lower_soft(soft)) };
    }
    let mut guard = Guard::spawn(name, cmd, grace);
    let stderr = guard.take_stderr().expect("stderr is piped");
    // The rest of its stderr (errors such as a client gone mid-stream) goes to BENCH_LOG.
    let addr = wait_for_line(stderr, marker, boot)
        .unwrap_or_else(|| panic!("{name} did not report its address within {boot:?}"));
    let addr = addr
        .parse()
        .unwrap_or_else(|e| panic!("{name} printed {addr:?}, not a socket address: {e}"));
    (guard, addr)
}

/// Reads `stderr` on a thread to its end (appending it to `$BENCH_LOG` if set) and returns the
/// text after `marker` on the first line that has it, or `None` if the stream ends or `timeout`
/// passes first.
pub fn wait_for_line(
    stderr: impl Read + Send + 'static,
    marker: &'static str,
    timeout: Duration,
) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    // BENCH_LOG=<file> keeps every line (e.g. llamactl's errors behind a 502) for after the run.
    let mut log = std::env::var("BENCH_LOG").ok().and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = log.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            if !sent {
                if let Some(rest) = line.split(marker).nth(1) {
                    let _ = tx.send(rest.trim().to_string());
                    sent = true;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
        }
    });
    rx.recv_timeout(timeout).ok()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A command whose stdout goes nowhere (the bench prints the table there).
pub fn quiet(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

/// A process's resident memory in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
