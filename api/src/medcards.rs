//! Medical cards: issue, activate, suspend, expire, beneficiaries, monthly limit, and
//! the card and its monthly spend from the read side.
//!
//! Who may do what: `admin`, or an `insurer` who owns the card's sponsor wallet (an
//! insurer manages only the cards it pays for); the card holder may also manage
//! beneficiaries and read the card.

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::http::{amount, parse_uuid, text, Incoming, Success};
use crate::queries::{ok, owns_wallet};
use crate::App;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use shared::app::{CardIssue, CardOrder, Receipt};
use shared::ids::{BeneficiaryId, MedCardId, WalletId};
use shared::medcard::{Beneficiary, MedCard, Month};
use shared::ports::StoredResponse;
use shared::projection::medcard::CardView;
use shared::projection::read_view;
use uuid::Uuid;

const NAME_MAX: usize = 128;
const REASON_MAX: usize = 512;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
struct IssueBody {
    holder_id: String,
    sponsor_wallet_id: String,
    plan_name: String,
    coverage_percent: serde_json::Number,
    monthly_limit: Box<RawValue>,
    expires_at: String,
}

pub async fn issue(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: IssueBody = incoming.json()?;
    let holder_id = text("holderId", &body.holder_id, NAME_MAX)?;
    let sponsor_wallet_id = parse_uuid("sponsorWalletId", &body.sponsor_wallet_id)?;
    let plan_name = text("planName", &body.plan_name, NAME_MAX)?;
    let coverage_percent =
        body.coverage_percent
            .as_u64()
            .filter(|p| *p <= 100)
            .ok_or_else(|| ApiError::validation(format!("coveragePercent must be an integer from 0 to 100, got {}", body.coverage_percent)))? as u8;
    let monthly_limit = amount("monthlyLimit", &body.monthly_limit)?;
    let expires_at = timestamp("expiresAt", &body.expires_at)?;
    let issue = CardIssue { holder_id, sponsor_wallet: WalletId(sponsor_wallet_id), plan_name, coverage_percent, monthly_limit, expires_at };
    let caller = incoming.caller();
    let render = |receipt: &Receipt<MedCard>| {
        let card = receipt.state.issued().expect("just issued");
        card_body(receipt).with_status(201).with_header("location", format!("/api/v2/medcards/{}", card.terms.medcard_id))
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.issue_medcard(caller, issue, &call).await, render)
}

pub async fn activate(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    on_card(app, incoming, CardOrder::Activate).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct ReasonBody {
    reason: String,
}

pub async fn suspend(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: ReasonBody = incoming.json()?;
    on_card(app, incoming, CardOrder::Suspend { reason: text("reason", &body.reason, REASON_MAX)? }).await
}

pub async fn expire(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    on_card(app, incoming, CardOrder::Expire).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
struct BeneficiaryBody {
    beneficiary_id: String,
    name: String,
    relationship: String,
}

pub async fn add_beneficiary(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: BeneficiaryBody = incoming.json()?;
    let beneficiary = Beneficiary {
        beneficiary_id: parse_uuid("beneficiaryId", &body.beneficiary_id)?,
        name: text("name", &body.name, NAME_MAX)?,
        relationship: text("relationship", &body.relationship, NAME_MAX)?,
    };
    on_card(app, incoming, CardOrder::AddBeneficiary(beneficiary)).await
}

pub async fn remove_beneficiary(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let beneficiary_id = BeneficiaryId(incoming.path_id("beneficiaryId")?);
    on_card(app, incoming, CardOrder::RemoveBeneficiary { beneficiary_id }).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
struct LimitBody {
    monthly_limit: Box<RawValue>,
}

pub async fn change_limit(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: LimitBody = incoming.json()?;
    on_card(app, incoming, CardOrder::ChangeMonthlyLimit { monthly_limit: amount("monthlyLimit", &body.monthly_limit)? }).await
}

/// The ledger decides who may (see `shared::app::medcards`).
async fn on_card(app: &App, incoming: &Incoming, order: CardOrder) -> Result<StoredResponse, ApiError> {
    let medcard_id = MedCardId(incoming.path_id("medcardId")?);
    let caller = incoming.caller();
    let render = card_body;
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.on_medcard(caller, medcard_id, order, &call).await, render)
}

fn card_body(receipt: &Receipt<MedCard>) -> Success {
    let card = receipt.state.issued().expect("a card command's card exists");
    Success::ok(json!({"medcardId": card.terms.medcard_id, "status": card.status.as_str(), "version": receipt.version}))
}

fn timestamp(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::validation(format!("{field} must be an RFC 3339 timestamp, got {raw:?}")))
}

/// The card view, if the caller may read it: the holder, `admin`, or an insurer
/// owning the sponsor wallet.
pub(crate) async fn readable_card(app: &App, incoming: &Incoming, medcard_id: Uuid) -> Result<CardView, ApiError> {
    let card: CardView = read_view(app.read.as_ref(), medcard_id).await?.ok_or_else(|| ApiError::not_found(format!("medcard {medcard_id} was not found")))?;
    if !may_read_card(app, incoming.caller(), &card).await? {
        return Err(ApiError::forbidden(format!("{} may not read medical card {medcard_id}", incoming.caller().sub)));
    }
    Ok(card)
}

pub(crate) async fn may_read_card(app: &App, caller: &Caller, card: &CardView) -> Result<bool, ApiError> {
    if caller.is_admin() || caller.sub == card.holder_id {
        return Ok(true);
    }
    Ok(caller.has_role(Role::Insurer) && owns_wallet(app, caller, card.sponsor_wallet_id).await?)
}

fn card_json(card: &CardView) -> Value {
    json!({
        "medcardId": card.medcard_id,
        "holderId": card.holder_id,
        "sponsorWalletId": card.sponsor_wallet_id,
        "planName": card.plan_name,
        "coveragePercent": card.coverage_percent,
        "monthlyLimit": card.monthly_limit.to_json_number(),
        "currency": card.currency,
        "status": card.status,
        "suspensionReason": card.suspension_reason,
        "expiresAt": shared::clock::rfc3339(card.expires_at),
        "beneficiaries": card.beneficiaries.iter().map(|b| json!({"beneficiaryId": b.beneficiary_id, "name": b.name, "relationship": b.relationship})).collect::<Vec<_>>(),
        "version": card.version,
        "createdAt": shared::clock::rfc3339(card.created_at),
        "updatedAt": shared::clock::rfc3339(card.updated_at),
    })
}

pub async fn get(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let medcard_id = incoming.path_id("medcardId")?;
    Ok(ok(card_json(&readable_card(app, incoming, medcard_id).await?)))
}

/// `?month=YYYY-MM`, the current month (UTC) by default.
pub async fn spend(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let medcard_id = incoming.path_id("medcardId")?;
    let month = match incoming.query("month") {
        None => Month::of(app.commands.clock().now()),
        Some(raw) => Month::parse(&raw).ok_or_else(|| ApiError::validation(format!("month must be YYYY-MM, got {raw:?}")))?,
    };
    let card = readable_card(app, incoming, medcard_id).await?;
    let used = card.month(month);
    Ok(ok(json!({
        "medcardId": medcard_id,
        "month": month.to_string(),
        "spent": used.spent.to_json_number(),
        "reserved": used.reserved.to_json_number(),
        "monthlyLimit": card.monthly_limit.to_json_number(),
        "remaining": card.remaining(month).to_json_number(),
        "claimCount": used.claim_count,
        "currency": card.currency,
        "version": card.version,
    })))
}
