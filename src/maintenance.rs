//! `healthpay verify` and `healthpay rebuild`: `shared::verify` wired to a
//! backend's tables or files, with a progress bar and a report. The checking and
//! the rebuilding themselves live in `shared::verify` (and are tested there on the
//! memory store); this module only opens the stores, lists the streams and prints.
//!
//! - **SQLite** (`--data-dir`): `events.db` and `read.db`, opened next to a running
//!   server if there is one (WAL: readers never block it; the rebuild's writes are
//!   short guarded statements, like the projector's). The streams are listed from
//!   the global feed.
//! - **DynamoDB** (`--endpoint-url`, `--table-prefix`, or the tables' names as
//!   deployed: `--events-table`, `--read-table`): the events table is scanned once for
//!   its streams (only keys are read back), then each stream is queried whole,
//!   several at once (`--concurrency`). On AWS, run it with credentials that may
//!   read both tables and write the read-model table (see README).

use crate::progress::Progress;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use clap::Args;
use shared::ports::{EventStore, ReadStore, StoreError, TransactionItem};
use shared::verify::{self, HistoryRepair, Options, PROJECTIONS};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    Sqlite,
    Dynamodb,
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Where the ledger lives: `sqlite` (in --data-dir) or `dynamodb`.
    #[arg(long, value_enum, default_value_t = StoreBackend::Sqlite)]
    pub backend: StoreBackend,
    /// The server's data directory (`--backend sqlite`).
    #[arg(long, default_value = crate::server::DEFAULT_DATA_DIR, env = "HEALTHPAY_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The DynamoDB endpoint (LocalStack: http://127.0.0.1:4566); without it the AWS
    /// SDK's usual configuration (region, credentials) applies.
    #[arg(long, env = "HEALTHPAY_DYNAMODB_ENDPOINT")]
    pub endpoint_url: Option<String>,
    /// Tables <prefix>-events and <prefix>-read, as `healthpay serve --backend dynamodb` names them.
    #[arg(long, default_value = "healthpay", env = "HEALTHPAY_TABLE_PREFIX")]
    pub table_prefix: String,
    /// The events table's name, overriding the prefix (a stack's `EventsTableName` output).
    #[arg(long, env = "EVENTS_TABLE")]
    pub events_table: Option<String>,
    /// The read-model table's name, overriding the prefix (a stack's `ReadModelTableName` output).
    #[arg(long, env = "READ_TABLE")]
    pub read_table: Option<String>,
    /// How many streams are read (and rebuilt) at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Check the books from the events alone; do not compare the read models.
    #[arg(long)]
    pub events_only: bool,
    /// Print the report as JSON (stdout) instead of text.
    #[arg(long)]
    pub json: bool,
    /// A transfer or claim saga still under way after this long is reported.
    #[arg(long, default_value_t = verify::SAGA_TIMEOUT.num_minutes())]
    pub saga_timeout_minutes: i64,
    /// A read model behind its events for longer than this is reported.
    #[arg(long, default_value_t = verify::PROJECTION_LAG.num_seconds())]
    pub projection_lag_seconds: i64,
}

#[derive(Args, Debug, Clone)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only the read models of this aggregate type (repeatable); default: all of them.
    #[arg(long = "projection", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(PROJECTIONS))]
    pub projections: Vec<String>,
}

/// A ledger's stores, opened.
struct Opened {
    label: String,
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    repair: Arc<dyn HistoryRepair>,
    streams: Vec<String>,
}

pub fn verify(args: VerifyArgs) -> ExitCode {
    run(async move {
        if args.saga_timeout_minutes <= 0 || args.projection_lag_seconds < 0 {
            return Err("--saga-timeout-minutes must be positive and --projection-lag-seconds not negative".to_string());
        }
        let opened = open(&args.store).await?;
        let options = Options {
            now: chrono::Utc::now(),
            saga_timeout: chrono::Duration::minutes(args.saga_timeout_minutes),
            projection_lag: chrono::Duration::seconds(args.projection_lag_seconds),
        };
        let progress = Progress::new("verify", "streams", opened.streams.len() as u64);
        let read = (!args.events_only).then(|| opened.read.clone());
        let report = verify::verify(opened.events, read, opened.streams, options.clone(), args.store.concurrency, &|_| progress.inc(1))
            .await
            .map_err(|e| e.to_string())?;
        progress.finish();
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report).expect("reports serialise"));
        } else {
            println!("healthpay verify: {} at {}", opened.label, options.now.to_rfc3339());
            print!("{}", report.render());
        }
        Ok(if report.clean() {
            ExitCode::SUCCESS
        } else {
            let named: Vec<&str> = report.drifted().into_iter().collect();
            eprintln!("healthpay verify: {} aggregates drifted: {}", named.len(), named.join(" "));
            ExitCode::FAILURE
        })
    })
}

pub fn rebuild(args: RebuildArgs) -> ExitCode {
    run(async move {
        let mut opened = open(&args.store).await?;
        if !args.projections.is_empty() {
            opened.streams.retain(|s| verify::parse_stream_id(s).is_some_and(|(kind, _)| args.projections.iter().any(|p| p == kind)));
        }
        let progress = Progress::new("rebuild", "streams", opened.streams.len() as u64);
        let rebuilt = verify::rebuild(opened.events, opened.read, Some(opened.repair), opened.streams, args.store.concurrency, &|_| progress.inc(1))
            .await
            .map_err(|e| e.to_string())?;
        progress.finish();
        let which = if args.projections.is_empty() { "every read model".to_string() } else { args.projections.join(", ") };
        println!("healthpay rebuild: {} ({which})", opened.label);
        println!("{} streams, {} events read", rebuilt.streams, rebuilt.events);
        let rows: Vec<String> = rebuilt.rewritten.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        if rows.is_empty() {
            println!("0 rows rewritten: every read model already equals its events");
        } else {
            println!("{} rows rewritten on {} aggregates ({})", rebuilt.rows(), rebuilt.repaired, rows.join(", "));
        }
        if rebuilt.left.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        println!("{} left as they are:", rebuilt.left.len());
        for f in &rebuilt.left {
            println!("  {} {}", f.aggregate, f.detail);
        }
        Ok(ExitCode::FAILURE)
    })
}

/// Runs a command; a failure to reach the stores exits 2 (findings exit 1).
fn run(command: impl std::future::Future<Output = Result<ExitCode, String>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("healthpay: {e}");
            ExitCode::from(2)
        }
    }
}

async fn open(args: &StoreArgs) -> Result<Opened, String> {
    match args.backend {
        StoreBackend::Sqlite => open_sqlite(args).await,
        StoreBackend::Dynamodb => open_dynamodb(args).await,
    }
}

async fn open_sqlite(args: &StoreArgs) -> Result<Opened, String> {
    let dir = &args.data_dir;
    let events_path = dir.join("events.db");
    if !events_path.exists() {
        return Err(format!("no ledger in {}: it has no events.db (give the server's --data-dir)", dir.display()));
    }
    let events = Arc::new(store_sqlite::SqliteEventStore::open(&events_path).map_err(|e| e.to_string())?);
    let read = Arc::new(store_sqlite::SqliteReadStore::open(&dir.join("read.db")).map_err(|e| e.to_string())?);
    let head = *shared::ports::EventFeed::head(events.as_ref()).borrow();
    let progress = Progress::new("list", "events", head);
    let streams = verify::streams_in_feed(events.as_ref(), &|n| progress.inc(n)).await.map_err(|e| e.to_string())?;
    progress.finish();
    let repair = Arc::new(SqliteHistory::open(&dir.join("read.db"))?);
    Ok(Opened { label: format!("sqlite {}", dir.display()), events, read, repair, streams })
}

async fn open_dynamodb(args: &StoreArgs) -> Result<Opened, String> {
    if args.endpoint_url.is_some() {
        emulator_credentials();
    }
    let client = store_dynamodb::client_from_env(args.endpoint_url.as_deref()).await;
    let names = store_dynamodb::TableNames::prefixed(&args.table_prefix);
    let events_table = args.events_table.clone().unwrap_or(names.events);
    let read_table = args.read_table.clone().unwrap_or(names.read);
    let progress = Progress::new("list", "events", 0);
    let streams = store_dynamodb::scan_streams(&client, &events_table, &|n| progress.inc(n)).await.map_err(|e| e.to_string())?;
    progress.finish();
    Ok(Opened {
        label: format!("dynamodb {events_table} + {read_table}{}", args.endpoint_url.as_deref().map(|e| format!(" at {e}")).unwrap_or_default()),
        events: Arc::new(store_dynamodb::DynamoEventStore::new(client.clone(), &events_table, names.idempotency)),
        read: Arc::new(store_dynamodb::DynamoReadStore::new(client.clone(), &read_table)),
        repair: Arc::new(DynamoHistory { client, table: read_table }),
        streams,
    })
}

/// An emulator takes any credentials; give the SDK some if the environment has none.
fn emulator_credentials() {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() && std::env::var_os("AWS_PROFILE").is_none() {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        std::env::set_var("AWS_REGION", store_dynamodb::DEFAULT_REGION);
    }
}

/// History lines replaced in `read.db` (table `transactions`, as the SQLite adapter
/// keeps them: the line as JSON under (wallet id, version)).
struct SqliteHistory(Arc<Mutex<rusqlite::Connection>>);

impl SqliteHistory {
    fn open(path: &std::path::Path) -> Result<Self, String> {
        let conn = rusqlite::Connection::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| e.to_string())?;
        Ok(SqliteHistory(Arc::new(Mutex::new(conn))))
    }

    async fn execute(&self, sql: &'static str, wallet_id: Uuid, version: u64, item: Option<String>) -> Result<(), StoreError> {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let version = i64::try_from(version).map_err(StoreError::new)?;
            let done = match item {
                Some(item) => conn.execute(sql, rusqlite::params![wallet_id.to_string(), version, item]),
                None => conn.execute(sql, rusqlite::params![wallet_id.to_string(), version]),
            };
            done.map(|_| ()).map_err(|e| StoreError::new(format!("sqlite: repairing history line {wallet_id} v{version}: {e}")))
        })
        .await
        .map_err(StoreError::new)?
    }
}

#[async_trait]
impl HistoryRepair for SqliteHistory {
    async fn replace_transaction(&self, item: &TransactionItem) -> Result<(), StoreError> {
        let json = serde_json::to_string(item).map_err(StoreError::new)?;
        self.execute("INSERT OR REPLACE INTO transactions (wallet_id, version, item) VALUES (?1, ?2, ?3)", item.wallet_id, item.version, Some(json)).await
    }

    async fn remove_transaction(&self, wallet_id: Uuid, version: u64) -> Result<(), StoreError> {
        self.execute("DELETE FROM transactions WHERE wallet_id = ?1 AND version = ?2", wallet_id, version, None).await
    }
}

/// History lines replaced in the read-model table (item `WALLET#<id>` / `TX#<version,
/// 20 digits>`, the line's attributes, as the DynamoDB adapter keeps them).
struct DynamoHistory {
    client: store_dynamodb::Client,
    table: String,
}

fn history_key(wallet_id: Uuid, version: u64) -> [(String, AttributeValue); 2] {
    [("pk".to_string(), AttributeValue::S(format!("WALLET#{wallet_id}"))), ("sk".to_string(), AttributeValue::S(format!("TX#{version:020}")))]
}

#[async_trait]
impl HistoryRepair for DynamoHistory {
    async fn replace_transaction(&self, item: &TransactionItem) -> Result<(), StoreError> {
        let mut stored: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::aws_sdk_dynamodb_1::to_item(item).map_err(|e| StoreError::new(format!("dynamodb: encoding a history line: {e}")))?;
        stored.extend(history_key(item.wallet_id, item.version));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(stored))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::new(format!("dynamodb: replacing a history line: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e))))
    }

    async fn remove_transaction(&self, wallet_id: Uuid, version: u64) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(history_key(wallet_id, version).into_iter().collect()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::new(format!("dynamodb: removing a history line: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e))))
    }
}
