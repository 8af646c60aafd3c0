//! The saga Task functions (transfer and prescription claim): Step Functions passes
//! the execution state, the step reads its saga's id from it and does only what is
//! left to do.

use lambda_runtime::{Diagnostic, LambdaEvent};
use shared::saga::steps::{SagaSteps, StepError, StepOutcome};

/// A step failure as Lambda reports it: `errorType` is what the state machine's
/// `Retry`/`Catch` `ErrorEquals` match.
#[derive(Debug)]
pub struct StepFailure(pub StepError);

impl From<StepFailure> for Diagnostic {
    fn from(failure: StepFailure) -> Diagnostic {
        Diagnostic { error_type: failure.0.error_name.to_string(), error_message: failure.0.message }
    }
}

pub async fn run_step<S: SagaSteps>(steps: &S, function: &str, event: LambdaEvent<serde_json::Value>) -> Result<StepOutcome, StepFailure> {
    let input = S::input(event.payload).map_err(StepFailure)?;
    steps.run_step(function, &input).await.map_err(StepFailure)
}
