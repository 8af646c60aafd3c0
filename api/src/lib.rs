//! The HTTP edge of HealthPay Ledger: every route of the API contract as a handler
//! over an API Gateway REST (proxy integration) request.
//!
//! The same [`handle`] serves the per-route Lambda functions (`lambda_http::run`)
//! and the local all-in-one server, which hands it requests in the exact shape API
//! Gateway would (path parameters, query string, authorizer context).

pub mod auth;
pub mod claims;
pub mod error;
pub mod http;
pub mod medcards;
pub mod payments;
pub mod queries;
pub mod routes;
pub mod transfers;
pub mod wallets;

use async_trait::async_trait;
use error::ApiError;
use http::Incoming;
use lambda_http::{Body, Request, Response};
pub use routes::Route;
use shared::app::Ledger;
use shared::command::CommandService;
use shared::ports::{ReadStore, StoredResponse};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Counts commands and their latency (Prometheus locally, logs on Lambda).
pub trait Metrics: Send + Sync {
    fn request(&self, route: Route, outcome: &str, seconds: f64);
}

/// Drops every observation (tests, tools).
pub struct NoMetrics;
impl Metrics for NoMetrics {
    fn request(&self, _: Route, _: &str, _: f64) {}
}

/// Whether each dependency answers, for `GET /health`.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// `(component, healthy, details)` for each dependency.
    async fn components(&self) -> Vec<(String, bool, serde_json::Value)>;
}

pub struct App {
    /// Every command, with its rules: handlers only parse, call it and render.
    pub ledger: Arc<Ledger>,
    pub commands: Arc<CommandService>,
    pub read: Arc<dyn ReadStore>,
    pub metrics: Arc<dyn Metrics>,
    pub health: Arc<dyn HealthCheck>,
}

impl App {
    pub fn new(
        commands: Arc<CommandService>,
        read: Arc<dyn ReadStore>,
        metrics: Arc<dyn Metrics>,
        health: Arc<dyn HealthCheck>,
        // How long a payment authorisation may wait for its capture
        // (`shared::payment_expiry::DEFAULT_PAYMENT_EXPIRY` unless configured).
        payment_expiry: chrono::Duration,
    ) -> App {
        let ledger = Arc::new(Ledger::new(commands.clone(), payment_expiry));
        App { ledger, commands, read, metrics, health }
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
    }
    let incoming = &*incoming;
    match route {
        Route::CreateWallet => wallets::create(app, incoming).await,
        Route::ActivateWallet => wallets::activate(app, incoming).await,
        Route::SuspendWallet => wallets::suspend(app, incoming).await,
        Route::CloseWallet => wallets::close(app, incoming).await,
        Route::CreditWallet => wallets::credit(app, incoming).await,
        Route::DebitWallet => wallets::debit(app, incoming).await,
        Route::CreateTransfer => transfers::create(app, incoming).await,
        Route::GetWallet => queries::wallet(app, incoming).await,
        Route::ListTransactions => queries::transactions(app, incoming).await,
        Route::GetBalance => queries::balance(app, incoming).await,
        Route::MyWallets => queries::my_wallets(app, incoming).await,
        Route::GetTransfer => queries::transfer(app, incoming).await,
        Route::AuthorizePayment => payments::authorize(app, incoming).await,
        Route::CapturePayment => payments::capture(app, incoming).await,
        Route::VoidPayment => payments::void(app, incoming).await,
        Route::RefundPayment => payments::refund(app, incoming).await,
        Route::GetPayment => payments::get(app, incoming).await,
        Route::IssueMedCard => medcards::issue(app, incoming).await,
        Route::ActivateMedCard => medcards::activate(app, incoming).await,
        Route::SuspendMedCard => medcards::suspend(app, incoming).await,
        Route::ExpireMedCard => medcards::expire(app, incoming).await,
        Route::AddBeneficiary => medcards::add_beneficiary(app, incoming).await,
        Route::RemoveBeneficiary => medcards::remove_beneficiary(app, incoming).await,
        Route::ChangeMedCardLimit => medcards::change_limit(app, incoming).await,
        Route::GetMedCard => medcards::get(app, incoming).await,
        Route::MedCardSpend => medcards::spend(app, incoming).await,
        Route::MedCardClaims => claims::of_medcard(app, incoming).await,
        Route::SubmitPrescriptionClaim => claims::submit(app, incoming).await,
        Route::GetClaim => claims::get(app, incoming).await,
        Route::PharmacyClaims => claims::of_pharmacy(app, incoming).await,
        Route::MyClaims => claims::of_holder(app, incoming).await,
        Route::SubmitInsuranceClaim => claims::submit_insurance(app, incoming).await,
        Route::ApproveInsuranceClaim => claims::approve_insurance(app, incoming).await,
        Route::RejectInsuranceClaim => claims::reject_insurance(app, incoming).await,
        Route::GetInsuranceClaim => claims::get_insurance(app, incoming).await,
        Route::Health => health(app).await,
    }
}

async fn health(app: &App) -> Result<StoredResponse, ApiError> {
    let components = app.health.components().await;
    let healthy = components.iter().all(|(_, ok, _)| *ok);
    let body = serde_json::json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "version": env!("CARGO_PKG_VERSION"),
        "components": components.into_iter().map(|(name, ok, details)| (name, serde_json::json!({"status": if ok { "healthy" } else { "unhealthy" }, "details": details}))).collect::<serde_json::Map<_, _>>(),
    });
    Ok(StoredResponse { status: if healthy { 200 } else { 503 }, body: body.to_string(), headers: vec![] })
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
