//! `healthpay serve`: every route, the projections and the transfer saga in one
//! process, on the embedded store (SQLite, or memory with `--in-memory`).

use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::secret;
use api::{App, HealthCheck, Route};
use async_trait::async_trait;
use axum::extract::{Path, RawQuery, Request};
use axum::routing::{on, MethodFilter};
use clap::Args;
use shared::clock::{Clock, SystemClock};
use shared::command::CommandService;
use shared::memory::{MemoryEventStore, MemoryExecutionStore, MemoryReadStore};
use shared::ports::{EventFeed, EventStore, ExecutionStore, ReadStore};
use shared::projection::feed::{FeedRunner, Projections};
use shared::saga::asl::Runner;
use shared::saga::transfer::{self as transfer_saga, LocalSteps, SagaStarter, TransferSteps};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
    /// Keep events and read models in memory only (lost on exit).
    #[arg(long)]
    pub in_memory: bool,
}

/// The embedded backend's ports.
struct Stores {
    events: Arc<dyn EventStore>,
    feed: Arc<dyn EventFeed>,
    read: Arc<dyn ReadStore>,
    executions: Arc<dyn ExecutionStore>,
    kind: &'static str,
}

fn open_stores(args: &ServeArgs) -> Result<Stores, String> {
    if args.in_memory {
        let events = Arc::new(MemoryEventStore::default());
        return Ok(Stores {
            events: events.clone(),
            feed: events,
            read: Arc::new(MemoryReadStore::default()),
            executions: Arc::new(MemoryExecutionStore::default()),
            kind: "memory",
        });
    }
    let backend = store_sqlite::SqliteBackend::open(&args.data_dir).map_err(|e| format!("cannot open the store in {}: {e}", args.data_dir.display()))?;
    Ok(Stores { events: backend.events.clone(), feed: backend.events, read: backend.read, executions: backend.executions, kind: "sqlite" })
}

pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let secret = secret::load_or_create(&args.data_dir).map_err(|e| format!("JWT secret: {e}"))?;
    let stores = open_stores(&args)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let commands = Arc::new(CommandService::new(stores.events.clone(), clock.clone()));
    let metrics = Arc::new(Metrics::new());
    let (stop, stopping) = watch::channel(false);

    // The read side: projections and the saga starter follow the event feed.
    let projections = FeedRunner::new(stores.feed.clone(), stores.read.clone(), Arc::new(Projections { store: stores.read.clone() })).observe({
        let metrics = metrics.clone();
        let clock = clock.clone();
        Arc::new(move |event| metrics.projected((clock.now() - event.occurred_at).num_microseconds().unwrap_or(0) as f64 / 1e6))
    });
    let machine = Arc::new(transfer_saga::local_state_machine().map_err(|e| format!("transfer state machine: {e}"))?);
    let steps = Arc::new(TransferSteps::new(commands.clone()));
    let runner = Arc::new(Runner::new(machine, Arc::new(LocalSteps(steps)), stores.executions.clone(), clock.clone()));
    let starter = FeedRunner::new(stores.feed.clone(), stores.read.clone(), Arc::new(SagaStarter { runner: runner.clone() }));
    let projection_position = projections.position.clone();
    metrics
        .watch_feed(stores.feed.head(), vec![("projections".into(), projections.position.clone()), ("transfer-saga-starter".into(), starter.position.clone())]);
    let feed_tasks = [tokio::spawn(projections.run(stopping.clone())), tokio::spawn(starter.run(stopping.clone()))];

    // Transfers a previous run left unfinished carry on from their last state.
    let unfinished = runner.running().await.map_err(|e| format!("cannot list running sagas: {e}"))?;
    if !unfinished.is_empty() {
        tracing::info!(count = unfinished.len(), "resuming unfinished transfer sagas");
    }
    for name in unfinished {
        let runner = runner.clone();
        tokio::spawn(async move {
            if let Err(e) = runner.run(&name).await {
                tracing::warn!(execution = %name, error = %e, "transfer saga stopped; it resumes on restart");
            }
        });
    }

    let health =
        Arc::new(Health { events: stores.events.clone(), read: stores.read.clone(), feed: stores.feed.clone(), projection_position, kind: stores.kind });
    let gateway = Arc::new(Gateway {
        app: App { commands, read: stores.read.clone(), metrics: metrics.clone(), health },
        verifier: api::auth::TokenVerifier::new(&secret),
    });
    let router = router(gateway, metrics);
    let address: SocketAddr = format!("{}:{}", args.host, args.port).parse().map_err(|e| format!("bad --host/--port: {e}"))?;
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| format!("cannot listen on {address}: {e}"))?;
    tracing::info!(address = %listener.local_addr().map_err(|e| e.to_string())?, backend = stores.kind, data_dir = %args.data_dir.display(), "healthpay is serving");

    // In-flight requests finish before we stop: an acknowledged command is committed.
    axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await.map_err(|e| format!("server error: {e}"))?;
    tracing::info!("shutting down: stopping feed consumers");
    stop.send_replace(true);
    for task in feed_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn router(gateway: Arc<Gateway>, metrics: Arc<Metrics>) -> axum::Router {
    let mut router = axum::Router::new();
    for route in Route::ALL {
        let method = if route.method() == "GET" { MethodFilter::GET } else { MethodFilter::POST };
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
    router.route("/metrics", axum::routing::get(move || async move { ([("content-type", "text/plain; version=0.0.4")], metrics.render()) })).fallback(not_found)
}

async fn not_found(request: Request) -> axum::response::Response {
    let body = serde_json::json!({
        "statusCode": 404,
        "error": "NOT_FOUND",
        "message": format!("no route for {} {}", request.method(), request.uri().path()),
        "timestamp": shared::clock::rfc3339(SystemClock.now()),
        "correlationId": uuid::Uuid::now_v7().to_string(),
    });
    (axum::http::StatusCode::NOT_FOUND, [("content-type", "application/json")], body.to_string()).into_response()
}

use axum::response::IntoResponse;

async fn shutdown_signal() {
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
        let read = self.read.checkpoint("projections").await;
        let head = *self.feed.head().borrow();
        let position = self.projection_position.load(std::sync::atomic::Ordering::Relaxed);
        vec![
            ("eventStore".into(), events.is_ok(), serde_json::json!({"backend": self.kind, "error": events.err().map(|e| e.to_string())})),
            ("readStore".into(), read.is_ok(), serde_json::json!({"backend": self.kind, "error": read.err().map(|e| e.to_string())})),
            ("projections".into(), true, serde_json::json!({"position": position, "head": head, "lagEvents": head.saturating_sub(position)})),
        ]
    }
}
