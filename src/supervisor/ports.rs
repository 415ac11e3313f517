//! Hands out ports from the configured range: never one another instance holds, never one that
//! something else on the machine is listening on.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// The port allocator.
#[derive(Debug)]
pub struct Ports {
    lo: u16,
    hi: u16,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    taken: HashSet<u16>,
    next: u16,
}

impl Ports {
    /// An allocator over `[lo, hi]`.
    pub fn new([lo, hi]: [u16; 2]) -> Self {
        Ports {
            lo,
            hi,
            state: Mutex::new(State {
                taken: HashSet::new(),
                next: lo,
            }),
        }
    }

    /// Reserves `fixed` if given, else `preferred` if free, else the next free port in the range.
    pub fn reserve(&self, fixed: Option<u16>, preferred: Option<u16>) -> Result<u16, String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(port) = fixed {
            if st.taken.contains(&port) {
                return Err(format!("port {port} is used by another instance"));
            }
            if !free_on_host(port) {
                return Err(format!("port {port} is in use by another program"));
            }
            st.taken.insert(port);
            return Ok(port);
        }
        if let Some(port) = preferred.filter(|p| (self.lo..=self.hi).contains(p)) {
            if !st.taken.contains(&port) && free_on_host(port) {
                st.taken.insert(port);
                return Ok(port);
            }
        }
        let span = u32::from(self.hi - self.lo) + 1;
        for i in 0..span {
            let offset = (u32::from(st.next - self.lo) + i) % span;
            let port = self.lo + offset as u16;
            if !st.taken.contains(&port) && free_on_host(port) {
                st.taken.insert(port);
                st.next = if port == self.hi { self.lo } else { port + 1 };
                return Ok(port);
            }
        }
        Err(format!(
            "no free port in port_range [{}, {}]",
            self.lo, self.hi
        ))
    }

    /// Gives a port back.
    pub fn release(&self, port: u16) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.taken.remove(&port);
    }
}

/// True if nothing on this machine listens on the port (on loopback or on all addresses).
fn free_on_host(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A range of ports that are free right now, found by letting the OS pick one.
    fn free_range(len: u16) -> [u16; 2] {
        for _ in 0..50 {
            let base = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if base < 60000 && (base..base + len).all(free_on_host) {
                return [base, base + len - 1];
            }
        }
        panic!("no free port range");
    }

    #[test]
    fn hands_out_distinct_ports_and_reuses_released_ones() {
        let range = free_range(3);
        let ports = Ports::new(range);
        let a = ports.reserve(None, None).unwrap();
        let b = ports.reserve(None, None).unwrap();
        let c = ports.reserve(None, None).unwrap();
        let mut all = vec![a, b, c];
        all.sort();
        assert_eq!(all, vec![range[0], range[0] + 1, range[1]]);
        assert!(ports.reserve(None, None).is_err(), "range exhausted");
        ports.release(b);
        assert_eq!(ports.reserve(None, None).unwrap(), b);
    }

    #[test]
    fn skips_ports_another_program_listens_on() {
        let range = free_range(2);
        let _squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, range[0])).unwrap();
        let ports = Ports::new(range);
        assert_eq!(ports.reserve(None, None).unwrap(), range[1]);
        assert!(ports
            .reserve(Some(range[0]), None)
            .unwrap_err()
            .contains("another program"));
    }

    #[test]
    fn fixed_port_held_by_an_instance_is_refused_and_preferred_is_honoured() {
        let range = free_range(3);
        let ports = Ports::new(range);
        assert_eq!(ports.reserve(None, Some(range[1])).unwrap(), range[1]);
        assert!(ports
            .reserve(Some(range[1]), None)
            .unwrap_err()
            .contains("another instance"));
    }
}
