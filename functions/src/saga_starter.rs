//! Kinesis → Step Functions: starts the transfer saga for every `TransferInitiated`
//! and the prescription-claim saga for every `ClaimSubmitted`. The execution is named
//! after the transfer or the claim, so a redelivered event cannot start a second saga.

use async_trait::async_trait;
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::streams::KinesisEventResponse;
use shared::saga::steps::Trigger;
use shared::saga::{claim, transfer};

/// The sagas this starter starts.
pub const TRIGGERS: [&Trigger; 2] = [&transfer::TRIGGER, &claim::TRIGGER];

/// Starts a named workflow execution (Step Functions on AWS); starting a name that
/// already exists is success.
#[async_trait]
pub trait WorkflowStarter: Send + Sync {
    async fn start(&self, state_machine: &str, name: &str, input: &serde_json::Value) -> Result<(), String>;
}

pub async fn start_sagas(starter: &dyn WorkflowStarter, dead_letters: &dyn crate::dead_letters::DeadLetters, batch: KinesisEvent) -> KinesisEventResponse {
    for record in &batch.records {
        let sequence_number = &record.kinesis.sequence_number;
        let envelope = match crate::projector::envelope(&record.kinesis.data) {
            Ok(envelope) => envelope,
            Err(poison) => match crate::projector::park(dead_letters, "saga-starter", record, poison).await {
                None => continue,
                Some(retry) => return retry,
            },
        };
        for trigger in TRIGGERS {
            let Some((name, input)) = trigger.start(&envelope) else { continue };
            let saga = trigger.state_machine;
            if let Err(error) = starter.start(saga, &name, &input).await {
                tracing::warn!(%error, saga, execution = %name, "cannot start the saga; reporting for redelivery");
                return crate::projector::failure(sequence_number);
            }
            tracing::info!(saga, execution = %name, "saga started");
        }
    }
    KinesisEventResponse::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The executions started: state machine, name, input.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, String, serde_json::Value)>>);

    #[async_trait]
    impl WorkflowStarter for Recorder {
        async fn start(&self, state_machine: &str, name: &str, input: &serde_json::Value) -> Result<(), String> {
            self.0.lock().unwrap().push((state_machine.into(), name.into(), input.clone()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn only_initiated_transfers_start_a_saga_named_after_the_transfer() {
        let recorder = Recorder::default();
        let batch: KinesisEvent = crate::sample("kinesis-transfer-initiated.json");
        let parked = crate::projector::tests::Parked::default();
        assert!(start_sagas(&recorder, &parked, batch.clone()).await.batch_item_failures.is_empty());
        let started = recorder.0.into_inner().unwrap();
        assert_eq!(started.len(), 1, "the wallet event in the batch starts nothing");
        let initiated = crate::projector::envelope(&batch.records[1].kinesis.data).unwrap();
        assert_eq!((started[0].0.as_str(), started[0].1.clone()), ("transfer", initiated.aggregate_id.to_string()));
        assert_eq!(started[0].2["transferId"], initiated.aggregate_id.to_string());
        assert_eq!(started[0].2["correlationId"], initiated.metadata.correlation_id);
    }

    #[tokio::test]
    async fn only_submitted_claims_start_a_claim_saga_named_after_the_claim() {
        let recorder = Recorder::default();
        let batch: KinesisEvent = crate::sample("kinesis-claim-submitted.json");
        let parked = crate::projector::tests::Parked::default();
        assert!(start_sagas(&recorder, &parked, batch.clone()).await.batch_item_failures.is_empty());
        let started = recorder.0.into_inner().unwrap();
        assert_eq!(started.len(), 1, "the claim's later event starts nothing");
        let submitted = crate::projector::envelope(&batch.records[0].kinesis.data).unwrap();
        let claim = submitted.aggregate_id.to_string();
        assert_eq!(started[0], ("claim".into(), claim.clone(), serde_json::json!({"claimId": claim, "correlationId": "corr-claim-1"})));
    }
}
