//! Claims: a pharmacy's prescription claims (the claim saga runs after the submit,
//! on AWS in Step Functions, locally in the ASL runner) and a provider's insurance
//! claims (an insurer decides; approval settles at once).

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{amount, parse_uuid, text, Incoming, Success};
use crate::medcards::{may_read_card, readable_card};
use crate::queries::{ok, owns_wallet, page_limit};
use crate::App;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use shared::app::{InsuranceClaimFiling, PrescriptionFiling, Receipt};
use shared::claim::ClaimItem;
use shared::ids::{BeneficiaryId, ClaimId, InsuranceClaimId, MedCardId, WalletId};
use shared::insurance_claim::InsuranceClaim;
use shared::money::Money;
use shared::ports::StoredResponse;
use shared::projection::claim::{holder_list, medcard_list, pharmacy_list, ClaimView, InsuranceClaimView};
use shared::projection::medcard::CardView;
use shared::projection::{read_view, view_of, DocumentView};
use uuid::Uuid;

const ID_MAX: usize = 128;
const TEXT_MAX: usize = 512;
/// More lines than any prescription has; keeps a claim well inside one event.
const ITEMS_MAX: usize = 100;
const DOCUMENTS_MAX: usize = 20;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
struct PrescriptionBody {
    medcard_id: String,
    beneficiary_id: String,
    prescription_id: String,
    pharmacy_wallet_id: String,
    patient_wallet_id: String,
    items: Vec<ItemBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an item object with drugCode, drugName, quantity and unitPrice")]
struct ItemBody {
    drug_code: String,
    drug_name: String,
    quantity: serde_json::Number,
    unit_price: Box<RawValue>,
}

impl ItemBody {
    fn item(&self, index: usize) -> Result<ClaimItem, ApiError> {
        let field = |name: &str| format!("items[{index}].{name}");
        let quantity = self
            .quantity
            .as_u64()
            .filter(|q| *q > 0)
            .and_then(|q| u32::try_from(q).ok())
            .ok_or_else(|| ApiError::validation(format!("{} must be a whole number greater than 0, got {}", field("quantity"), self.quantity)))?;
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
        Success::ok(json!({"claimId": claim_id, "status": "PENDING"})).with_status(202).with_header("location", format!("/api/v2/claims/{claim_id}"))
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.submit_prescription_claim(caller, filing, &call).await, render)
}

fn money_or_null(amount: Option<Money>) -> Value {
    amount.map_or(Value::Null, Money::to_json_number)
}

fn claim_json(claim: &ClaimView) -> Value {
    json!({
        "claimId": claim.claim_id,
        "medcardId": claim.medcard_id,
        "beneficiaryId": claim.beneficiary_id,
        "prescriptionId": claim.prescription_id,
        "pharmacyWalletId": claim.pharmacy_wallet_id,
        "patientWalletId": claim.patient_wallet_id,
        "totalAmount": claim.total_amount.to_json_number(),
        "coveredAmount": money_or_null(claim.covered_amount),
        "copaymentAmount": money_or_null(claim.copayment_amount),
        "coveragePercent": claim.coverage_percent,
        "status": claim.status,
        "stage": claim.stage,
        "rejectionReason": claim.rejection_reason,
        "refundsInSuspense": claim.refunds_in_suspense.iter().map(|r| json!({
            "refund": r.refund,
            "walletId": r.wallet_id,
            "amount": r.amount.to_json_number(),
            "reason": r.reason,
        })).collect::<Vec<_>>(),
        "items": claim.items.iter().map(|i| json!({
            "drugCode": i.drug_code,
            "drugName": i.drug_name,
            "quantity": i.quantity,
            "unitPrice": i.unit_price.to_json_number(),
        })).collect::<Vec<_>>(),
        "version": claim.version,
        "createdAt": shared::clock::rfc3339(claim.created_at),
        "updatedAt": shared::clock::rfc3339(claim.updated_at),
    })
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
    Ok(ok(claim_json(&claim)))
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

/// `?limit&cursor`: the cursor is opaque (the hex of a list's sort key).
async fn claim_page(app: &App, incoming: &Incoming, list: &str) -> Result<StoredResponse, ApiError> {
    let limit = page_limit(incoming)?;
    let before = match incoming.query("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => {
            Some(hex::decode(&raw).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| ApiError::validation("cursor is not one this API returned"))?)
        }
    };
    let page = app.read.listed(ClaimView::KIND, list, limit, before.as_deref()).await?;
    let claims = page.documents.into_iter().map(|d| view_of::<ClaimView>(d.clone(), d.id).map(|c| claim_json(&c))).collect::<Result<Vec<_>, _>>()?;
    Ok(ok(json!({"items": claims, "nextCursor": page.next.map(hex::encode)})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
struct InsuranceBody {
    medcard_id: String,
    provider_wallet_id: String,
    amount: Box<RawValue>,
    description: String,
    #[serde(default)]
    documents: Vec<String>,
}

/// A provider (the owner of the provider wallet) claims against an active card.
pub async fn submit_insurance(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: InsuranceBody = incoming.json()?;
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
        Success::ok(json!({"claimId": claim_id, "status": "SUBMITTED"}))
            .with_status(201)
            .with_header("location", format!("/api/v2/insurance-claims/{claim_id}"))
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.submit_insurance_claim(caller, filing, &call).await, render)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct ApproveBody {
    #[serde(default)]
    amount: Option<Box<RawValue>>,
}

/// Approves (`amount` defaults to what was claimed) and settles in one commit.
pub async fn approve_insurance(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: ApproveBody = incoming.json()?;
    let approved = body.amount.as_deref().map(|raw| amount("amount", raw)).transpose()?;
    let claim_id = InsuranceClaimId(incoming.path_id("claimId")?);
    let caller = incoming.caller();
    let render = |(settled, amount): &(Receipt<InsuranceClaim>, Money)| {
        let status = settled.state.submitted().map_or("SETTLED", |c| c.status.as_str());
        Success::ok(json!({"claimId": claim_id, "status": status, "approvedAmount": amount.to_json_number()}))
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.approve_insurance_claim(caller, claim_id, approved, &call).await, render)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct RejectBody {
    reason: String,
}

pub async fn reject_insurance(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: RejectBody = incoming.json()?;
    let reason = text("reason", &body.reason, TEXT_MAX)?;
    let claim_id = InsuranceClaimId(incoming.path_id("claimId")?);
    let caller = incoming.caller();
    let render = |_: &Receipt<InsuranceClaim>| Success::ok(json!({"claimId": claim_id, "status": "REJECTED"}));
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.reject_insurance_claim(caller, claim_id, reason, &call).await, render)
}

fn insurance_json(claim: &InsuranceClaimView) -> Value {
    json!({
        "claimId": claim.claim_id,
        "medcardId": claim.medcard_id,
        "providerWalletId": claim.provider_wallet_id,
        "amount": claim.amount.to_json_number(),
        "approvedAmount": money_or_null(claim.approved_amount),
        "currency": claim.currency,
        "description": claim.description,
        "documents": claim.documents,
        "status": claim.status,
        "rejectionReason": claim.rejection_reason,
        "version": claim.version,
        "createdAt": shared::clock::rfc3339(claim.created_at),
        "updatedAt": shared::clock::rfc3339(claim.updated_at),
    })
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
    Ok(ok(insurance_json(&claim)))
}
