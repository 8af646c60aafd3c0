//! `healthpay redrive`: what the dead-letter queue holds goes back to work once its
//! cause is fixed (a projector bug, an event the code could not read yet).
//!
//! The queue holds two kinds of message:
//! - a [`DeadLetter`] a consumer parked itself (one record it could not read), with
//!   the record's data: its event is projected again (the projector's), its saga
//!   started (the saga starter's), or judged by the fraud rules (the fraud detector's);
//! - the event source mapping's own report of a batch it gave up (`KinesisBatchInfo`:
//!   shard and sequence range, no data): the records are read again from the bus and
//!   projected.
//!
//! A redriven event is projected with catch-up (every event of its aggregate the
//! view misses is read from the events table, the source of truth), so whatever
//! else of that aggregate a dropped batch held is healed too. A message is deleted
//! only when all it names is done; one that still cannot be done stays, with why.

use crate::dead_letters::DeadLetter;
use crate::projector::envelope;
use crate::saga_starter::{WorkflowStarter, TRIGGERS};
use async_trait::async_trait;
use shared::envelope::EventEnvelope;
use shared::fraud::detector::FraudDetector;
use shared::ports::{EventStore, ReadBatches};
use shared::projection::project_with_catch_up;

/// One message of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: String,
    /// What deletes it.
    pub receipt: String,
    pub body: String,
}

#[async_trait]
pub trait DeadLetterQueue: Send + Sync {
    /// Up to 10 messages; they stay in the queue, invisible for a while, until deleted.
    async fn receive(&self) -> Result<Vec<QueuedMessage>, String>;
    async fn delete(&self, receipt: &str) -> Result<(), String>;
}

/// Reads records back from the event bus.
#[async_trait]
pub trait BusReader: Send + Sync {
    /// The data of the records of `shard` from `first` to `last` (sequence numbers), in order.
    async fn records(&self, shard: &str, first: &str, last: &str) -> Result<Vec<Vec<u8>>, String>;
}

/// What a redrive did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Messages done and deleted.
    pub done: usize,
    /// Events projected again or sagas started for them.
    pub events: usize,
    /// Messages left in the queue: their id and why.
    pub kept: Vec<(String, String)>,
}

pub struct Redrive<'a> {
    pub queue: &'a dyn DeadLetterQueue,
    pub read: &'a dyn ReadBatches,
    pub events: &'a dyn EventStore,
    pub sagas: &'a dyn WorkflowStarter,
    pub bus: &'a dyn BusReader,
    pub detector: &'a FraudDetector,
}

/// The mapping's report of a batch it gave up, as Lambda sends it to an on-failure destination.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchInfo {
    shard_id: String,
    start_sequence_number: String,
    end_sequence_number: String,
}

#[derive(serde::Deserialize)]
struct FailureReport {
    #[serde(rename = "KinesisBatchInfo")]
    kinesis_batch_info: BatchInfo,
}

impl Redrive<'_> {
    /// Works through the queue until it has seen every message once.
    pub async fn run(&self) -> Result<Redriven, String> {
        let mut report = Redriven::default();
        let mut seen = std::collections::HashSet::new();
        loop {
            let messages = self.queue.receive().await?;
            let fresh: Vec<_> = messages.into_iter().filter(|m| seen.insert(m.id.clone())).collect();
            if fresh.is_empty() {
                return Ok(report);
            }
            for message in fresh {
                match self.redrive(&message.body).await {
                    Ok(events) => {
                        self.queue.delete(&message.receipt).await?;
                        report.done += 1;
                        report.events += events;
                    }
                    Err(why) => report.kept.push((message.id, why)),
                }
            }
        }
    }

    /// Does what one message names; the number of events.
    async fn redrive(&self, body: &str) -> Result<usize, String> {
        if let Ok(letter) = serde_json::from_str::<DeadLetter>(body) {
            use base64::Engine;
            let data = base64::engine::general_purpose::STANDARD.decode(&letter.data).map_err(|e| format!("its data is not base64: {e}"))?;
            let event = envelope(&data).map_err(|e| format!("still cannot be read ({e}); parked by {} because: {}", letter.consumer, letter.reason))?;
            return match letter.consumer.as_str() {
                "saga-starter" => self.start_sagas(&event).await.map(|()| 1),
                "fraud-detector" => self.detector.inspect(&event).await.map(|_| 1).map_err(|e| e.to_string()),
                _ => self.project(&event).await.map(|()| 1),
            };
        }
        let report: FailureReport = serde_json::from_str(body).map_err(|_| "neither a parked record nor a batch the mapping gave up".to_string())?;
        let batch = report.kinesis_batch_info;
        let records = self.bus.records(&batch.shard_id, &batch.start_sequence_number, &batch.end_sequence_number).await?;
        if records.is_empty() {
            return Err(format!("the bus no longer holds shard {} from {}: run `healthpay rebuild`", batch.shard_id, batch.start_sequence_number));
        }
        for data in &records {
            let event = envelope(data).map_err(|e| format!("a record of the batch still cannot be read: {e}"))?;
            self.project(&event).await?;
        }
        Ok(records.len())
    }

    async fn project(&self, event: &EventEnvelope) -> Result<(), String> {
        project_with_catch_up(self.read, self.events, event).await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn start_sagas(&self, event: &EventEnvelope) -> Result<(), String> {
        for trigger in TRIGGERS {
            if let Some((name, input)) = trigger.start(event) {
                self.sagas.start(trigger.state_machine, &name, &input).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::kinesis::KinesisEvent;
    use shared::memory::{MemoryEventStore, MemoryReadStore};
    use shared::ports::{Commit, DocumentViews, StreamAppend, WalletViews};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Queue(Mutex<Vec<QueuedMessage>>);

    #[async_trait]
    impl DeadLetterQueue for Queue {
        async fn receive(&self) -> Result<Vec<QueuedMessage>, String> {
            Ok(self.0.lock().unwrap().iter().take(10).cloned().collect())
        }
        async fn delete(&self, receipt: &str) -> Result<(), String> {
            self.0.lock().unwrap().retain(|m| m.receipt != receipt);
            Ok(())
        }
    }

    #[derive(Default)]
    struct Bus(Vec<Vec<u8>>);

    #[async_trait]
    impl BusReader for Bus {
        async fn records(&self, _: &str, _: &str, _: &str) -> Result<Vec<Vec<u8>>, String> {
            Ok(self.0.clone())
        }
    }

    #[derive(Default)]
    struct Sagas(Mutex<Vec<String>>);

    #[async_trait]
    impl WorkflowStarter for Sagas {
        async fn start(&self, _: &str, name: &str, _: &serde_json::Value) -> Result<(), String> {
            self.0.lock().unwrap().push(name.into());
            Ok(())
        }
    }

    fn message(id: &str, body: serde_json::Value) -> QueuedMessage {
        QueuedMessage { id: id.into(), receipt: format!("r-{id}"), body: body.to_string() }
    }

    #[tokio::test]
    async fn parked_records_and_given_up_batches_are_projected_again_and_deleted_and_poison_stays() {
        let batch: KinesisEvent = crate::sample("kinesis-batch.json");
        let data: Vec<Vec<u8>> = batch.records.iter().map(|r| r.kinesis.data.0.clone()).collect();
        let events: Vec<EventEnvelope> = data.iter().map(|d| envelope(d).unwrap()).collect();
        let store = MemoryEventStore::default();
        store
            .append(Commit { streams: vec![StreamAppend { stream_id: events[0].stream_id(), expected_version: 0, events: events.clone() }], idempotency: None })
            .await
            .unwrap();
        let read = MemoryReadStore::default();
        use base64::Engine;
        let encode = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let queue = Queue(Mutex::new(vec![
            // The projector parked v2 (its code could not read it then): catching up projects v1 and v2.
            message(
                "a",
                serde_json::json!({"consumer": "read-model-projector", "reason": "x", "sequenceNumber": "2", "partitionKey": "k", "data": encode(&data[1])}),
            ),
            // The mapping gave a whole batch up.
            message(
                "b",
                serde_json::json!({"requestContext": {}, "KinesisBatchInfo": {"shardId": "shard-0", "startSequenceNumber": "1", "endSequenceNumber": "3", "batchSize": 3, "streamArn": "arn"}}),
            ),
            // The fraud detector parked the wallet's opening: it is judged again, not projected.
            message(
                "d",
                serde_json::json!({"consumer": "fraud-detector", "reason": "x", "sequenceNumber": "1", "partitionKey": "k", "data": encode(&data[0])}),
            ),
            message(
                "c",
                serde_json::json!({"consumer": "saga-starter", "reason": "x", "sequenceNumber": "9", "partitionKey": "k", "data": encode(b"{not json")}),
            ),
        ]));
        let sagas = Sagas::default();
        let read_side = std::sync::Arc::new(MemoryReadStore::default());
        let ledger = std::sync::Arc::new(shared::app::Ledger::new(
            std::sync::Arc::new(shared::command::CommandService::new(
                std::sync::Arc::new(MemoryEventStore::default()),
                std::sync::Arc::new(shared::clock::SystemClock),
            )),
            shared::payment_expiry::DEFAULT_PAYMENT_EXPIRY,
        ));
        let detector = FraudDetector::new(ledger, read_side.clone(), shared::fraud::FraudRules::default());
        let redrive = Redrive { queue: &queue, read: &read, events: &store, sagas: &sagas, bus: &Bus(data.clone()), detector: &detector };
        let report = redrive.run().await.unwrap();
        assert_eq!((report.done, report.events), (3, 5));
        let watch = read_side.document(shared::fraud::detector::WATCH_KIND, events[0].aggregate_id).await.unwrap();
        assert!(watch.is_some(), "the fraud detector's letter went to the detector");
        assert_eq!(report.kept.len(), 1);
        assert!(report.kept[0].1.starts_with("still cannot be read"), "{:?}", report.kept);
        assert_eq!(queue.0.lock().unwrap().iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["c"], "done messages are deleted");
        assert_eq!(read.wallet(events[0].aggregate_id).await.unwrap().unwrap().version, 3);
    }
}
