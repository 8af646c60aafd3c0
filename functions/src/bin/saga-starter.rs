//! The Kinesis event bus → one transfer-saga execution per `TransferInitiated` and one
//! claim-saga execution per `ClaimSubmitted`, each named after its transfer or claim.

use functions::aws::{Error, StepFunctions};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    functions::init_tracing();
    let starter = Arc::new(StepFunctions::from_env().await?);
    let dead_letters = Arc::new(functions::aws::SqsDeadLetters::from_env().await?);
    let emf = functions::metrics::Emf::get();
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<aws_lambda_events::kinesis::KinesisEvent>| {
        let (starter, dead_letters, emf) = (starter.clone(), dead_letters.clone(), emf.clone());
        async move {
            let response = functions::saga_starter::start_sagas(starter.as_ref(), dead_letters.as_ref(), event.payload).await;
            emf.flush();
            Ok::<_, Error>(response)
        }
    }))
    .await
}
