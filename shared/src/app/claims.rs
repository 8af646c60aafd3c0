//! Claims: a pharmacy's prescription claims (the claim saga runs after the submit)
//! and a provider's insurance claims (an insurer decides; approval settles at once).
//!
//! | command | who |
//! |---|---|
//! | file a prescription claim | a `pharmacy` (or `admin`) into a pharmacy wallet it owns; the copayment only ever from a wallet the card's holder owns |
//! | file an insurance claim | the owner of the provider wallet (or `admin`) |
//! | approve, reject an insurance claim | `admin`, or the `insurer` owning the card's sponsor wallet |

use super::{forbidden, Call, Caller, Ledger, Receipt, Reply, Role};
use crate::claim::{Claim, ClaimCommand, ClaimItem, ClaimTerms};
use crate::command::CommandError;
use crate::error::DomainError;
use crate::ids::{BeneficiaryId, ClaimId, InsuranceClaimId, MedCardId, WalletId};
use crate::insurance_claim::{InsuranceClaim, InsuranceClaimCommand, InsuranceClaimTerms};
use crate::medcard::MedCard;
use crate::money::Money;
use crate::prescription::{self, Prescription, PrescriptionCommand};
use crate::wallet::{CreditType, DebitType, Movement, Wallet, WalletCommand};

#[derive(Debug, Clone, PartialEq)]
pub struct PrescriptionFiling {
    pub medcard: MedCardId,
    pub beneficiary: BeneficiaryId,
    pub prescription_id: String,
    pub pharmacy_wallet: WalletId,
    pub patient_wallet: WalletId,
    pub items: Vec<ClaimItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InsuranceClaimFiling {
    pub medcard: MedCardId,
    pub provider_wallet: WalletId,
    pub amount: Money,
    pub description: String,
    pub documents: Vec<String>,
}

impl Ledger {
    /// Files a prescription claim; the prescription is claimed in the same commit,
    /// so it is paid at most once.
    pub async fn submit_prescription_claim(
        &self,
        caller: &Caller,
        filing: PrescriptionFiling,
        call: &Call<'_, ClaimId>,
    ) -> Result<Reply<ClaimId>, CommandError> {
        if !caller.has_role(Role::Pharmacy) && !caller.is_admin() {
            return Err(forbidden(format!("{} may not file prescription claims (pharmacy only)", caller.sub)));
        }
        if !self.acts_for_wallet(caller, filing.pharmacy_wallet).await? {
            return Err(forbidden(format!("{} does not own pharmacy wallet {}", caller.sub, filing.pharmacy_wallet)));
        }
        let card: MedCard = self.origin(filing.medcard.uuid()).await?;
        let holder_id =
            card.issued().ok_or(CommandError::Refused(DomainError::NotFound { kind: "medcard", id: filing.medcard.uuid() }))?.terms.holder_id.clone();
        // The copayment is the card holder's to pay: never from anybody else's wallet,
        // whoever files the claim.
        if self.wallet_origin(filing.patient_wallet).await?.owner_id != holder_id {
            return Err(forbidden(format!("patient wallet {} is not owned by the holder of medical card {}", filing.patient_wallet, filing.medcard)));
        }
        let claim_id = ClaimId::generate();
        let terms = ClaimTerms {
            claim_id: claim_id.uuid(),
            medcard_id: filing.medcard.uuid(),
            beneficiary_id: filing.beneficiary.uuid(),
            prescription_id: filing.prescription_id.clone(),
            pharmacy_wallet_id: filing.pharmacy_wallet.uuid(),
            patient_wallet_id: filing.patient_wallet.uuid(),
            items: filing.items,
            submitted_by: caller.sub.clone(),
            holder_id: Some(holder_id),
        };
        let claim_prescription = PrescriptionCommand::Claim { prescription_id: filing.prescription_id.clone(), claim_id: claim_id.uuid() };
        self.run(call, async move |uow| {
            uow.handle::<Prescription>(prescription::stream_uuid(&filing.prescription_id), &claim_prescription).await?;
            uow.handle::<Claim>(claim_id.uuid(), &ClaimCommand::Submit(terms.clone())).await?;
            Ok(claim_id)
        })
        .await
    }

    /// A provider claims against a card in force, in the card's currency.
    pub async fn submit_insurance_claim(
        &self,
        caller: &Caller,
        filing: InsuranceClaimFiling,
        call: &Call<'_, InsuranceClaimId>,
    ) -> Result<Reply<InsuranceClaimId>, CommandError> {
        let provider = self.wallet_origin(filing.provider_wallet).await?;
        if !caller.may_act_for(&provider.owner_id) {
            return Err(forbidden(format!("{} does not own provider wallet {}", caller.sub, filing.provider_wallet)));
        }
        let claim_id = InsuranceClaimId::generate();
        let (medcard_id, provider_wallet_id) = (filing.medcard.uuid(), filing.provider_wallet.uuid());
        let submitted_by = caller.sub.clone();
        self.run(call, async move |uow| {
            // The card's status and expiry change: its current state decides.
            let card: MedCard = uow.peek(medcard_id).await?;
            let card = card.issued().ok_or(DomainError::NotFound { kind: "medcard", id: medcard_id })?;
            card.ensure_in_force(uow.now())?;
            if provider.currency != card.terms.currency {
                return Err(DomainError::CurrencyMismatch {
                    wallet: provider_wallet_id,
                    wallet_currency: provider.currency.clone(),
                    command_currency: card.terms.currency.clone(),
                }
                .into());
            }
            let terms = InsuranceClaimTerms {
                claim_id: claim_id.uuid(),
                medcard_id,
                provider_wallet_id,
                amount: filing.amount,
                currency: card.terms.currency.clone(),
                description: filing.description.clone(),
                documents: filing.documents.clone(),
                submitted_by: submitted_by.clone(),
            };
            uow.handle::<InsuranceClaim>(claim_id.uuid(), &InsuranceClaimCommand::Submit(terms)).await?;
            Ok(claim_id)
        })
        .await
    }

    /// Approves (`None`: what was claimed) and settles in one commit: the sponsor
    /// wallet pays the provider wallet, or nothing happens (e.g. 422
    /// `INSUFFICIENT_FUNDS`, the claim stays `SUBMITTED`). Answers the settled claim
    /// and the amount approved.
    pub async fn approve_insurance_claim(
        &self,
        caller: &Caller,
        claim_id: InsuranceClaimId,
        amount: Option<Money>,
        call: &Call<'_, (Receipt<InsuranceClaim>, Money)>,
    ) -> Result<Reply<(Receipt<InsuranceClaim>, Money)>, CommandError> {
        let (terms, sponsor_wallet_id) = self.insurer_may_decide(caller, claim_id).await?;
        self.run(call, async move |uow| {
            let amount = amount.unwrap_or(terms.amount);
            uow.handle::<InsuranceClaim>(claim_id.uuid(), &InsuranceClaimCommand::Approve { amount }).await?;
            let reference = format!("insurance-claim:{claim_id}");
            let debit = Movement {
                amount,
                transaction_type: DebitType::ClaimPayment,
                reference: reference.clone(),
                description: Some(format!("Insurance claim {claim_id}: {}", terms.description)),
                currency: Some(terms.currency.clone()),
            };
            uow.handle::<Wallet>(sponsor_wallet_id.uuid(), &WalletCommand::Debit(debit)).await?;
            let credit = Movement {
                amount,
                transaction_type: CreditType::ClaimPayment,
                reference,
                description: Some(format!("Insurance claim {claim_id} paid")),
                currency: Some(terms.currency.clone()),
            };
            uow.handle::<Wallet>(terms.provider_wallet_id, &WalletCommand::Credit(credit)).await?;
            let settled = uow.handle::<InsuranceClaim>(claim_id.uuid(), &InsuranceClaimCommand::Settle).await?;
            Ok((Receipt::of(uow, claim_id.uuid(), settled), amount))
        })
        .await
    }

    pub async fn reject_insurance_claim(
        &self,
        caller: &Caller,
        claim_id: InsuranceClaimId,
        reason: String,
        call: &Call<'_, Receipt<InsuranceClaim>>,
    ) -> Result<Reply<Receipt<InsuranceClaim>>, CommandError> {
        self.insurer_may_decide(caller, claim_id).await?;
        self.run(call, async move |uow| {
            let rejected = uow.handle::<InsuranceClaim>(claim_id.uuid(), &InsuranceClaimCommand::Reject { reason: reason.clone() }).await?;
            Ok(Receipt::of(uow, claim_id.uuid(), rejected))
        })
        .await
    }

    /// The claim's terms and its card's sponsor wallet, if the caller decides for
    /// that sponsor (`admin`, or an `insurer` owning the sponsor wallet).
    async fn insurer_may_decide(&self, caller: &Caller, claim_id: InsuranceClaimId) -> Result<(InsuranceClaimTerms, WalletId), CommandError> {
        let not_found = |kind, id| CommandError::Refused(DomainError::NotFound { kind, id });
        let claim: InsuranceClaim = self.origin(claim_id.uuid()).await?;
        let terms = claim.submitted().ok_or_else(|| not_found("insurance claim", claim_id.uuid()))?.terms.clone();
        let card: MedCard = self.origin(terms.medcard_id).await?;
        let sponsor = WalletId(card.issued().ok_or_else(|| not_found("medcard", terms.medcard_id))?.terms.sponsor_wallet_id);
        if !self.sponsors(caller, sponsor).await? {
            return Err(forbidden(format!("{} may not decide insurance claim {claim_id}", caller.sub)));
        }
        Ok((terms, sponsor))
    }
}
