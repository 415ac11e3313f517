//! How many connections each client address holds, so that one client cannot take every
//! descriptor: past its cap, a new connection is closed as soon as it is accepted.
//!
//! Addresses are counted exactly (an IPv4 client seen over IPv6 counts as its IPv4 address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// At most one warning about refused connections per this period, so a flood cannot flood the log.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Open connections per client address, each at most `cap`.
#[derive(Debug)]
pub(crate) struct PerClient {
    cap: usize,
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    open: HashMap<IpAddr, usize>,
    /// Refused since the last warning, and when that was.
    refused: u64,
    warned: Option<Instant>,
}

/// One connection's place under its client's cap; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    owner: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    /// No connections yet; each address may hold `cap`.
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(PerClient {
            cap,
            inner: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more connection from `ip`, or `None` if it holds its cap already.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut counts = self.lock();
        let open = counts.open.entry(ip).or_insert(0);
        if *open < self.cap {
            *open += 1;
            return Some(Slot {
                owner: self.clone(),
                ip,
            });
        }
        counts.refused += 1;
        if counts.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                client = %ip,
                cap = self.cap,
                refused = counts.refused,
                "closing connections of clients at their cap (server.max_connections_per_client)"
            );
            counts.refused = 0;
            counts.warned = Some(Instant::now());
        }
        None
    }

    /// Connections open now, from every address.
    pub(crate) fn total(&self) -> usize {
        self.lock().open.values().sum()
    }

    /// Connections `ip` holds now.
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        self.lock().open.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        if let Some(open) = counts.open.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                counts.open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_its_cap_and_gets_places_back() {
        let limit = PerClient::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "::ffff:127.0.0.3".parse().unwrap();
        let first = limit.admit(a).expect("first");
        let _second = limit.admit(a).expect("second");
        assert!(limit.admit(a).is_none(), "over the cap");
        let _other = limit.admit(b).expect("another address is apart");
        assert_eq!(limit.total(), 3);
        drop(first);
        assert_eq!(limit.open(a), 1);
        assert!(
            limit.admit(a).is_some(),
            "a place given back is taken again"
        );
        assert_eq!(
            limit.open("127.0.0.3".parse().unwrap()),
            1,
            "an IPv4 client seen over IPv6 counts as itself"
        );
    }
}
