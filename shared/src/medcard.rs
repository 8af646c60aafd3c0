//! The MedCard aggregate: a health-benefit card funded by a sponsor wallet (insurer
//! or employer). It covers a percentage of each claim up to a monthly limit.
//!
//! ```text
//! ISSUED ──activate──▶ ACTIVE ◀──activate── SUSPENDED
//!   │                   │  └────suspend────────▲  │
//!   └──────expire───────┴──────▶ EXPIRED ◀──expire┘      (EXPIRED is final)
//! ```
//!
//! The card is also the concurrency guard of its monthly limit. A claim *reserves*
//! its covered amount on the card before any money moves, and later *confirms* the
//! reservation (paid) or *releases* it (rejected). Two claims racing for the last of
//! the limit both decide against the same card version; the event store's
//! conditional write lets one of them in, and the other one decides again against
//! the new version, where it no longer fits.
//!
//! Only the beneficiaries listed on the card are covered; a holder who is to be
//! covered is listed too (relationship `self`). A reservation is the single place
//! where a claim's coverage is decided: the card must be `ACTIVE`, not past its
//! `expiresAt` (the command carries `now`), and list the beneficiary.

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::money::{Currency, Money};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use uuid::Uuid;

/// The most beneficiaries one card lists. The card's view is one DynamoDB item
/// (400 KB at most) rewritten on every card event, so an unbounded list would
/// first slow, then break, the card's projection; 50 is far beyond a family and
/// keeps the item small. Adding one more is refused `LIMIT_EXCEEDED`.
pub const MAX_BENEFICIARIES: usize = 50;

/// A calendar month (UTC), written `YYYY-MM`: the period of a monthly limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Month {
    year: u16,
    month: u8,
}

impl Month {
    /// `2026-11`; anything else (`2026-1`, `2026-13`, `26-11`) is `None`.
    pub fn parse(text: &str) -> Option<Month> {
        let (year, month) = text.split_once('-')?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(month, 2) {
            return None;
        }
        let (year, month): (u16, u8) = (year.parse().ok()?, month.parse().ok()?);
        (1..=12).contains(&month).then_some(Month { year, month })
    }

    /// The month `at` falls in, in UTC.
    pub fn of(at: DateTime<Utc>) -> Month {
        Month { year: at.year().clamp(0, 9999) as u16, month: at.month() as u8 }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl TryFrom<String> for Month {
    type Error = String;
    fn try_from(text: String) -> Result<Month, String> {
        Month::parse(&text).ok_or_else(|| format!("month must be YYYY-MM, got {text:?}"))
    }
}

impl From<Month> for String {
    fn from(month: Month) -> String {
        month.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardTerms {
    pub medcard_id: Uuid,
    /// The card holder's user id (a token's `sub`).
    pub holder_id: String,
    pub sponsor_wallet_id: Uuid,
    pub plan_name: String,
    /// 0..=100: the share of a claim the sponsor pays.
    pub coverage_percent: u8,
    pub monthly_limit: Money,
    /// The sponsor wallet's currency: what the limit and every claim are in.
    pub currency: Currency,
    pub expires_at: DateTime<Utc>,
    pub issued_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Beneficiary {
    pub beneficiary_id: Uuid,
    pub name: String,
    /// `self`, `spouse`, `child`, … as the sponsor records it.
    pub relationship: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardStatus {
    Issued,
    Active,
    Suspended,
    Expired,
}

impl CardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Issued => "ISSUED",
            CardStatus::Active => "ACTIVE",
            CardStatus::Suspended => "SUSPENDED",
            CardStatus::Expired => "EXPIRED",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum MedCardCommand {
    Issue(CardTerms),
    /// `ISSUED → ACTIVE`, and `SUSPENDED → ACTIVE`.
    Activate,
    Suspend {
        reason: String,
    },
    /// Ends the card for good, whatever its `expiresAt` (a sponsor may end it early).
    Expire,
    AddBeneficiary(Beneficiary),
    RemoveBeneficiary {
        beneficiary_id: Uuid,
    },
    /// A new limit for every month from now on, also the current one: lowering it
    /// below what a month already committed leaves nothing to cover that month.
    ChangeMonthlyLimit {
        monthly_limit: Money,
    },
    /// Sets `amount` of `month`'s limit aside for claim `claim_id`.
    Reserve {
        claim_id: Uuid,
        beneficiary_id: Uuid,
        month: Month,
        amount: Money,
        now: DateTime<Utc>,
    },
    /// The claim was paid: its reservation becomes spending.
    ConfirmReservation {
        claim_id: Uuid,
    },
    /// The claim was rejected: its reservation no longer counts against the limit.
    ReleaseReservation {
        claim_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum MedCardEvent {
    MedCardIssued(CardTerms),
    MedCardActivated {},
    MedCardSuspended { reason: String },
    MedCardExpired {},
    MedCardBeneficiaryAdded(Beneficiary),
    MedCardBeneficiaryRemoved { beneficiary_id: Uuid },
    MedCardLimitChanged { monthly_limit: Money },
    MedCardCoverageReserved { claim_id: Uuid, month: Month, amount: Money },
    MedCardReservationConfirmed { claim_id: Uuid, month: Month, amount: Money },
    MedCardReservationReleased { claim_id: Uuid, month: Month, amount: Money },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    /// Counts against the limit, not yet spent.
    Reserved,
    /// Spent: the claim was paid.
    Confirmed,
    /// Given back: the claim was rejected.
    Released,
}

impl ReservationState {
    fn as_str(self) -> &'static str {
        match self {
            ReservationState::Reserved => "reserved",
            ReservationState::Confirmed => "confirmed",
            ReservationState::Released => "released",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub month: Month,
    pub amount: Money,
    pub state: ReservationState,
}

/// One month's use of the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonthUsage {
    /// Open reservations: claims under way.
    pub reserved: Money,
    /// Confirmed reservations: claims paid.
    pub spent: Money,
    /// How many claims were paid.
    pub claims: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCard {
    pub terms: CardTerms,
    pub status: CardStatus,
    /// The current limit (the issued one until changed).
    pub monthly_limit: Money,
    pub beneficiaries: BTreeMap<Uuid, Beneficiary>,
    /// Every reservation ever made, by claim id: a claim reserves at most once.
    pub reservations: BTreeMap<Uuid, Reservation>,
    pub usage: BTreeMap<Month, MonthUsage>,
}

impl IssuedCard {
    fn usage(&self, month: Month) -> MonthUsage {
        self.usage.get(&month).copied().unwrap_or_default()
    }

    /// What claims paid in `month`.
    pub fn spent(&self, month: Month) -> Money {
        self.usage(month).spent
    }

    /// What claims under way have set aside in `month`.
    pub fn reserved(&self, month: Month) -> Money {
        self.usage(month).reserved
    }

    /// How many claims were paid in `month`.
    pub fn claim_count(&self, month: Month) -> u32 {
        self.usage(month).claims
    }

    /// What is left of `month`'s limit once paid and reserved claims are counted;
    /// never below zero (a lowered limit can fall below what was already committed).
    pub fn remaining(&self, month: Month) -> Money {
        let usage = self.usage(month);
        let committed = usage.spent.minor().saturating_add(usage.reserved.minor());
        Money::from_minor(self.monthly_limit.minor().saturating_sub(committed).max(0))
    }

    pub fn covers(&self, beneficiary_id: Uuid) -> bool {
        self.beneficiaries.contains_key(&beneficiary_id)
    }

    /// Whether the card covers a claim for `beneficiary_id` at `now`: not expired
    /// (`CARD_EXPIRED`), active (`CARD_NOT_ACTIVE`), listing the beneficiary
    /// (`BENEFICIARY_NOT_COVERED`), checked in that order.
    pub fn ensure_covers(&self, beneficiary_id: Uuid, now: DateTime<Utc>) -> Result<(), DomainError> {
        self.ensure_in_force(now)?;
        if !self.covers(beneficiary_id) {
            return Err(DomainError::BeneficiaryNotCovered { card: self.terms.medcard_id, beneficiary: beneficiary_id });
        }
        Ok(())
    }

    /// Whether the card can be claimed against at `now`: not expired
    /// (`CARD_EXPIRED`), then active (`CARD_NOT_ACTIVE`).
    pub fn ensure_in_force(&self, now: DateTime<Utc>) -> Result<(), DomainError> {
        let card = self.terms.medcard_id;
        if self.status == CardStatus::Expired || now >= self.terms.expires_at {
            return Err(DomainError::CardExpired { card });
        }
        if self.status != CardStatus::Active {
            return Err(DomainError::CardNotActive { card, status: self.status.as_str() });
        }
        Ok(())
    }

    fn refuse(&self, action: &'static str) -> DomainError {
        DomainError::InvalidStateTransition { kind: "medcard", id: self.terms.medcard_id, status: self.status.as_str(), action }
    }

    /// An open reservation; one never made is not found, one confirmed or released
    /// is settled once.
    fn open_reservation(&self, claim_id: Uuid, action: &'static str) -> Result<Reservation, DomainError> {
        match self.reservations.get(&claim_id) {
            Some(r) if r.state == ReservationState::Reserved => Ok(*r),
            Some(r) => Err(DomainError::InvalidStateTransition { kind: "reservation", id: claim_id, status: r.state.as_str(), action }),
            None => Err(DomainError::NotFound { kind: "reservation", id: claim_id }),
        }
    }
}

// One state value per aggregate, moved from event to event: the empty variant being
// small saves nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MedCard {
    #[default]
    NotIssued,
    Issued(IssuedCard),
}

impl MedCard {
    pub fn issued(&self) -> Option<&IssuedCard> {
        match self {
            MedCard::Issued(c) => Some(c),
            MedCard::NotIssued => None,
        }
    }
}

fn ensure_limit(monthly_limit: Money) -> Result<(), DomainError> {
    if !monthly_limit.is_positive() {
        return Err(DomainError::Validation("monthlyLimit must be greater than 0".into()));
    }
    Ok(())
}

impl Aggregate for MedCard {
    const TYPE: &'static str = "medcard";
    type Command = MedCardCommand;
    type Event = MedCardEvent;

    fn decide(&self, command: &MedCardCommand) -> Result<Vec<MedCardEvent>, DomainError> {
        use CardStatus::*;
        let card = match (self, command) {
            (MedCard::NotIssued, MedCardCommand::Issue(terms)) => {
                if terms.coverage_percent > 100 {
                    return Err(DomainError::Validation(format!("coveragePercent must be between 0 and 100, got {}", terms.coverage_percent)));
                }
                ensure_limit(terms.monthly_limit)?;
                return Ok(vec![MedCardEvent::MedCardIssued(terms.clone())]);
            }
            (MedCard::Issued(c), MedCardCommand::Issue(_)) => return Err(DomainError::AlreadyExists { kind: "medcard", id: c.terms.medcard_id }),
            (MedCard::NotIssued, _) => return Err(DomainError::Unknown { kind: "medcard" }),
            (MedCard::Issued(c), _) => c,
        };
        match command {
            MedCardCommand::Issue(_) => unreachable!("handled above"),
            MedCardCommand::Activate => match card.status {
                Issued | Suspended => Ok(vec![MedCardEvent::MedCardActivated {}]),
                Active | Expired => Err(card.refuse("activate")),
            },
            MedCardCommand::Suspend { reason } => match card.status {
                Active => Ok(vec![MedCardEvent::MedCardSuspended { reason: reason.clone() }]),
                _ => Err(card.refuse("suspend")),
            },
            MedCardCommand::Expire => match card.status {
                Expired => Err(card.refuse("expire")),
                _ => Ok(vec![MedCardEvent::MedCardExpired {}]),
            },
            MedCardCommand::AddBeneficiary(beneficiary) => {
                if card.status == Expired {
                    return Err(card.refuse("add a beneficiary to"));
                }
                if card.covers(beneficiary.beneficiary_id) {
                    return Err(DomainError::AlreadyExists { kind: "beneficiary", id: beneficiary.beneficiary_id });
                }
                if card.beneficiaries.len() >= MAX_BENEFICIARIES {
                    return Err(DomainError::LimitExceeded(format!(
                        "medical card {} already lists {} beneficiaries, the most a card may list; remove one first",
                        card.terms.medcard_id,
                        card.beneficiaries.len()
                    )));
                }
                Ok(vec![MedCardEvent::MedCardBeneficiaryAdded(beneficiary.clone())])
            }
            MedCardCommand::RemoveBeneficiary { beneficiary_id } => {
                if card.status == Expired {
                    return Err(card.refuse("remove a beneficiary from"));
                }
                if !card.covers(*beneficiary_id) {
                    return Err(DomainError::NotFound { kind: "beneficiary", id: *beneficiary_id });
                }
                Ok(vec![MedCardEvent::MedCardBeneficiaryRemoved { beneficiary_id: *beneficiary_id }])
            }
            MedCardCommand::ChangeMonthlyLimit { monthly_limit } => {
                if card.status == Expired {
                    return Err(card.refuse("change the limit of"));
                }
                ensure_limit(*monthly_limit)?;
                Ok(vec![MedCardEvent::MedCardLimitChanged { monthly_limit: *monthly_limit }])
            }
            MedCardCommand::Reserve { claim_id, beneficiary_id, month, amount, now } => {
                if card.reservations.contains_key(claim_id) {
                    return Err(DomainError::AlreadyExists { kind: "reservation", id: *claim_id });
                }
                card.ensure_covers(*beneficiary_id, *now)?;
                if amount.minor() < 0 {
                    return Err(DomainError::Validation("a reservation cannot be negative".into()));
                }
                let remaining = card.remaining(*month);
                if *amount > remaining {
                    return Err(DomainError::LimitExceeded(format!(
                        "medical card {} has {remaining} {} left of its {} monthly limit for {month}, the claim needs {amount}",
                        card.terms.medcard_id, card.terms.currency, card.monthly_limit
                    )));
                }
                Ok(vec![MedCardEvent::MedCardCoverageReserved { claim_id: *claim_id, month: *month, amount: *amount }])
            }
            MedCardCommand::ConfirmReservation { claim_id } => {
                let r = card.open_reservation(*claim_id, "confirm")?;
                Ok(vec![MedCardEvent::MedCardReservationConfirmed { claim_id: *claim_id, month: r.month, amount: r.amount }])
            }
            MedCardCommand::ReleaseReservation { claim_id } => {
                let r = card.open_reservation(*claim_id, "release")?;
                Ok(vec![MedCardEvent::MedCardReservationReleased { claim_id: *claim_id, month: r.month, amount: r.amount }])
            }
        }
    }

    fn apply(self, event: &MedCardEvent) -> MedCard {
        match (self, event) {
            (MedCard::NotIssued, MedCardEvent::MedCardIssued(terms)) => MedCard::Issued(IssuedCard {
                terms: terms.clone(),
                status: CardStatus::Issued,
                monthly_limit: terms.monthly_limit,
                beneficiaries: BTreeMap::new(),
                reservations: BTreeMap::new(),
                usage: BTreeMap::new(),
            }),
            (MedCard::Issued(mut c), event) => {
                match event {
                    MedCardEvent::MedCardIssued(_) => {}
                    MedCardEvent::MedCardActivated {} => c.status = CardStatus::Active,
                    MedCardEvent::MedCardSuspended { .. } => c.status = CardStatus::Suspended,
                    MedCardEvent::MedCardExpired {} => c.status = CardStatus::Expired,
                    MedCardEvent::MedCardBeneficiaryAdded(b) => {
                        c.beneficiaries.insert(b.beneficiary_id, b.clone());
                    }
                    MedCardEvent::MedCardBeneficiaryRemoved { beneficiary_id } => {
                        c.beneficiaries.remove(beneficiary_id);
                    }
                    MedCardEvent::MedCardLimitChanged { monthly_limit } => c.monthly_limit = *monthly_limit,
                    MedCardEvent::MedCardCoverageReserved { claim_id, month, amount } => {
                        c.reservations.insert(*claim_id, Reservation { month: *month, amount: *amount, state: ReservationState::Reserved });
                        let usage = c.usage.entry(*month).or_default();
                        usage.reserved = Money::from_minor(usage.reserved.minor() + amount.minor());
                    }
                    MedCardEvent::MedCardReservationConfirmed { claim_id, month, amount } => {
                        c.reservations.insert(*claim_id, Reservation { month: *month, amount: *amount, state: ReservationState::Confirmed });
                        let usage = c.usage.entry(*month).or_default();
                        usage.reserved = Money::from_minor(usage.reserved.minor() - amount.minor());
                        usage.spent = Money::from_minor(usage.spent.minor() + amount.minor());
                        usage.claims += 1;
                    }
                    MedCardEvent::MedCardReservationReleased { claim_id, month, amount } => {
                        c.reservations.insert(*claim_id, Reservation { month: *month, amount: *amount, state: ReservationState::Released });
                        let usage = c.usage.entry(*month).or_default();
                        usage.reserved = Money::from_minor(usage.reserved.minor() - amount.minor());
                    }
                }
                MedCard::Issued(c)
            }
            (not_issued @ MedCard::NotIssued, _) => not_issued,
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
    fn card_id() -> Uuid {
        Uuid::from_u128(0xca4d)
    }
    fn child() -> Uuid {
        Uuid::from_u128(0xc41d)
    }
    fn claim(n: u128) -> Uuid {
        Uuid::from_u128(0xc1a1_0000 + n)
    }
    fn nov() -> Month {
        Month::parse("2026-11").unwrap()
    }
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
    }
    fn terms() -> CardTerms {
        CardTerms {
            medcard_id: card_id(),
            holder_id: "hala".into(),
            sponsor_wallet_id: Uuid::from_u128(0x5905),
            plan_name: "Gold".into(),
            coverage_percent: 80,
            monthly_limit: egp(1_000),
            currency: Currency::egp(),
            expires_at: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
            issued_by: "insurer-1".into(),
        }
    }
    fn issued() -> MedCardEvent {
        MedCardEvent::MedCardIssued(terms())
    }
    fn beneficiary() -> Beneficiary {
        Beneficiary { beneficiary_id: child(), name: "Omar".into(), relationship: "child".into() }
    }
    /// An active card covering the child.
    fn active() -> Vec<MedCardEvent> {
        vec![issued(), MedCardEvent::MedCardActivated {}, MedCardEvent::MedCardBeneficiaryAdded(beneficiary())]
    }
    fn with(mut events: Vec<MedCardEvent>, more: impl IntoIterator<Item = MedCardEvent>) -> Vec<MedCardEvent> {
        events.extend(more);
        events
    }
    fn reserve(n: u128, amount: Money) -> MedCardCommand {
        MedCardCommand::Reserve { claim_id: claim(n), beneficiary_id: child(), month: nov(), amount, now: now() }
    }
    fn reserved(n: u128, amount: Money) -> MedCardEvent {
        MedCardEvent::MedCardCoverageReserved { claim_id: claim(n), month: nov(), amount }
    }
    fn confirmed(n: u128, amount: Money) -> MedCardEvent {
        MedCardEvent::MedCardReservationConfirmed { claim_id: claim(n), month: nov(), amount }
    }
    fn released(n: u128, amount: Money) -> MedCardEvent {
        MedCardEvent::MedCardReservationReleased { claim_id: claim(n), month: nov(), amount }
    }
    fn card(events: &[MedCardEvent]) -> IssuedCard {
        given::<MedCard>(events).state().issued().unwrap().clone()
    }

    #[test]
    fn a_card_is_issued_and_waits_for_activation() {
        given::<MedCard>(&[]).when(&MedCardCommand::Issue(terms())).then(&[issued()]);
        assert_eq!(card(&[issued()]).status.as_str(), "ISSUED");
    }

    #[test]
    fn a_card_covers_between_0_and_100_percent_up_to_a_positive_limit() {
        let mut over = terms();
        over.coverage_percent = 101;
        given::<MedCard>(&[]).when(&MedCardCommand::Issue(over)).then_refused("VALIDATION_ERROR");
        let mut none = terms();
        none.coverage_percent = 0;
        given::<MedCard>(&[]).when(&MedCardCommand::Issue(none.clone())).then(&[MedCardEvent::MedCardIssued(none)]);
        let mut no_limit = terms();
        no_limit.monthly_limit = Money::ZERO;
        given::<MedCard>(&[]).when(&MedCardCommand::Issue(no_limit)).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn a_card_is_issued_once_and_commands_need_an_issued_card() {
        given::<MedCard>(&[issued()]).when(&MedCardCommand::Issue(terms())).then_refused("ALREADY_EXISTS");
        given::<MedCard>(&[]).when(&MedCardCommand::Activate).then_refused("NOT_FOUND");
    }

    #[test]
    fn issued_and_suspended_cards_activate() {
        given::<MedCard>(&[issued()]).when(&MedCardCommand::Activate).then(&[MedCardEvent::MedCardActivated {}]);
        let suspended = with(active(), [MedCardEvent::MedCardSuspended { reason: "unpaid premium".into() }]);
        given::<MedCard>(&suspended).when(&MedCardCommand::Activate).then(&[MedCardEvent::MedCardActivated {}]);
        given::<MedCard>(&active()).when(&MedCardCommand::Activate).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn only_an_active_card_is_suspended() {
        given::<MedCard>(&active())
            .when(&MedCardCommand::Suspend { reason: "fraud".into() })
            .then(&[MedCardEvent::MedCardSuspended { reason: "fraud".into() }]);
        assert_eq!(card(&with(active(), [MedCardEvent::MedCardSuspended { reason: "fraud".into() }])).status.as_str(), "SUSPENDED");
        given::<MedCard>(&[issued()]).when(&MedCardCommand::Suspend { reason: "fraud".into() }).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn any_card_expires_once_and_expired_is_final() {
        given::<MedCard>(&[issued()]).when(&MedCardCommand::Expire).then(&[MedCardEvent::MedCardExpired {}]);
        given::<MedCard>(&active()).when(&MedCardCommand::Expire).then(&[MedCardEvent::MedCardExpired {}]);
        let expired = with(active(), [MedCardEvent::MedCardExpired {}]);
        assert_eq!(card(&expired).status.as_str(), "EXPIRED");
        for command in [
            MedCardCommand::Expire,
            MedCardCommand::Activate,
            MedCardCommand::Suspend { reason: "x".into() },
            MedCardCommand::AddBeneficiary(Beneficiary { beneficiary_id: Uuid::from_u128(7), name: "A".into(), relationship: "spouse".into() }),
            MedCardCommand::RemoveBeneficiary { beneficiary_id: child() },
            MedCardCommand::ChangeMonthlyLimit { monthly_limit: egp(5) },
        ] {
            given::<MedCard>(&expired).when(&command).then_refused("INVALID_STATE_TRANSITION");
        }
    }

    #[test]
    fn a_beneficiary_is_added_once() {
        given::<MedCard>(&[issued()]).when(&MedCardCommand::AddBeneficiary(beneficiary())).then(&[MedCardEvent::MedCardBeneficiaryAdded(beneficiary())]);
        given::<MedCard>(&active()).when(&MedCardCommand::AddBeneficiary(beneficiary())).then_refused("ALREADY_EXISTS");
    }

    fn listed(n: u128) -> MedCardEvent {
        MedCardEvent::MedCardBeneficiaryAdded(Beneficiary { beneficiary_id: Uuid::from_u128(0xb000 + n), name: format!("B{n}"), relationship: "child".into() })
    }

    #[test]
    fn a_card_lists_at_most_max_beneficiaries() {
        // The child plus 48 more: one place left.
        let almost = with(active(), (1..MAX_BENEFICIARIES as u128 - 1).map(listed));
        assert_eq!(card(&almost).beneficiaries.len(), MAX_BENEFICIARIES - 1);
        let last = Beneficiary { beneficiary_id: Uuid::from_u128(0xbfff), name: "Last".into(), relationship: "spouse".into() };
        given::<MedCard>(&almost).when(&MedCardCommand::AddBeneficiary(last.clone())).then(&[MedCardEvent::MedCardBeneficiaryAdded(last.clone())]);
        let full = with(almost, [MedCardEvent::MedCardBeneficiaryAdded(last)]);
        let one_more = Beneficiary { beneficiary_id: Uuid::from_u128(0xc000), name: "More".into(), relationship: "child".into() };
        let refusal = given::<MedCard>(&full).when(&MedCardCommand::AddBeneficiary(one_more.clone())).then_refused("LIMIT_EXCEEDED");
        assert_eq!(refusal.to_string(), format!("medical card {} already lists 50 beneficiaries, the most a card may list; remove one first", card_id()));
        // Someone already listed is still ALREADY_EXISTS, and a removal makes room again.
        given::<MedCard>(&full).when(&MedCardCommand::AddBeneficiary(beneficiary())).then_refused("ALREADY_EXISTS");
        let room = with(full, [MedCardEvent::MedCardBeneficiaryRemoved { beneficiary_id: child() }]);
        given::<MedCard>(&room).when(&MedCardCommand::AddBeneficiary(one_more.clone())).then(&[MedCardEvent::MedCardBeneficiaryAdded(one_more)]);
    }

    #[test]
    fn only_a_listed_beneficiary_is_removed() {
        given::<MedCard>(&active())
            .when(&MedCardCommand::RemoveBeneficiary { beneficiary_id: child() })
            .then(&[MedCardEvent::MedCardBeneficiaryRemoved { beneficiary_id: child() }]);
        given::<MedCard>(&[issued()]).when(&MedCardCommand::RemoveBeneficiary { beneficiary_id: child() }).then_refused("NOT_FOUND");
        let removed = with(active(), [MedCardEvent::MedCardBeneficiaryRemoved { beneficiary_id: child() }]);
        assert!(!card(&removed).covers(child()));
    }

    #[test]
    fn the_monthly_limit_changes_to_a_positive_amount() {
        given::<MedCard>(&active())
            .when(&MedCardCommand::ChangeMonthlyLimit { monthly_limit: egp(500) })
            .then(&[MedCardEvent::MedCardLimitChanged { monthly_limit: egp(500) }]);
        given::<MedCard>(&active()).when(&MedCardCommand::ChangeMonthlyLimit { monthly_limit: Money::ZERO }).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn a_reservation_sets_part_of_the_months_limit_aside() {
        given::<MedCard>(&active()).when(&reserve(1, egp(300))).then(&[reserved(1, egp(300))]);
        let c = card(&with(active(), [reserved(1, egp(300))]));
        assert_eq!((c.reserved(nov()), c.spent(nov()), c.remaining(nov()), c.claim_count(nov())), (egp(300), Money::ZERO, egp(700), 0));
    }

    #[test]
    fn a_reservation_beyond_what_is_left_of_the_month_is_refused() {
        let busy = with(active(), [reserved(1, egp(300)), reserved(2, egp(500)), confirmed(2, egp(500))]);
        given::<MedCard>(&busy).when(&reserve(3, egp(200))).then(&[reserved(3, egp(200))]);
        let refusal = given::<MedCard>(&busy).when(&reserve(3, Money::from_minor(20_001))).then_refused("LIMIT_EXCEEDED");
        assert_eq!(
            refusal.to_string(),
            format!("medical card {} has 200.00 EGP left of its 1000.00 monthly limit for 2026-11, the claim needs 200.01", card_id())
        );
    }

    #[test]
    fn each_month_has_its_own_limit() {
        let full = with(active(), [reserved(1, egp(1_000))]);
        given::<MedCard>(&full).when(&reserve(2, Money::from_minor(1))).then_refused("LIMIT_EXCEEDED");
        let december = Month::parse("2026-12").unwrap();
        let next_month = MedCardCommand::Reserve { claim_id: claim(2), beneficiary_id: child(), month: december, amount: egp(1_000), now: now() };
        given::<MedCard>(&full).when(&next_month).then(&[MedCardEvent::MedCardCoverageReserved { claim_id: claim(2), month: december, amount: egp(1_000) }]);
    }

    #[test]
    fn two_claims_racing_for_the_last_of_the_limit_cannot_both_reserve_it() {
        // Both decided against the same version: the store lets the first in, and the
        // second, deciding again against the new version, no longer fits.
        let card = with(active(), [reserved(1, egp(600))]);
        given::<MedCard>(&card).when(&reserve(2, egp(400))).then(&[reserved(2, egp(400))]);
        given::<MedCard>(&card).when(&reserve(3, egp(400))).then(&[reserved(3, egp(400))]);
        given::<MedCard>(&with(card, [reserved(2, egp(400))])).when(&reserve(3, egp(400))).then_refused("LIMIT_EXCEEDED");
    }

    #[test]
    fn a_lowered_limit_leaves_nothing_rather_than_less_than_nothing() {
        let spent = with(active(), [reserved(1, egp(800)), confirmed(1, egp(800)), MedCardEvent::MedCardLimitChanged { monthly_limit: egp(500) }]);
        assert_eq!(card(&spent).remaining(nov()), Money::ZERO);
        given::<MedCard>(&spent).when(&reserve(2, Money::from_minor(1))).then_refused("LIMIT_EXCEEDED");
    }

    #[test]
    fn a_claim_reserves_once() {
        given::<MedCard>(&with(active(), [reserved(1, egp(10))])).when(&reserve(1, egp(10))).then_refused("ALREADY_EXISTS");
        given::<MedCard>(&with(active(), [reserved(1, egp(10)), released(1, egp(10))])).when(&reserve(1, egp(10))).then_refused("ALREADY_EXISTS");
    }

    #[test]
    fn only_an_active_unexpired_card_reserves_and_only_for_its_beneficiaries() {
        given::<MedCard>(&[issued(), MedCardEvent::MedCardBeneficiaryAdded(beneficiary())]).when(&reserve(1, egp(1))).then_refused("CARD_NOT_ACTIVE");
        let suspended = with(active(), [MedCardEvent::MedCardSuspended { reason: "fraud".into() }]);
        given::<MedCard>(&suspended).when(&reserve(1, egp(1))).then_refused("CARD_NOT_ACTIVE");
        given::<MedCard>(&with(active(), [MedCardEvent::MedCardExpired {}])).when(&reserve(1, egp(1))).then_refused("CARD_EXPIRED");
        let at_expiry = MedCardCommand::Reserve { claim_id: claim(1), beneficiary_id: child(), month: nov(), amount: egp(1), now: terms().expires_at };
        given::<MedCard>(&active()).when(&at_expiry).then_refused("CARD_EXPIRED");
        let stranger = MedCardCommand::Reserve { claim_id: claim(1), beneficiary_id: Uuid::from_u128(99), month: nov(), amount: egp(1), now: now() };
        given::<MedCard>(&active()).when(&stranger).then_refused("BENEFICIARY_NOT_COVERED");
        given::<MedCard>(&active()).when(&reserve(1, Money::from_minor(-1))).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn a_confirmed_reservation_is_spending_and_counts_a_claim() {
        given::<MedCard>(&with(active(), [reserved(1, egp(300))]))
            .when(&MedCardCommand::ConfirmReservation { claim_id: claim(1) })
            .then(&[confirmed(1, egp(300))]);
        let c = card(&with(active(), [reserved(1, egp(300)), confirmed(1, egp(300))]));
        assert_eq!((c.reserved(nov()), c.spent(nov()), c.remaining(nov()), c.claim_count(nov())), (Money::ZERO, egp(300), egp(700), 1));
    }

    #[test]
    fn a_released_reservation_gives_the_limit_back() {
        given::<MedCard>(&with(active(), [reserved(1, egp(300))]))
            .when(&MedCardCommand::ReleaseReservation { claim_id: claim(1) })
            .then(&[released(1, egp(300))]);
        let c = card(&with(active(), [reserved(1, egp(300)), released(1, egp(300))]));
        assert_eq!((c.reserved(nov()), c.spent(nov()), c.remaining(nov()), c.claim_count(nov())), (Money::ZERO, Money::ZERO, egp(1_000), 0));
    }

    #[test]
    fn a_reservation_settles_even_on_a_card_suspended_or_expired_since() {
        for since in [MedCardEvent::MedCardSuspended { reason: "x".into() }, MedCardEvent::MedCardExpired {}] {
            let card = with(active(), [reserved(1, egp(300)), since]);
            given::<MedCard>(&card).when(&MedCardCommand::ConfirmReservation { claim_id: claim(1) }).then(&[confirmed(1, egp(300))]);
            given::<MedCard>(&card).when(&MedCardCommand::ReleaseReservation { claim_id: claim(1) }).then(&[released(1, egp(300))]);
        }
    }

    #[test]
    fn an_unknown_reservation_is_not_found_and_a_settled_one_settles_once() {
        given::<MedCard>(&active()).when(&MedCardCommand::ConfirmReservation { claim_id: claim(1) }).then_refused("NOT_FOUND");
        given::<MedCard>(&active()).when(&MedCardCommand::ReleaseReservation { claim_id: claim(1) }).then_refused("NOT_FOUND");
        for settled in [confirmed(1, egp(3)), released(1, egp(3))] {
            let card = with(active(), [reserved(1, egp(3)), settled]);
            given::<MedCard>(&card).when(&MedCardCommand::ConfirmReservation { claim_id: claim(1) }).then_refused("INVALID_STATE_TRANSITION");
            given::<MedCard>(&card).when(&MedCardCommand::ReleaseReservation { claim_id: claim(1) }).then_refused("INVALID_STATE_TRANSITION");
        }
    }

    #[test]
    fn months_are_written_yyyy_mm() {
        assert_eq!(Month::parse("2026-11").map(|m| m.to_string()).as_deref(), Some("2026-11"));
        assert_eq!(Month::of(now()), nov());
        for bad in ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "2026-11-01", ""] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
        assert!(Month::parse("2026-12").unwrap() > nov());
    }

    #[test]
    fn events_round_trip_through_the_envelope_encoding() {
        let events = [
            issued(),
            MedCardEvent::MedCardActivated {},
            MedCardEvent::MedCardSuspended { reason: "x".into() },
            MedCardEvent::MedCardExpired {},
            MedCardEvent::MedCardBeneficiaryAdded(beneficiary()),
            MedCardEvent::MedCardBeneficiaryRemoved { beneficiary_id: child() },
            MedCardEvent::MedCardLimitChanged { monthly_limit: egp(5) },
            reserved(1, egp(3)),
            confirmed(1, egp(3)),
            released(2, egp(4)),
        ];
        for event in events {
            let (event_type, data) = crate::envelope::encode_event(&event);
            assert_eq!(crate::envelope::decode_event::<MedCardEvent>(&event_type, &data).unwrap(), event);
        }
        let (event_type, data) = crate::envelope::encode_event(&reserved(1, egp(3)));
        assert_eq!((event_type.as_str(), data), ("MedCardCoverageReserved", serde_json::json!({"claimId": claim(1), "month": "2026-11", "amount": 300})));
        assert!(crate::envelope::decode_event::<MedCardEvent>(
            "MedCardCoverageReserved",
            &serde_json::json!({"claimId": claim(1), "month": "2026-13", "amount": 1})
        )
        .is_err());
    }
}
