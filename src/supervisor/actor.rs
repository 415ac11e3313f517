//! One task per instance owns its child process. Every start, stop, crash and restart goes through
//! it in order, so an instance can never run twice and no transition races another.

use super::child::{ChildProc, Exit};
use super::handle::Handle;
use super::health::{self, Liveness, Report};
use super::spawner::SpawnSpec;
use super::state::Status;
use super::{logs, process, Shared};
use crate::audit::{Actor, Event};
use crate::backends::llama_cpp;
use crate::definitions::options;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a backend gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A run that stayed ready this long resets the count of restarts in a row.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Log lines quoted when a backend fails.
const FAILURE_LOG_LINES: usize = 8;

/// Requests to an instance's actor.
#[derive(Debug)]
pub enum Command {
    /// Start if not running; reply once spawned.
    Start {
        /// Spawned, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop if running.
    Stop {
        /// Sent when stopping began, or (with `wait`) when the process is gone.
        reply: oneshot::Sender<()>,
        /// Reply only once stopped.
        wait: bool,
    },
    /// Stop, then start.
    Restart {
        /// Sent when the restart began, or why it cannot (nothing is stopped then).
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop and end the actor.
    Shutdown {
        /// Sent when the process is gone.
        reply: oneshot::Sender<()>,
    },
}

struct InstanceActor {
    inst: Arc<Handle>,
    shared: Arc<Shared>,
    child: Option<ChildProc>,
    /// The readiness probe while starting, the liveness probe while running.
    probe: Option<JoinHandle<()>>,
    report_tx: mpsc::UnboundedSender<Report>,
    generation: u64,
    backoff: Option<Instant>,
    restarts: u32,
    spawned_at: Instant,
    ready_at: Option<Instant>,
    /// Port of the current process, held until it is released.
    port: Option<u16>,
    last_port: Option<u16>,
    /// Why the current run has no log (its output is discarded: no space for it), if so.
    log_discarded: Option<String>,
}

/// Runs an instance's actor until it is shut down.
pub async fn run(
    inst: Arc<Handle>,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let mut actor = InstanceActor {
        inst,
        shared,
        child: None,
        probe: None,
        report_tx,
        generation: 0,
        backoff: None,
        restarts: 0,
        spawned_at: Instant::now(),
        ready_at: None,
        port: None,
        last_port: None,
        log_discarded: None,
    };
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Shutdown { reply }) => {
                    actor.halt("server shutdown or instance removal").await;
                    let _ = reply.send(());
                    break;
                }
                None => {
                    actor.halt("handle dropped").await;
                    break;
                }
                Some(cmd) => actor.handle(cmd).await,
            },
            exit = wait_child(&mut actor.child) => actor.on_exit(exit, Event::Crashed).await,
            Some(report) = reports.recv() => match report {
                Report::Ready(generation) => actor.on_ready(generation).await,
                Report::Unresponsive(generation) => actor.on_unresponsive(generation).await,
            },
            () = sleep_until(actor.backoff) => actor.on_backoff().await,
        }
    }
}

async fn wait_child(child: &mut Option<ChildProc>) -> Exit {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl InstanceActor {
    fn status(&self) -> Status {
        self.inst.snapshot().status
    }

    async fn record(&self, event: Event, detail: Option<&str>) {
        self.inst.metrics().lifecycle(event);
        if let Err(e) = self
            .shared
            .db
            .record(Some(&self.inst.name), event, &Actor::system(), detail)
            .await
        {
            tracing::error!(instance = %self.inst.name, error = %e, "could not record history");
        }
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Start { reply } => {
                let result = match self.status() {
                    Status::Starting | Status::Running => Ok(()),
                    _ => {
                        self.backoff = None;
                        self.restarts = 0;
                        self.spawn_or_fail().await
                    }
                };
                let _ = reply.send(result);
            }
            Command::Stop { reply, wait } => {
                self.backoff = None;
                self.inst.update_state(|s| s.status = Status::Stopping);
                let reply = if wait {
                    Some(reply)
                } else {
                    let _ = reply.send(());
                    None
                };
                self.halt("stop requested").await;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Command::Restart { reply } => {
                // A restart that cannot start again stops nothing: checked before the stop.
                if let Err(reason) = self.preflight() {
                    if self.child.is_none() {
                        self.fail(reason.clone()).await;
                    }
                    let _ = reply.send(Err(reason));
                    return;
                }
                self.backoff = None;
                self.inst.update_state(|s| s.status = Status::Restarting);
                let _ = reply.send(Ok(()));
                self.terminate_child().await;
                self.restarts = 0;
                let _ = self.spawn_or_fail().await;
            }
            Command::Shutdown { .. } => {} // handled by the loop
        }
    }

    /// Stops any process and settles in `stopped`.
    async fn halt(&mut self, why: &str) {
        self.backoff = None;
        let had_child = self.terminate_child().await;
        self.inst.update_state(|s| {
            s.status = Status::Stopped;
            s.port = None;
            s.pid = None;
            s.last_error = None;
        });
        if had_child {
            self.record(Event::Stopped, Some(why)).await;
        }
    }

    /// SIGTERM, grace, SIGKILL, reap; true if there was a process.
    async fn terminate_child(&mut self) -> bool {
        let Some(child) = self.child.take() else {
            return false;
        };
        let exit = child.terminate(STOP_GRACE).await;
        tracing::info!(instance = %self.inst.name, exit = %exit.0, "backend stopped");
        self.release().await;
        true
    }

    /// Forgets the process that is gone: probe, port, recorded PID.
    async fn release(&mut self) {
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
        if let Some(port) = self.port.take() {
            self.shared.ports.release(port);
        }
        self.ready_at = None;
        if let Err(e) = self.shared.db.set_process(&self.inst.name, None).await {
            tracing::error!(instance = %self.inst.name, error = %e, "could not clear recorded pid");
        }
    }

    async fn spawn_or_fail(&mut self) -> Result<(), String> {
        let result = self.spawn().await;
        if let Err(reason) = &result {
            self.fail(reason.clone()).await;
        }
        result
    }

    /// What a start needs before anything is touched: a valid definition and a runnable backend;
    /// the program to run.
    fn preflight(&self) -> Result<std::path::PathBuf, String> {
        let shared = &self.shared;
        // A definition stored before a check existed is held to it too.
        self.inst
            .spec()
            .validate(
                &shared.cfg.instances,
                &shared.cfg.backends.llama_cpp.environment,
            )
            .map_err(|e| e.to_string())?;
        Ok(shared.backend.program()?.to_path_buf())
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let program = self.preflight()?;
        let spec = self.inst.spec();
        let shared = &self.shared;
        let backend = &shared.backend;
        let slot_dir = shared.slots_dir.join(&self.inst.name);
        let (options, slots) = options::for_run(&spec.backend_options, &slot_dir);
        if let Some(dir) = slots {
            std::fs::create_dir_all(&dir).map_err(|e| {
                crate::error::Error::io("create slot directory", &dir, e).to_string()
            })?;
        }
        let port = shared.ports.reserve(spec.port, self.last_port)?;
        let name = &self.inst.name;
        let args = llama_cpp::build_args(backend.args(), &options, name, "127.0.0.1", port);
        // The log shows the command line with secret-looking values hidden.
        let (shown_options, _) = options::for_run(&spec.redacted().backend_options, &slot_dir);
        let mut shown = vec![program.display().to_string()];
        shown.extend(llama_cpp::build_args(
            backend.args(),
            &shown_options,
            name,
            "127.0.0.1",
            port,
        ));
        let opened = logs::open_for_run_or_discard(&shared.logs_dir, &self.inst.name, &shown);
        let mut log = match opened {
            Ok((log, discarded)) => {
                if let Some(why) = &discarded {
                    tracing::warn!(instance = %self.inst.name, %why, "backend started without a log");
                }
                self.log_discarded = discarded;
                log
            }
            Err(e) => {
                shared.ports.release(port);
                let file = logs::path(&shared.logs_dir, &self.inst.name);
                return Err(crate::error::Error::io("open instance log", file, e).to_string());
            }
        };
        let spawned = match log.try_clone() {
            Ok(child_log) => {
                shared
                    .spawner
                    .spawn(SpawnSpec {
                        program,
                        args,
                        env: backend.environment(spec.environment.as_ref()),
                        log: child_log,
                    })
                    .await
            }
            Err(e) => Err(e),
        };
        let child = match spawned {
            Ok(child) => ChildProc::adopt(child),
            Err(e) => {
                shared.ports.release(port);
                let reason = format!("cannot run '{}': {e}", backend.configured());
                let _ = writeln!(log, "=== llamactl: {reason} ===");
                return Err(reason);
            }
        };
        let pid = child.pid();
        if let Some(mark) = process::mark(pid, &self.shared.boot_id) {
            if let Err(e) = self
                .shared
                .db
                .set_process(&self.inst.name, Some(&mark))
                .await
            {
                tracing::error!(instance = %self.inst.name, error = %e, "could not record pid");
            }
        }
        self.generation += 1;
        self.probe = Some(tokio::spawn(health::probe_until_ready(
            self.shared.upstream.clone(),
            port,
            self.generation,
            self.report_tx.clone(),
        )));
        self.child = Some(child);
        self.port = Some(port);
        self.last_port = Some(port);
        self.spawned_at = Instant::now();
        self.inst.update_state(|s| {
            s.status = Status::Starting;
            s.port = Some(port);
            s.pid = Some(pid);
        });
        tracing::info!(instance = %self.inst.name, pid, port, "backend spawned");
        Ok(())
    }

    async fn fail(&mut self, reason: String) {
        tracing::warn!(instance = %self.inst.name, %reason, "instance failed");
        self.record(Event::Failed, Some(&reason)).await;
        self.inst.update_state(|s| {
            s.status = Status::Failed;
            s.port = None;
            s.pid = None;
            s.last_error = Some(reason);
        });
    }

    async fn on_ready(&mut self, generation: u64) {
        if generation != self.generation {
            return;
        }
        // Idleness counts from readiness, so a slow load is not mistaken for disuse.
        self.inst.usage().touch();
        // Checked and changed in one update: a stop claimed meanwhile (eviction, idle stop) sets
        // `stopping` from outside, and must not be turned back into `running`.
        let became_ready = self.inst.update_state_if(|s| {
            let starting = s.status == Status::Starting;
            if starting {
                s.status = Status::Running;
                s.last_error = None;
            }
            starting
        });
        if !became_ready {
            return;
        }
        let took = self.spawned_at.elapsed();
        self.inst.metrics().started_in(took);
        self.ready_at = Some(Instant::now());
        self.shared.idle_wake.notify_one();
        let port = self.inst.snapshot().port.unwrap_or_default();
        self.watch_liveness(port);
        tracing::info!(instance = %self.inst.name, port, ms = took.as_millis() as u64, "backend ready");
        let mut detail = format!("ready on port {port} in {} ms", took.as_millis());
        if let Some(why) = &self.log_discarded {
            detail.push_str("; ");
            detail.push_str(why);
        }
        self.record(Event::Ready, Some(&detail)).await;
    }

    /// Probes the running backend on `port` until it is released (unless probes are off).
    fn watch_liveness(&mut self, port: u16) {
        let cfg = &self.shared.cfg.instances;
        if cfg.health_check_interval == 0 {
            return;
        }
        let live = Liveness {
            every: Duration::from_secs(cfg.health_check_interval),
            failures: cfg.health_check_failures,
        };
        if let Some(ready_probe) = self.probe.take() {
            ready_probe.abort();
        }
        self.probe = Some(tokio::spawn(health::watch_liveness(
            self.shared.upstream.clone(),
            port,
            self.generation,
            live,
            self.report_tx.clone(),
        )));
    }

    /// A running backend missed its health checks: killed like a crash and restarted (or failed)
    /// the same way. A stopped process ignores SIGTERM, so it gets SIGKILL at once.
    async fn on_unresponsive(&mut self, generation: u64) {
        if generation != self.generation || self.status() != Status::Running {
            return;
        }
        let cfg = &self.shared.cfg.instances;
        let why = format!(
            "stopped answering /health ({} checks in a row, {} s apart) and was killed",
            cfg.health_check_failures, cfg.health_check_interval
        );
        tracing::warn!(instance = %self.inst.name, reason = %why, "backend unresponsive");
        // Requests waiting on it see that it went down before their connections break (503).
        self.inst.update_state(|s| s.status = Status::Restarting);
        let Some(child) = self.child.take() else {
            return;
        };
        let exit = child.kill().await;
        tracing::info!(instance = %self.inst.name, exit = %exit.0, "unresponsive backend killed");
        self.on_exit(Exit(why), Event::Unresponsive).await;
    }

    /// The process is gone (`exit` says how; `event` is what the history calls it when it was
    /// not a start that failed): restart after `restart_delay`, or fail.
    async fn on_exit(&mut self, exit: Exit, event: Event) {
        self.child = None;
        let was = self.status();
        if self.ready_at.is_some_and(|at| at.elapsed() >= HEALTHY_RUN) {
            self.restarts = 0;
        }
        let life = self.inst.spec().lifecycle(&self.shared.cfg.instances);
        let never_ready = was == Status::Starting && self.restarts == 0;
        let retry = !never_ready && life.auto_restart && self.restarts < life.max_restarts;
        if retry {
            self.restarts += 1;
            self.backoff = Some(Instant::now() + Duration::from_secs(life.restart_delay));
        }
        let restarts = self.restarts;
        let failure = (!retry).then(|| {
            let tail = logs::tail(
                &logs::path(&self.shared.logs_dir, &self.inst.name),
                Some(FAILURE_LOG_LINES),
            )
            .unwrap_or_default();
            let why = if never_ready {
                "before becoming ready".to_string()
            } else if life.auto_restart {
                format!("and was restarted {restarts} times in a row; giving up")
            } else {
                "(auto_restart is off)".to_string()
            };
            // The backend may echo a secret it was given; the reason is shown and recorded.
            let tail = self.inst.spec().scrub(tail.trim_end());
            format!("backend {} {why}; last log lines:\n{tail}", exit.0)
        });
        // One state change with the final reason, so nobody sees "running" without a process
        // behind it, or a failure without its explanation.
        let last_error = failure
            .clone()
            .unwrap_or_else(|| format!("backend {}", exit.0));
        self.inst.update_state(|s| {
            s.status = if retry {
                Status::Restarting
            } else {
                Status::Failed
            };
            s.port = None;
            s.pid = None;
            s.restarts = restarts;
            s.last_error = Some(last_error);
        });
        self.release().await;
        if !never_ready {
            self.record(event, Some(&exit.0)).await;
        }
        match failure {
            Some(reason) => {
                tracing::warn!(instance = %self.inst.name, %reason, "instance failed");
                self.record(Event::Failed, Some(&reason)).await;
            }
            None => {
                tracing::warn!(instance = %self.inst.name, exit = %exit.0, restarts, "backend crashed; restarting")
            }
        }
    }

    async fn on_backoff(&mut self) {
        self.backoff = None;
        if self.status() == Status::Stopping {
            // Claimed for a stop (eviction, idle stop) whose command is on its way.
            return;
        }
        let life = self.inst.spec().lifecycle(&self.shared.cfg.instances);
        let detail = format!("attempt {} of {}", self.restarts, life.max_restarts);
        self.record(Event::Restarted, Some(&detail)).await;
        let _ = self.spawn_or_fail().await;
    }
}
