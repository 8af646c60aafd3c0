//! The transfer saga's steps. Each one is idempotent: it reads how far the transfer
//! got from the Transfer aggregate and does only what is left, and every money move
//! commits atomically together with the transfer event that records it. Retries,
//! redeliveries and a resumed execution therefore never move money twice.

use super::asl::{self, TaskFailure, TaskInvoker};
use crate::aggregate::Aggregate;
use crate::command::{CommandContext, CommandError, CommandService, Failure, UnitOfWork};
use crate::error::DomainError;
use crate::envelope::EventEnvelope;
use crate::projection::feed::FeedConsumer;
use crate::transfer::{StartedTransfer, Transfer, TransferCommand, TransferEvent, TransferStage};
use crate::wallet::{CreditType, DebitType, Movement, Wallet, WalletCommand};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The ASL definition, as deployed by `template.yaml`.
pub const DEFINITION: &str = include_str!("../../../statemachines/transfer.asl.json");
pub const STATE_MACHINE: &str = "transfer";

/// Each Task's `DefinitionSubstitutions` key, and the step's local function name.
pub const STEPS: [(&str, &str); 3] = [
    ("DebitSourceFunctionArn", "transfer-debit-source"),
    ("CreditDestinationFunctionArn", "transfer-credit-destination"),
    ("CompensateFunctionArn", "transfer-compensate"),
];

/// What every step receives (the rest of the execution state is ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepInput {
    pub transfer_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepOutcome {
    /// The step's money move happened (now or on an earlier run).
    pub accepted: bool,
    /// The contract's transfer status after the step.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A step that could not run (the store failed, or conflicts never settled). The
/// state machine's Retry takes it from here; `error_name` is what `ErrorEquals` sees.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error_name}: {message}")]
pub struct StepError {
    pub error_name: &'static str,
    pub message: String,
}

impl From<CommandError> for StepError {
    fn from(e: CommandError) -> Self {
        let error_name = match &e {
            CommandError::Store(_) => "StoreUnavailable",
            CommandError::Conflict { .. } => "ConcurrencyConflict",
            CommandError::Refused(_) => "TransferNotFound",
            CommandError::IdempotencyKeyReused => "IdempotencyKeyReused",
        };
        StepError { error_name, message: e.to_string() }
    }
}

pub struct TransferSteps {
    commands: Arc<CommandService>,
}

const SAGA_USER: &str = "saga:transfer";

impl TransferSteps {
    pub fn new(commands: Arc<CommandService>) -> Self {
        TransferSteps { commands }
    }

    fn context(input: &StepInput, step: &str) -> CommandContext {
        let mut ctx = CommandContext::new(SAGA_USER, input.correlation_id.clone().unwrap_or_else(|| input.transfer_id.to_string()));
        ctx.causation_id = Some(format!("transfer:{}:{step}", input.transfer_id));
        ctx
    }

    /// Takes the amount from the source, or ends the transfer `FAILED` with the reason
    /// the source refused it (the transfer records the failure; no money moved).
    pub async fn debit_source(&self, input: &StepInput) -> Result<StepOutcome, StepError> {
        let id = input.transfer_id;
        let outcome = self
            .commands
            .execute(&Self::context(input, "debit-source"), async move |uow| {
                let transfer = load_started(uow, id).await?;
                if transfer.stage != TransferStage::Initiated {
                    return Ok(outcome_of(&transfer));
                }
                let terms = &transfer.terms;
                let source: Wallet = uow.load(terms.source_wallet_id).await?;
                let debit = WalletCommand::Debit(Movement {
                    amount: terms.amount,
                    transaction_type: DebitType::TransferOut,
                    reference: terms.reference.clone(),
                    description: Some(terms.description.clone().unwrap_or_else(|| format!("Transfer {id} to wallet {}", terms.destination_wallet_id))),
                    currency: Some(terms.currency.clone()),
                });
                let next = match source.decide(&debit) {
                    Ok(events) => {
                        uow.record::<Wallet>(terms.source_wallet_id, events);
                        TransferCommand::RecordSourceDebited
                    }
                    Err(refusal) => TransferCommand::Fail { reason: refusal.code().into() },
                };
                Ok(outcome_of(&started(uow.handle::<Transfer>(id, &next).await?)))
            })
            .await?;
        Ok(outcome)
    }

    /// Gives the amount to the destination and completes the transfer, or records why
    /// the destination refused it (the compensation step then refunds the source).
    pub async fn credit_destination(&self, input: &StepInput) -> Result<StepOutcome, StepError> {
        let id = input.transfer_id;
        let outcome = self
            .commands
            .execute(&Self::context(input, "credit-destination"), async move |uow| {
                let transfer = load_started(uow, id).await?;
                if transfer.stage != TransferStage::SourceDebited {
                    return Ok(outcome_of(&transfer));
                }
                let terms = &transfer.terms;
                let destination: Wallet = uow.load(terms.destination_wallet_id).await?;
                let credit = WalletCommand::Credit(Movement {
                    amount: terms.amount,
                    transaction_type: CreditType::TransferIn,
                    reference: terms.reference.clone(),
                    description: Some(terms.description.clone().unwrap_or_else(|| format!("Transfer {id} from wallet {}", terms.source_wallet_id))),
                    currency: Some(terms.currency.clone()),
                });
                let next = match destination.decide(&credit) {
                    Ok(events) => {
                        uow.record::<Wallet>(terms.destination_wallet_id, events);
                        TransferCommand::RecordCompleted
                    }
                    // A missing destination is "not found", whatever id the empty state reports.
                    Err(DomainError::NotFound { .. }) => TransferCommand::RecordCreditRejected { reason: "NOT_FOUND".into() },
                    Err(refusal) => TransferCommand::RecordCreditRejected { reason: refusal.code().into() },
                };
                Ok(outcome_of(&started(uow.handle::<Transfer>(id, &next).await?)))
            })
            .await?;
        Ok(outcome)
    }

    /// Ends a transfer that cannot complete: a refused credit or a step that kept
    /// failing. Whatever was taken from the source goes back to it (even if it has
    /// been suspended since), and the transfer ends `FAILED`. A transfer that did
    /// complete or fail already is left as it is.
    pub async fn compensate(&self, input: &StepInput) -> Result<StepOutcome, StepError> {
        let id = input.transfer_id;
        let outcome = self
            .commands
            .execute(&Self::context(input, "compensate"), async move |uow| {
                let mut transfer = load_started(uow, id).await?;
                match transfer.stage {
                    TransferStage::Completed | TransferStage::Failed => return Ok(outcome_of(&transfer)),
                    TransferStage::Initiated => {
                        // The debit never happened: nothing to give back.
                        let failed = uow.handle::<Transfer>(id, &TransferCommand::Fail { reason: "INTERNAL".into() }).await?;
                        return Ok(outcome_of(&started(failed)));
                    }
                    TransferStage::SourceDebited => {
                        // The credit was never decided (its step kept failing).
                        transfer = started(uow.handle::<Transfer>(id, &TransferCommand::RecordCreditRejected { reason: "INTERNAL".into() }).await?);
                    }
                    TransferStage::CreditRejected => {}
                }
                let terms = &transfer.terms;
                let refund = WalletCommand::ReturnFunds(Movement {
                    amount: terms.amount,
                    transaction_type: CreditType::Refund,
                    reference: terms.reference.clone(),
                    description: Some(format!("Refund of transfer {id}: {}", transfer.failure_reason.as_deref().unwrap_or("INTERNAL"))),
                    currency: Some(terms.currency.clone()),
                });
                uow.handle::<Wallet>(terms.source_wallet_id, &refund).await?;
                Ok(outcome_of(&started(uow.handle::<Transfer>(id, &TransferCommand::RecordSourceRefunded).await?)))
            })
            .await?;
        Ok(outcome)
    }

    /// Runs the step a local Task names (its function name after substitution).
    pub async fn run_step(&self, function: &str, input: &StepInput) -> Result<StepOutcome, StepError> {
        match function {
            "transfer-debit-source" => self.debit_source(input).await,
            "transfer-credit-destination" => self.credit_destination(input).await,
            "transfer-compensate" => self.compensate(input).await,
            other => Err(StepError { error_name: "UnknownFunction", message: format!("no transfer step is called {other}") }),
        }
    }
}

async fn load_started(uow: &mut UnitOfWork<'_>, id: Uuid) -> Result<StartedTransfer, Failure> {
    let transfer: Transfer = uow.load(id).await?;
    transfer.started().cloned().ok_or(Failure::Refused(DomainError::NotFound { kind: "transfer", id }))
}

fn started(transfer: Transfer) -> StartedTransfer {
    transfer.started().cloned().expect("a transfer that was loaded as started stays started")
}

fn outcome_of(transfer: &StartedTransfer) -> StepOutcome {
    let accepted = match transfer.stage {
        TransferStage::SourceDebited | TransferStage::Completed => true,
        TransferStage::Initiated | TransferStage::CreditRejected | TransferStage::Failed => false,
    };
    StepOutcome { accepted, status: transfer.stage.status().into(), reason: transfer.failure_reason.clone() }
}

/// Invokes the steps in process, for the local ASL runner.
pub struct LocalSteps(pub Arc<TransferSteps>);

#[async_trait]
impl TaskInvoker for LocalSteps {
    async fn invoke(&self, resource: &str, input: serde_json::Value) -> Result<serde_json::Value, TaskFailure> {
        let input: StepInput = serde_json::from_value(input).map_err(|e| TaskFailure { error: "InvalidInput".into(), cause: e.to_string() })?;
        let outcome = self.0.run_step(resource, &input).await.map_err(|e| TaskFailure { error: e.error_name.into(), cause: e.message })?;
        Ok(serde_json::to_value(outcome).expect("outcomes serialise"))
    }
}

/// Parses the transfer state machine with the local function names substituted.
pub fn local_state_machine() -> Result<asl::StateMachine, asl::AslError> {
    let substitutions: HashMap<String, String> = STEPS.iter().map(|(key, function)| (key.to_string(), function.to_string())).collect();
    asl::StateMachine::parse(STATE_MACHINE, DEFINITION, &substitutions)
}

/// Starts the transfer saga for every `TransferInitiated` on the feed (the local
/// counterpart of the stream-triggered starter on AWS). Starting is idempotent:
/// the execution is named after the transfer.
pub struct SagaStarter {
    pub runner: Arc<asl::Runner>,
}

#[async_trait]
impl FeedConsumer for SagaStarter {
    fn name(&self) -> &'static str {
        "transfer-saga-starter"
    }
    async fn handle(&self, envelope: &EventEnvelope) -> Result<(), String> {
        if !starts_saga(envelope) {
            return Ok(());
        }
        let input = start_input(envelope);
        let name = envelope.aggregate_id.to_string();
        self.runner.start(&name, serde_json::to_value(input).expect("inputs serialise")).await.map_err(|e| e.to_string())?;
        let runner = self.runner.clone();
        tokio::spawn(async move {
            if let Err(e) = runner.run(&name).await {
                tracing::warn!(execution = %name, error = %e, "transfer saga stopped; it resumes on restart");
            }
        });
        Ok(())
    }
}

/// The execution input for a transfer: its id and the correlation id of the request.
pub fn start_input(initiated: &EventEnvelope) -> StepInput {
    StepInput { transfer_id: initiated.aggregate_id, correlation_id: Some(initiated.metadata.correlation_id.clone()) }
}

/// Whether the event starts a transfer saga.
pub fn starts_saga(envelope: &EventEnvelope) -> bool {
    envelope.aggregate_type == Transfer::TYPE && matches!(envelope.decode::<TransferEvent>(), Ok(TransferEvent::TransferInitiated(_)))
}
