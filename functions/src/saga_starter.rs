//! Kinesis → Step Functions: starts the transfer saga for every `TransferInitiated`.
//! The execution is named after the transfer, so a redelivered event cannot start
//! a second saga.

use async_trait::async_trait;
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::streams::KinesisEventResponse;
use shared::saga::transfer::{start_input, starts_saga};

/// Starts a named workflow execution (Step Functions on AWS); starting a name that
/// already exists is success.
#[async_trait]
pub trait WorkflowStarter: Send + Sync {
    async fn start(&self, name: &str, input: &serde_json::Value) -> Result<(), String>;
}

pub async fn start_sagas(starter: &dyn WorkflowStarter, dead_letters: &dyn crate::dead_letters::DeadLetters, batch: KinesisEvent) -> KinesisEventResponse {
    for record in &batch.records {
        let sequence_number = &record.kinesis.sequence_number;
        let envelope = match crate::projector::envelope(&record.kinesis.data) {
            Ok(envelope) => envelope,
            Err(poison) => match crate::projector::park(dead_letters, "transfer-saga-starter", record, poison).await {
                None => continue,
                Some(retry) => return retry,
            },
        };
        if !starts_saga(&envelope) {
            continue;
        }
        let input = serde_json::to_value(start_input(&envelope)).expect("inputs serialise");
        if let Err(error) = starter.start(&envelope.aggregate_id.to_string(), &input).await {
            tracing::warn!(%error, transfer = %envelope.aggregate_id, "cannot start the transfer saga; reporting for redelivery");
            return crate::projector::failure(sequence_number);
        }
        tracing::info!(transfer = %envelope.aggregate_id, "transfer saga started");
    }
    KinesisEventResponse::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, serde_json::Value)>>);

    #[async_trait]
    impl WorkflowStarter for Recorder {
        async fn start(&self, name: &str, input: &serde_json::Value) -> Result<(), String> {
            self.0.lock().unwrap().push((name.into(), input.clone()));
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
        assert_eq!(started[0].0, initiated.aggregate_id.to_string());
        assert_eq!(started[0].1["transferId"], initiated.aggregate_id.to_string());
        assert_eq!(started[0].1["correlationId"], initiated.metadata.correlation_id);
    }
}
