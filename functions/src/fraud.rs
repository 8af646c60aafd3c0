//! Kinesis → fraud detector: each wallet event, in bus order, through the rules
//! (`shared::fraud::detector`). A record the detector can never read is parked; a
//! store error or the deadline reports the first record not done, so the mapping
//! resumes exactly there (every record before it is done, and a redelivery of one
//! of them raises nothing twice).

use crate::dead_letters::DeadLetters;
use crate::projector::{envelope, failure, park};
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::streams::KinesisEventResponse;
use shared::fraud::detector::FraudDetector;
use std::time::Instant;

const CONSUMER: &str = "fraud-detector";

pub async fn detect_batch(detector: &FraudDetector, dead_letters: &dyn DeadLetters, batch: KinesisEvent, stop: Instant) -> KinesisEventResponse {
    for record in &batch.records {
        let sequence_number = &record.kinesis.sequence_number;
        let remaining = stop.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            tracing::warn!(%sequence_number, "near the deadline: leaving the rest of the batch for redelivery");
            return failure(sequence_number);
        }
        let event = match envelope(&record.kinesis.data) {
            Ok(event) => event,
            Err(poison) => match park(dead_letters, CONSUMER, record, poison).await {
                None => continue,
                Some(retry) => return retry,
            },
        };
        match tokio::time::timeout(remaining, detector.inspect(&event)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) if error.is_permanent() => {
                if let Some(retry) = park(dead_letters, CONSUMER, record, error.to_string()).await {
                    return retry;
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, %sequence_number, "cannot inspect yet; reporting the record for redelivery");
                return failure(sequence_number);
            }
            Err(_) => return failure(sequence_number),
        }
    }
    KinesisEventResponse::default()
}

/// The thresholds `template.yaml` passes (its `Fraud*` parameters); a variable left
/// unset keeps the documented default.
pub fn rules_from_env() -> Result<shared::fraud::FraudRules, String> {
    shared::fraud::FraudRules::from_settings(|name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projector::tests::Parked;
    use shared::app::{Call, Caller, Ledger, WalletOpening};
    use shared::clock::SystemClock;
    use shared::command::{CommandContext, CommandService};
    use shared::fraud::FraudRules;
    use shared::ids::WalletId;
    use shared::memory::{MemoryEventStore, MemoryReadStore};
    use shared::money::{Currency, Money};
    use shared::ports::EventFeed;
    use shared::wallet::{DebitType, KycLevel, Movement, WalletCommand, WalletType};
    use std::sync::Arc;
    use std::time::Duration;

    /// A bus batch of `(sequence number, data)` records, shaped like the sample batch's.
    fn batch(records: Vec<(usize, Vec<u8>)>) -> KinesisEvent {
        use base64::Engine;
        let sample: serde_json::Value = crate::sample("kinesis-batch.json");
        let records: Vec<serde_json::Value> = records
            .into_iter()
            .map(|(sequence, data)| {
                let mut record = sample["Records"][0].clone();
                record["kinesis"]["sequenceNumber"] = sequence.to_string().into();
                record["kinesis"]["data"] = base64::engine::general_purpose::STANDARD.encode(data).into();
                record
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    #[tokio::test]
    async fn a_burst_on_the_bus_raises_one_alert_and_a_poison_record_is_parked() {
        let events = Arc::new(MemoryEventStore::default());
        let ledger = Arc::new(Ledger::new(Arc::new(CommandService::new(events.clone(), Arc::new(SystemClock))), chrono::Duration::hours(1)));
        let alice = Caller::new("alice", ["x"; 0]).unwrap();
        let call = || Call::once(CommandContext::new("t", "t"));
        let opening =
            WalletOpening { wallet_type: WalletType::Personal, currency: Currency::egp(), kyc_level: KycLevel::Basic, initial_balance: Money::from_minor(500) };
        let wallet = WalletId(ledger.create_wallet(&alice, opening, &call()).await.unwrap().done().unwrap().state.open().unwrap().id);
        ledger.on_wallet(&alice, wallet, WalletCommand::Activate, &call()).await.unwrap();
        for _ in 0..11 {
            let movement =
                Movement { amount: Money::from_minor(1), transaction_type: DebitType::Withdrawal, reference: "r".into(), description: None, currency: None };
            ledger.on_wallet(&alice, wallet, WalletCommand::Debit(movement), &call()).await.unwrap();
        }
        let mut records: Vec<_> = events.read_after(0, 1_000).await.unwrap().into_iter().map(|(i, e)| (i as usize, serde_json::to_vec(&e).unwrap())).collect();
        records.insert(3, (999, b"not json".to_vec()));
        let batch = batch(records);
        let detector = FraudDetector::new(ledger.clone(), Arc::new(MemoryReadStore::default()), FraudRules::default());
        let parked = Parked::default();
        let stop = Instant::now() + Duration::from_secs(30);
        assert!(detect_batch(&detector, &parked, batch.clone(), stop).await.batch_item_failures.is_empty());
        assert_eq!(parked.0.lock().unwrap().len(), 1, "the poison record");
        let alerts = |all: Vec<(u64, shared::envelope::EventEnvelope)>| all.iter().filter(|(_, e)| e.event_type == "FraudAlertRaised").count();
        assert_eq!(alerts(events.read_after(0, 1_000).await.unwrap()), 1);
        assert!(detect_batch(&detector, &parked, batch, stop).await.batch_item_failures.is_empty());
        assert_eq!(alerts(events.read_after(0, 1_000).await.unwrap()), 1, "a redelivered batch raises nothing more");
    }

    #[tokio::test]
    async fn past_the_deadline_the_first_record_is_reported() {
        let events = Arc::new(MemoryEventStore::default());
        let ledger = Arc::new(Ledger::new(Arc::new(CommandService::new(events.clone(), Arc::new(SystemClock))), chrono::Duration::hours(1)));
        let detector = FraudDetector::new(ledger, Arc::new(MemoryReadStore::default()), FraudRules::default());
        let answer = detect_batch(&detector, &Parked::default(), batch(vec![(7, b"{}".to_vec())]), Instant::now()).await;
        assert_eq!(answer.batch_item_failures[0].item_identifier.as_deref(), Some("7"));
    }
}
