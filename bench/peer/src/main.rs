//! `healthpay-bench-peer`: the same wallet append workload as `healthpay bench
//! dynamodb`, through [cqrs-es] and [dynamo-es] — a minimal wallet aggregate
//! (open, credit, debit with a balance check), one event per command, optimistic
//! concurrency by dynamo-es's conditional `TransactWriteItems` — against the same
//! DynamoDB endpoint, with the same clients, wallets, mix, amounts and seed.
//!
//! Prints the phase report on stderr and one JSON line on stdout (read by
//! `healthpay bench dynamodb`, which prints the ratio). Every DynamoDB request is
//! counted by the same SDK interceptor as ours (`store_dynamodb::RequestCounter`).
//!
//! [cqrs-es]: https://crates.io/crates/cqrs-es
//! [dynamo-es]: https://crates.io/crates/dynamo-es

mod wallet;

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use bench_kit::driver::{drive, Client, Outcome, Phase};
use bench_kit::mix::{Mix, Op, Rng};
use bench_kit::report::{phase_report, rate, thousands};
use clap::{Parser, ValueEnum};
use cqrs_es::AggregateError;
use dynamo_es::{DynamoCqrs, DynamoEventRepository};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wallet::{Wallet, WalletCommand};

#[derive(Parser, Debug)]
#[command(name = "healthpay-bench-peer", about = "The cqrs-es + dynamo-es peer of `healthpay bench dynamodb`")]
struct Args {
    /// The DynamoDB endpoint (loopback only), e.g. http://127.0.0.1:4566.
    #[arg(long, env = "HEALTHPAY_DYNAMODB_ENDPOINT")]
    endpoint_url: String,
    /// Concurrent clients (each sends its next command when the previous one is answered).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Wallets; each command goes to one drawn uniformly at random.
    #[arg(long, default_value_t = 256)]
    wallets: usize,
    /// Command weights (transfers are not part of the peer's workload).
    #[arg(long, default_value = "credit=50,debit=50")]
    mix: Mix,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seed of the workload (the same seed as ours gives the same commands).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How dynamo-es keeps aggregates: `event` (the default `dynamodb_cqrs`: every
    /// command reads the aggregate's events) or `aggregate` (the serialised
    /// aggregate is the source of truth, written with the events).
    #[arg(long, value_enum, default_value_t = Store::Event)]
    store: Store,
    /// Tables <prefix>-events and <prefix>-snapshots (created, and deleted at the end).
    #[arg(long, default_value = "healthpay-bench-peer")]
    table_prefix: String,
    /// Leave the tables in place.
    #[arg(long)]
    keep_tables: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Event,
    Aggregate,
}

/// Every wallet starts with this much (minor units), so debits never run dry.
const OPENING_BALANCE: i64 = 100_000_000_000;
/// Attempts per command on an optimistic-concurrency conflict (ours makes 12 too).
const MAX_ATTEMPTS: u32 = 12;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("healthpay-bench-peer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if !is_loopback(&args.endpoint_url) {
        return Err(format!("{} is not a loopback endpoint; the benchmark only talks to 127.0.0.1", args.endpoint_url));
    }
    if args.clients == 0 || args.wallets == 0 {
        return Err("--clients and --wallets must be at least 1".into());
    }
    if args.mix.transfer > 0 {
        return Err("the peer's workload has no transfers: use a mix of credit and debit".into());
    }
    let counter = store_dynamodb::RequestCounter::new();
    let client = store_dynamodb::client_from_env_counted(Some(&args.endpoint_url), &counter).await;
    let (events, snapshots) = (format!("{}-events", args.table_prefix), format!("{}-snapshots", args.table_prefix));
    create_tables(&client, &events, &snapshots).await?;
    let outcome = measure(&args, client.clone(), &counter, &events, &snapshots).await;
    if !args.keep_tables {
        for table in [&events, &snapshots] {
            let _ = client.delete_table().table_name(table).send().await;
        }
    }
    let report = outcome?;
    println!("{report}");
    Ok(())
}

async fn measure(
    args: &Args,
    client: aws_sdk_dynamodb::Client,
    counter: &store_dynamodb::RequestCounter,
    events: &str,
    snapshots: &str,
) -> Result<String, String> {
    let repo = DynamoEventRepository::new(client).with_tables(events, snapshots);
    let cqrs: Arc<DynamoCqrs<Wallet>> = Arc::new(match args.store {
        Store::Event => cqrs_es::CqrsFramework::new(cqrs_es::persist::PersistedEventStore::new_event_store(repo), vec![], ()),
        Store::Aggregate => cqrs_es::CqrsFramework::new(cqrs_es::persist::PersistedEventStore::new_aggregate_store(repo), vec![], ()),
    });
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let wallets: Arc<Vec<String>> = Arc::new((0..args.wallets).map(|i| format!("{}-{i}", &run_id[..12])).collect());

    eprintln!("peer: opening {} wallets (cqrs-es {} store) …", args.wallets, format!("{:?}", args.store).to_lowercase());
    let setup = Phase { progress: false, ..Phase::until_done("peer setup", Duration::from_secs(120)) };
    let openers = (0..args.clients.min(args.wallets))
        .map(|i| Opener { cqrs: cqrs.clone(), ids: wallets.iter().skip(i).step_by(args.clients.min(args.wallets)).cloned().collect() })
        .collect();
    let opened = drive(&setup, openers, None).await;
    if opened.ok != args.wallets as u64 {
        return Err(format!("opening the wallets failed: {} of {} opened; errors: {}", opened.ok, args.wallets, opened.errors));
    }

    let retries = Arc::new(AtomicU64::new(0));
    let clients = (0..args.clients)
        .map(|i| PeerClient { cqrs: cqrs.clone(), wallets: wallets.clone(), mix: args.mix, rng: Rng::for_client(args.seed, i), retries: retries.clone() })
        .collect();
    let before = counter.get();
    let phase = Phase::timed("peer (cqrs-es + dynamo-es)", Duration::from_secs(args.warmup), Duration::from_secs(args.duration));
    let result = drive(&phase, clients, None).await;
    let requests = counter.get() - before;
    let per_command = requests as f64 / result.answered_all.max(1) as f64;
    eprintln!(
        "{}",
        phase_report(
            &result,
            &[
                (
                    "DynamoDB requests",
                    format!(
                        "{:.3} per command ({} requests / {} commands, warm-up included)",
                        per_command,
                        thousands(requests),
                        thousands(result.answered_all)
                    )
                ),
                ("conflict retries", thousands(retries.load(Ordering::Relaxed))),
            ]
        )
    );
    eprintln!("peer: {} commands/s", rate(result.ok_per_second()));
    Ok(serde_json::json!({
        "peer": "cqrs-es 0.5 + dynamo-es 0.5",
        "store": format!("{:?}", args.store).to_lowercase(),
        "phase": result.to_json(),
        "dynamodbRequests": requests,
        "requestsPerCommand": per_command,
        "conflictRetries": retries.load(Ordering::Relaxed),
    })
    .to_string())
}

struct Opener {
    cqrs: Arc<DynamoCqrs<Wallet>>,
    ids: Vec<String>,
}

impl Client for Opener {
    async fn call(&mut self) -> Outcome {
        let Some(id) = self.ids.pop() else { return Outcome::Done };
        match self.cqrs.execute(&id, WalletCommand::Open { owner: "bench".into(), currency: "EGP".into(), opening_balance: OPENING_BALANCE }).await {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Failed(code(&e)),
        }
    }
}

struct PeerClient {
    cqrs: Arc<DynamoCqrs<Wallet>>,
    wallets: Arc<Vec<String>>,
    mix: Mix,
    rng: Rng,
    retries: Arc<AtomicU64>,
}

impl Client for PeerClient {
    async fn call(&mut self) -> Outcome {
        // The same draws as ours (`Mix::draw`): command, wallet, amount, tag.
        let draw = self.mix.draw(&mut self.rng, self.wallets.len());
        let wallet = &self.wallets[draw.wallet];
        let amount = draw.amount_minor as i64;
        let reference = format!("bench-{:016x}", draw.tag);
        let command = || match draw.op {
            Op::Credit => WalletCommand::Credit { amount, reference: reference.clone() },
            Op::Debit => WalletCommand::Debit { amount, reference: reference.clone() },
            Op::Transfer => unreachable!("refused at start"),
        };
        for attempt in 1..=MAX_ATTEMPTS {
            match self.cqrs.execute(wallet, command()).await {
                Ok(()) => return Outcome::Ok,
                Err(AggregateError::AggregateConflict) if attempt < MAX_ATTEMPTS => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Outcome::Failed(code(&e)),
            }
        }
        unreachable!("the last attempt returns")
    }
}

fn code(e: &AggregateError<wallet::WalletError>) -> String {
    match e {
        AggregateError::UserError(e) => format!("user {e}"),
        AggregateError::AggregateConflict => "conflict".into(),
        AggregateError::DatabaseConnectionError(e) => format!("database {}", first_line(&e.to_string())),
        other => format!("other {}", first_line(&other.to_string())),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(80).collect()
}

/// dynamo-es's table layout: events keyed by `AggregateTypeAndId` + `AggregateIdSequence`,
/// snapshots by `AggregateTypeAndId` (on-demand, like ours).
async fn create_tables(client: &aws_sdk_dynamodb::Client, events: &str, snapshots: &str) -> Result<(), String> {
    let attribute = |name: &str, kind| AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().expect("complete attribute");
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().expect("complete key");
    for (table, with_sort_key) in [(events, true), (snapshots, false)] {
        let _ = client.delete_table().table_name(table).send().await;
        let mut create = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("AggregateTypeAndId", ScalarAttributeType::S))
            .key_schema(key("AggregateTypeAndId", KeyType::Hash));
        if with_sort_key {
            create =
                create.attribute_definitions(attribute("AggregateIdSequence", ScalarAttributeType::N)).key_schema(key("AggregateIdSequence", KeyType::Range));
        }
        create.send().await.map_err(|e| format!("creating {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
    }
    Ok(())
}

fn is_loopback(url: &str) -> bool {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") || host.starts_with("127.")
}
