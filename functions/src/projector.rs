//! Kinesis → read models. Records arrive in order per aggregate (partition key);
//! each is applied with the projectors' version guard, and a gap is filled from the
//! event store, never skipped.

use crate::dead_letters::{DeadLetter, DeadLetters};
use aws_lambda_events::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use shared::envelope::EventEnvelope;
use shared::ports::{EventStore, ReadBatches};
use shared::projection::{batch, project_with_catch_up, ProjectionError};
use std::time::{Duration, Instant};

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
        Ok(()) => {
            shared::metrics::record(shared::metrics::Observation::DeadLetterParked { consumer });
            None
        }
        Err(error) => {
            tracing::warn!(%error, "cannot park the record; reporting it for redelivery");
            Some(failure(sequence_number))
        }
    }
}

/// How long before the Lambda's deadline the projector stops: what it did not
/// finish by then is reported, never dropped, and the answer must still reach the
/// runtime in time.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(1_500);

/// The instant to stop by, from the invocation's deadline (milliseconds since the
/// epoch, as the Lambda runtime gives it).
pub fn stop_by(deadline_epoch_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms)).saturating_sub(DEADLINE_MARGIN)
}

/// Applies a batch in order, with few requests: each run of decodable records is
/// projected together (`shared::projection::batch`: the views it needs in one read,
/// its writes grouped per aggregate). A gap is filled from the event store; a record
/// that can never be applied is parked alone and skipped; anything that may pass
/// (a store error, the deadline) reports the first record not done as a batch item
/// failure, so the mapping resumes exactly there and nothing is dropped or reordered.
pub async fn project_batch(
    read: &dyn ReadBatches,
    events: &dyn EventStore,
    dead_letters: &dyn DeadLetters,
    batch: KinesisEvent,
    stop: Instant,
) -> KinesisEventResponse {
    let records = &batch.records;
    let mut next = 0;
    while next < records.len() {
        let remaining = stop.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            tracing::warn!(done = next, left = records.len() - next, "near the deadline: leaving the rest of the batch for redelivery");
            return failure(&records[next].kinesis.sequence_number);
        }
        // The run of decodable records from `next`, and why the record after it is not one.
        let mut run = Vec::new();
        let mut poison = None;
        for record in &records[next..] {
            match envelope(&record.kinesis.data) {
                Ok(envelope) => run.push(envelope),
                Err(why) => {
                    poison = Some(why);
                    break;
                }
            }
        }
        if let (true, Some(poison)) = (run.is_empty(), poison) {
            match park(dead_letters, CONSUMER, &records[next], poison).await {
                None => next += 1,
                Some(retry) => return retry,
            }
            continue;
        }
        let Ok(outcome) = tokio::time::timeout(remaining, batch::project_batch(read, &run)).await else {
            // Whatever of it was written is idempotent: the redelivery starts here.
            tracing::warn!(done = next, "the deadline came during a write: leaving the rest of the batch for redelivery");
            return failure(&records[next].kinesis.sequence_number);
        };
        // One value per write (its oldest event's lag), not per event: an EMF document
        // holds at most 100 values of a metric, a batch up to 500 events.
        if let Some(oldest) = run[..outcome.projected.len()].iter().map(|event| event.occurred_at).min() {
            let lag = shared::clock::Clock::now(&shared::clock::SystemClock) - oldest;
            shared::metrics::record(shared::metrics::Observation::Projected { lag_seconds: lag.num_microseconds().unwrap_or(0).max(0) as f64 / 1e6 });
        }
        let failed = next + outcome.projected.len();
        next = match outcome.error {
            None => next + run.len(),
            Some(ProjectionError::Gap { .. }) => {
                let record = &records[failed];
                let catch_up = project_with_catch_up(read, events, &run[outcome.projected.len()]);
                match tokio::time::timeout(stop.saturating_duration_since(Instant::now()), catch_up).await {
                    Ok(Ok(_)) => failed + 1,
                    Ok(Err(poison @ ProjectionError::Undecodable { .. })) => match park(dead_letters, CONSUMER, record, poison.to_string()).await {
                        None => failed + 1,
                        Some(retry) => return retry,
                    },
                    Ok(Err(error)) => {
                        tracing::warn!(%error, sequence_number = %record.kinesis.sequence_number, "cannot project yet; reporting the record for redelivery");
                        return failure(&record.kinesis.sequence_number);
                    }
                    Err(_) => return failure(&record.kinesis.sequence_number),
                }
            }
            Some(poison @ ProjectionError::Undecodable { .. }) => match park(dead_letters, CONSUMER, &records[failed], poison.to_string()).await {
                None => failed + 1,
                Some(retry) => return retry,
            },
            Some(error) => {
                let sequence_number = &records[failed].kinesis.sequence_number;
                tracing::warn!(%error, %sequence_number, "cannot project yet; reporting the record for redelivery");
                return failure(sequence_number);
            }
        };
    }
    KinesisEventResponse::default()
}

const CONSUMER: &str = "read-model-projector";

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

    /// A deadline far enough away.
    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
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
        assert!(project_batch(&read, &store, &Parked::default(), batch.clone(), later()).await.batch_item_failures.is_empty());
        let id = envelope(&batch.records[0].kinesis.data).unwrap().aggregate_id;
        let view = read.wallet(id).await.unwrap().unwrap();
        assert_eq!((view.version, view.status.as_str(), view.balance.minor()), (3, "active", 100_000));
        assert!(project_batch(&read, &store, &Parked::default(), batch, later()).await.batch_item_failures.is_empty());
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
        assert!(project_batch(&read, &store, &parked, batch.clone(), later()).await.batch_item_failures.is_empty());
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
        let response = project_batch(&read, &store, &Parked(Mutex::default(), true), batch.clone(), later()).await;
        assert_eq!(response.batch_item_failures[0].item_identifier.as_deref(), Some(batch.records[1].kinesis.sequence_number.as_str()));
        let id = envelope(&batch.records[0].kinesis.data).unwrap().aggregate_id;
        assert_eq!(read.wallet(id).await.unwrap().unwrap().version, 1, "the record before it was applied, the one after it was not");
    }

    #[tokio::test]
    async fn at_the_deadline_the_first_record_not_done_is_reported_and_nothing_is_dropped() {
        let batch: KinesisEvent = crate::sample("kinesis-batch.json");
        let store = store_with(&batch).await;
        let read = MemoryReadStore::default();
        let response = project_batch(&read, &store, &Parked::default(), batch.clone(), Instant::now()).await;
        assert_eq!(response.batch_item_failures[0].item_identifier.as_deref(), Some(batch.records[0].kinesis.sequence_number.as_str()));
        let id = envelope(&batch.records[0].kinesis.data).unwrap().aggregate_id;
        assert_eq!(read.wallet(id).await.unwrap(), None, "nothing was projected past the deadline");
        // The redelivery, in time, does it all.
        assert!(project_batch(&read, &store, &Parked::default(), batch, later()).await.batch_item_failures.is_empty());
        assert_eq!(read.wallet(id).await.unwrap().unwrap().version, 3);
    }

    #[tokio::test]
    async fn a_batch_that_starts_past_a_gap_catches_up_from_the_event_store() {
        let full: KinesisEvent = crate::sample("kinesis-batch.json");
        let store = store_with(&full).await;
        let mut late = full.clone();
        late.records.remove(0);
        let read = MemoryReadStore::default();
        assert!(project_batch(&read, &store, &Parked::default(), late, later()).await.batch_item_failures.is_empty());
        let id = envelope(&full.records[0].kinesis.data).unwrap().aggregate_id;
        assert_eq!(read.wallet(id).await.unwrap().unwrap().version, 3);
    }
}
