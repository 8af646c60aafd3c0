//! Claim views: prescription claims (listed per pharmacy and per card, newest
//! first) and insurance claims.

use super::DocumentView;
use crate::claim::{ClaimEvent, ClaimItem, SuspendedRefund};
use crate::envelope::EventEnvelope;
use crate::insurance_claim::{InsuranceClaimEvent, InsuranceClaimStatus};
use crate::money::Money;
use crate::ports::Listing;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimView {
    pub claim_id: Uuid,
    pub medcard_id: Uuid,
    pub beneficiary_id: Uuid,
    pub prescription_id: String,
    pub pharmacy_wallet_id: Uuid,
    pub patient_wallet_id: Uuid,
    pub total_amount: Money,
    /// Known once the claim is priced.
    pub covered_amount: Option<Money>,
    pub copayment_amount: Option<Money>,
    pub coverage_percent: Option<u8>,
    /// `PENDING`, `APPROVED` or `REJECTED`.
    pub status: String,
    /// How far the saga got (`submitted` … `pharmacy-credited`, `compensating`,
    /// `approved`, `rejected`; `refund-in-suspense` for a rejected claim with a
    /// refund that could not land).
    pub stage: String,
    pub rejection_reason: Option<String>,
    /// Refunds that could not land (a wallet closed meanwhile), held in suspense.
    /// Empty otherwise, and on views stored before refunds could be suspended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds_in_suspense: Vec<SuspendedRefund>,
    pub items: Vec<ClaimItem>,
    pub submitted_by: String,
    /// The card's holder when the claim was filed (absent on older claims).
    #[serde(default)]
    pub holder_id: Option<String>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DocumentView for ClaimView {
    const KIND: &'static str = "claim";
    type Event = ClaimEvent;

    fn next(current: Option<Self>, envelope: &EventEnvelope, event: &ClaimEvent) -> Option<Self> {
        let mut view = match (current, event) {
            (None, ClaimEvent::ClaimSubmitted(terms)) => {
                return Some(ClaimView {
                    claim_id: terms.claim_id,
                    medcard_id: terms.medcard_id,
                    beneficiary_id: terms.beneficiary_id,
                    prescription_id: terms.prescription_id.clone(),
                    pharmacy_wallet_id: terms.pharmacy_wallet_id,
                    patient_wallet_id: terms.patient_wallet_id,
                    // The aggregate refused any claim whose total does not add up.
                    total_amount: crate::claim::items_total(&terms.items).ok()?,
                    covered_amount: None,
                    copayment_amount: None,
                    coverage_percent: None,
                    status: "PENDING".into(),
                    stage: "submitted".into(),
                    rejection_reason: None,
                    refunds_in_suspense: Vec::new(),
                    items: terms.items.clone(),
                    submitted_by: terms.submitted_by.clone(),
                    holder_id: terms.holder_id.clone(),
                    version: envelope.version,
                    created_at: envelope.occurred_at,
                    updated_at: envelope.occurred_at,
                });
            }
            (None, _) => return None,
            (Some(view), _) => view,
        };
        match event {
            ClaimEvent::ClaimSubmitted(_) => {}
            ClaimEvent::ClaimPriced { priced, coverage_percent, .. } => {
                view.covered_amount = Some(priced.covered);
                view.copayment_amount = Some(priced.copayment);
                view.coverage_percent = Some(*coverage_percent);
                view.stage = "priced".into();
            }
            ClaimEvent::ClaimCoverageReserved {} => view.stage = "coverage-reserved".into(),
            ClaimEvent::ClaimCopaymentDebited {} => view.stage = "copayment-debited".into(),
            ClaimEvent::ClaimSponsorDebited {} => view.stage = "sponsor-debited".into(),
            ClaimEvent::ClaimPharmacyCredited {} => view.stage = "pharmacy-credited".into(),
            ClaimEvent::ClaimApproved {} => {
                view.status = "APPROVED".into();
                view.stage = "approved".into();
            }
            ClaimEvent::ClaimStepFailed { reason } => {
                view.stage = "compensating".into();
                view.rejection_reason = Some(reason.clone());
            }
            ClaimEvent::ClaimSponsorRefunded {} | ClaimEvent::ClaimCopaymentRefunded {} | ClaimEvent::ClaimReservationReleased {} => {}
            ClaimEvent::ClaimRefundSuspended(suspended) => view.refunds_in_suspense.push(suspended.clone()),
            ClaimEvent::ClaimRejected { reason } => {
                view.status = "REJECTED".into();
                // The stage is what an operator sees first: money that is on no wallet.
                view.stage = if view.refunds_in_suspense.is_empty() { "rejected" } else { "refund-in-suspense" }.into();
                view.rejection_reason = Some(reason.clone());
            }
        }
        view.version = envelope.version;
        view.updated_at = envelope.occurred_at;
        Some(view)
    }

    /// A pharmacy's claims, a card's claims and its holder's claims, newest first.
    fn listings(&self) -> Vec<Listing> {
        let sort_key = format!("{}#{}", crate::clock::sort_key(&self.created_at), self.claim_id);
        let mut lists = vec![pharmacy_list(self.pharmacy_wallet_id), medcard_list(self.medcard_id)];
        lists.extend(self.holder_id.as_deref().map(holder_list));
        lists.into_iter().map(|list| Listing { list, sort_key: sort_key.clone() }).collect()
    }
}

/// The list of a pharmacy's claims (by its wallet).
pub fn pharmacy_list(pharmacy_wallet_id: Uuid) -> String {
    format!("pharmacy#{pharmacy_wallet_id}")
}

/// The list of the claims made on the cards of a holder (a user id).
pub fn holder_list(holder_id: &str) -> String {
    format!("holder#{holder_id}")
}

/// The list of the claims made on a card.
pub fn medcard_list(medcard_id: Uuid) -> String {
    format!("medcard#{medcard_id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsuranceClaimView {
    pub claim_id: Uuid,
    pub medcard_id: Uuid,
    pub provider_wallet_id: Uuid,
    pub amount: Money,
    pub approved_amount: Option<Money>,
    pub currency: String,
    pub description: String,
    pub documents: Vec<String>,
    /// `SUBMITTED`, `APPROVED`, `SETTLED` or `REJECTED`.
    pub status: String,
    pub rejection_reason: Option<String>,
    pub submitted_by: String,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DocumentView for InsuranceClaimView {
    const KIND: &'static str = "insurance-claim";
    type Event = InsuranceClaimEvent;

    fn next(current: Option<Self>, envelope: &EventEnvelope, event: &InsuranceClaimEvent) -> Option<Self> {
        let mut view = match (current, event) {
            (None, InsuranceClaimEvent::InsuranceClaimSubmitted(terms)) => {
                return Some(InsuranceClaimView {
                    claim_id: terms.claim_id,
                    medcard_id: terms.medcard_id,
                    provider_wallet_id: terms.provider_wallet_id,
                    amount: terms.amount,
                    approved_amount: None,
                    currency: terms.currency.to_string(),
                    description: terms.description.clone(),
                    documents: terms.documents.clone(),
                    status: InsuranceClaimStatus::Submitted.as_str().into(),
                    rejection_reason: None,
                    submitted_by: terms.submitted_by.clone(),
                    version: envelope.version,
                    created_at: envelope.occurred_at,
                    updated_at: envelope.occurred_at,
                })
            }
            (None, _) => return None,
            (Some(view), _) => view,
        };
        match event {
            InsuranceClaimEvent::InsuranceClaimSubmitted(_) => {}
            InsuranceClaimEvent::InsuranceClaimApproved { amount } => {
                view.status = InsuranceClaimStatus::Approved.as_str().into();
                view.approved_amount = Some(*amount);
            }
            InsuranceClaimEvent::InsuranceClaimRejected { reason } => {
                view.status = InsuranceClaimStatus::Rejected.as_str().into();
                view.rejection_reason = Some(reason.clone());
            }
            InsuranceClaimEvent::InsuranceClaimSettled { .. } => view.status = InsuranceClaimStatus::Settled.as_str().into(),
        }
        view.version = envelope.version;
        view.updated_at = envelope.occurred_at;
        Some(view)
    }
}
