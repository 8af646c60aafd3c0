//! Saga executions, persisted by the local state-machine runner the way Step
//! Functions keeps them on AWS: a restarted server resumes every running one.

use super::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    /// Unique per state machine (the transfer id for the transfer saga).
    pub name: String,
    pub state_machine: String,
    pub status: ExecutionStatus,
    /// The state to run next (while running) or the state it ended in.
    pub current_state: String,
    /// The input of `current_state` (while running) or the execution's output.
    pub input: serde_json::Value,
    /// `error` and `cause` of a failed execution.
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Stores a new execution; `false` (and no change) if the name is taken —
    /// starting the same execution twice is how idempotent starts are made.
    async fn create(&self, record: &ExecutionRecord) -> Result<bool, StoreError>;
    /// Records progress of an existing execution.
    async fn update(&self, record: &ExecutionRecord) -> Result<(), StoreError>;
    async fn get(&self, state_machine: &str, name: &str) -> Result<Option<ExecutionRecord>, StoreError>;
    async fn running(&self, state_machine: &str) -> Result<Vec<ExecutionRecord>, StoreError>;
}
