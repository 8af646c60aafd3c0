//! Read models, fed by events. A projector turns one event into one read-model
//! change, guarded by the aggregate's version: a duplicate is ignored, an older
//! event never overwrites a newer state, and a gap is reported, never papered over
//! (the delivery is retried until the missing event has been applied).
//!
//! The same projectors run behind the local feed ([`feed`]) and behind the
//! Kinesis-fed projector Lambda functions on AWS.

pub mod batch;
pub mod feed;
pub mod transfer;
pub mod wallet;

use crate::aggregate::Aggregate;
use crate::envelope::EventEnvelope;
use crate::ports::{EventStore, ReadStore, StoreError};
use crate::transfer::Transfer;
use crate::wallet::Wallet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projected {
    Applied,
    /// Already applied (a redelivery, or another projector instance got there first).
    Duplicate,
    /// No read model follows this aggregate type.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProjectionError {
    #[error("{stream_id}: the read model is at v{have}, the event is v{got}; waiting for the events between")]
    Gap { stream_id: String, have: u64, got: u64 },
    #[error("{stream_id} v{version}: cannot read {event_type}: {reason}")]
    Undecodable { stream_id: String, version: u64, event_type: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies one event to every read model that follows its aggregate.
pub async fn project(store: &dyn ReadStore, envelope: &EventEnvelope) -> Result<Projected, ProjectionError> {
    match envelope.aggregate_type.as_str() {
        Wallet::TYPE => wallet::project(store, envelope).await,
        Transfer::TYPE => transfer::project(store, envelope).await,
        _ => Ok(Projected::Ignored),
    }
}

/// Like [`project`], for deliveries that may arrive out of order (a bus whose
/// producer retried a partly failed batch). A gap is never papered over: the
/// missing events are read from the event store — the source of truth — and
/// applied in order, up to and including this one.
pub async fn project_with_catch_up(read: &dyn ReadStore, events: &dyn EventStore, envelope: &EventEnvelope) -> Result<Projected, ProjectionError> {
    match project(read, envelope).await {
        Err(ProjectionError::Gap { stream_id, have, got }) => {
            let missing = events.load(&stream_id, have).await?;
            if missing.last().is_none_or(|last| last.version < got) {
                // The store has not got the event we were given: never skip ahead of it.
                return Err(ProjectionError::Gap { stream_id, have, got });
            }
            for event in missing.iter().take_while(|e| e.version <= got) {
                project(read, event).await?;
            }
            Ok(Projected::Applied)
        }
        other => other,
    }
}

/// The version rule every projector applies before it writes.
pub(crate) fn check_sequence(envelope: &EventEnvelope, have: u64) -> Result<Option<Projected>, ProjectionError> {
    if envelope.version <= have {
        Ok(Some(Projected::Duplicate))
    } else if envelope.version != have + 1 {
        Err(ProjectionError::Gap { stream_id: envelope.stream_id(), have, got: envelope.version })
    } else {
        Ok(None)
    }
}

pub(crate) fn decode<E: serde::de::DeserializeOwned>(envelope: &EventEnvelope) -> Result<E, ProjectionError> {
    envelope.decode().map_err(|e| ProjectionError::Undecodable {
        stream_id: envelope.stream_id(),
        version: envelope.version,
        event_type: envelope.event_type.clone(),
        reason: e.to_string(),
    })
}
