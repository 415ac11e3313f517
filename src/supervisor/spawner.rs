//! Spawns children from one dedicated thread that lives as long as the server.
//!
//! Children ask the kernel to SIGKILL them when their parent dies (`PR_SET_PDEATHSIG`). The kernel ties
//! that to the *thread* that forked, so forking from a short-lived runtime thread could kill a healthy
//! child later; a single long-lived spawner thread avoids that.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// What to run.
#[derive(Debug)]
pub struct SpawnSpec {
    /// Executable, an absolute path (never looked up on a `PATH`).
    pub program: PathBuf,
    /// Arguments (an argv, never a shell string).
    pub args: Vec<String>,
    /// The child's whole environment: nothing else is inherited.
    pub env: BTreeMap<OsString, OsString>,
    /// Receives stdout and stderr.
    pub log: File,
}

struct Request {
    spec: SpawnSpec,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// Handle on the spawner thread.
#[derive(Debug)]
pub struct Spawner {
    tx: mpsc::Sender<Request>,
}

impl Spawner {
    /// Starts the spawner thread.
    pub fn start() -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("llamactl-spawner".into())
            .spawn(move || {
                for req in rx {
                    let _ = req.reply.send(spawn_now(req.spec));
                }
            })?;
        Ok(Spawner { tx })
    }

    /// Spawns a child in its own process group, stdout/stderr to its log.
    pub async fn spawn(&self, spec: SpawnSpec) -> io::Result<Child> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { spec, reply })
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        rx.await
            .map_err(|_| io::Error::other("spawner thread dropped the request"))?
    }
}

fn spawn_now(spec: SpawnSpec) -> io::Result<Child> {
    let parent = std::process::id();
    let stderr = spec.log.try_clone()?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(spec.log))
        .stderr(Stdio::from(stderr))
        .process_group(0);
    // The backend gets the open-file limit llamactl was started with, not the raised one.
    let open_files = crate::http::connection::open_files::for_children();
    // SAFETY: only async-signal-safe calls (prctl, getppid, setrlimit, _exit) run between fork
    // and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(limit) = &open_files {
                // Best effort: a backend with the raised limit still runs.
                libc::setrlimit(libc::RLIMIT_NOFILE, limit);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}
