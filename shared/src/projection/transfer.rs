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
        TransferEvent::TransferFailed { reason } => {
            view.status = TransferStage::Failed.status().into();
            view.failure_reason = Some(reason.clone());
        }
    }
    view.version = envelope.version;
    view.updated_at = envelope.occurred_at;
    Some(view)
}
