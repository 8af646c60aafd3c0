//! Claims: a pharmacy's prescription claims (the claim saga runs after the submit,
//! on AWS in Step Functions, locally in the ASL runner) and a provider's insurance
//! claims (an insurer decides; approval settles at once).

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::http::{amount, parse_uuid, text, Incoming, Success};
use crate::medcards::{may_read_card, readable_card, sponsors};
use crate::queries::{ok, owns_wallet, page_limit};
use crate::App;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use shared::claim::{Claim, ClaimCommand, ClaimItem, ClaimTerms};
use shared::command::{Failure, UnitOfWork};
use shared::error::DomainError;
use shared::insurance_claim::{InsuranceClaim, InsuranceClaimCommand, InsuranceClaimTerms};
use shared::medcard::MedCard;
use shared::money::Money;
use shared::ports::StoredResponse;
use shared::prescription::{self, Prescription, PrescriptionCommand};
use shared::projection::claim::{holder_list, medcard_list, pharmacy_list, ClaimView, InsuranceClaimView};
use shared::projection::medcard::CardView;
use shared::projection::{read_view, view_of, DocumentView};
use shared::wallet::{CreditType, DebitType, Movement, Wallet, WalletCommand};
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

/// Files a prescription claim (role `pharmacy`, into a wallet the caller owns).
/// The prescription is claimed in the same commit, so it is paid at most once.
pub async fn submit(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let caller = incoming.caller().clone();
    if !caller.has_role(Role::Pharmacy) && !caller.is_admin() {
        return Err(ApiError::forbidden(format!("{} may not file prescription claims (pharmacy only)", caller.sub)));
    }
    let body: PrescriptionBody = incoming.json()?;
    let medcard_id = parse_uuid("medcardId", &body.medcard_id)?;
    let beneficiary_id = parse_uuid("beneficiaryId", &body.beneficiary_id)?;
    let prescription_id = text("prescriptionId", &body.prescription_id, ID_MAX)?;
    let pharmacy_wallet_id = parse_uuid("pharmacyWalletId", &body.pharmacy_wallet_id)?;
    let patient_wallet_id = parse_uuid("patientWalletId", &body.patient_wallet_id)?;
    if body.items.is_empty() || body.items.len() > ITEMS_MAX {
        return Err(ApiError::validation(format!("items must hold 1 to {ITEMS_MAX} lines")));
    }
    let items = body.items.iter().enumerate().map(|(i, item)| item.item(i)).collect::<Result<Vec<_>, _>>()?;
    // The total must be an amount too (the aggregate refuses it otherwise; say so early).
    shared::claim::items_total(&items).map_err(|e| ApiError::validation(e.to_string()))?;
    let claim_id = Uuid::now_v7();
    incoming
        .command(app, async move |uow| {
            let pharmacy: Wallet = uow.peek(pharmacy_wallet_id).await?;
            let pharmacy = pharmacy.open().ok_or(DomainError::NotFound { kind: "wallet", id: pharmacy_wallet_id })?;
            if !caller.may_act_for(&pharmacy.owner_id) {
                return Err(DomainError::Forbidden(format!("{} does not own pharmacy wallet {pharmacy_wallet_id}", caller.sub)).into());
            }
            let patient: Wallet = uow.peek(patient_wallet_id).await?;
            let patient = patient.open().ok_or(DomainError::NotFound { kind: "wallet", id: patient_wallet_id })?;
            let card: MedCard = uow.peek(medcard_id).await?;
            let holder_id = card.issued().ok_or(DomainError::NotFound { kind: "medcard", id: medcard_id })?.terms.holder_id.clone();
            // The copayment is the card holder's to pay: never from anybody else's wallet.
            if patient.owner_id != holder_id {
                return Err(
                    DomainError::Forbidden(format!("patient wallet {patient_wallet_id} is not owned by the holder of medical card {medcard_id}")).into()
                );
            }
            let claim = PrescriptionCommand::Claim { prescription_id: prescription_id.clone(), claim_id };
            uow.handle::<Prescription>(prescription::stream_uuid(&prescription_id), &claim).await?;
            let terms = ClaimTerms {
                claim_id,
                medcard_id,
                beneficiary_id,
                prescription_id: prescription_id.clone(),
                pharmacy_wallet_id,
                patient_wallet_id,
                items: items.clone(),
                submitted_by: caller.sub.clone(),
                holder_id: Some(holder_id),
            };
            uow.handle::<Claim>(claim_id, &ClaimCommand::Submit(terms)).await?;
            Ok(Success::ok(json!({"claimId": claim_id, "status": "PENDING"})).with_status(202).with_header("location", format!("/api/v2/claims/{claim_id}")))
        })
        .await
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
    let medcard_id = parse_uuid("medcardId", &body.medcard_id)?;
    let provider_wallet_id = parse_uuid("providerWalletId", &body.provider_wallet_id)?;
    let amount = amount("amount", &body.amount)?;
    let description = text("description", &body.description, TEXT_MAX)?;
    if body.documents.len() > DOCUMENTS_MAX {
        return Err(ApiError::validation(format!("documents must hold at most {DOCUMENTS_MAX} references")));
    }
    let documents = body.documents.iter().enumerate().map(|(i, d)| text(&format!("documents[{i}]"), d, TEXT_MAX)).collect::<Result<Vec<_>, _>>()?;
    let caller = incoming.caller().clone();
    let now = app.commands.clock().now();
    let claim_id = Uuid::now_v7();
    incoming
        .command(app, async move |uow| {
            let provider: Wallet = uow.peek(provider_wallet_id).await?;
            let provider = provider.open().ok_or(DomainError::NotFound { kind: "wallet", id: provider_wallet_id })?;
            if !caller.may_act_for(&provider.owner_id) {
                return Err(DomainError::Forbidden(format!("{} does not own provider wallet {provider_wallet_id}", caller.sub)).into());
            }
            let card: MedCard = uow.peek(medcard_id).await?;
            let card = card.issued().ok_or(DomainError::NotFound { kind: "medcard", id: medcard_id })?;
            card.ensure_in_force(now)?;
            if provider.currency != card.terms.currency {
                return Err(DomainError::CurrencyMismatch {
                    wallet: provider_wallet_id,
                    wallet_currency: provider.currency.clone(),
                    command_currency: card.terms.currency.clone(),
                }
                .into());
            }
            let terms = InsuranceClaimTerms {
                claim_id,
                medcard_id,
                provider_wallet_id,
                amount,
                currency: card.terms.currency.clone(),
                description: description.clone(),
                documents: documents.clone(),
                submitted_by: caller.sub.clone(),
            };
            uow.handle::<InsuranceClaim>(claim_id, &InsuranceClaimCommand::Submit(terms)).await?;
            Ok(Success::ok(json!({"claimId": claim_id, "status": "SUBMITTED"}))
                .with_status(201)
                .with_header("location", format!("/api/v2/insurance-claims/{claim_id}")))
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct ApproveBody {
    #[serde(default)]
    amount: Option<Box<RawValue>>,
}

/// Approves (`amount` defaults to what was claimed) and settles in one commit:
/// the sponsor wallet pays the provider wallet, or nothing happens (e.g. 422
/// `INSUFFICIENT_FUNDS`, the claim stays `SUBMITTED`).
pub async fn approve_insurance(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: ApproveBody = incoming.json()?;
    let approved = body.amount.as_deref().map(|raw| amount("amount", raw)).transpose()?;
    let claim_id = incoming.path_id("claimId")?;
    let caller = incoming.caller().clone();
    incoming
        .command(app, async move |uow| {
            let (terms, sponsor_wallet_id) = insurer_claim(uow, &caller, claim_id).await?;
            let amount = approved.unwrap_or(terms.amount);
            uow.handle::<InsuranceClaim>(claim_id, &InsuranceClaimCommand::Approve { amount }).await?;
            let reference = format!("insurance-claim:{claim_id}");
            let debit = Movement {
                amount,
                transaction_type: DebitType::ClaimPayment,
                reference: reference.clone(),
                description: Some(format!("Insurance claim {claim_id}: {}", terms.description)),
                currency: Some(terms.currency.clone()),
            };
            uow.handle::<Wallet>(sponsor_wallet_id, &WalletCommand::Debit(debit)).await?;
            let credit = Movement {
                amount,
                transaction_type: CreditType::ClaimPayment,
                reference,
                description: Some(format!("Insurance claim {claim_id} paid")),
                currency: Some(terms.currency.clone()),
            };
            uow.handle::<Wallet>(terms.provider_wallet_id, &WalletCommand::Credit(credit)).await?;
            let settled = uow.handle::<InsuranceClaim>(claim_id, &InsuranceClaimCommand::Settle).await?;
            let status = settled.submitted().map_or("SETTLED", |c| c.status.as_str());
            Ok(Success::ok(json!({"claimId": claim_id, "status": status, "approvedAmount": amount.to_json_number()})))
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct RejectBody {
    reason: String,
}

pub async fn reject_insurance(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: RejectBody = incoming.json()?;
    let reason = text("reason", &body.reason, TEXT_MAX)?;
    let claim_id = incoming.path_id("claimId")?;
    let caller = incoming.caller().clone();
    incoming
        .command(app, async move |uow| {
            insurer_claim(uow, &caller, claim_id).await?;
            uow.handle::<InsuranceClaim>(claim_id, &InsuranceClaimCommand::Reject { reason: reason.clone() }).await?;
            Ok(Success::ok(json!({"claimId": claim_id, "status": "REJECTED"})))
        })
        .await
}

/// The claim's terms and its card's sponsor wallet, if the caller decides for that
/// sponsor (`admin`, or an `insurer` owning the sponsor wallet).
async fn insurer_claim(uow: &mut UnitOfWork<'_>, caller: &Caller, claim_id: Uuid) -> Result<(InsuranceClaimTerms, Uuid), Failure> {
    let claim: InsuranceClaim = uow.load(claim_id).await?;
    let terms = claim.submitted().ok_or(DomainError::NotFound { kind: "insurance claim", id: claim_id })?.terms.clone();
    let card: MedCard = uow.peek(terms.medcard_id).await?;
    let sponsor_wallet_id = card.issued().ok_or(DomainError::NotFound { kind: "medcard", id: terms.medcard_id })?.terms.sponsor_wallet_id;
    if !sponsors(uow, caller, sponsor_wallet_id).await? {
        return Err(DomainError::Forbidden(format!("{} may not decide insurance claim {claim_id}", caller.sub)).into());
    }
    Ok((terms, sponsor_wallet_id))
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
