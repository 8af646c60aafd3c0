//! The payment view: amounts and status of each payment, kept as a `payment`
//! document (see [`crate::ports::DocumentViews`]) by [`super::project_document`].
//!
//! While a payment is `AUTHORIZED` its document is also listed under
//! [`AUTHORIZED_LIST`], sorted by its expiry ([`expiry_sort_key`]), so that the
//! expiry sweeper (`payment_expiry`) finds the due authorisations with one range
//! read; the listing goes with the write that ends the authorisation.

use super::DocumentView;
use crate::envelope::EventEnvelope;
use crate::money::Money;
use crate::payment::{PaymentEvent, PaymentStatus};
use crate::ports::Listing;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The document kind of payment views.
pub const KIND: &str = "payment";
/// The list of the payments still authorised, by expiry.
pub const AUTHORIZED_LIST: &str = "payments-authorized";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub payment_id: Uuid,
    pub payer_wallet_id: Uuid,
    pub merchant_wallet_id: Uuid,
    /// The authorised amount.
    pub amount: Money,
    pub captured_amount: Money,
    pub refunded_amount: Money,
    pub currency: String,
    /// One of [`PaymentStatus`]' contract names (`AUTHORIZED`, `CAPTURED`, …).
    pub status: String,
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// From then on the authorisation can only be voided or expired.
    pub expires_at: DateTime<Utc>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DocumentView for PaymentView {
    const KIND: &'static str = KIND;
    type Event = PaymentEvent;

    fn next(current: Option<Self>, envelope: &EventEnvelope, event: &PaymentEvent) -> Option<Self> {
        next_view(current, envelope, event)
    }

    /// Listed under [`AUTHORIZED_LIST`] by expiry while authorised, nowhere after.
    fn listings(&self) -> Vec<Listing> {
        if self.status == PaymentStatus::Authorized.as_str() {
            vec![Listing { list: AUTHORIZED_LIST.into(), sort_key: expiry_sort_key(self.expires_at, self.payment_id) }]
        } else {
            vec![]
        }
    }
}

/// `<expiresAt, RFC 3339 with milliseconds>#<paymentId>`: fixed-width timestamps
/// sort as text in time order, and the id keeps keys unique.
pub fn expiry_sort_key(expires_at: DateTime<Utc>, payment_id: Uuid) -> String {
    format!("{}#{payment_id}", crate::clock::rfc3339(expires_at))
}

/// The `before` bound of a [`crate::ports::DocumentViews::listed`] read that returns every
/// authorisation whose expiry is at or before `now` (`~` sorts after every id).
pub fn due_bound(now: DateTime<Utc>) -> String {
    format!("{}#~", crate::clock::rfc3339(now))
}

/// The payment view after `event`; `None` for an event with no view to change
/// (anything before `PaymentAuthorized`).
pub fn next_view(current: Option<PaymentView>, envelope: &EventEnvelope, event: &PaymentEvent) -> Option<PaymentView> {
    let mut view = match (current, event) {
        (None, PaymentEvent::PaymentAuthorized(terms)) => {
            return Some(PaymentView {
                payment_id: terms.payment_id,
                payer_wallet_id: terms.payer_wallet_id,
                merchant_wallet_id: terms.merchant_wallet_id,
                amount: terms.amount,
                captured_amount: Money::ZERO,
                refunded_amount: Money::ZERO,
                currency: terms.currency.to_string(),
                status: PaymentStatus::Authorized.as_str().into(),
                reference: terms.reference.clone(),
                description: terms.description.clone(),
                expires_at: terms.expires_at,
                version: envelope.version,
                created_at: envelope.occurred_at,
                updated_at: envelope.occurred_at,
            })
        }
        (None, _) => return None,
        (Some(view), _) => view,
    };
    let status = match event {
        PaymentEvent::PaymentAuthorized(_) => None,
        PaymentEvent::PaymentCaptured { amount, .. } => {
            view.captured_amount = *amount;
            Some(PaymentStatus::Captured)
        }
        PaymentEvent::PaymentVoided {} => Some(PaymentStatus::Voided),
        PaymentEvent::PaymentExpired {} => Some(PaymentStatus::Expired),
        PaymentEvent::PaymentRefunded { refunded_total, .. } => {
            view.refunded_amount = *refunded_total;
            Some(if *refunded_total >= view.captured_amount { PaymentStatus::Refunded } else { PaymentStatus::PartiallyRefunded })
        }
    };
    if let Some(status) = status {
        view.status = status.as_str().into();
    }
    view.version = envelope.version;
    view.updated_at = envelope.occurred_at;
    Some(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Aggregate;
    use crate::clock::{Clock, ManualClock};
    use crate::command::{CommandContext, CommandService};
    use crate::memory::{MemoryEventStore, MemoryReadStore};
    use crate::money::Currency;
    use crate::payment::{Payment, PaymentCommand, PaymentTerms};
    use crate::ports::{DocumentViews, EventFeed};
    use crate::projection::read_view;
    use crate::projection::{project as project_any, Projected, ProjectionError};
    use chrono::TimeZone;
    use std::sync::Arc;

    fn egp(major: i64) -> Money {
        Money::from_minor(major * 100)
    }

    fn terms(payment_id: Uuid, expires_at: DateTime<Utc>) -> PaymentTerms {
        PaymentTerms {
            payment_id,
            payer_wallet_id: Uuid::from_u128(2),
            merchant_wallet_id: Uuid::from_u128(3),
            amount: egp(100),
            currency: Currency::egp(),
            reference: "ORDER-1".into(),
            description: Some("Pharmacy order".into()),
            expires_at,
            authorized_by: "alice".into(),
        }
    }

    /// The envelopes of one payment that went through `commands`, in order.
    async fn events_of(commands: &[PaymentCommand]) -> (Uuid, Vec<EventEnvelope>) {
        let store = Arc::new(MemoryEventStore::default());
        let clock = Arc::new(ManualClock::at(Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap()));
        let service = CommandService::new(store.clone(), clock.clone());
        let id = Uuid::now_v7();
        let ctx = CommandContext::new("alice", "c");
        let authorize = PaymentCommand::Authorize(terms(id, clock.now() + chrono::Duration::days(7)));
        for command in std::iter::once(&authorize).chain(commands) {
            clock.advance(chrono::Duration::minutes(1));
            service.execute(&ctx, async |uow| uow.handle::<Payment>(id, command).await).await.unwrap();
        }
        (id, store.read_after(0, 100).await.unwrap().into_iter().map(|(_, e)| e).collect())
    }

    async fn projected(events: &[EventEnvelope]) -> MemoryReadStore {
        let read = MemoryReadStore::default();
        for e in events {
            assert_eq!(project_any(&read, e).await.unwrap(), Projected::Applied, "{}", e.event_type);
        }
        read
    }

    async fn authorized_ids(read: &MemoryReadStore) -> Vec<Uuid> {
        read.listed(KIND, AUTHORIZED_LIST, 100, None).await.unwrap().documents.iter().map(|d| d.id).collect()
    }

    #[tokio::test]
    async fn an_authorised_payment_is_viewed_and_listed_by_its_expiry() {
        let (id, events) = events_of(&[]).await;
        let read = projected(&events).await;
        let view = read_view::<PaymentView>(&read, id).await.unwrap().unwrap();
        assert_eq!(
            (view.status.as_str(), view.amount, view.captured_amount, view.refunded_amount, view.version),
            ("AUTHORIZED", egp(100), Money::ZERO, Money::ZERO, 1)
        );
        assert_eq!((view.currency.as_str(), view.reference.as_str(), view.created_at), ("EGP", "ORDER-1", events[0].occurred_at));
        let document = read.document(KIND, id).await.unwrap().unwrap();
        assert_eq!(document.listings, vec![Listing { list: AUTHORIZED_LIST.into(), sort_key: format!("2026-11-08T10:00:00.000Z#{id}") }]);
        assert_eq!(authorized_ids(&read).await, vec![id]);
    }

    #[tokio::test]
    async fn a_capture_and_refunds_follow_the_amounts_and_leave_the_authorised_list() {
        let refund = |minor| PaymentCommand::Refund { amount: Some(Money::from_minor(minor)), reason: "damaged".into() };
        let now = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
        let (id, events) = events_of(&[PaymentCommand::Capture { amount: Some(egp(60)), now }, refund(2_000), refund(4_000)]).await;
        let read = MemoryReadStore::default();
        let mut seen = vec![];
        for e in &events {
            project_any(&read, e).await.unwrap();
            let v = read_view::<PaymentView>(&read, id).await.unwrap().unwrap();
            seen.push((v.status, v.captured_amount.minor(), v.refunded_amount.minor(), v.version));
        }
        assert_eq!(
            seen,
            vec![
                ("AUTHORIZED".into(), 0, 0, 1),
                ("CAPTURED".into(), 6_000, 0, 2),
                ("PARTIALLY_REFUNDED".into(), 6_000, 2_000, 3),
                ("REFUNDED".into(), 6_000, 6_000, 4)
            ]
        );
        assert!(authorized_ids(&read).await.is_empty());
        assert!(read.document(KIND, id).await.unwrap().unwrap().listings.is_empty());
        let view = read_view::<PaymentView>(&read, id).await.unwrap().unwrap();
        assert_eq!(view.updated_at, events[3].occurred_at);
        assert_eq!(view.created_at, events[0].occurred_at);
    }

    #[tokio::test]
    async fn voided_and_expired_payments_leave_the_authorised_list() {
        let late = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        for (command, status) in [(PaymentCommand::Void, "VOIDED"), (PaymentCommand::Expire { now: late }, "EXPIRED")] {
            let (id, events) = events_of(&[command]).await;
            let read = projected(&events).await;
            assert_eq!(read_view::<PaymentView>(&read, id).await.unwrap().unwrap().status, status);
            assert!(authorized_ids(&read).await.is_empty(), "{status}");
        }
    }

    #[tokio::test]
    async fn redeliveries_change_nothing_and_gaps_are_reported() {
        let (id, events) = events_of(&[PaymentCommand::Void]).await;
        let read = projected(&events).await;
        for e in &events {
            assert_eq!(project_any(&read, e).await.unwrap(), Projected::Duplicate);
        }
        assert_eq!(read_view::<PaymentView>(&read, id).await.unwrap().unwrap().status, "VOIDED");
        let fresh = MemoryReadStore::default();
        let err = project_any(&fresh, &events[1]).await.unwrap_err();
        assert!(matches!(err, ProjectionError::Gap { have: 0, got: 2, .. }), "{err:?}");
        assert!(read_view::<PaymentView>(&fresh, id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_due_bound_takes_the_authorisations_expired_at_or_before_now() {
        let read = MemoryReadStore::default();
        let base = Utc.with_ymd_and_hms(2026, 11, 8, 10, 0, 0).unwrap();
        let mut ids = vec![];
        for offset in [-60, 0, 60] {
            let id = Uuid::now_v7();
            let envelope = EventEnvelope {
                event_id: Uuid::now_v7(),
                aggregate_type: Payment::TYPE.into(),
                aggregate_id: id,
                version: 1,
                event_type: "PaymentAuthorized".into(),
                schema_version: 1,
                occurred_at: base,
                data: serde_json::to_value(terms(id, base + chrono::Duration::seconds(offset))).unwrap(),
                metadata: crate::envelope::EventMetadata {
                    command_id: Uuid::now_v7(),
                    correlation_id: "c".into(),
                    causation_id: None,
                    user_id: "alice".into(),
                    idempotency_key: None,
                },
            };
            project_any(&read, &envelope).await.unwrap();
            ids.push(id);
        }
        let due = read.listed(KIND, AUTHORIZED_LIST, 10, Some(&due_bound(base))).await.unwrap();
        assert_eq!(due.documents.iter().map(|d| d.id).collect::<Vec<_>>(), vec![ids[1], ids[0]], "greatest key first, the later one left out");
    }
}
