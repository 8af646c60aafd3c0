//! The AWS adapters and per-container wiring: configuration comes from the
//! environment `template.yaml` sets, clients are built once per container.

use crate::dead_letters::{DeadLetter, DeadLetters};
use crate::metrics::Emf;
use crate::publisher::{BusRecord, EventBus};
use crate::saga_starter::WorkflowStarter;
use api::auth::TokenVerifier;
use api::{App, HealthCheck};
use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use shared::clock::SystemClock;
use shared::command::CommandService;
use shared::ports::{Checkpoints, EventStore};
use shared::ports::{Rate, RateLimits};
use shared::saga;
use shared::saga::claim::ClaimSteps;
use shared::saga::steps::SagaSteps;
use shared::saga::transfer::TransferSteps;
use std::sync::Arc;
use store_dynamodb::{DynamoBackend, DynamoRateLimiter, TableNames};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn env(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("{name} is not set (template.yaml sets it)").into())
}

fn tables() -> Result<TableNames, Error> {
    Ok(TableNames { events: env("EVENTS_TABLE")?, idempotency: env("IDEMPOTENCY_TABLE")?, read: env("READ_TABLE")? })
}

/// The DynamoDB tables of this deployment.
pub async fn backend() -> Result<DynamoBackend, Error> {
    Ok(DynamoBackend::new(store_dynamodb::client_from_env(None).await, &tables()?))
}

/// Each caller's limits (template parameters `CommandRateLimit`, `CommandBurst`,
/// `QueryRateLimit`, `QueryBurst`; the defaults of `shared::ports::DEFAULT_RATE_LIMITS`
/// where a variable is unset), counted in the idempotency table so that they hold
/// across this function's containers and every other route's.
pub async fn rate_limiter() -> Result<DynamoRateLimiter, Error> {
    let number = |name: &str, default: u32| -> Result<u32, Error> {
        std::env::var(name).map_or(Ok(default), |v| v.trim().parse().map_err(|_| format!("{name} must be a whole number, got {v:?}").into()))
    };
    let defaults = shared::ports::DEFAULT_RATE_LIMITS;
    let commands = Rate::new(number("COMMAND_RATE_LIMIT", defaults.commands.per_second)?, number("COMMAND_BURST", defaults.commands.burst)?)?;
    let queries = Rate::new(number("QUERY_RATE_LIMIT", defaults.queries.per_second)?, number("QUERY_BURST", defaults.queries.burst)?)?;
    let client = store_dynamodb::client_from_env(None).await;
    Ok(DynamoRateLimiter::new(client, &tables()?.idempotency, RateLimits { commands, queries }, Arc::new(SystemClock)))
}

/// The command service over DynamoDB. It lives as long as the container, so its
/// warm-aggregate cache saves the load of an aggregate this container already has.
pub fn commands(backend: &DynamoBackend) -> Arc<CommandService> {
    Arc::new(CommandService::new(backend.events.clone(), Arc::new(SystemClock)))
}

/// Serves one API route, as a `lambda_http` function.
///
/// On AWS the REST API's authorizer attaches the caller. Where no authorizer runs
/// (LocalStack's free edition ignores Lambda authorizers) the deployment gives the
/// function `JWT_SECRET`, and a request without an authorizer context has its bearer
/// token verified here, exactly as the authorizer would.
pub async fn serve_route(route: api::Route) -> Result<(), Error> {
    crate::init_tracing();
    let stand_in_authorizer = std::env::var("JWT_SECRET").is_ok().then(token_verifier).transpose()?.map(Arc::new);
    let backend = backend().await?;
    let emf = Emf::get();
    let app = Arc::new(App::new(
        commands(&backend),
        backend.read.clone(),
        emf.clone(),
        Arc::new(DynamoHealth { events: backend.events.clone(), read: backend.read.clone() }),
        Arc::new(rate_limiter().await?),
        crate::payment_expiry::period_from_env()?,
    ));
    lambda_http::run(lambda_http::service_fn(move |request: lambda_http::Request| {
        let (app, emf) = (app.clone(), emf.clone());
        let verifier = stand_in_authorizer.clone();
        async move {
            let response = match verifier {
                Some(verifier) if route.needs_caller() && !api::auth::has_caller(&request) => {
                    let header = request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                    match verifier.verify_header(header.as_deref()) {
                        Ok(caller) => api::handle(&app, route, api::auth::with_caller(request, &caller)).await,
                        Err(refusal) => api::reject(&app, route, request, refusal),
                    }
                }
                _ => api::handle(&app, route, request).await,
            };
            emf.flush();
            Ok::<_, std::convert::Infallible>(response)
        }
    }))
    .await
}

/// Serves one saga step (a transfer's or a prescription claim's, by its function
/// name), as a `lambda_runtime` function.
pub async fn serve_step(function: &'static str) -> Result<(), Error> {
    crate::init_tracing();
    let is = |steps: &[(&str, &str)]| steps.iter().any(|(_, name)| *name == function);
    if is(&saga::transfer::STEPS) {
        run_steps(TransferSteps::new(commands(&backend().await?)), function).await
    } else if is(&saga::claim::STEPS) {
        run_steps(ClaimSteps::new(commands(&backend().await?)), function).await
    } else {
        Err(format!("no saga step is called {function}").into())
    }
}

async fn run_steps<S: SagaSteps>(steps: S, function: &'static str) -> Result<(), Error> {
    let steps = Arc::new(steps);
    let emf = Emf::get();
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        let (steps, emf) = (steps.clone(), emf.clone());
        async move {
            let outcome = crate::steps::run_step(steps.as_ref(), function, event).await;
            emf.flush();
            outcome
        }
    }))
    .await
}

pub fn token_verifier() -> Result<TokenVerifier, Error> {
    let secret = env("JWT_SECRET")?;
    if secret.len() < 16 {
        return Err("JWT_SECRET must be at least 16 characters".into());
    }
    Ok(TokenVerifier::new(secret.as_bytes()))
}

/// The Kinesis event bus.
pub struct KinesisBus {
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
}

impl KinesisBus {
    pub async fn from_env() -> Result<Self, Error> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(KinesisBus { client: aws_sdk_kinesis::Client::new(&config), stream: env("EVENT_BUS_STREAM")? })
    }
}

#[async_trait]
impl EventBus for KinesisBus {
    async fn put(&self, records: Vec<BusRecord>) -> Result<Option<usize>, String> {
        if records.is_empty() {
            return Ok(None);
        }
        let entries = records
            .into_iter()
            .map(|r| PutRecordsRequestEntry::builder().partition_key(r.partition_key).data(Blob::new(r.data)).build().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        // PutRecords takes up to 500 records; a stream batch is at most 100.
        let output = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())?;
        Ok(output.records().iter().position(|r| r.error_code().is_some()))
    }
}

/// Step Functions, starting executions by name.
pub struct StepFunctions {
    pub client: aws_sdk_sfn::Client,
    /// Each saga's state machine ARN, by the state machine name its trigger gives.
    pub state_machine_arns: Vec<(&'static str, String)>,
}

impl StepFunctions {
    pub async fn from_env() -> Result<Self, Error> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let state_machine_arns =
            vec![(saga::transfer::STATE_MACHINE, env("TRANSFER_STATE_MACHINE_ARN")?), (saga::claim::STATE_MACHINE, env("CLAIM_STATE_MACHINE_ARN")?)];
        Ok(StepFunctions { client: aws_sdk_sfn::Client::new(&config), state_machine_arns })
    }
}

#[async_trait]
impl WorkflowStarter for StepFunctions {
    async fn start(&self, state_machine: &str, name: &str, input: &serde_json::Value) -> Result<(), String> {
        let arn = self.state_machine_arns.iter().find(|(machine, _)| *machine == state_machine).map(|(_, arn)| arn);
        let arn = arn.ok_or_else(|| format!("no ARN is configured for the {state_machine} state machine"))?;
        let result = self.client.start_execution().state_machine_arn(arn).name(name).input(input.to_string()).send().await;
        match result {
            Ok(_) => Ok(()),
            // Same name, same input: this saga runs already (a redelivery).
            Err(e) if e.as_service_error().is_some_and(|s| s.is_execution_already_exists()) => Ok(()),
            Err(e) => Err(aws_sdk_sfn::error::DisplayErrorContext(e).to_string()),
        }
    }
}

/// The dead-letter queue (SQS).
pub struct SqsDeadLetters {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl SqsDeadLetters {
    pub async fn from_env() -> Result<Self, Error> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(SqsDeadLetters { client: aws_sdk_sqs::Client::new(&config), queue_url: env("DEAD_LETTER_QUEUE_URL")? })
    }
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    async fn park(&self, letter: &DeadLetter) -> Result<(), String> {
        let body = serde_json::to_string(letter).expect("dead letters serialise");
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(())
    }
}

#[async_trait]
impl crate::redrive::DeadLetterQueue for SqsDeadLetters {
    async fn receive(&self) -> Result<Vec<crate::redrive::QueuedMessage>, String> {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            // Long enough to redrive a message and delete it before anyone sees it again.
            .visibility_timeout(120)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(received
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| Some(crate::redrive::QueuedMessage { id: m.message_id?, receipt: m.receipt_handle?, body: m.body.unwrap_or_default() }))
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), String> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(())
    }
}

/// Kinesis sequence numbers are decimal strings of up to 128 bits and more: compare
/// them as numbers.
fn sequence_after(sequence: &str, last: &str) -> bool {
    (sequence.len(), sequence) > (last.len(), last)
}

#[async_trait]
impl crate::redrive::BusReader for KinesisBus {
    async fn records(&self, shard: &str, first: &str, last: &str) -> Result<Vec<Vec<u8>>, String> {
        use aws_sdk_kinesis::types::ShardIteratorType;
        let describe = |e: aws_sdk_kinesis::Error| aws_sdk_kinesis::error::DisplayErrorContext(e).to_string();
        let iterator = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(first)
            .send()
            .await
            .map_err(|e| describe(e.into()))?;
        let mut next = iterator.shard_iterator;
        let mut data = Vec::new();
        while let Some(iterator) = next.take() {
            let page = self.client.get_records().shard_iterator(iterator).limit(1_000).send().await.map_err(|e| describe(e.into()))?;
            for record in page.records {
                if sequence_after(&record.sequence_number, last) {
                    return Ok(data);
                }
                data.push(record.data.into_inner());
            }
            // An empty page at the tip of the shard: nothing more to read.
            if page.millis_behind_latest == Some(0) {
                break;
            }
            next = page.next_shard_iterator;
        }
        Ok(data)
    }
}

struct DynamoHealth {
    events: Arc<store_dynamodb::DynamoEventStore>,
    read: Arc<store_dynamodb::DynamoReadStore>,
}

#[async_trait]
impl HealthCheck for DynamoHealth {
    async fn components(&self) -> Vec<(String, bool, serde_json::Value)> {
        let events = self.events.load("health#probe", 0).await;
        let read = self.read.checkpoint("health-probe").await;
        vec![
            ("eventStore".into(), events.is_ok(), serde_json::json!({"backend": "dynamodb", "error": events.err().map(|e| e.to_string())})),
            ("readStore".into(), read.is_ok(), serde_json::json!({"backend": "dynamodb", "error": read.err().map(|e| e.to_string())})),
        ]
    }
}
