//! The scheduled books check: EventBridge invokes it every hour; it runs
//! `shared::verify` (the checks of `healthpay verify`) over the events and
//! read-model tables, logs every finding, and publishes its numbers as metrics.
//!
//! The metrics go out in CloudWatch's embedded metric format: one JSON log line
//! that CloudWatch Logs turns into `VerifyFindings`, `VerifyDriftedAggregates` and
//! `VerifyUnaccounted` (minor units not accounted for, all currencies) in the
//! namespace `METRIC_NAMESPACE`, dimension `Stack`. No SDK call and no permission
//! beyond the log group's is needed. `template.yaml`'s `VerifyFindingsAlarm`
//! watches `VerifyFindings`, and treats a missing datapoint as breaching: a check
//! that stopped running (or keeps failing) alarms as well.
//!
//! The streams are listed by a scan of the events table that reads back only the
//! keys, then each stream is queried whole (several at once): about two reads of
//! the events table per run. A ledger too large for one invocation (15 minutes) is
//! checked with `healthpay verify --backend dynamodb` instead (see README).

use serde_json::{json, Value};
use shared::ports::{EventStore, ReadStore, StoreError};
use shared::verify::{verify, Options, Report};
use std::sync::Arc;

/// Streams read at once.
pub const CONCURRENCY: usize = 16;

/// The namespace when `METRIC_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "HealthPay/Ledger";

/// Checks the books of `streams`; answers the invocation's result and the metric
/// line to print.
pub async fn check(
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    streams: Vec<String>,
    now: chrono::DateTime<chrono::Utc>,
    namespace: &str,
    stack: &str,
) -> Result<(Value, String), StoreError> {
    let report = verify(events, Some(read), streams, Options::at(now), CONCURRENCY, &|_| {}).await?;
    for finding in &report.findings {
        tracing::error!(aggregate = %finding.aggregate, check = finding.check.as_str(), detail = %finding.detail, "the books drifted");
    }
    let summary = summary(&report);
    tracing::info!(streams = report.streams, events = report.events, findings = report.findings.len(), "books verified");
    Ok((summary, metric_line(&report, now, namespace, stack)))
}

fn summary(report: &Report) -> Value {
    json!({
        "clean": report.clean(),
        "streams": report.streams,
        "events": report.events,
        "findings": report.findings.len(),
        "drifted": report.drifted(),
        "unaccounted": unaccounted(report),
    })
}

fn unaccounted(report: &Report) -> i128 {
    report.books.values().map(|b| b.unaccounted().abs()).sum()
}

/// The embedded-metric-format line.
pub fn metric_line(report: &Report, now: chrono::DateTime<chrono::Utc>, namespace: &str, stack: &str) -> String {
    json!({
        "_aws": {
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Stack"]],
                "Metrics": [
                    {"Name": "VerifyFindings", "Unit": "Count"},
                    {"Name": "VerifyDriftedAggregates", "Unit": "Count"},
                    {"Name": "VerifyUnaccounted", "Unit": "None"},
                ],
            }],
        },
        "Stack": stack,
        "VerifyFindings": report.findings.len(),
        "VerifyDriftedAggregates": report.drifted().len(),
        "VerifyUnaccounted": unaccounted(report) as f64,
        "streams": report.streams,
        "events": report.events,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::clock::SystemClock;
    use shared::command::{CommandContext, CommandService};
    use shared::memory::{MemoryEventStore, MemoryReadStore};
    use shared::money::Money;
    use shared::ports::{EventFeed, WalletViews};
    use shared::wallet::{Wallet, WalletCommand};
    use uuid::Uuid;

    #[tokio::test]
    async fn the_schedule_sample_checks_the_books_and_publishes_what_it_found() {
        let _schedule: Value = crate::sample("verify-schedule.json");
        let events = Arc::new(MemoryEventStore::default());
        let read = Arc::new(MemoryReadStore::default());
        let commands = CommandService::new(events.clone(), Arc::new(SystemClock));
        let wallet = Uuid::now_v7();
        for command in [WalletCommand::open_personal(wallet, "alice", Money::from_minor(5_000)), WalletCommand::Activate] {
            commands.execute(&CommandContext::new("alice", "c"), async |uow| uow.handle::<Wallet>(wallet, &command).await).await.unwrap();
        }
        for (_, e) in events.read_after(0, 100).await.unwrap() {
            shared::projection::project(read.as_ref(), &e).await.unwrap();
        }
        let streams = vec![format!("wallet#{wallet}")];
        let now = chrono::Utc::now();
        let (answer, line) = check(events.clone(), read.clone(), streams.clone(), now, "HealthPay/test", "healthpay").await.unwrap();
        assert_eq!(answer, json!({"clean": true, "streams": 1, "events": 3, "findings": 0, "drifted": [], "unaccounted": 0}));
        let metric: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(metric["_aws"]["CloudWatchMetrics"][0]["Namespace"], "HealthPay/test");
        assert_eq!(
            (metric["Stack"].clone(), metric["VerifyFindings"].clone(), metric["_aws"]["Timestamp"].clone()),
            (json!("healthpay"), json!(0), json!(now.timestamp_millis()))
        );

        // Behind the ledger's back: the balance of its view.
        let mut view = read.wallet(wallet).await.unwrap().unwrap();
        view.balance = Money::from_minor(1);
        read.save_wallet(&view, view.version).await.unwrap();
        let (answer, line) = check(events, read, streams, now, "HealthPay/test", "healthpay").await.unwrap();
        assert_eq!((answer["clean"].clone(), answer["drifted"].clone()), (json!(false), json!([format!("wallet#{wallet}")])));
        let metric: Value = serde_json::from_str(&line).unwrap();
        assert_eq!((metric["VerifyFindings"].clone(), metric["VerifyDriftedAggregates"].clone()), (json!(1), json!(1)));
    }
}
