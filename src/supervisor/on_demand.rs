//! Picking the instance for one request: counted in flight at once, started on demand if it is
//! cold, and waited for until it is ready.
//!
//! Concurrent cold requests share one start: each remembers how many starts the instance had when
//! it saw it stopped, and under the admission gate starts it only if nobody else has since. Those
//! that joined a start that fails all answer with its reason instead of starting it again.
//!
//! Requests wait their turn rather than being refused:
//! - at `max_running_instances`, a cold start waits for its turn to make room (one at a time, by
//!   key priority), and, if every instance it may stop is busy, for the least recently used one to
//!   drain (it takes no new request; what it has in flight, queued requests included, is served
//!   first), then stops it. A request for a draining instance waits until it is stopped, then
//!   starts it again in its turn. 409 only when eviction is off or not allowed to the key, or when
//!   no room was made within `on_demand_start_timeout`.
//! - an instance with `max_concurrent` lets that many requests through at once; the rest wait by
//!   key priority, FIFO within one, up to `max_queue` waiting and `queue_timeout` seconds (503 with
//!   `Retry-After` beyond either). `/v1` and the instance proxy's inference requests share the
//!   places; the proxy's reads never wait.

use super::evict::{Drain, Room};
use super::queue::{Entry, Full, Permit, Rank};
use super::state::RuntimeState;
use super::usage::InFlight;
use super::{Handle, Status, Supervisor};
use crate::audit::Actor;
use crate::audit::Event;
use crate::auth::policy::Priority;
use crate::db::instances::Desired;
use crate::definitions::QueueLimits;
use crate::error::{Error, Result};
use crate::metrics::QueueRefusal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Seconds a client refused by a queue is told to wait before trying again: a place frees as soon
/// as one answer ends, so a second is enough to be worth a retry.
const QUEUE_RETRY_AFTER: u64 = 1;

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
    /// Where its requests stand in queues.
    pub priority: Priority,
}

impl Rights<'_> {
    /// Everything: any start, any eviction.
    pub const ALL: Rights<'static> = Rights {
        start: true,
        evict: true,
        evictable: &|_| true,
        priority: Priority::Normal,
    };
}

impl Supervisor {
    /// The port of a running instance for one proxied request, held in use until the guard drops;
    /// 503 if it is not running (the instance proxy never starts anything). With `queued` (the
    /// key's priority, for a request that runs inference) a place among its `max_concurrent` is
    /// waited for as on `/v1`; without (a read: health, props, models, slots), never.
    pub async fn use_running(
        &self,
        name: &str,
        queued: Option<Priority>,
    ) -> Result<(u16, InFlight)> {
        let inst = self.instance(name)?;
        // Counted before looking, so an eviction either sees this request or is seen by it.
        let Some(mut guard) = inst.try_begin_use() else {
            return Err(Error::Unavailable(format!(
                "instance '{name}' is being stopped to make room for another \
                 (max_running_instances)"
            )));
        };
        let port = running_port(&inst)?;
        let Some(priority) = queued else {
            return Ok((port, guard));
        };
        if !self.hold_place(&inst, &mut guard, rank(priority)).await? {
            return Ok((port, guard));
        }
        // It may have waited: the instance may have stopped meanwhile, or restarted elsewhere.
        Ok((running_port(&inst)?, guard))
    }

    /// The port of `name` for one inference request, held in use until the guard drops. A stopped
    /// or failed instance with `on_demand_start` is started (by `actor`, if `rights` allow, making
    /// room at the running limit as `rights` allow, waiting for it if need be) and waited for, up to
    /// `on_demand_start_timeout`; then a place among its `max_concurrent` is waited for, up to its
    /// `queue_timeout`. An instance an operator stopped stays stopped unless its definition allows
    /// otherwise.
    pub async fn acquire(
        &self,
        name: &str,
        actor: &Actor,
        rights: Rights<'_>,
    ) -> Result<(u16, InFlight)> {
        let inst = self.instance(name)?;
        let secs = self.shared.cfg.instances.on_demand_start_timeout;
        // Set while the request waits for room rather than for a start: its timeout is then a 409.
        let for_room = AtomicBool::new(false);
        let admitted = self.admitted(&inst, actor, rights, &for_room);
        let (port, mut guard) =
            match tokio::time::timeout(Duration::from_secs(secs), admitted).await {
                Ok(admitted) => admitted?,
                Err(_) if for_room.load(Ordering::SeqCst) => {
                    inst.metrics().queue_refused(QueueRefusal::NoRoom);
                    let max = self.shared.cfg.instances.max_running_instances;
                    return Err(Error::Conflict(format!(
                        "maximum number of running instances ({max}) reached, and no running \
                         instance could be freed for '{name}' within {secs} s \
                         (instances.on_demand_start_timeout)"
                    )));
                }
                Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "instance '{name}' did not become ready within {secs} s \
                         (instances.on_demand_start_timeout)"
                    )))
                }
            };
        self.hold_place(&inst, &mut guard, rank(rights.priority))
            .await?;
        Ok((port, guard))
    }

    /// The request counted on `inst` (once it no longer drains) and its port once it runs.
    async fn admitted(
        &self,
        inst: &Arc<Handle>,
        actor: &Actor,
        rights: Rights<'_>,
        for_room: &AtomicBool,
    ) -> Result<(u16, InFlight)> {
        let guard = loop {
            if let Some(guard) = inst.try_begin_use() {
                break guard;
            }
            // Chosen for eviction: it is stopped once its requests end; then this one starts it
            // again, in its turn.
            let _waiting = inst.metrics().waiting();
            for_room.store(true, Ordering::SeqCst);
            inst.usage().drain_ended().await;
            for_room.store(false, Ordering::SeqCst);
        };
        let port = self.ready_port(inst, actor, rights, for_room).await?;
        Ok((port, guard))
    }

    /// Holds `guard` to a place among `inst`'s `max_concurrent`, waited for by `rank`, if it has
    /// that limit (then true): the one queue `/v1` and the proxy share.
    async fn hold_place(
        &self,
        inst: &Arc<Handle>,
        guard: &mut InFlight,
        rank: Rank,
    ) -> Result<bool> {
        let Some((max, limits)) = inst.queue_limits(&self.shared.cfg.instances) else {
            return Ok(false);
        };
        guard.hold(self.place(inst, max, limits, rank).await?);
        Ok(true)
    }

    /// A place among `inst`'s `max` concurrent requests, waited for by `rank` up to the queue's
    /// timeout; 503 with `Retry-After` when the queue is full or the wait too long.
    async fn place(
        &self,
        inst: &Arc<Handle>,
        max: usize,
        limits: QueueLimits,
        rank: Rank,
    ) -> Result<Permit> {
        let name = &inst.name;
        let full = |_: Full| {
            inst.metrics().queue_refused(QueueRefusal::Full);
            Error::QueueRefused {
                message: format!(
                    "instance '{name}' is answering {max} requests (max_concurrent) and {} more \
                     are waiting (max_queue); try again shortly",
                    limits.max_queue.unwrap_or_default()
                ),
                retry_after: QUEUE_RETRY_AFTER,
            }
        };
        let waiter = match inst.concurrency().join(rank, max, limits.max_queue) {
            Ok(Entry::Now(permit)) => return Ok(permit),
            Ok(Entry::Waiting(waiter)) => waiter,
            Err(e) => return Err(full(e)),
        };
        let _waiting = inst.metrics().waiting();
        let secs = limits.queue_timeout;
        match tokio::time::timeout(Duration::from_secs(secs), waiter.admitted()).await {
            Ok(permit) => Ok(permit),
            Err(_) => {
                inst.metrics().queue_refused(QueueRefusal::Timeout);
                Err(Error::QueueRefused {
                    message: format!(
                        "waited {secs} s (queue_timeout) for one of instance '{name}''s {max} \
                         places (max_concurrent); try again shortly"
                    ),
                    retry_after: QUEUE_RETRY_AFTER,
                })
            }
        }
    }

    /// Waits until `inst` runs, starting it (once, shared) if it is cold; its port.
    async fn ready_port(
        &self,
        inst: &Arc<Handle>,
        actor: &Actor,
        rights: Rights<'_>,
        for_room: &AtomicBool,
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
                    self.start_on_demand(inst, starts, actor, rights, for_room)
                        .await?;
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

    /// Starts `inst` unless someone started it since it had `seen_starts` starts: in this
    /// request's turn to make room, with the gate held while it checks, evicts and starts, so the
    /// running limit holds and no eviction or idle stop crosses it. Waiting for a busy instance to
    /// drain is done without the gate.
    async fn start_on_demand(
        &self,
        inst: &Arc<Handle>,
        seen_starts: u64,
        actor: &Actor,
        rights: Rights<'_>,
        for_room: &AtomicBool,
    ) -> Result<()> {
        let Some(_turn) = self.turn(inst, rights, for_room).await else {
            // Started by another request meanwhile.
            return Ok(());
        };
        // Kept across passes: the instance stays draining until it is evicted.
        let mut drain: Option<Drain> = None;
        let mut evicted = false;
        loop {
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
            match self.make_room(&inst.name, actor, rights).await {
                Ok(Room::Made { evicted: e }) => evicted |= e,
                Ok(Room::Draining(busy)) => {
                    drop(_guard);
                    let _waiting = inst.metrics().waiting();
                    for_room.store(true, Ordering::SeqCst);
                    busy.settled().await;
                    for_room.store(false, Ordering::SeqCst);
                    drain = Some(busy);
                    continue;
                }
                Err(e) => {
                    if matches!(e, Error::Conflict(_)) {
                        inst.metrics().queue_refused(QueueRefusal::EvictionOff);
                    }
                    return Err(e);
                }
            }
            // The evicted instance is gone: requests waiting for it may come back for it.
            drop(drain.take());
            self.set_desired(inst, Desired::Running).await?;
            self.record(
                &inst.name,
                Event::StartRequested,
                actor,
                Some("on demand, by an inference request"),
            )
            .await;
            inst.metrics().on_demand_start();
            if evicted {
                inst.metrics().swapped_in();
            }
            // A spawn failure shows as `failed` with its reason, which the waiting loop reports.
            if let Err(e) = inst.start().await {
                tracing::warn!(instance = %inst.name, error = %e, "on-demand start failed");
            }
            return Ok(());
        }
    }

    /// This request's turn to make room for `inst`, by its key's priority; `None` if `inst` became
    /// active while it waited (someone else started it). Without a running limit, at once.
    async fn turn(
        &self,
        inst: &Arc<Handle>,
        rights: Rights<'_>,
        for_room: &AtomicBool,
    ) -> Option<Option<Permit>> {
        if self.shared.cfg.instances.max_running_instances < 0 {
            return Some(None);
        }
        let waiter = match self.turns.join(rank(rights.priority), 1, None) {
            Ok(Entry::Now(permit)) => return Some(Some(permit)),
            Ok(Entry::Waiting(waiter)) => waiter,
            // The line of turns has no bound.
            Err(Full) => return None,
        };
        let _waiting = inst.metrics().waiting();
        for_room.store(true, Ordering::SeqCst);
        let mut rx = inst.subscribe();
        let became_active = async {
            loop {
                if rx.borrow_and_update().status.is_active() || rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let turn = tokio::select! {
            turn = waiter.admitted() => Some(Some(turn)),
            () = became_active => None,
        };
        for_room.store(false, Ordering::SeqCst);
        turn
    }
}

/// The queue rank of a key's priority: higher priorities go first.
fn rank(priority: Priority) -> Rank {
    match priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

/// The port of `inst` if it runs; 503 otherwise.
fn running_port(inst: &Handle) -> Result<u16> {
    let state = inst.snapshot();
    match (state.status, state.port) {
        (Status::Running, Some(port)) => Ok(port),
        (status, _) => Err(not_running(&inst.name, status)),
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
