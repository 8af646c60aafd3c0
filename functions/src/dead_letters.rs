//! Where records go that can never be processed (not an envelope, an event no
//! projector can read). Retrying them would only hold up every record behind them
//! in the shard, so a consumer parks them here at once and carries on; failures
//! that may pass (a store error, a gap) are retried by the event source mapping
//! instead, and only land in the same queue once its retries are exhausted.

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The function that gave up on it.
    pub consumer: String,
    pub reason: String,
    /// The record's id in its stream (sequence number).
    pub sequence_number: String,
    pub partition_key: Option<String>,
    /// The record as received, base64.
    pub data: String,
}

#[async_trait]
pub trait DeadLetters: Send + Sync {
    async fn park(&self, letter: &DeadLetter) -> Result<(), String>;
}
