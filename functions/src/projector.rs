//! Kinesis → read models. Records arrive in order per aggregate (partition key);
//! each is applied with the projectors' version guard, and a gap is filled from the
//! event store, never skipped.

use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use shared::envelope::EventEnvelope;
use shared::ports::{EventStore, ReadStore};
use shared::projection::project_with_catch_up;

pub fn failure(sequence_number: &str) -> KinesisEventResponse {
    let mut failure = KinesisBatchItemFailure::default();
    failure.item_identifier = Some(sequence_number.to_string());
    let mut response = KinesisEventResponse::default();
    response.batch_item_failures.push(failure);
    response
}

/// Decodes a bus record, or says why it is poison.
pub fn envelope(data: &[u8]) -> Result<EventEnvelope, String> {
    serde_json::from_slice(data).map_err(|e| format!("not an event envelope: {e}"))
}

/// Applies a batch in order. The first record that cannot be applied is reported
/// and the rest left for the redelivery (which starts from it), so order holds.
pub async fn project_batch(read: &dyn ReadStore, events: &dyn EventStore, batch: KinesisEvent) -> KinesisEventResponse {
    for record in &batch.records {
        let sequence_number = &record.kinesis.sequence_number;
        let outcome = match envelope(&record.kinesis.data) {
            Ok(envelope) => project_with_catch_up(read, events, &envelope).await.map_err(|e| e.to_string()),
            Err(poison) => Err(poison),
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, %sequence_number, "cannot project; reporting the record for redelivery");
            return failure(sequence_number);
        }
    }
    KinesisEventResponse::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::memory::{MemoryEventStore, MemoryReadStore};
    use shared::ports::{Commit, StreamAppend, WalletViews};

    async fn store_with(batch: &KinesisEvent) -> MemoryEventStore {
        let store = MemoryEventStore::default();
        let events: Vec<EventEnvelope> = batch.records.iter().map(|r| envelope(&r.kinesis.data).unwrap()).collect();
        let commit =
            Commit { streams: vec![StreamAppend { stream_id: events[0].stream_id(), expected_version: 0, events: events.clone() }], idempotency: None };
        store.append(commit).await.unwrap();
        store
    }

    #[tokio::test]
    async fn a_batch_builds_the_wallet_view_and_a_redelivery_changes_nothing() {
        let batch: KinesisEvent = crate::sample("kinesis-batch.json");
        let store = store_with(&batch).await;
        let read = MemoryReadStore::default();
        assert!(project_batch(&read, &store, batch.clone()).await.batch_item_failures.is_empty());
        let id = envelope(&batch.records[0].kinesis.data).unwrap().aggregate_id;
        let view = read.wallet(id).await.unwrap().unwrap();
        assert_eq!((view.version, view.status.as_str(), view.balance.minor()), (3, "active", 100_000));
        assert!(project_batch(&read, &store, batch).await.batch_item_failures.is_empty());
        assert_eq!(read.wallet(id).await.unwrap().unwrap(), view);
    }

    #[tokio::test]
    async fn a_poisoned_record_is_reported_and_what_follows_waits() {
        let store = store_with(&crate::sample("kinesis-batch.json")).await;
        let mut poisoned: serde_json::Value = crate::sample("kinesis-batch.json");
        poisoned["Records"][1]["kinesis"]["data"] = "e25vdCBqc29u".into(); // base64 of `{not json`
        let batch: KinesisEvent = serde_json::from_value(poisoned).unwrap();
        let read = MemoryReadStore::default();
        let response = project_batch(&read, &store, batch.clone()).await;
        assert_eq!(response.batch_item_failures[0].item_identifier.as_deref(), Some(batch.records[1].kinesis.sequence_number.as_str()));
        let id = envelope(&batch.records[0].kinesis.data).unwrap().aggregate_id;
        assert_eq!(read.wallet(id).await.unwrap().unwrap().version, 1, "the record before it was applied, the one after it was not");
    }
}
