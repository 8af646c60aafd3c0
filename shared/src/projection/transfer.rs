//! The transfer view: status and failure reason of each transfer.

use super::{check_sequence, decode, Projected, ProjectionError};
use crate::envelope::EventEnvelope;
use crate::ports::{ReadStore, Saved, TransferView};
use crate::transfer::{TransferEvent, TransferStage};

pub async fn project(store: &dyn ReadStore, envelope: &EventEnvelope) -> Result<Projected, ProjectionError> {
    let event: TransferEvent = decode(envelope)?;
    let current = store.transfer(envelope.aggregate_id).await?;
    let have = current.as_ref().map_or(0, |v| v.version);
    if let Some(done) = check_sequence(envelope, have)? {
        return Ok(done);
    }
    let Some(view) = next_view(current, envelope, &event) else {
        return Err(ProjectionError::Gap { stream_id: envelope.stream_id(), have, got: envelope.version });
    };
    Ok(match store.save_transfer(&view, have).await? {
        Saved::Written => Projected::Applied,
        Saved::Stale => Projected::Duplicate,
    })
}

pub fn next_view(current: Option<TransferView>, envelope: &EventEnvelope, event: &TransferEvent) -> Option<TransferView> {
    let mut view = match (current, event) {
        (None, TransferEvent::TransferInitiated(terms)) => {
            return Some(TransferView {
                transfer_id: terms.transfer_id,
                source_wallet_id: terms.source_wallet_id,
                destination_wallet_id: terms.destination_wallet_id,
                amount: terms.amount,
                currency: terms.currency.to_string(),
                status: TransferStage::Initiated.status().into(),
                failure_reason: None,
                refund_in_suspense: None,
                version: envelope.version,
                created_at: envelope.occurred_at,
                updated_at: envelope.occurred_at,
            })
        }
        (None, _) => return None,
        (Some(view), _) => view,
    };
    match event {
        TransferEvent::TransferInitiated(_) | TransferEvent::TransferSourceDebited {} | TransferEvent::TransferSourceRefunded {} => {}
        TransferEvent::TransferCompleted {} => view.status = TransferStage::Completed.status().into(),
        // Still pending: the refund is under way; the reason shows once it has failed.
        TransferEvent::TransferCreditRejected { .. } => {}
        // The refund could not land: the amount shows as in suspense (the status and
        // reason come with `TransferFailed`, in the same commit).
        TransferEvent::TransferRefundSuspended { amount, .. } => view.refund_in_suspense = Some(*amount),
        TransferEvent::TransferFailed { reason } => {
            view.status = TransferStage::Failed.status().into();
            view.failure_reason = Some(reason.clone());
        }
    }
    view.version = envelope.version;
    view.updated_at = envelope.occurred_at;
    Some(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};
    use crate::transfer::TransferTerms;
    use uuid::Uuid;

    fn envelope(version: u64, event: &TransferEvent) -> EventEnvelope {
        let (event_type, data) = crate::envelope::encode_event(event);
        let mut envelope = crate::conformance::envelope(Uuid::from_u128(1), version);
        (envelope.aggregate_type, envelope.event_type, envelope.data) = ("transfer".into(), event_type, data);
        envelope
    }

    fn fold(events: &[TransferEvent]) -> Option<TransferView> {
        let mut view = None;
        for (i, event) in events.iter().enumerate() {
            view = Some(next_view(view, &envelope(i as u64 + 1, event), event)?);
        }
        view
    }

    #[test]
    fn a_refund_in_suspense_shows_on_the_failed_transfer_with_its_amount() {
        let terms = TransferTerms {
            transfer_id: Uuid::from_u128(1),
            source_wallet_id: Uuid::from_u128(2),
            destination_wallet_id: Uuid::from_u128(3),
            amount: Money::from_minor(2_550),
            currency: Currency::egp(),
            reference: "T".into(),
            description: None,
            initiated_by: "alice".into(),
        };
        let mut events = vec![
            TransferEvent::TransferInitiated(terms),
            TransferEvent::TransferSourceDebited {},
            TransferEvent::TransferCreditRejected { reason: "WALLET_NOT_ACTIVE".into() },
        ];
        let pending = fold(&events).unwrap();
        assert_eq!((pending.status.as_str(), pending.refund_in_suspense), ("PENDING", None));
        events.push(TransferEvent::TransferRefundSuspended { amount: Money::from_minor(2_550), reason: "WALLET_NOT_ACTIVE".into() });
        events.push(TransferEvent::TransferFailed { reason: "WALLET_NOT_ACTIVE".into() });
        let view = fold(&events).unwrap();
        assert_eq!(
            (view.status.as_str(), view.failure_reason.as_deref(), view.refund_in_suspense),
            ("FAILED", Some("WALLET_NOT_ACTIVE"), Some(Money::from_minor(2_550)))
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["refundInSuspense"], 2_550);
        // A view stored before suspense existed still reads, with nothing in suspense.
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("refundInSuspense");
        assert_eq!(serde_json::from_value::<TransferView>(old).unwrap().refund_in_suspense, None);
    }
}
