//! `GET /metrics` in Prometheus text format: commands by type and outcome, their
//! latency, and how far each feed consumer (projections, saga starter) lags.

use api::Route;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
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
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~6.5 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

impl Metrics {
    pub fn new() -> Self {
        let commands = Family::<Outcome, Counter>::default();
        let command_seconds = Family::<RouteLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let queries = Family::<Outcome, Counter>::default();
        let lag_events = Family::<ConsumerLabel, Gauge>::default();
        let projection_lag_seconds = latency_histogram();
        let mut registry = Registry::with_prefix("healthpay");
        registry.register("commands", "Commands handled, by command and outcome (ok or the error code)", commands.clone());
        registry.register("command_duration_seconds", "Command latency, request in to answer out", command_seconds.clone());
        registry.register("queries", "Queries handled, by route and outcome", queries.clone());
        registry.register("feed_lag_events", "Events appended but not yet handled, by feed consumer", lag_events.clone());
        registry.register("projection_lag_seconds", "Time from an event's append to its projection", projection_lag_seconds.clone());
        Metrics {
            registry: Mutex::new(registry),
            commands,
            command_seconds,
            queries,
            lag_events,
            projection_lag_seconds,
            positions: Mutex::default(),
            head: Mutex::default(),
        }
    }

    pub fn watch_feed(&self, head: tokio::sync::watch::Receiver<u64>, consumers: Vec<(String, Arc<AtomicU64>)>) {
        *self.head.lock().unwrap() = Some(head);
        *self.positions.lock().unwrap() = consumers;
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
        let mut text = String::new();
        encode(&mut text, &self.registry.lock().unwrap()).expect("writing to a String cannot fail");
        text
    }
}

impl api::Metrics for Metrics {
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
