//! A waiting line with a limited number of places served at once: waiters are let in by priority,
//! first come first served within a priority. One serves each instance's `max_concurrent`; one
//! (with a single place) serves the turn to make room at `max_running_instances`.
//!
//! A place is a [`Permit`] that gives itself to the next waiter when dropped. A waiter that gives
//! up (timeout, client gone) leaves the line when its future is dropped; a permit handed to it in
//! that instant is dropped with the channel and goes on to the next, so no place leaks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Which waiters go first: lower ranks first.
pub type Rank = u8;

/// A line and the places it serves.
#[derive(Debug, Default)]
pub(crate) struct Waitlist {
    inner: Mutex<Line>,
}

#[derive(Debug, Default)]
struct Line {
    /// Places taken.
    in_use: usize,
    /// Places there are (changes with the definition).
    limit: usize,
    /// Arrival counter: FIFO within a rank.
    next: u64,
    waiting: BTreeMap<(Rank, u64), oneshot::Sender<Permit>>,
}

/// Why a place was not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// One place taken; given to the next waiter when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    list: Arc<Waitlist>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.list.release();
    }
}

/// How a request joined the line.
#[derive(Debug)]
pub(crate) enum Entry {
    /// A place was free: taken.
    Now(Permit),
    /// In line: await [`Waiter::admitted`].
    Waiting(Waiter),
}

/// A place in line; leaves the line when dropped (a waiter that gave up).
#[derive(Debug)]
pub(crate) struct Waiter {
    list: Arc<Waitlist>,
    key: (Rank, u64),
    rx: oneshot::Receiver<Permit>,
}

impl Waiter {
    /// Returns once a place is given to this waiter. Cancel by dropping the future.
    pub(crate) async fn admitted(mut self) -> Permit {
        match (&mut self.rx).await {
            Ok(permit) => permit,
            // The sender lives in the line until it sends; the line outlives this waiter.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.list.lock().waiting.remove(&self.key);
    }
}

impl Waitlist {
    fn lock(&self) -> MutexGuard<'_, Line> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waiters in line now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Joins the line for a place among `limit`: taken at once if one is free and nobody waits,
    /// else given after every waiter of a lower rank and those of the same rank who came first.
    /// `Full` if `max_waiting` are waiting already.
    pub(crate) fn join(
        self: &Arc<Self>,
        rank: Rank,
        limit: usize,
        max_waiting: Option<usize>,
    ) -> Result<Entry, Full> {
        let mut line = self.lock();
        line.limit = limit;
        // A raised limit lets waiters in now rather than at the next release.
        let handed = self.hand_over(&mut line);
        let entry = if line.waiting.is_empty() && line.in_use < line.limit {
            line.in_use += 1;
            Ok(Entry::Now(Permit { list: self.clone() }))
        } else if max_waiting.is_some_and(|max| line.waiting.len() >= max) {
            Err(Full)
        } else {
            let key = (rank, line.next);
            line.next += 1;
            let (tx, rx) = oneshot::channel();
            line.waiting.insert(key, tx);
            Ok(Entry::Waiting(Waiter {
                list: self.clone(),
                key,
                rx,
            }))
        };
        drop(line);
        send_all(handed);
        entry
    }

    /// [`Waitlist::join`], then the wait.
    #[cfg(test)]
    async fn enter(
        self: &Arc<Self>,
        rank: Rank,
        limit: usize,
        max_waiting: Option<usize>,
    ) -> Result<Permit, Full> {
        match self.join(rank, limit, max_waiting)? {
            Entry::Now(permit) => Ok(permit),
            Entry::Waiting(waiter) => Ok(waiter.admitted().await),
        }
    }

    /// Frees a place: the next waiter gets it, unless the limit was lowered meanwhile.
    fn release(self: &Arc<Self>) {
        let handed = {
            let mut line = self.lock();
            line.in_use = line.in_use.saturating_sub(1);
            self.hand_over(&mut line)
        };
        send_all(handed);
    }

    /// Takes places for the first waiters while places are free; the permits are sent by the
    /// caller once the line is unlocked (a failed send drops the permit, which releases it again).
    fn hand_over(self: &Arc<Self>, line: &mut Line) -> Vec<(oneshot::Sender<Permit>, Permit)> {
        let mut handed = Vec::new();
        while line.in_use < line.limit {
            let Some((_, tx)) = line.waiting.pop_first() else {
                break;
            };
            line.in_use += 1;
            handed.push((tx, Permit { list: self.clone() }));
        }
        handed
    }
}

fn send_all(handed: Vec<(oneshot::Sender<Permit>, Permit)>) {
    for (tx, permit) in handed {
        // A waiter gone in the meantime: its permit comes back here and is dropped, freeing it.
        let _ = tx.send(permit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn waiters_are_let_in_by_rank_then_by_arrival() {
        let list = Arc::new(Waitlist::default());
        let first = list.enter(1, 1, None).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (who, rank) in [("low", 2), ("normal-1", 1), ("high", 0), ("normal-2", 1)] {
            let (line, order) = (list.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = line.enter(rank, 1, None).await.unwrap();
                order.lock().unwrap().push(who);
                drop(permit);
            }));
            // Each arrives after the one before.
            while list.waiting() < tasks.len() {
                settle().await;
            }
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["high", "normal-1", "normal-2", "low"]
        );
    }

    #[tokio::test]
    async fn a_full_line_refuses_and_a_waiter_that_gives_up_leaks_no_place() {
        let list = Arc::new(Waitlist::default());
        let held = list.enter(1, 1, Some(1)).await.unwrap();
        let waiter = {
            let list = list.clone();
            tokio::spawn(async move { list.enter(1, 1, Some(1)).await.map(drop) })
        };
        while list.waiting() < 1 {
            settle().await;
        }
        assert_eq!(list.enter(1, 1, Some(1)).await.unwrap_err(), Full);
        // One that waits past its deadline leaves the line.
        let gave_up =
            tokio::time::timeout(Duration::from_millis(20), list.enter(1, 1, Some(2))).await;
        assert!(gave_up.is_err());
        assert_eq!(list.waiting(), 1);
        drop(held);
        waiter.await.unwrap().unwrap();
        assert_eq!(list.waiting(), 0);
        // Every place came back: a new one is given at once.
        let again = tokio::time::timeout(Duration::from_secs(1), list.enter(1, 1, Some(0))).await;
        assert!(matches!(again, Ok(Ok(_))));
    }

    #[tokio::test]
    async fn a_dropped_waiter_passes_its_place_on() {
        let list = Arc::new(Waitlist::default());
        let held = list.enter(1, 1, None).await.unwrap();
        let Ok(Entry::Waiting(dropped)) = list.join(1, 1, None) else {
            panic!("the place is taken: it waits");
        };
        let next = {
            let list = list.clone();
            tokio::spawn(async move { list.enter(1, 1, None).await.map(drop) })
        };
        while list.waiting() < 2 {
            settle().await;
        }
        // The place is handed to the first waiter, which is dropped before it looks.
        drop(held);
        drop(dropped);
        tokio::time::timeout(Duration::from_secs(1), next)
            .await
            .expect("the place went on to the next waiter")
            .unwrap()
            .unwrap();
    }
}
