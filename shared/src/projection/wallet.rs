//! The wallet view and the transaction history: where a balance view changes.

use super::{check_sequence, decode, Projected, ProjectionError};
use crate::envelope::EventEnvelope;
use crate::ports::{ReadStore, Saved, TransactionItem, WalletView};
use crate::wallet::{WalletEvent, WalletStatus};

pub async fn project(store: &dyn ReadStore, envelope: &EventEnvelope) -> Result<Projected, ProjectionError> {
    let event: WalletEvent = decode(envelope)?;
    let current = store.wallet(envelope.aggregate_id).await?;
    let have = current.as_ref().map_or(0, |v| v.version);
    if let Some(done) = check_sequence(envelope, have)? {
        return Ok(done);
    }
    let Some(view) = next_view(current, envelope, &event) else {
        return Err(ProjectionError::Gap { stream_id: envelope.stream_id(), have, got: envelope.version });
    };
    // History first: it is keyed by version and written once, so if we stop between
    // the two writes the redelivery simply completes the view.
    if let Some(item) = transaction_item(envelope, &event) {
        store.record_transaction(&item).await?;
    }
    Ok(match store.save_wallet(&view, have).await? {
        Saved::Written => Projected::Applied,
        Saved::Stale => Projected::Duplicate,
    })
}

/// The wallet view after `event`; `None` for an event with no view to change
/// (anything before `WalletCreated`).
pub fn next_view(current: Option<WalletView>, envelope: &EventEnvelope, event: &WalletEvent) -> Option<WalletView> {
    let mut view = match (current, event) {
        (None, WalletEvent::WalletCreated { wallet_id, owner_id, wallet_type, currency, kyc_level }) => {
            return Some(WalletView {
                wallet_id: *wallet_id,
                owner_id: owner_id.clone(),
                wallet_type: json_name(wallet_type),
                currency: currency.to_string(),
                kyc_level: json_name(kyc_level),
                status: WalletStatus::Pending.as_str().into(),
                balance: crate::money::Money::ZERO,
                held: crate::money::Money::ZERO,
                version: envelope.version,
                created_at: envelope.occurred_at,
                updated_at: envelope.occurred_at,
            })
        }
        (None, _) => return None,
        (Some(view), _) => view,
    };
    match event {
        WalletEvent::WalletCreated { .. } => {}
        WalletEvent::WalletActivated {} | WalletEvent::WalletReactivated {} => view.status = WalletStatus::Active.as_str().into(),
        WalletEvent::WalletSuspended { .. } => view.status = WalletStatus::Suspended.as_str().into(),
        WalletEvent::WalletClosed { .. } => view.status = WalletStatus::Closed.as_str().into(),
        WalletEvent::WalletCredited { balance_after, .. } | WalletEvent::WalletDebited { balance_after, .. } => view.balance = *balance_after,
        // A hold moves no money: the balance stays (a capture's money moves in the
        // `WalletDebited` that follows its release); only what is held changes.
        WalletEvent::WalletHoldPlaced { held_after, .. } | WalletEvent::WalletHoldReleased { held_after, .. } => view.held = *held_after,
    }
    view.version = envelope.version;
    view.updated_at = envelope.occurred_at;
    Some(view)
}

/// The history line for a movement of money; `None` for lifecycle events.
pub fn transaction_item(envelope: &EventEnvelope, event: &WalletEvent) -> Option<TransactionItem> {
    let (kind, amount, transaction_type, reference, description, balance_after) = match event {
        WalletEvent::WalletCredited { movement, balance_after } => {
            ("credit", movement.amount, json_name(&movement.transaction_type), &movement.reference, &movement.description, *balance_after)
        }
        WalletEvent::WalletDebited { movement, balance_after } => {
            ("debit", movement.amount, json_name(&movement.transaction_type), &movement.reference, &movement.description, *balance_after)
        }
        _ => return None,
    };
    Some(TransactionItem {
        wallet_id: envelope.aggregate_id,
        event_id: envelope.event_id,
        kind: kind.into(),
        amount,
        balance_after,
        transaction_type,
        reference: reference.clone(),
        description: description.clone(),
        occurred_at: envelope.occurred_at,
        version: envelope.version,
    })
}

/// The wire name of a unit enum (`TransferIn` → `transfer_in`).
fn json_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => unreachable!("unit enums serialise to strings, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::command::{CommandContext, CommandService};
    use crate::memory::{MemoryEventStore, MemoryReadStore};
    use crate::money::{Currency, Money};
    use crate::ports::{EventFeed, EventStore, TransactionHistory, WalletViews};
    use crate::wallet::*;
    use std::sync::Arc;
    use uuid::Uuid;

    async fn events_of_a_busy_wallet() -> (Uuid, Vec<EventEnvelope>) {
        let store = Arc::new(MemoryEventStore::default());
        let service = CommandService::new(store.clone(), Arc::new(SystemClock));
        let id = Uuid::now_v7();
        let ctx = CommandContext::new("alice", "c");
        let credit = |minor| {
            WalletCommand::Credit(Movement {
                amount: Money::from_minor(minor),
                transaction_type: CreditType::Cashback,
                reference: "c".into(),
                description: Some("d".into()),
                currency: None,
            })
        };
        let debit = |minor| {
            WalletCommand::Debit(Movement {
                amount: Money::from_minor(minor),
                transaction_type: DebitType::TransferOut,
                reference: "d".into(),
                description: None,
                currency: None,
            })
        };
        let commands = [
            WalletCommand::Create {
                wallet_id: id,
                owner_id: "alice".into(),
                wallet_type: WalletType::Merchant,
                currency: Currency::egp(),
                kyc_level: KycLevel::Full,
                initial_balance: Money::from_minor(500),
            },
            WalletCommand::Activate,
            credit(1_000),
            debit(250),
            WalletCommand::Suspend { reason: "check".into() },
        ];
        for command in commands {
            service.execute(&ctx, async |uow| uow.handle::<Wallet>(id, &command).await).await.unwrap();
        }
        (id, store.read_after(0, 100).await.unwrap().into_iter().map(|(_, e)| e).collect())
    }

    #[tokio::test]
    async fn the_view_follows_every_event() {
        let (id, events) = events_of_a_busy_wallet().await;
        let read = MemoryReadStore::default();
        for e in &events {
            assert_eq!(project(&read, e).await.unwrap(), Projected::Applied);
        }
        let view = read.wallet(id).await.unwrap().unwrap();
        assert_eq!(
            (view.status.as_str(), view.balance, view.version, view.wallet_type.as_str(), view.kyc_level.as_str()),
            ("suspended", Money::from_minor(1_250), 6, "merchant", "full")
        );
        let history = read.transactions(id, 10, None).await.unwrap();
        let lines: Vec<_> =
            history.iter().map(|t| (t.kind.as_str(), t.transaction_type.as_str(), t.amount.minor(), t.balance_after.minor(), t.version)).collect();
        assert_eq!(lines, vec![("debit", "transfer_out", 250, 1_250, 5), ("credit", "cashback", 1_000, 1_500, 4), ("credit", "deposit", 500, 500, 2)]);
    }

    #[tokio::test]
    async fn holds_keep_the_balance_and_a_capture_is_a_payment_in_the_history() {
        let store = Arc::new(MemoryEventStore::default());
        let service = CommandService::new(store.clone(), Arc::new(SystemClock));
        let (id, payment) = (Uuid::now_v7(), Uuid::now_v7());
        let ctx = CommandContext::new("alice", "c");
        let commands = [
            WalletCommand::Create {
                wallet_id: id,
                owner_id: "alice".into(),
                wallet_type: WalletType::Personal,
                currency: Currency::egp(),
                kyc_level: KycLevel::Basic,
                initial_balance: Money::from_minor(1_000),
            },
            WalletCommand::Activate,
            WalletCommand::PlaceHold { hold_id: payment, amount: Money::from_minor(600), currency: Currency::egp() },
            WalletCommand::CaptureHold { hold_id: payment, amount: Money::from_minor(450), reference: "ORDER-1".into(), description: None },
        ];
        let read = MemoryReadStore::default();
        for command in commands {
            service.execute(&ctx, async |uow| uow.handle::<Wallet>(id, &command).await).await.unwrap();
        }
        for (_, e) in store.read_after(0, 100).await.unwrap() {
            project(&read, &e).await.unwrap();
            if e.event_type == "WalletHoldPlaced" {
                let view = read.wallet(id).await.unwrap().unwrap();
                assert_eq!((view.balance, view.held), (Money::from_minor(1_000), Money::from_minor(600)), "a hold moves no money, it sets some aside");
            }
        }
        let view = read.wallet(id).await.unwrap().unwrap();
        assert_eq!((view.balance, view.held, view.version), (Money::from_minor(550), Money::ZERO, 6), "the capture released the whole hold");
        let history = read.transactions(id, 10, None).await.unwrap();
        let lines: Vec<_> = history.iter().map(|t| (t.kind.as_str(), t.transaction_type.as_str(), t.amount.minor(), t.reference.as_str())).collect();
        assert_eq!(lines, vec![("debit", "payment", 450, "ORDER-1"), ("credit", "deposit", 1_000, INITIAL_BALANCE_REFERENCE)]);
    }

    #[test]
    fn a_view_stored_before_holds_existed_reads_as_holding_nothing() {
        let stored = serde_json::json!({
            "walletId": Uuid::nil(), "ownerId": "alice", "walletType": "personal", "currency": "EGP", "kycLevel": "basic",
            "status": "active", "balance": 500, "version": 3, "createdAt": "2026-11-21T10:00:00Z", "updatedAt": "2026-11-21T10:00:00Z"
        });
        let view: WalletView = serde_json::from_value(stored).unwrap();
        assert_eq!((view.balance, view.held), (Money::from_minor(500), Money::ZERO));
    }

    #[tokio::test]
    async fn redelivered_events_change_nothing() {
        let (id, events) = events_of_a_busy_wallet().await;
        let read = MemoryReadStore::default();
        for e in &events {
            project(&read, e).await.unwrap();
        }
        let before = read.wallet(id).await.unwrap();
        for e in events.iter().rev() {
            assert_eq!(project(&read, e).await.unwrap(), Projected::Duplicate);
        }
        assert_eq!(read.wallet(id).await.unwrap(), before);
        assert_eq!(read.transactions(id, 10, None).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn an_out_of_order_delivery_catches_up_from_the_event_store() {
        let (id, events) = events_of_a_busy_wallet().await;
        let store = MemoryEventStore::default();
        store
            .append(crate::ports::Commit {
                streams: vec![crate::ports::StreamAppend { stream_id: events[0].stream_id(), expected_version: 0, events: events.clone() }],
                idempotency: None,
            })
            .await
            .unwrap();
        let read = MemoryReadStore::default();
        project(&read, &events[0]).await.unwrap();
        // v4 arrives before v2 and v3: they are read from the store and applied first.
        assert_eq!(super::super::project_with_catch_up(&read, &store, &events[3]).await.unwrap(), Projected::Applied);
        assert_eq!(read.wallet(id).await.unwrap().unwrap().version, 4);
        assert_eq!(read.transactions(id, 10, None).await.unwrap().len(), 2);
        // The late v2 and v3 are then duplicates.
        assert_eq!(super::super::project_with_catch_up(&read, &store, &events[1]).await.unwrap(), Projected::Duplicate);
    }

    #[tokio::test]
    async fn a_gap_is_reported_and_nothing_is_written() {
        let (id, events) = events_of_a_busy_wallet().await;
        let read = MemoryReadStore::default();
        project(&read, &events[0]).await.unwrap();
        let err = project(&read, &events[2]).await.unwrap_err();
        assert!(matches!(err, ProjectionError::Gap { have: 1, got: 3, .. }), "{err:?}");
        assert_eq!(read.wallet(id).await.unwrap().unwrap().version, 1);
        assert!(read.transactions(id, 10, None).await.unwrap().is_empty());
    }
}
