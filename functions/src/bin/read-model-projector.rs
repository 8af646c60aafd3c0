//! The Kinesis event bus → read models (wallet views, history, transfers, payments,
//! cards, claims), working against the invocation's deadline.

use functions::aws::Error;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    functions::init_tracing();
    let backend = Arc::new(functions::aws::backend().await?);
    let dead_letters = Arc::new(functions::aws::SqsDeadLetters::from_env().await?);
    let emf = functions::metrics::Emf::get();
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<aws_lambda_events::kinesis::KinesisEvent>| {
        let (backend, dead_letters, emf) = (backend.clone(), dead_letters.clone(), emf.clone());
        async move {
            let stop = functions::projector::stop_by(event.context.deadline);
            let response =
                functions::projector::project_batch(backend.read.as_ref(), backend.events.as_ref(), dead_letters.as_ref(), event.payload, stop).await;
            emf.flush();
            Ok::<_, Error>(response)
        }
    }))
    .await
}
