//! Medical cards: issue, activate, suspend, expire, beneficiaries, monthly limit, and
//! the card and its monthly spend from the read side.
//!
//! Who may do what: `admin`, or an `insurer` who owns the card's sponsor wallet (an
//! insurer manages only the cards it pays for); the card holder may also manage
//! beneficiaries and read the card.

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::http::{amount, parse_uuid, text, whole_number, Incoming, Success};
use crate::queries::{ok, owns_wallet};
use crate::schema::{Amount, MedCardStatus, RequestAmount, Timestamp};
use crate::App;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shared::app::{CardIssue, CardOrder, Receipt};
use shared::ids::{BeneficiaryId, MedCardId, WalletId};
use shared::medcard::{Beneficiary, MedCard, Month};
use shared::ports::StoredResponse;
use shared::projection::medcard::CardView;
use shared::projection::read_view;
use utoipa::ToSchema;
use uuid::Uuid;

const NAME_MAX: usize = 128;
const REASON_MAX: usize = 512;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct IssueMedCardBody {
    /// The card holder's user id (a token's `sub`).
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    holder_id: String,
    /// A wallet of the insurer that issues the card: it pays the covered share.
    #[schema(format = Uuid)]
    sponsor_wallet_id: String,
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    plan_name: String,
    #[schema(value_type = u8, minimum = 0, maximum = 100)]
    coverage_percent: Box<RawValue>,
    #[schema(value_type = RequestAmount)]
    monthly_limit: Box<RawValue>,
    #[schema(format = DateTime)]
    expires_at: String,
}

pub async fn issue(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: IssueMedCardBody = incoming.json()?;
    let holder_id = text("holderId", &body.holder_id, NAME_MAX)?;
    let sponsor_wallet_id = parse_uuid("sponsorWalletId", &body.sponsor_wallet_id)?;
    let plan_name = text("planName", &body.plan_name, NAME_MAX)?;
    let coverage_percent = whole_number(&body.coverage_percent, 0, 100)
        .ok_or_else(|| ApiError::validation(format!("coveragePercent must be an integer from 0 to 100, got {}", body.coverage_percent.get())))?
        as u8;
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct SuspendMedCardBody {
    #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
    reason: String,
}

pub async fn suspend(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: SuspendMedCardBody = incoming.json()?;
    on_card(app, incoming, CardOrder::Suspend { reason: text("reason", &body.reason, REASON_MAX)? }).await
}

pub async fn expire(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    on_card(app, incoming, CardOrder::Expire).await
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct BeneficiaryBody {
    #[schema(format = Uuid)]
    beneficiary_id: String,
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    name: String,
    /// `self`, `spouse`, `child`, … as the sponsor records it.
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
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

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct MedCardLimitBody {
    #[schema(value_type = RequestAmount)]
    monthly_limit: Box<RawValue>,
}

pub async fn change_limit(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: MedCardLimitBody = incoming.json()?;
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

/// What a card command did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MedCardCommandReply {
    medcard_id: Uuid,
    #[schema(value_type = MedCardStatus)]
    status: &'static str,
    version: u64,
}

fn card_body(receipt: &Receipt<MedCard>) -> Success {
    let card = receipt.state.issued().expect("a card command's card exists");
    Success::ok(MedCardCommandReply { medcard_id: card.terms.medcard_id, status: card.status.as_str(), version: receipt.version })
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

/// A medical card, from the read side.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MedCardReply {
    medcard_id: Uuid,
    holder_id: String,
    sponsor_wallet_id: Uuid,
    plan_name: String,
    #[schema(minimum = 0, maximum = 100)]
    coverage_percent: u8,
    monthly_limit: Amount,
    currency: String,
    #[schema(value_type = MedCardStatus)]
    status: String,
    /// Why it is suspended; `null` unless it is.
    suspension_reason: Option<String>,
    expires_at: Timestamp,
    /// In the order they were added.
    beneficiaries: Vec<BeneficiaryReply>,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BeneficiaryReply {
    beneficiary_id: Uuid,
    name: String,
    relationship: String,
}

impl MedCardReply {
    fn of(card: &CardView) -> Self {
        MedCardReply {
            medcard_id: card.medcard_id,
            holder_id: card.holder_id.clone(),
            sponsor_wallet_id: card.sponsor_wallet_id,
            plan_name: card.plan_name.clone(),
            coverage_percent: card.coverage_percent,
            monthly_limit: card.monthly_limit.into(),
            currency: card.currency.clone(),
            status: card.status.clone(),
            suspension_reason: card.suspension_reason.clone(),
            expires_at: card.expires_at.into(),
            beneficiaries: card
                .beneficiaries
                .iter()
                .map(|b| BeneficiaryReply { beneficiary_id: b.beneficiary_id, name: b.name.clone(), relationship: b.relationship.clone() })
                .collect(),
            version: card.version,
            created_at: card.created_at.into(),
            updated_at: card.updated_at.into(),
        }
    }
}

pub async fn get(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let medcard_id = incoming.path_id("medcardId")?;
    Ok(ok(MedCardReply::of(&readable_card(app, incoming, medcard_id).await?)))
}

/// A card's use of one month's limit.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MedCardSpendReply {
    medcard_id: Uuid,
    /// `YYYY-MM`.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}$", examples("2026-11"))]
    month: String,
    /// Paid claims' covered amounts.
    spent: Amount,
    /// Claims under way.
    reserved: Amount,
    monthly_limit: Amount,
    /// What is left of the limit; never below 0.
    remaining: Amount,
    /// Paid claims.
    claim_count: u32,
    currency: String,
    version: u64,
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
    Ok(ok(MedCardSpendReply {
        medcard_id,
        month: month.to_string(),
        spent: used.spent.into(),
        reserved: used.reserved.into(),
        monthly_limit: card.monthly_limit.into(),
        remaining: card.remaining(month).into(),
        claim_count: used.claim_count,
        currency: card.currency.clone(),
        version: card.version,
    }))
}
