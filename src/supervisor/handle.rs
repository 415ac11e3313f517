//! The handle on one instance: its definition, its runtime state, and the channel to its actor.

use super::actor::Command;
use super::queue::Waitlist;
use super::state::{RuntimeState, Status};
use super::usage::{InFlight, Usage};
use crate::config::InstancesConfig;
use crate::db::instances::Desired;
use crate::definitions::{InstanceSpec, QueueLimits};
use crate::error::{Error, Result};
use crate::events::{Events, LiveEvent, StatusChange};
use crate::metrics::InstanceMetrics;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};

/// A running instance as the supervisor holds it: definition, runtime state, its actor's channel.
#[derive(Debug)]
pub struct Handle {
    /// Unique name.
    pub name: String,
    /// Unix seconds.
    pub created: i64,
    spec: RwLock<InstanceSpec>,
    /// The definition's `max_concurrent` (0: none), read without locking the definition: every
    /// inference request asks, and most instances have no queue.
    max_concurrent: AtomicUsize,
    /// Whether it should run, as last stored (mirrors the database, read without it).
    desired: Mutex<Desired>,
    state: watch::Sender<RuntimeState>,
    cmd: mpsc::UnboundedSender<Command>,
    usage: Usage,
    /// Requests waiting for a place among `max_concurrent`.
    concurrency: Arc<Waitlist>,
    /// What it has served and been through, for `/metrics`; goes with the instance.
    metrics: Arc<InstanceMetrics>,
    /// Starts and restarts answered so far: lets a request tell whether someone else started the
    /// instance since it last looked, so concurrent cold requests share one start.
    starts: AtomicU64,
    /// Where status changes are announced.
    events: Events,
}

/// Why a command could not be delivered.
const GONE: &str = "instance is being removed or the server is shutting down";

impl Handle {
    /// A handle and the receiving end its actor will own.
    pub(super) fn new(
        name: String,
        created: i64,
        spec: InstanceSpec,
        desired: Desired,
        events: Events,
    ) -> (Self, mpsc::UnboundedReceiver<Command>) {
        let (cmd, rx) = mpsc::unbounded_channel();
        let (state, _) = watch::channel(RuntimeState::default());
        let inst = Handle {
            name,
            created,
            max_concurrent: AtomicUsize::new(max_concurrent_of(&spec)),
            spec: RwLock::new(spec),
            desired: Mutex::new(desired),
            state,
            cmd,
            usage: Usage::new(),
            concurrency: Arc::default(),
            metrics: Arc::default(),
            starts: AtomicU64::new(0),
            events,
        };
        (inst, rx)
    }

    /// The current runtime state.
    pub fn snapshot(&self) -> RuntimeState {
        self.state.borrow().clone()
    }

    /// Follows runtime state changes.
    pub fn subscribe(&self) -> watch::Receiver<RuntimeState> {
        self.state.subscribe()
    }

    /// The current definition.
    pub fn spec(&self) -> InstanceSpec {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Its `max_concurrent` and queue limits, `None` if it has no such limit: every inference
    /// request asks, so without one the answer is one atomic load, and with one the definition is
    /// read in place rather than copied.
    pub(super) fn queue_limits(&self, defaults: &InstancesConfig) -> Option<(usize, QueueLimits)> {
        if self.max_concurrent.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let limits = self
            .spec
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .queue_limits(defaults);
        // Read again under the lock: the definition may have changed since the load.
        Some((limits.max_concurrent?, limits))
    }

    pub(super) fn set_spec(&self, spec: InstanceSpec) {
        let max_concurrent = max_concurrent_of(&spec);
        *self.spec.write().unwrap_or_else(|p| p.into_inner()) = spec;
        self.max_concurrent.store(max_concurrent, Ordering::Relaxed);
    }

    /// Whether it should run, and who stopped it if not.
    pub(super) fn desired(&self) -> Desired {
        *self.desired.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call only after the database holds the same.
    pub(super) fn set_desired(&self, desired: Desired) {
        *self.desired.lock().unwrap_or_else(|p| p.into_inner()) = desired;
    }

    /// Changes the state; a new status is announced on the event bus.
    pub(super) fn update_state(&self, change: impl FnOnce(&mut RuntimeState)) {
        self.state.send_modify(|state| {
            let previous = state.status;
            change(state);
            self.announce(previous, state.status);
        });
    }

    /// Checks and changes the state in one step; `change` returns whether it changed anything.
    pub(super) fn update_state_if(&self, change: impl FnOnce(&mut RuntimeState) -> bool) -> bool {
        self.state.send_if_modified(|state| {
            let previous = state.status;
            let changed = change(state);
            if changed {
                self.announce(previous, state.status);
            }
            changed
        })
    }

    /// Publishes a status change. Called with the state locked, so changes are announced in the
    /// order they were made.
    fn announce(&self, previous: Status, status: Status) {
        if previous == status {
            return;
        }
        self.events
            .publish(LiveEvent::Status(Arc::new(StatusChange {
                instance: self.name.clone(),
                status,
                previous,
                at_ms: chrono::Utc::now().timestamp_millis(),
            })));
    }

    /// Requests in flight and last use.
    pub(super) fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        self.usage.in_flight()
    }

    /// Its counters and histograms.
    pub fn metrics(&self) -> &Arc<InstanceMetrics> {
        &self.metrics
    }

    /// Counts one request as in flight until the returned guard is dropped, unless the instance is
    /// draining (chosen for eviction).
    pub(super) fn try_begin_use(self: &Arc<Self>) -> Option<InFlight> {
        InFlight::try_begin(self.clone())
    }

    /// The line for a place among `max_concurrent`.
    pub(super) fn concurrency(&self) -> &Arc<Waitlist> {
        &self.concurrency
    }

    /// When a request last began or ended here (or the instance last started or became ready).
    pub(super) fn last_used(&self) -> Instant {
        self.usage.last_used()
    }

    /// How long ago a request last began or ended here (or the instance last started).
    pub fn idle_for(&self) -> std::time::Duration {
        self.last_used().elapsed()
    }

    /// Starts and restarts answered so far.
    pub(super) fn starts(&self) -> u64 {
        self.starts.load(Ordering::SeqCst)
    }

    /// Claims the instance for a stop (eviction, idle stop) if no request is in flight and `may_stop`
    /// agrees; the status turns `stopping` at once, under the same lock requests take, so a request
    /// either counts before the claim (and prevents it) or sees `stopping` after it.
    ///
    /// The caller must send the stop with the admission gate held, so no start overtakes it.
    pub(super) fn claim_for_stop(
        &self,
        may_stop: impl FnOnce(&RuntimeState, Instant) -> bool,
    ) -> bool {
        self.usage.if_unused(|last_used| {
            self.update_state_if(|state| {
                let claimed = may_stop(state, last_used);
                if claimed {
                    state.status = Status::Stopping;
                }
                claimed
            })
        })
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> std::result::Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).map_err(|_| GONE.to_string())?;
        rx.await.map_err(|_| GONE.to_string())
    }

    /// Starts the backend; answers once it is spawned (status `starting`) or could not be
    /// (500, the instance `failed` with the reason).
    pub(super) async fn start(&self) -> Result<()> {
        self.usage.touch();
        let result = self.ask(|reply| Command::Start { reply }).await;
        // Counted once the actor has answered, so whoever reads the new count also sees the state
        // that start produced.
        self.starts.fetch_add(1, Ordering::SeqCst);
        result
            .map_err(Error::Unavailable)?
            .map_err(|reason| self.start_failed(reason))
    }

    fn start_failed(&self, reason: String) -> Error {
        Error::StartFailed {
            instance: self.name.clone(),
            reason,
        }
    }

    /// Stops the backend; with `wait`, answers once the process is gone.
    pub(super) async fn stop(&self, wait: bool) -> std::result::Result<(), String> {
        self.ask(|reply| Command::Stop { reply, wait }).await
    }

    /// Stops and starts the backend; answers once the restart has begun, or (500) at once if the
    /// backend could not start again, leaving a running process as it is.
    pub(super) async fn restart(&self) -> Result<()> {
        self.usage.touch();
        let result = self.ask(|reply| Command::Restart { reply }).await;
        self.starts.fetch_add(1, Ordering::SeqCst);
        result
            .map_err(Error::Unavailable)?
            .map_err(|reason| self.start_failed(reason))
    }

    /// Stops the backend and ends the actor; answers once the process is gone.
    pub(super) async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}

/// `spec`'s `max_concurrent` as [`Handle`] keeps it: 0 for none (validation refuses 0).
fn max_concurrent_of(spec: &InstanceSpec) -> usize {
    spec.max_concurrent.map_or(0, |n| n as usize)
}
