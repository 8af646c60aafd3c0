//! The embedded durable backend: every port on SQLite files (rusqlite, bundled),
//! for `healthpay serve` on one machine.
//!
//! # Layout
//!
//! [`SqliteBackend::open`] keeps three files in the data directory:
//! `events.db` ([`SqliteEventStore`]: the events, the global feed, the idempotency
//! records), `read.db` ([`SqliteReadStore`]: read models and feed checkpoints) and
//! `sagas.db` ([`SqliteExecutionStore`]: saga executions).
//!
//! # Why it is built this way
//!
//! - **WAL.** Every file runs in write-ahead-log mode: readers never block the
//!   writer nor wait for it, and each read statement sees the newest committed
//!   snapshot — so a read sees everything acknowledged before it started.
//! - **`synchronous=FULL` on the event store** (and on saga executions): the WAL is
//!   fsynced at every commit, so an acknowledged command survives a crash or a
//!   power loss. Read models use `synchronous=NORMAL`: they survive a process
//!   crash and are rebuildable from the events anyway.
//! - **Group commit.** An fsync per command would cap throughput at the disk's
//!   fsync rate. One writer thread owns the event store's write connection and
//!   takes every append queued (up to 256) into one transaction, each in its own
//!   savepoint: a refused request (version conflict, idempotency key used) is rolled
//!   back to its savepoint without touching the others, and later requests of the
//!   batch see the earlier ones' events, so appends to one stream serialise exactly
//!   as if they ran one by one. One `COMMIT` — one fsync — then acknowledges the
//!   whole batch; only after it has succeeded is any request answered or the new
//!   head published, and if it fails, every request of the batch fails.
//! - **Read pool.** Reads run on a few read-only connections (at most
//!   [`READ_CONNECTIONS`] per file, opened lazily) on tokio's blocking pool, in
//!   parallel with each other and with the writer.
//! - **Immutability.** Stored events are never updated or deleted: the code only
//!   inserts them, and triggers make the database refuse any `UPDATE` or `DELETE`
//!   of an event. Positions (`INTEGER PRIMARY KEY AUTOINCREMENT`) are never reused
//!   and keep growing across restarts.
//! - **Data from disk is never trusted to decode**: a corrupt row is a
//!   [`StoreError`] naming it, never a panic.
//! - **Bounded idempotency records.** A record is deleted once past its
//!   `expiresAt` (24 hours): on open, then every [`IDEMPOTENCY_PURGE_EVERY`] by the
//!   writer thread, at most [`IDEMPOTENCY_PURGE_CHUNK`] rows per transaction (see
//!   [`SqliteEventStore::purge_expired_idempotency`]). DynamoDB does the same with
//!   its table's TTL.

mod common;
mod event_store;
mod executions;
mod read_store;

pub use event_store::{SqliteEventStore, IDEMPOTENCY_PURGE_CHUNK, IDEMPOTENCY_PURGE_EVERY};
pub use executions::SqliteExecutionStore;
pub use read_store::SqliteReadStore;

use shared::ports::StoreError;
use std::path::Path;
use std::sync::Arc;

/// How many read-only connections each database file keeps at most.
pub const READ_CONNECTIONS: usize = common::READERS;

/// All three stores of a data directory.
pub struct SqliteBackend {
    pub events: Arc<SqliteEventStore>,
    pub read: Arc<SqliteReadStore>,
    pub executions: Arc<SqliteExecutionStore>,
}

impl SqliteBackend {
    /// Creates `data_dir` if needed and opens `events.db`, `read.db` and `sagas.db`
    /// in it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::new(format!("sqlite: creating {}: {e}", data_dir.display())))?;
        Ok(SqliteBackend {
            events: Arc::new(SqliteEventStore::open(&data_dir.join("events.db"))?),
            read: Arc::new(SqliteReadStore::open(&data_dir.join("read.db"))?),
            executions: Arc::new(SqliteExecutionStore::open(&data_dir.join("sagas.db"))?),
        })
    }
}
