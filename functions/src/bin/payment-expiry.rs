//! Every few minutes (an EventBridge schedule): expires the payment authorisations
//! nobody captured in time and releases their holds.

use functions::aws::{backend, commands, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    functions::init_tracing();
    let backend = backend().await?;
    let (commands, read) = (commands(&backend), backend.read.clone());
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
        let (commands, read) = (commands.clone(), read.clone());
        async move { functions::payment_expiry::sweep(&commands, read.as_ref(), event.payload).await }
    }))
    .await
}
