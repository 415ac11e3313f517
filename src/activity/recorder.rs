//! Takes activity records from the request path without ever making it wait, and writes them to
//! the database in batches from one background task.
//!
//! A request hands its record over with `try_send` into a bounded queue: when the writer cannot keep
//! up (a slow disk), records are dropped and counted rather than held in unbounded memory or slowing
//! inference. The writer takes up to [`BATCH`] records, or what arrived within [`MAX_DELAY`] of the
//! first, and writes them in one transaction (one commit per batch, not per request).

use super::Record;
use crate::db::Db;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Records that may wait for the writer; beyond this they are dropped.
const QUEUE: usize = 8192;

/// Most records written in one transaction.
const BATCH: usize = 512;

/// Longest a record waits for others to share its transaction.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// At most one warning about dropped records per this period.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the writer is sent.
enum Message {
    /// A record to write.
    Record(Record),
    /// Write everything sent before this, then answer.
    Flush(oneshot::Sender<()>),
}

/// Hands activity records to the background writer; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Message>,
    counts: Arc<Counts>,
}

/// Lost records, shared with the writer.
#[derive(Debug)]
struct Counts {
    /// Records dropped (queue full) or lost (a failed write).
    dropped: AtomicU64,
    /// When the counting began, the origin of `last_warning_ms`.
    started: Instant,
    /// Milliseconds after `started` of the last warning; `u64::MAX` before the first.
    last_warning_ms: AtomicU64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("queued", &(QUEUE - self.queue.capacity()))
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Recorder {
    /// Starts the writer, which keeps at most `max_records` rows in `db` (the oldest go first).
    pub fn start(db: Db, max_records: u64) -> Self {
        let (recorder, queue) = Recorder::unstarted(QUEUE);
        let keep = i64::try_from(max_records).unwrap_or(i64::MAX);
        tokio::spawn(write_batches(queue, db, keep, recorder.counts.clone()));
        recorder
    }

    /// A recorder whose writer is not running yet: its queue is what a writer would drain.
    fn unstarted(capacity: usize) -> (Self, mpsc::Receiver<Message>) {
        let (queue, receiver) = mpsc::channel(capacity);
        let counts = Arc::new(Counts {
            dropped: AtomicU64::new(0),
            started: Instant::now(),
            last_warning_ms: AtomicU64::new(u64::MAX),
        });
        (Recorder { queue, counts }, receiver)
    }

    /// Queues one record; never waits. A full queue drops it (counted in [`Recorder::dropped`]).
    pub fn record(&self, record: Record) {
        if self.queue.try_send(Message::Record(record)).is_err() {
            self.counts.lost(1, "the activity queue is full");
        }
    }

    /// Records lost so far: dropped because the writer fell behind, or in a write that failed.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every record queued before this call is in the database (or lost with a failed
    /// write): for readers who must see the latest requests, and on shutdown.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        // Either fails only when the writer is gone, and then there is nothing left to wait for.
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

impl Counts {
    /// Counts `n` lost records, warning at most once per [`WARN_EVERY`].
    fn lost(&self, n: u64, why: &str) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        // Only the caller that moves the mark warns, so concurrent drops give one warning.
        if due
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(dropped_total = total, "activity records dropped: {why}");
        }
    }
}

/// The writer: batches from `queue` into `db` until every recorder is gone.
async fn write_batches(mut queue: mpsc::Receiver<Message>, db: Db, keep: i64, counts: Arc<Counts>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while let Some(first) = queue.recv().await {
        take(first, &mut batch, &mut waiting);
        let deadline = tokio::time::Instant::now() + MAX_DELAY;
        // A flush ends the batch at once: everything queued before it is in the batch by now.
        while batch.len() < BATCH && waiting.is_empty() {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(message)) => take(message, &mut batch, &mut waiting),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(e) = db.store_activity(&batch, keep).await {
            tracing::error!(error = %e, records = batch.len(), "could not write activity records");
            counts.lost(batch.len() as u64, "a write failed");
        }
        batch.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

fn take(message: Message, batch: &mut Vec<Record>, waiting: &mut Vec<oneshot::Sender<()>>) {
    match message {
        Message::Record(record) => batch.push(record),
        Message::Flush(done) => waiting.push(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::activity::ActivityFilter;

    async fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).await.unwrap();
        (db, dir)
    }

    async fn stored(db: &Db) -> Vec<i64> {
        let rows = db
            .activity(&ActivityFilter::default(), 10_000)
            .await
            .unwrap();
        let mut times: Vec<i64> = rows.iter().map(|r| r.at_ms).collect();
        times.sort_unstable();
        times
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_records_instead_of_waiting() {
        let (db, _dir) = db().await;
        let (recorder, queue) = Recorder::unstarted(4);
        // No writer runs yet, so the queue fills; `record` is synchronous and returns each time.
        for at in 0..10 {
            recorder.record(Record::sample(at, "k", "a"));
        }
        assert_eq!(recorder.dropped(), 6);
        tokio::spawn(write_batches(
            queue,
            db.clone(),
            100,
            recorder.counts.clone(),
        ));
        recorder.flush().await;
        assert_eq!(stored(&db).await, [0, 1, 2, 3], "the first four were kept");
        assert_eq!(recorder.dropped(), 6);
    }

    #[tokio::test]
    async fn flush_writes_everything_queued_before_it() {
        let (db, _dir) = db().await;
        let recorder = Recorder::start(db.clone(), 10_000);
        // More than one batch, all queued before the flush.
        let n = BATCH as i64 * 2 + 7;
        for at in 0..n {
            recorder.record(Record::sample(at, "k", "a"));
        }
        recorder.flush().await;
        assert_eq!(stored(&db).await, (0..n).collect::<Vec<_>>());
        assert_eq!(recorder.dropped(), 0);
    }

    #[tokio::test]
    async fn records_are_written_without_a_flush_too() {
        let (db, _dir) = db().await;
        let recorder = Recorder::start(db.clone(), 10_000);
        recorder.record(Record::sample(1, "k", "a"));
        // The batch is written at most MAX_DELAY after its first record; poll well beyond it.
        let deadline = Instant::now() + MAX_DELAY * 10;
        while stored(&db).await.is_empty() {
            assert!(Instant::now() < deadline, "the record was never written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(stored(&db).await, [1]);
    }

    #[test]
    fn drops_are_warned_about_at_most_once_a_minute() {
        let (recorder, _queue) = Recorder::unstarted(1);
        recorder.counts.lost(1, "test");
        let first = recorder.counts.last_warning_ms.load(Ordering::Relaxed);
        assert_ne!(first, u64::MAX, "the first drop warns");
        recorder.counts.lost(1, "test");
        assert_eq!(
            recorder.counts.last_warning_ms.load(Ordering::Relaxed),
            first
        );
        assert_eq!(recorder.dropped(), 2);
    }
}
