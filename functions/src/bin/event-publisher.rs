//! The events table's DynamoDB Stream → the Kinesis event bus.

use functions::aws::{Error, KinesisBus};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    functions::init_tracing();
    let bus = Arc::new(KinesisBus::from_env().await?);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<aws_lambda_events::dynamodb::Event>| {
        let bus = bus.clone();
        async move { Ok::<_, Error>(functions::publisher::publish(bus.as_ref(), event.payload).await) }
    }))
    .await
}
