//! Picking the instance for one request: counted in flight at once, started on demand if it is
//! cold, and waited for until it is ready.
//!
//! Concurrent cold requests share one start: each remembers how many starts the instance had when
//! it saw it stopped, and under the admission gate starts it only if nobody else has since. Those
//! that joined a start that fails all answer with its reason instead of starting it again.

use super::state::RuntimeState;
use super::usage::InFlight;
use super::{Handle, Status, Supervisor};
use crate::audit::Actor;
use crate::audit::Event;
use crate::db::instances::Desired;
use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// What the request's key allows a start on demand to do.
#[derive(Clone, Copy)]
pub struct Rights<'a> {
    /// May it start a stopped instance (`can_start`).
    pub start: bool,
    /// May its start evict another instance at the running limit (`can_evict`).
    pub evict: bool,
    /// Which instances it may evict (those the key may use: a key limited to some instances never
    /// stops another team's).
    pub evictable: &'a (dyn Fn(&str) -> bool + Sync),
}

impl Rights<'_> {
    /// Everything: any start, any eviction.
    pub const ALL: Rights<'static> = Rights {
        start: true,
        evict: true,
        evictable: &|_| true,
    };
}

impl Supervisor {
    /// The port of a running instance for one proxied request, held in use until the guard drops;
    /// 503 if it is not running (the instance proxy never starts anything).
    pub fn use_running(&self, name: &str) -> Result<(u16, InFlight)> {
        let inst = self.instance(name)?;
        // Counted before looking, so an eviction either sees this request or is seen by it.
        let guard = inst.begin_use();
        let state = inst.snapshot();
        match (state.status, state.port) {
            (Status::Running, Some(port)) => Ok((port, guard)),
            (status, _) => Err(not_running(name, status)),
        }
    }

    /// The port of `name` for one inference request, held in use until the guard drops. A stopped
    /// or failed instance with `on_demand_start` is started (by `actor`, if `rights` allow, evicting
    /// at the running limit only as `rights` allow) and waited for, up to `on_demand_start_timeout`.
    /// An instance an operator stopped stays stopped unless its definition allows otherwise.
    pub async fn acquire(
        &self,
        name: &str,
        actor: &Actor,
        rights: Rights<'_>,
    ) -> Result<(u16, InFlight)> {
        let inst = self.instance(name)?;
        let guard = inst.begin_use();
        let secs = self.shared.cfg.instances.on_demand_start_timeout;
        let ready = self.ready_port(&inst, actor, rights);
        match tokio::time::timeout(Duration::from_secs(secs), ready).await {
            Ok(port) => Ok((port?, guard)),
            Err(_) => Err(Error::Unavailable(format!(
                "instance '{name}' did not become ready within {secs} s \
                 (instances.on_demand_start_timeout)"
            ))),
        }
    }

    /// Waits until `inst` runs, starting it (once, shared) if it is cold; its port.
    async fn ready_port(
        &self,
        inst: &Arc<Handle>,
        actor: &Actor,
        rights: Rights<'_>,
    ) -> Result<u16> {
        let mut rx = inst.subscribe();
        // True once this request has seen or made a start: its outcome is then the answer.
        let mut joined = false;
        loop {
            // The count is read before the state, so a start that lands in between is noticed.
            let starts = inst.starts();
            let state = rx.borrow_and_update().clone();
            match state.status {
                Status::Running => {
                    if let Some(port) = state.port {
                        return Ok(port);
                    }
                }
                Status::Starting | Status::Restarting => {
                    if !joined && !self.on_demand(inst) {
                        return Err(not_running(&inst.name, state.status));
                    }
                    joined = true;
                }
                Status::Stopping => {}
                Status::Stopped | Status::Failed if joined => {
                    return Err(start_failed(&inst.name, &state));
                }
                Status::Stopped | Status::Failed => {
                    if !self.on_demand(inst) {
                        return Err(Error::Unavailable(format!(
                            "instance '{}' is not running and on-demand start is disabled",
                            inst.name
                        )));
                    }
                    if !rights.start {
                        return Err(Error::Unavailable(format!(
                            "instance '{}' is not running, and this API key may not start \
                             instances (can_start: false)",
                            inst.name
                        )));
                    }
                    self.start_on_demand(inst, starts, actor, rights).await?;
                    joined = true;
                    continue;
                }
            }
            rx.changed()
                .await
                .map_err(|_| Error::Unavailable(format!("instance '{}' was removed", inst.name)))?;
        }
    }

    /// Whether `inst` may be started by a request.
    fn on_demand(&self, inst: &Handle) -> bool {
        inst.spec()
            .lifecycle(&self.shared.cfg.instances)
            .on_demand_start
    }

    /// Starts `inst` unless someone started it since it had `seen_starts` starts; with the gate
    /// held, so the running limit holds and no eviction or idle stop crosses it.
    async fn start_on_demand(
        &self,
        inst: &Arc<Handle>,
        seen_starts: u64,
        actor: &Actor,
        rights: Rights<'_>,
    ) -> Result<()> {
        let _guard = self.gate.lock().await;
        let current = self.instance(&inst.name)?;
        if !Arc::ptr_eq(&current, inst) {
            return Err(Error::NotFound(format!(
                "instance '{}' was replaced",
                inst.name
            )));
        }
        let status = inst.snapshot().status;
        if inst.starts() != seen_starts || !matches!(status, Status::Stopped | Status::Failed) {
            return Ok(());
        }
        let life = inst.spec().lifecycle(&self.shared.cfg.instances);
        if inst.desired() == Desired::Stopped && !life.on_demand_after_stop {
            return Err(Error::Unavailable(format!(
                "instance '{}' was stopped by an operator, and requests do not start it \
                 (start it through the API, or set on_demand_after_stop)",
                inst.name
            )));
        }
        self.make_room(&inst.name, actor, rights).await?;
        self.set_desired(inst, Desired::Running).await?;
        self.record(
            &inst.name,
            Event::StartRequested,
            actor,
            Some("on demand, by an inference request"),
        )
        .await;
        inst.metrics().on_demand_start();
        // A spawn failure shows as `failed` with its reason, which the waiting loop reports.
        if let Err(e) = inst.start().await {
            tracing::warn!(instance = %inst.name, error = %e, "on-demand start failed");
        }
        Ok(())
    }
}

fn status_name(status: Status) -> String {
    crate::names::name_of(&status)
}

fn not_running(name: &str, status: Status) -> Error {
    Error::Unavailable(format!(
        "instance '{name}' is not running (status: {})",
        status_name(status)
    ))
}

fn start_failed(name: &str, state: &RuntimeState) -> Error {
    match &state.last_error {
        Some(reason) => Error::StartFailed {
            instance: name.to_string(),
            reason: reason.clone(),
        },
        None => Error::Unavailable(format!(
            "instance '{name}' was {} before it became ready",
            status_name(state.status)
        )),
    }
}
