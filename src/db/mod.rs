//! The SQLite database: opening it (WAL, foreign keys, migrations) and the queries, one file per table.

pub mod activity;
pub mod backup;
pub mod history;
pub mod instances;
pub mod key_usage;
pub mod keys;
pub mod sessions;

use crate::error::{Error, Result};
use crate::events::Events;
use crate::files;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a query waits for a lock another connection holds before it fails as busy (503).
///
/// Our own writes are short (a batch of activity records, one history row) and wait for each
/// other through this too, as does a short write from an operator's `sqlite3`; 5 s covers those
/// with a wide margin under load, yet keeps a request well inside any client's timeout when the
/// lock is held for good (an open `BEGIN` in a shell), which then answers 503 with Retry-After.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
    /// The directory of the database file, named when the disk there is full.
    dir: Arc<PathBuf>,
    history_limit: i64,
    /// Where stored history rows are announced.
    events: Events,
}

/// History kept when nobody says otherwise (`history.max_events`).
const DEFAULT_HISTORY_LIMIT: i64 = 100_000;

impl Db {
    /// Opens (creating if needed) the SQLite file, private to this user, and brings its schema up
    /// to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        files::create_private_dir(&dir, "create database directory")?;
        make_private(path)?;
        let failed = |e: sqlx::Error| Error::database(e, Some(&dir));
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // What is deleted or overwritten (a redacted secret, a trimmed event) is zeroed in the
            // file, not left behind in free space.
            .pragma("secure_delete", "ON")
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(failed)?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        // Into the main file at once: what a migration removed (secrets redacted from the history)
        // then no longer waits there for some later automatic checkpoint.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&pool)
            .await
            .map_err(failed)?;
        Ok(Db {
            pool,
            dir: Arc::new(dir),
            history_limit: DEFAULT_HISTORY_LIMIT,
            events: Events::default(),
        })
    }

    /// The same database, keeping at most `max_events` history rows.
    pub fn with_history_limit(mut self, max_events: u64) -> Self {
        self.history_limit = i64::try_from(max_events).unwrap_or(i64::MAX).max(1);
        self
    }

    /// The same database, announcing each stored history row on `events`.
    pub(crate) fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    fn events(&self) -> &Events {
        &self.events
    }

    fn history_limit(&self) -> i64 {
        self.history_limit
    }

    /// The pool, for the query modules.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The crate's error for a failed query on this database (a full disk names its directory).
    fn failed(&self, e: sqlx::Error) -> Error {
        Error::database(e, Some(&self.dir))
    }
}

/// Turns a query's `sqlx` failure into the crate's error for the database it ran on.
trait OnDb<T> {
    /// The result, its failure translated by `db`.
    fn on(self, db: &Db) -> Result<T>;
}

impl<T> OnDb<T> for std::result::Result<T, sqlx::Error> {
    fn on(self, db: &Db) -> Result<T> {
        self.map_err(|e| db.failed(e))
    }
}

/// Creates the database file private before SQLite does (SQLite gives its `-wal` and `-shm` files
/// the mode of the database file), and tightens the files an older llamactl left readable.
fn make_private(path: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        files::tighten(Path::new(&side));
    }
    if path.exists() {
        files::tighten(path);
        return Ok(());
    }
    files::append_private(path)
        .map(drop)
        .map_err(|e| Error::io("create database file", path, e))
}

/// True when the error is a violated UNIQUE or PRIMARY KEY constraint.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}
