//! What the ledger measures, named once for both runtimes.
//!
//! The local server exposes these on `GET /metrics` (Prometheus/OpenMetrics text, as
//! `healthpay_<name>`, counters with `_total`; `src/metrics.rs`); the Lambda functions
//! write them as CloudWatch Embedded Metric Format log lines (namespace
//! [`CLOUDWATCH_NAMESPACE`], the labels as dimensions; `functions/src/metrics.rs`).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | [`COMMANDS`] | counter | `route`, `outcome` | commands answered, `ok` or the error code |
//! | [`COMMAND_DURATION`] | histogram | `route` | a command's latency, request in to answer out (seconds) |
//! | [`QUERIES`] | counter | `route`, `outcome` | queries answered |
//! | [`RATE_LIMITED`] | counter | `route`, `kind` | requests refused 429 for their caller's limit (`command` or `query`) |
//! | [`CONCURRENCY_RETRIES`] | counter | | commands decided again after another one appended first |
//! | [`CONCURRENCY_CONFLICTS`] | counter | | commands that gave up on conflicts (answered 409) |
//! | [`PROJECTION_LAG`] | histogram | | an event's append to its projection (seconds) |
//! | [`SAGAS`] | counter | `saga`, `outcome` | saga executions finished, by the state they ended in (local runner; on AWS Step Functions' own `AWS/States` metrics) |
//! | [`SAGA_DURATION`] | histogram | `saga` | a saga execution's start to its end (seconds; same) |
//! | [`DEAD_LETTERS`] | counter | `consumer` | bus records parked in the dead-letter queue (AWS: the local feed retries instead) |
//! | [`FRAUD_ALERTS`] | counter | `rule` | fraud alerts raised ([`fraud_alert_raised`]) |
//! | [`FEED_LAG_EVENTS`] | gauge | `consumer` | local server: events appended but not yet handled, per feed consumer |
//! | [`DYNAMODB_REQUESTS`] | counter | `client` | local server with `--backend dynamodb`: requests each DynamoDB client sent |
//!
//! Code deep in the ledger (the command service, the saga runner, the fraud
//! consumer, the dead-letter queue) reports through [`record`], to the [`Recorder`]
//! its process [`install`]ed (nothing is recorded without one, as in tests). The
//! HTTP edge's requests go through `api::Metrics`, to the same recorder objects.

use std::sync::{Arc, OnceLock};

pub const CLOUDWATCH_NAMESPACE: &str = "HealthPay";

pub const COMMANDS: &str = "commands";
pub const COMMAND_DURATION: &str = "command_duration_seconds";
pub const QUERIES: &str = "queries";
pub const RATE_LIMITED: &str = "rate_limited_requests";
pub const CONCURRENCY_RETRIES: &str = "concurrency_retries";
pub const CONCURRENCY_CONFLICTS: &str = "concurrency_conflicts";
pub const PROJECTION_LAG: &str = "projection_lag_seconds";
pub const SAGAS: &str = "sagas";
pub const SAGA_DURATION: &str = "saga_duration_seconds";
pub const DEAD_LETTERS: &str = "dead_letters_parked";
pub const FRAUD_ALERTS: &str = "fraud_alerts";
pub const FEED_LAG_EVENTS: &str = "feed_lag_events";
pub const DYNAMODB_REQUESTS: &str = "dynamodb_requests";

/// One thing worth counting, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation<'a> {
    /// A command lost a race on an aggregate's version and is decided again.
    ConcurrencyRetry,
    /// A command gave up after conflicting on every attempt.
    ConcurrencyConflict,
    Projected {
        lag_seconds: f64,
    },
    SagaFinished {
        saga: &'a str,
        outcome: &'a str,
        seconds: f64,
    },
    DeadLetterParked {
        consumer: &'a str,
    },
    FraudAlertRaised {
        rule: &'a str,
    },
}

pub trait Recorder: Send + Sync {
    fn record(&self, observation: &Observation<'_>);
}

static RECORDER: OnceLock<Arc<dyn Recorder>> = OnceLock::new();

/// Makes `recorder` the process's; `false` if one was installed already (it stays).
pub fn install(recorder: Arc<dyn Recorder>) -> bool {
    RECORDER.set(recorder).is_ok()
}

pub fn record(observation: Observation<'_>) {
    if let Some(recorder) = RECORDER.get() {
        recorder.record(&observation);
    }
}

/// One fraud alert raised by `rule` (`velocity`, `high_value`, `new_wallet_outflow`):
/// the fraud detector calls it (`shared::fraud::detector`) as it raises a new alert, on
/// both runtimes. Counted as [`FRAUD_ALERTS`].
pub fn fraud_alert_raised(rule: &str) {
    record(Observation::FraudAlertRaised { rule });
}
