//! The GraphQL object types: the REST bodies' fields, under the same camelCase
//! names, read from the very JSON the REST handlers render. Each refuses a field it
//! does not know, so a field added to a REST body fails the GraphQL tests until it
//! is added here too.

use super::bridge::{scope, uuid};
use crate::routes::Route;
use async_graphql::connection::{Connection, Edge};
use async_graphql::{ComplexObject, Context, InputValueError, InputValueResult, Scalar, ScalarType, SimpleObject, Value, ID};
use serde::{Deserialize, Serialize};

/// An amount exactly as the REST bodies carry it: a JSON number in major units of
/// the currency with at most 2 decimals (`1250.5`). Never rounded: an input with
/// more decimals, not above 0 or above 1,000,000,000 is refused with
/// VALIDATION_ERROR, as REST refuses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(pub serde_json::Number);

#[Scalar(name = "Money")]
impl ScalarType for Money {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::Number(number) => Ok(Money(number)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.clone())
    }
}

/// A wallet, from the read side.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[graphql(complex)]
pub struct Wallet {
    pub wallet_id: ID,
    /// The `sub` that created it.
    pub owner_id: String,
    pub wallet_type: String,
    pub currency: String,
    pub kyc_level: String,
    pub status: String,
    /// Counts held money too: a hold moves nothing, a capture does.
    pub balance: Money,
    /// The open payment authorisations' holds.
    pub held: Money,
    /// `balance − held`: what a debit, transfer or authorisation may take.
    pub available: Money,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// The default and the largest page, as REST's `?limit=`.
pub(super) const PAGE: i32 = crate::queries::DEFAULT_PAGE as i32;

#[ComplexObject]
impl Wallet {
    /// The wallet's history, newest first. `after` is an edge's cursor.
    #[graphql(complexity = "first.unwrap_or(PAGE).max(0) as usize * child_complexity")]
    async fn transactions(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> async_graphql::Result<Connection<String, Transaction>> {
        let scope = scope(ctx);
        let id = uuid("walletId", &self.wallet_id)?.to_string();
        let history: TransactionPage = scope.call(Route::ListTransactions, &[("walletId", &id)], &page(first, after), None).await?;
        let mut connection = Connection::new(false, history.next_cursor.is_some());
        connection.edges.extend(history.items.into_iter().map(|item| Edge::new(item.version.to_string(), item)));
        Ok(connection)
    }

    /// The balance at `asOf` (RFC 3339), folded from the event store.
    async fn balance_at(&self, ctx: &Context<'_>, as_of: String) -> async_graphql::Result<Balance> {
        let id = uuid("walletId", &self.wallet_id)?.to_string();
        scope(ctx).call(Route::GetBalance, &[("walletId", &id)], &[("asOf", as_of)], None).await
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TransactionPage {
    items: Vec<Transaction>,
    next_cursor: Option<String>,
}

/// One movement of a wallet's history.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Transaction {
    pub event_id: ID,
    /// `credit` or `debit` (REST's `type`).
    #[serde(rename = "type")]
    #[graphql(name = "type")]
    pub kind: String,
    pub amount: Money,
    pub balance_after: Money,
    pub transaction_type: String,
    pub reference: String,
    pub description: Option<String>,
    pub occurred_at: String,
    /// The wallet version this movement produced.
    pub version: u64,
}

/// A wallet's balance at a time.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Balance {
    pub wallet_id: ID,
    pub balance: Money,
    pub version: u64,
    pub as_of: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Items<T> {
    pub items: Vec<T>,
}

/// A transfer, from the read side.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Transfer {
    pub transfer_id: ID,
    pub source_wallet_id: ID,
    pub destination_wallet_id: ID,
    pub amount: Money,
    pub currency: String,
    pub status: String,
    /// On a `FAILED` transfer: why the credit failed.
    pub failure_reason: Option<String>,
    /// The refund of a failed transfer that its source refused: money on no wallet.
    pub refund_in_suspense: Option<Money>,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// A card-style payment.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Payment {
    pub payment_id: ID,
    pub payer_wallet_id: ID,
    pub merchant_wallet_id: ID,
    pub amount: Money,
    pub captured_amount: Money,
    pub refunded_amount: Money,
    pub currency: String,
    pub status: String,
    pub reference: String,
    pub description: Option<String>,
    pub expires_at: String,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// A medical benefit card.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[graphql(complex)]
pub struct MedCard {
    pub medcard_id: ID,
    pub holder_id: String,
    pub sponsor_wallet_id: ID,
    pub plan_name: String,
    pub coverage_percent: u8,
    pub monthly_limit: Money,
    pub currency: String,
    pub status: String,
    pub suspension_reason: Option<String>,
    pub expires_at: String,
    pub beneficiaries: Vec<Beneficiary>,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

#[ComplexObject]
impl MedCard {
    /// This month's spend against the monthly limit.
    async fn spend(&self, ctx: &Context<'_>) -> async_graphql::Result<MedCardSpend> {
        let id = uuid("medcardId", &self.medcard_id)?.to_string();
        scope(ctx).call(Route::MedCardSpend, &[("medcardId", &id)], &[], None).await
    }

    /// The claims made on the card, newest first.
    #[graphql(complexity = "first.unwrap_or(PAGE).max(0) as usize * child_complexity")]
    async fn claims(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> async_graphql::Result<ClaimPage> {
        let id = uuid("medcardId", &self.medcard_id)?.to_string();
        scope(ctx).call(Route::MedCardClaims, &[("medcardId", &id)], &page(first, after), None).await
    }
}

/// `?limit=` and `?cursor=` of a REST list.
pub(super) fn page(first: Option<i32>, after: Option<String>) -> Vec<(&'static str, String)> {
    let mut query = vec![("limit", first.unwrap_or(PAGE).to_string())];
    query.extend(after.map(|cursor| ("cursor", cursor)));
    query
}

#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Beneficiary {
    pub beneficiary_id: ID,
    pub name: String,
    pub relationship: String,
}

/// A card's spend in the current month.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MedCardSpend {
    pub medcard_id: ID,
    pub month: String,
    pub spent: Money,
    pub reserved: Money,
    pub monthly_limit: Money,
    pub remaining: Money,
    pub claim_count: u32,
    pub currency: String,
    pub version: u64,
}

/// A prescription claim.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Claim {
    pub claim_id: ID,
    pub medcard_id: ID,
    pub beneficiary_id: ID,
    pub prescription_id: String,
    pub pharmacy_wallet_id: ID,
    pub patient_wallet_id: ID,
    pub total_amount: Money,
    pub covered_amount: Option<Money>,
    pub copayment_amount: Option<Money>,
    pub coverage_percent: Option<u8>,
    pub status: String,
    pub stage: String,
    pub rejection_reason: Option<String>,
    pub refunds_in_suspense: Vec<SuspendedRefund>,
    pub items: Vec<ClaimItem>,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuspendedRefund {
    pub refund: String,
    pub wallet_id: ID,
    pub amount: Money,
    pub reason: String,
}

#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimItem {
    pub drug_code: String,
    pub drug_name: String,
    pub quantity: u32,
    pub unit_price: Money,
}

/// A page of claims, newest first, as REST pages them.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimPage {
    pub items: Vec<Claim>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// An insurance claim.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InsuranceClaim {
    pub claim_id: ID,
    pub medcard_id: ID,
    pub provider_wallet_id: ID,
    pub amount: Money,
    pub approved_amount: Option<Money>,
    pub currency: String,
    pub description: String,
    pub documents: Vec<String>,
    pub status: String,
    pub rejection_reason: Option<String>,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// What a wallet command did.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WalletCommandResult {
    pub success: bool,
    pub command_id: ID,
    pub wallet_id: ID,
    pub version: u64,
    pub balance: Money,
    pub events: Vec<ID>,
}

/// A transfer accepted: it runs as a saga; follow it with `transfer(id)`.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferAccepted {
    pub transfer_id: ID,
    pub status: String,
}

/// What a payment command did.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentCommandResult {
    pub success: bool,
    pub command_id: ID,
    pub payment_id: ID,
    pub status: String,
    pub amount: Money,
    pub captured_amount: Money,
    pub refunded_amount: Money,
    pub currency: String,
    pub version: u64,
    pub events: Vec<ID>,
    pub expires_at: Option<String>,
    pub released_amount: Option<Money>,
    pub refund_amount: Option<Money>,
}

/// A card's id, status and version after a command.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MedCardCommandResult {
    pub medcard_id: ID,
    pub status: String,
    pub version: u64,
}

/// A prescription claim accepted: priced and paid by its saga.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimAccepted {
    pub claim_id: ID,
    pub status: String,
}

/// An insurance claim's id and status after a command.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InsuranceClaimCommandResult {
    pub claim_id: ID,
    pub status: String,
    pub approved_amount: Option<Money>,
}

/// A fraud alert the detector raised (operators only).
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FraudAlert {
    pub alert_id: ID,
    pub wallet_id: ID,
    /// velocity, high_value or new_wallet_outflow.
    pub rule: String,
    /// high (the wallet was suspended if active) or medium.
    pub severity: String,
    /// OPEN or RESOLVED.
    pub status: String,
    pub window_start: String,
    pub window_end: String,
    pub observed_count: u32,
    pub observed_amount: Money,
    pub threshold: String,
    pub trigger_event_id: ID,
    pub suspended_wallet: bool,
    /// confirmed_fraud or false_positive, once resolved.
    pub resolution: Option<String>,
    pub note: Option<String>,
    pub resolved_by: Option<String>,
    pub raised_at: String,
    pub resolved_at: Option<String>,
    pub version: u64,
}

/// A page of fraud alerts, newest first.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FraudAlertPage {
    pub items: Vec<FraudAlert>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A fraud alert after an admin resolved it.
#[derive(SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FraudAlertCommandResult {
    pub alert_id: ID,
    pub status: String,
    pub resolution: String,
}
