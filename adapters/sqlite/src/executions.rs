//! Saga executions on SQLite, so that a restarted server resumes the running ones.

use crate::common::{corrupt, time_key, Db, OrStore, Synchronous};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use shared::ports::{ExecutionRecord, ExecutionStatus, ExecutionStore, StoreError};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS executions (
    state_machine TEXT NOT NULL,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL, -- RUNNING, SUCCEEDED, FAILED
    started_at    TEXT NOT NULL, -- sortable, see time_key
    record        TEXT NOT NULL, -- the ExecutionRecord as JSON
    PRIMARY KEY (state_machine, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (state_machine, status, started_at);
";

/// [`ExecutionStore`] on SQLite: WAL with `synchronous=FULL` (a saga step that
/// was recorded must not be forgotten and re-run differently after a crash).
pub struct SqliteExecutionStore {
    db: Db,
}

impl SqliteExecutionStore {
    /// Opens (or creates) the execution store at `path`. The file may be shared with
    /// a [`crate::SqliteReadStore`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(SqliteExecutionStore { db: Db::open(path, Synchronous::Full, SCHEMA)? })
    }
}

fn status(status: ExecutionStatus) -> &'static str {
    match status {
        ExecutionStatus::Running => "RUNNING",
        ExecutionStatus::Succeeded => "SUCCEEDED",
        ExecutionStatus::Failed => "FAILED",
    }
}

/// The columns of a record: (state machine, name, status, started_at, JSON).
fn columns(record: &ExecutionRecord) -> Result<(String, String, &'static str, String, String), StoreError> {
    let json = serde_json::to_string(record).or_store("encoding an execution")?;
    Ok((record.state_machine.clone(), record.name.clone(), status(record.status), time_key(&record.started_at), json))
}

fn decode(state_machine: &str, name: &str, json: &str) -> Result<ExecutionRecord, StoreError> {
    serde_json::from_str(json).map_err(corrupt(|| format!("execution {state_machine}/{name}")))
}

#[async_trait]
impl ExecutionStore for SqliteExecutionStore {
    async fn create(&self, record: &ExecutionRecord) -> Result<bool, StoreError> {
        let (machine, name, status, started_at, json) = columns(record)?;
        self.db
            .write(move |conn| {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO executions (state_machine, name, status, started_at, record) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (state_machine, name) DO NOTHING",
                    )
                    .and_then(|mut stmt| stmt.execute(params![machine, name, status, started_at, json]))
                    .or_store("creating an execution")?;
                Ok(inserted == 1)
            })
            .await
    }

    async fn update(&self, record: &ExecutionRecord) -> Result<(), StoreError> {
        let (machine, name, status, started_at, json) = columns(record)?;
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO executions (state_machine, name, status, started_at, record) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (state_machine, name) DO UPDATE SET status = excluded.status, started_at = excluded.started_at,
                         record = excluded.record",
                )
                .and_then(|mut stmt| stmt.execute(params![machine, name, status, started_at, json]))
                .or_store("updating an execution")?;
                Ok(())
            })
            .await
    }

    async fn get(&self, state_machine: &str, name: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let (machine, name) = (state_machine.to_string(), name.to_string());
        self.db
            .read(move |conn| {
                let json: Option<String> = conn
                    .prepare_cached("SELECT record FROM executions WHERE state_machine = ?1 AND name = ?2")
                    .and_then(|mut stmt| stmt.query_row(params![machine, name], |row| row.get(0)).optional())
                    .or_store("reading an execution")?;
                json.map(|json| decode(&machine, &name, &json)).transpose()
            })
            .await
    }

    async fn running(&self, state_machine: &str) -> Result<Vec<ExecutionRecord>, StoreError> {
        let machine = state_machine.to_string();
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT name, record FROM executions WHERE state_machine = ?1 AND status = ?2 ORDER BY started_at, name")
                    .or_store("preparing")?;
                let mut rows = stmt.query(params![machine, status(ExecutionStatus::Running)]).or_store("listing executions")?;
                let mut running = Vec::new();
                while let Some(row) = rows.next().or_store("listing executions")? {
                    let name: String = row.get(0).or_store("listing executions")?;
                    let json: String = row.get(1).or_store("listing executions")?;
                    running.push(decode(&machine, &name, &json)?);
                }
                Ok(running)
            })
            .await
    }
}
