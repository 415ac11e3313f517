//! A running child: its PID, a reaper that waits for its exit, and the stop sequence.

use super::process::signal_group;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::sync::oneshot;

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit(pub String);

impl Exit {
    fn from_status(status: std::io::Result<ExitStatus>) -> Self {
        Exit(match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => "exited".to_string(),
            },
            Err(e) => format!("could not be waited for: {e}"),
        })
    }
}

/// A spawned child that is reaped by a blocking waiter as soon as it exits.
#[derive(Debug)]
pub struct ChildProc {
    pid: u32,
    exit_rx: oneshot::Receiver<Exit>,
    exit: Option<Exit>,
}

impl ChildProc {
    /// Takes over a spawned child and starts its reaper.
    pub fn adopt(mut child: std::process::Child) -> Self {
        let pid = child.id();
        let (tx, exit_rx) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Exit::from_status(child.wait()));
        });
        ChildProc {
            pid,
            exit_rx,
            exit: None,
        }
    }

    /// The child's PID (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit; safe to cancel and call again.
    pub async fn wait(&mut self) -> Exit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        let exit = (&mut self.exit_rx)
            .await
            .unwrap_or_else(|_| Exit("reaper vanished".into()));
        self.exit = Some(exit.clone());
        exit
    }

    /// SIGKILL to the group at once (for a process that cannot be asked), and waits until the
    /// child is reaped.
    pub async fn kill(mut self) -> Exit {
        signal_group(i64::from(self.pid), libc::SIGKILL);
        self.wait().await
    }

    /// SIGTERM to the group, SIGKILL after `grace`, and waits until the child is reaped.
    pub async fn terminate(mut self, grace: Duration) -> Exit {
        if self.exit.is_none() {
            signal_group(i64::from(self.pid), libc::SIGTERM);
            if tokio::time::timeout(grace, self.wait()).await.is_err() {
                tracing::warn!(pid = self.pid, "child ignored SIGTERM; sending SIGKILL");
                signal_group(i64::from(self.pid), libc::SIGKILL);
            }
        }
        let exit = self.wait().await;
        // Anything the child left in its group goes too.
        signal_group(i64::from(self.pid), libc::SIGKILL);
        exit
    }
}
