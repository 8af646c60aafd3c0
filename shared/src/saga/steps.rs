//! What every saga shares: the outcome a step reports to its state machine, the
//! error that makes the state machine retry, the in-process invoker the local
//! runner calls the steps through, and how an event starts an execution (on the
//! local feed here, from the Kinesis bus on AWS).

use super::asl::{self, TaskFailure, TaskInvoker};
use crate::command::CommandError;
use crate::envelope::EventEnvelope;
use crate::error::DomainError;
use crate::projection::feed::FeedConsumer;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepOutcome {
    /// The step's move happened (now or on an earlier run) and the saga goes on.
    pub accepted: bool,
    /// The contract's status of the saga's aggregate after the step.
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
            CommandError::Refused(DomainError::NotFound { kind: "transfer", .. }) => "TransferNotFound",
            CommandError::Refused(DomainError::NotFound { kind: "claim", .. }) => "ClaimNotFound",
            CommandError::Refused(DomainError::NotFound { .. } | DomainError::Unknown { .. }) => "NotFound",
            CommandError::Refused(_) => "StepRefused",
            CommandError::IdempotencyKeyReused => "IdempotencyKeyReused",
        };
        StepError { error_name, message: e.to_string() }
    }
}

/// One saga's steps, each run by the name of its function (its Lambda on AWS).
#[async_trait]
pub trait SagaSteps: Send + Sync + 'static {
    /// What every step reads from the execution state (the rest is ignored).
    type Input: DeserializeOwned + Send + Sync;
    /// What an input looks like, for the error a malformed one gets.
    const INPUT_SHAPE: &'static str;

    async fn run_step(&self, function: &str, input: &Self::Input) -> Result<StepOutcome, StepError>;

    /// Reads a step's input out of the execution state.
    fn input(state: serde_json::Value) -> Result<Self::Input, StepError> {
        serde_json::from_value(state).map_err(|e| StepError { error_name: "InvalidInput", message: format!("the step needs {}: {e}", Self::INPUT_SHAPE) })
    }
}

/// Invokes a saga's steps in process, for the local ASL runner.
pub struct LocalSteps<S>(pub Arc<S>);

#[async_trait]
impl<S: SagaSteps> TaskInvoker for LocalSteps<S> {
    async fn invoke(&self, resource: &str, input: serde_json::Value) -> Result<serde_json::Value, TaskFailure> {
        let failure = |e: StepError| TaskFailure { error: e.error_name.into(), cause: e.message };
        let input = S::input(input).map_err(failure)?;
        let outcome = self.0.run_step(resource, &input).await.map_err(failure)?;
        Ok(serde_json::to_value(outcome).expect("outcomes serialise"))
    }
}

/// Parses a state machine with each Task's substitution key replaced by the local
/// function name of its step.
pub fn local_state_machine(name: &str, definition: &str, steps: &[(&str, &str)]) -> Result<asl::StateMachine, asl::AslError> {
    let substitutions: HashMap<String, String> = steps.iter().map(|(key, function)| (key.to_string(), function.to_string())).collect();
    asl::StateMachine::parse(name, definition, &substitutions)
}

/// How an event starts a saga. The execution is named after the event's aggregate,
/// so starting is idempotent: a redelivered event cannot start a second execution.
pub struct Trigger {
    /// The state machine it starts (the local runner's name; on AWS, see the starter).
    pub state_machine: &'static str,
    /// The local starter's name: the key of its position in the feed.
    pub consumer: &'static str,
    /// The execution's input, if the event starts this saga.
    pub input: fn(&EventEnvelope) -> Option<serde_json::Value>,
}

impl Trigger {
    /// The execution the event starts, if any: its name and input.
    pub fn start(&self, envelope: &EventEnvelope) -> Option<(String, serde_json::Value)> {
        (self.input)(envelope).map(|input| (envelope.aggregate_id.to_string(), input))
    }
}

/// Starts a saga for every event of the feed that triggers it (the local
/// counterpart of the stream-triggered starter on AWS), and runs it in the background.
pub struct SagaStarter {
    pub trigger: &'static Trigger,
    pub runner: Arc<asl::Runner>,
}

#[async_trait]
impl FeedConsumer for SagaStarter {
    fn name(&self) -> &'static str {
        self.trigger.consumer
    }
    async fn handle(&self, envelope: &EventEnvelope) -> Result<(), String> {
        let Some((name, input)) = self.trigger.start(envelope) else { return Ok(()) };
        self.runner.start(&name, input).await.map_err(|e| e.to_string())?;
        let runner = self.runner.clone();
        let saga = self.trigger.state_machine;
        tokio::spawn(async move {
            if let Err(e) = runner.run(&name).await {
                tracing::warn!(saga, execution = %name, error = %e, "saga stopped; it resumes on restart");
            }
        });
        Ok(())
    }
}
