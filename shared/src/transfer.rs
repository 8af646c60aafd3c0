//! The Transfer aggregate: the saga's own record of how far a transfer got.
//!
//! ```text
//! Initiated ──debit ok──▶ SourceDebited ──credit ok──▶ Completed
//!     │                        │
//!     └─debit refused─▶ Failed ◀─refund─ CreditRejected ◀─credit refused─┘
//!                         ▲                    │
//!                         └── refund refused ──┘  (the amount is held in suspense)
//! ```
//! Each step that moves money records the wallet event and the transfer event in one
//! atomic commit, so "in flight" is exactly the transfers in `SourceDebited` or
//! `CreditRejected`, and money is conserved at every instant.
//!
//! **Refunds in suspense.** The refund can be refused too: a source debited to zero
//! may be closed before its transfer is compensated, and a closed wallet takes
//! nothing. Retrying could never succeed, so the transfer does not wait: it records
//! `TransferRefundSuspended` (the amount and the source's refusal) and ends `FAILED`
//! in the same commit. The amount left the source and reached nobody; the transfer
//! is where it is accounted for, visible on its view (`refundInSuspense`) until an
//! operator settles it.

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
    /// The source refused the refund (`reason`, a contract code: it was closed
    /// meanwhile): the amount goes to suspense and the transfer ends `FAILED`.
    RecordRefundSuspended {
        reason: String,
    },
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
    TransferCreditRejected {
        reason: String,
    },
    TransferSourceRefunded {},
    /// The refund of `amount` could not land on the source (`reason`: its refusal,
    /// e.g. `WALLET_NOT_ACTIVE` for a wallet closed meanwhile), so it is held in
    /// suspense. `TransferFailed` follows in the same commit.
    TransferRefundSuspended {
        amount: Money,
        reason: String,
    },
    TransferFailed {
        reason: String,
    },
}

/// A refund that could not land: the amount, and why the source refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundInSuspense {
    pub amount: Money,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedTransfer {
    pub terms: TransferTerms,
    pub stage: TransferStage,
    /// Why the credit or the debit was refused (a contract error code).
    pub failure_reason: Option<String>,
    /// Set when the transfer failed and its refund could not land on the source.
    pub refund_in_suspense: Option<RefundInSuspense>,
}

// One transfer's state is loaded at a time: boxing the started one would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Transfer {
    #[default]
    NotStarted,
    Started(StartedTransfer),
}

impl StartedTransfer {
    /// Why the transfer fails: the recorded refusal, `INTERNAL` if none was.
    fn reason(&self) -> String {
        self.failure_reason.clone().unwrap_or_else(|| "INTERNAL".into())
    }
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
            (Transfer::NotStarted, _) => return Err(DomainError::Unknown { kind: "transfer" }),
            (Transfer::Started(t), _) => t,
        };
        let refuse = |action| DomainError::InvalidStateTransition { kind: "transfer", id: transfer.terms.transfer_id, status: transfer.stage.as_str(), action };
        match (transfer.stage, command) {
            (Initiated, TransferCommand::RecordSourceDebited) => Ok(vec![TransferEvent::TransferSourceDebited {}]),
            (Initiated, TransferCommand::Fail { reason }) => Ok(vec![TransferEvent::TransferFailed { reason: reason.clone() }]),
            (SourceDebited, TransferCommand::RecordCompleted) => Ok(vec![TransferEvent::TransferCompleted {}]),
            (SourceDebited, TransferCommand::RecordCreditRejected { reason }) => Ok(vec![TransferEvent::TransferCreditRejected { reason: reason.clone() }]),
            (CreditRejected, TransferCommand::RecordSourceRefunded) => {
                Ok(vec![TransferEvent::TransferSourceRefunded {}, TransferEvent::TransferFailed { reason: transfer.reason() }])
            }
            (CreditRejected, TransferCommand::RecordRefundSuspended { reason }) => Ok(vec![
                TransferEvent::TransferRefundSuspended { amount: transfer.terms.amount, reason: reason.clone() },
                TransferEvent::TransferFailed { reason: transfer.reason() },
            ]),
            (_, TransferCommand::RecordSourceDebited) => Err(refuse("record the source debit of")),
            (_, TransferCommand::RecordCompleted) => Err(refuse("complete")),
            (_, TransferCommand::RecordCreditRejected { .. }) => Err(refuse("reject the credit of")),
            (_, TransferCommand::RecordSourceRefunded) => Err(refuse("refund the source of")),
            (_, TransferCommand::RecordRefundSuspended { .. }) => Err(refuse("suspend the refund of")),
            (_, TransferCommand::Fail { .. }) => Err(refuse("fail")),
            (_, TransferCommand::Initiate(_)) => unreachable!("handled above"),
        }
    }

    fn apply(self, event: &TransferEvent) -> Transfer {
        match (self, event) {
            (Transfer::NotStarted, TransferEvent::TransferInitiated(terms)) => {
                Transfer::Started(StartedTransfer { terms: terms.clone(), stage: TransferStage::Initiated, failure_reason: None, refund_in_suspense: None })
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
                    // Nor does a suspended refund: `TransferFailed` follows it too.
                    TransferEvent::TransferRefundSuspended { amount, reason } => {
                        t.refund_in_suspense = Some(RefundInSuspense { amount: *amount, reason: reason.clone() })
                    }
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

    fn rejected() -> Vec<TransferEvent> {
        vec![initiated(), TransferEvent::TransferSourceDebited {}, TransferEvent::TransferCreditRejected { reason: "WALLET_NOT_ACTIVE".into() }]
    }
    fn suspended() -> [TransferEvent; 2] {
        [
            TransferEvent::TransferRefundSuspended { amount: Money::from_minor(10_000), reason: "WALLET_NOT_ACTIVE".into() },
            TransferEvent::TransferFailed { reason: "WALLET_NOT_ACTIVE".into() },
        ]
    }

    #[test]
    fn a_refund_the_source_refuses_goes_to_suspense_and_the_transfer_ends_failed_with_its_reason() {
        given::<Transfer>(&rejected()).when(&TransferCommand::RecordRefundSuspended { reason: "WALLET_NOT_ACTIVE".into() }).then(&suspended());
        let state = given::<Transfer>(&[rejected(), suspended().to_vec()].concat()).state();
        let t = state.started().unwrap();
        assert_eq!((t.stage.status(), t.failure_reason.as_deref()), ("FAILED", Some("WALLET_NOT_ACTIVE")));
        assert_eq!(t.refund_in_suspense, Some(RefundInSuspense { amount: Money::from_minor(10_000), reason: "WALLET_NOT_ACTIVE".into() }));
        // A transfer refunded normally has nothing in suspense.
        let refunded =
            given::<Transfer>(&[rejected(), vec![TransferEvent::TransferSourceRefunded {}, TransferEvent::TransferFailed { reason: "X".into() }]].concat())
                .state();
        assert_eq!(refunded.started().unwrap().refund_in_suspense, None);
    }

    #[test]
    fn only_a_rejected_credit_has_a_refund_to_suspend_and_only_once() {
        let suspend = TransferCommand::RecordRefundSuspended { reason: "WALLET_NOT_ACTIVE".into() };
        given::<Transfer>(&[initiated()]).when(&suspend).then_refused("INVALID_STATE_TRANSITION");
        given::<Transfer>(&[initiated(), TransferEvent::TransferSourceDebited {}]).when(&suspend).then_refused("INVALID_STATE_TRANSITION");
        let done = [rejected(), suspended().to_vec()].concat();
        given::<Transfer>(&done).when(&suspend).then_refused("INVALID_STATE_TRANSITION");
        given::<Transfer>(&done).when(&TransferCommand::RecordSourceRefunded).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn events_round_trip_through_the_envelope_encoding() {
        let events = [rejected(), suspended().to_vec(), vec![TransferEvent::TransferSourceRefunded {}, TransferEvent::TransferCompleted {}]].concat();
        for event in events {
            let (event_type, data) = crate::envelope::encode_event(&event);
            assert_eq!(crate::envelope::decode_event::<TransferEvent>(&event_type, &data).unwrap(), event);
        }
        let (event_type, data) = crate::envelope::encode_event(&suspended()[0]);
        assert_eq!((event_type.as_str(), data), ("TransferRefundSuspended", serde_json::json!({"amount": 10_000, "reason": "WALLET_NOT_ACTIVE"})));
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
