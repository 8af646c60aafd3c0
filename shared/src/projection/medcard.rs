//! The medical card view: the card, its beneficiaries, and each month's use of its
//! limit (what `GET /medcards/{id}/spend` answers).

use super::DocumentView;
use crate::envelope::EventEnvelope;
use crate::medcard::{Beneficiary, CardStatus, MedCardEvent, Month};
use crate::money::Money;
use crate::ports::Listing;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardView {
    pub medcard_id: Uuid,
    pub holder_id: String,
    pub sponsor_wallet_id: Uuid,
    pub plan_name: String,
    pub coverage_percent: u8,
    pub monthly_limit: Money,
    pub currency: String,
    pub status: String,
    pub suspension_reason: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// In the order they were added.
    pub beneficiaries: Vec<Beneficiary>,
    /// `YYYY-MM` → that month's use of the limit.
    pub months: BTreeMap<Month, MonthSpend>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonthSpend {
    /// Paid claims' covered amounts.
    pub spent: Money,
    /// Claims under way.
    pub reserved: Money,
    /// Paid claims.
    pub claim_count: u32,
}

impl CardView {
    pub fn month(&self, month: Month) -> MonthSpend {
        self.months.get(&month).copied().unwrap_or_default()
    }

    /// What is left of `month`'s limit once paid and reserved claims count; never below 0.
    pub fn remaining(&self, month: Month) -> Money {
        let used = self.month(month);
        Money::from_minor((self.monthly_limit.minor() - used.spent.minor() - used.reserved.minor()).max(0))
    }
}

impl DocumentView for CardView {
    const KIND: &'static str = "medcard";
    type Event = MedCardEvent;

    fn next(current: Option<Self>, envelope: &EventEnvelope, event: &MedCardEvent) -> Option<Self> {
        let mut view = match (current, event) {
            (None, MedCardEvent::MedCardIssued(terms)) => {
                return Some(CardView {
                    medcard_id: terms.medcard_id,
                    holder_id: terms.holder_id.clone(),
                    sponsor_wallet_id: terms.sponsor_wallet_id,
                    plan_name: terms.plan_name.clone(),
                    coverage_percent: terms.coverage_percent,
                    monthly_limit: terms.monthly_limit,
                    currency: terms.currency.to_string(),
                    status: CardStatus::Issued.as_str().into(),
                    suspension_reason: None,
                    expires_at: terms.expires_at,
                    beneficiaries: vec![],
                    months: BTreeMap::new(),
                    version: envelope.version,
                    created_at: envelope.occurred_at,
                    updated_at: envelope.occurred_at,
                })
            }
            (None, _) => return None,
            (Some(view), _) => view,
        };
        match event {
            MedCardEvent::MedCardIssued(_) => {}
            MedCardEvent::MedCardActivated {} => {
                view.status = CardStatus::Active.as_str().into();
                view.suspension_reason = None;
            }
            MedCardEvent::MedCardSuspended { reason } => {
                view.status = CardStatus::Suspended.as_str().into();
                view.suspension_reason = Some(reason.clone());
            }
            MedCardEvent::MedCardExpired {} => view.status = CardStatus::Expired.as_str().into(),
            MedCardEvent::MedCardBeneficiaryAdded(beneficiary) => {
                view.beneficiaries.retain(|b| b.beneficiary_id != beneficiary.beneficiary_id);
                view.beneficiaries.push(beneficiary.clone());
            }
            MedCardEvent::MedCardBeneficiaryRemoved { beneficiary_id } => view.beneficiaries.retain(|b| b.beneficiary_id != *beneficiary_id),
            MedCardEvent::MedCardLimitChanged { monthly_limit } => view.monthly_limit = *monthly_limit,
            MedCardEvent::MedCardCoverageReserved { month, amount, .. } => {
                let used = view.months.entry(*month).or_default();
                used.reserved = used.reserved.checked_add(*amount)?;
            }
            MedCardEvent::MedCardReservationConfirmed { month, amount, .. } => {
                let used = view.months.entry(*month).or_default();
                used.reserved = used.reserved.checked_sub(*amount)?;
                used.spent = used.spent.checked_add(*amount)?;
                used.claim_count += 1;
            }
            MedCardEvent::MedCardReservationReleased { month, amount, .. } => {
                let used = view.months.entry(*month).or_default();
                used.reserved = used.reserved.checked_sub(*amount)?;
            }
        }
        view.version = envelope.version;
        view.updated_at = envelope.occurred_at;
        Some(view)
    }

    /// A holder's cards, newest first.
    fn listings(&self) -> Vec<Listing> {
        vec![Listing { list: format!("holder#{}", self.holder_id), sort_key: format!("{}#{}", crate::clock::sort_key(&self.created_at), self.medcard_id) }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::command::{CommandContext, CommandService};
    use crate::medcard::{CardTerms, MedCard, MedCardCommand};
    use crate::memory::{MemoryEventStore, MemoryReadStore};
    use crate::money::Currency;
    use crate::ports::{DocumentViews, EventFeed};
    use crate::projection::{project, read_view, Projected, ProjectionError};
    use chrono::TimeZone;
    use std::sync::Arc;

    fn egp(major: i64) -> Money {
        Money::from_minor(major * 100)
    }

    /// A card issued, activated, given a beneficiary; one claim paid (320), one
    /// released (100), one under way (50), all in November 2026.
    async fn events_of_a_used_card() -> (Uuid, Vec<EventEnvelope>) {
        let store = Arc::new(MemoryEventStore::default());
        let clock = Arc::new(ManualClock::at(Utc.with_ymd_and_hms(2026, 11, 10, 10, 0, 0).unwrap()));
        let service = CommandService::new(store.clone(), clock.clone());
        let id = Uuid::now_v7();
        let beneficiary = Beneficiary { beneficiary_id: Uuid::now_v7(), name: "Self".into(), relationship: "self".into() };
        let month = Month::of(clock.now());
        let (paid, released, open) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let reserve = |claim_id, amount| MedCardCommand::Reserve { claim_id, beneficiary_id: beneficiary.beneficiary_id, month, amount, now: clock.now() };
        let commands = [
            MedCardCommand::Issue(CardTerms {
                medcard_id: id,
                holder_id: "patient".into(),
                sponsor_wallet_id: Uuid::now_v7(),
                plan_name: "Gold".into(),
                coverage_percent: 80,
                monthly_limit: egp(1000),
                currency: Currency::egp(),
                expires_at: clock.now() + chrono::Duration::days(365),
                issued_by: "insurer".into(),
            }),
            MedCardCommand::Activate,
            MedCardCommand::AddBeneficiary(beneficiary.clone()),
            reserve(paid, egp(320)),
            MedCardCommand::ConfirmReservation { claim_id: paid },
            reserve(released, egp(100)),
            MedCardCommand::ReleaseReservation { claim_id: released },
            reserve(open, egp(50)),
        ];
        let ctx = CommandContext::new("insurer", "c");
        for command in &commands {
            service.execute(&ctx, async |uow| uow.handle::<MedCard>(id, command).await).await.unwrap();
        }
        (id, store.read_after(0, 100).await.unwrap().into_iter().map(|(_, e)| e).collect())
    }

    #[tokio::test]
    async fn the_card_view_follows_status_beneficiaries_and_each_months_use() {
        let (id, events) = events_of_a_used_card().await;
        let read = MemoryReadStore::default();
        for event in &events {
            assert_eq!(project(&read, event).await.unwrap(), Projected::Applied);
        }
        let card: CardView = read_view(&read, id).await.unwrap().unwrap();
        assert_eq!((card.status.as_str(), card.beneficiaries.len(), card.version), ("ACTIVE", 1, events.len() as u64));
        let november = Month::parse("2026-11").unwrap();
        assert_eq!(card.month(november), MonthSpend { spent: egp(320), reserved: egp(50), claim_count: 1 });
        assert_eq!(card.remaining(november), egp(630));
        assert_eq!(card.remaining(Month::parse("2026-12").unwrap()), egp(1000), "another month starts afresh");
        let listed = read.listed(CardView::KIND, "holder#patient", 10, None).await.unwrap();
        assert_eq!(listed.documents.len(), 1);
    }

    #[tokio::test]
    async fn redeliveries_change_nothing_and_gaps_are_reported() {
        let (id, events) = events_of_a_used_card().await;
        let read = MemoryReadStore::default();
        for event in &events[..4] {
            project(&read, event).await.unwrap();
        }
        assert_eq!(project(&read, &events[2]).await.unwrap(), Projected::Duplicate);
        assert!(matches!(project(&read, &events[6]).await, Err(ProjectionError::Gap { have: 4, got: 7, .. })));
        let card: CardView = read_view(&read, id).await.unwrap().unwrap();
        assert_eq!(card.version, 4);
        assert_eq!(card.month(Month::parse("2026-11").unwrap()).reserved, egp(320));
    }
}
