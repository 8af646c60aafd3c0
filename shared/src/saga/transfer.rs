//! The transfer saga's steps. Each one is idempotent: it reads how far the transfer
//! got from the Transfer aggregate and does only what is left, and every money move
//! commits atomically together with the transfer event that records it. Retries,
//! redeliveries and a resumed execution therefore never move money twice.

use super::asl;
pub use super::steps::{LocalSteps, SagaStarter, StepError, StepOutcome};
use super::steps::{SagaSteps, Trigger};
use crate::aggregate::Aggregate;
use crate::command::{CommandContext, CommandService, Failure, UnitOfWork};
use crate::envelope::EventEnvelope;
use crate::error::DomainError;
use crate::transfer::{StartedTransfer, Transfer, TransferCommand, TransferEvent, TransferStage};
use crate::wallet::{CreditType, DebitType, Movement, Wallet, WalletCommand};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
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
                    // A missing destination is "not found".
                    Err(DomainError::NotFound { .. } | DomainError::Unknown { .. }) => TransferCommand::RecordCreditRejected { reason: "NOT_FOUND".into() },
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
    ///
    /// If the source refuses the refund (it was closed meanwhile), trying again
    /// could never succeed: the amount goes to suspense on the transfer
    /// (`TransferRefundSuspended`) and the transfer ends `FAILED` all the same, so
    /// the saga always ends and the money is accounted for.
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
                // Loaded, so the commit checks the source's version: a refusal recorded
                // as suspense never rests on a stale copy of the wallet.
                let source: Wallet = uow.load(terms.source_wallet_id).await?;
                let next = match source.decide(&refund) {
                    Ok(events) => {
                        uow.record::<Wallet>(terms.source_wallet_id, events);
                        TransferCommand::RecordSourceRefunded
                    }
                    Err(refusal) => {
                        tracing::warn!(transfer = %id, wallet = %terms.source_wallet_id, amount = %terms.amount, %refusal, "the source refused a transfer's refund: the amount is held in suspense");
                        TransferCommand::RecordRefundSuspended { reason: refusal.code().into() }
                    }
                };
                Ok(outcome_of(&started(uow.handle::<Transfer>(id, &next).await?)))
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

#[async_trait]
impl SagaSteps for TransferSteps {
    type Input = StepInput;
    const INPUT_SHAPE: &'static str = "{\"transferId\": …}";

    async fn run_step(&self, function: &str, input: &StepInput) -> Result<StepOutcome, StepError> {
        TransferSteps::run_step(self, function, input).await
    }
}

/// Parses the transfer state machine with the local function names substituted.
pub fn local_state_machine() -> Result<asl::StateMachine, asl::AslError> {
    super::steps::local_state_machine(STATE_MACHINE, DEFINITION, &STEPS)
}

/// Every `TransferInitiated` starts a transfer saga, named after the transfer.
pub const TRIGGER: Trigger = Trigger { state_machine: STATE_MACHINE, consumer: "transfer-saga-starter", input: trigger_input };

fn trigger_input(envelope: &EventEnvelope) -> Option<serde_json::Value> {
    starts_saga(envelope).then(|| serde_json::to_value(start_input(envelope)).expect("inputs serialise"))
}

/// Starts the transfer saga for every `TransferInitiated` on the local feed.
pub fn starter(runner: Arc<asl::Runner>) -> SagaStarter {
    SagaStarter { trigger: &TRIGGER, runner }
}

/// The execution input for a transfer: its id and the correlation id of the request.
pub fn start_input(initiated: &EventEnvelope) -> StepInput {
    StepInput { transfer_id: initiated.aggregate_id, correlation_id: Some(initiated.metadata.correlation_id.clone()) }
}

/// Whether the event starts a transfer saga.
pub fn starts_saga(envelope: &EventEnvelope) -> bool {
    envelope.aggregate_type == Transfer::TYPE && matches!(envelope.decode::<TransferEvent>(), Ok(TransferEvent::TransferInitiated(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::memory::{MemoryEventStore, MemoryExecutionStore};
    use crate::money::{Currency, Money};
    use crate::ports::ExecutionStatus;
    use crate::transfer::TransferTerms;

    struct Fixture {
        commands: Arc<CommandService>,
        steps: Arc<TransferSteps>,
    }

    impl Fixture {
        fn new() -> Self {
            let commands = Arc::new(CommandService::new(Arc::new(MemoryEventStore::default()), Arc::new(SystemClock)));
            Fixture { steps: Arc::new(TransferSteps::new(commands.clone())), commands }
        }

        async fn run(&self, command: WalletCommand, id: Uuid) {
            let ctx = CommandContext::new("alice", "c");
            self.commands.execute(&ctx, async move |uow| uow.handle::<Wallet>(id, &command).await).await.unwrap();
        }

        async fn wallet(&self, minor: i64, active: bool) -> Uuid {
            let id = Uuid::now_v7();
            let create = WalletCommand::open_personal(id, "alice", Money::from_minor(minor));
            self.run(create, id).await;
            if active {
                self.run(WalletCommand::Activate, id).await;
            }
            id
        }

        async fn balance(&self, id: Uuid) -> i64 {
            let events = self.commands.store().load(&crate::envelope::stream_id("wallet", id), 0).await.unwrap();
            let wallet = events.iter().fold(Wallet::default(), |w, e| w.apply(&e.decode().unwrap()));
            wallet.open().unwrap().balance.minor()
        }

        async fn transfer(&self, source: Uuid, destination: Uuid, minor: i64) -> StepInput {
            let id = Uuid::now_v7();
            let terms = TransferTerms {
                transfer_id: id,
                source_wallet_id: source,
                destination_wallet_id: destination,
                amount: Money::from_minor(minor),
                currency: Currency::egp(),
                reference: "T".into(),
                description: None,
                initiated_by: "alice".into(),
            };
            let ctx = CommandContext::new("alice", "c");
            self.commands.execute(&ctx, async move |uow| uow.handle::<Transfer>(id, &TransferCommand::Initiate(terms.clone())).await).await.unwrap();
            StepInput { transfer_id: id, correlation_id: None }
        }

        /// Runs the real ASL definition through the local runner.
        async fn saga(&self, input: &StepInput) -> serde_json::Value {
            let machine = Arc::new(local_state_machine().unwrap());
            let runner = asl::Runner::new(machine, Arc::new(LocalSteps(self.steps.clone())), Arc::new(MemoryExecutionStore::default()), Arc::new(SystemClock));
            let name = input.transfer_id.to_string();
            assert!(runner.start(&name, serde_json::to_value(input).unwrap()).await.unwrap());
            let done = runner.run(&name).await.unwrap();
            assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
            done.input
        }

        async fn transfer_state(&self, input: &StepInput) -> StartedTransfer {
            let events = self.commands.store().load(&crate::envelope::stream_id("transfer", input.transfer_id), 0).await.unwrap();
            events.iter().fold(Transfer::default(), |t, e| t.apply(&e.decode().unwrap())).started().unwrap().clone()
        }

        async fn transfer_events(&self, input: &StepInput) -> Vec<String> {
            let events = self.commands.store().load(&crate::envelope::stream_id("transfer", input.transfer_id), 0).await.unwrap();
            events.into_iter().map(|e| e.event_type).collect()
        }

        /// The transfer's read model, projected from its events.
        async fn transfer_view(&self, input: &StepInput) -> crate::ports::TransferView {
            let events = self.commands.store().load(&crate::envelope::stream_id("transfer", input.transfer_id), 0).await.unwrap();
            let mut view = None;
            for envelope in &events {
                view = crate::projection::transfer::next_view(view, envelope, &envelope.decode().unwrap());
            }
            view.unwrap()
        }
    }

    #[tokio::test]
    async fn the_saga_moves_the_money_and_completes() {
        let f = Fixture::new();
        let (a, b) = (f.wallet(10_000, true).await, f.wallet(0, true).await);
        let input = f.transfer(a, b, 2_550).await;
        let output = f.saga(&input).await;
        assert_eq!(output["credit"]["status"], "COMPLETED");
        assert_eq!((f.balance(a).await, f.balance(b).await), (7_450, 2_550));
    }

    #[tokio::test]
    async fn a_refused_credit_is_refunded_and_the_transfer_fails_with_its_reason() {
        let f = Fixture::new();
        let (a, pending) = (f.wallet(10_000, true).await, f.wallet(0, false).await);
        let output = f.saga(&f.transfer(a, pending, 2_550).await).await;
        assert_eq!(output["compensation"], serde_json::json!({"accepted": false, "status": "FAILED", "reason": "WALLET_NOT_ACTIVE"}));
        assert_eq!((f.balance(a).await, f.balance(pending).await), (10_000, 0));
    }

    #[tokio::test]
    async fn a_refused_debit_fails_the_transfer_and_moves_nothing() {
        let f = Fixture::new();
        let (a, b) = (f.wallet(100, true).await, f.wallet(0, true).await);
        let output = f.saga(&f.transfer(a, b, 101).await).await;
        assert_eq!(output["debit"]["reason"], "INSUFFICIENT_FUNDS");
        assert!(output.get("credit").is_none() && output.get("compensation").is_none());
        assert_eq!((f.balance(a).await, f.balance(b).await), (100, 0));
    }

    #[tokio::test]
    async fn every_step_can_run_again_without_moving_money_twice() {
        let f = Fixture::new();
        let (a, b) = (f.wallet(10_000, true).await, f.wallet(0, true).await);
        let input = f.transfer(a, b, 1_000).await;
        for _ in 0..3 {
            assert!(f.steps.debit_source(&input).await.unwrap().accepted);
        }
        assert_eq!(f.balance(a).await, 9_000);
        for _ in 0..3 {
            assert_eq!(f.steps.credit_destination(&input).await.unwrap().status, "COMPLETED");
        }
        // A late compensation (e.g. a Catch after an ambiguous timeout) leaves a completed transfer alone.
        assert_eq!(f.steps.compensate(&input).await.unwrap().status, "COMPLETED");
        assert_eq!((f.balance(a).await, f.balance(b).await), (9_000, 1_000));
    }

    #[tokio::test]
    async fn compensation_refunds_even_a_source_suspended_meanwhile() {
        let f = Fixture::new();
        let (a, b) = (f.wallet(10_000, true).await, f.wallet(0, true).await);
        let input = f.transfer(a, b, 1_000).await;
        f.steps.debit_source(&input).await.unwrap();
        f.run(WalletCommand::Suspend { reason: "review".into() }, a).await;
        // The credit step never got through (it kept failing): compensate from SourceDebited.
        let outcome = f.steps.compensate(&input).await.unwrap();
        assert_eq!((outcome.status.as_str(), outcome.reason.as_deref()), ("FAILED", Some("INTERNAL")));
        assert_eq!(f.balance(a).await, 10_000);
        assert_eq!(f.steps.compensate(&input).await.unwrap().status, "FAILED", "and only once");
        assert_eq!(f.balance(a).await, 10_000);
    }

    #[tokio::test]
    async fn a_source_closed_between_debit_and_compensation_leaves_the_refund_in_suspense_and_the_transfer_failed() {
        let f = Fixture::new();
        // The destination is pending, so the credit will be refused.
        let (a, pending) = (f.wallet(2_550, true).await, f.wallet(0, false).await);
        let input = f.transfer(a, pending, 2_550).await;
        assert!(f.steps.debit_source(&input).await.unwrap().accepted);
        // Debited to zero, the source may close while the transfer is in flight.
        f.run(WalletCommand::Close { reason: Some("moving banks".into()) }, a).await;
        // The whole saga (the real ASL) runs to its end instead of retrying a refund that can never land.
        let output = f.saga(&input).await;
        assert_eq!(output["credit"], serde_json::json!({"accepted": false, "status": "PENDING", "reason": "WALLET_NOT_ACTIVE"}));
        assert_eq!(output["compensation"], serde_json::json!({"accepted": false, "status": "FAILED", "reason": "WALLET_NOT_ACTIVE"}));
        assert_eq!((f.balance(a).await, f.balance(pending).await), (0, 0), "the money is on neither wallet…");
        let t = f.transfer_state(&input).await;
        assert_eq!(
            t.refund_in_suspense,
            Some(crate::transfer::RefundInSuspense { amount: Money::from_minor(2_550), reason: "WALLET_NOT_ACTIVE".into() }),
            "…but held in suspense on the transfer"
        );
        let view = f.transfer_view(&input).await;
        assert_eq!(
            (view.status.as_str(), view.failure_reason.as_deref(), view.refund_in_suspense),
            ("FAILED", Some("WALLET_NOT_ACTIVE"), Some(Money::from_minor(2_550)))
        );
        // Running the compensation again changes nothing.
        let events = f.transfer_events(&input).await;
        assert_eq!(events[events.len() - 2..], ["TransferRefundSuspended", "TransferFailed"]);
        for _ in 0..2 {
            let again = f.steps.compensate(&input).await.unwrap();
            assert_eq!((again.status.as_str(), again.reason.as_deref()), ("FAILED", Some("WALLET_NOT_ACTIVE")));
        }
        assert_eq!(f.transfer_events(&input).await, events);
        assert_eq!(f.balance(a).await, 0);
    }

    #[tokio::test]
    async fn a_compensation_after_a_step_that_kept_failing_also_suspends_a_refund_the_closed_source_refuses() {
        let f = Fixture::new();
        let (a, b) = (f.wallet(1_000, true).await, f.wallet(0, true).await);
        let input = f.transfer(a, b, 1_000).await;
        f.steps.debit_source(&input).await.unwrap();
        f.run(WalletCommand::Close { reason: None }, a).await;
        // The credit step never got through: compensate from SourceDebited.
        let outcome = f.steps.compensate(&input).await.unwrap();
        assert_eq!((outcome.status.as_str(), outcome.reason.as_deref()), ("FAILED", Some("INTERNAL")));
        let t = f.transfer_state(&input).await;
        assert_eq!(t.refund_in_suspense.map(|r| (r.amount.minor(), r.reason)), Some((1_000, "WALLET_NOT_ACTIVE".to_string())));
        assert_eq!(f.steps.compensate(&input).await.unwrap(), outcome, "and only once");
        assert_eq!((f.balance(a).await, f.balance(b).await), (0, 0));
    }

    #[tokio::test]
    async fn a_step_for_an_unknown_transfer_is_an_error_for_the_state_machine() {
        let f = Fixture::new();
        let err = f.steps.debit_source(&StepInput { transfer_id: Uuid::now_v7(), correlation_id: None }).await.unwrap_err();
        assert_eq!(err.error_name, "TransferNotFound");
    }
}
