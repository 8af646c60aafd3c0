//! The HTTP edge of HealthPay Ledger: every route of the API contract as a handler
//! over an API Gateway REST (proxy integration) request.
//!
//! The same [`handle`] serves the per-route Lambda functions (`lambda_http::run`)
//! and the local all-in-one server, which hands it requests in the exact shape API
//! Gateway would (path parameters, query string, authorizer context).

pub mod auth;
pub mod claims;
pub mod error;
pub mod fraud;
pub mod graphql;
pub mod http;
pub mod medcards;
pub mod openapi;
pub mod payments;
pub mod queries;
pub mod routes;
pub mod schema;
pub mod transfers;
pub mod wallets;

use async_trait::async_trait;
use error::ApiError;
use http::Incoming;
use lambda_http::{Body, Request, Response};
pub use routes::Route;
use shared::app::Ledger;
use shared::command::CommandService;
use shared::ports::{RateLimiter, ReadStore, RequestKind, StoredResponse};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Counts requests, their latency and the rate-limited ones (Prometheus locally,
/// CloudWatch EMF on Lambda), under the names of `shared::metrics`.
pub trait Metrics: Send + Sync {
    fn request(&self, route: Route, outcome: &str, seconds: f64);
    fn rate_limited(&self, route: Route, kind: RequestKind);
}

/// Drops every observation (tests, tools).
pub struct NoMetrics;
impl Metrics for NoMetrics {
    fn request(&self, _: Route, _: &str, _: f64) {}
    fn rate_limited(&self, _: Route, _: RequestKind) {}
}

/// Whether each dependency answers, for `GET /health`.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// `(component, healthy, details)` for each dependency.
    async fn components(&self) -> Vec<(String, bool, serde_json::Value)>;
}

#[derive(Clone)]
pub struct App {
    /// Every command, with its rules: handlers only parse, call it and render.
    pub ledger: Arc<Ledger>,
    pub commands: Arc<CommandService>,
    pub read: Arc<dyn ReadStore>,
    pub metrics: Arc<dyn Metrics>,
    pub health: Arc<dyn HealthCheck>,
    /// Each caller's budget of requests, asked right after its token ([`admit`]).
    pub limiter: Arc<dyn RateLimiter>,
    /// Whether `POST /graphql` answers introspection ([`graphql::Settings::from_env`] unless set).
    pub graphql: graphql::Settings,
}

impl App {
    pub fn new(
        commands: Arc<CommandService>,
        read: Arc<dyn ReadStore>,
        metrics: Arc<dyn Metrics>,
        health: Arc<dyn HealthCheck>,
        limiter: Arc<dyn RateLimiter>,
        // How long a payment authorisation may wait for its capture
        // (`shared::payment_expiry::DEFAULT_PAYMENT_EXPIRY` unless configured).
        payment_expiry: chrono::Duration,
    ) -> App {
        App::over(Arc::new(Ledger::new(commands, payment_expiry)), read, metrics, health, limiter)
    }

    /// An app over a ledger the caller shares with other front ends (the local
    /// server's fraud detector commands through the same one).
    pub fn over(ledger: Arc<Ledger>, read: Arc<dyn ReadStore>, metrics: Arc<dyn Metrics>, health: Arc<dyn HealthCheck>, limiter: Arc<dyn RateLimiter>) -> App {
        let commands = ledger.commands().clone();
        App { ledger, commands, read, metrics, health, limiter, graphql: graphql::Settings::from_env() }
    }
}

/// Serves one request for `route`. Never fails: every error is the contract's
/// error body with its status.
pub async fn handle(app: &App, route: Route, request: Request) -> Response<Body> {
    let started = Instant::now();
    let mut incoming = Incoming::new(request, app.commands.clock().now());
    let span = tracing::info_span!("request", route = route.name(), correlation_id = %incoming.correlation_id);
    async move {
        let answer = match serve(app, route, &mut incoming).await {
            Ok(answer) => answer,
            Err(error) => incoming.render_error(&error),
        };
        let outcome = outcome_of(&answer);
        app.metrics.request(route, &outcome, started.elapsed().as_secs_f64());
        tracing::info!(status = answer.status, outcome, micros = started.elapsed().as_micros() as u64, "handled");
        incoming.respond(answer)
    }
    .instrument(span)
    .await
}

/// Answers a request that was refused before any handler ran (by the gateway's
/// authorizer, or for its size), with the same error body and metrics.
pub fn reject(app: &App, route: Route, request: Request, error: ApiError) -> Response<Body> {
    let incoming = Incoming::new(request, app.commands.clock().now());
    let answer = incoming.render_error(&error);
    app.metrics.request(route, error.code, 0.0);
    tracing::info!(route = route.name(), correlation_id = %incoming.correlation_id, status = error.status, outcome = error.code, "refused");
    incoming.respond(answer)
}

async fn serve(app: &App, route: Route, incoming: &mut Incoming) -> Result<StoredResponse, ApiError> {
    if route.needs_caller() {
        incoming.authenticate()?;
        if let Some(refusal) = admit(app, route, incoming).await {
            return Ok(refusal);
        }
    }
    routes::dispatch(app, route, incoming).await
}

/// The caller's rate limit, checked once its token is known and before anything else
/// (no body parsed, no aggregate loaded, no idempotency key looked up): a refused
/// request changes nothing, and its 429 is never stored as an idempotent answer, so
/// a retry with the same key runs once it is admitted.
async fn admit(app: &App, route: Route, incoming: &Incoming) -> Option<StoredResponse> {
    let refusal = charge(app, route, &incoming.caller().sub).await.err()?;
    let mut answer = incoming.render_error(&refusal.error);
    answer.headers.push((http::RETRY_AFTER_HEADER.into(), refusal.retry_after_seconds.to_string()));
    Some(answer)
}

/// A request the caller's rate limit refused: the error to answer, and how many whole
/// seconds (the `Retry-After` unit, rounded up) until the budget is refilled.
pub(crate) struct Refusal {
    pub error: ApiError,
    pub retry_after_seconds: u64,
}

/// Spends one of `sub`'s tokens from `route`'s budget ([`Route::budget`]).
/// A limiter whose backend fails lets the request through (logged): the gateway's
/// own throttle still guards the API, and a ledger that refused every payment
/// because a counter table was unreachable would be worse than one briefly unlimited.
pub(crate) async fn charge(app: &App, route: Route, sub: &str) -> Result<(), Refusal> {
    let kind = route.budget();
    let over = match app.limiter.admit(sub, kind).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(over)) => over,
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable; admitting the request");
            return Ok(());
        }
    };
    let seconds = over.retry_after.as_secs() + u64::from(over.retry_after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    app.metrics.rate_limited(route, kind);
    let error = ApiError::rate_limited(format!("too many {}s from this caller; retry in {seconds} s", kind.as_str()));
    Err(Refusal { error, retry_after_seconds: seconds })
}

/// `GET /health`, for anyone: healthy or not, per component, and nothing else. What
/// went wrong (a store's error text) goes to the log, never to an anonymous caller.
async fn health(app: &App, _: &Incoming) -> Result<StoredResponse, ApiError> {
    let components = app.health.components().await;
    let healthy = components.iter().all(|(_, ok, _)| *ok);
    let status = |ok: bool| if ok { "healthy" } else { "unhealthy" };
    for (name, ok, details) in &components {
        if !ok {
            tracing::warn!(component = %name, details = %details, "health check: component unhealthy");
        }
    }
    let body = HealthReply {
        status: status(healthy),
        version: env!("CARGO_PKG_VERSION"),
        components: components.iter().map(|(name, ok, _)| (name.clone(), ComponentHealth { status: status(*ok) })).collect(),
    };
    Ok(StoredResponse { status: if healthy { 200 } else { 503 }, ..queries::ok(body) })
}

/// `GET /health`: healthy or not, overall and per component.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HealthReply {
    #[schema(value_type = schema::HealthStatus)]
    status: &'static str,
    /// The server's version.
    version: &'static str,
    /// By component (`eventStore`, `readStore`, `projections`, …).
    components: std::collections::BTreeMap<String, ComponentHealth>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ComponentHealth {
    #[schema(value_type = schema::HealthStatus)]
    status: &'static str,
}

/// `ok`, or the error code of an error body (for metrics).
fn outcome_of(answer: &StoredResponse) -> String {
    if answer.status < 400 {
        return "ok".into();
    }
    serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|body| body.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("http_{}", answer.status))
}

/// Fails while the committed `file` (from the repository's root) differs from what
/// the code generates; with `bless_env` set, rewrites it first. `command` is the
/// `healthpay` subcommand that regenerates it, `filter` the test filter.
#[cfg(test)]
pub(crate) fn assert_committed(file: &str, generated: &str, bless_env: &str, command: &str, filter: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
    if std::env::var_os(bless_env).is_some() {
        std::fs::write(&path, generated).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{file} differs from what the code generates. Regenerate it with\n    cargo run --bin healthpay -- {command}\n(or {bless_env}=1 cargo test -p api {filter}) and commit it."
    );
}
