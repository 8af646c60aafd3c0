//! `GET /metrics` in Prometheus text format: commands by type and outcome, their
//! latency, rate-limited requests, concurrency retries and conflicts, projection lag,
//! saga outcomes and durations, fraud alerts, how far each feed consumer
//! (projections, saga starter) lags, and with `--backend dynamodb` the DynamoDB
//! requests each client has sent. The names, and what each means, are
//! `shared::metrics`'s (the Lambda functions report the same ones to CloudWatch).

use api::Route;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use shared::metrics::{self as names, Observation};
use shared::ports::RequestKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    route: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabel {
    consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabel {
    client: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitedLabel {
    route: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SagaOutcome {
    saga: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SagaLabel {
    saga: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    commands: Family<Outcome, Counter>,
    command_seconds: Family<RouteLabel, Histogram>,
    queries: Family<Outcome, Counter>,
    lag_events: Family<ConsumerLabel, Gauge>,
    projection_lag_seconds: Histogram,
    /// Read at scrape time: (consumer, its position, the log head).
    positions: Mutex<Vec<(String, Arc<AtomicU64>)>>,
    head: Mutex<Option<tokio::sync::watch::Receiver<u64>>>,
    rate_limited: Family<LimitedLabel, Counter>,
    concurrency_retries: Counter,
    concurrency_conflicts: Counter,
    sagas: Family<SagaOutcome, Counter>,
    saga_seconds: Family<SagaLabel, Histogram>,
    dead_letters: Family<ConsumerLabel, Counter>,
    fraud_alerts: Family<RuleLabel, Counter>,
    dynamodb_requests: Family<ClientLabel, Counter>,
    /// Read at scrape time: (client, the SDK interceptor counting its requests).
    dynamodb_counters: Mutex<Vec<(String, store_dynamodb::RequestCounter)>>,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~6.5 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

fn saga_histogram() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        let commands = Family::<Outcome, Counter>::default();
        let command_seconds = Family::<RouteLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let queries = Family::<Outcome, Counter>::default();
        let lag_events = Family::<ConsumerLabel, Gauge>::default();
        let projection_lag_seconds = latency_histogram();
        let mut registry = Registry::with_prefix("healthpay");
        registry.register(names::COMMANDS, "Commands handled, by command and outcome (ok or the error code)", commands.clone());
        registry.register(names::COMMAND_DURATION, "Command latency, request in to answer out", command_seconds.clone());
        registry.register(names::QUERIES, "Queries handled, by route and outcome", queries.clone());
        registry.register(names::FEED_LAG_EVENTS, "Events appended but not yet handled, by feed consumer", lag_events.clone());
        registry.register(names::PROJECTION_LAG, "Time from an event's append to its projection", projection_lag_seconds.clone());
        let rate_limited = Family::<LimitedLabel, Counter>::default();
        registry.register(
            names::RATE_LIMITED,
            "Requests refused 429 for their caller's rate limit, by route and kind (command or query)",
            rate_limited.clone(),
        );
        let (concurrency_retries, concurrency_conflicts) = (Counter::default(), Counter::default());
        registry.register(
            names::CONCURRENCY_RETRIES,
            "Commands decided again after another command appended to their aggregate first",
            concurrency_retries.clone(),
        );
        registry.register(names::CONCURRENCY_CONFLICTS, "Commands that gave up on concurrency conflicts (answered 409)", concurrency_conflicts.clone());
        let sagas = Family::<SagaOutcome, Counter>::default();
        registry.register(names::SAGAS, "Saga executions finished, by state machine and the state they ended in", sagas.clone());
        let saga_seconds = Family::<SagaLabel, Histogram>::new_with_constructor(saga_histogram as fn() -> Histogram);
        registry.register(names::SAGA_DURATION, "Saga executions' start to end", saga_seconds.clone());
        let dead_letters = Family::<ConsumerLabel, Counter>::default();
        registry.register(names::DEAD_LETTERS, "Bus records parked in the dead-letter queue, by consumer", dead_letters.clone());
        let fraud_alerts = Family::<RuleLabel, Counter>::default();
        registry.register(names::FRAUD_ALERTS, "Fraud alerts raised, by rule", fraud_alerts.clone());
        Metrics {
            registry: Mutex::new(registry),
            commands,
            command_seconds,
            queries,
            lag_events,
            projection_lag_seconds,
            rate_limited,
            concurrency_retries,
            concurrency_conflicts,
            sagas,
            saga_seconds,
            dead_letters,
            fraud_alerts,
            positions: Mutex::default(),
            head: Mutex::default(),
            dynamodb_requests: Family::default(),
            dynamodb_counters: Mutex::default(),
        }
    }

    pub fn watch_feed(&self, head: tokio::sync::watch::Receiver<u64>, consumers: Vec<(String, Arc<AtomicU64>)>) {
        *self.head.lock().unwrap() = Some(head);
        *self.positions.lock().unwrap() = consumers;
    }

    /// Exposes `healthpay_dynamodb_requests_total{client=…}`: every request each
    /// named client sent, counted by its SDK interceptor (one per HTTP attempt, so
    /// SDK retries count too). Only servers with DynamoDB clients call this.
    pub fn count_dynamodb_requests(&self, counters: Vec<(String, store_dynamodb::RequestCounter)>) {
        self.registry.lock().unwrap().register(
            names::DYNAMODB_REQUESTS,
            "DynamoDB requests sent, by client: commands (event store: command loads, appends, idempotency lookups, saga steps, temporal balance), \
             read (read models and saga executions), streams (the events table's stream)",
            self.dynamodb_requests.clone(),
        );
        *self.dynamodb_counters.lock().unwrap() = counters;
    }

    pub fn projected(&self, lag_seconds: f64) {
        self.projection_lag_seconds.observe(lag_seconds.max(0.0));
    }

    pub fn render(&self) -> String {
        if let Some(head) = self.head.lock().unwrap().as_ref() {
            let head = *head.borrow();
            for (consumer, position) in self.positions.lock().unwrap().iter() {
                let lag = head.saturating_sub(position.load(Ordering::Relaxed));
                self.lag_events.get_or_create(&ConsumerLabel { consumer: consumer.clone() }).set(lag as i64);
            }
        }
        for (client, counter) in self.dynamodb_counters.lock().unwrap().iter() {
            let exposed = self.dynamodb_requests.get_or_create(&ClientLabel { client: client.clone() });
            exposed.inc_by(counter.get().saturating_sub(exposed.get()));
        }
        let mut text = String::new();
        encode(&mut text, &self.registry.lock().unwrap()).expect("writing to a String cannot fail");
        text
    }
}

impl names::Recorder for Metrics {
    fn record(&self, observation: &Observation<'_>) {
        match *observation {
            Observation::ConcurrencyRetry => {
                self.concurrency_retries.inc();
            }
            Observation::ConcurrencyConflict => {
                self.concurrency_conflicts.inc();
            }
            Observation::Projected { lag_seconds } => self.projected(lag_seconds),
            Observation::SagaFinished { saga, outcome, seconds } => {
                self.sagas.get_or_create(&SagaOutcome { saga: saga.into(), outcome: outcome.into() }).inc();
                self.saga_seconds.get_or_create(&SagaLabel { saga: saga.into() }).observe(seconds);
            }
            Observation::DeadLetterParked { consumer } => {
                self.dead_letters.get_or_create(&ConsumerLabel { consumer: consumer.into() }).inc();
            }
            Observation::FraudAlertRaised { rule } => {
                self.fraud_alerts.get_or_create(&RuleLabel { rule: rule.into() }).inc();
            }
        }
    }
}

impl api::Metrics for Metrics {
    fn rate_limited(&self, route: Route, kind: RequestKind) {
        self.rate_limited.get_or_create(&LimitedLabel { route: route.name().into(), kind: kind.as_str().into() }).inc();
    }

    fn request(&self, route: Route, outcome: &str, seconds: f64) {
        let labels = Outcome { route: route.name().into(), outcome: outcome.into() };
        if route.is_command() {
            self.commands.get_or_create(&labels).inc();
            self.command_seconds.get_or_create(&RouteLabel { route: route.name().into() }).observe(seconds);
        } else {
            self.queries.get_or_create(&labels).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamodb_requests_show_only_when_counted_and_follow_the_interceptors() {
        let metrics = Metrics::new();
        assert!(!metrics.render().contains("dynamodb_requests"), "not on the embedded backends");
        let (commands, read) = (store_dynamodb::RequestCounter::new(), store_dynamodb::RequestCounter::new());
        metrics.count_dynamodb_requests(vec![("commands".into(), commands.clone()), ("read".into(), read.clone())]);
        commands.0.fetch_add(3, Ordering::Relaxed);
        assert!(metrics.render().contains("healthpay_dynamodb_requests_total{client=\"commands\"} 3\n"), "{}", metrics.render());
        commands.0.fetch_add(2, Ordering::Relaxed);
        read.0.fetch_add(1, Ordering::Relaxed);
        let text = metrics.render();
        assert!(text.contains("healthpay_dynamodb_requests_total{client=\"commands\"} 5\n"), "{text}");
        assert!(text.contains("healthpay_dynamodb_requests_total{client=\"read\"} 1\n"), "{text}");
    }
}
