//! Kinesis → read models. Records arrive in order per aggregate (partition key);
//! each is applied with the projectors' version guard, and a gap is filled from the
//! event store, never skipped.

use crate::dead_letters::{DeadLetter, DeadLetters};
use aws_lambda_events::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use shared::envelope::EventEnvelope;
use shared::ports::{EventStore, ReadStore};
use shared::projection::{project_with_catch_up, ProjectionError};

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

/// Parks a record that can never be processed; if even that fails, reports it for
/// redelivery (the mapping's retries and on-failure destination take over).
pub async fn park(dead_letters: &dyn DeadLetters, consumer: &str, record: &KinesisEventRecord, reason: String) -> Option<KinesisEventResponse> {
    use base64::Engine;
    let sequence_number = &record.kinesis.sequence_number;
    let letter = DeadLetter {
        consumer: consumer.into(),
        reason,
        sequence_number: sequence_number.clone(),
        partition_key: Some(record.kinesis.partition_key.clone()),
        data: base64::engine::general_purpose::STANDARD.encode(&record.kinesis.data.0),
    };
    tracing::error!(reason = %letter.reason, %sequence_number, "parking a record that can never be processed");
    match dead_letters.park(&letter).await {
        Ok(()) => None,
        Err(error) => {
            tracing::warn!(%error, "cannot park the record; reporting it for redelivery");
            Some(failure(sequence_number))
        }
    }
}

/// Applies a batch in order. A record that failed for a reason that may pass is
/// reported, and the rest left for the redelivery (which starts from it), so order
/// holds; a record that can never be applied is parked and skipped.
pub async fn project_batch(read: &dyn ReadStore, events: &dyn EventStore, dead_letters: &dyn DeadLetters, batch: KinesisEvent) -> KinesisEventResponse {
    for record in &batch.records {
        let sequence_number = &record.kinesis.sequence_number;
        let envelope = match envelope(&record.kinesis.data) {
            Ok(envelope) => envelope,
            Err(poison) => match park(dead_letters, "read-model-projector", record, poison).await {
                None => continue,
                Some(retry) => return retry,
            },
        };
        match project_with_catch_up(read, events, &envelope).await {
            Ok(_) => {}
            Err(poison @ ProjectionError::Undecodable { .. }) => {
                if let Some(retry) = park(dead_letters, "read-model-projector", record, poison.to_string()).await {
                    return retry;
                }
            }
            Err(error) => {
                tracing::warn!(%error, %sequence_number, "cannot project yet; reporting the record for redelivery");
                return failure(sequence_number);
            }
        }
    }
    KinesisEventResponse::default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dead_letters::{DeadLetter, DeadLetters};
    use shared::memory::{MemoryEventStore, MemoryReadStore};
    use shared::ports::{Commit, StreamAppend, WalletViews};
    use std::sync::Mutex;

    #[derive(Default)]
    pub(crate) struct Parked(pub Mutex<Vec<DeadLetter>>, pub bool);

    #[async_trait::async_trait]
    impl DeadLetters for Parked {
        async fn park(&self, letter: &DeadLetter) -> Result<(), String> {
            if self.1 {
                return Err("queue unavailable".into());
            }
            self.0.lock().unwrap().push(letter.clone());
            Ok(())
        }
    }

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
        assert!(project_batch(&read, &store, &Parked::default(), batch.clone()).await.batch_item_failures.is_empty());
        let id = envelope(&batch.records[0].kinesis.data).unwrap().aggregate_id;
        let view = read.wallet(id).await.unwrap().unwrap();
        assert_eq!((view.version, view.status.as_str(), view.balance.minor()), (3, "active", 100_000));
        assert!(project_batch(&read, &store, &Parked::default(), batch).await.batch_item_failures.is_empty());
        assert_eq!(read.wallet(id).await.unwrap().unwrap(), view);
    }

    fn poisoned_batch() -> KinesisEvent {
        let mut poisoned: serde_json::Value = crate::sample("kinesis-batch.json");
        poisoned["Records"][1]["kinesis"]["data"] = "e25vdCBqc29u".into(); // base64 of `{not json`
        serde_json::from_value(poisoned).unwrap()
    }

    #[tokio::test]
    async fn a_poisoned_record_is_parked_and_the_rest_flows() {
        let store = store_with(&crate::sample("kinesis-batch.json")).await;
        let batch = poisoned_batch();
        let (read, parked) = (MemoryReadStore::default(), Parked::default());
        assert!(project_batch(&read, &store, &parked, batch.clone()).await.batch_item_failures.is_empty());
        let letters = parked.0.into_inner().unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!((letters[0].sequence_number.as_str(), letters[0].data.as_str()), (batch.records[1].kinesis.sequence_number.as_str(), "e25vdCBqc29u"));
        let id = envelope(&batch.records[0].kinesis.data).unwrap().aggregate_id;
        // v3 arrived without v2 (the poison): caught up from the event store.
        assert_eq!(read.wallet(id).await.unwrap().unwrap().version, 3);
    }

    #[tokio::test]
    async fn a_poisoned_record_that_cannot_be_parked_is_reported_and_what_follows_waits() {
        let store = store_with(&crate::sample("kinesis-batch.json")).await;
        let batch = poisoned_batch();
        let read = MemoryReadStore::default();
        let response = project_batch(&read, &store, &Parked(Mutex::default(), true), batch.clone()).await;
        assert_eq!(response.batch_item_failures[0].item_identifier.as_deref(), Some(batch.records[1].kinesis.sequence_number.as_str()));
        let id = envelope(&batch.records[0].kinesis.data).unwrap().aggregate_id;
        assert_eq!(read.wallet(id).await.unwrap().unwrap().version, 1, "the record before it was applied, the one after it was not");
    }
}
