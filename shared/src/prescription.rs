//! A prescription is paid at most once. Its id comes from the prescribing system,
//! so it gets a stream of its own, keyed by a name-based UUID of that id: the claim
//! that submits it appends `PrescriptionClaimed` in the same commit as
//! `ClaimSubmitted`, and the optimistic version check on this stream makes two
//! concurrent submissions of one prescription collide — one wins, the other is
//! refused `ALREADY_EXISTS`. A claim that ends `REJECTED` paid nothing, so its
//! rejection releases the prescription in the same commit and it may be claimed
//! again; an approved claim keeps it for good.

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The namespace of prescription stream ids (a fixed, random UUID).
const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_52a4_8d0e_4b8a_9c3e_2f7a_91d5_0b64);

/// The stream id of a prescription id: the same id always gives the same stream.
pub fn stream_uuid(prescription_id: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, prescription_id.as_bytes())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrescriptionCommand {
    Claim {
        prescription_id: String,
        claim_id: Uuid,
    },
    /// The claim holding the prescription was rejected.
    Release {
        claim_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum PrescriptionEvent {
    PrescriptionClaimed { prescription_id: String, claim_id: Uuid },
    PrescriptionReleased { claim_id: Uuid },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prescription {
    pub prescription_id: Option<String>,
    /// The claim holding it, if any.
    pub claimed_by: Option<Uuid>,
}

impl Aggregate for Prescription {
    const TYPE: &'static str = "prescription";
    type Command = PrescriptionCommand;
    type Event = PrescriptionEvent;

    fn decide(&self, command: &PrescriptionCommand) -> Result<Vec<PrescriptionEvent>, DomainError> {
        match (command, self.claimed_by) {
            // A retry of the same claim's submission changes nothing.
            (PrescriptionCommand::Claim { claim_id, .. }, Some(holder)) if holder == *claim_id => Ok(vec![]),
            (PrescriptionCommand::Claim { prescription_id, .. }, Some(holder)) => {
                Err(DomainError::PrescriptionAlreadyClaimed { prescription: prescription_id.clone(), claim: holder })
            }
            (PrescriptionCommand::Claim { prescription_id, claim_id }, None) => {
                if prescription_id.trim().is_empty() {
                    return Err(DomainError::Validation("prescriptionId must not be empty".into()));
                }
                Ok(vec![PrescriptionEvent::PrescriptionClaimed { prescription_id: prescription_id.clone(), claim_id: *claim_id }])
            }
            (PrescriptionCommand::Release { claim_id }, Some(holder)) if holder == *claim_id => {
                Ok(vec![PrescriptionEvent::PrescriptionReleased { claim_id: *claim_id }])
            }
            // Released already, or held by another claim: nothing of this claim's to release.
            (PrescriptionCommand::Release { .. }, _) => Ok(vec![]),
        }
    }

    fn apply(self, event: &PrescriptionEvent) -> Self {
        match event {
            PrescriptionEvent::PrescriptionClaimed { prescription_id, claim_id } => {
                Prescription { prescription_id: Some(prescription_id.clone()), claimed_by: Some(*claim_id) }
            }
            PrescriptionEvent::PrescriptionReleased { .. } => Prescription { claimed_by: None, ..self },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;

    fn claimed(claim_id: Uuid) -> PrescriptionEvent {
        PrescriptionEvent::PrescriptionClaimed { prescription_id: "RX-1".into(), claim_id }
    }

    fn claim(claim_id: Uuid) -> PrescriptionCommand {
        PrescriptionCommand::Claim { prescription_id: "RX-1".into(), claim_id }
    }

    #[test]
    fn a_new_prescription_is_claimed_by_the_first_claim() {
        let first = Uuid::now_v7();
        given::<Prescription>(&[]).when(&claim(first)).then(&[claimed(first)]);
    }

    #[test]
    fn a_claimed_prescription_refuses_another_claim() {
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let refusal = given::<Prescription>(&[claimed(first)]).when(&claim(second)).then_refused("ALREADY_EXISTS");
        assert!(refusal.to_string().contains(&first.to_string()), "{refusal}");
    }

    #[test]
    fn the_same_claim_claiming_again_changes_nothing() {
        let first = Uuid::now_v7();
        given::<Prescription>(&[claimed(first)]).when(&claim(first)).then(&[]);
    }

    #[test]
    fn a_rejected_claim_releases_it_and_another_claim_may_take_it() {
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let released = PrescriptionEvent::PrescriptionReleased { claim_id: first };
        given::<Prescription>(&[claimed(first)]).when(&PrescriptionCommand::Release { claim_id: first }).then(std::slice::from_ref(&released));
        given::<Prescription>(&[claimed(first), released]).when(&claim(second)).then(&[claimed(second)]);
    }

    #[test]
    fn only_the_holding_claim_releases_it() {
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        given::<Prescription>(&[claimed(first)]).when(&PrescriptionCommand::Release { claim_id: second }).then(&[]);
        given::<Prescription>(&[]).when(&PrescriptionCommand::Release { claim_id: first }).then(&[]);
    }

    #[test]
    fn an_empty_prescription_id_is_refused() {
        given::<Prescription>(&[]).when(&PrescriptionCommand::Claim { prescription_id: " ".into(), claim_id: Uuid::now_v7() }).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn the_stream_id_depends_only_on_the_prescription_id() {
        assert_eq!(stream_uuid("RX-1"), stream_uuid("RX-1"));
        assert_ne!(stream_uuid("RX-1"), stream_uuid("RX-2"));
    }
}
