//! The InsuranceClaim aggregate: a provider (clinic, hospital, lab) asks the sponsor
//! of a medical card to pay for care, and an insurer decides.
//!
//! ```text
//! SUBMITTED ──approve (0 < amount ≤ claimed)──▶ APPROVED ──settle──▶ SETTLED
//!     └──────reject (reason)──────▶ REJECTED
//! ```
//! `SETTLED` records that the approved amount reached the provider's wallet; the
//! money move (sponsor wallet → provider wallet) commits together with it.

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::money::{Currency, Money};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsuranceClaimTerms {
    pub claim_id: Uuid,
    pub medcard_id: Uuid,
    pub provider_wallet_id: Uuid,
    /// What the provider claims.
    pub amount: Money,
    pub currency: Currency,
    pub description: String,
    /// References to the supporting documents (invoices, reports), as stored elsewhere.
    #[serde(default)]
    pub documents: Vec<String>,
    pub submitted_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InsuranceClaimStatus {
    Submitted,
    Approved,
    Rejected,
    Settled,
}

impl InsuranceClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InsuranceClaimStatus::Submitted => "SUBMITTED",
            InsuranceClaimStatus::Approved => "APPROVED",
            InsuranceClaimStatus::Rejected => "REJECTED",
            InsuranceClaimStatus::Settled => "SETTLED",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum InsuranceClaimCommand {
    Submit(InsuranceClaimTerms),
    /// The insurer pays `amount`: more than 0, at most what was claimed.
    Approve {
        amount: Money,
    },
    Reject {
        reason: String,
    },
    /// The approved amount was paid to the provider.
    Settle,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum InsuranceClaimEvent {
    InsuranceClaimSubmitted(InsuranceClaimTerms),
    InsuranceClaimApproved { amount: Money },
    InsuranceClaimRejected { reason: String },
    InsuranceClaimSettled { amount: Money },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedClaim {
    pub terms: InsuranceClaimTerms,
    pub status: InsuranceClaimStatus,
    pub approved_amount: Option<Money>,
    pub rejection_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum InsuranceClaim {
    #[default]
    NotSubmitted,
    Submitted(SubmittedClaim),
}

impl InsuranceClaim {
    pub fn submitted(&self) -> Option<&SubmittedClaim> {
        match self {
            InsuranceClaim::Submitted(c) => Some(c),
            InsuranceClaim::NotSubmitted => None,
        }
    }
}

fn ensure_positive(amount: Money) -> Result<(), DomainError> {
    if !amount.is_positive() {
        return Err(DomainError::Validation("amount must be greater than 0".into()));
    }
    Ok(())
}

impl Aggregate for InsuranceClaim {
    const TYPE: &'static str = "insurance-claim";
    type Command = InsuranceClaimCommand;
    type Event = InsuranceClaimEvent;

    fn decide(&self, command: &InsuranceClaimCommand) -> Result<Vec<InsuranceClaimEvent>, DomainError> {
        use InsuranceClaimStatus::*;
        let claim = match (self, command) {
            (InsuranceClaim::NotSubmitted, InsuranceClaimCommand::Submit(terms)) => {
                ensure_positive(terms.amount)?;
                return Ok(vec![InsuranceClaimEvent::InsuranceClaimSubmitted(terms.clone())]);
            }
            (InsuranceClaim::Submitted(c), InsuranceClaimCommand::Submit(_)) => {
                return Err(DomainError::AlreadyExists { kind: "insurance claim", id: c.terms.claim_id })
            }
            (InsuranceClaim::NotSubmitted, _) => return Err(DomainError::Unknown { kind: "insurance claim" }),
            (InsuranceClaim::Submitted(c), _) => c,
        };
        let refuse = |action| DomainError::InvalidStateTransition { kind: "insurance claim", id: claim.terms.claim_id, status: claim.status.as_str(), action };
        match (claim.status, command) {
            (_, InsuranceClaimCommand::Submit(_)) => unreachable!("handled above"),
            (Submitted, InsuranceClaimCommand::Approve { amount }) => {
                ensure_positive(*amount)?;
                if *amount > claim.terms.amount {
                    return Err(DomainError::LimitExceeded(format!(
                        "insurance claim {} claims {}, the approval cannot pay {amount}",
                        claim.terms.claim_id, claim.terms.amount
                    )));
                }
                Ok(vec![InsuranceClaimEvent::InsuranceClaimApproved { amount: *amount }])
            }
            (Submitted, InsuranceClaimCommand::Reject { reason }) => Ok(vec![InsuranceClaimEvent::InsuranceClaimRejected { reason: reason.clone() }]),
            (Approved, InsuranceClaimCommand::Settle) => {
                let amount = claim.approved_amount.expect("an approved claim has an approved amount");
                Ok(vec![InsuranceClaimEvent::InsuranceClaimSettled { amount }])
            }
            (_, InsuranceClaimCommand::Approve { .. }) => Err(refuse("approve")),
            (_, InsuranceClaimCommand::Reject { .. }) => Err(refuse("reject")),
            (_, InsuranceClaimCommand::Settle) => Err(refuse("settle")),
        }
    }

    fn apply(self, event: &InsuranceClaimEvent) -> InsuranceClaim {
        match (self, event) {
            (InsuranceClaim::NotSubmitted, InsuranceClaimEvent::InsuranceClaimSubmitted(terms)) => InsuranceClaim::Submitted(SubmittedClaim {
                terms: terms.clone(),
                status: InsuranceClaimStatus::Submitted,
                approved_amount: None,
                rejection_reason: None,
            }),
            (InsuranceClaim::Submitted(mut c), event) => {
                match event {
                    InsuranceClaimEvent::InsuranceClaimSubmitted(_) => {}
                    InsuranceClaimEvent::InsuranceClaimApproved { amount } => {
                        c.status = InsuranceClaimStatus::Approved;
                        c.approved_amount = Some(*amount);
                    }
                    InsuranceClaimEvent::InsuranceClaimRejected { reason } => {
                        c.status = InsuranceClaimStatus::Rejected;
                        c.rejection_reason = Some(reason.clone());
                    }
                    InsuranceClaimEvent::InsuranceClaimSettled { .. } => c.status = InsuranceClaimStatus::Settled,
                }
                InsuranceClaim::Submitted(c)
            }
            (not_submitted @ InsuranceClaim::NotSubmitted, _) => not_submitted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;

    fn egp(major: i64) -> Money {
        Money::from_minor(major * 100)
    }
    fn terms() -> InsuranceClaimTerms {
        InsuranceClaimTerms {
            claim_id: Uuid::from_u128(1),
            medcard_id: Uuid::from_u128(2),
            provider_wallet_id: Uuid::from_u128(3),
            amount: egp(5_000),
            currency: Currency::egp(),
            description: "Appendectomy".into(),
            documents: vec!["invoices/INV-1.pdf".into(), "reports/OP-1.pdf".into()],
            submitted_by: "clinic-1".into(),
        }
    }
    fn submitted() -> InsuranceClaimEvent {
        InsuranceClaimEvent::InsuranceClaimSubmitted(terms())
    }
    fn approved(amount: Money) -> Vec<InsuranceClaimEvent> {
        vec![submitted(), InsuranceClaimEvent::InsuranceClaimApproved { amount }]
    }
    fn rejected() -> Vec<InsuranceClaimEvent> {
        vec![submitted(), InsuranceClaimEvent::InsuranceClaimRejected { reason: "not covered by the plan".into() }]
    }
    fn claim(events: &[InsuranceClaimEvent]) -> SubmittedClaim {
        given::<InsuranceClaim>(events).state().submitted().unwrap().clone()
    }

    #[test]
    fn a_provider_submits_a_claim() {
        given::<InsuranceClaim>(&[]).when(&InsuranceClaimCommand::Submit(terms())).then(&[submitted()]);
        assert_eq!(claim(&[submitted()]).status.as_str(), "SUBMITTED");
    }

    #[test]
    fn a_claim_of_nothing_is_refused() {
        let mut nothing = terms();
        nothing.amount = Money::ZERO;
        given::<InsuranceClaim>(&[]).when(&InsuranceClaimCommand::Submit(nothing)).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn a_claim_is_submitted_once_and_commands_need_a_submitted_claim() {
        given::<InsuranceClaim>(&[submitted()]).when(&InsuranceClaimCommand::Submit(terms())).then_refused("ALREADY_EXISTS");
        given::<InsuranceClaim>(&[]).when(&InsuranceClaimCommand::Settle).then_refused("NOT_FOUND");
    }

    #[test]
    fn an_insurer_approves_the_claimed_amount_or_less() {
        given::<InsuranceClaim>(&[submitted()])
            .when(&InsuranceClaimCommand::Approve { amount: egp(5_000) })
            .then(&[InsuranceClaimEvent::InsuranceClaimApproved { amount: egp(5_000) }]);
        given::<InsuranceClaim>(&[submitted()])
            .when(&InsuranceClaimCommand::Approve { amount: egp(4_200) })
            .then(&[InsuranceClaimEvent::InsuranceClaimApproved { amount: egp(4_200) }]);
        let c = claim(&approved(egp(4_200)));
        assert_eq!((c.status.as_str(), c.approved_amount), ("APPROVED", Some(egp(4_200))));
    }

    #[test]
    fn an_approval_pays_more_than_nothing_and_no_more_than_claimed() {
        given::<InsuranceClaim>(&[submitted()]).when(&InsuranceClaimCommand::Approve { amount: Money::from_minor(500_001) }).then_refused("LIMIT_EXCEEDED");
        given::<InsuranceClaim>(&[submitted()]).when(&InsuranceClaimCommand::Approve { amount: Money::ZERO }).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn an_insurer_rejects_a_claim_with_a_reason() {
        given::<InsuranceClaim>(&[submitted()])
            .when(&InsuranceClaimCommand::Reject { reason: "not covered by the plan".into() })
            .then(&[InsuranceClaimEvent::InsuranceClaimRejected { reason: "not covered by the plan".into() }]);
        let c = claim(&rejected());
        assert_eq!((c.status.as_str(), c.rejection_reason.as_deref()), ("REJECTED", Some("not covered by the plan")));
    }

    #[test]
    fn only_a_submitted_claim_is_decided() {
        for events in [approved(egp(1)), rejected()] {
            given::<InsuranceClaim>(&events).when(&InsuranceClaimCommand::Approve { amount: egp(1) }).then_refused("INVALID_STATE_TRANSITION");
            given::<InsuranceClaim>(&events).when(&InsuranceClaimCommand::Reject { reason: "x".into() }).then_refused("INVALID_STATE_TRANSITION");
        }
    }

    #[test]
    fn an_approved_claim_settles_once_for_the_approved_amount() {
        given::<InsuranceClaim>(&approved(egp(4_200)))
            .when(&InsuranceClaimCommand::Settle)
            .then(&[InsuranceClaimEvent::InsuranceClaimSettled { amount: egp(4_200) }]);
        let settled = [approved(egp(4_200)), vec![InsuranceClaimEvent::InsuranceClaimSettled { amount: egp(4_200) }]].concat();
        assert_eq!(claim(&settled).status.as_str(), "SETTLED");
        given::<InsuranceClaim>(&settled).when(&InsuranceClaimCommand::Settle).then_refused("INVALID_STATE_TRANSITION");
        given::<InsuranceClaim>(&settled).when(&InsuranceClaimCommand::Reject { reason: "x".into() }).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn a_claim_not_approved_does_not_settle() {
        given::<InsuranceClaim>(&[submitted()]).when(&InsuranceClaimCommand::Settle).then_refused("INVALID_STATE_TRANSITION");
        given::<InsuranceClaim>(&rejected()).when(&InsuranceClaimCommand::Settle).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn events_round_trip_through_the_envelope_encoding() {
        let events = [
            submitted(),
            InsuranceClaimEvent::InsuranceClaimApproved { amount: egp(4_200) },
            InsuranceClaimEvent::InsuranceClaimRejected { reason: "x".into() },
            InsuranceClaimEvent::InsuranceClaimSettled { amount: egp(4_200) },
        ];
        for event in events {
            let (event_type, data) = crate::envelope::encode_event(&event);
            assert_eq!(crate::envelope::decode_event::<InsuranceClaimEvent>(&event_type, &data).unwrap(), event);
        }
        let (event_type, data) = crate::envelope::encode_event(&submitted());
        assert_eq!(
            (event_type.as_str(), data["documents"].clone()),
            ("InsuranceClaimSubmitted", serde_json::json!(["invoices/INV-1.pdf", "reports/OP-1.pdf"]))
        );
    }
}
