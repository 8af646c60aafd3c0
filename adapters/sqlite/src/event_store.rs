//! The event store and global feed on one SQLite file, written by a single
//! group-committing writer thread.
//!
//! # Idempotency retention
//!
//! Idempotency records are kept until their `expiresAt` (24 hours after the
//! command, by contract) and then deleted, so the table holds about a day of keys
//! instead of growing forever. (On DynamoDB the table's TTL on `expiresAt` does the
//! same.) The purge runs on the writer thread, the only writer of the file:
//!
//! - **on open**, everything expired (a store that was down for a while catches up
//!   before it takes requests);
//! - **then every [`IDEMPOTENCY_PURGE_EVERY`]** (10 minutes), after a group commit: at most
//!   [`IDEMPOTENCY_PURGE_CHUNK`] rows in one short transaction, so appends never wait long
//!   behind it; if the chunk was full, the next group commit purges again.
//!
//! Time-based rather than every N commits, so the cost does not grow with the load
//! and a quiet store is not touched (it writes no records to expire anyway). An
//! index on `expires_at` makes each pass a range scan. Records past their expiry and
//! not yet purged are still honoured, as DynamoDB honours items TTL has not yet
//! deleted: the contract promises "at least 24 hours".

use crate::common::{corrupt, from_sql_int, open_writer, sql_limit, store_error, to_sql_int, OrStore, ReadPool, Synchronous};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use shared::envelope::EventEnvelope;
use shared::ports::{AppendError, Commit, EventFeed, EventStore, IdempotencyRecord, Snapshot, StoreError};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// The most append requests one transaction (one fsync) carries.
const MAX_BATCH: usize = 256;
/// Append requests waiting for the writer; beyond this, callers wait to enqueue.
const QUEUE: usize = 4 * MAX_BATCH;
/// The newest events kept in memory for feed readers (see [`FeedTail`]).
const TAIL: usize = 16_384;
/// How often the writer purges expired idempotency records (see the module docs).
pub const IDEMPOTENCY_PURGE_EVERY: Duration = Duration::from_secs(10 * 60);
/// The most expired idempotency records one purge transaction deletes.
pub const IDEMPOTENCY_PURGE_CHUNK: usize = 5_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position  INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    envelope  TEXT    NOT NULL, -- the EventEnvelope as JSON
    UNIQUE (stream_id, version)
);
-- Stored events are immutable: the database itself refuses to change one.
CREATE TRIGGER IF NOT EXISTS events_are_immutable_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'stored events are immutable'); END;
CREATE TRIGGER IF NOT EXISTS events_are_immutable_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'stored events are immutable'); END;
CREATE TABLE IF NOT EXISTS idempotency (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    record     TEXT NOT NULL, -- the IdempotencyRecord as JSON
    expires_at TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
-- The purge of expired records reads this range (expires_at is RFC 3339 in UTC, `+00:00`,
-- which sorts as text in time order).
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
-- The newest snapshot of a long stream (derived data: dropping the table only costs loads).
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id TEXT    PRIMARY KEY,
    version   INTEGER NOT NULL,
    snapshot  TEXT    NOT NULL -- the Snapshot as JSON
) WITHOUT ROWID;
";

/// [`EventStore`] and [`EventFeed`] on SQLite. See the crate documentation for the
/// design (WAL, `synchronous=FULL`, group commit, read pool).
pub struct SqliteEventStore {
    /// `None` only while dropping: closing the queue stops the writer thread.
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<ReadPool>,
    head: Arc<watch::Sender<u64>>,
    tail: Arc<FeedTail>,
}

/// The newest committed events, in feed order, as the writer committed them.
///
/// Every feed consumer (projections, the saga starters) reads every event, most of
/// them moments after it was committed: served from here, an event is not read
/// back from the file and decoded from JSON once per consumer. A reader further
/// behind than the tail reaches (a restart, a consumer that stalled) reads the file.
/// The writer fills it before it publishes the new head, so a reader woken by the
/// head finds the events here.
struct FeedTail {
    capacity: usize,
    inner: std::sync::Mutex<TailInner>,
}

struct TailInner {
    /// Every committed event after this position is in `events`.
    after: u64,
    /// Shared, so that a reader holds the lock (which the writer needs after every
    /// commit) only to count references, and copies the envelopes after letting go.
    events: std::collections::VecDeque<(u64, Arc<EventEnvelope>)>,
}

impl FeedTail {
    fn new(head: u64, capacity: usize) -> Self {
        FeedTail { capacity, inner: std::sync::Mutex::new(TailInner { after: head, events: Default::default() }) }
    }

    fn push(&self, committed: impl IntoIterator<Item = (u64, EventEnvelope)>) {
        let mut tail = crate::common::lock(&self.inner);
        for event in committed {
            // This writer's positions are dense (a rolled-back insert gives its number
            // back), so a gap is an event another connection wrote into the file: the
            // tail restarts after it, and readers before it read the file.
            let last = tail.events.back().map_or(tail.after, |(at, _)| *at);
            if event.0 != last + 1 {
                tail.events.clear();
                tail.after = event.0 - 1;
            }
            if tail.events.len() == self.capacity {
                if let Some((evicted, _)) = tail.events.pop_front() {
                    tail.after = evicted;
                }
            }
            tail.events.push_back((event.0, Arc::new(event.1)));
        }
    }

    /// The events after `position` (at most `limit`), if the tail holds all of them.
    fn read_after(&self, position: u64, limit: usize) -> Option<Vec<(u64, EventEnvelope)>> {
        let shared: Vec<(u64, Arc<EventEnvelope>)> = {
            let tail = crate::common::lock(&self.inner);
            if position < tail.after {
                return None;
            }
            let start = tail.events.partition_point(|(at, _)| *at <= position);
            tail.events.range(start..).take(limit).cloned().collect()
        };
        Some(shared.into_iter().map(|(at, event)| (at, EventEnvelope::clone(&event))).collect())
    }
}

/// A commit encoded and checked by the caller, so that the writer thread only
/// runs SQL.
struct PreparedCommit {
    streams: Vec<PreparedStream>,
    idempotency: Option<PreparedRecord>,
}

struct PreparedStream {
    stream_id: String,
    expected_version: i64,
    /// (version, envelope JSON), versions `expected_version + 1 ..`.
    events: Vec<(i64, String)>,
    /// The same events, for the feed tail once committed.
    envelopes: Vec<EventEnvelope>,
}

struct PreparedRecord {
    scope: String,
    key: String,
    json: String,
    expires_at: String,
}

struct AppendRequest {
    commit: PreparedCommit,
    reply: oneshot::Sender<Result<(), AppendError>>,
}

/// What the writer thread is asked to do.
enum Request {
    Append(AppendRequest),
    /// Delete every idempotency record expired before `now`; answer how many.
    Purge {
        now: DateTime<Utc>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Keep a snapshot unless a newer one is kept already.
    Snapshot {
        snapshot: Box<Snapshot>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl SqliteEventStore {
    /// Opens (or creates) the event store at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_writer(path, Synchronous::Full, SCHEMA)?;
        let purged = purge_expired(&conn, Utc::now(), Purge::All)?;
        if purged > 0 {
            tracing::info!(path = %path.display(), purged, "expired idempotency records deleted");
        }
        let position: i64 = conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |row| row.get(0)).or_store("reading the head position")?;
        let position = from_sql_int(position, "position")?;
        let head = Arc::new(watch::channel(position).0);
        let tail = Arc::new(FeedTail::new(position, TAIL));
        let (requests, queue) = mpsc::channel(QUEUE);
        let writer = {
            let (head, tail) = (head.clone(), tail.clone());
            std::thread::Builder::new()
                .name("sqlite-event-writer".into())
                .spawn(move || run_writer(conn, queue, &head, &tail))
                .or_store("starting the event writer thread")?
        };
        tracing::debug!(path = %path.display(), head = position, "sqlite event store open");
        Ok(SqliteEventStore { requests: Some(requests), writer: Some(writer), readers: ReadPool::new(path), head, tail })
    }

    /// Deletes every idempotency record whose `expiresAt` is before `now` and says
    /// how many went. The store does this by itself (on open, then every
    /// [`IDEMPOTENCY_PURGE_EVERY`]); this is for tools and tests that pick their own `now`.
    pub async fn purge_expired_idempotency(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let stopped = || StoreError::new("sqlite: the event writer has stopped");
        let requests = self.requests.as_ref().ok_or_else(stopped)?;
        let (reply, outcome) = oneshot::channel();
        requests.send(Request::Purge { now, reply }).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

impl Drop for SqliteEventStore {
    /// Closes the queue and waits for the writer thread to finish the batch in hand
    /// and exit, so that the file is closed when the store is gone.
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the sqlite event writer thread panicked");
            }
        }
    }
}

fn prepare(commit: Commit) -> Result<PreparedCommit, AppendError> {
    let mut streams = Vec::with_capacity(commit.streams.len());
    for append in commit.streams {
        let expected_version = to_sql_int(append.expected_version, "expected version")?;
        let mut events = Vec::with_capacity(append.events.len());
        for (offset, event) in append.events.iter().enumerate() {
            let version = append.expected_version.checked_add(offset as u64 + 1);
            if version != Some(event.version) {
                return Err(StoreError::new(format!(
                    "sqlite: event {} of stream {} has version {}, expected {}",
                    event.event_id,
                    append.stream_id,
                    event.version,
                    version.map_or_else(|| "none".to_string(), |v| v.to_string()),
                ))
                .into());
            }
            let json = serde_json::to_string(event).or_store("encoding an event")?;
            events.push((to_sql_int(event.version, "version")?, json));
        }
        streams.push(PreparedStream { stream_id: append.stream_id, expected_version, events, envelopes: append.events });
    }
    let idempotency = match commit.idempotency {
        Some(record) => Some(PreparedRecord {
            json: serde_json::to_string(&record).or_store("encoding an idempotency record")?,
            expires_at: record.expires_at.to_rfc3339(),
            scope: record.scope,
            key: record.key,
        }),
        None => None,
    };
    Ok(PreparedCommit { streams, idempotency })
}

/// The writer thread: takes whatever is queued (up to [`MAX_BATCH`]), writes the
/// appends in one transaction, publishes the new head, then answers; then runs the
/// purges asked for, and the periodic purge when it is due. Returns when the queue
/// is closed (the store was dropped) and drained.
fn run_writer(conn: Connection, mut queue: mpsc::Receiver<Request>, head: &watch::Sender<u64>, tail: &FeedTail) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut next_purge = Instant::now() + IDEMPOTENCY_PURGE_EVERY;
    while queue.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        let mut appends = Vec::with_capacity(batch.len());
        let mut purges = Vec::new();
        let mut snapshots = Vec::new();
        for request in batch.drain(..) {
            match request {
                Request::Append(append) => appends.push(append),
                Request::Purge { now, reply } => purges.push((now, reply)),
                Request::Snapshot { snapshot, reply } => snapshots.push((snapshot, reply)),
            }
        }
        if !appends.is_empty() {
            group_commit(&conn, appends, head, tail);
        }
        for (snapshot, reply) in snapshots {
            let _ = reply.send(save_snapshot(&conn, &snapshot));
        }
        for (now, reply) in purges {
            let _ = reply.send(purge_expired(&conn, now, Purge::All));
        }
        if Instant::now() >= next_purge {
            next_purge = match purge_expired(&conn, Utc::now(), Purge::OneChunk) {
                // A full chunk: more may be left, purge again after the next commit.
                Ok(deleted) if deleted >= IDEMPOTENCY_PURGE_CHUNK as u64 => Instant::now(),
                Ok(_) => Instant::now() + IDEMPOTENCY_PURGE_EVERY,
                Err(e) => {
                    tracing::warn!(error = %e, "sqlite: purging expired idempotency records failed; trying again later");
                    Instant::now() + IDEMPOTENCY_PURGE_EVERY
                }
            };
        }
    }
    tracing::debug!("sqlite event writer stopped");
}

/// Keeps `snapshot` unless the stream's kept one is newer (`synchronous=FULL` is not
/// needed for derived data, but the writer's connection is the one that writes).
fn save_snapshot(conn: &Connection, snapshot: &Snapshot) -> Result<(), StoreError> {
    let json = serde_json::to_string(snapshot).map_err(StoreError::new)?;
    let version = i64::try_from(snapshot.version).map_err(StoreError::new)?;
    conn.prepare_cached(
        "INSERT INTO snapshots (stream_id, version, snapshot) VALUES (?1, ?2, ?3)
         ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, snapshot = excluded.snapshot WHERE excluded.version > snapshots.version",
    )
    .and_then(|mut stmt| stmt.execute(params![snapshot.stream_id, version, json]))
    .or_store("saving a snapshot")?;
    Ok(())
}

/// How much one purge deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purge {
    /// Everything expired, [`IDEMPOTENCY_PURGE_CHUNK`] rows per transaction.
    All,
    /// At most [`IDEMPOTENCY_PURGE_CHUNK`] rows: one short transaction.
    OneChunk,
}

/// Deletes idempotency records that expired before `now`, in transactions of at
/// most [`IDEMPOTENCY_PURGE_CHUNK`] rows; returns how many went.
fn purge_expired(conn: &Connection, now: DateTime<Utc>, purge: Purge) -> Result<u64, StoreError> {
    // The same text form as the stored `expires_at` (see `prepare`), so that text
    // order is time order.
    let now = now.to_rfc3339();
    let mut deleted = 0;
    loop {
        let chunk = conn
            .prepare_cached("DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2)")
            .and_then(|mut stmt| stmt.execute(params![now, IDEMPOTENCY_PURGE_CHUNK as i64]))
            .or_store("purging expired idempotency records")?;
        deleted += chunk as u64;
        if chunk < IDEMPOTENCY_PURGE_CHUNK || purge == Purge::OneChunk {
            return Ok(deleted);
        }
    }
}

/// Writes a batch of appends in one transaction, fills the feed tail, publishes
/// the new head, then answers each request.
fn group_commit(conn: &Connection, batch: Vec<AppendRequest>, head: &watch::Sender<u64>, tail: &FeedTail) {
    tracing::trace!(requests = batch.len(), "sqlite group commit");
    let (commits, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|request| (request.commit, request.reply)).unzip();
    let outcomes = match write_batch(conn, &commits) {
        Ok(Batch { outcomes, positions }) => {
            let new_head = positions.last().copied();
            let committed = commits.into_iter().zip(&outcomes).filter(|(_, outcome)| outcome.is_ok()).flat_map(|(commit, _)| commit.streams);
            tail.push(positions.into_iter().zip(committed.flat_map(|stream| stream.envelopes)));
            if let Some(new_head) = new_head {
                head.send_replace(new_head);
            }
            outcomes
        }
        Err(e) => {
            tracing::error!(error = %e, requests = commits.len(), "sqlite group commit failed");
            commits.iter().map(|_| Err(AppendError::Store(e.clone()))).collect()
        }
    };
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // The caller may have given up waiting; its commit stands all the same.
        let _ = reply.send(outcome);
    }
}

/// How one request of a batch went, before the batch commits.
enum Refusal {
    /// A business outcome: roll the request back, carry on with the batch.
    Refused(AppendError),
    /// SQLite failed on this request.
    Failed(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Failed(e)
    }
}

/// What a committed batch did.
struct Batch {
    /// Each request's outcome, in order.
    outcomes: Vec<Result<(), AppendError>>,
    /// The position of every event appended, in order (the last is the new head).
    positions: Vec<u64>,
}

/// One transaction for the whole batch, one savepoint per request. Returns each
/// request's outcome and the new head position, or an error that fails the whole
/// batch (nothing of it was committed).
fn write_batch(conn: &Connection, batch: &[PreparedCommit]) -> Result<Batch, StoreError> {
    let result = write_batch_in_transaction(conn, batch);
    if result.is_err() && !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "sqlite: rolling back a failed group commit");
        }
    }
    result
}

fn write_batch_in_transaction(conn: &Connection, batch: &[PreparedCommit]) -> Result<Batch, StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE").or_store("beginning a group commit")?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut positions = Vec::with_capacity(batch.len());
    for commit in batch {
        run_cached(conn, "SAVEPOINT append").or_store("opening a savepoint")?;
        let appended_before = positions.len();
        match append_one(conn, commit, &mut positions) {
            Ok(()) => {
                run_cached(conn, "RELEASE append").or_store("releasing a savepoint")?;
                outcomes.push(Ok(()));
            }
            Err(refusal) => {
                if conn.is_autocommit() {
                    // SQLite rolled the whole transaction back (I/O error, disk full):
                    // earlier requests of the batch are lost with it.
                    return Err(match refusal {
                        Refusal::Failed(e) => e,
                        Refusal::Refused(e) => StoreError::new(format!("sqlite: the group commit was rolled back: {e}")),
                    });
                }
                conn.execute_batch("ROLLBACK TO append; RELEASE append").or_store("rolling back a savepoint")?;
                positions.truncate(appended_before);
                outcomes.push(Err(match refusal {
                    Refusal::Refused(e) => e,
                    Refusal::Failed(e) => AppendError::Store(e),
                }));
            }
        }
    }
    conn.execute_batch("COMMIT").or_store("committing")?;
    Ok(Batch { outcomes, positions })
}

/// Checks and writes one commit inside the batch's transaction, where earlier
/// requests of the batch are visible. Adds the position of each event it wrote to
/// `positions` (which the caller truncates if the commit is rolled back).
fn append_one(conn: &Connection, commit: &PreparedCommit, positions: &mut Vec<u64>) -> Result<(), Refusal> {
    if let Some(record) = &commit.idempotency {
        let existing: Option<String> = conn
            .prepare_cached("SELECT record FROM idempotency WHERE scope = ?1 AND key = ?2")
            .and_then(|mut stmt| stmt.query_row(params![record.scope, record.key], |row| row.get(0)).optional())
            .or_store("reading an idempotency record")?;
        if let Some(json) = existing {
            let existing: IdempotencyRecord = serde_json::from_str(&json).map_err(corrupt(|| format!("idempotency record {}/{}", record.scope, record.key)))?;
            return Err(Refusal::Refused(AppendError::IdempotencyKeyUsed(Box::new(existing))));
        }
    }
    {
        let mut current = conn.prepare_cached("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?1").or_store("preparing")?;
        for stream in &commit.streams {
            let version: i64 = current.query_row([&stream.stream_id], |row| row.get(0)).or_store("reading a stream's version")?;
            if version != stream.expected_version {
                return Err(Refusal::Refused(AppendError::VersionConflict { stream_id: stream.stream_id.clone() }));
            }
        }
    }
    let mut insert = conn.prepare_cached("INSERT INTO events (stream_id, version, envelope) VALUES (?1, ?2, ?3)").or_store("preparing")?;
    for stream in &commit.streams {
        for (version, json) in &stream.events {
            match insert.execute(params![stream.stream_id, version, json]) {
                Ok(_) => positions.push(from_sql_int(conn.last_insert_rowid(), "position")?),
                // The same stream twice in one commit: the second append conflicts
                // with the first.
                Err(e) if is_unique_violation(&e) => return Err(Refusal::Refused(AppendError::VersionConflict { stream_id: stream.stream_id.clone() })),
                Err(e) => return Err(Refusal::Failed(store_error("inserting an event", e))),
            }
        }
    }
    if let Some(record) = &commit.idempotency {
        conn.prepare_cached("INSERT INTO idempotency (scope, key, record, expires_at) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut stmt| stmt.execute(params![record.scope, record.key, record.json, record.expires_at]))
            .or_store("inserting an idempotency record")?;
    }
    Ok(())
}

/// A statement without results, prepared once per connection (the writer runs two
/// savepoint statements per request of every group commit).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(failure, _) if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn load(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventEnvelope>, StoreError> {
        let Ok(after_version) = i64::try_from(after_version) else { return Ok(Vec::new()) };
        let stream_id = stream_id.to_string();
        self.readers
            .read(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT version, envelope FROM events WHERE stream_id = ?1 AND version > ?2 ORDER BY version").or_store("preparing")?;
                let mut rows = stmt.query(params![stream_id, after_version]).or_store("loading a stream")?;
                let mut events = Vec::new();
                while let Some(row) = rows.next().or_store("loading a stream")? {
                    let (version, json): (i64, String) = (row.get(0).or_store("loading a stream")?, row.get(1).or_store("loading a stream")?);
                    events.push(decode_event(&stream_id, version, &json)?);
                }
                Ok(events)
            })
            .await
    }

    async fn first_event(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        let stream_id = stream_id.to_string();
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached("SELECT envelope FROM events WHERE stream_id = ?1 AND version = 1").or_store("preparing")?;
                let mut rows = stmt.query(params![stream_id]).or_store("reading a stream's first event")?;
                match rows.next().or_store("reading a stream's first event")? {
                    Some(row) => Ok(Some(decode_event(&stream_id, 1, &row.get::<_, String>(0).or_store("reading a stream's first event")?)?)),
                    None => Ok(None),
                }
            })
            .await
    }

    async fn snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        let stream_id = stream_id.to_string();
        self.readers
            .read(move |conn| {
                let json: Option<String> = conn
                    .prepare_cached("SELECT snapshot FROM snapshots WHERE stream_id = ?1")
                    .and_then(|mut stmt| stmt.query_row(params![stream_id], |row| row.get(0)).optional())
                    .or_store("reading a snapshot")?;
                json.map(|json| serde_json::from_str(&json).map_err(corrupt(|| format!("snapshot of {stream_id}")))).transpose()
            })
            .await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let stopped = || StoreError::new("sqlite: the event writer has stopped");
        let requests = self.requests.as_ref().ok_or_else(stopped)?;
        let (reply, outcome) = oneshot::channel();
        requests.send(Request::Snapshot { snapshot: Box::new(snapshot.clone()), reply }).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    async fn append(&self, commit: Commit) -> Result<(), AppendError> {
        let commit = prepare(commit)?;
        let stopped = || AppendError::Store(StoreError::new("sqlite: the event writer has stopped"));
        let requests = self.requests.as_ref().ok_or_else(stopped)?;
        let (reply, outcome) = oneshot::channel();
        requests.send(Request::Append(AppendRequest { commit, reply })).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    async fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let (scope, key) = (scope.to_string(), key.to_string());
        self.readers
            .read(move |conn| {
                let json: Option<String> = conn
                    .prepare_cached("SELECT record FROM idempotency WHERE scope = ?1 AND key = ?2")
                    .and_then(|mut stmt| stmt.query_row(params![scope, key], |row| row.get(0)).optional())
                    .or_store("reading an idempotency record")?;
                json.map(|json| serde_json::from_str(&json).map_err(corrupt(|| format!("idempotency record {scope}/{key}")))).transpose()
            })
            .await
    }
}

#[async_trait]
impl EventFeed for SqliteEventStore {
    async fn read_after(&self, position: u64, limit: usize) -> Result<Vec<(u64, EventEnvelope)>, StoreError> {
        if let Some(events) = self.tail.read_after(position, limit) {
            return Ok(events);
        }
        let Ok(position) = i64::try_from(position) else { return Ok(Vec::new()) };
        let limit = sql_limit(limit);
        self.readers
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT position, stream_id, version, envelope FROM events WHERE position > ?1 ORDER BY position LIMIT ?2")
                    .or_store("preparing")?;
                let mut rows = stmt.query(params![position, limit]).or_store("reading the feed")?;
                let mut events = Vec::new();
                while let Some(row) = rows.next().or_store("reading the feed")? {
                    let position: i64 = row.get(0).or_store("reading the feed")?;
                    let stream_id: String = row.get(1).or_store("reading the feed")?;
                    let version: i64 = row.get(2).or_store("reading the feed")?;
                    let json: String = row.get(3).or_store("reading the feed")?;
                    events.push((from_sql_int(position, "position")?, decode_event(&stream_id, version, &json)?));
                }
                Ok(events)
            })
            .await
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

/// An envelope from its row; a row that does not decode, or disagrees with its
/// key, is named in the error.
fn decode_event(stream_id: &str, version: i64, json: &str) -> Result<EventEnvelope, StoreError> {
    let event: EventEnvelope = serde_json::from_str(json).map_err(corrupt(|| format!("event {stream_id} version {version}")))?;
    if i64::try_from(event.version) != Ok(version) {
        return Err(StoreError::new(format!("sqlite: corrupt event {stream_id} version {version}: the envelope says version {}", event.version)));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::envelope::EventMetadata;

    fn event(version: u64) -> EventEnvelope {
        EventEnvelope {
            event_id: uuid::Uuid::now_v7(),
            aggregate_type: "Wallet".into(),
            aggregate_id: uuid::Uuid::nil(),
            version,
            event_type: "WalletCredited".into(),
            schema_version: 1,
            occurred_at: Utc::now(),
            data: serde_json::json!({}),
            metadata: EventMetadata {
                command_id: uuid::Uuid::nil(),
                correlation_id: "c".into(),
                causation_id: None,
                user_id: "u".into(),
                idempotency_key: None,
            },
        }
    }

    fn positions(read: Option<Vec<(u64, EventEnvelope)>>) -> Option<Vec<u64>> {
        read.map(|events| events.into_iter().map(|(at, _)| at).collect())
    }

    #[test]
    fn the_tail_answers_only_reads_it_holds_entirely() {
        // Opened at head 10.
        let tail = FeedTail::new(10, 3);
        assert_eq!(positions(tail.read_after(10, 5)), Some(vec![]));
        assert_eq!(positions(tail.read_after(9, 5)), None, "position 10 was committed before the tail started");
        tail.push([(11, event(1)), (12, event(2))]);
        assert_eq!(positions(tail.read_after(10, 5)), Some(vec![11, 12]));
        assert_eq!(positions(tail.read_after(11, 5)), Some(vec![12]));
        assert_eq!(positions(tail.read_after(10, 1)), Some(vec![11]));
        tail.push([(13, event(3)), (14, event(4))]);
        // 11 was evicted: a reader at 10 must go to the file; one at 11 or later need not.
        assert_eq!(positions(tail.read_after(10, 5)), None);
        assert_eq!(positions(tail.read_after(11, 5)), Some(vec![12, 13, 14]));
        assert_eq!(positions(tail.read_after(14, 5)), Some(vec![]));
        // Position 15 was written by another connection: whoever has not read past it
        // reads the file.
        tail.push([(16, event(5))]);
        assert_eq!(positions(tail.read_after(14, 5)), None);
        assert_eq!(positions(tail.read_after(15, 5)), Some(vec![16]));
    }
}
