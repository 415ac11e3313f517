//! Who did what: the events the history records and the actor who caused each (an API key, a
//! config-file key, the CLI, or the server itself). Domain types, shared by the supervisor, the
//! key store and the history table.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Definition stored.
    Created,
    /// Definition changed.
    Updated,
    /// Definition removed.
    Deleted,
    /// A start was asked for (API, restore on boot, on-demand by an inference request).
    StartRequested,
    /// The backend answered `/health` with 200.
    Ready,
    /// A stop was asked for.
    StopRequested,
    /// The backend is gone after a stop.
    Stopped,
    /// The backend exited by itself while running.
    Crashed,
    /// The backend stopped answering its health checks while running and was killed.
    Unresponsive,
    /// The backend is being started again after a crash.
    Restarted,
    /// The backend could not start, or crashed too often.
    Failed,
    /// A stale child of a killed predecessor was ended on boot.
    OrphanKilled,
    /// Stopped to make room for another instance at the running limit (least recently used).
    Evicted,
    /// Stopped because nobody used it for its `idle_timeout`.
    IdleStopped,
    /// An API key was created.
    KeyCreated,
    /// An API key was revoked.
    KeyRevoked,
    /// An API key's policy was changed (the detail holds it before and after).
    KeyUpdated,
}

/// Who caused an event: an API key (id and name), a config-file key, the CLI, or the server itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Printable, non-secret name: the key's name, `config-management-key`, `cli:<user>`, `system`.
    pub name: String,
    /// The id of the stored API key that acted, if one did.
    pub key_id: Option<String>,
    /// The address the request came from, if it came over HTTP.
    pub addr: Option<IpAddr>,
}

impl Actor {
    /// The server itself (restore on boot, crashes, restarts).
    pub fn system() -> Self {
        Actor::named("system")
    }

    /// An actor known only by name.
    pub fn named(name: &str) -> Self {
        Actor {
            name: name.to_string(),
            key_id: None,
            addr: None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key_id {
            Some(id) => write!(f, "{} ({id})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Event;
    use crate::names;

    #[test]
    fn events_have_their_stored_names_and_parse_back() {
        assert_eq!(names::name_of(&Event::StartRequested), "start_requested");
        assert_eq!(names::name_of(&Event::OrphanKilled), "orphan_killed");
        let parsed: Event = names::parse("key_revoked").unwrap();
        assert_eq!(parsed, Event::KeyRevoked);
        let unknown = names::parse::<Event>("exploded").unwrap_err();
        assert!(unknown.contains("idle_stopped"), "{unknown}");
    }
}
