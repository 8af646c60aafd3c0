//! Claims: a pharmacy's prescription claims (the claim saga runs after the submit,
//! on AWS in Step Functions, locally in the ASL runner) and a provider's insurance
//! claims (an insurer decides; approval settles at once).

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{amount, parse_uuid, text, whole_number, Incoming, Success};
use crate::medcards::{may_read_card, readable_card};
use crate::queries::{document_page, ok, owns_wallet};
use crate::schema::{Amount, ClaimStage, ClaimStatus, InsuranceClaimStatus, RequestAmount, SuspendedRefundKind, Timestamp};
use crate::App;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shared::app::{InsuranceClaimFiling, PrescriptionFiling, Receipt};
use shared::claim::ClaimItem;
use shared::ids::{BeneficiaryId, ClaimId, InsuranceClaimId, MedCardId, WalletId};
use shared::insurance_claim::InsuranceClaim;
use shared::money::Money;
use shared::ports::StoredResponse;
use shared::projection::claim::{holder_list, medcard_list, pharmacy_list, ClaimView, InsuranceClaimView};
use shared::projection::medcard::CardView;
use shared::projection::read_view;
use utoipa::ToSchema;
use uuid::Uuid;

const ID_MAX: usize = 128;
const TEXT_MAX: usize = 512;
/// More lines than any prescription has; keeps a claim well inside one event.
const ITEMS_MAX: usize = 100;
const DOCUMENTS_MAX: usize = 20;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct PrescriptionBody {
    #[schema(format = Uuid)]
    medcard_id: String,
    #[schema(format = Uuid)]
    beneficiary_id: String,
    /// Paid at most once (while a claim on it is pending or approved).
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    prescription_id: String,
    /// A wallet of the filing pharmacy: it is paid the total.
    #[schema(format = Uuid)]
    pharmacy_wallet_id: String,
    /// A wallet of the card holder: it pays the copayment.
    #[schema(format = Uuid)]
    patient_wallet_id: String,
    /// 1 to 100 lines; their total (Σ quantity × unitPrice) is an amount too (at most 1,000,000,000).
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<PrescriptionItemBody>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an item object with drugCode, drugName, quantity and unitPrice")]
pub(crate) struct PrescriptionItemBody {
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    drug_code: String,
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    drug_name: String,
    #[schema(value_type = u32, minimum = 1, maximum = 4294967295u64)]
    quantity: Box<RawValue>,
    #[schema(value_type = RequestAmount)]
    unit_price: Box<RawValue>,
}

impl PrescriptionItemBody {
    fn item(&self, index: usize) -> Result<ClaimItem, ApiError> {
        let field = |name: &str| format!("items[{index}].{name}");
        let quantity = whole_number(&self.quantity, 1, u32::MAX.into())
            .ok_or_else(|| ApiError::validation(format!("{} must be a whole number greater than 0, got {}", field("quantity"), self.quantity.get())))?
            as u32;
        Ok(ClaimItem {
            drug_code: text(&field("drugCode"), &self.drug_code, ID_MAX)?,
            drug_name: text(&field("drugName"), &self.drug_name, ID_MAX)?,
            quantity,
            unit_price: amount(&field("unitPrice"), &self.unit_price)?,
        })
    }
}

/// Files a prescription claim (`shared::app::claims` says who may).
pub async fn submit(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: PrescriptionBody = incoming.json()?;
    let medcard = MedCardId(parse_uuid("medcardId", &body.medcard_id)?);
    let beneficiary = BeneficiaryId(parse_uuid("beneficiaryId", &body.beneficiary_id)?);
    let prescription_id = text("prescriptionId", &body.prescription_id, ID_MAX)?;
    let pharmacy_wallet = WalletId(parse_uuid("pharmacyWalletId", &body.pharmacy_wallet_id)?);
    let patient_wallet = WalletId(parse_uuid("patientWalletId", &body.patient_wallet_id)?);
    if body.items.is_empty() || body.items.len() > ITEMS_MAX {
        return Err(ApiError::validation(format!("items must hold 1 to {ITEMS_MAX} lines")));
    }
    let items = body.items.iter().enumerate().map(|(i, item)| item.item(i)).collect::<Result<Vec<_>, _>>()?;
    // The total must be an amount too (the aggregate refuses it otherwise; say so early).
    shared::claim::items_total(&items).map_err(|e| ApiError::validation(e.to_string()))?;
    let filing = PrescriptionFiling { medcard, beneficiary, prescription_id, pharmacy_wallet, patient_wallet, items };
    let caller = incoming.caller();
    let render = |claim_id: &ClaimId| {
        Success::ok(ClaimAccepted { claim_id: claim_id.0, status: "PENDING" }).with_status(202).with_header("location", format!("/api/v2/claims/{claim_id}"))
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.submit_prescription_claim(caller, filing, &call).await, render)
}

/// A prescription claim accepted: its saga runs next (`GET /api/v2/claims/{claimId}`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimAccepted {
    claim_id: Uuid,
    /// Always `PENDING` here.
    #[schema(value_type = ClaimStatus)]
    status: &'static str,
}

/// A prescription claim, from the read side.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimReply {
    claim_id: Uuid,
    medcard_id: Uuid,
    beneficiary_id: Uuid,
    prescription_id: String,
    pharmacy_wallet_id: Uuid,
    patient_wallet_id: Uuid,
    total_amount: Amount,
    /// `null` until the claim is priced.
    covered_amount: Option<Amount>,
    /// `null` until the claim is priced.
    copayment_amount: Option<Amount>,
    /// `null` until the claim is priced.
    #[schema(minimum = 0, maximum = 100)]
    coverage_percent: Option<u8>,
    #[schema(value_type = ClaimStatus)]
    status: String,
    /// How far the saga got.
    #[schema(value_type = ClaimStage)]
    stage: String,
    /// The refusal code of the step that failed; `null` unless rejected.
    rejection_reason: Option<String>,
    /// Refunds that could not land (a wallet closed meanwhile), held in suspense for an operator.
    refunds_in_suspense: Vec<SuspendedRefundReply>,
    items: Vec<ClaimItemReply>,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuspendedRefundReply {
    #[schema(value_type = SuspendedRefundKind)]
    refund: shared::claim::Refund,
    wallet_id: Uuid,
    amount: Amount,
    /// The wallet's refusal, e.g. WALLET_NOT_ACTIVE.
    reason: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimItemReply {
    drug_code: String,
    drug_name: String,
    quantity: u32,
    unit_price: Amount,
}

impl ClaimReply {
    fn of(claim: &ClaimView) -> Self {
        ClaimReply {
            claim_id: claim.claim_id,
            medcard_id: claim.medcard_id,
            beneficiary_id: claim.beneficiary_id,
            prescription_id: claim.prescription_id.clone(),
            pharmacy_wallet_id: claim.pharmacy_wallet_id,
            patient_wallet_id: claim.patient_wallet_id,
            total_amount: claim.total_amount.into(),
            covered_amount: claim.covered_amount.map(Amount),
            copayment_amount: claim.copayment_amount.map(Amount),
            coverage_percent: claim.coverage_percent,
            status: claim.status.clone(),
            stage: claim.stage.clone(),
            rejection_reason: claim.rejection_reason.clone(),
            refunds_in_suspense: claim
                .refunds_in_suspense
                .iter()
                .map(|r| SuspendedRefundReply { refund: r.refund, wallet_id: r.wallet_id, amount: r.amount.into(), reason: r.reason.clone() })
                .collect(),
            items: claim
                .items
                .iter()
                .map(|i| ClaimItemReply {
                    drug_code: i.drug_code.clone(),
                    drug_name: i.drug_name.clone(),
                    quantity: i.quantity,
                    unit_price: i.unit_price.into(),
                })
                .collect(),
            version: claim.version,
            created_at: claim.created_at.into(),
            updated_at: claim.updated_at.into(),
        }
    }
}

/// A page of claims, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPage {
    items: Vec<ClaimReply>,
    /// Pass as `cursor` for the next page; `null` on the last page. Opaque.
    next_cursor: Option<String>,
}

/// The pharmacy that filed it (its submitter or the pharmacy wallet's owner), the
/// card holder, `admin`, or an insurer sponsoring the card.
pub async fn get(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let claim_id = incoming.path_id("claimId")?;
    let claim: ClaimView = read_view(app.read.as_ref(), claim_id).await?.ok_or_else(|| ApiError::not_found(format!("claim {claim_id} was not found")))?;
    let caller = incoming.caller();
    let allowed = claim.holder_id.as_deref() == Some(caller.sub.as_str())
        || may_read_claim(app, caller, &claim.submitted_by, claim.pharmacy_wallet_id, claim.medcard_id).await?;
    if !allowed {
        return Err(ApiError::forbidden(format!("{} may not read claim {claim_id}", caller.sub)));
    }
    Ok(ok(ClaimReply::of(&claim)))
}

/// Who may read a claim (prescription or insurance): `admin`, whoever filed it, the
/// owner of the wallet it pays, and whoever may read its card.
async fn may_read_claim(app: &App, caller: &Caller, submitted_by: &str, paid_wallet_id: Uuid, medcard_id: Uuid) -> Result<bool, ApiError> {
    if caller.is_admin() || caller.sub == submitted_by || owns_wallet(app, caller, paid_wallet_id).await? {
        return Ok(true);
    }
    let card: Option<CardView> = read_view(app.read.as_ref(), medcard_id).await?;
    match card {
        Some(card) => may_read_card(app, caller, &card).await,
        None => Ok(false),
    }
}

/// A pharmacy's claims, newest first: its wallet's owner or `admin`.
pub async fn of_pharmacy(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let wallet_id = incoming.path_id("pharmacyWalletId")?;
    let caller = incoming.caller();
    if !caller.is_admin() && !owns_wallet(app, caller, wallet_id).await? {
        return Err(ApiError::forbidden(format!("{} may not list the claims of pharmacy wallet {wallet_id}", caller.sub)));
    }
    claim_page(app, incoming, &pharmacy_list(wallet_id)).await
}

/// The claims made on a card, newest first: whoever may read the card.
pub async fn of_medcard(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let medcard_id = incoming.path_id("medcardId")?;
    readable_card(app, incoming, medcard_id).await?;
    claim_page(app, incoming, &medcard_list(medcard_id)).await
}

/// The claims made on the caller's cards (as their holder), newest first.
pub async fn of_holder(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    claim_page(app, incoming, &holder_list(&incoming.caller().sub)).await
}

/// A page of a claim list (`?limit&cursor`).
async fn claim_page(app: &App, incoming: &Incoming, list: &str) -> Result<StoredResponse, ApiError> {
    let (items, next_cursor) = document_page(app, incoming, list, ClaimReply::of).await?;
    Ok(ok(ClaimPage { items, next_cursor }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct InsuranceClaimBody {
    #[schema(format = Uuid)]
    medcard_id: String,
    /// A wallet of the provider filing the claim: it is paid on approval.
    #[schema(format = Uuid)]
    provider_wallet_id: String,
    #[schema(value_type = RequestAmount)]
    amount: Box<RawValue>,
    #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
    description: String,
    /// Up to 20 references to supporting documents, each 1 to 512 characters.
    #[serde(default)]
    #[schema(max_items = 20)]
    documents: Vec<String>,
}

/// An insurance claim's id and status after a command.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsuranceClaimCommandReply {
    claim_id: Uuid,
    #[schema(value_type = InsuranceClaimStatus)]
    status: &'static str,
    /// Approval only: what the sponsor paid the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    approved_amount: Option<Amount>,
}

/// A provider (the owner of the provider wallet) claims against an active card.
pub async fn submit_insurance(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: InsuranceClaimBody = incoming.json()?;
    let medcard = MedCardId(parse_uuid("medcardId", &body.medcard_id)?);
    let provider_wallet = WalletId(parse_uuid("providerWalletId", &body.provider_wallet_id)?);
    let amount = amount("amount", &body.amount)?;
    let description = text("description", &body.description, TEXT_MAX)?;
    if body.documents.len() > DOCUMENTS_MAX {
        return Err(ApiError::validation(format!("documents must hold at most {DOCUMENTS_MAX} references")));
    }
    let documents = body.documents.iter().enumerate().map(|(i, d)| text(&format!("documents[{i}]"), d, TEXT_MAX)).collect::<Result<Vec<_>, _>>()?;
    let filing = InsuranceClaimFiling { medcard, provider_wallet, amount, description, documents };
    let caller = incoming.caller();
    let render = |claim_id: &InsuranceClaimId| {
        Success::ok(InsuranceClaimCommandReply { claim_id: claim_id.0, status: "SUBMITTED", approved_amount: None })
            .with_status(201)
            .with_header("location", format!("/api/v2/insurance-claims/{claim_id}"))
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.submit_insurance_claim(caller, filing, &call).await, render)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct ApproveInsuranceClaimBody {
    /// What was claimed if absent; more is 422 LIMIT_EXCEEDED.
    #[serde(default)]
    #[schema(value_type = Option<RequestAmount>)]
    amount: Option<Box<RawValue>>,
}

/// Approves (`amount` defaults to what was claimed) and settles in one commit.
pub async fn approve_insurance(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: ApproveInsuranceClaimBody = incoming.json()?;
    let approved = body.amount.as_deref().map(|raw| amount("amount", raw)).transpose()?;
    let claim_id = InsuranceClaimId(incoming.path_id("claimId")?);
    let caller = incoming.caller();
    let render = |(settled, amount): &(Receipt<InsuranceClaim>, Money)| {
        let status = settled.state.submitted().map_or("SETTLED", |c| c.status.as_str());
        Success::ok(InsuranceClaimCommandReply { claim_id: claim_id.0, status, approved_amount: Some((*amount).into()) })
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.approve_insurance_claim(caller, claim_id, approved, &call).await, render)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct RejectInsuranceClaimBody {
    #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
    reason: String,
}

pub async fn reject_insurance(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: RejectInsuranceClaimBody = incoming.json()?;
    let reason = text("reason", &body.reason, TEXT_MAX)?;
    let claim_id = InsuranceClaimId(incoming.path_id("claimId")?);
    let caller = incoming.caller();
    let render = |_: &Receipt<InsuranceClaim>| Success::ok(InsuranceClaimCommandReply { claim_id: claim_id.0, status: "REJECTED", approved_amount: None });
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.reject_insurance_claim(caller, claim_id, reason, &call).await, render)
}

/// An insurance claim, from the read side.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsuranceClaimReply {
    claim_id: Uuid,
    medcard_id: Uuid,
    provider_wallet_id: Uuid,
    amount: Amount,
    /// `null` until approved.
    approved_amount: Option<Amount>,
    currency: String,
    description: String,
    documents: Vec<String>,
    #[schema(value_type = InsuranceClaimStatus)]
    status: String,
    /// `null` unless rejected.
    rejection_reason: Option<String>,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl InsuranceClaimReply {
    fn of(claim: &InsuranceClaimView) -> Self {
        InsuranceClaimReply {
            claim_id: claim.claim_id,
            medcard_id: claim.medcard_id,
            provider_wallet_id: claim.provider_wallet_id,
            amount: claim.amount.into(),
            approved_amount: claim.approved_amount.map(Amount),
            currency: claim.currency.clone(),
            description: claim.description.clone(),
            documents: claim.documents.clone(),
            status: claim.status.clone(),
            rejection_reason: claim.rejection_reason.clone(),
            version: claim.version,
            created_at: claim.created_at.into(),
            updated_at: claim.updated_at.into(),
        }
    }
}

/// The provider (submitter or provider wallet owner), whoever may read the card.
pub async fn get_insurance(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let claim_id = incoming.path_id("claimId")?;
    let claim: InsuranceClaimView =
        read_view(app.read.as_ref(), claim_id).await?.ok_or_else(|| ApiError::not_found(format!("insurance claim {claim_id} was not found")))?;
    let caller = incoming.caller();
    let allowed = may_read_claim(app, caller, &claim.submitted_by, claim.provider_wallet_id, claim.medcard_id).await?;
    if !allowed {
        return Err(ApiError::forbidden(format!("{} may not read insurance claim {claim_id}", caller.sub)));
    }
    Ok(ok(InsuranceClaimReply::of(&claim)))
}
