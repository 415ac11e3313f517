//! Runs instances as child processes: admission (limits, eviction: `evict.rs`), create/update/delete,
//! start/stop/restart, on-demand starts for requests (`on_demand.rs`), idle stops (`idle.rs`),
//! restore on boot, and shutdown. Each instance's process is owned by its own actor (`actor.rs`).
//!
//! Every command that starts a process, and every stop that makes room or ends idleness, is sent
//! with the admission `gate` held: an eviction's stop therefore always reaches an actor before any
//! later start, and the running limit holds under concurrency.

mod actor;
mod child;
mod evict;
mod handle;
mod health;
mod idle;
mod log_followers;
mod log_reader;
pub mod logs;
mod on_demand;
pub mod ports;
pub mod process;
mod queue;
pub mod spawner;
pub mod state;
mod usage;

pub use handle::Handle;
pub use on_demand::Rights;
pub use state::Status;
pub use usage::InFlight;

use crate::audit::{Actor, Event};
use crate::backends::BackendCommand;
use crate::config::Config;
use crate::db::instances::{Desired, InstanceRow};
use crate::db::Db;
use crate::definitions::{name, InstanceSpec, SpecPatch};
use crate::error::{Error, Result};
use crate::events::Events;
use crate::upstream::Pool;
use bytes::Bytes;
use futures_util::Stream;
use log_followers::LogFollowers;
use ports::Ports;
use spawner::Spawner;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What the actors share.
#[derive(Debug)]
pub(crate) struct Shared {
    cfg: Arc<Config>,
    db: Db,
    ports: Ports,
    spawner: Spawner,
    upstream: Pool,
    /// The backend's program and base environment, resolved at startup.
    backend: Arc<BackendCommand>,
    logs_dir: PathBuf,
    /// Followers of instance logs, one watcher per followed instance.
    followers: LogFollowers,
    /// Where status changes are announced.
    events: Events,
    /// Holds one directory per instance for `slot_save_path`.
    slots_dir: PathBuf,
    boot_id: String,
    /// Wakes the idle watcher: an instance became ready or was redefined.
    idle_wake: Notify,
    /// The runtime actors run on: the main one, which outlives the HTTP workers. An instance
    /// created over HTTP would otherwise get its actor on that worker's runtime, which ends
    /// (taking the actor along, mid-stop perhaps) when the workers shut down.
    runtime: tokio::runtime::Handle,
}

/// The supervisor; cheap to clone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
    instances: Arc<RwLock<BTreeMap<String, Arc<Handle>>>>,
    /// Serialises admission (create, delete, start, eviction, idle stop) so limits hold under
    /// concurrency.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// The turn to make room at `max_running_instances` for an on-demand start: one request at a
    /// time, by its key's priority, so swaps happen one after another and in order.
    turns: Arc<queue::Waitlist>,
    /// The idle watcher, once started.
    idle_task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Supervisor {
    /// A supervisor with no instances loaded yet; call [`Supervisor::restore`] next. Call it on the
    /// main runtime: the instances' actors run there.
    pub fn new(
        cfg: Arc<Config>,
        db: Db,
        upstream: Pool,
        backend: Arc<BackendCommand>,
        events: Events,
    ) -> Result<Self> {
        let shared = Shared {
            ports: Ports::new(cfg.instances.port_range),
            backend,
            logs_dir: cfg.logs_dir(),
            followers: LogFollowers::new(cfg.logs_dir()),
            events,
            slots_dir: cfg.slots_dir(),
            spawner: Spawner::start()?,
            boot_id: process::boot_id(),
            cfg,
            db,
            upstream,
            idle_wake: Notify::new(),
            runtime: tokio::runtime::Handle::current(),
        };
        Ok(Supervisor {
            shared: Arc::new(shared),
            instances: Arc::default(),
            gate: Arc::default(),
            turns: Arc::default(),
            idle_task: Arc::default(),
        })
    }

    /// Ends children a killed predecessor left behind, loads every stored instance, starts those
    /// that should run (within the running limit, evicting nothing), and starts the idle watcher.
    pub async fn restore(&self) -> Result<()> {
        let rows = self.shared.db.list_instances().await?;
        for row in &rows {
            self.end_orphan(row).await?;
        }
        let mut to_start = Vec::new();
        for row in rows {
            let spec: InstanceSpec = match serde_json::from_str(&row.spec) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::error!(instance = %row.name, error = %e, "stored definition unreadable; skipped");
                    continue;
                }
            };
            let inst = self.adopt(row.name.clone(), row.created_at, spec, row.desired);
            if row.desired == Desired::Running {
                to_start.push(inst);
            }
        }
        for inst in to_start {
            let _guard = self.gate.lock().await;
            if let Some((max, _)) = self.over_limit(&inst.name) {
                tracing::warn!(instance = %inst.name, max, "not restored: running limit reached");
                continue;
            }
            self.record(
                &inst.name,
                Event::StartRequested,
                &Actor::system(),
                Some("restore on boot"),
            )
            .await;
            if let Err(e) = inst.start().await {
                tracing::warn!(instance = %inst.name, error = %e, "restore failed");
            }
        }
        self.watch_idle();
        Ok(())
    }

    async fn end_orphan(&self, row: &InstanceRow) -> Result<()> {
        let Some(mark) = &row.process else {
            return Ok(());
        };
        if process::end_orphan(mark, &self.shared.boot_id, actor::STOP_GRACE).await {
            tracing::warn!(instance = %row.name, pid = mark.pid, "ended a backend left by a previous server");
            let detail = format!("pid {}", mark.pid);
            self.record(
                &row.name,
                Event::OrphanKilled,
                &Actor::system(),
                Some(&detail),
            )
            .await;
        }
        self.shared.db.set_process(&row.name, None).await
    }

    /// Registers an instance and starts its actor.
    fn adopt(
        &self,
        name: String,
        created: i64,
        spec: InstanceSpec,
        desired: Desired,
    ) -> Arc<Handle> {
        let (inst, commands) = Handle::new(
            name.clone(),
            created,
            spec,
            desired,
            self.shared.events.clone(),
        );
        let inst = Arc::new(inst);
        self.shared
            .runtime
            .spawn(actor::run(inst.clone(), self.shared.clone(), commands));
        self.write_map().insert(name, inst.clone());
        inst
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Handle>>> {
        self.instances.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Handle>>> {
        self.instances.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn record(&self, instance: &str, event: Event, actor: &Actor, detail: Option<&str>) {
        if let Ok(inst) = self.instance(instance) {
            inst.metrics().lifecycle(event);
        }
        if let Err(e) = self
            .shared
            .db
            .record(Some(instance), event, actor, detail)
            .await
        {
            tracing::error!(instance, error = %e, "could not record history");
        }
    }

    /// Records whether `inst` should run, in the database and then in memory.
    async fn set_desired(&self, inst: &Handle, desired: Desired) -> Result<()> {
        self.shared.db.set_desired(&inst.name, desired).await?;
        inst.set_desired(desired);
        Ok(())
    }

    /// The instance of that name.
    pub fn instance(&self, name: &str) -> Result<Arc<Handle>> {
        self.read_map()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("instance '{name}' not found")))
    }

    /// Every instance, by name.
    pub fn list(&self) -> Vec<Arc<Handle>> {
        self.read_map().values().cloned().collect()
    }

    /// Checks a definition against the limits and the operator's backend environment.
    fn validate(&self, spec: &InstanceSpec) -> Result<()> {
        let cfg = &self.shared.cfg;
        spec.validate(&cfg.instances, &cfg.backends.llama_cpp.environment)
    }

    /// Checks that a fixed port is not the fixed port of another instance.
    fn check_port_free(&self, name: &str, spec: &InstanceSpec) -> Result<()> {
        let Some(port) = spec.port else {
            return Ok(());
        };
        let clash = self
            .read_map()
            .values()
            .find(|i| i.name != name && i.spec().port == Some(port))
            .map(|i| i.name.clone());
        match clash {
            Some(other) => Err(Error::Conflict(format!(
                "port {port} is already assigned to instance '{other}'"
            ))),
            None => Ok(()),
        }
    }

    /// Validates, stores and starts a new instance.
    pub async fn create(&self, name: &str, patch: SpecPatch, actor: &Actor) -> Result<Arc<Handle>> {
        name::validate(name)?;
        let spec = patch.into_new_spec()?;
        self.validate(&spec)?;
        let spec_json = to_json(&spec)?;

        let _guard = self.gate.lock().await;
        if self.read_map().contains_key(name) {
            return Err(Error::Conflict(format!("instance '{name}' already exists")));
        }
        let max = self.shared.cfg.instances.max_instances;
        if max >= 0 && self.read_map().len() as i64 >= max {
            return Err(Error::Conflict(format!(
                "maximum number of instances ({max}) reached"
            )));
        }
        self.check_port_free(name, &spec)?;
        self.make_room(name, actor, Rights::ALL).await?.now()?;
        let now = chrono::Utc::now().timestamp();
        self.shared
            .db
            .insert_instance(name, &spec_json, Desired::Running, now)
            .await?;
        self.record(
            name,
            Event::Created,
            actor,
            Some(&to_json(&spec.redacted())?),
        )
        .await;
        let inst = self.adopt(name.to_string(), now, spec, Desired::Running);
        self.record(name, Event::StartRequested, actor, None).await;
        // A spawn failure is a failed start (500), as on every route; the valid definition stays,
        // `failed` with the reason, to be fixed with an update or removed.
        inst.start().await?;
        Ok(inst)
    }

    /// Changes a definition (given fields replace, the rest stay) and restarts it if it was active.
    pub async fn update(&self, name: &str, patch: SpecPatch, actor: &Actor) -> Result<Arc<Handle>> {
        let inst = self.instance(name)?;
        // A change that is valid on its own but not with what is stored (`mmproj_url` sent to an
        // instance that has `mmproj`) conflicts with the instance's state: 409, not 400.
        let valid_alone = patch
            .clone()
            .into_new_spec()
            .and_then(|alone| self.validate(&alone))
            .is_ok();
        let mut spec = inst.spec();
        spec.apply(patch)?;
        match self.validate(&spec) {
            Err(Error::BadRequest(why)) if valid_alone => {
                return Err(Error::Conflict(format!(
                    "{why} (together with the stored definition)"
                )))
            }
            other => other?,
        }
        self.check_port_free(name, &spec)?;
        let spec_json = to_json(&spec)?;
        let shown_json = to_json(&spec.redacted())?;
        let now = chrono::Utc::now().timestamp();
        self.shared
            .db
            .update_instance_spec(name, &spec_json, now)
            .await?;
        inst.set_spec(spec);
        self.record(name, Event::Updated, actor, Some(&shown_json))
            .await;
        // The idle timeout may have changed.
        self.shared.idle_wake.notify_one();
        let _guard = self.gate.lock().await;
        if inst.snapshot().status.is_active() {
            self.record(
                name,
                Event::StartRequested,
                actor,
                Some("restart after update"),
            )
            .await;
            inst.restart().await?;
        }
        Ok(inst)
    }

    /// Stops an instance, then removes its definition and logs.
    pub async fn delete(&self, name: &str, actor: &Actor) -> Result<()> {
        let _guard = self.gate.lock().await;
        let inst = self.instance(name)?;
        inst.stop(true).await.map_err(Error::Unavailable)?;
        self.shared.db.delete_instance(name).await?;
        self.write_map().remove(name);
        inst.shutdown().await;
        self.record(name, Event::Deleted, actor, None).await;
        logs::remove(&self.shared.logs_dir, name);
        self.shared.followers.end(name);
        // Saved slots hold prompt state: a later instance of the same name must not see them.
        let slots = self.shared.slots_dir.join(name);
        if let Err(e) = std::fs::remove_dir_all(&slots) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %slots.display(), error = %e, "could not remove saved slots");
            }
        }
        Ok(())
    }

    /// Marks an instance to run and starts it.
    pub async fn start(&self, name: &str, actor: &Actor) -> Result<Arc<Handle>> {
        let inst = self.instance(name)?;
        let _guard = self.gate.lock().await;
        self.make_room(name, actor, Rights::ALL).await?.now()?;
        self.set_desired(&inst, Desired::Running).await?;
        self.record(name, Event::StartRequested, actor, None).await;
        inst.start().await?;
        Ok(inst)
    }

    /// Marks an instance to stay stopped and stops it.
    pub async fn stop(&self, name: &str, actor: &Actor) -> Result<Arc<Handle>> {
        let inst = self.instance(name)?;
        self.set_desired(&inst, Desired::Stopped).await?;
        self.record(name, Event::StopRequested, actor, None).await;
        inst.stop(false).await.map_err(Error::Unavailable)?;
        Ok(inst)
    }

    /// Stops and starts an instance.
    pub async fn restart(&self, name: &str, actor: &Actor) -> Result<Arc<Handle>> {
        let inst = self.instance(name)?;
        let _guard = self.gate.lock().await;
        self.make_room(name, actor, Rights::ALL).await?.now()?;
        self.set_desired(&inst, Desired::Running).await?;
        self.record(name, Event::StartRequested, actor, Some("restart"))
            .await;
        inst.restart().await?;
        Ok(inst)
    }

    /// The command line an instance runs (or would run on its next start) as its log shows it:
    /// secret-looking values hidden, `--port` as the running one (or the fixed one, else 0).
    pub fn command_line(&self, name: &str) -> Result<Vec<String>> {
        let inst = self.instance(name)?;
        let spec = inst.spec().redacted();
        let backend = &self.shared.backend;
        let slot_dir = self.shared.slots_dir.join(name);
        let (options, _) = crate::definitions::options::for_run(&spec.backend_options, &slot_dir);
        let port = inst.snapshot().port.or(spec.port).unwrap_or(0);
        // The program as resolved at startup, as the log shows it; as configured if it was not found.
        let program = backend.program().map_or_else(
            |_| backend.configured().to_string(),
            |p| p.display().to_string(),
        );
        let mut shown = vec![program];
        shown.extend(crate::backends::llama_cpp::build_args(
            backend.args(),
            &options,
            name,
            "127.0.0.1",
            port,
        ));
        Ok(shown)
    }

    /// The last `lines` lines of an instance's log (all for `None`).
    pub async fn logs(&self, name: &str, lines: Option<usize>) -> Result<String> {
        let spec = self.instance(name)?.spec();
        let file = logs::path(&self.shared.logs_dir, name);
        let text = tokio::task::spawn_blocking(move || logs::tail(&file, lines)).await??;
        // The backend may echo a secret it was given.
        Ok(spec.scrub(&text))
    }

    /// An instance's log as it is written: its last `lines` lines (all for `None`), then what is
    /// appended, until the instance is deleted or the server shuts down.
    pub async fn follow_logs(
        &self,
        name: &str,
        lines: Option<usize>,
    ) -> Result<impl Stream<Item = Bytes> + Send + 'static> {
        let inst = Arc::downgrade(&self.instance(name)?);
        // The definition in force when a piece is read: an update may change the secrets.
        let scrub = Arc::new(move |text: &str| match inst.upgrade() {
            Some(inst) => inst.spec().scrub(text),
            None => String::new(),
        });
        let follow = self.shared.followers.follow(name, lines, scrub).await?;
        Ok(follow.into_stream())
    }

    /// Stops every child, keeping each instance's desired state for the next boot. Log followers
    /// end first: their streams must not hold the shutdown up.
    pub async fn shutdown(&self) {
        self.shared.followers.close();
        if let Some(task) = self
            .idle_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
        let all: Vec<Arc<Handle>> = self.read_map().values().cloned().collect();
        let stops = all.iter().map(|inst| inst.shutdown());
        futures_util::future::join_all(stops).await;
    }
}

/// A definition as stored and recorded.
fn to_json(spec: &InstanceSpec) -> Result<String> {
    serde_json::to_string(spec).map_err(|e| Error::Internal(e.to_string()))
}
