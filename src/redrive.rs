//! `healthpay redrive`: works through the deployment's dead-letter queue once the
//! cause of what is parked there is fixed (see `functions::redrive`), against the
//! tables, bus, state machines and queue the stack's outputs name.

use clap::Args;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct RedriveArgs {
    /// The dead-letter queue (stack output DeadLetterQueueUrl).
    #[arg(long, env = "DEAD_LETTER_QUEUE_URL")]
    pub queue_url: String,
    /// The events table (stack output EventsTableName).
    #[arg(long, env = "EVENTS_TABLE")]
    pub events_table: String,
    /// The read-model table (stack output ReadModelTableName).
    #[arg(long, env = "READ_TABLE")]
    pub read_table: String,
    /// The idempotency table (stack output IdempotencyTableName).
    #[arg(long, env = "IDEMPOTENCY_TABLE")]
    pub idempotency_table: String,
    /// The Kinesis event bus (stack output EventBusStreamName).
    #[arg(long, env = "EVENT_BUS_STREAM")]
    pub event_bus_stream: String,
    /// Stack output TransferStateMachineArn.
    #[arg(long, env = "TRANSFER_STATE_MACHINE_ARN")]
    pub transfer_state_machine_arn: String,
    /// Stack output ClaimStateMachineArn.
    #[arg(long, env = "CLAIM_STATE_MACHINE_ARN")]
    pub claim_state_machine_arn: String,
}

/// Prints what was done and what stays; fails when anything stays.
pub async fn run(args: RedriveArgs) -> Result<(), String> {
    // Endpoint, region and credentials as the AWS SDK finds them (AWS_ENDPOINT_URL for LocalStack).
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let tables = store_dynamodb::TableNames { events: args.events_table, idempotency: args.idempotency_table, read: args.read_table };
    let backend = store_dynamodb::DynamoBackend::new(store_dynamodb::client_from_env(None).await, &tables);
    let queue = functions::aws::SqsDeadLetters { client: aws_sdk_sqs::Client::new(&config), queue_url: args.queue_url };
    let bus = functions::aws::KinesisBus { client: aws_sdk_kinesis::Client::new(&config), stream: args.event_bus_stream };
    let sagas = functions::aws::StepFunctions {
        client: aws_sdk_sfn::Client::new(&config),
        state_machine_arns: vec![
            (shared::saga::transfer::STATE_MACHINE, args.transfer_state_machine_arn),
            (shared::saga::claim::STATE_MACHINE, args.claim_state_machine_arn),
        ],
    };
    let read: Arc<store_dynamodb::DynamoReadStore> = backend.read.clone();
    // A record the fraud detector parked is judged again under the rules the
    // deployment runs (the FRAUD_* variables, as on its function; defaults otherwise).
    let ledger = Arc::new(shared::app::Ledger::new(functions::aws::commands(&backend), shared::payment_expiry::DEFAULT_PAYMENT_EXPIRY));
    let detector = shared::fraud::detector::FraudDetector::new(ledger, read.clone(), functions::fraud::rules_from_env()?);
    let redrive =
        functions::redrive::Redrive { queue: &queue, read: read.as_ref(), events: backend.events.as_ref(), sagas: &sagas, bus: &bus, detector: &detector };
    let report = redrive.run().await?;
    println!("redrive: {} messages done ({} events projected again or sagas started), {} left in the queue", report.done, report.events, report.kept.len());
    for (id, why) in &report.kept {
        println!("  kept {id}: {why}");
    }
    if report.kept.is_empty() {
        Ok(())
    } else {
        Err(format!("{} messages could not be redriven (listed above); they stay in the queue", report.kept.len()))
    }
}
