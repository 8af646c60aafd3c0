//! DynamoDB Stream → Kinesis: puts every new event envelope on the event bus,
//! partitioned by aggregate id so each aggregate's events stay in order.

use async_trait::async_trait;
use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use shared::envelope::EventEnvelope;

pub struct BusRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// The event bus (Kinesis on AWS).
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Puts the records in order; `Ok(None)` if all were taken, `Ok(Some(i))` if
    /// record `i` was the first one refused.
    async fn put(&self, records: Vec<BusRecord>) -> Result<Option<usize>, String>;
}

/// Reads a stream record's new image: the events table stores each envelope
/// attribute by attribute (plus its `streamId` key, which the envelope ignores).
pub fn envelope_from_image(image: &serde_dynamo::Item) -> Result<EventEnvelope, String> {
    serde_dynamo::from_item(image.clone()).map_err(|e| format!("not an event envelope: {e}"))
}

/// Publishes a stream batch. Stored events are immutable, so only `INSERT`s carry
/// news. On a failure the first unpublished record is reported, and the event
/// source mapping redelivers from there (consumers are idempotent, so what went out
/// twice does no harm). An image that is not an envelope is reported too: the store
/// only ever writes envelopes, so one that is not is a fault worth stopping for,
/// and after the mapping's bounded retries it lands in the dead-letter queue.
pub async fn publish(bus: &dyn EventBus, event: Event) -> DynamoDbEventResponse {
    let mut records = Vec::new();
    let mut sequence_numbers = Vec::new();
    let mut poisoned = None;
    for record in &event.records {
        if record.event_name != "INSERT" {
            tracing::warn!(event_name = %record.event_name, "ignoring a change to a stored event (events are immutable)");
            continue;
        }
        match envelope_from_image(&record.change.new_image)
            .and_then(|envelope| serde_json::to_vec(&envelope).map(|data| (envelope, data)).map_err(|e| e.to_string()))
        {
            Ok((envelope, data)) => {
                records.push(BusRecord { partition_key: envelope.aggregate_id.to_string(), data });
                sequence_numbers.push(record.change.sequence_number.clone());
            }
            Err(error) => {
                tracing::error!(%error, sequence_number = ?record.change.sequence_number, "stream record is not an event envelope");
                poisoned = Some(record.change.sequence_number.clone());
                break;
            }
        }
    }
    let published = records.len();
    let first_failure = match bus.put(records).await {
        Ok(None) => poisoned,
        Ok(Some(index)) => Some(sequence_numbers[index].clone()),
        Err(error) => {
            tracing::warn!(%error, "event bus refused the batch");
            sequence_numbers.first().cloned().or(poisoned)
        }
    };
    tracing::info!(published, failed = first_failure.is_some(), "published stream batch");
    let mut response = DynamoDbEventResponse::default();
    if let Some(sequence_number) = first_failure {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = sequence_number;
        response.batch_item_failures.push(failure);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct RecordingBus {
        taken: Mutex<Vec<(String, EventEnvelope)>>,
        refuse_from: Option<usize>,
    }

    #[async_trait]
    impl EventBus for RecordingBus {
        async fn put(&self, records: Vec<BusRecord>) -> Result<Option<usize>, String> {
            let mut taken = self.taken.lock().unwrap();
            for (i, record) in records.into_iter().enumerate() {
                if Some(i) == self.refuse_from {
                    return Ok(Some(i));
                }
                taken.push((record.partition_key, serde_json::from_slice(&record.data).unwrap()));
            }
            Ok(None)
        }
    }

    #[tokio::test]
    async fn inserts_are_published_in_order_by_aggregate() {
        let bus = RecordingBus::default();
        let response = publish(&bus, crate::sample("dynamodb-stream-batch.json")).await;
        assert!(response.batch_item_failures.is_empty());
        let taken = bus.taken.into_inner().unwrap();
        let seen: Vec<_> = taken.iter().map(|(key, e)| (key.clone(), e.event_type.clone(), e.version)).collect();
        let wallet = taken[0].1.aggregate_id.to_string();
        assert_eq!(
            seen,
            vec![(wallet.clone(), "WalletCreated".into(), 1), (wallet.clone(), "WalletActivated".into(), 2), (wallet, "WalletCredited".into(), 3)]
        );
    }

    #[tokio::test]
    async fn a_refused_record_is_reported_so_the_rest_is_redelivered() {
        let bus = RecordingBus { refuse_from: Some(1), ..Default::default() };
        let event: Event = crate::sample("dynamodb-stream-batch.json");
        let second = event.records[1].change.sequence_number.clone();
        let response = publish(&bus, event).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(response.batch_item_failures[0].item_identifier, second);
    }

    #[tokio::test]
    async fn a_record_that_is_no_envelope_is_reported_as_poison() {
        let bus = RecordingBus::default();
        let mut event: Event = crate::sample("dynamodb-stream-batch.json");
        event.records[2].change.new_image = serde_dynamo::Item::from(std::collections::HashMap::<String, serde_dynamo::AttributeValue>::new());
        let third = event.records[2].change.sequence_number.clone();
        let response = publish(&bus, event).await;
        assert_eq!(response.batch_item_failures[0].item_identifier, third);
        assert_eq!(bus.taken.into_inner().unwrap().len(), 2, "what came before it is still published");
    }
}
