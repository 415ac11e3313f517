//! The handle on one instance: its definition, its runtime state, and the channel to its actor.

use super::actor::Command;
use super::state::RuntimeState;
use crate::instances::InstanceSpec;
use std::sync::RwLock;
use tokio::sync::{mpsc, oneshot, watch};

/// One instance as the supervisor holds it.
#[derive(Debug)]
pub struct Instance {
    /// Unique name.
    pub name: String,
    /// Unix seconds.
    pub created: i64,
    spec: RwLock<InstanceSpec>,
    state: watch::Sender<RuntimeState>,
    cmd: mpsc::UnboundedSender<Command>,
}

/// Why a command could not be delivered.
const GONE: &str = "instance is being removed or the server is shutting down";

impl Instance {
    /// A handle and the receiving end its actor will own.
    pub(super) fn new(
        name: String,
        created: i64,
        spec: InstanceSpec,
    ) -> (Self, mpsc::UnboundedReceiver<Command>) {
        let (cmd, rx) = mpsc::unbounded_channel();
        let (state, _) = watch::channel(RuntimeState::default());
        let inst = Instance {
            name,
            created,
            spec: RwLock::new(spec),
            state,
            cmd,
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

    pub(super) fn set_spec(&self, spec: InstanceSpec) {
        *self.spec.write().unwrap_or_else(|p| p.into_inner()) = spec;
    }

    pub(super) fn update_state(&self, change: impl FnOnce(&mut RuntimeState)) {
        self.state.send_modify(change);
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).map_err(|_| GONE.to_string())?;
        rx.await.map_err(|_| GONE.to_string())
    }

    /// Starts the backend; answers once it is spawned (status `starting`) or could not be.
    pub(super) async fn start(&self) -> Result<(), String> {
        self.ask(|reply| Command::Start { reply }).await?
    }

    /// Stops the backend; with `wait`, answers once the process is gone.
    pub(super) async fn stop(&self, wait: bool) -> Result<(), String> {
        self.ask(|reply| Command::Stop { reply, wait }).await
    }

    /// Stops and starts the backend; answers once the restart has begun.
    pub(super) async fn restart(&self) -> Result<(), String> {
        self.ask(|reply| Command::Restart { reply }).await
    }

    /// Stops the backend and ends the actor; answers once the process is gone.
    pub(super) async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}
