//! The fraud detector: a consumer of the event bus (the local server's event feed; a
//! Kinesis-triggered function on AWS) that folds each wallet's outgoing movements
//! into its [`WalletWatch`] and raises what the rules find through the application
//! layer ([`Ledger::raise_fraud_alert`]).
//!
//! Each wallet's watch is a read-store document (kind [`WATCH_KIND`]), written only
//! over the version it was read at, after the alerts it led to are committed:
//! - a redelivered event is at or below the watch's version and changes nothing;
//! - a crash between the alert and the watch's write redelivers the event, which
//!   finds the same alert (its id is derived, and raising it again records nothing);
//! - events the rules do not look at (credits, holds, …) cost no store access at all.
//!
//! Ordering: the bus delivers a wallet's events in order. The one exception, a
//! publisher retrying part of a batch, can deliver an older movement after a newer
//! one; the watch then counts it as seen and the rules may miss it (a missed count,
//! never a second alert or a wrong balance).

use super::{is_watched, FraudRules, WalletWatch};
use crate::aggregate::Aggregate;
use crate::app::{Ledger, Raised, FRAUD_DETECTOR};
use crate::command::{CommandContext, CommandError};
use crate::envelope::EventEnvelope;
use crate::ports::{Document, ReadStore, StoreError};
use crate::projection::feed::FeedConsumer;
use crate::wallet::{Wallet, WalletEvent};
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;

/// The read-store document kind of the wallets' watches.
pub const WATCH_KIND: &str = "fraud-watch";

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The event can never be read: retrying will not help.
    #[error("{stream_id} v{version}: cannot read {event_type}: {reason}")]
    Undecodable { stream_id: String, version: u64, event_type: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("raising a fraud alert: {0}")]
    Command(#[from] CommandError),
}

impl DetectError {
    /// Whether retrying the same event can succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, DetectError::Undecodable { .. } | DetectError::Command(CommandError::Refused(_)))
    }
}

pub struct FraudDetector {
    ledger: Arc<Ledger>,
    read: Arc<dyn ReadStore>,
    rules: FraudRules,
}

impl FraudDetector {
    pub fn new(ledger: Arc<Ledger>, read: Arc<dyn ReadStore>, rules: FraudRules) -> Self {
        FraudDetector { ledger, read, rules }
    }

    pub fn rules(&self) -> &FraudRules {
        &self.rules
    }

    /// Folds one event in and raises what it makes fire; returns what was raised.
    pub async fn inspect(&self, envelope: &EventEnvelope) -> Result<Vec<Raised>, DetectError> {
        if envelope.aggregate_type != Wallet::TYPE {
            return Ok(vec![]);
        }
        let event: WalletEvent = envelope.decode().map_err(|e| DetectError::Undecodable {
            stream_id: envelope.stream_id(),
            version: envelope.version,
            event_type: envelope.event_type.clone(),
            reason: e.to_string(),
        })?;
        if !is_watched(&event) {
            return Ok(vec![]);
        }
        let wallet_id = envelope.aggregate_id;
        let stored = self.read.document(WATCH_KIND, wallet_id).await?;
        let mut watch: WalletWatch = match &stored {
            None => WalletWatch::default(),
            Some(document) => {
                WalletWatch::deserialize(&document.body).map_err(|e| StoreError::new(format!("corrupt {WATCH_KIND} document {wallet_id}: {e}")))?
            }
        };
        if envelope.version <= watch.version {
            return Ok(vec![]);
        }
        let findings = watch.observe(&self.rules, wallet_id, envelope.version, envelope.event_id, envelope.occurred_at, &event);
        let mut raised = Vec::with_capacity(findings.len());
        for finding in &findings {
            let mut context = CommandContext::new(FRAUD_DETECTOR, envelope.metadata.correlation_id.clone());
            context.causation_id = Some(format!("event:{}", envelope.event_id));
            let outcome = self.ledger.raise_fraud_alert(finding, &context).await?;
            if let Raised::New { alert_id, suspended } = outcome {
                tracing::warn!(%alert_id, wallet_id = %finding.wallet_id, rule = finding.rule.as_str(), suspended, "fraud alert raised");
                crate::metrics::fraud_alert_raised(finding.rule.as_str());
            }
            raised.push(outcome);
        }
        let body = serde_json::to_value(&watch).map_err(|e| StoreError::new(format!("encoding a {WATCH_KIND} document: {e}")))?;
        let document = Document { id: wallet_id, version: envelope.version, body, listings: vec![] };
        // Stale: another detector instance saved this event (or a later one) first;
        // the alerts it found are the same ones.
        self.read.save_document(WATCH_KIND, &document, stored.as_ref()).await?;
        Ok(raised)
    }
}

#[async_trait]
impl FeedConsumer for FraudDetector {
    fn name(&self) -> &'static str {
        "fraud-detector"
    }

    async fn handle(&self, envelope: &EventEnvelope) -> Result<(), String> {
        match self.inspect(envelope).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => {
                tracing::error!(%error, "fraud detector: skipping an event it can never handle");
                Ok(())
            }
            Err(error) => Err(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Call, Caller, WalletOpening};
    use crate::clock::ManualClock;
    use crate::command::CommandService;
    use crate::fraud::alert::{FraudAlert, Resolution};
    use crate::fraud::Rule;
    use crate::ids::{FraudAlertId, WalletId};
    use crate::memory::{MemoryEventStore, MemoryReadStore};
    use crate::money::{Currency, Money};
    use crate::ports::{DocumentViews, EventFeed, EventStore};
    use crate::projection::fraud::{filtered_list, FraudAlertView};
    use crate::projection::{project, view_of, DocumentView};
    use crate::wallet::{DebitType, KycLevel, Movement, WalletCommand, WalletStatus, WalletType};

    struct World {
        events: Arc<MemoryEventStore>,
        read: Arc<MemoryReadStore>,
        clock: Arc<ManualClock>,
        ledger: Arc<Ledger>,
        detector: FraudDetector,
        alice: Caller,
        admin: Caller,
    }

    fn call<R>() -> Call<'static, R> {
        Call::once(CommandContext::new("test", "test"))
    }

    fn egp(major: i64) -> Money {
        Money::from_minor(major * 100)
    }

    fn world() -> World {
        let events = Arc::new(MemoryEventStore::default());
        let read = Arc::new(MemoryReadStore::default());
        let clock = Arc::new(ManualClock::at(chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().to_utc()));
        let ledger = Arc::new(Ledger::new(Arc::new(CommandService::new(events.clone(), clock.clone())), chrono::Duration::hours(1)));
        let detector = FraudDetector::new(ledger.clone(), read.clone(), FraudRules::default());
        World { events, read, clock, ledger, detector, alice: Caller::new("alice", ["x"; 0]).unwrap(), admin: Caller::new("ops", ["admin"]).unwrap() }
    }

    impl World {
        /// A new active wallet of alice's with `funds`.
        async fn wallet(&self, funds: i64) -> WalletId {
            let opening =
                WalletOpening { wallet_type: WalletType::Personal, currency: Currency::egp(), kyc_level: KycLevel::Basic, initial_balance: egp(funds) };
            let created = self.ledger.create_wallet(&self.alice, opening, &call()).await.unwrap().done().unwrap();
            let id = WalletId(created.state.open().unwrap().id);
            self.ledger.on_wallet(&self.alice, id, WalletCommand::Activate, &call()).await.unwrap();
            id
        }

        async fn withdraw(&self, wallet: WalletId, major: i64) -> Result<(), CommandError> {
            let movement = Movement { amount: egp(major), transaction_type: DebitType::Withdrawal, reference: "atm".into(), description: None, currency: None };
            self.ledger.on_wallet(&self.alice, wallet, WalletCommand::Debit(movement), &call()).await.map(|_| ())
        }

        async fn feed(&self) -> Vec<EventEnvelope> {
            self.events.read_after(0, usize::MAX).await.unwrap().into_iter().map(|(_, e)| e).collect()
        }

        /// Delivers the whole feed to the detector (and the read models); what it raised.
        async fn deliver(&self, events: &[EventEnvelope]) -> Vec<Raised> {
            let mut raised = Vec::new();
            for event in events {
                raised.extend(self.detector.inspect(event).await.unwrap());
            }
            for event in self.feed().await {
                project(self.read.as_ref(), &event).await.unwrap();
            }
            raised.into_iter().filter(|r| matches!(r, Raised::New { .. })).collect()
        }

        async fn status(&self, wallet: WalletId) -> WalletStatus {
            let stream = crate::envelope::stream_id(Wallet::TYPE, wallet.uuid());
            let history = self.events.load(&stream, 0).await.unwrap();
            let state = history.iter().fold(Wallet::default(), |state, e| state.apply(&e.decode::<WalletEvent>().unwrap()));
            state.open().unwrap().status
        }

        async fn alerts(&self, wallet: WalletId) -> Vec<FraudAlertView> {
            let page = self.read.listed(FraudAlertView::KIND, &filtered_list(Some(wallet.uuid()), None), 100, None).await.unwrap();
            page.documents.into_iter().map(|d| view_of::<FraudAlertView>(d.clone(), d.id).unwrap()).collect()
        }
    }

    #[tokio::test]
    async fn a_burst_of_withdrawals_raises_one_alert_and_suspends_the_wallet() {
        let w = world();
        let wallet = w.wallet(500).await;
        for _ in 0..11 {
            w.clock.advance(chrono::Duration::seconds(1));
            w.withdraw(wallet, 1).await.unwrap();
        }
        let raised = w.deliver(&w.feed().await).await;
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert!(matches!(raised[0], Raised::New { suspended: true, .. }));
        assert_eq!(w.status(wallet).await, WalletStatus::Suspended);
        let suspension = w.feed().await.into_iter().rev().find(|e| e.event_type == "WalletSuspended").unwrap();
        assert_eq!(suspension.data["reason"], "fraud: velocity");
        assert_eq!(suspension.metadata.user_id, FRAUD_DETECTOR);
        let alerts = w.alerts(wallet).await;
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].finding.rule, alerts[0].finding.observed_count, alerts[0].suspended_wallet, alerts[0].status.as_str()),
            (Rule::Velocity, 11, true, "OPEN")
        );
        assert_eq!(w.withdraw(wallet, 1).await.unwrap_err().to_string(), format!("wallet {} is suspended, the command needs an active wallet", wallet));
    }

    #[tokio::test]
    async fn the_same_events_delivered_again_raise_nothing_more() {
        let w = world();
        let wallet = w.wallet(500).await;
        for _ in 0..12 {
            w.withdraw(wallet, 1).await.unwrap();
        }
        let feed = w.feed().await;
        assert_eq!(w.deliver(&feed).await.len(), 1);
        let committed = w.feed().await.len();
        assert!(w.deliver(&feed).await.is_empty(), "a redelivered batch");
        assert_eq!(w.feed().await.len(), committed, "nothing was recorded");
        assert_eq!(w.alerts(wallet).await.len(), 1);
    }

    #[tokio::test]
    async fn a_replay_from_scratch_does_not_suspend_a_wallet_an_admin_reactivated() {
        let w = world();
        let wallet = w.wallet(500).await;
        for _ in 0..11 {
            w.withdraw(wallet, 1).await.unwrap();
        }
        assert_eq!(w.deliver(&w.feed().await).await.len(), 1);
        let alert = FraudAlertId(w.alerts(wallet).await[0].alert_id);
        w.ledger.resolve_fraud_alert(&w.admin, alert, Resolution::FalsePositive, Some("her own ATM run".into()), &call()).await.unwrap();
        w.ledger.on_wallet(&w.admin, wallet, WalletCommand::Activate, &call()).await.unwrap();
        // The detector's memory is lost (a rebuild) and the whole log comes again.
        let fresh = FraudDetector::new(w.ledger.clone(), Arc::new(MemoryReadStore::default()), FraudRules::default());
        for event in w.feed().await {
            assert!(fresh.inspect(&event).await.unwrap().iter().all(|r| *r == Raised::AlreadyRaised));
        }
        assert_eq!(w.status(wallet).await, WalletStatus::Active);
    }

    #[tokio::test]
    async fn everyday_traffic_raises_nothing() {
        let w = world();
        let wallet = w.wallet(900).await;
        for _ in 0..10 {
            w.clock.advance(chrono::Duration::seconds(30));
            w.withdraw(wallet, 50).await.unwrap();
        }
        assert!(w.deliver(&w.feed().await).await.is_empty());
        assert_eq!(w.status(wallet).await, WalletStatus::Active);
    }

    #[tokio::test]
    async fn a_large_movement_asks_for_review_without_suspending() {
        let w = world();
        let wallet = w.wallet(20_000).await;
        w.clock.advance(chrono::Duration::days(2));
        w.withdraw(wallet, 10_000).await.unwrap();
        let raised = w.deliver(&w.feed().await).await;
        assert!(matches!(raised[..], [Raised::New { suspended: false, .. }]), "{raised:?}");
        assert_eq!(w.status(wallet).await, WalletStatus::Active);
        assert_eq!(w.alerts(wallet).await[0].finding.rule, Rule::HighValue);
    }

    #[tokio::test]
    async fn only_an_admin_resolves_an_alert_and_only_once() {
        let w = world();
        let wallet = w.wallet(5_000).await;
        w.withdraw(wallet, 1_500).await.unwrap();
        assert_eq!(w.deliver(&w.feed().await).await.len(), 1, "new wallet, large outflow");
        assert_eq!(w.status(wallet).await, WalletStatus::Suspended);
        let alert = FraudAlertId(w.alerts(wallet).await[0].alert_id);
        let before = w.feed().await.len();
        let refused = w.ledger.resolve_fraud_alert(&w.alice, alert, Resolution::FalsePositive, None, &call()).await;
        assert!(matches!(refused, Err(CommandError::Refused(crate::error::DomainError::Forbidden(_)))), "{refused:?}");
        assert_eq!(w.feed().await.len(), before, "a refusal records nothing");
        let resolved = w.ledger.resolve_fraud_alert(&w.admin, alert, Resolution::ConfirmedFraud, None, &call()).await.unwrap().done().unwrap();
        assert!(matches!(resolved.state, FraudAlert::Resolved { resolution: Resolution::ConfirmedFraud, .. }));
        let again = w.ledger.resolve_fraud_alert(&w.admin, alert, Resolution::FalsePositive, None, &call()).await;
        assert!(matches!(again, Err(CommandError::Refused(crate::error::DomainError::InvalidStateTransition { .. }))), "{again:?}");
        w.deliver(&[]).await;
        let view = &w.alerts(wallet).await[0];
        assert_eq!((view.status.as_str(), view.resolution.as_deref(), view.resolved_by.as_deref()), ("RESOLVED", Some("confirmed_fraud"), Some("ops")));
        assert_eq!(w.status(wallet).await, WalletStatus::Suspended, "resolving does not lift the suspension");
    }
}
