//! Stops running instances nobody has used for their `idle_timeout`.
//!
//! One background task sleeps until the earliest moment an instance could become idle, rather than
//! polling on a fixed interval: stops happen on time even for short timeouts, and nothing wakes up
//! when no instance has one. It is woken early when an instance becomes ready or is redefined.

use super::{Handle, Status, Supervisor};
use crate::audit::Actor;
use crate::audit::Event;
use crate::db::instances::Desired;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Longest sleep between checks, whatever the deadlines: a safety net, not the mechanism.
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Supervisor {
    /// Starts the idle watcher (once); [`Supervisor::shutdown`] ends it.
    pub(super) fn watch_idle(&self) {
        let mut slot = self.idle_task.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(tokio::spawn(run(self.clone())));
        }
    }

    /// Stops every running instance idle past its timeout; returns when to look again.
    async fn stop_idle(&self) -> Instant {
        let now = Instant::now();
        let mut next = now + MAX_SLEEP;
        let all: Vec<Arc<Handle>> = self.read_map().values().cloned().collect();
        for inst in all {
            let life = inst.spec().lifecycle(&self.shared.cfg.instances);
            let Some(limit) = life.idle_timeout.duration() else {
                continue;
            };
            if inst.snapshot().status != Status::Running {
                continue;
            }
            let last_used = Instant::from_std(inst.last_used());
            let due = last_used.checked_add(limit).unwrap_or(next);
            if due > now {
                next = next.min(due);
            } else if !self.stop_if_idle(&inst, limit).await {
                // Busy: it cannot be idle before its requests end and `limit` passes after that.
                next = next.min(now + limit);
            }
        }
        next
    }

    /// Stops `inst` if it is still running with no request in flight and unused for `limit`.
    async fn stop_if_idle(&self, inst: &Handle, limit: Duration) -> bool {
        let _guard = self.gate.lock().await;
        let claimed = inst.claim_for_stop(|state, last_used| {
            state.status == Status::Running && last_used.elapsed() >= limit
        });
        if !claimed {
            return false;
        }
        let idle = inst.last_used().elapsed().as_secs_f64();
        let detail = format!(
            "no request for {idle:.0} s (idle_timeout: {} min)",
            inst.spec()
                .lifecycle(&self.shared.cfg.instances)
                .idle_timeout
        );
        tracing::info!(instance = %inst.name, %detail, "stopping idle instance");
        self.record(
            &inst.name,
            Event::IdleStopped,
            &Actor::system(),
            Some(&detail),
        )
        .await;
        // Sent with the gate held, so no start overtakes it; the actor halts before anything else.
        if let Err(e) = inst.stop(false).await {
            tracing::warn!(instance = %inst.name, error = %e, "idle stop not delivered");
        }
        // It comes back on demand, not on the next boot.
        if let Err(e) = self.set_desired(inst, Desired::Dormant).await {
            tracing::error!(instance = %inst.name, error = %e, "could not record desired state");
        }
        true
    }
}

async fn run(sup: Supervisor) {
    loop {
        let next = sup.stop_idle().await;
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = sup.shared.idle_wake.notified() => {}
        }
    }
}
