//! Followers of instance logs (`GET .../logs?follow=true`). Each followed instance has one watcher
//! task, shared by all its followers and found through a registry of weak references: it polls the
//! log (see [`LogReader`]) and broadcasts what was appended on a bounded channel, so a hundred
//! followers cost one file watch. The watcher ends with its last follower, when the instance is
//! deleted, or at shutdown; its followers' streams end with it.
//!
//! Polling (a stat and a read every [`POLL`]) rather than inotify: it needs no extra crate, sees a
//! rotation and a re-created file the same way on every file system (inotify misses writes on
//! network and some overlay file systems), and costs little for the handful of followed instances.
//!
//! A new follower joins through the watcher: between two polls the watcher subscribes it and reads
//! its tail up to the offset it has broadcast to, so the tail and what follows meet exactly.

use super::log_reader::LogReader;
use crate::error::{Error, Result};
use bytes::Bytes;
use futures_util::Stream;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// How often a watcher looks for new lines.
const POLL: Duration = Duration::from_millis(200);

/// Most bytes a watcher reads in one poll; a faster writer is caught up over the next polls.
const BUDGET: usize = 1024 * 1024;

/// Pieces a watcher's channel holds (each at most a 64 KiB block): a follower further behind loses
/// the oldest and is told so.
const CAPACITY: usize = 64;

/// Removes secrets from log text (the backend may echo one it was given).
pub(crate) type Scrub = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// The registry of watchers, by instance name.
pub(crate) struct LogFollowers {
    dir: PathBuf,
    poll: Duration,
    capacity: usize,
    watches: Mutex<HashMap<String, Weak<Watch>>>,
    /// True once the server shuts down: every watcher ends, and no new one starts.
    closed: watch::Sender<bool>,
    /// Watcher tasks running.
    running: Arc<AtomicUsize>,
    /// The runtime watchers run on (the main one, not the HTTP worker a follower came from).
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for LogFollowers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFollowers")
            .field("dir", &self.dir)
            .field("watchers", &self.running.load(Ordering::SeqCst))
            .finish()
    }
}

/// A watcher as its followers hold it; when the last one lets go, the watcher ends.
struct Watch {
    joins: mpsc::Sender<Join>,
    /// Set when the instance is deleted.
    ended: watch::Sender<bool>,
}

/// A follower asking for its tail and a place on the channel.
struct Join {
    lines: Option<usize>,
    reply: oneshot::Sender<Joined>,
}

struct Joined {
    tail: String,
    pieces: broadcast::Receiver<Bytes>,
}

/// One follower: its tail, then what the watcher broadcasts.
pub(crate) struct Follow {
    tail: String,
    pieces: broadcast::Receiver<Bytes>,
    /// Keeps the watcher running while this follower reads.
    watch: Arc<Watch>,
}

impl Follow {
    /// The tail, then each piece as it is written; a follower that fell behind gets one line
    /// saying how many pieces it missed. Ends when the watcher does.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Bytes> + Send + 'static {
        let tail = Bytes::from(self.tail);
        let state = (Some(tail), self.pieces, self.watch);
        futures_util::stream::unfold(state, |(tail, mut pieces, watch)| async move {
            if let Some(tail) = tail.filter(|t| !t.is_empty()) {
                return Some((tail, (None, pieces, watch)));
            }
            let piece = match pieces.recv().await {
                Ok(piece) => piece,
                Err(broadcast::error::RecvError::Lagged(missed)) => Bytes::from(format!(
                    "=== llamactl: {missed} chunks skipped: this reader fell behind ===\n"
                )),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((piece, (None, pieces, watch)))
        })
    }
}

impl LogFollowers {
    /// A registry for the logs in `dir`; call from within the runtime watchers should run on.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self::with(dir, POLL, CAPACITY)
    }

    fn with(dir: PathBuf, poll: Duration, capacity: usize) -> Self {
        LogFollowers {
            dir,
            poll,
            capacity,
            watches: Mutex::default(),
            closed: watch::channel(false).0,
            running: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Watch>>> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows `name`'s log: its last `lines` lines (all for `None`), then what is appended.
    /// `scrub` is used if this starts the instance's watcher.
    pub(crate) async fn follow(
        &self,
        name: &str,
        lines: Option<usize>,
        scrub: Scrub,
    ) -> Result<Follow> {
        let watch = {
            let mut map = self.map();
            match map.get(name).and_then(Weak::upgrade) {
                Some(watch) => watch,
                None => {
                    if *self.closed.borrow() {
                        return Err(gone());
                    }
                    let watch = self.start_watcher(name, scrub);
                    map.retain(|_, w| w.strong_count() > 0);
                    map.insert(name.to_string(), Arc::downgrade(&watch));
                    watch
                }
            }
        };
        let (reply, joined) = oneshot::channel();
        watch
            .joins
            .send(Join { lines, reply })
            .await
            .map_err(|_| gone())?;
        let joined = joined.await.map_err(|_| gone())?;
        Ok(Follow {
            tail: joined.tail,
            pieces: joined.pieces,
            watch,
        })
    }

    fn start_watcher(&self, name: &str, scrub: Scrub) -> Arc<Watch> {
        let (joins, join_rx) = mpsc::channel(16);
        let (ended, ended_rx) = watch::channel(false);
        let watcher = Watcher {
            path: super::logs::path(&self.dir, name),
            poll: self.poll,
            pieces: broadcast::channel(self.capacity).0,
            scrub,
        };
        let running = Running::count(&self.running);
        let closed = self.closed.subscribe();
        self.runtime.spawn(async move {
            let _running = running;
            watcher.run(join_rx, ended_rx, closed).await;
        });
        Arc::new(Watch { joins, ended })
    }

    /// Ends `name`'s followers: the instance is deleted.
    pub(crate) fn end(&self, name: &str) {
        if let Some(watch) = self.map().remove(name).and_then(|w| w.upgrade()) {
            watch.ended.send_replace(true);
        }
    }

    /// Ends every follower and refuses new ones: the server is shutting down.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Watcher tasks running.
    #[cfg(test)]
    fn watchers(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

fn gone() -> Error {
    Error::Unavailable("the instance is being removed or the server is shutting down".into())
}

/// Counts a running watcher task until dropped.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn count(running: &Arc<AtomicUsize>) -> Self {
        running.fetch_add(1, Ordering::SeqCst);
        Running(running.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The task behind one followed log.
struct Watcher {
    path: PathBuf,
    poll: Duration,
    pieces: broadcast::Sender<Bytes>,
    scrub: Scrub,
}

impl Watcher {
    async fn run(
        self,
        mut joins: mpsc::Receiver<Join>,
        mut ended: watch::Receiver<bool>,
        mut closed: watch::Receiver<bool>,
    ) {
        let path = self.path.clone();
        let mut reader = match blocking(move || LogReader::at_end(path)).await {
            Some(Ok(reader)) => reader,
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot read log");
                }
                LogReader::empty(self.path.clone())
            }
        };
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // The watch's sender is dropped (every follower left) or set (instance deleted).
                _ = set(&mut ended) => return,
                _ = set(&mut closed) => return,
                join = joins.recv() => {
                    let Some(join) = join else { return };
                    // Subscribed before the tail is read, both between two polls: the tail ends
                    // where the next broadcast piece begins.
                    let pieces = self.pieces.subscribe();
                    let Some((back, tail)) = blocking(move || {
                        let tail = reader.tail(join.lines);
                        (reader, tail)
                    }).await else { return };
                    reader = back;
                    let tail = match tail {
                        Ok(tail) => (self.scrub)(&tail),
                        Err(e) => {
                            tracing::warn!(file = %self.path.display(), error = %e, "cannot read log");
                            String::new()
                        }
                    };
                    let _ = join.reply.send(Joined { tail, pieces });
                }
                _ = tick.tick() => {
                    let Some((back, read)) = blocking(move || {
                        let read = reader.read_new(BUDGET);
                        (reader, read)
                    }).await else { return };
                    reader = back;
                    match read {
                        Ok(pieces) => {
                            for piece in pieces {
                                let text = (self.scrub)(&String::from_utf8_lossy(&piece));
                                // No follower at this instant is fine: one may be joining.
                                let _ = self.pieces.send(Bytes::from(text));
                            }
                        }
                        Err(e) => tracing::warn!(file = %self.path.display(), error = %e, "cannot read log"),
                    }
                }
            }
        }
    }
}

/// Completes once `flag` is true or its sender is gone.
async fn set(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// Runs file I/O off the runtime; `None` if the blocking task could not finish.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(work).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;
    use std::time::Instant;

    fn append(path: &std::path::Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn plain() -> Scrub {
        Arc::new(|text: &str| text.to_string())
    }

    /// Reads the stream until its text contains `want`, or fails after a generous deadline.
    async fn read_until(stream: &mut (impl Stream<Item = Bytes> + Unpin), want: &str) -> String {
        let mut text = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !text.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.next()).await {
                Ok(Some(piece)) => text.push_str(&String::from_utf8_lossy(&piece)),
                Ok(None) => panic!("stream ended before {want:?}; got {text:?}"),
                Err(_) => panic!("timed out waiting for {want:?}; got {text:?}"),
            }
        }
        text
    }

    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn many_followers_share_one_watcher_which_ends_with_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("m.log");
        append(&log, "one\ntwo\n");
        let followers = LogFollowers::with(dir.path().into(), Duration::from_millis(10), 64);
        let mut streams = Vec::new();
        for _ in 0..10 {
            let follow = followers.follow("m", Some(1), plain()).await.unwrap();
            streams.push(Box::pin(follow.into_stream()));
        }
        assert_eq!(followers.watchers(), 1);

        append(&log, "three\n");
        for stream in &mut streams {
            // The tail (one line), then only what came after: no line twice, none lost.
            assert_eq!(read_until(stream, "three\n").await, "two\nthree\n");
        }
        streams.truncate(1);
        assert_eq!(followers.watchers(), 1);
        streams.clear();
        eventually("the watcher to end with its last follower", || {
            followers.watchers() == 0
        })
        .await;

        // A later follower starts a new one.
        let follow = followers.follow("m", Some(0), plain()).await.unwrap();
        let mut stream = Box::pin(follow.into_stream());
        append(&log, "four\n");
        assert_eq!(read_until(&mut stream, "four\n").await, "four\n");
        assert_eq!(followers.watchers(), 1);
    }

    #[tokio::test]
    async fn a_follower_sees_a_rotation_and_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("m.log");
        append(&log, "old\n");
        let followers = LogFollowers::with(dir.path().into(), Duration::from_millis(10), 64);
        let mut stream = Box::pin(
            followers
                .follow("m", None, plain())
                .await
                .unwrap()
                .into_stream(),
        );
        append(&log, "last of old\n");
        std::fs::rename(&log, dir.path().join("m.log.1")).unwrap();
        append(&log, "first of new\n");
        let seen = read_until(&mut stream, "first of new\n").await;
        assert_eq!(seen, "old\nlast of old\nfirst of new\n");
    }

    #[tokio::test]
    async fn a_follower_that_falls_behind_is_told_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("m.log");
        let followers = LogFollowers::with(dir.path().into(), Duration::from_millis(10), 2);
        let mut slow = Box::pin(
            followers
                .follow("m", None, plain())
                .await
                .unwrap()
                .into_stream(),
        );
        let mut fast = Box::pin(
            followers
                .follow("m", None, plain())
                .await
                .unwrap()
                .into_stream(),
        );
        // Five polls' worth of lines, each its own piece; the slow one reads none of them yet.
        for i in 0..5 {
            append(&log, &format!("line {i}\n"));
            read_until(&mut fast, &format!("line {i}\n")).await;
        }
        let seen = read_until(&mut slow, "line 4\n").await;
        assert!(
            seen.starts_with("=== llamactl: 3 chunks skipped: this reader fell behind ===\n"),
            "{seen}"
        );
        assert!(seen.ends_with("line 3\nline 4\n"), "{seen}");
        append(&log, "after\n");
        read_until(&mut slow, "after\n").await;
    }

    #[tokio::test]
    async fn deleting_the_instance_or_closing_ends_the_streams() {
        let dir = tempfile::tempdir().unwrap();
        let followers = LogFollowers::with(dir.path().into(), Duration::from_millis(10), 8);
        let mut a = Box::pin(
            followers
                .follow("a", None, plain())
                .await
                .unwrap()
                .into_stream(),
        );
        let mut b = Box::pin(
            followers
                .follow("b", None, plain())
                .await
                .unwrap()
                .into_stream(),
        );
        followers.end("a");
        let ended = tokio::time::timeout(Duration::from_secs(10), a.next()).await;
        assert!(matches!(ended, Ok(None)), "a still streams");
        followers.close();
        let ended = tokio::time::timeout(Duration::from_secs(10), b.next()).await;
        assert!(matches!(ended, Ok(None)), "b still streams");
        assert!(followers.follow("c", None, plain()).await.is_err());
    }

    #[tokio::test]
    async fn pieces_are_scrubbed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("m.log");
        append(&log, "key sekrit\n");
        let followers = LogFollowers::with(dir.path().into(), Duration::from_millis(10), 8);
        let scrub: Scrub = Arc::new(|text: &str| text.replace("sekrit", "***"));
        let mut stream = Box::pin(
            followers
                .follow("m", None, scrub)
                .await
                .unwrap()
                .into_stream(),
        );
        append(&log, "again sekrit\n");
        assert_eq!(
            read_until(&mut stream, "again").await,
            "key ***\nagain ***\n"
        );
    }
}
