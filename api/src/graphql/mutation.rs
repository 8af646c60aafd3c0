//! One mutation per command, each answered by the command's REST handler with the
//! input as its JSON body (the same field names): the application layer
//! (`shared::app::Ledger`) decides who may, and the request's `Idempotency-Key`
//! stores and replays the answer as REST does. Send one mutation per request when
//! using a key: two commands under one key are IDEMPOTENCY_KEY_REUSED.

use super::bridge::{scope, uuid};
use super::types::*;
use crate::routes::Route;
use async_graphql::{Context, InputObject, Object, ID};
use serde::Serialize;
use serde_json::json;

pub struct Mutation;

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateWalletInput {
    /// personal, business or merchant.
    pub wallet_type: String,
    /// EGP if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// basic if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kyc_level: Option<String>,
    /// Funded by a `deposit` credit; 0 if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_balance: Option<Money>,
}

/// A credit or a debit.
#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MovementInput {
    pub amount: Money,
    /// Credits: deposit, refund, … ; debits: withdrawal, payment, … (as REST).
    pub transaction_type: String,
    pub reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferInput {
    pub source_wallet_id: ID,
    pub destination_wallet_id: ID,
    pub amount: Money,
    pub reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizePaymentInput {
    pub payer_wallet_id: ID,
    pub merchant_wallet_id: ID,
    pub amount: Money,
    pub reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundPaymentInput {
    /// All that is still refundable if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    pub reason: String,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueMedCardInput {
    pub holder_id: String,
    pub sponsor_wallet_id: ID,
    pub plan_name: String,
    pub coverage_percent: i32,
    pub monthly_limit: Money,
    /// RFC 3339.
    pub expires_at: String,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BeneficiaryInput {
    pub beneficiary_id: ID,
    pub name: String,
    pub relationship: String,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrescriptionClaimInput {
    pub medcard_id: ID,
    pub beneficiary_id: ID,
    pub prescription_id: String,
    pub pharmacy_wallet_id: ID,
    pub patient_wallet_id: ID,
    pub items: Vec<PrescriptionItemInput>,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrescriptionItemInput {
    pub drug_code: String,
    pub drug_name: String,
    pub quantity: i32,
    pub unit_price: Money,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InsuranceClaimInput {
    pub medcard_id: ID,
    pub provider_wallet_id: ID,
    pub amount: Money,
    pub description: String,
    #[serde(default)]
    pub documents: Vec<String>,
}

/// The JSON body of a command: the input's fields under their REST names.
fn body(input: impl Serialize) -> Option<serde_json::Value> {
    Some(serde_json::to_value(input).expect("an input object serialises"))
}

/// `{"amount": …}` or `{}`.
fn optional_amount(amount: Option<Money>) -> Option<serde_json::Value> {
    Some(amount.map_or(json!({}), |amount| json!({ "amount": amount })))
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolveFraudAlertInput {
    /// confirmed_fraud or false_positive.
    pub resolution: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

async fn on<T: serde::de::DeserializeOwned>(
    ctx: &Context<'_>,
    route: Route,
    param: &str,
    id: &ID,
    body: Option<serde_json::Value>,
) -> async_graphql::Result<T> {
    let id = uuid(param, id)?.to_string();
    scope(ctx).call(route, &[(param, &id)], &[], body).await
}

#[Object]
impl Mutation {
    /// A wallet (pending) of the caller's.
    async fn create_wallet(&self, ctx: &Context<'_>, input: CreateWalletInput) -> async_graphql::Result<WalletCommandResult> {
        scope(ctx).call(Route::CreateWallet, &[], &[], body(input)).await
    }

    /// `pending → active` by the owner; lifting a suspension is `admin` only.
    async fn activate_wallet(&self, ctx: &Context<'_>, wallet_id: ID) -> async_graphql::Result<WalletCommandResult> {
        on(ctx, Route::ActivateWallet, "walletId", &wallet_id, None).await
    }

    /// `admin` only.
    async fn suspend_wallet(&self, ctx: &Context<'_>, wallet_id: ID, reason: String) -> async_graphql::Result<WalletCommandResult> {
        on(ctx, Route::SuspendWallet, "walletId", &wallet_id, Some(json!({ "reason": reason }))).await
    }

    /// Zero balance, no open holds: the owner or `admin`.
    async fn close_wallet(&self, ctx: &Context<'_>, wallet_id: ID, reason: Option<String>) -> async_graphql::Result<WalletCommandResult> {
        let body = reason.map_or(json!({}), |reason| json!({ "reason": reason }));
        on(ctx, Route::CloseWallet, "walletId", &wallet_id, Some(body)).await
    }

    /// The owner or `admin`.
    async fn credit_wallet(&self, ctx: &Context<'_>, wallet_id: ID, input: MovementInput) -> async_graphql::Result<WalletCommandResult> {
        on(ctx, Route::CreditWallet, "walletId", &wallet_id, body(input)).await
    }

    /// The owner or `admin`.
    async fn debit_wallet(&self, ctx: &Context<'_>, wallet_id: ID, input: MovementInput) -> async_graphql::Result<WalletCommandResult> {
        on(ctx, Route::DebitWallet, "walletId", &wallet_id, body(input)).await
    }

    /// The source wallet's owner or `admin`. Runs as a saga: follow it with `transfer(id)`.
    async fn create_transfer(&self, ctx: &Context<'_>, input: TransferInput) -> async_graphql::Result<TransferAccepted> {
        scope(ctx).call(Route::CreateTransfer, &[], &[], body(input)).await
    }

    /// Holds the amount on the payer's wallet: its owner or `admin`.
    async fn authorize_payment(&self, ctx: &Context<'_>, input: AuthorizePaymentInput) -> async_graphql::Result<PaymentCommandResult> {
        scope(ctx).call(Route::AuthorizePayment, &[], &[], body(input)).await
    }

    /// The merchant wallet's owner; all of the authorisation if `amount` is absent.
    async fn capture_payment(&self, ctx: &Context<'_>, payment_id: ID, amount: Option<Money>) -> async_graphql::Result<PaymentCommandResult> {
        on(ctx, Route::CapturePayment, "paymentId", &payment_id, optional_amount(amount)).await
    }

    /// The merchant wallet's owner.
    async fn void_payment(&self, ctx: &Context<'_>, payment_id: ID) -> async_graphql::Result<PaymentCommandResult> {
        on(ctx, Route::VoidPayment, "paymentId", &payment_id, None).await
    }

    /// The merchant wallet's owner.
    async fn refund_payment(&self, ctx: &Context<'_>, payment_id: ID, input: RefundPaymentInput) -> async_graphql::Result<PaymentCommandResult> {
        on(ctx, Route::RefundPayment, "paymentId", &payment_id, body(input)).await
    }

    /// An insurer owning the sponsor wallet.
    async fn issue_medcard(&self, ctx: &Context<'_>, input: IssueMedCardInput) -> async_graphql::Result<MedCardCommandResult> {
        scope(ctx).call(Route::IssueMedCard, &[], &[], body(input)).await
    }

    /// The sponsoring insurer.
    async fn activate_medcard(&self, ctx: &Context<'_>, medcard_id: ID) -> async_graphql::Result<MedCardCommandResult> {
        on(ctx, Route::ActivateMedCard, "medcardId", &medcard_id, None).await
    }

    /// The sponsoring insurer.
    async fn suspend_medcard(&self, ctx: &Context<'_>, medcard_id: ID, reason: String) -> async_graphql::Result<MedCardCommandResult> {
        on(ctx, Route::SuspendMedCard, "medcardId", &medcard_id, Some(json!({ "reason": reason }))).await
    }

    /// The sponsoring insurer.
    async fn expire_medcard(&self, ctx: &Context<'_>, medcard_id: ID) -> async_graphql::Result<MedCardCommandResult> {
        on(ctx, Route::ExpireMedCard, "medcardId", &medcard_id, None).await
    }

    /// The sponsoring insurer or the card holder.
    async fn add_beneficiary(&self, ctx: &Context<'_>, medcard_id: ID, input: BeneficiaryInput) -> async_graphql::Result<MedCardCommandResult> {
        on(ctx, Route::AddBeneficiary, "medcardId", &medcard_id, body(input)).await
    }

    /// The sponsoring insurer or the card holder.
    async fn remove_beneficiary(&self, ctx: &Context<'_>, medcard_id: ID, beneficiary_id: ID) -> async_graphql::Result<MedCardCommandResult> {
        let (card, beneficiary) = (uuid("medcardId", &medcard_id)?.to_string(), uuid("beneficiaryId", &beneficiary_id)?.to_string());
        let params = [("medcardId", card.as_str()), ("beneficiaryId", beneficiary.as_str())];
        scope(ctx).call(Route::RemoveBeneficiary, &params, &[], None).await
    }

    /// The sponsoring insurer.
    async fn change_medcard_limit(&self, ctx: &Context<'_>, medcard_id: ID, monthly_limit: Money) -> async_graphql::Result<MedCardCommandResult> {
        on(ctx, Route::ChangeMedCardLimit, "medcardId", &medcard_id, Some(json!({ "monthlyLimit": monthly_limit }))).await
    }

    /// A pharmacy owning the pharmacy wallet. Priced and paid by its saga: follow it with `claim(id)`.
    async fn submit_prescription_claim(&self, ctx: &Context<'_>, input: PrescriptionClaimInput) -> async_graphql::Result<ClaimAccepted> {
        scope(ctx).call(Route::SubmitPrescriptionClaim, &[], &[], body(input)).await
    }

    /// The provider wallet's owner.
    async fn submit_insurance_claim(&self, ctx: &Context<'_>, input: InsuranceClaimInput) -> async_graphql::Result<InsuranceClaimCommandResult> {
        scope(ctx).call(Route::SubmitInsuranceClaim, &[], &[], body(input)).await
    }

    /// The sponsoring insurer; what was claimed if `amount` is absent.
    async fn approve_insurance_claim(&self, ctx: &Context<'_>, claim_id: ID, amount: Option<Money>) -> async_graphql::Result<InsuranceClaimCommandResult> {
        on(ctx, Route::ApproveInsuranceClaim, "claimId", &claim_id, optional_amount(amount)).await
    }

    /// The sponsoring insurer.
    async fn reject_insurance_claim(&self, ctx: &Context<'_>, claim_id: ID, reason: String) -> async_graphql::Result<InsuranceClaimCommandResult> {
        on(ctx, Route::RejectInsuranceClaim, "claimId", &claim_id, Some(json!({ "reason": reason }))).await
    }

    /// `admin` only. Resolving does not lift a suspension (`activateWallet` does).
    async fn resolve_fraud_alert(&self, ctx: &Context<'_>, alert_id: ID, input: ResolveFraudAlertInput) -> async_graphql::Result<FraudAlertCommandResult> {
        on(ctx, Route::ResolveFraudAlert, "alertId", &alert_id, body(input)).await
    }
}
