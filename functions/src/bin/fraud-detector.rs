//! The Kinesis event bus → the fraud rules, per wallet: alerts on their own streams,
//! high-severity ones suspending the wallet in the same commit.

use functions::aws::Error;
use shared::app::Ledger;
use shared::fraud::detector::FraudDetector;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    functions::init_tracing();
    let rules = functions::fraud::rules_from_env()?;
    let backend = functions::aws::backend().await?;
    let ledger = Arc::new(Ledger::new(functions::aws::commands(&backend), functions::payment_expiry::period_from_env()?));
    let detector = Arc::new(FraudDetector::new(ledger, backend.read.clone(), rules));
    let dead_letters = Arc::new(functions::aws::SqsDeadLetters::from_env().await?);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<aws_lambda_events::kinesis::KinesisEvent>| {
        let (detector, dead_letters) = (detector.clone(), dead_letters.clone());
        async move {
            let stop = functions::projector::stop_by(event.context.deadline);
            Ok::<_, Error>(functions::fraud::detect_batch(detector.as_ref(), dead_letters.as_ref(), event.payload, stop).await)
        }
    }))
    .await
}
