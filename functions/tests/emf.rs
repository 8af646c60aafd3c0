//! The functions' metrics are CloudWatch Embedded Metric Format: a route function's
//! requests, a rate-limited one and what the ledger records deep down (a concurrency
//! retry, a parked record, a fraud alert) come out of a flush as JSON documents that
//! name their metrics and dimensions under `_aws`, with the values beside them.

use api::auth::{with_caller, Caller};
use api::{App, HealthCheck, Route};
use async_trait::async_trait;
use functions::metrics::Emf;
use serde_json::{json, Value};
use shared::clock::SystemClock;
use shared::command::CommandService;
use shared::memory::{MemoryEventStore, MemoryReadStore};
use shared::metrics::{self as names, Observation};
use shared::ports::{OverLimit, RateLimiter, RequestKind, StoreError};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Healthy;
#[async_trait]
impl HealthCheck for Healthy {
    async fn components(&self) -> Vec<(String, bool, Value)> {
        vec![]
    }
}

/// Admits the first request and refuses the rest.
struct OneRequest(AtomicU32);
#[async_trait]
impl RateLimiter for OneRequest {
    async fn admit(&self, _: &str, _: RequestKind) -> Result<Result<(), OverLimit>, StoreError> {
        Ok(if self.0.fetch_add(1, Ordering::Relaxed) == 0 { Ok(()) } else { Err(OverLimit { retry_after: Duration::from_millis(300) }) })
    }
}

/// The flushed documents, each checked against the EMF specification's shape.
fn documents(emf: &Emf) -> Vec<Value> {
    let mut out = Vec::new();
    emf.flush_to(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    text.lines()
        .map(|line| {
            let document: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let directive = &document["_aws"]["CloudWatchMetrics"][0];
            assert!(document["_aws"]["Timestamp"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{line}");
            assert_eq!(directive["Namespace"], "HealthPay", "{line}");
            for dimension in directive["Dimensions"][0].as_array().unwrap() {
                assert!(document[dimension.as_str().unwrap()].is_string(), "dimension {dimension} has its value: {line}");
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                assert!(document[metric["Name"].as_str().unwrap()].is_number() || document[metric["Name"].as_str().unwrap()].is_array(), "{line}");
            }
            document
        })
        .collect()
}

/// The document holding `metric` with these dimension values.
fn find<'a>(documents: &'a [Value], metric: &str, dimensions: &[(&str, &str)]) -> &'a Value {
    documents
        .iter()
        .find(|d| {
            let names: Vec<&str> = d["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
            names.contains(&metric) && dimensions.iter().all(|(k, v)| d[*k] == *v)
        })
        .unwrap_or_else(|| panic!("no {metric} {dimensions:?} in {documents:#?}"))
}

#[tokio::test]
async fn a_route_function_writes_its_requests_and_the_ledgers_observations_as_emf() {
    let emf = Emf::get();
    let events = Arc::new(MemoryEventStore::default());
    let commands = Arc::new(CommandService::new(events, Arc::new(SystemClock)));
    let app = App::new(
        commands,
        Arc::new(MemoryReadStore::default()),
        emf.clone(),
        Arc::new(Healthy),
        Arc::new(OneRequest(AtomicU32::new(0))),
        shared::payment_expiry::DEFAULT_PAYMENT_EXPIRY,
    );
    let create = || {
        let mut request = lambda_http::Request::new(lambda_http::Body::Text(json!({"walletType": "personal"}).to_string()));
        *request.method_mut() = lambda_http::http::Method::POST;
        with_caller(request, &Caller::new("alice", [""; 0]).unwrap())
    };
    assert_eq!(api::handle(&app, Route::CreateWallet, create()).await.status(), 201);
    let refused = api::handle(&app, Route::CreateWallet, create()).await;
    assert_eq!((refused.status().as_u16(), refused.headers()["retry-after"].to_str().unwrap()), (429, "1"));
    shared::metrics::record(Observation::ConcurrencyRetry);
    shared::metrics::record(Observation::DeadLetterParked { consumer: "read-model-projector" });
    shared::metrics::fraud_alert_raised("velocity");

    let documents = documents(&emf);
    assert_eq!(find(&documents, names::COMMANDS, &[("route", "wallet.create"), ("outcome", "ok")])[names::COMMANDS], 1);
    assert_eq!(find(&documents, names::COMMANDS, &[("route", "wallet.create"), ("outcome", "RATE_LIMITED")])[names::COMMANDS], 1);
    assert_eq!(find(&documents, names::RATE_LIMITED, &[("route", "wallet.create"), ("kind", "command")])[names::RATE_LIMITED], 1);
    let latency = find(&documents, names::COMMAND_DURATION, &[("route", "wallet.create")]);
    assert_eq!(latency[names::COMMAND_DURATION].as_array().map(Vec::len), Some(2), "{latency}");
    let unit = latency["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().iter().find(|m| m["Name"] == names::COMMAND_DURATION).unwrap();
    assert_eq!(unit["Unit"], "Seconds");
    assert_eq!(find(&documents, names::CONCURRENCY_RETRIES, &[])[names::CONCURRENCY_RETRIES], 1);
    assert_eq!(find(&documents, names::DEAD_LETTERS, &[("consumer", "read-model-projector")])[names::DEAD_LETTERS], 1);
    assert_eq!(find(&documents, names::FRAUD_ALERTS, &[("rule", "velocity")])[names::FRAUD_ALERTS], 1);

    // A flush writes what happened since the last one: nothing now.
    assert!(self::documents(&emf).is_empty());
}
