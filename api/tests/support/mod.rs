//! An in-process ledger for the HTTP edge's tests: the routes served by
//! [`api::handle`] over the in-memory stores, with the projections run on demand.
//! Requests arrive as API Gateway hands them to a function: the authorizer context
//! already attached (see `api::auth::with_caller`), or none at all.

#![allow(dead_code)]

use api::auth::{with_caller, Caller};
use api::{handle, App, HealthCheck, NoMetrics, Route};
use lambda_http::RequestExt;
use serde_json::{json, Value};
use shared::clock::ManualClock;
use shared::command::CommandService;
use shared::memory::{MemoryEventStore, MemoryReadStore};
use shared::ports::EventFeed;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct NoHealth;
#[async_trait::async_trait]
impl HealthCheck for NoHealth {
    async fn components(&self) -> Vec<(String, bool, Value)> {
        vec![]
    }
}

pub struct World {
    pub app: App,
    pub events: Arc<MemoryEventStore>,
    pub read: Arc<MemoryReadStore>,
    pub clock: Arc<ManualClock>,
    projected: AtomicU64,
}

pub fn caller(sub: &str, roles: &[&str]) -> Caller {
    Caller::new(sub, roles.iter().copied()).expect("a valid test caller")
}

impl World {
    pub fn new() -> World {
        let events = Arc::new(MemoryEventStore::default());
        let read = Arc::new(MemoryReadStore::default());
        let clock = Arc::new(ManualClock::at(chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap().to_utc()));
        let commands = Arc::new(CommandService::new(events.clone(), clock.clone()));
        let app = App::new(commands, read.clone(), Arc::new(NoMetrics), Arc::new(NoHealth), chrono::Duration::hours(1));
        World { app, events, read, clock, projected: AtomicU64::new(0) }
    }

    /// Calls `route` as `who` (no authorizer context when `None`) and projects what it appended.
    pub async fn call(&self, route: Route, who: Option<&Caller>, params: &[(&str, &str)], body: Value) -> (u16, Value) {
        let text = if body.is_null() { String::new() } else { body.to_string() };
        self.call_raw(route, who, params, text).await
    }

    /// `call` with the body as sent, byte for byte.
    pub async fn call_raw(&self, route: Route, who: Option<&Caller>, params: &[(&str, &str)], text: String) -> (u16, Value) {
        let mut request = lambda_http::Request::new(lambda_http::Body::Text(text));
        *request.method_mut() = route.method().parse().unwrap();
        *request.uri_mut() = route.path().parse().unwrap();
        let params: HashMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut request = request.with_path_parameters(params);
        if let Some(who) = who {
            request = with_caller(request, who);
        }
        let response = handle(&self.app, route, request).await;
        self.project().await;
        let body = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
        (response.status().as_u16(), body)
    }

    /// `call` that must answer `status`; returns the body.
    pub async fn expect(&self, status: u16, route: Route, who: &Caller, params: &[(&str, &str)], body: Value) -> Value {
        let (got, body) = self.call(route, Some(who), params, body).await;
        assert_eq!(got, status, "{} as {}: {body}", route.name(), who.sub);
        body
    }

    pub async fn project(&self) {
        let after = self.projected.load(Ordering::SeqCst);
        for (position, envelope) in self.events.read_after(after, 100_000).await.unwrap() {
            shared::projection::project(self.read.as_ref(), &envelope).await.unwrap();
            self.projected.store(position, Ordering::SeqCst);
        }
    }

    /// Every event appended so far.
    pub async fn event_count(&self) -> usize {
        self.events.read_after(0, 1_000_000).await.unwrap().len()
    }

    /// An open fraud alert on `wallet` (high value: it does not suspend), raised as
    /// the detector raises one; its id.
    pub async fn fraud_alert(&self, wallet: &str) -> String {
        use shared::clock::Clock;
        let now = self.clock.now();
        let finding = shared::fraud::Finding {
            wallet_id: wallet.parse().unwrap(),
            rule: shared::fraud::Rule::HighValue,
            severity: shared::fraud::Rule::HighValue.severity(),
            window_start: now,
            window_end: now,
            observed_count: 1,
            observed_amount: shared::money::Money::from_minor(1_000_000),
            threshold: "one outgoing movement of 10000.00 or more".into(),
            trigger_event_id: uuid::Uuid::now_v7(),
        };
        let context = shared::command::CommandContext::new(shared::app::FRAUD_DETECTOR, "test");
        self.app.ledger.raise_fraud_alert(&finding, &context).await.unwrap();
        self.project().await;
        finding.alert_id().to_string()
    }

    /// An active wallet of `owner` holding `funds` (major units).
    pub async fn wallet(&self, owner: &Caller, wallet_type: &str, funds: u64) -> String {
        let created = self.expect(201, Route::CreateWallet, owner, &[], json!({"walletType": wallet_type, "initialBalance": funds})).await;
        let id = created["walletId"].as_str().unwrap().to_string();
        self.expect(200, Route::ActivateWallet, owner, &[("walletId", &id)], Value::Null).await;
        id
    }

    /// An active card of `holder`, sponsored by `insurer`'s wallet, with `holder` as its beneficiary.
    pub async fn card(&self, insurer: &Caller, sponsor_wallet: &str, holder: &Caller, coverage: u8) -> (String, String) {
        let issued = self
            .expect(
                201,
                Route::IssueMedCard,
                insurer,
                &[],
                json!({"holderId": holder.sub, "sponsorWalletId": sponsor_wallet, "planName": "Gold", "coveragePercent": coverage,
                       "monthlyLimit": 1000, "expiresAt": "2035-01-01T00:00:00Z"}),
            )
            .await;
        let card = issued["medcardId"].as_str().unwrap().to_string();
        self.expect(200, Route::ActivateMedCard, insurer, &[("medcardId", &card)], Value::Null).await;
        let beneficiary = uuid::Uuid::now_v7().to_string();
        self.expect(200, Route::AddBeneficiary, holder, &[("medcardId", &card)], json!({"beneficiaryId": beneficiary, "name": "Self", "relationship": "self"}))
            .await;
        (card, beneficiary)
    }

    pub async fn balance(&self, wallet: &str) -> Value {
        let admin = caller("root", &["admin"]);
        self.expect(200, Route::GetWallet, &admin, &[("walletId", wallet)], Value::Null).await["balance"].clone()
    }
}
