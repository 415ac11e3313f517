//! Takes activity records from the request path without ever making it wait, and writes them to
//! the database in batches from one background task.
//!
//! A request hands its record over with `try_send` into a bounded queue: when the writer cannot keep
//! up (a slow disk), records are dropped and counted rather than held in unbounded memory or slowing
//! inference. The writer takes up to [`BATCH`] records, or what arrived within [`MAX_DELAY`] of the
//! first, and writes them in one transaction (one commit per batch, not per request).
//!
//! A write that fails (a full disk, a database locked elsewhere) loses its batch, counted; the
//! writer then pauses for [`AFTER_FAILURE`] rather than retry at once, so a fault that lasts does not
//! turn into a loop of failing transactions, and it resumes by itself once writes succeed again.

use super::Record;
use crate::db::Db;
use crate::throttle::LogThrottle;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Records that may wait for the writer; beyond this they are dropped.
const QUEUE: usize = 8192;

/// Most records written in one transaction.
const BATCH: usize = 512;

/// Longest a record waits for others to share its transaction.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// At most one warning about dropped records per this period.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How long the writer rests after a failed write before it takes the next batch.
const AFTER_FAILURE: Duration = Duration::from_secs(1);

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
    /// Lets one warning through per [`WARN_EVERY`].
    warnings: LogThrottle,
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
            warnings: LogThrottle::new(WARN_EVERY),
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
        if self.warnings.due().is_some() {
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
        let failed = db.store_activity(&batch, keep).await.err();
        if let Some(e) = &failed {
            counts.lost(batch.len() as u64, &format!("a write failed: {e}"));
        }
        batch.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if failed.is_some() {
            tokio::time::sleep(AFTER_FAILURE).await;
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
    use std::time::Instant;

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

    #[tokio::test]
    async fn failed_writes_lose_their_batch_counted_and_the_writer_carries_on() {
        let (db, _dir) = db().await;
        let recorder = Recorder::start(db.clone(), 10_000);
        // Every write fails from now on, as on a full disk.
        db.pool().close().await;
        for at in 0..3 {
            recorder.record(Record::sample(at, "k", "a"));
        }
        recorder.flush().await;
        assert_eq!(recorder.dropped(), 3);
        // The writer is still there: it takes and answers the next flush (after its pause).
        recorder.record(Record::sample(9, "k", "a"));
        tokio::time::timeout(AFTER_FAILURE * 10, recorder.flush())
            .await
            .expect("the writer answers after a failed write");
        assert_eq!(recorder.dropped(), 4);
    }

    #[test]
    fn drops_are_warned_about_at_most_once_a_minute() {
        let (recorder, _queue) = Recorder::unstarted(1);
        recorder.counts.lost(1, "test");
        recorder.counts.lost(1, "test");
        assert_eq!(
            recorder.counts.warnings.due(),
            None,
            "the first drop warned, the second was held back"
        );
        assert_eq!(recorder.dropped(), 2);
    }
}
