//! The Payment aggregate: a two-phase payment from a payer wallet to a merchant
//! wallet, like a card payment.
//!
//! ```text
//! AUTHORIZED ──capture (≤ authorised)──▶ CAPTURED ──refund (part)──▶ PARTIALLY_REFUNDED ─┐
//!   │    │                                  │                          ▲    │ refund     │
//!   │    └─void──▶ VOIDED                   │                          └────┘ (part)     │
//!   └─expire (now ≥ expiresAt)──▶ EXPIRED   └──refund (all that is left)──▶ REFUNDED ◀──┘
//! ```
//!
//! The payment records the decision; the money moves in the wallets, in the same
//! commit: authorising places a hold (id = payment id) on the payer, capturing
//! captures that hold and credits the merchant, voiding and expiring release it,
//! refunding debits the merchant and credits the payer. No stage is ever half done.
//!
//! Time is in the commands: a capture carries `now` and is refused once the
//! authorisation has reached its `expiresAt`, even before anyone recorded the expiry.

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::money::{Currency, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentTerms {
    pub payment_id: Uuid,
    pub payer_wallet_id: Uuid,
    pub merchant_wallet_id: Uuid,
    /// The authorised amount: what the hold on the payer sets aside.
    pub amount: Money,
    pub currency: Currency,
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// From this instant on the authorisation can no longer be captured, only expired or voided.
    pub expires_at: DateTime<Utc>,
    pub authorized_by: String,
}

/// The contract's payment statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Authorized,
    Captured,
    Voided,
    Expired,
    PartiallyRefunded,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Authorized => "AUTHORIZED",
            PaymentStatus::Captured => "CAPTURED",
            PaymentStatus::Voided => "VOIDED",
            PaymentStatus::Expired => "EXPIRED",
            PaymentStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    Authorize(PaymentTerms),
    /// Captures `amount` (all of the authorisation when `None`); the rest of the hold
    /// is released. Refused once `now ≥ expiresAt`.
    Capture {
        amount: Option<Money>,
        now: DateTime<Utc>,
    },
    /// Cancels an authorisation; also allowed past `expiresAt` (it releases the hold
    /// exactly as an expiry would).
    Void,
    /// Ends an authorisation nobody captured; only when `now ≥ expiresAt`.
    Expire {
        now: DateTime<Utc>,
    },
    /// Gives back `amount` (all that is still refundable when `None`) of the captured money.
    Refund {
        amount: Option<Money>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum PaymentEvent {
    PaymentAuthorized(PaymentTerms),
    /// `amount` moved to the merchant; `released` (authorised − captured) went back to the payer.
    PaymentCaptured {
        amount: Money,
        released: Money,
    },
    PaymentVoided {},
    PaymentExpired {},
    /// `refunded_total` is the sum of every refund so far, this one included.
    PaymentRefunded {
        amount: Money,
        reason: String,
        refunded_total: Money,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedPayment {
    pub terms: PaymentTerms,
    pub status: PaymentStatus,
    pub captured: Money,
    pub refunded: Money,
}

impl StartedPayment {
    /// What a refund may still give back: captured − refunded.
    pub fn refundable(&self) -> Money {
        Money::from_minor(self.captured.minor() - self.refunded.minor())
    }

    fn refuse(&self, status: &'static str, action: &'static str) -> DomainError {
        DomainError::InvalidStateTransition { kind: "payment", id: self.terms.payment_id, status, action }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Payment {
    #[default]
    NotStarted,
    Started(StartedPayment),
}

impl Payment {
    pub fn started(&self) -> Option<&StartedPayment> {
        match self {
            Payment::Started(p) => Some(p),
            Payment::NotStarted => None,
        }
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;

    fn decide(&self, command: &PaymentCommand) -> Result<Vec<PaymentEvent>, DomainError> {
        use PaymentStatus::*;
        let payment = match (self, command) {
            (Payment::NotStarted, PaymentCommand::Authorize(terms)) => {
                if terms.payer_wallet_id == terms.merchant_wallet_id {
                    return Err(DomainError::SameWallet);
                }
                if !terms.amount.is_positive() {
                    return Err(DomainError::Validation("amount must be greater than 0".into()));
                }
                return Ok(vec![PaymentEvent::PaymentAuthorized(terms.clone())]);
            }
            (Payment::Started(p), PaymentCommand::Authorize(_)) => return Err(DomainError::AlreadyExists { kind: "payment", id: p.terms.payment_id }),
            (Payment::NotStarted, _) => return Err(DomainError::Unknown { kind: "payment" }),
            (Payment::Started(p), _) => p,
        };
        let status = payment.status.as_str();
        match command {
            PaymentCommand::Authorize(_) => unreachable!("handled above"),
            PaymentCommand::Capture { amount, now } => {
                if payment.status != Authorized {
                    return Err(payment.refuse(status, "capture"));
                }
                if *now >= payment.terms.expires_at {
                    return Err(payment.refuse("expired", "capture"));
                }
                let authorized = payment.terms.amount;
                let amount = amount.unwrap_or(authorized);
                if !amount.is_positive() {
                    return Err(DomainError::Validation("amount must be greater than 0".into()));
                }
                if amount > authorized {
                    return Err(DomainError::LimitExceeded(format!(
                        "payment {} authorised {authorized}, a capture cannot take {amount}",
                        payment.terms.payment_id
                    )));
                }
                Ok(vec![PaymentEvent::PaymentCaptured { amount, released: Money::from_minor(authorized.minor() - amount.minor()) }])
            }
            PaymentCommand::Void => match payment.status {
                Authorized => Ok(vec![PaymentEvent::PaymentVoided {}]),
                _ => Err(payment.refuse(status, "void")),
            },
            PaymentCommand::Expire { now } => match payment.status {
                Authorized if *now >= payment.terms.expires_at => Ok(vec![PaymentEvent::PaymentExpired {}]),
                Authorized => Err(payment.refuse("not yet due", "expire")),
                _ => Err(payment.refuse(status, "expire")),
            },
            PaymentCommand::Refund { amount, reason } => {
                if !matches!(payment.status, Captured | PartiallyRefunded) {
                    return Err(payment.refuse(status, "refund"));
                }
                let refundable = payment.refundable();
                let amount = amount.unwrap_or(refundable);
                if !amount.is_positive() {
                    return Err(DomainError::Validation("amount must be greater than 0".into()));
                }
                if amount > refundable {
                    return Err(DomainError::LimitExceeded(format!(
                        "payment {} has {refundable} left to refund, the refund asks for {amount}",
                        payment.terms.payment_id
                    )));
                }
                let refunded_total = Money::from_minor(payment.refunded.minor() + amount.minor());
                Ok(vec![PaymentEvent::PaymentRefunded { amount, reason: reason.clone(), refunded_total }])
            }
        }
    }

    fn apply(self, event: &PaymentEvent) -> Payment {
        match (self, event) {
            (Payment::NotStarted, PaymentEvent::PaymentAuthorized(terms)) => {
                Payment::Started(StartedPayment { terms: terms.clone(), status: PaymentStatus::Authorized, captured: Money::ZERO, refunded: Money::ZERO })
            }
            (Payment::Started(mut p), event) => {
                match event {
                    PaymentEvent::PaymentAuthorized(_) => {}
                    PaymentEvent::PaymentCaptured { amount, .. } => {
                        p.status = PaymentStatus::Captured;
                        p.captured = *amount;
                    }
                    PaymentEvent::PaymentVoided {} => p.status = PaymentStatus::Voided,
                    PaymentEvent::PaymentExpired {} => p.status = PaymentStatus::Expired,
                    PaymentEvent::PaymentRefunded { refunded_total, .. } => {
                        p.refunded = *refunded_total;
                        p.status = if p.refunded >= p.captured { PaymentStatus::Refunded } else { PaymentStatus::PartiallyRefunded };
                    }
                }
                Payment::Started(p)
            }
            (not_started @ Payment::NotStarted, _) => not_started,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;
    use chrono::TimeZone;

    fn egp(major: i64) -> Money {
        Money::from_minor(major * 100)
    }
    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 10, 0, 0).unwrap()
    }
    fn terms() -> PaymentTerms {
        PaymentTerms {
            payment_id: Uuid::from_u128(1),
            payer_wallet_id: Uuid::from_u128(2),
            merchant_wallet_id: Uuid::from_u128(3),
            amount: egp(100),
            currency: Currency::egp(),
            reference: "ORDER-1".into(),
            description: Some("Pharmacy order".into()),
            expires_at: at(8),
            authorized_by: "alice".into(),
        }
    }
    fn authorized() -> PaymentEvent {
        PaymentEvent::PaymentAuthorized(terms())
    }
    fn captured(amount: Money) -> Vec<PaymentEvent> {
        vec![authorized(), PaymentEvent::PaymentCaptured { amount, released: Money::from_minor(egp(100).minor() - amount.minor()) }]
    }
    fn capture(amount: Option<Money>) -> PaymentCommand {
        PaymentCommand::Capture { amount, now: at(2) }
    }
    fn refund(amount: Option<Money>) -> PaymentCommand {
        PaymentCommand::Refund { amount, reason: "damaged".into() }
    }
    fn refunded(amount: Money, refunded_total: Money) -> PaymentEvent {
        PaymentEvent::PaymentRefunded { amount, reason: "damaged".into(), refunded_total }
    }
    fn status(events: &[PaymentEvent]) -> &'static str {
        given::<Payment>(events).state().started().unwrap().status.as_str()
    }

    #[test]
    fn a_payment_is_authorised_first() {
        given::<Payment>(&[]).when(&PaymentCommand::Authorize(terms())).then(&[authorized()]);
        assert_eq!(status(&[authorized()]), "AUTHORIZED");
    }

    #[test]
    fn a_payment_to_the_payers_own_wallet_is_refused() {
        let mut same = terms();
        same.merchant_wallet_id = same.payer_wallet_id;
        given::<Payment>(&[]).when(&PaymentCommand::Authorize(same)).then_refused("SAME_WALLET");
    }

    #[test]
    fn a_payment_of_nothing_is_refused() {
        let mut nothing = terms();
        nothing.amount = Money::ZERO;
        given::<Payment>(&[]).when(&PaymentCommand::Authorize(nothing)).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn a_payment_id_is_authorised_once() {
        given::<Payment>(&[authorized()]).when(&PaymentCommand::Authorize(terms())).then_refused("ALREADY_EXISTS");
    }

    #[test]
    fn commands_on_a_missing_payment_are_not_found() {
        given::<Payment>(&[]).when(&PaymentCommand::Void).then_refused("NOT_FOUND");
    }

    #[test]
    fn a_capture_without_an_amount_takes_the_whole_authorisation() {
        given::<Payment>(&[authorized()]).when(&capture(None)).then(&[PaymentEvent::PaymentCaptured { amount: egp(100), released: Money::ZERO }]);
        let state = given::<Payment>(&captured(egp(100))).state();
        let p = state.started().unwrap();
        assert_eq!((p.status.as_str(), p.captured), ("CAPTURED", egp(100)));
    }

    #[test]
    fn a_partial_capture_releases_the_rest() {
        given::<Payment>(&[authorized()]).when(&capture(Some(egp(60)))).then(&[PaymentEvent::PaymentCaptured { amount: egp(60), released: egp(40) }]);
    }

    #[test]
    fn a_capture_takes_more_than_nothing_and_at_most_the_authorisation() {
        given::<Payment>(&[authorized()]).when(&capture(Some(Money::from_minor(10_001)))).then_refused("LIMIT_EXCEEDED");
        given::<Payment>(&[authorized()]).when(&capture(Some(Money::ZERO))).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn a_payment_is_captured_once() {
        given::<Payment>(&captured(egp(60))).when(&capture(Some(egp(40)))).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn an_authorisation_past_its_expiry_cannot_be_captured_even_before_it_is_expired() {
        let late = PaymentCommand::Capture { amount: None, now: at(8) };
        let refusal = given::<Payment>(&[authorized()]).when(&late).then_refused("INVALID_STATE_TRANSITION");
        assert_eq!(refusal.to_string(), format!("cannot capture payment {} while it is expired", Uuid::from_u128(1)));
    }

    #[test]
    fn only_an_authorised_payment_is_voided() {
        given::<Payment>(&[authorized()]).when(&PaymentCommand::Void).then(&[PaymentEvent::PaymentVoided {}]);
        assert_eq!(status(&[authorized(), PaymentEvent::PaymentVoided {}]), "VOIDED");
        given::<Payment>(&captured(egp(100))).when(&PaymentCommand::Void).then_refused("INVALID_STATE_TRANSITION");
        given::<Payment>(&[authorized(), PaymentEvent::PaymentVoided {}]).when(&PaymentCommand::Void).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn an_authorised_payment_expires_from_its_expiry_on_and_not_before() {
        given::<Payment>(&[authorized()]).when(&PaymentCommand::Expire { now: at(8) }).then(&[PaymentEvent::PaymentExpired {}]);
        assert_eq!(status(&[authorized(), PaymentEvent::PaymentExpired {}]), "EXPIRED");
        let refusal = given::<Payment>(&[authorized()]).when(&PaymentCommand::Expire { now: at(7) }).then_refused("INVALID_STATE_TRANSITION");
        assert_eq!(refusal.to_string(), format!("cannot expire payment {} while it is not yet due", Uuid::from_u128(1)));
    }

    #[test]
    fn a_captured_or_voided_payment_does_not_expire() {
        given::<Payment>(&captured(egp(100))).when(&PaymentCommand::Expire { now: at(9) }).then_refused("INVALID_STATE_TRANSITION");
        given::<Payment>(&[authorized(), PaymentEvent::PaymentVoided {}]).when(&PaymentCommand::Expire { now: at(9) }).then_refused("INVALID_STATE_TRANSITION");
        let expired = [authorized(), PaymentEvent::PaymentExpired {}];
        given::<Payment>(&expired).when(&capture(None)).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn a_refund_needs_a_captured_payment() {
        given::<Payment>(&[authorized()]).when(&refund(None)).then_refused("INVALID_STATE_TRANSITION");
        given::<Payment>(&[authorized(), PaymentEvent::PaymentVoided {}]).when(&refund(None)).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn several_partial_refunds_add_up_to_a_full_refund() {
        given::<Payment>(&captured(egp(60))).when(&refund(Some(egp(20)))).then(&[refunded(egp(20), egp(20))]);
        let once = [captured(egp(60)), vec![refunded(egp(20), egp(20))]].concat();
        assert_eq!(status(&once), "PARTIALLY_REFUNDED");
        given::<Payment>(&once).when(&refund(Some(egp(15)))).then(&[refunded(egp(15), egp(35))]);
        let twice = [once.clone(), vec![refunded(egp(15), egp(35))]].concat();
        given::<Payment>(&twice).when(&refund(None)).then(&[refunded(egp(25), egp(60))]);
        let all = [twice, vec![refunded(egp(25), egp(60))]].concat();
        assert_eq!(status(&all), "REFUNDED");
        given::<Payment>(&all).when(&refund(Some(Money::from_minor(1)))).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn refunds_never_exceed_what_was_captured() {
        given::<Payment>(&captured(egp(60))).when(&refund(Some(Money::from_minor(6_001)))).then_refused("LIMIT_EXCEEDED");
        let once = [captured(egp(60)), vec![refunded(egp(50), egp(50))]].concat();
        given::<Payment>(&once).when(&refund(Some(Money::from_minor(1_001)))).then_refused("LIMIT_EXCEEDED");
        given::<Payment>(&once).when(&refund(Some(Money::ZERO))).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn events_round_trip_through_the_envelope_encoding() {
        let events = [
            authorized(),
            PaymentEvent::PaymentCaptured { amount: egp(60), released: egp(40) },
            PaymentEvent::PaymentVoided {},
            PaymentEvent::PaymentExpired {},
            refunded(egp(20), egp(20)),
        ];
        for event in events {
            let (event_type, data) = crate::envelope::encode_event(&event);
            assert_eq!(crate::envelope::decode_event::<PaymentEvent>(&event_type, &data).unwrap(), event);
        }
        let (event_type, data) = crate::envelope::encode_event(&authorized());
        assert_eq!(event_type, "PaymentAuthorized");
        assert_eq!((data["amount"].clone(), data["expiresAt"].clone()), (serde_json::json!(10_000), serde_json::json!("2026-11-08T10:00:00Z")));
    }
}
