//! The transfer saga's Task functions: Step Functions passes the execution state,
//! the step reads `transferId` from it and does only what is left to do.

use lambda_runtime::{Diagnostic, LambdaEvent};
use shared::saga::transfer::{StepError, StepInput, StepOutcome, TransferSteps};

/// A step failure as Lambda reports it: `errorType` is what the state machine's
/// `Retry`/`Catch` `ErrorEquals` match.
#[derive(Debug)]
pub struct StepFailure(pub StepError);

impl From<StepFailure> for Diagnostic {
    fn from(failure: StepFailure) -> Diagnostic {
        Diagnostic { error_type: failure.0.error_name.to_string(), error_message: failure.0.message }
    }
}

pub async fn run_step(steps: &TransferSteps, function: &str, event: LambdaEvent<serde_json::Value>) -> Result<StepOutcome, StepFailure> {
    let input: StepInput = serde_json::from_value(event.payload)
        .map_err(|e| StepFailure(StepError { error_name: "InvalidInput", message: format!("the step needs {{\"transferId\": …}}: {e}") }))?;
    steps.run_step(function, &input).await.map_err(StepFailure)
}
