//! Clients (by IP) that presented a valid key recently. When wrong keys flood the hashing queue,
//! their verifications still get a turn at once (see [`super::hash`]); a client never seen with a
//! valid key may be told to try again (503).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a client stays known after its last valid key.
const REMEMBER: Duration = Duration::from_secs(24 * 60 * 60);

/// A use younger than this is not written again (most requests then only take the read lock).
const REFRESH: Duration = Duration::from_secs(60);

/// Most clients remembered; past it new ones are not added until old ones are forgotten.
const MAX_CLIENTS: usize = 65_536;

/// The clients, with when each last presented a valid key.
#[derive(Debug, Default)]
pub struct KnownClients {
    seen: RwLock<HashMap<IpAddr, Instant>>,
}

impl KnownClients {
    /// Notes that `client` presented a valid key now.
    pub fn note(&self, client: IpAddr) {
        let now = Instant::now();
        let fresh = self
            .seen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&client)
            .is_some_and(|at| now.duration_since(*at) < REFRESH);
        if fresh {
            return;
        }
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() < MAX_CLIENTS || seen.contains_key(&client) {
            seen.insert(client, now);
        }
    }

    /// True if `client` presented a valid key within the last day.
    pub fn knows(&self, client: IpAddr) -> bool {
        self.seen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&client)
            .is_some_and(|at| at.elapsed() < REMEMBER)
    }

    /// Forgets clients not seen for a day.
    pub fn forget_stale(&self) {
        self.seen
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, at| at.elapsed() < REMEMBER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_known_once_it_presented_a_valid_key() {
        let known = KnownClients::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(!known.knows(a));
        known.note(a);
        assert!(known.knows(a));
        assert!(!known.knows("10.0.0.2".parse().unwrap()));
        known.forget_stale();
        assert!(known.knows(a));
    }
}
