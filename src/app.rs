//! Builds the whole server from a configuration and runs it until a shutdown signal.

use crate::activity::Recorder;
use crate::auth::sessions::Sessions;
use crate::auth::{bootstrap, Auth};
use crate::backends::BackendCommand;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::files;
use crate::http::connection::{Limits, PerClient};
use crate::http::{self, AppState};
use crate::metering::{Meter, Sinks};
use crate::metrics::Metrics;
use crate::supervisor::{logs, Supervisor};
use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long open connections (streams) may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A built server, bound and with its instances restored, ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    limits: Limits,
    _lock: File,
}

/// Takes an exclusive lock next to the database: two servers on one database would run every
/// instance twice.
fn lock_data(db_path: &Path) -> Result<File> {
    let lock_path = db_path.with_extension("lock");
    files::tighten(&lock_path);
    let file = files::append_private(&lock_path)
        .map_err(|e| Error::io("open lock file", &lock_path, e))?;
    // SAFETY: flock on a descriptor we own; no memory is touched.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(Error::Failed(format!(
            "another llamactl is already using {} (lock {} is held)",
            db_path.display(),
            lock_path.display()
        )));
    }
    Ok(file)
}

impl Application {
    /// Makes the data and log directories private, opens the database, binds the listener, and
    /// restores instances that should run.
    pub async fn build(mut cfg: Config) -> Result<Self> {
        files::private_dir(&cfg.data_dir, "create data directory")?;
        let db_path = cfg.database_path();
        if let Some(parent) = db_path.parent() {
            files::create_private_dir(parent, "create database directory")?;
        }
        let lock = lock_data(&db_path)?;
        logs::make_private(&cfg.logs_dir())?;
        let events = Events::default();
        let db = Db::open(&db_path)
            .await?
            .with_history_limit(cfg.history.max_events)
            .with_events(events.clone());
        let auth = Auth::new(&cfg.auth, db.clone())?;
        auth.keys().load_quotas().await?;
        let sessions = Sessions::new(db.clone(), cfg.ui.session_ttl, auth.clone());
        sessions.forget_config_key_sessions().await?;
        // Only the digests in `auth` are needed from here on; drop the plain keys from memory.
        cfg.auth.management_keys.clear();
        cfg.auth.inference_keys.clear();
        cfg.auth.metrics_keys.clear();
        let cfg = Arc::new(cfg);
        bootstrap::announce(&auth.first_boot(&cfg.data_dir).await?);
        let limits = connection_limits(&cfg);
        let (host, port) = (cfg.listen_host(), cfg.server.port);
        let listener = crate::http::serve::listen(host, port)
            .await
            .map_err(|e| Error::Failed(format!("cannot listen on {host} port {port}: {e}")))?;
        if cfg.auth_is_off() && !listener.local_addr()?.ip().is_loopback() {
            tracing::warn!(
                host,
                "auth is off and llamactl listens beyond loopback: anyone who can reach this \
                 port can run and stop instances"
            );
        }
        let backend = Arc::new(BackendCommand::resolve(&cfg.backends.llama_cpp));
        if let Err(why) = backend.program() {
            // Kept running (definitions can still be managed); every start fails with this reason.
            tracing::error!(
                "backends.llama-cpp.command: {why}; no instance can start until it is fixed"
            );
        }
        let upstream = crate::upstream::Pool::default();
        let supervisor = Supervisor::new(
            cfg.clone(),
            db.clone(),
            upstream.clone(),
            backend.clone(),
            events.clone(),
        )?;
        supervisor.restore().await?;
        let metrics = Metrics::default();
        let activity = Recorder::start(db.clone(), cfg.activity.max_records);
        let meter = Meter::new(Sinks {
            metrics: cfg.server.metrics.then(|| metrics.clone()),
            activity: cfg.activity.enabled.then(|| activity.clone()),
            log_requests: cfg.log.requests,
        });
        let state = AppState {
            connections: PerClient::new(limits.per_client),
            cfg,
            backend,
            supervisor,
            auth,
            sessions,
            db,
            upstream,
            metrics,
            meter,
            activity,
            events,
        };
        Ok(Application {
            listener,
            state,
            limits,
            _lock: lock,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes, then stops every child and drains connections.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let supervisor = self.state.supervisor.clone();
        let auth = self.state.auth.clone();
        let activity = self.state.activity.clone();
        let events = self.state.events.clone();
        let upkeep = auth.spawn_upkeep();
        let connections = self.state.connections.clone();
        let runtimes = self.state.metrics.runtimes().clone();
        let metrics = self.state.metrics.clone();
        // The main runtime's tasks (the supervisor's, the database's) count as much as the workers'.
        let _counted = runtimes.register(tokio::runtime::Handle::current());
        let service = http::service(self.state);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut server = tokio::spawn(crate::http::serve::serve(
            self.listener,
            service,
            crate::http::serve::default_count(),
            self.limits,
            connections,
            metrics,
            stop_rx,
        ));
        // A server that can no longer serve ends llamactl too (stopping its children), rather
        // than leaving it running deaf.
        let ended_early = tokio::select! {
            _ = shutdown => None,
            ended = &mut server => Some(ended),
        };
        match ended_early {
            None => tracing::info!("shutting down: stopping instances"),
            Some(_) => tracing::error!("the HTTP server stopped; shutting down"),
        }
        let _ = stop_tx.send(true);
        // Live streams never finish by themselves: they end now, so the drain does not wait for them.
        events.close();
        supervisor.shutdown().await;
        let drained = match ended_early {
            Some(ended) => Ok(ended),
            None => tokio::time::timeout(DRAIN_TIMEOUT, server).await,
        };
        upkeep.abort();
        auth.flush().await;
        // After the drain, so the records of the last requests served are written too.
        activity.flush().await;
        match drained {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(e)) => return Err(Error::Internal(format!("server task failed: {e}"))),
            Err(_) => tracing::warn!("open connections did not finish in time; closing them"),
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Below this many descriptors a server carrying many streams runs out (a systemd service's
/// default soft limit, when the hard one cannot lift it).
const LOW_OPEN_FILES: u64 = 4096;

/// Raises the open-file limit as far as allowed (each client connection takes a descriptor) and
/// sets the connection limits from it.
fn connection_limits(cfg: &Config) -> Limits {
    let open_files = match crate::http::connection::open_files::raise() {
        Ok(budget) => {
            tracing::info!(
                open_files = budget.soft,
                raised_from = budget.was,
                hard_limit = budget.hard,
                "open-file limit (each client connection, backend connection and log takes one)"
            );
            if budget.soft < LOW_OPEN_FILES {
                tracing::warn!(
                    open_files = budget.soft,
                    "the open-file limit allows few connections; raise the hard limit \
                     (LimitNOFILE= in a systemd unit, ulimit -Hn in a shell)"
                );
            }
            budget.soft
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            0
        }
    };
    let mut limits = Limits::new(&cfg.server, open_files);
    // A client that takes nothing of a streamed answer holds a backend's slot: its answer (and so
    // the upstream request) is cut after the lesser of the two limits, by the same deadline.
    let stream_idle = Duration::from_secs(cfg.instances.stream_idle_timeout);
    limits.response_write = limits.response_write.min(stream_idle);
    tracing::info!(
        open_files,
        response_write_timeout = limits.response_write.as_secs(),
        max_connections_per_client = limits.per_client,
        "connection limits"
    );
    limits
}

/// A future that completes on SIGTERM or SIGINT. The signals are caught from this call on, not
/// from the future's first poll: one sent just after llamactl said it listens is not lost.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}
