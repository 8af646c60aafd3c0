//! The functions' metrics, as CloudWatch Embedded Metric Format log lines: the
//! `metrics` facade's macros, recorded by `metrics_cloudwatch_embedded`'s collector
//! and flushed to stdout after each invocation (Lambda may freeze a container as soon
//! as its answer is out), where CloudWatch Logs turns them into metrics of the
//! namespace `HealthPay`. The names and labels (dimensions) are `shared::metrics`'s,
//! the same as the local server's `/metrics`.

use api::Route;
use shared::metrics::{self as names, Observation};
use shared::ports::RequestKind;
use std::sync::{Arc, OnceLock};

pub struct Emf {
    collector: &'static metrics_cloudwatch_embedded::Collector,
}

static EMF: OnceLock<Arc<Emf>> = OnceLock::new();

impl Emf {
    /// The process's collector, installed on first use as the `metrics` facade's
    /// recorder and as `shared::metrics`' (so the command service's conflicts, the
    /// projector's lag and parked records are counted too).
    pub fn get() -> Arc<Emf> {
        EMF.get_or_init(|| {
            let collector = metrics_cloudwatch_embedded::Builder::new()
                .cloudwatch_namespace(names::CLOUDWATCH_NAMESPACE)
                .init()
                .expect("the EMF collector is the process's only metrics recorder");
            for histogram in [names::COMMAND_DURATION, names::PROJECTION_LAG, names::SAGA_DURATION] {
                metrics::describe_histogram!(histogram, metrics::Unit::Seconds, "");
            }
            let emf = Arc::new(Emf { collector });
            shared::metrics::install(emf.clone());
            emf
        })
        .clone()
    }

    /// Writes what was recorded since the last flush, one JSON document per label set.
    pub fn flush_to(&self, out: impl std::io::Write) -> std::io::Result<()> {
        self.collector.flush(out)
    }

    /// Flushes to stdout (locked, so that no log line lands inside a document).
    pub fn flush(&self) {
        if let Err(error) = self.flush_to(std::io::stdout().lock()) {
            tracing::warn!(%error, "cannot write the invocation's metrics");
        }
    }
}

impl api::Metrics for Emf {
    fn request(&self, route: Route, outcome: &str, seconds: f64) {
        let outcome = outcome.to_string();
        if route.is_command() {
            metrics::counter!(names::COMMANDS, "route" => route.name(), "outcome" => outcome).increment(1);
            metrics::histogram!(names::COMMAND_DURATION, "route" => route.name()).record(seconds);
        } else {
            metrics::counter!(names::QUERIES, "route" => route.name(), "outcome" => outcome).increment(1);
        }
    }

    fn rate_limited(&self, route: Route, kind: RequestKind) {
        metrics::counter!(names::RATE_LIMITED, "route" => route.name(), "kind" => kind.as_str()).increment(1);
    }
}

impl names::Recorder for Emf {
    fn record(&self, observation: &Observation<'_>) {
        match *observation {
            Observation::ConcurrencyRetry => metrics::counter!(names::CONCURRENCY_RETRIES).increment(1),
            Observation::ConcurrencyConflict => metrics::counter!(names::CONCURRENCY_CONFLICTS).increment(1),
            Observation::Projected { lag_seconds } => metrics::histogram!(names::PROJECTION_LAG).record(lag_seconds),
            Observation::SagaFinished { saga, outcome, seconds } => {
                metrics::counter!(names::SAGAS, "saga" => saga.to_string(), "outcome" => outcome.to_string()).increment(1);
                metrics::histogram!(names::SAGA_DURATION, "saga" => saga.to_string()).record(seconds);
            }
            Observation::DeadLetterParked { consumer } => metrics::counter!(names::DEAD_LETTERS, "consumer" => consumer.to_string()).increment(1),
            Observation::FraudAlertRaised { rule } => metrics::counter!(names::FRAUD_ALERTS, "rule" => rule.to_string()).increment(1),
        }
    }
}
