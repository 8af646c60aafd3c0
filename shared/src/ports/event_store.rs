use super::StoreError;
use crate::envelope::EventEnvelope;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The write side's source of truth.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// The stream's events with a version above `after_version`, in version order,
    /// read consistently (everything acknowledged before the call is seen).
    async fn load(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventEnvelope>, StoreError>;

    /// Appends all of `commit` or nothing: every stream at its expected version and
    /// the idempotency record (if any) under a key not yet used.
    async fn append(&self, commit: Commit) -> Result<(), AppendError>;

    /// The stream's first event (version 1), if it has one. The facts it records
    /// never change (a wallet's owner, a card's holder), so access checks read this
    /// one event instead of the whole stream. Backends answer it with one small read.
    async fn first_event(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        Ok(self.load(stream_id, 0).await?.into_iter().next())
    }

    /// The newest snapshot of the stream, if the backend keeps snapshots.
    async fn snapshot(&self, _stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(None)
    }

    /// Keeps `snapshot` unless the stream has a newer one already (a backend that
    /// keeps no snapshots ignores it). Snapshots are derived data: losing one only
    /// costs a longer load.
    async fn save_snapshot(&self, _snapshot: &Snapshot) -> Result<(), StoreError> {
        Ok(())
    }

    /// The stored outcome of an earlier command with this caller-scoped key.
    async fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;
}

/// The global, ordered log of every appended event, for feeding projections and
/// sagas on the embedded backends. (On AWS, the events table's stream plays this
/// role.) Positions start at 1 and grow by commit order.
#[async_trait]
pub trait EventFeed: Send + Sync {
    async fn read_after(&self, position: u64, limit: usize) -> Result<Vec<(u64, EventEnvelope)>, StoreError>;
    /// The newest position, updated after every commit; a change wakes feed readers.
    fn head(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// An aggregate's state as of `version`, so that a long stream loads as the
/// snapshot plus the events after it. It is read only by the code of the same
/// `schema_version` (the aggregate's); any other ignores it and folds the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub stream_id: String,
    pub version: u64,
    pub schema_version: u32,
    pub state: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Commit {
    pub streams: Vec<StreamAppend>,
    pub idempotency: Option<IdempotencyRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream_id: String,
    /// The stream's version the command decided on (0: the stream must not exist).
    pub expected_version: u64,
    /// Versions `expected_version + 1 ..` in order.
    pub events: Vec<EventEnvelope>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream_id} moved past the expected version")]
    VersionConflict { stream_id: String },
    /// The key was stored by another (possibly concurrent) command first.
    #[error("idempotency key already used")]
    IdempotencyKeyUsed(Box<IdempotencyRecord>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The answer a command gave, kept so that a retry with the same key gets it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    /// Whose key it is (the caller's `sub`); keys never collide across callers.
    pub scope: String,
    pub key: String,
    /// A digest of method, path and body: the same key with another request is refused.
    pub request_hash: String,
    pub response: StoredResponse,
    pub created_at: DateTime<Utc>,
    /// Kept at least until then (24 h by contract).
    pub expires_at: DateTime<Utc>,
}
