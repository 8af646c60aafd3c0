//! The Transfer aggregate: the saga's own record of how far a transfer got.
//!
//! ```text
//! Initiated ──debit ok──▶ SourceDebited ──credit ok──▶ Completed
//!     │                        │
//!     └─debit refused─▶ Failed ◀─refund─ CreditRejected ◀─credit refused─┘
//! ```
//! Each step that moves money records the wallet event and the transfer event in one
//! atomic commit, so "in flight" is exactly the transfers in `SourceDebited` or
//! `CreditRejected`, and money is conserved at every instant.

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::money::{Currency, Money};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferTerms {
    pub transfer_id: Uuid,
    pub source_wallet_id: Uuid,
    pub destination_wallet_id: Uuid,
    pub amount: Money,
    pub currency: Currency,
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub initiated_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferStage {
    Initiated,
    SourceDebited,
    CreditRejected,
    Completed,
    Failed,
}

impl TransferStage {
    /// The contract's status: everything short of an outcome is `PENDING`.
    pub fn status(self) -> &'static str {
        match self {
            TransferStage::Completed => "COMPLETED",
            TransferStage::Failed => "FAILED",
            _ => "PENDING",
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            TransferStage::Initiated => "initiated",
            TransferStage::SourceDebited => "source-debited",
            TransferStage::CreditRejected => "credit-rejected",
            TransferStage::Completed => "completed",
            TransferStage::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TransferCommand {
    Initiate(TransferTerms),
    RecordSourceDebited,
    RecordCompleted,
    RecordCreditRejected {
        reason: String,
    },
    /// The source got its money back after a refused credit.
    RecordSourceRefunded,
    /// The transfer ends without moving money (the source debit was refused, or
    /// the saga gave up before it).
    Fail {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum TransferEvent {
    TransferInitiated(TransferTerms),
    TransferSourceDebited {},
    TransferCompleted {},
    TransferCreditRejected { reason: String },
    TransferSourceRefunded {},
    TransferFailed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedTransfer {
    pub terms: TransferTerms,
    pub stage: TransferStage,
    /// Why the credit or the debit was refused (a contract error code).
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Transfer {
    #[default]
    NotStarted,
    Started(StartedTransfer),
}

impl Transfer {
    pub fn started(&self) -> Option<&StartedTransfer> {
        match self {
            Transfer::Started(t) => Some(t),
            Transfer::NotStarted => None,
        }
    }
}

impl Aggregate for Transfer {
    const TYPE: &'static str = "transfer";
    type Command = TransferCommand;
    type Event = TransferEvent;

    fn decide(&self, command: &TransferCommand) -> Result<Vec<TransferEvent>, DomainError> {
        use TransferStage::*;
        let transfer = match (self, command) {
            (Transfer::NotStarted, TransferCommand::Initiate(terms)) => {
                if terms.source_wallet_id == terms.destination_wallet_id {
                    return Err(DomainError::SameWallet);
                }
                if !terms.amount.is_positive() {
                    return Err(DomainError::Validation("amount must be greater than 0".into()));
                }
                return Ok(vec![TransferEvent::TransferInitiated(terms.clone())]);
            }
            (Transfer::Started(t), TransferCommand::Initiate(_)) => return Err(DomainError::AlreadyExists { kind: "transfer", id: t.terms.transfer_id }),
            (Transfer::NotStarted, _) => return Err(DomainError::NotFound { kind: "transfer", id: Uuid::nil() }),
            (Transfer::Started(t), _) => t,
        };
        let refuse = |action| DomainError::InvalidStateTransition { kind: "transfer", id: transfer.terms.transfer_id, status: transfer.stage.as_str(), action };
        match (transfer.stage, command) {
            (Initiated, TransferCommand::RecordSourceDebited) => Ok(vec![TransferEvent::TransferSourceDebited {}]),
            (Initiated, TransferCommand::Fail { reason }) => Ok(vec![TransferEvent::TransferFailed { reason: reason.clone() }]),
            (SourceDebited, TransferCommand::RecordCompleted) => Ok(vec![TransferEvent::TransferCompleted {}]),
            (SourceDebited, TransferCommand::RecordCreditRejected { reason }) => Ok(vec![TransferEvent::TransferCreditRejected { reason: reason.clone() }]),
            (CreditRejected, TransferCommand::RecordSourceRefunded) => {
                let reason = transfer.failure_reason.clone().unwrap_or_else(|| "INTERNAL".into());
                Ok(vec![TransferEvent::TransferSourceRefunded {}, TransferEvent::TransferFailed { reason }])
            }
            (_, TransferCommand::RecordSourceDebited) => Err(refuse("record the source debit of")),
            (_, TransferCommand::RecordCompleted) => Err(refuse("complete")),
            (_, TransferCommand::RecordCreditRejected { .. }) => Err(refuse("reject the credit of")),
            (_, TransferCommand::RecordSourceRefunded) => Err(refuse("refund the source of")),
            (_, TransferCommand::Fail { .. }) => Err(refuse("fail")),
            (_, TransferCommand::Initiate(_)) => unreachable!("handled above"),
        }
    }

    fn apply(self, event: &TransferEvent) -> Transfer {
        match (self, event) {
            (Transfer::NotStarted, TransferEvent::TransferInitiated(terms)) => {
                Transfer::Started(StartedTransfer { terms: terms.clone(), stage: TransferStage::Initiated, failure_reason: None })
            }
            (Transfer::Started(mut t), event) => {
                match event {
                    TransferEvent::TransferInitiated(_) => {}
                    TransferEvent::TransferSourceDebited {} => t.stage = TransferStage::SourceDebited,
                    TransferEvent::TransferCompleted {} => t.stage = TransferStage::Completed,
                    TransferEvent::TransferCreditRejected { reason } => {
                        t.stage = TransferStage::CreditRejected;
                        t.failure_reason = Some(reason.clone());
                    }
                    // The refund alone settles nothing: `TransferFailed` follows in the same commit.
                    TransferEvent::TransferSourceRefunded {} => {}
                    TransferEvent::TransferFailed { reason } => {
                        t.stage = TransferStage::Failed;
                        t.failure_reason = Some(reason.clone());
                    }
                }
                Transfer::Started(t)
            }
            (not_started @ Transfer::NotStarted, _) => not_started,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;

    fn terms() -> TransferTerms {
        TransferTerms {
            transfer_id: Uuid::from_u128(1),
            source_wallet_id: Uuid::from_u128(2),
            destination_wallet_id: Uuid::from_u128(3),
            amount: Money::from_minor(10_000),
            currency: Currency::egp(),
            reference: "TXF-1".into(),
            description: None,
            initiated_by: "alice".into(),
        }
    }
    fn initiated() -> TransferEvent {
        TransferEvent::TransferInitiated(terms())
    }

    #[test]
    fn a_transfer_is_initiated_pending() {
        given::<Transfer>(&[]).when(&TransferCommand::Initiate(terms())).then(&[initiated()]);
        assert_eq!(given::<Transfer>(&[initiated()]).state().started().unwrap().stage.status(), "PENDING");
    }

    #[test]
    fn a_transfer_to_the_same_wallet_is_refused() {
        let mut same = terms();
        same.destination_wallet_id = same.source_wallet_id;
        given::<Transfer>(&[]).when(&TransferCommand::Initiate(same)).then_refused("SAME_WALLET");
    }

    #[test]
    fn a_transfer_id_is_used_once() {
        given::<Transfer>(&[initiated()]).when(&TransferCommand::Initiate(terms())).then_refused("ALREADY_EXISTS");
    }

    #[test]
    fn the_happy_path_debits_then_completes() {
        given::<Transfer>(&[initiated()]).when(&TransferCommand::RecordSourceDebited).then(&[TransferEvent::TransferSourceDebited {}]);
        let debited = [initiated(), TransferEvent::TransferSourceDebited {}];
        given::<Transfer>(&debited).when(&TransferCommand::RecordCompleted).then(&[TransferEvent::TransferCompleted {}]);
        let done = given::<Transfer>(&[initiated(), TransferEvent::TransferSourceDebited {}, TransferEvent::TransferCompleted {}]).state();
        assert_eq!(done.started().unwrap().stage.status(), "COMPLETED");
    }

    #[test]
    fn a_refused_debit_fails_the_transfer_without_moving_money() {
        given::<Transfer>(&[initiated()])
            .when(&TransferCommand::Fail { reason: "INSUFFICIENT_FUNDS".into() })
            .then(&[TransferEvent::TransferFailed { reason: "INSUFFICIENT_FUNDS".into() }]);
    }

    #[test]
    fn a_refused_credit_is_compensated_by_a_refund_and_ends_failed_with_its_reason() {
        let debited = [initiated(), TransferEvent::TransferSourceDebited {}];
        given::<Transfer>(&debited)
            .when(&TransferCommand::RecordCreditRejected { reason: "WALLET_NOT_ACTIVE".into() })
            .then(&[TransferEvent::TransferCreditRejected { reason: "WALLET_NOT_ACTIVE".into() }]);
        let rejected = [initiated(), TransferEvent::TransferSourceDebited {}, TransferEvent::TransferCreditRejected { reason: "WALLET_NOT_ACTIVE".into() }];
        given::<Transfer>(&rejected)
            .when(&TransferCommand::RecordSourceRefunded)
            .then(&[TransferEvent::TransferSourceRefunded {}, TransferEvent::TransferFailed { reason: "WALLET_NOT_ACTIVE".into() }]);
        let state = given::<Transfer>(
            &[rejected.to_vec(), vec![TransferEvent::TransferSourceRefunded {}, TransferEvent::TransferFailed { reason: "WALLET_NOT_ACTIVE".into() }]].concat(),
        )
        .state();
        let t = state.started().unwrap();
        assert_eq!((t.stage.status(), t.failure_reason.as_deref()), ("FAILED", Some("WALLET_NOT_ACTIVE")));
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        given::<Transfer>(&[initiated()]).when(&TransferCommand::RecordCompleted).then_refused("INVALID_STATE_TRANSITION");
        given::<Transfer>(&[initiated()]).when(&TransferCommand::RecordSourceRefunded).then_refused("INVALID_STATE_TRANSITION");
        let debited = [initiated(), TransferEvent::TransferSourceDebited {}];
        given::<Transfer>(&debited).when(&TransferCommand::Fail { reason: "X".into() }).then_refused("INVALID_STATE_TRANSITION");
        let done = [initiated(), TransferEvent::TransferSourceDebited {}, TransferEvent::TransferCompleted {}];
        given::<Transfer>(&done).when(&TransferCommand::RecordSourceDebited).then_refused("INVALID_STATE_TRANSITION");
    }
}
