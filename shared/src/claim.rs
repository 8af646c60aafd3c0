//! The prescription Claim aggregate: the claim saga's own record of how far a claim
//! got, as [`crate::transfer::Transfer`] is for transfers, and the pure [`price`]
//! function.
//!
//! ```text
//! Submitted ─▶ Priced ─▶ CoverageReserved ─▶ CopaymentDebited ─▶ SponsorDebited ─▶ PharmacyCredited = APPROVED
//!     │           │              │                   │                  │
//!     └─ fail ────┴─▶ REJECTED   └──── fail: compensate in reverse order ┘
//!                        ▲  release reservation ◀─ refund copayment ◀─ refund sponsor
//!                        └──────────────┘
//! ```
//! A failed step with nothing to undo rejects the claim at once. Otherwise
//! `ClaimStepFailed` records the reason and the claim walks back one step per
//! compensation, newest first (refund the sponsor, refund the copayment, release the
//! reservation); releasing the reservation ends it `REJECTED` with the reason.
//! Until then the claim is `PENDING`, and [`StartedClaim::next_compensation`] says
//! what is left to undo.
//!
//! **Refunds in suspense.** A refund can be refused for good: the patient's or the
//! sponsor's wallet, debited to zero, may be closed before the claim is
//! compensated, and a closed wallet takes nothing. Instead of retrying forever,
//! the compensation records `ClaimRefundSuspended` (whose refund, which wallet, the
//! amount, the wallet's refusal), which undoes the step as far as the claim is
//! concerned, and walks on: the claim still ends `REJECTED`, with the refund listed
//! in [`StartedClaim::refunds_in_suspense`] for an operator to settle.
//!
//! Each step is meant to commit with the wallet or card events that do it (as the
//! transfer saga does), so the claim's stage is exactly how far the money got. A zero
//! copayment (100 % coverage) or a zero covered amount (0 % coverage) moves no money
//! in its step; the step is recorded all the same so that the stages stay linear.

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::medcard::Month;
use crate::money::{Money, MAX_AMOUNT};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimItem {
    pub drug_code: String,
    pub drug_name: String,
    pub quantity: u32,
    pub unit_price: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimTerms {
    pub claim_id: Uuid,
    pub medcard_id: Uuid,
    pub beneficiary_id: Uuid,
    /// The prescription's id in the prescribing system (paid at most once).
    pub prescription_id: String,
    pub pharmacy_wallet_id: Uuid,
    pub patient_wallet_id: Uuid,
    pub items: Vec<ClaimItem>,
    pub submitted_by: String,
    /// The card's holder when the claim was filed (so the holder's claims can be
    /// listed without reading the card). Absent on claims filed before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_id: Option<String>,
}

/// What a claim costs and who pays it: `covered` by the sponsor, `copayment` by the
/// patient, `total = covered + copayment` to the pharmacy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Priced {
    pub total: Money,
    pub covered: Money,
    pub copayment: Money,
}

fn too_large() -> DomainError {
    DomainError::Validation(format!("the claim's total (Σ quantity × unitPrice) must be at most {MAX_AMOUNT}"))
}

/// `Σ quantity × unitPrice`, exactly; every item needs a quantity and a price above
/// zero, and the total is an amount like any other a command moves: above
/// [`MAX_AMOUNT`] it is refused (computed in i128, so it is never wrapped first).
pub fn items_total(items: &[ClaimItem]) -> Result<Money, DomainError> {
    if items.is_empty() {
        return Err(DomainError::Validation("a claim needs at least one item".into()));
    }
    let mut total: i128 = 0;
    for item in items {
        if item.quantity == 0 {
            return Err(DomainError::Validation(format!("item {} needs a quantity greater than 0", item.drug_code)));
        }
        if !item.unit_price.is_positive() {
            return Err(DomainError::Validation(format!("item {} needs a unitPrice greater than 0", item.drug_code)));
        }
        // Each line is below 2^95, so only an absurd number of lines could overflow i128.
        total = total.checked_add(item.quantity as i128 * item.unit_price.minor() as i128).ok_or_else(too_large)?;
    }
    i64::try_from(total).ok().map(Money::from_minor).filter(|total| *total <= MAX_AMOUNT).ok_or_else(too_large)
}

/// Prices a claim.
///
/// `total = Σ quantity × unitPrice`, `covered = min(total × coveragePercent / 100,
/// remaining)`, `copayment = total − covered`.
///
/// **Rounding.** The contract rounds "to the minor unit in the patient's favour". The
/// patient pays the copayment, so their favour is the *smaller* copayment: the
/// sponsor's share `total × coveragePercent / 100` is rounded **up** to the minor
/// unit, which rounds the copayment down (80 % of 0.07 covers 0.06 and leaves 0.01 to
/// the patient, not 0.05 and 0.02). The monthly limit still caps the cover: it is
/// already a whole number of minor units, so taking the minimum afterwards rounds
/// nothing. The product is formed in `i128`, so no total can overflow it.
///
/// With nothing left of the month's limit the claim is refused `LIMIT_EXCEEDED`.
pub fn price(items: &[ClaimItem], coverage_percent: u8, remaining_limit: Money) -> Result<Priced, DomainError> {
    if coverage_percent > 100 {
        return Err(DomainError::Validation(format!("coveragePercent must be between 0 and 100, got {coverage_percent}")));
    }
    let total = items_total(items)?;
    if !remaining_limit.is_positive() {
        return Err(DomainError::LimitExceeded("nothing is left of the card's monthly limit to cover the claim".into()));
    }
    let share = (total.minor() as i128 * coverage_percent as i128 + 99) / 100;
    let covered = share.min(remaining_limit.minor() as i128) as i64;
    Ok(Priced { total, covered: Money::from_minor(covered), copayment: Money::from_minor(total.minor() - covered) })
}

/// How far a claim's money got. While compensating, the claim walks back down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClaimStep {
    Submitted,
    Priced,
    CoverageReserved,
    CopaymentDebited,
    SponsorDebited,
    PharmacyCredited,
}

impl ClaimStep {
    fn as_str(self) -> &'static str {
        match self {
            ClaimStep::Submitted => "submitted",
            ClaimStep::Priced => "priced",
            ClaimStep::CoverageReserved => "coverage-reserved",
            ClaimStep::CopaymentDebited => "copayment-debited",
            ClaimStep::SponsorDebited => "sponsor-debited",
            ClaimStep::PharmacyCredited => "pharmacy-credited",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    Pending,
    Approved,
    Rejected,
}

impl ClaimOutcome {
    /// The contract's claim status.
    pub fn status(self) -> &'static str {
        match self {
            ClaimOutcome::Pending => "PENDING",
            ClaimOutcome::Approved => "APPROVED",
            ClaimOutcome::Rejected => "REJECTED",
        }
    }
}

/// A refund a failed claim owes: the covered amount back to the card's sponsor, or
/// the copayment back to the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Refund {
    Sponsor,
    Copayment,
}

impl Refund {
    /// The step the refund undoes.
    fn undoes(self) -> ClaimStep {
        match self {
            Refund::Sponsor => ClaimStep::SponsorDebited,
            Refund::Copayment => ClaimStep::CopaymentDebited,
        }
    }
}

/// A refund that could not land: whose, on which wallet, how much, and why the
/// wallet refused it (a contract code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuspendedRefund {
    pub refund: Refund,
    pub wallet_id: Uuid,
    pub amount: Money,
    pub reason: String,
}

/// The next thing a failed claim must undo, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compensation {
    RefundSponsor,
    RefundCopayment,
    ReleaseReservation,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimCommand {
    Submit(ClaimTerms),
    /// The price, from [`price`] with the card's coverage and what was left of `month`.
    RecordPriced {
        priced: Priced,
        coverage_percent: u8,
        month: Month,
    },
    RecordCoverageReserved,
    RecordCopaymentDebited,
    RecordSponsorDebited,
    /// The pharmacy got the total: the claim is approved.
    RecordPharmacyCredited,
    /// A step was refused with `reason` (a contract code): the claim is rejected at
    /// once if nothing is to be undone, otherwise compensation starts.
    Fail {
        reason: String,
    },
    RecordSponsorRefunded,
    RecordCopaymentRefunded,
    /// `wallet_id` refused the `refund` for good (`reason`, a contract code: it was
    /// closed meanwhile): its amount goes to suspense, and compensation goes on.
    RecordRefundSuspended {
        refund: Refund,
        wallet_id: Uuid,
        reason: String,
    },
    /// The last compensation: the claim ends rejected.
    RecordReservationReleased,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum ClaimEvent {
    ClaimSubmitted(ClaimTerms),
    ClaimPriced {
        #[serde(flatten)]
        priced: Priced,
        coverage_percent: u8,
        month: Month,
    },
    ClaimCoverageReserved {},
    ClaimCopaymentDebited {},
    ClaimSponsorDebited {},
    ClaimPharmacyCredited {},
    ClaimApproved {},
    /// A step was refused after something had been done: compensation starts.
    ClaimStepFailed {
        reason: String,
    },
    ClaimSponsorRefunded {},
    ClaimCopaymentRefunded {},
    /// The refund could not land on its wallet and is held in suspense; for the
    /// claim's progress it stands for the refund (the step counts as undone).
    ClaimRefundSuspended(SuspendedRefund),
    ClaimReservationReleased {},
    ClaimRejected {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    #[serde(flatten)]
    pub priced: Priced,
    pub coverage_percent: u8,
    pub month: Month,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedClaim {
    pub terms: ClaimTerms,
    pub pricing: Option<Pricing>,
    pub step: ClaimStep,
    pub outcome: ClaimOutcome,
    /// Why a step was refused (a contract code), from the failure on.
    pub failure_reason: Option<String>,
    /// Refunds that could not land, held in suspense (at most one of each kind).
    pub refunds_in_suspense: Vec<SuspendedRefund>,
}

impl StartedClaim {
    /// Failed but not yet rejected: money or limit still to give back.
    pub fn is_compensating(&self) -> bool {
        self.outcome == ClaimOutcome::Pending && self.failure_reason.is_some()
    }

    pub fn next_compensation(&self) -> Option<Compensation> {
        if !self.is_compensating() {
            return None;
        }
        match self.step {
            ClaimStep::SponsorDebited => Some(Compensation::RefundSponsor),
            ClaimStep::CopaymentDebited => Some(Compensation::RefundCopayment),
            ClaimStep::CoverageReserved => Some(Compensation::ReleaseReservation),
            ClaimStep::Submitted | ClaimStep::Priced | ClaimStep::PharmacyCredited => None,
        }
    }

    fn stage(&self) -> &'static str {
        match self.outcome {
            ClaimOutcome::Approved => "approved",
            ClaimOutcome::Rejected => "rejected",
            ClaimOutcome::Pending if self.failure_reason.is_some() => "compensating",
            ClaimOutcome::Pending => self.step.as_str(),
        }
    }

    fn reason(&self) -> String {
        self.failure_reason.clone().unwrap_or_else(|| "INTERNAL".into())
    }
}

// One state value per aggregate, moved from event to event: the empty variant being
// small saves nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Claim {
    #[default]
    NotSubmitted,
    Submitted(StartedClaim),
}

impl Claim {
    pub fn started(&self) -> Option<&StartedClaim> {
        match self {
            Claim::Submitted(c) => Some(c),
            Claim::NotSubmitted => None,
        }
    }
}

impl Aggregate for Claim {
    const TYPE: &'static str = "claim";
    type Command = ClaimCommand;
    type Event = ClaimEvent;

    fn decide(&self, command: &ClaimCommand) -> Result<Vec<ClaimEvent>, DomainError> {
        use ClaimStep::*;
        let claim = match (self, command) {
            (Claim::NotSubmitted, ClaimCommand::Submit(terms)) => {
                items_total(&terms.items)?;
                return Ok(vec![ClaimEvent::ClaimSubmitted(terms.clone())]);
            }
            (Claim::Submitted(c), ClaimCommand::Submit(_)) => return Err(DomainError::AlreadyExists { kind: "claim", id: c.terms.claim_id }),
            (Claim::NotSubmitted, _) => return Err(DomainError::Unknown { kind: "claim" }),
            (Claim::Submitted(c), _) => c,
        };
        let refuse = |action| DomainError::InvalidStateTransition { kind: "claim", id: claim.terms.claim_id, status: claim.stage(), action };
        let pending = claim.outcome == ClaimOutcome::Pending;
        let going = pending && claim.failure_reason.is_none();
        let compensating = claim.is_compensating();
        match command {
            ClaimCommand::Submit(_) => unreachable!("handled above"),
            ClaimCommand::RecordPriced { priced, coverage_percent, month } if going && claim.step == Submitted => {
                let total = items_total(&claim.terms.items)?;
                let consistent = priced.total == total
                    && priced.covered.minor() >= 0
                    && priced.copayment.minor() >= 0
                    && priced.covered.checked_add(priced.copayment) == Some(total)
                    && *coverage_percent <= 100;
                if !consistent {
                    return Err(DomainError::Validation(format!("{priced:?} is not a price of claim {} (total {total})", claim.terms.claim_id)));
                }
                Ok(vec![ClaimEvent::ClaimPriced { priced: *priced, coverage_percent: *coverage_percent, month: *month }])
            }
            ClaimCommand::RecordCoverageReserved if going && claim.step == Priced => Ok(vec![ClaimEvent::ClaimCoverageReserved {}]),
            ClaimCommand::RecordCopaymentDebited if going && claim.step == CoverageReserved => Ok(vec![ClaimEvent::ClaimCopaymentDebited {}]),
            ClaimCommand::RecordSponsorDebited if going && claim.step == CopaymentDebited => Ok(vec![ClaimEvent::ClaimSponsorDebited {}]),
            ClaimCommand::RecordPharmacyCredited if going && claim.step == SponsorDebited => {
                Ok(vec![ClaimEvent::ClaimPharmacyCredited {}, ClaimEvent::ClaimApproved {}])
            }
            ClaimCommand::Fail { reason } if going => match claim.step {
                Submitted | Priced => Ok(vec![ClaimEvent::ClaimRejected { reason: reason.clone() }]),
                CoverageReserved | CopaymentDebited | SponsorDebited => Ok(vec![ClaimEvent::ClaimStepFailed { reason: reason.clone() }]),
                PharmacyCredited => Err(refuse("fail")),
            },
            ClaimCommand::RecordSponsorRefunded if compensating && claim.step == SponsorDebited => Ok(vec![ClaimEvent::ClaimSponsorRefunded {}]),
            ClaimCommand::RecordCopaymentRefunded if compensating && claim.step == CopaymentDebited => Ok(vec![ClaimEvent::ClaimCopaymentRefunded {}]),
            ClaimCommand::RecordRefundSuspended { refund, wallet_id, reason } if compensating && claim.step == refund.undoes() => {
                let priced = claim.pricing.as_ref().map(|p| p.priced).ok_or_else(|| refuse("suspend a refund of"))?;
                let amount = match refund {
                    Refund::Sponsor => priced.covered,
                    Refund::Copayment => priced.copayment,
                };
                Ok(vec![ClaimEvent::ClaimRefundSuspended(SuspendedRefund { refund: *refund, wallet_id: *wallet_id, amount, reason: reason.clone() })])
            }
            ClaimCommand::RecordReservationReleased if compensating && claim.step == CoverageReserved => {
                Ok(vec![ClaimEvent::ClaimReservationReleased {}, ClaimEvent::ClaimRejected { reason: claim.reason() }])
            }
            ClaimCommand::RecordPriced { .. } => Err(refuse("price")),
            ClaimCommand::RecordCoverageReserved => Err(refuse("record the reservation of")),
            ClaimCommand::RecordCopaymentDebited => Err(refuse("record the copayment of")),
            ClaimCommand::RecordSponsorDebited => Err(refuse("record the sponsor debit of")),
            ClaimCommand::RecordPharmacyCredited => Err(refuse("approve")),
            ClaimCommand::Fail { .. } => Err(refuse("fail")),
            ClaimCommand::RecordSponsorRefunded => Err(refuse("refund the sponsor of")),
            ClaimCommand::RecordCopaymentRefunded => Err(refuse("refund the copayment of")),
            ClaimCommand::RecordRefundSuspended { .. } => Err(refuse("suspend a refund of")),
            ClaimCommand::RecordReservationReleased => Err(refuse("release the reservation of")),
        }
    }

    fn apply(self, event: &ClaimEvent) -> Claim {
        match (self, event) {
            (Claim::NotSubmitted, ClaimEvent::ClaimSubmitted(terms)) => Claim::Submitted(StartedClaim {
                terms: terms.clone(),
                pricing: None,
                step: ClaimStep::Submitted,
                outcome: ClaimOutcome::Pending,
                failure_reason: None,
                refunds_in_suspense: Vec::new(),
            }),
            (Claim::Submitted(mut c), event) => {
                match event {
                    ClaimEvent::ClaimSubmitted(_) => {}
                    ClaimEvent::ClaimPriced { priced, coverage_percent, month } => {
                        c.pricing = Some(Pricing { priced: *priced, coverage_percent: *coverage_percent, month: *month });
                        c.step = ClaimStep::Priced;
                    }
                    ClaimEvent::ClaimCoverageReserved {} => c.step = ClaimStep::CoverageReserved,
                    ClaimEvent::ClaimCopaymentDebited {} => c.step = ClaimStep::CopaymentDebited,
                    ClaimEvent::ClaimSponsorDebited {} => c.step = ClaimStep::SponsorDebited,
                    ClaimEvent::ClaimPharmacyCredited {} => c.step = ClaimStep::PharmacyCredited,
                    ClaimEvent::ClaimApproved {} => c.outcome = ClaimOutcome::Approved,
                    ClaimEvent::ClaimStepFailed { reason } => c.failure_reason = Some(reason.clone()),
                    // Each compensation undoes the newest step still done.
                    ClaimEvent::ClaimSponsorRefunded {} => c.step = ClaimStep::CopaymentDebited,
                    ClaimEvent::ClaimCopaymentRefunded {} => c.step = ClaimStep::CoverageReserved,
                    ClaimEvent::ClaimRefundSuspended(suspended) => {
                        c.step = match suspended.refund {
                            Refund::Sponsor => ClaimStep::CopaymentDebited,
                            Refund::Copayment => ClaimStep::CoverageReserved,
                        };
                        c.refunds_in_suspense.push(suspended.clone());
                    }
                    ClaimEvent::ClaimReservationReleased {} => c.step = ClaimStep::Priced,
                    ClaimEvent::ClaimRejected { reason } => {
                        c.outcome = ClaimOutcome::Rejected;
                        c.failure_reason = Some(reason.clone());
                    }
                }
                Claim::Submitted(c)
            }
            (not_submitted @ Claim::NotSubmitted, _) => not_submitted,
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
    fn item(code: &str, quantity: u32, unit_price: Money) -> ClaimItem {
        ClaimItem { drug_code: code.into(), drug_name: format!("Drug {code}"), quantity, unit_price }
    }
    fn items() -> Vec<ClaimItem> {
        vec![item("PAN500", 2, egp(150)), item("AMOX250", 1, egp(100))]
    }
    fn priced(total: i64, covered: i64, copayment: i64) -> Priced {
        Priced { total: Money::from_minor(total), covered: Money::from_minor(covered), copayment: Money::from_minor(copayment) }
    }
    fn terms() -> ClaimTerms {
        ClaimTerms {
            claim_id: Uuid::from_u128(1),
            medcard_id: Uuid::from_u128(2),
            beneficiary_id: Uuid::from_u128(3),
            prescription_id: "RX-789".into(),
            pharmacy_wallet_id: Uuid::from_u128(4),
            patient_wallet_id: Uuid::from_u128(5),
            items: items(),
            submitted_by: "pharmacy-1".into(),
            holder_id: None,
        }
    }
    fn nov() -> Month {
        Month::parse("2026-11").unwrap()
    }
    fn submitted() -> ClaimEvent {
        ClaimEvent::ClaimSubmitted(terms())
    }
    fn priced_event() -> ClaimEvent {
        ClaimEvent::ClaimPriced { priced: priced(40_000, 32_000, 8_000), coverage_percent: 80, month: nov() }
    }
    /// The claim's events up to and including `step`.
    fn up_to(step: ClaimStep) -> Vec<ClaimEvent> {
        let all = [
            (ClaimStep::Submitted, submitted()),
            (ClaimStep::Priced, priced_event()),
            (ClaimStep::CoverageReserved, ClaimEvent::ClaimCoverageReserved {}),
            (ClaimStep::CopaymentDebited, ClaimEvent::ClaimCopaymentDebited {}),
            (ClaimStep::SponsorDebited, ClaimEvent::ClaimSponsorDebited {}),
        ];
        all.into_iter().filter(|(s, _)| *s <= step).map(|(_, e)| e).collect()
    }
    fn with(mut events: Vec<ClaimEvent>, more: impl IntoIterator<Item = ClaimEvent>) -> Vec<ClaimEvent> {
        events.extend(more);
        events
    }
    fn failed(step: ClaimStep) -> Vec<ClaimEvent> {
        with(up_to(step), [ClaimEvent::ClaimStepFailed { reason: "INSUFFICIENT_FUNDS".into() }])
    }
    fn claim(events: &[ClaimEvent]) -> StartedClaim {
        given::<Claim>(events).state().started().unwrap().clone()
    }

    #[test]
    fn the_price_is_the_items_total_split_by_the_coverage() {
        assert_eq!(price(&items(), 80, egp(1_000)), Ok(priced(40_000, 32_000, 8_000)));
    }

    #[test]
    fn a_fraction_of_a_minor_unit_goes_in_the_patients_favour() {
        // 80 % of 0.07 is 0.056: the sponsor covers 0.06, the patient pays 0.01 (not 0.02).
        assert_eq!(price(&[item("A", 1, Money::from_minor(7))], 80, egp(1)), Ok(priced(7, 6, 1)));
        // 75 % of 0.01 is 0.0075: the patient pays nothing.
        assert_eq!(price(&[item("A", 1, Money::from_minor(1))], 75, egp(1)), Ok(priced(1, 1, 0)));
        // An exact share is not rounded at all: 80 % of 0.05 is 0.04.
        assert_eq!(price(&[item("A", 1, Money::from_minor(5))], 80, egp(1)), Ok(priced(5, 4, 1)));
    }

    #[test]
    fn the_cover_stops_at_what_is_left_of_the_monthly_limit() {
        assert_eq!(price(&items(), 80, egp(250)), Ok(priced(40_000, 25_000, 15_000)));
        assert_eq!(price(&[item("A", 1, Money::from_minor(7))], 80, Money::from_minor(5)), Ok(priced(7, 5, 2)));
    }

    #[test]
    fn nothing_left_of_the_limit_is_limit_exceeded() {
        assert_eq!(price(&items(), 80, Money::ZERO).unwrap_err().code(), "LIMIT_EXCEEDED");
    }

    #[test]
    fn no_coverage_leaves_it_all_to_the_patient_and_full_coverage_nothing() {
        assert_eq!(price(&items(), 0, egp(1_000)), Ok(priced(40_000, 0, 40_000)));
        assert_eq!(price(&items(), 100, egp(1_000)), Ok(priced(40_000, 40_000, 0)));
    }

    #[test]
    fn a_price_needs_items_with_a_quantity_and_a_price_and_a_coverage_up_to_100() {
        for bad in [vec![], vec![item("A", 0, egp(1))], vec![item("A", 1, Money::ZERO)]] {
            assert_eq!(price(&bad, 80, egp(1_000)).unwrap_err().code(), "VALIDATION_ERROR", "{bad:?}");
        }
        assert_eq!(price(&items(), 101, egp(1_000)).unwrap_err().code(), "VALIDATION_ERROR");
    }

    #[test]
    fn a_huge_claim_is_refused_rather_than_overflowing() {
        let huge = vec![item("A", u32::MAX, Money::from_minor(i64::MAX)), item("B", u32::MAX, Money::from_minor(i64::MAX))];
        assert_eq!(price(&huge, 100, Money::from_minor(i64::MAX)).unwrap_err().code(), "VALIDATION_ERROR");
        // The largest total is the largest amount, priced exactly; one cent more is refused,
        // even when every line is an amount.
        let largest = [item("A", 1, MAX_AMOUNT)];
        assert_eq!(price(&largest, 100, MAX_AMOUNT), Ok(priced(MAX_AMOUNT.minor(), MAX_AMOUNT.minor(), 0)));
        assert_eq!(price(&largest, 99, MAX_AMOUNT).unwrap().copayment, Money::from_minor(MAX_AMOUNT.minor() / 100));
        let one_cent_more = [item("A", 1, MAX_AMOUNT), item("B", 1, Money::from_minor(1))];
        assert_eq!(price(&one_cent_more, 100, MAX_AMOUNT).unwrap_err().code(), "VALIDATION_ERROR");
    }

    #[test]
    fn a_claim_is_submitted_pending() {
        given::<Claim>(&[]).when(&ClaimCommand::Submit(terms())).then(&[submitted()]);
        assert_eq!(claim(&[submitted()]).outcome.status(), "PENDING");
    }

    #[test]
    fn a_claim_is_submitted_once() {
        given::<Claim>(&[submitted()]).when(&ClaimCommand::Submit(terms())).then_refused("ALREADY_EXISTS");
        given::<Claim>(&[]).when(&ClaimCommand::RecordCoverageReserved).then_refused("NOT_FOUND");
    }

    #[test]
    fn a_claim_needs_items_with_a_quantity() {
        let mut none = terms();
        none.items.clear();
        given::<Claim>(&[]).when(&ClaimCommand::Submit(none)).then_refused("VALIDATION_ERROR");
        let mut zero = terms();
        zero.items[0].quantity = 0;
        given::<Claim>(&[]).when(&ClaimCommand::Submit(zero)).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn a_price_is_recorded_only_if_it_prices_this_claim() {
        let record = |priced| ClaimCommand::RecordPriced { priced, coverage_percent: 80, month: nov() };
        given::<Claim>(&[submitted()]).when(&record(priced(40_000, 32_000, 8_000))).then(&[priced_event()]);
        given::<Claim>(&[submitted()]).when(&record(priced(39_000, 31_000, 8_000))).then_refused("VALIDATION_ERROR");
        given::<Claim>(&[submitted()]).when(&record(priced(40_000, 32_000, 7_000))).then_refused("VALIDATION_ERROR");
        given::<Claim>(&[submitted()]).when(&record(priced(40_000, 41_000, -1_000))).then_refused("VALIDATION_ERROR");
        let pricing = claim(&up_to(ClaimStep::Priced)).pricing.unwrap();
        assert_eq!((pricing.priced, pricing.coverage_percent, pricing.month), (priced(40_000, 32_000, 8_000), 80, nov()));
    }

    #[test]
    fn the_happy_path_reserves_debits_the_patient_and_the_sponsor_then_credits_the_pharmacy() {
        given::<Claim>(&up_to(ClaimStep::Priced)).when(&ClaimCommand::RecordCoverageReserved).then(&[ClaimEvent::ClaimCoverageReserved {}]);
        given::<Claim>(&up_to(ClaimStep::CoverageReserved)).when(&ClaimCommand::RecordCopaymentDebited).then(&[ClaimEvent::ClaimCopaymentDebited {}]);
        given::<Claim>(&up_to(ClaimStep::CopaymentDebited)).when(&ClaimCommand::RecordSponsorDebited).then(&[ClaimEvent::ClaimSponsorDebited {}]);
        given::<Claim>(&up_to(ClaimStep::SponsorDebited))
            .when(&ClaimCommand::RecordPharmacyCredited)
            .then(&[ClaimEvent::ClaimPharmacyCredited {}, ClaimEvent::ClaimApproved {}]);
        let approved = claim(&with(up_to(ClaimStep::SponsorDebited), [ClaimEvent::ClaimPharmacyCredited {}, ClaimEvent::ClaimApproved {}]));
        assert_eq!((approved.outcome.status(), approved.failure_reason), ("APPROVED", None));
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        given::<Claim>(&[submitted()]).when(&ClaimCommand::RecordCoverageReserved).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&up_to(ClaimStep::Priced)).when(&ClaimCommand::RecordSponsorDebited).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&up_to(ClaimStep::CoverageReserved)).when(&ClaimCommand::RecordCoverageReserved).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&up_to(ClaimStep::CopaymentDebited)).when(&ClaimCommand::RecordPharmacyCredited).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&up_to(ClaimStep::SponsorDebited)).when(&ClaimCommand::RecordSponsorRefunded).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn a_failure_before_anything_was_reserved_rejects_the_claim_at_once() {
        for step in [ClaimStep::Submitted, ClaimStep::Priced] {
            given::<Claim>(&up_to(step))
                .when(&ClaimCommand::Fail { reason: "CARD_NOT_ACTIVE".into() })
                .then(&[ClaimEvent::ClaimRejected { reason: "CARD_NOT_ACTIVE".into() }]);
        }
        let rejected = claim(&[submitted(), ClaimEvent::ClaimRejected { reason: "BENEFICIARY_NOT_COVERED".into() }]);
        assert_eq!((rejected.outcome.status(), rejected.failure_reason.as_deref()), ("REJECTED", Some("BENEFICIARY_NOT_COVERED")));
    }

    #[test]
    fn a_failure_after_the_reservation_starts_compensation_and_the_claim_stays_pending() {
        given::<Claim>(&up_to(ClaimStep::CoverageReserved))
            .when(&ClaimCommand::Fail { reason: "INSUFFICIENT_FUNDS".into() })
            .then(&[ClaimEvent::ClaimStepFailed { reason: "INSUFFICIENT_FUNDS".into() }]);
        let failing = claim(&failed(ClaimStep::CoverageReserved));
        assert_eq!((failing.outcome.status(), failing.next_compensation()), ("PENDING", Some(Compensation::ReleaseReservation)));
        given::<Claim>(&failed(ClaimStep::CoverageReserved)).when(&ClaimCommand::RecordCopaymentDebited).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&failed(ClaimStep::CoverageReserved)).when(&ClaimCommand::Fail { reason: "X".into() }).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn compensation_undoes_the_steps_newest_first_and_ends_rejected_with_the_reason() {
        let mut events = failed(ClaimStep::SponsorDebited);
        assert_eq!(claim(&events).next_compensation(), Some(Compensation::RefundSponsor));
        given::<Claim>(&events).when(&ClaimCommand::RecordCopaymentRefunded).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&events).when(&ClaimCommand::RecordReservationReleased).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&events).when(&ClaimCommand::RecordSponsorRefunded).then(&[ClaimEvent::ClaimSponsorRefunded {}]);
        events.push(ClaimEvent::ClaimSponsorRefunded {});
        assert_eq!(claim(&events).next_compensation(), Some(Compensation::RefundCopayment));
        given::<Claim>(&events).when(&ClaimCommand::RecordReservationReleased).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&events).when(&ClaimCommand::RecordCopaymentRefunded).then(&[ClaimEvent::ClaimCopaymentRefunded {}]);
        events.push(ClaimEvent::ClaimCopaymentRefunded {});
        assert_eq!(claim(&events).next_compensation(), Some(Compensation::ReleaseReservation));
        given::<Claim>(&events)
            .when(&ClaimCommand::RecordReservationReleased)
            .then(&[ClaimEvent::ClaimReservationReleased {}, ClaimEvent::ClaimRejected { reason: "INSUFFICIENT_FUNDS".into() }]);
        events.extend([ClaimEvent::ClaimReservationReleased {}, ClaimEvent::ClaimRejected { reason: "INSUFFICIENT_FUNDS".into() }]);
        let rejected = claim(&events);
        assert_eq!(
            (rejected.outcome.status(), rejected.failure_reason.as_deref(), rejected.next_compensation()),
            ("REJECTED", Some("INSUFFICIENT_FUNDS"), None)
        );
    }

    fn suspended(refund: Refund, minor: i64) -> ClaimEvent {
        ClaimEvent::ClaimRefundSuspended(SuspendedRefund {
            refund,
            wallet_id: Uuid::from_u128(9),
            amount: Money::from_minor(minor),
            reason: "WALLET_NOT_ACTIVE".into(),
        })
    }
    fn suspend(refund: Refund) -> ClaimCommand {
        ClaimCommand::RecordRefundSuspended { refund, wallet_id: Uuid::from_u128(9), reason: "WALLET_NOT_ACTIVE".into() }
    }

    #[test]
    fn a_refund_that_cannot_land_goes_to_suspense_and_compensation_walks_on_to_rejected() {
        let mut events = failed(ClaimStep::SponsorDebited);
        // Only the refund due now can be suspended.
        given::<Claim>(&events).when(&suspend(Refund::Copayment)).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&events).when(&suspend(Refund::Sponsor)).then(&[suspended(Refund::Sponsor, 32_000)]);
        events.push(suspended(Refund::Sponsor, 32_000));
        assert_eq!(claim(&events).next_compensation(), Some(Compensation::RefundCopayment));
        given::<Claim>(&events).when(&suspend(Refund::Sponsor)).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&events).when(&suspend(Refund::Copayment)).then(&[suspended(Refund::Copayment, 8_000)]);
        events.push(suspended(Refund::Copayment, 8_000));
        assert_eq!(claim(&events).next_compensation(), Some(Compensation::ReleaseReservation));
        given::<Claim>(&events)
            .when(&ClaimCommand::RecordReservationReleased)
            .then(&[ClaimEvent::ClaimReservationReleased {}, ClaimEvent::ClaimRejected { reason: "INSUFFICIENT_FUNDS".into() }]);
        events.extend([ClaimEvent::ClaimReservationReleased {}, ClaimEvent::ClaimRejected { reason: "INSUFFICIENT_FUNDS".into() }]);
        let rejected = claim(&events);
        assert_eq!((rejected.outcome.status(), rejected.failure_reason.as_deref()), ("REJECTED", Some("INSUFFICIENT_FUNDS")));
        let in_suspense: Vec<_> = rejected.refunds_in_suspense.iter().map(|r| (r.refund, r.amount.minor())).collect();
        assert_eq!(in_suspense, [(Refund::Sponsor, 32_000), (Refund::Copayment, 8_000)]);
        given::<Claim>(&events).when(&suspend(Refund::Copayment)).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn a_claim_that_is_not_compensating_has_no_refund_to_suspend() {
        given::<Claim>(&up_to(ClaimStep::SponsorDebited)).when(&suspend(Refund::Sponsor)).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&failed(ClaimStep::CoverageReserved)).when(&suspend(Refund::Copayment)).then_refused("INVALID_STATE_TRANSITION");
        assert!(claim(&failed(ClaimStep::SponsorDebited)).refunds_in_suspense.is_empty());
    }

    #[test]
    fn a_failed_copayment_only_releases_the_reservation() {
        // The copayment debit was refused: the reservation is the only thing done.
        let events = failed(ClaimStep::CoverageReserved);
        given::<Claim>(&events).when(&ClaimCommand::RecordCopaymentRefunded).then_refused("INVALID_STATE_TRANSITION");
        given::<Claim>(&events)
            .when(&ClaimCommand::RecordReservationReleased)
            .then(&[ClaimEvent::ClaimReservationReleased {}, ClaimEvent::ClaimRejected { reason: "INSUFFICIENT_FUNDS".into() }]);
    }

    #[test]
    fn a_decided_claim_is_final() {
        let approved = with(up_to(ClaimStep::SponsorDebited), [ClaimEvent::ClaimPharmacyCredited {}, ClaimEvent::ClaimApproved {}]);
        let rejected = [submitted(), ClaimEvent::ClaimRejected { reason: "CARD_EXPIRED".into() }].to_vec();
        for events in [approved, rejected] {
            for command in [ClaimCommand::Fail { reason: "X".into() }, ClaimCommand::RecordPharmacyCredited, ClaimCommand::RecordReservationReleased] {
                given::<Claim>(&events).when(&command).then_refused("INVALID_STATE_TRANSITION");
            }
        }
    }

    #[test]
    fn events_round_trip_through_the_envelope_encoding() {
        let events = [
            submitted(),
            priced_event(),
            ClaimEvent::ClaimCoverageReserved {},
            ClaimEvent::ClaimCopaymentDebited {},
            ClaimEvent::ClaimSponsorDebited {},
            ClaimEvent::ClaimPharmacyCredited {},
            ClaimEvent::ClaimApproved {},
            ClaimEvent::ClaimStepFailed { reason: "INSUFFICIENT_FUNDS".into() },
            ClaimEvent::ClaimSponsorRefunded {},
            ClaimEvent::ClaimCopaymentRefunded {},
            suspended(Refund::Sponsor, 32_000),
            ClaimEvent::ClaimReservationReleased {},
            ClaimEvent::ClaimRejected { reason: "INSUFFICIENT_FUNDS".into() },
        ];
        for event in events {
            let (event_type, data) = crate::envelope::encode_event(&event);
            assert_eq!(crate::envelope::decode_event::<ClaimEvent>(&event_type, &data).unwrap(), event);
        }
        let (event_type, data) = crate::envelope::encode_event(&priced_event());
        assert_eq!(
            (event_type.as_str(), data),
            ("ClaimPriced", serde_json::json!({"total": 40_000, "covered": 32_000, "copayment": 8_000, "coveragePercent": 80, "month": "2026-11"}))
        );
        let (event_type, data) = crate::envelope::encode_event(&suspended(Refund::Copayment, 8_000));
        assert_eq!(
            (event_type.as_str(), data),
            (
                "ClaimRefundSuspended",
                serde_json::json!({"refund": "copayment", "walletId": Uuid::from_u128(9), "amount": 8_000, "reason": "WALLET_NOT_ACTIVE"})
            )
        );
        let (_, data) = crate::envelope::encode_event(&submitted());
        assert_eq!(data["items"][0], serde_json::json!({"drugCode": "PAN500", "drugName": "Drug PAN500", "quantity": 2, "unitPrice": 15_000}));
    }
}
