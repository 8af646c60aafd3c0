//! `healthpay serve`: every route, the projections and the transfer and claim sagas in one
//! process, on the embedded store (SQLite, or memory with `--in-memory`).

use crate::dynamodb_stream::StreamFeed;
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::rate_limit::GovernorLimiter;
use crate::secret;
use api::graphql::subscription::LiveFeed;
use api::{App, HealthCheck, Route};
use async_trait::async_trait;
use axum::extract::{Path, RawQuery, Request};
use axum::routing::{on, MethodFilter};
use clap::Args;
use shared::app::Ledger;
use shared::clock::{Clock, SystemClock};
use shared::command::CommandService;
use shared::fraud::detector::FraudDetector;
use shared::fraud::FraudRules;
use shared::memory::{MemoryEventStore, MemoryExecutionStore, MemoryReadStore};
use shared::ports::{
    Checkpoints, EventFeed, EventStore, ExecutionStore, NoRateLimits, Rate, RateLimiter, RateLimits, ReadBatches, ReadStore, DEFAULT_RATE_LIMITS,
};
use shared::projection::feed::{FeedRunner, Projections};
use shared::saga::asl::Runner;
use shared::saga::claim::{self as claim_saga, ClaimSteps};
use shared::saga::steps::LocalSteps;
use shared::saga::transfer::{self as transfer_saga, TransferSteps};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

pub const DEFAULT_DATA_DIR: &str = "./.healthpay";

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The port to listen on.
    #[arg(long, default_value_t = 3000, env = "HEALTHPAY_PORT")]
    pub port: u16,
    /// The address to bind (use 0.0.0.0 to accept connections from other hosts).
    #[arg(long, default_value = "127.0.0.1", env = "HEALTHPAY_HOST")]
    pub host: String,
    /// Where the embedded store and the generated JWT secret live.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "HEALTHPAY_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where events and read models live: `sqlite` (in --data-dir), `memory` (lost
    /// on exit) or `dynamodb` (tables named --table-prefix, created if missing,
    /// projections fed from the events table's DynamoDB Stream).
    #[arg(long, value_enum, default_value_t = Backend::Sqlite, env = "HEALTHPAY_BACKEND")]
    pub backend: Backend,
    /// Same as `--backend memory`.
    #[arg(long)]
    pub in_memory: bool,
    /// The DynamoDB endpoint for `--backend dynamodb` (LocalStack: http://127.0.0.1:4566);
    /// without it the AWS SDK's usual configuration applies.
    #[arg(long, env = "HEALTHPAY_DYNAMODB_ENDPOINT")]
    pub endpoint_url: Option<String>,
    /// Table names for `--backend dynamodb`: <prefix>-events, <prefix>-idempotency, <prefix>-read.
    #[arg(long, default_value = "healthpay", env = "HEALTHPAY_TABLE_PREFIX")]
    pub table_prefix: String,
    /// How long a payment authorisation waits for its capture before it expires and
    /// its hold is released (default: 7 days).
    #[arg(long, default_value_t = 604_800, env = "HEALTHPAY_PAYMENT_EXPIRY_SECONDS")]
    pub payment_expiry_seconds: u64,
    /// How often the server expires the authorisations past their expiry.
    #[arg(long, default_value_t = 30, env = "HEALTHPAY_PAYMENT_EXPIRY_SWEEP_SECONDS")]
    pub payment_expiry_sweep_seconds: u64,
    /// How long a client has to send a request's headers (from the connection's start,
    /// or from the previous answer on a kept-alive connection); past it the connection
    /// is closed.
    #[arg(long, default_value_t = 10, env = "HEALTHPAY_HEADER_TIMEOUT_SECONDS")]
    pub header_timeout_seconds: u64,
    /// How long a client has to send a request's whole body once its headers are in;
    /// past it the request is answered 408 and the connection closed.
    #[arg(long, default_value_t = 10, env = "HEALTHPAY_BODY_TIMEOUT_SECONDS")]
    pub body_timeout_seconds: u64,
    /// The most connections served at once; further ones wait, unaccepted, for a free
    /// slot (in the listen backlog).
    #[arg(long, default_value_t = 1024, env = "HEALTHPAY_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Commands per second each caller (token `sub`) may send on average; beyond it and
    /// its burst, 429 RATE_LIMITED with Retry-After.
    #[arg(long, default_value_t = DEFAULT_RATE_LIMITS.commands.per_second, env = "HEALTHPAY_COMMAND_RATE_LIMIT")]
    pub command_rate_limit: u32,
    /// Commands a caller may send at once before its rate applies.
    #[arg(long, default_value_t = DEFAULT_RATE_LIMITS.commands.burst, env = "HEALTHPAY_COMMAND_BURST")]
    pub command_burst: u32,
    /// Queries per second each caller may send on average (a budget apart from commands').
    #[arg(long, default_value_t = DEFAULT_RATE_LIMITS.queries.per_second, env = "HEALTHPAY_QUERY_RATE_LIMIT")]
    pub query_rate_limit: u32,
    /// Queries a caller may send at once before its rate applies.
    #[arg(long, default_value_t = DEFAULT_RATE_LIMITS.queries.burst, env = "HEALTHPAY_QUERY_BURST")]
    pub query_burst: u32,
    /// No per-caller limits at all (the baseline the limiter's cost is measured against).
    #[arg(long)]
    pub no_rate_limits: bool,
    /// Whether POST /graphql answers introspection queries (`false` in production:
    /// the schema is published as docs/schema.graphql).
    #[arg(long, default_value = "true", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), env = api::graphql::INTROSPECTION_ENV)]
    pub graphql_introspection: bool,
    #[command(flatten)]
    pub fraud: FraudArgs,
}

impl ServeArgs {
    fn rate_limiter(&self) -> Result<Arc<dyn RateLimiter>, String> {
        if self.no_rate_limits {
            return Ok(Arc::new(NoRateLimits));
        }
        let commands = Rate::new(self.command_rate_limit, self.command_burst).map_err(|e| format!("--command-rate-limit, --command-burst: {e}"))?;
        let queries = Rate::new(self.query_rate_limit, self.query_burst).map_err(|e| format!("--query-rate-limit, --query-burst: {e}"))?;
        Ok(Arc::new(GovernorLimiter::new(RateLimits { commands, queries })))
    }
}

/// The fraud detector's switch and thresholds (`shared::fraud`); a threshold not
/// given keeps its documented default.
#[derive(Args, Debug, Clone)]
pub struct FraudArgs {
    /// Whether the fraud detector follows the event feed (AWS deployments always
    /// run it). Off by default here: this server is where clients test against the
    /// API contract, whose everyday flows (a burst of concurrent debits, a new
    /// wallet paying out more than 1,000) are exactly what the default rules suspend.
    #[arg(long, value_enum, default_value_t = Switch::Off, env = "HEALTHPAY_FRAUD_DETECTION")]
    pub fraud_detection: Switch,
    /// Velocity (high severity: suspends) fires on more than this many outgoing
    /// movements (withdrawal, payment, transfer_out debits) … [default: 10]
    #[arg(long, env = "HEALTHPAY_FRAUD_VELOCITY_COUNT")]
    pub fraud_velocity_count: Option<String>,
    /// … within this many seconds [default: 60].
    #[arg(long, env = "HEALTHPAY_FRAUD_VELOCITY_WINDOW_SECONDS")]
    pub fraud_velocity_window_seconds: Option<String>,
    /// High value (medium: alert only) fires on one outgoing movement of at least
    /// this amount, in major units [default: 10000].
    #[arg(long, env = "HEALTHPAY_FRAUD_HIGH_VALUE")]
    pub fraud_high_value: Option<String>,
    /// New-wallet outflow (high: suspends) watches a wallet's first this many hours … [default: 24]
    #[arg(long, env = "HEALTHPAY_FRAUD_NEW_WALLET_HOURS")]
    pub fraud_new_wallet_hours: Option<String>,
    /// … and fires when more than this amount has gone out in them [default: 1000].
    #[arg(long, env = "HEALTHPAY_FRAUD_NEW_WALLET_OUTFLOW")]
    pub fraud_new_wallet_outflow: Option<String>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

impl FraudArgs {
    /// The rules, or `None` when the detector is off.
    fn rules(&self) -> Result<Option<FraudRules>, String> {
        if self.fraud_detection == Switch::Off {
            return Ok(None);
        }
        let [count, window, high_value, hours, outflow] = FraudRules::SETTINGS;
        let flags = [
            (count, &self.fraud_velocity_count),
            (window, &self.fraud_velocity_window_seconds),
            (high_value, &self.fraud_high_value),
            (hours, &self.fraud_new_wallet_hours),
            (outflow, &self.fraud_new_wallet_outflow),
        ];
        let lookup = |name: &str| flags.iter().find(|(setting, _)| *setting == name).and_then(|(_, value)| (*value).clone());
        FraudRules::from_settings(lookup).map(Some).map_err(|e| format!("fraud rules: {e}"))
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Memory,
    Dynamodb,
}

/// The backend's ports.
struct Stores {
    events: Arc<dyn EventStore>,
    feed: Arc<dyn EventFeed>,
    read: Arc<dyn ReadBatches>,
    /// Where feed consumers keep their positions in the feed.
    checkpoints: Arc<dyn Checkpoints>,
    executions: Arc<dyn ExecutionStore>,
    kind: &'static str,
    /// `--backend dynamodb`: the request counter of each DynamoDB client, by name.
    dynamodb_requests: Vec<(String, store_dynamodb::RequestCounter)>,
}

async fn open_stores(args: &ServeArgs, stopping: watch::Receiver<bool>) -> Result<Stores, String> {
    match if args.in_memory { Backend::Memory } else { args.backend } {
        Backend::Memory => {
            let events = Arc::new(MemoryEventStore::default());
            let read = Arc::new(MemoryReadStore::default());
            Ok(Stores {
                events: events.clone(),
                feed: events,
                read: read.clone(),
                checkpoints: read,
                executions: Arc::new(MemoryExecutionStore::default()),
                kind: "memory",
                dynamodb_requests: vec![],
            })
        }
        Backend::Sqlite => {
            let backend =
                store_sqlite::SqliteBackend::open(&args.data_dir).map_err(|e| format!("cannot open the store in {}: {e}", args.data_dir.display()))?;
            Ok(Stores {
                events: backend.events.clone(),
                feed: backend.events,
                read: backend.read.clone(),
                checkpoints: backend.read,
                executions: backend.executions,
                kind: "sqlite",
                dynamodb_requests: vec![],
            })
        }
        Backend::Dynamodb => open_dynamodb(args, stopping).await,
    }
}

/// Tables named after `--table-prefix` (created if missing); the feed reads the
/// events table's stream.
///
/// Three clients, each counting the requests it sends (`GET /metrics`:
/// `healthpay_dynamodb_requests_total{client=…}`): `commands` — the event store,
/// i.e. every command's load, append and idempotency lookup, the transfer saga's
/// steps (commands too), the temporal balance query, and the table check at
/// start-up; `read` — read models and
/// saga executions (projections, queries, the saga runner); `streams` — the
/// events table's stream.
async fn open_dynamodb(args: &ServeArgs, stopping: watch::Receiver<bool>) -> Result<Stores, String> {
    let endpoint = args.endpoint_url.as_deref();
    let counters = ["commands", "read", "streams"].map(|name| (name.to_string(), store_dynamodb::RequestCounter::new()));
    let client = store_dynamodb::client_from_env_counted(endpoint, &counters[0].1).await;
    let read_client = store_dynamodb::client_from_env_counted(endpoint, &counters[1].1).await;
    let tables = store_dynamodb::TableNames::prefixed(&args.table_prefix);
    let stream_arn = match client.describe_table().table_name(&tables.events).send().await {
        Ok(table) => table.table.and_then(|t| t.latest_stream_arn),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
            tracing::info!(prefix = %args.table_prefix, "creating the DynamoDB tables");
            store_dynamodb::create_tables(&client, &tables).await.map_err(|e| e.to_string())?;
            client
                .describe_table()
                .table_name(&tables.events)
                .send()
                .await
                .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())?
                .table
                .and_then(|t| t.latest_stream_arn)
        }
        Err(e) => {
            return Err(format!(
                "cannot reach DynamoDB at {}: {}",
                endpoint.unwrap_or("the SDK's default endpoint"),
                aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)
            ))
        }
    }
    .ok_or_else(|| format!("table {} has no stream; enable NEW_IMAGE streams on it", tables.events))?;
    let region = aws_config::meta::region::RegionProviderChain::default_provider().or_else(store_dynamodb::DEFAULT_REGION);
    let mut config = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region);
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    let streams_config = aws_sdk_dynamodbstreams::config::Builder::from(&config.load().await).interceptor(counters[2].1.clone()).build();
    let feed = Arc::new(StreamFeed::new(aws_sdk_dynamodbstreams::Client::from_conf(streams_config), stream_arn));
    tokio::spawn({
        let feed = feed.clone();
        async move { feed.poll(stopping).await }
    });
    let events = Arc::new(store_dynamodb::DynamoEventStore::new(client, &tables.events, &tables.idempotency));
    let read = Arc::new(store_dynamodb::DynamoReadStore::new(read_client, &tables.read));
    // Feed positions are this process's own (see dynamodb_stream), so are checkpoints.
    Ok(Stores {
        events,
        feed,
        read: read.clone(),
        checkpoints: Arc::new(MemoryReadStore::default()),
        executions: read,
        kind: "dynamodb",
        dynamodb_requests: counters.into(),
    })
}

pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let secret = secret::load_or_create(&args.data_dir).map_err(|e| format!("JWT secret: {e}"))?;
    let payment_expiry = shared::payment_expiry::expiry_period(args.payment_expiry_seconds).map_err(|e| format!("--payment-expiry-seconds: {e}"))?;
    if !(1..=24 * 3600).contains(&args.payment_expiry_sweep_seconds) {
        return Err("--payment-expiry-sweep-seconds must be from 1 to 86400".into());
    }
    for (flag, seconds) in [("--header-timeout-seconds", args.header_timeout_seconds), ("--body-timeout-seconds", args.body_timeout_seconds)] {
        if !(1..=3600).contains(&seconds) {
            return Err(format!("{flag} must be from 1 to 3600"));
        }
    }
    if !(1..=Semaphore::MAX_PERMITS).contains(&args.max_connections) {
        return Err("--max-connections must be at least 1".into());
    }
    let limiter = args.rate_limiter()?;
    let fraud_rules = args.fraud.rules()?;
    // Listen first: a second server on a busy port stops here, before it opens the
    // stores or starts a feed consumer.
    let address: SocketAddr = format!("{}:{}", args.host, args.port).parse().map_err(|e| format!("bad --host/--port: {e}"))?;
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let (stop, stopping) = watch::channel(false);
    let stores = open_stores(&args, stopping.clone()).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let commands = Arc::new(CommandService::new(stores.events.clone(), clock.clone()));
    let metrics = Arc::new(Metrics::new());
    // What the command service, the saga runners and the fraud consumer report.
    shared::metrics::install(metrics.clone());
    if !stores.dynamodb_requests.is_empty() {
        metrics.count_dynamodb_requests(stores.dynamodb_requests.clone());
    }

    // The read side: projections and the saga starter follow the event feed.
    // What the projections apply also wakes the GraphQL subscriptions that follow it.
    let live = LiveFeed::default();
    let projections = FeedRunner::new(stores.feed.clone(), stores.checkpoints.clone(), Arc::new(Projections { store: stores.read.clone() })).observe({
        let metrics = metrics.clone();
        let clock = clock.clone();
        let live = live.clone();
        Arc::new(move |event| {
            metrics.projected((clock.now() - event.occurred_at).num_microseconds().unwrap_or(0) as f64 / 1e6);
            live.projected(event.aggregate_id);
        })
    });
    let machine = Arc::new(transfer_saga::local_state_machine().map_err(|e| format!("transfer state machine: {e}"))?);
    let steps = Arc::new(TransferSteps::new(commands.clone()));
    let runner = Arc::new(Runner::new(machine, Arc::new(LocalSteps(steps)), stores.executions.clone(), clock.clone()));
    let starter = FeedRunner::new(stores.feed.clone(), stores.checkpoints.clone(), Arc::new(transfer_saga::starter(runner.clone())));
    let claim_machine = Arc::new(claim_saga::local_state_machine().map_err(|e| format!("claim state machine: {e}"))?);
    let claim_steps = Arc::new(ClaimSteps::new(commands.clone()));
    let claim_runner = Arc::new(Runner::new(claim_machine, Arc::new(LocalSteps(claim_steps)), stores.executions.clone(), clock.clone()));
    let claim_starter = FeedRunner::new(stores.feed.clone(), stores.checkpoints.clone(), Arc::new(claim_saga::starter(claim_runner.clone())));
    let projection_position = projections.position.clone();
    let mut consumers = vec![
        ("projections".to_string(), projections.position.clone()),
        (transfer_saga::TRIGGER.consumer.into(), starter.position.clone()),
        (claim_saga::TRIGGER.consumer.into(), claim_starter.position.clone()),
    ];
    let mut feed_tasks =
        vec![tokio::spawn(projections.run(stopping.clone())), tokio::spawn(starter.run(stopping.clone())), tokio::spawn(claim_starter.run(stopping.clone()))];
    // The fraud detector raises alerts and suspends through the same ledger as the API.
    let ledger = Arc::new(Ledger::new(commands.clone(), payment_expiry));
    if let Some(rules) = fraud_rules {
        let detector = FraudDetector::new(ledger.clone(), stores.read.clone(), rules);
        let runner = FeedRunner::new(stores.feed.clone(), stores.checkpoints.clone(), Arc::new(detector));
        consumers.push(("fraud-detector".into(), runner.position.clone()));
        feed_tasks.push(tokio::spawn(runner.run(stopping.clone())));
    } else {
        tracing::info!("the fraud detector is off (--fraud-detection on runs it)");
    }
    metrics.watch_feed(stores.feed.head(), consumers);
    let expiry_sweeper =
        tokio::spawn(sweep_payment_expiries(commands.clone(), stores.read.clone(), Duration::from_secs(args.payment_expiry_sweep_seconds), stopping.clone()));

    // Transfers and claims a previous run left unfinished carry on from their last state.
    for (saga, runner) in [("transfer", &runner), ("claim", &claim_runner)] {
        let unfinished = runner.running().await.map_err(|e| format!("cannot list running {saga} sagas: {e}"))?;
        if !unfinished.is_empty() {
            tracing::info!(count = unfinished.len(), saga, "resuming unfinished sagas");
        }
        for name in unfinished {
            let runner = runner.clone();
            tokio::spawn(async move {
                if let Err(e) = runner.run(&name).await {
                    tracing::warn!(saga, execution = %name, error = %e, "saga stopped; it resumes on restart");
                }
            });
        }
    }

    let health =
        Arc::new(Health { events: stores.events.clone(), read: stores.read.clone(), feed: stores.feed.clone(), projection_position, kind: stores.kind });
    let mut app = App::over(ledger, stores.read.clone(), metrics.clone(), health, limiter);
    app.graphql.introspection = args.graphql_introspection;
    let gateway = Arc::new(Gateway { app, verifier: api::auth::TokenVerifier::new(&secret), body_timeout: Duration::from_secs(args.body_timeout_seconds) });
    let router = router(gateway, metrics, live);
    tracing::info!(address = %listener.local_addr().map_err(|e| e.to_string())?, backend = stores.kind, data_dir = %args.data_dir.display(), "healthpay is serving");

    // In-flight requests finish before we stop: an acknowledged command is committed.
    serve_http(listener, router, Duration::from_secs(args.header_timeout_seconds), args.max_connections, shutdown_signal()).await;
    tracing::info!("shutting down: stopping feed consumers");
    stop.send_replace(true);
    for task in feed_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), expiry_sweeper).await;
    tracing::info!("stopped");
    Ok(())
}

/// Serves HTTP/1 on `listener` until `shutdown` completes, then lets the requests in
/// flight finish (idle connections are closed) and returns.
///
/// `axum::serve` has no knobs for hostile clients, hence this accept loop: a client
/// gets `header_timeout` to send each request's headers (hyper's header read timeout;
/// it also ends kept-alive connections left idle that long), and at most
/// `max_connections` connections are served at once: the loop accepts only while it
/// holds a free slot, so further connections wait in the kernel's listen backlog
/// instead of taking file descriptors and tasks. (Bodies have their own deadline, in
/// the gateway.)
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    // hyper-util's GracefulShutdown does not take connections with upgrades (the
    // GraphQL WebSockets): each connection task watches `stopping` itself, and
    // holds a clone of `open` until it ends, so that `closed` answers once all have.
    let (stop_connections, stopping) = watch::channel(false);
    let (open, mut closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the connection semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // A connection reset before we took it is the client's business; anything
                    // else (out of file descriptors…) is ours: back off rather than spin.
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) {
                        tracing::warn!(error = %e, "cannot accept a connection; retrying shortly");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        // With upgrades: GraphQL subscriptions' WebSockets (`/graphql/ws`).
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).with_upgrades();
        let (mut stopping, open) = (stopping.clone(), open.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                // Header timeouts, clients gone mid-request: theirs to worry about.
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop((slot, open));
        });
    }
    drop(listener);
    stop_connections.send_replace(true);
    drop(open);
    let _ = closed.recv().await;
}

/// Every `every`, expires the payment authorisations past their expiry and releases
/// their holds (on AWS, the scheduled `payment-expiry` function does this).
async fn sweep_payment_expiries(commands: Arc<CommandService>, read: Arc<dyn ReadStore>, every: Duration, mut stopping: watch::Receiver<bool>) {
    const MAX_PER_SWEEP: usize = 1_000;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.changed() => return,
        }
        if *stopping.borrow() {
            return;
        }
        match shared::payment_expiry::expire_due(&commands, read.as_ref(), MAX_PER_SWEEP).await {
            Ok(sweep) => {
                if !sweep.expired.is_empty() || sweep.failed > 0 {
                    tracing::info!(expired = sweep.expired.len(), skipped = sweep.skipped, failed = sweep.failed, "payment expiry sweep");
                }
                if sweep.more {
                    ticks.reset_immediately();
                }
            }
            Err(e) => tracing::warn!(error = %e, "payment expiry sweep failed; retrying at the next tick"),
        }
    }
}

fn router(gateway: Arc<Gateway>, metrics: Arc<Metrics>, live: LiveFeed) -> axum::Router {
    let mut router = axum::Router::new();
    for &route in Route::ALL {
        let method = match route.method() {
            "GET" => MethodFilter::GET,
            "DELETE" => MethodFilter::DELETE,
            _ => MethodFilter::POST,
        };
        let gateway = gateway.clone();
        let has_params = route.path().contains('{');
        router = router.route(
            route.path(),
            on(method, move |params: Option<Path<HashMap<String, String>>>, query: RawQuery, request: Request| {
                let gateway = gateway.clone();
                async move { gateway.serve(route, if has_params { params } else { None }, query, request).await }
            }),
        );
    }
    // prometheus-client writes the OpenMetrics text format (it ends with `# EOF`).
    router = router.route(
        crate::graphql_ws::PATH,
        axum::routing::get({
            let gateway = gateway.clone();
            move |protocol, upgrade| crate::graphql_ws::upgrade(gateway, live, protocol, upgrade)
        }),
    );
    let openmetrics = [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")];
    router
        .route("/metrics", axum::routing::get(move || async move { (openmetrics, metrics.render()) }))
        // The OpenAPI document at /openapi.json and Swagger UI at /docs (its assets are
        // compiled into the binary: utoipa-swagger-ui's `vendored` feature).
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", api::openapi::document()))
        // A known path with another method is "no route" too, as API Gateway answers it.
        .method_not_allowed_fallback(not_found)
        .fallback(not_found)
}

async fn not_found(request: Request) -> axum::response::Response {
    let correlation_id = uuid::Uuid::now_v7().to_string();
    let error = api::error::ApiError::not_found(format!("no route for {} {}", request.method(), request.uri().path()));
    let body = error.body(&shared::clock::rfc3339(SystemClock.now()), &correlation_id);
    (axum::http::StatusCode::NOT_FOUND, [("content-type", "application/json".to_string()), ("x-correlation-id", correlation_id)], body.to_string())
        .into_response()
}

use axum::response::IntoResponse;

pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("signal received: finishing in-flight requests");
}

struct Health {
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    feed: Arc<dyn EventFeed>,
    projection_position: Arc<std::sync::atomic::AtomicU64>,
    kind: &'static str,
}

#[async_trait]
impl HealthCheck for Health {
    async fn components(&self) -> Vec<(String, bool, serde_json::Value)> {
        let events = self.events.load("health#probe", 0).await;
        let read = self.read.transfer(uuid::Uuid::nil()).await;
        let head = *self.feed.head().borrow();
        let position = self.projection_position.load(std::sync::atomic::Ordering::Relaxed);
        vec![
            ("eventStore".into(), events.is_ok(), serde_json::json!({"backend": self.kind, "error": events.err().map(|e| e.to_string())})),
            ("readStore".into(), read.is_ok(), serde_json::json!({"backend": self.kind, "error": read.err().map(|e| e.to_string())})),
            ("projections".into(), true, serde_json::json!({"position": position, "head": head, "lagEvents": head.saturating_sub(position)})),
        ]
    }
}
