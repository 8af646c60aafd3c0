//! What the three stores share: opening connections with the right pragmas, the
//! read-only connection pool, running blocking SQLite work off the async runtime,
//! error and integer conversions.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use shared::ports::StoreError;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a statement waits for a lock held by another connection (another
/// store sharing the file, a checkpoint, an external tool) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many read-only connections per database file, so at most this
/// many reads of one store run at once.
pub(crate) const READERS: usize = 4;

/// `synchronous` levels we use (in WAL mode).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Synchronous {
    /// The WAL is fsynced at every commit: a committed transaction survives a
    /// power loss.
    Full,
    /// The WAL is fsynced at checkpoints only: a committed transaction survives a
    /// process crash, the last ones may be lost on power loss.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// `Result` to `StoreError` with a word on what was being done.
pub(crate) trait OrStore<T> {
    fn or_store(self, doing: &str) -> Result<T, StoreError>;
}

impl<T, E: Display> OrStore<T> for Result<T, E> {
    fn or_store(self, doing: &str) -> Result<T, StoreError> {
        self.map_err(|e| store_error(doing, e))
    }
}

pub(crate) fn store_error(doing: &str, e: impl Display) -> StoreError {
    StoreError::new(format!("sqlite: {doing}: {e}"))
}

/// Opens (creating it if needed) the read-write connection of a database file in
/// WAL mode, then runs `schema` (idempotent `CREATE … IF NOT EXISTS` statements).
pub(crate) fn open_writer(path: &Path, synchronous: Synchronous, schema: &str) -> Result<Connection, StoreError> {
    let shown = path.display();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).or_store(&format!("opening {shown}"))?;
    conn.busy_timeout(BUSY_TIMEOUT).or_store("setting busy_timeout")?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).or_store(&format!("enabling WAL on {shown}"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::new(format!("sqlite: {shown} refused WAL mode (journal_mode is {mode})")));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma()).or_store("setting synchronous")?;
    conn.execute_batch(schema).or_store(&format!("creating the schema of {shown}"))?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).or_store(&format!("opening {} to read", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT).or_store("setting busy_timeout")?;
    Ok(conn)
}

/// Locks a mutex, carrying on past a poisoned one: the data behind our mutexes
/// (connections, idle lists) stays usable after a panicking holder.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs blocking SQLite work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.or_store("running a blocking sqlite task")?
}

/// A few read-only connections to one database file, opened lazily and reused.
/// In WAL mode each statement reads the newest committed snapshot and never waits
/// for the writer, so a read sees everything committed before it started.
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: bounds the open connections to [`READERS`].
    permits: Arc<Semaphore>,
}

impl ReadPool {
    pub(crate) fn new(path: &Path) -> Arc<Self> {
        Arc::new(ReadPool { path: path.to_path_buf(), idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(READERS)) })
    }

    /// Runs `read` on a pooled connection, on the blocking pool.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self.permits.clone().acquire_owned().await.or_store("waiting for a read connection")?;
        let pool = self.clone();
        blocking(move || {
            let _permit = permit;
            let taken = lock(&pool.idle).pop();
            let conn = match taken {
                Some(conn) => conn,
                None => open_reader(&pool.path)?,
            };
            let result = read(&conn);
            lock(&pool.idle).push(conn);
            result
        })
        .await
    }
}

/// One writer connection behind a mutex plus a [`ReadPool`]: the read-model and
/// execution stores, whose writes are single short statements.
pub(crate) struct Db {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<ReadPool>,
}

impl Db {
    pub(crate) fn open(path: &Path, synchronous: Synchronous, schema: &str) -> Result<Self, StoreError> {
        let writer = open_writer(path, synchronous, schema)?;
        Ok(Db { writer: Arc::new(Mutex::new(writer)), readers: ReadPool::new(path) })
    }

    pub(crate) async fn write<T: Send + 'static>(&self, write: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
        let writer = self.writer.clone();
        blocking(move || write(&lock(&writer))).await
    }

    pub(crate) async fn read<T: Send + 'static>(&self, read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
        self.readers.read(read).await
    }
}

/// Versions, positions and checkpoints are `u64` in the ports and `INTEGER`
/// (`i64`) in SQLite.
pub(crate) fn to_sql_int(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::new(format!("sqlite: {what} {value} is too large to store")))
}

pub(crate) fn from_sql_int(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::new(format!("sqlite: stored {what} {value} is negative")))
}

/// A limit as an SQL `LIMIT` (saturating: nobody reads 2^63 rows).
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A timestamp as a column that sorts in time order: fixed-width UTC with
/// nanoseconds (`2026-09-21T12:00:00.123000000Z`), exact for years 0000–9999.
pub(crate) fn time_key(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// The error of a JSON column that does not decode, naming the row: data from
/// disk never makes us panic. Use as `.map_err(corrupt(|| format!("row …")))`.
pub(crate) fn corrupt(row: impl FnOnce() -> String) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::new(format!("sqlite: corrupt {}: {e}", row()))
}

/// Runs `work` in one write transaction (`BEGIN IMMEDIATE`): committed if it
/// succeeds, rolled back (when the transaction is dropped) if it fails.
pub(crate) fn in_write_transaction<T>(conn: &Connection, doing: &str, work: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
    let transaction = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate).or_store(doing)?;
    let value = work(&transaction)?;
    transaction.commit().or_store(doing)?;
    Ok(value)
}
