//! Read models, fed by events. A projector turns one event into one read-model
//! change, guarded by the aggregate's version: a duplicate is ignored, an older
//! event never overwrites a newer state, and a gap is reported, never papered over
//! (the delivery is retried until the missing event has been applied).
//!
//! The same projectors run behind the local feed ([`feed`]) and behind the
//! Kinesis-fed projector Lambda functions on AWS.

pub mod batch;
pub mod claim;
pub mod feed;
pub mod fraud;
pub mod medcard;
pub mod payment;
pub mod transfer;
pub mod wallet;

use crate::aggregate::Aggregate;
use crate::claim::Claim;
use crate::envelope::EventEnvelope;
use crate::fraud::alert::FraudAlert;
use crate::insurance_claim::InsuranceClaim;
use crate::medcard::MedCard;
use crate::payment::Payment;
use crate::ports::{Document, EventStore, Listing, ReadStore, Saved, StoreError};
use crate::transfer::Transfer;
use crate::wallet::Wallet;
use serde::{de::DeserializeOwned, Serialize};

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
        Payment::TYPE => project_document::<payment::PaymentView>(store, envelope).await,
        MedCard::TYPE => project_document::<medcard::CardView>(store, envelope).await,
        Claim::TYPE => project_document::<claim::ClaimView>(store, envelope).await,
        InsuranceClaim::TYPE => project_document::<claim::InsuranceClaimView>(store, envelope).await,
        FraudAlert::TYPE => project_document::<fraud::FraudAlertView>(store, envelope).await,
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

/// A read model kept as a [`Document`]: one typed view per aggregate, folded from
/// that aggregate's events alone.
pub trait DocumentView: Serialize + DeserializeOwned {
    /// The document kind the view is stored under.
    const KIND: &'static str;
    type Event: DeserializeOwned;
    /// The view after `event`; `None` when there is nothing to change yet (an
    /// event before the aggregate's first).
    fn next(current: Option<Self>, envelope: &EventEnvelope, event: &Self::Event) -> Option<Self>;
    /// The lists the view appears in now.
    fn listings(&self) -> Vec<Listing> {
        vec![]
    }
}

/// Projects one event onto a document view under the version rule of every
/// projector: duplicates ignored, gaps reported.
pub async fn project_document<V: DocumentView>(store: &dyn ReadStore, envelope: &EventEnvelope) -> Result<Projected, ProjectionError> {
    let event: V::Event = decode(envelope)?;
    let stored = store.document(V::KIND, envelope.aggregate_id).await?;
    let have = stored.as_ref().map_or(0, |d| d.version);
    if let Some(done) = check_sequence(envelope, have)? {
        return Ok(done);
    }
    let current = stored.clone().map(|d| view_of::<V>(d, envelope.aggregate_id)).transpose()?;
    let Some(view) = V::next(current, envelope, &event) else {
        return Err(ProjectionError::Gap { stream_id: envelope.stream_id(), have, got: envelope.version });
    };
    let listings = view.listings();
    let body = serde_json::to_value(&view).map_err(|e| StoreError::new(format!("encoding a {} view: {e}", V::KIND)))?;
    let document = Document { id: envelope.aggregate_id, version: envelope.version, body, listings };
    Ok(match store.save_document(V::KIND, &document, stored.as_ref()).await? {
        Saved::Written => Projected::Applied,
        Saved::Stale => Projected::Duplicate,
    })
}

/// The typed view of a stored document.
pub fn view_of<V: DocumentView>(document: Document, id: uuid::Uuid) -> Result<V, StoreError> {
    serde_json::from_value(document.body).map_err(|e| StoreError::new(format!("corrupt {} view {id}: {e}", V::KIND)))
}

/// Reads a document view.
pub async fn read_view<V: DocumentView>(store: &dyn ReadStore, id: uuid::Uuid) -> Result<Option<V>, StoreError> {
    store.document(V::KIND, id).await?.map(|d| view_of(d, id)).transpose()
}
