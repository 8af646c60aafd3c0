//! Every hour (an EventBridge schedule): checks the books — money conserved, no
//! negative balance, every read model equal to its events, every saga ended in
//! time — and publishes the findings as CloudWatch metrics, which an alarm watches.

use functions::aws::Error;
use std::sync::Arc;

fn env(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("{name} is not set (template.yaml sets it)").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    functions::init_tracing();
    let (events_table, read_table) = (env("EVENTS_TABLE")?, env("READ_TABLE")?);
    let namespace = std::env::var("METRIC_NAMESPACE").unwrap_or_else(|_| functions::verify::DEFAULT_NAMESPACE.into());
    let stack = std::env::var("STACK_NAME").unwrap_or_default();
    let client = store_dynamodb::client_from_env(None).await;
    let events: Arc<dyn shared::ports::EventStore> = Arc::new(store_dynamodb::DynamoEventStore::new(client.clone(), &events_table, env("IDEMPOTENCY_TABLE")?));
    let read: Arc<dyn shared::ports::ReadStore> = Arc::new(store_dynamodb::DynamoReadStore::new(client.clone(), &read_table));
    lambda_runtime::run(lambda_runtime::service_fn(move |_event: lambda_runtime::LambdaEvent<serde_json::Value>| {
        let (client, events, read, events_table, namespace, stack) =
            (client.clone(), events.clone(), read.clone(), events_table.clone(), namespace.clone(), stack.clone());
        async move {
            let streams = store_dynamodb::scan_streams(&client, &events_table, &|_| {}).await?;
            let (answer, metric) = functions::verify::check(events, read, streams, chrono::Utc::now(), &namespace, &stack).await?;
            // The embedded metric format: CloudWatch reads the metrics out of this log line.
            println!("{metric}");
            Ok::<_, Error>(answer)
        }
    }))
    .await
}
