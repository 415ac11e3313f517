//! The tokio runtimes llamactl runs on (the main one, and one per HTTP worker thread), so a scrape
//! can count their live tasks: a count that only grows under a steady load is a task leak.
//!
//! Each runtime registers itself while it runs and is forgotten when its registration drops, so a
//! worker that ended is not counted (nor kept alive) by the scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;

/// The runtimes registered now; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Runtimes {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: AtomicU64,
    handles: Mutex<Vec<(u64, Handle)>>,
}

/// A runtime's place in [`Runtimes`]; dropping it removes the runtime.
#[derive(Debug)]
#[must_use = "the runtime is forgotten when this drops"]
pub struct Registration {
    id: u64,
    inner: Arc<Inner>,
}

impl Runtimes {
    /// Counts the runtime of `handle` until the returned registration drops.
    pub fn register(&self, handle: Handle) -> Registration {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner.lock().push((id, handle));
        Registration {
            id,
            inner: self.inner.clone(),
        }
    }

    /// Tasks alive now (spawned and not yet finished) on every registered runtime.
    pub fn alive_tasks(&self) -> usize {
        self.inner
            .lock()
            .iter()
            .map(|(_, h)| h.metrics().num_alive_tasks())
            .sum()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Handle)>> {
        // A panic while holding the lock leaves a valid list behind.
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.lock().retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_the_tasks_of_every_registered_runtime_until_it_is_dropped() {
        let runtimes = Runtimes::default();
        let a = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let b = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let reg_a = runtimes.register(a.handle().clone());
        let _reg_b = runtimes.register(b.handle().clone());
        assert_eq!(runtimes.alive_tasks(), 0);

        let sleeping = |rt: &tokio::runtime::Runtime| {
            rt.spawn(async { tokio::time::sleep(Duration::from_secs(60)).await })
        };
        let (t1, t2, t3) = (sleeping(&a), sleeping(&b), sleeping(&b));
        assert_eq!(runtimes.alive_tasks(), 3);

        t2.abort();
        // An aborted task is alive until its runtime has released it, just after its handle
        // resolves: poll for it.
        let _ = b.block_on(t2);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while runtimes.alive_tasks() != 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(runtimes.alive_tasks(), 2);

        drop(reg_a);
        assert_eq!(
            runtimes.alive_tasks(),
            1,
            "a dropped registration still counted"
        );
        drop((t1, t3));
    }
}
