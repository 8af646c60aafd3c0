//! Medical cards. An insurer manages only the cards its own sponsor wallets pay
//! for; the card holder may also manage the beneficiaries; `admin` may do anything.
//!
//! | command | who |
//! |---|---|
//! | issue | `admin`, or an `insurer` owning the sponsor wallet |
//! | activate, suspend, expire, change the monthly limit | `admin`, the sponsoring `insurer` |
//! | add or remove a beneficiary | those, and the card holder |

use super::{forbidden, Call, Caller, Ledger, Receipt, Reply, Role};
use crate::command::CommandError;
use crate::error::DomainError;
use crate::ids::{MedCardId, WalletId};
use crate::medcard::{CardTerms, MedCard, MedCardCommand};
use crate::money::Money;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct CardIssue {
    pub holder_id: String,
    pub sponsor_wallet: WalletId,
    pub plan_name: String,
    pub coverage_percent: u8,
    pub monthly_limit: Money,
    pub expires_at: DateTime<Utc>,
}

/// The card commands a caller may send (the saga's reservations are not among them).
#[derive(Debug, Clone, PartialEq)]
pub enum CardOrder {
    Activate,
    Suspend { reason: String },
    Expire,
    AddBeneficiary(crate::medcard::Beneficiary),
    RemoveBeneficiary { beneficiary_id: crate::ids::BeneficiaryId },
    ChangeMonthlyLimit { monthly_limit: Money },
}

impl CardOrder {
    fn command(self) -> MedCardCommand {
        match self {
            CardOrder::Activate => MedCardCommand::Activate,
            CardOrder::Suspend { reason } => MedCardCommand::Suspend { reason },
            CardOrder::Expire => MedCardCommand::Expire,
            CardOrder::AddBeneficiary(beneficiary) => MedCardCommand::AddBeneficiary(beneficiary),
            CardOrder::RemoveBeneficiary { beneficiary_id } => MedCardCommand::RemoveBeneficiary { beneficiary_id: beneficiary_id.uuid() },
            CardOrder::ChangeMonthlyLimit { monthly_limit } => MedCardCommand::ChangeMonthlyLimit { monthly_limit },
        }
    }

    /// Whether the card holder may send it too (beneficiaries are the holder's family).
    fn holder_may(&self) -> bool {
        matches!(self, CardOrder::AddBeneficiary(_) | CardOrder::RemoveBeneficiary { .. })
    }
}

impl Ledger {
    pub async fn issue_medcard(&self, caller: &Caller, issue: CardIssue, call: &Call<'_, Receipt<MedCard>>) -> Result<Reply<Receipt<MedCard>>, CommandError> {
        if !caller.is_admin() && !caller.has_role(Role::Insurer) {
            return Err(forbidden(format!("{} may not issue medical cards (admin or insurer only)", caller.sub)));
        }
        let sponsor = self.wallet_origin(issue.sponsor_wallet).await?;
        if !caller.may_act_for(&sponsor.owner_id) {
            return Err(forbidden(format!("{} does not own sponsor wallet {}", caller.sub, issue.sponsor_wallet)));
        }
        if issue.expires_at <= self.commands.clock().now() {
            return Err(CommandError::Refused(DomainError::Validation("expiresAt must be in the future".into())));
        }
        let medcard_id = MedCardId::generate();
        let terms = CardTerms {
            medcard_id: medcard_id.uuid(),
            holder_id: issue.holder_id,
            sponsor_wallet_id: issue.sponsor_wallet.uuid(),
            plan_name: issue.plan_name,
            coverage_percent: issue.coverage_percent,
            monthly_limit: issue.monthly_limit,
            // A wallet's currency never changes: the card is in its sponsor's.
            currency: sponsor.currency,
            expires_at: issue.expires_at,
            issued_by: caller.sub.clone(),
        };
        self.run(call, async move |uow| {
            let card = uow.handle::<MedCard>(medcard_id.uuid(), &MedCardCommand::Issue(terms.clone())).await?;
            Ok(Receipt::of(uow, medcard_id.uuid(), card))
        })
        .await
    }

    pub async fn on_medcard(
        &self,
        caller: &Caller,
        medcard_id: MedCardId,
        order: CardOrder,
        call: &Call<'_, Receipt<MedCard>>,
    ) -> Result<Reply<Receipt<MedCard>>, CommandError> {
        let card: MedCard = self.origin(medcard_id.uuid()).await?;
        let terms = &card.issued().ok_or(CommandError::Refused(DomainError::NotFound { kind: "medcard", id: medcard_id.uuid() }))?.terms;
        let allowed = (order.holder_may() && caller.sub == terms.holder_id) || self.sponsors(caller, WalletId(terms.sponsor_wallet_id)).await?;
        if !allowed {
            return Err(forbidden(format!("{} may not do this to medical card {medcard_id}", caller.sub)));
        }
        let command = order.command();
        self.run(call, async move |uow| {
            let after = uow.handle::<MedCard>(medcard_id.uuid(), &command).await?;
            Ok(Receipt::of(uow, medcard_id.uuid(), after))
        })
        .await
    }

    /// `admin`, or an `insurer` owning the sponsor wallet.
    pub(super) async fn sponsors(&self, caller: &Caller, sponsor_wallet: WalletId) -> Result<bool, CommandError> {
        if caller.is_admin() {
            return Ok(true);
        }
        if !caller.has_role(Role::Insurer) {
            return Ok(false);
        }
        let wallet: crate::wallet::Wallet = self.origin(sponsor_wallet.uuid()).await?;
        Ok(wallet.open().is_some_and(|w| w.owner_id == caller.sub))
    }
}
