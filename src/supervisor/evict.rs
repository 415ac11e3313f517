//! Admission at `max_running_instances`: refuse with 409, or (with `enable_lru_eviction`) stop the
//! least recently used instance that has no request in flight. When every instance that could go
//! is busy, the least recently used one is set draining ([`Drain`]): it takes no new request, and
//! an on-demand start waits for what it has in flight to end (API starts refuse instead).

use super::on_demand::Rights;
use super::{Handle, Supervisor};
use crate::audit::Actor;
use crate::audit::Event;
use crate::db::instances::Desired;
use crate::error::{Error, Result};
use std::sync::Arc;

/// What making room came to.
#[must_use]
pub(super) enum Room {
    /// There is room; `evicted` if an instance was stopped for it.
    Made {
        /// An instance was stopped to make it.
        evicted: bool,
    },
    /// Every instance that may go is busy: this one drains, to be evicted once it is idle.
    Draining(Drain),
}

impl Room {
    /// Room now, or 409 (for starts that do not wait: the API's).
    pub(super) fn now(self) -> Result<()> {
        match self {
            Room::Made { .. } => Ok(()),
            Room::Draining(_) => Err(Error::Conflict(
                "maximum number of running instances reached and every running instance is \
                 serving a request"
                    .to_string(),
            )),
        }
    }
}

/// An instance chosen for eviction while busy: it takes no new request until this is dropped.
pub(super) struct Drain {
    victim: Arc<Handle>,
}

impl Drain {
    fn begin(victim: Arc<Handle>) -> Self {
        victim.usage().set_draining(true);
        Drain { victim }
    }

    /// Returns once the instance has nothing in flight, or stopped being active meanwhile (it
    /// crashed, or an operator stopped it).
    pub(super) async fn settled(&self) {
        let mut rx = self.victim.subscribe();
        let inactive = async {
            loop {
                if !rx.borrow_and_update().status.is_active() || rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = self.victim.usage().drained() => {}
            () = inactive => {}
        }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.victim.usage().set_draining(false);
    }
}

impl Supervisor {
    /// The limit and the active instances other than `name`, when they already fill the limit.
    pub(super) fn over_limit(&self, name: &str) -> Option<(i64, Vec<Arc<Handle>>)> {
        let max = self.shared.cfg.instances.max_running_instances;
        if max < 0 {
            return None;
        }
        let others: Vec<Arc<Handle>> = self
            .read_map()
            .values()
            .filter(|i| i.name != name && i.snapshot().status.is_active())
            .cloned()
            .collect();
        (others.len() as i64 >= max).then_some((max, others))
    }

    /// Makes room for `name` to become active; call with the gate held. Nothing to do if it is
    /// active already or the limit is not reached; otherwise evicts one of the instances
    /// `rights` allow (none without `evict`; a key limited to some instances never stops another
    /// team's), or refuses with 409, or (all of them busy) sets one draining.
    pub(super) async fn make_room(
        &self,
        name: &str,
        actor: &Actor,
        rights: Rights<'_>,
    ) -> Result<Room> {
        let already_active = self
            .read_map()
            .get(name)
            .is_some_and(|i| i.snapshot().status.is_active());
        if already_active {
            return Ok(Room::Made { evicted: false });
        }
        let mut evicted = false;
        // A loop, not one eviction: each pass re-counts, whatever changed meanwhile.
        while let Some((max, mut active)) = self.over_limit(name) {
            if !self.shared.cfg.instances.enable_lru_eviction {
                return Err(Error::Conflict(format!(
                    "maximum number of running instances ({max}) reached"
                )));
            }
            if !rights.evict {
                return Err(Error::Conflict(format!(
                    "maximum number of running instances ({max}) reached, and this API key may \
                     not evict instances (can_evict: false)"
                )));
            }
            active.retain(|i| (rights.evictable)(&i.name));
            if active.is_empty() {
                return Err(Error::Conflict(format!(
                    "maximum number of running instances ({max}) reached, and this API key may \
                     not stop the instances that run"
                )));
            }
            active.sort_by_key(|i| i.last_used());
            let victim = active
                .iter()
                .find(|i| i.claim_for_stop(|state, _| state.status.is_active()));
            let Some(victim) = victim else {
                // One already draining stays the one: its in-flight requests are ending.
                let busy = active
                    .iter()
                    .find(|i| i.usage().draining())
                    .unwrap_or(&active[0]);
                return Ok(Room::Draining(Drain::begin(busy.clone())));
            };
            self.evict(victim, name, max, actor).await?;
            evicted = true;
        }
        Ok(Room::Made { evicted })
    }

    /// Stops a claimed instance and waits until its process is gone, so the newcomer never runs
    /// beside it (the limit is about memory).
    async fn evict(&self, victim: &Handle, for_name: &str, max: i64, actor: &Actor) -> Result<()> {
        let idle = victim.last_used().elapsed().as_secs();
        let detail = format!(
            "least recently used (idle {idle} s); stopped to make room for '{for_name}' \
             (max_running_instances: {max})"
        );
        tracing::info!(instance = %victim.name, %detail, "evicting");
        self.record(&victim.name, Event::Evicted, actor, Some(&detail))
            .await;
        victim.stop(true).await.map_err(Error::Unavailable)?;
        // It comes back on demand, not on the next boot: nobody asked for it to run.
        self.set_desired(victim, Desired::Dormant).await
    }
}
