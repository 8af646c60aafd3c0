//! Payments: authorise (a hold on the payer), capture (the hold becomes a payment to
//! the merchant), void, refund, and the payment view.
//!
//! Each command changes the payment and every wallet it moves money on in one
//! commit (one `TransactWriteItems` on DynamoDB): there is never a payment captured
//! whose merchant was not credited, nor a hold without its authorisation.

use crate::error::ApiError;
use crate::http::{amount, optional_text, parse_uuid, text, Incoming, Success};
use crate::queries::owns_wallet;
use crate::schema::{Amount, PaymentStatus, RequestAmount, Timestamp};
use crate::App;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shared::app::{Authorization, Capture, Receipt, Refund};
use shared::ids::{PaymentId, WalletId};
use shared::payment::Payment;
use shared::ports::StoredResponse;
use shared::projection::payment::PaymentView;
use shared::projection::read_view;
use utoipa::ToSchema;
use uuid::Uuid;

const REFERENCE_MAX: usize = 128;
const DESCRIPTION_MAX: usize = 512;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct AuthorizePaymentBody {
    #[schema(format = Uuid)]
    payer_wallet_id: String,
    #[schema(format = Uuid)]
    merchant_wallet_id: String,
    #[schema(value_type = RequestAmount)]
    amount: Box<RawValue>,
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    reference: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
    description: Option<String>,
}

/// Places a hold on the payer and records the authorisation (`shared::app::payments`).
pub async fn authorize(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: AuthorizePaymentBody = incoming.json()?;
    let order = Authorization {
        payer: WalletId(parse_uuid("payerWalletId", &body.payer_wallet_id)?),
        merchant: WalletId(parse_uuid("merchantWalletId", &body.merchant_wallet_id)?),
        amount: amount("amount", &body.amount)?,
        reference: text("reference", &body.reference, REFERENCE_MAX)?,
        description: optional_text("description", body.description.as_deref(), DESCRIPTION_MAX)?,
    };
    let caller = incoming.caller();
    let render = |receipt: &Receipt<Payment>| {
        let payment = receipt.state.started().expect("just authorised");
        let mut body = command_body(receipt);
        body.expires_at = Some(payment.terms.expires_at.into());
        Success::ok(body).with_status(201).with_header("location", format!("/api/v2/payments/{}", payment.terms.payment_id))
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.authorize_payment(caller, order, &call).await, render)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct CapturePaymentBody {
    /// All of the authorisation if absent; a partial capture releases the rest.
    #[serde(default)]
    #[schema(value_type = Option<RequestAmount>)]
    amount: Option<Box<RawValue>>,
}

/// Captures the hold on the payer and credits the merchant, in one commit.
pub async fn capture(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let payment_id = PaymentId(incoming.path_id("paymentId")?);
    let body: CapturePaymentBody = incoming.json()?;
    let requested = body.amount.as_deref().map(|raw| amount("amount", raw)).transpose()?;
    let caller = incoming.caller();
    let render = |capture: &Capture| {
        let mut body = command_body(&capture.receipt);
        body.released_amount = Some(capture.released.into());
        Success::ok(body)
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.capture_payment(caller, payment_id, requested, &call).await, render)
}

/// Cancels an authorisation and releases its hold, in one commit.
pub async fn void(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let payment_id = PaymentId(incoming.path_id("paymentId")?);
    let caller = incoming.caller();
    let render = |receipt: &Receipt<Payment>| {
        let mut body = command_body(receipt);
        body.released_amount = Some(receipt.state.started().expect("a voided payment exists").terms.amount.into());
        Success::ok(body)
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.void_payment(caller, payment_id, &call).await, render)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct RefundPaymentBody {
    /// All that is still refundable if absent.
    #[serde(default)]
    #[schema(value_type = Option<RequestAmount>)]
    amount: Option<Box<RawValue>>,
    #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
    reason: String,
}

/// Gives captured money back to the payer. Without an amount, all that is still refundable.
pub async fn refund(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let payment_id = PaymentId(incoming.path_id("paymentId")?);
    let body: RefundPaymentBody = incoming.json()?;
    let requested = body.amount.as_deref().map(|raw| amount("amount", raw)).transpose()?;
    let reason = text("reason", &body.reason, DESCRIPTION_MAX)?;
    let caller = incoming.caller();
    let render = |refund: &Refund| {
        let mut body = command_body(&refund.receipt);
        body.refund_amount = Some(refund.refunded.into());
        Success::ok(body)
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.refund_payment(caller, payment_id, requested, reason, &call).await, render)
}

/// Readable by the payer wallet's owner, the merchant wallet's owner and admins.
pub async fn get(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let payment_id = incoming.path_id("paymentId")?;
    let view: PaymentView =
        read_view(app.read.as_ref(), payment_id).await?.ok_or_else(|| ApiError::not_found(format!("payment {payment_id} was not found")))?;
    let caller = incoming.caller();
    let allowed = caller.is_admin() || owns_wallet(app, caller, view.payer_wallet_id).await? || owns_wallet(app, caller, view.merchant_wallet_id).await?;
    if !allowed {
        return Err(ApiError::forbidden(format!("{} may not read payment {payment_id}", caller.sub)));
    }
    Ok(crate::queries::ok(PaymentReply::of(&view)))
}

/// A payment, from the read side.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentReply {
    payment_id: Uuid,
    payer_wallet_id: Uuid,
    merchant_wallet_id: Uuid,
    /// The authorised amount.
    amount: Amount,
    captured_amount: Amount,
    refunded_amount: Amount,
    currency: String,
    #[schema(value_type = PaymentStatus)]
    status: String,
    reference: String,
    /// Present when the authorisation had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// From then on the authorisation can only be voided or expired.
    expires_at: Timestamp,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl PaymentReply {
    pub fn of(view: &PaymentView) -> Self {
        PaymentReply {
            payment_id: view.payment_id,
            payer_wallet_id: view.payer_wallet_id,
            merchant_wallet_id: view.merchant_wallet_id,
            amount: view.amount.into(),
            captured_amount: view.captured_amount.into(),
            refunded_amount: view.refunded_amount.into(),
            currency: view.currency.clone(),
            status: view.status.clone(),
            reference: view.reference.clone(),
            description: view.description.clone(),
            expires_at: view.expires_at.into(),
            version: view.version,
            created_at: view.created_at.into(),
            updated_at: view.updated_at.into(),
        }
    }
}

/// What a payment command did, in the shape of the wallet commands' answers.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCommandReply {
    success: bool,
    command_id: Uuid,
    payment_id: Uuid,
    #[schema(value_type = PaymentStatus)]
    status: &'static str,
    amount: Amount,
    captured_amount: Amount,
    /// The total refunded so far.
    refunded_amount: Amount,
    #[schema(value_type = String)]
    currency: shared::money::Currency,
    version: u64,
    events: Vec<Uuid>,
    /// Authorisation only: when it expires unless captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Timestamp>,
    /// Capture and void only: what went back to the payer's available balance.
    #[serde(skip_serializing_if = "Option::is_none")]
    released_amount: Option<Amount>,
    /// Refund only: this refund.
    #[serde(skip_serializing_if = "Option::is_none")]
    refund_amount: Option<Amount>,
}

/// A payment command's success body, in the shape of the wallet commands'.
fn command_body(receipt: &Receipt<Payment>) -> PaymentCommandReply {
    let p = receipt.state.started().expect("a command's payment exists");
    PaymentCommandReply {
        success: true,
        command_id: receipt.command_id,
        payment_id: p.terms.payment_id,
        status: p.status.as_str(),
        amount: p.terms.amount.into(),
        captured_amount: p.captured.into(),
        refunded_amount: p.refunded.into(),
        currency: p.terms.currency.clone(),
        version: receipt.version,
        events: receipt.event_ids.clone(),
        expires_at: None,
        released_amount: None,
        refund_amount: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{with_caller, Caller};
    use crate::{handle, NoMetrics, Route};
    use lambda_http::RequestExt;
    use serde_json::{json, Value};
    use shared::clock::ManualClock;
    use shared::command::{CommandContext, CommandService};
    use shared::memory::{MemoryEventStore, MemoryReadStore};
    use shared::money::Money;
    use shared::ports::EventFeed;
    use shared::wallet::{Wallet, WalletCommand};

    use std::collections::HashMap;
    use std::sync::Arc;

    struct NoHealth;
    #[async_trait::async_trait]
    impl crate::HealthCheck for NoHealth {
        async fn components(&self) -> Vec<(String, bool, Value)> {
            vec![]
        }
    }

    struct World {
        app: App,
        events: Arc<MemoryEventStore>,
        read: Arc<MemoryReadStore>,
        clock: Arc<ManualClock>,
        payer: Uuid,
        merchant: Uuid,
    }

    async fn world() -> World {
        let events = Arc::new(MemoryEventStore::default());
        let read = Arc::new(MemoryReadStore::default());
        let clock = Arc::new(ManualClock::at(chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap().to_utc()));
        let commands = Arc::new(CommandService::new(events.clone(), clock.clone()));
        let (payer, merchant) = (Uuid::now_v7(), Uuid::now_v7());
        for (id, owner, funds) in [(payer, "alice", 100_000), (merchant, "shop", 0)] {
            let create = WalletCommand::open_personal(id, owner, Money::from_minor(funds));
            for command in [create, WalletCommand::Activate] {
                commands.execute(&CommandContext::new(owner, "seed"), async |uow| uow.handle::<Wallet>(id, &command).await).await.unwrap();
            }
        }
        let app = App::new(commands, read.clone(), Arc::new(NoMetrics), Arc::new(NoHealth), Arc::new(shared::ports::NoRateLimits), chrono::Duration::hours(1));
        World { app, events, read, clock, payer, merchant }
    }

    impl World {
        async fn call(&self, route: Route, caller: &str, params: &[(&str, String)], body: Value) -> (u16, Value) {
            let mut request = lambda_http::Request::new(lambda_http::Body::Text(body.to_string()));
            *request.method_mut() = route.method().parse().unwrap();
            let params: HashMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            let request = with_caller(request.with_path_parameters(params), &Caller::new(caller, [""; 0]).unwrap());
            let response = handle(&self.app, route, request).await;
            (response.status().as_u16(), serde_json::from_slice(response.body().as_ref()).unwrap())
        }

        async fn authorize(&self, amount: i64) -> Uuid {
            let body = json!({"payerWalletId": self.payer, "merchantWalletId": self.merchant, "amount": amount, "reference": "ORDER-1"});
            let (status, body) = self.call(Route::AuthorizePayment, "alice", &[], body).await;
            assert_eq!(status, 201, "{body}");
            body["paymentId"].as_str().unwrap().parse().unwrap()
        }

        async fn project(&self) {
            for (_, envelope) in self.events.read_after(0, 10_000).await.unwrap() {
                shared::projection::project(self.read.as_ref(), &envelope).await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_capture_at_or_after_the_expiry_is_refused_before_any_sweep_but_a_void_still_releases() {
        let world = world().await;
        let payment = world.authorize(300).await;
        world.clock.advance(chrono::Duration::hours(1));
        let (status, body) = world.call(Route::CapturePayment, "shop", &[("paymentId", payment.to_string())], json!({})).await;
        assert_eq!((status, body["error"].as_str()), (422, Some("INVALID_STATE_TRANSITION")), "{body}");
        assert!(body["message"].as_str().unwrap().ends_with("while it is expired"), "{body}");
        let (status, body) = world.call(Route::VoidPayment, "shop", &[("paymentId", payment.to_string())], Value::Null).await;
        assert_eq!((status, body["status"].as_str(), body["releasedAmount"].clone()), (200, Some("VOIDED"), json!(300)), "{body}");
    }

    #[tokio::test]
    async fn the_payment_view_answers_the_contract_fields_and_the_wallet_its_hold() {
        let world = world().await;
        let payment = world.authorize(250).await;
        world.project().await;
        let (status, body) = world.call(Route::GetPayment, "shop", &[("paymentId", payment.to_string())], Value::Null).await;
        assert_eq!(status, 200, "{body}");
        for field in ["paymentId", "payerWalletId", "merchantWalletId", "amount", "capturedAmount", "refundedAmount", "status", "createdAt", "updatedAt"] {
            assert!(!body[field].is_null(), "{field} missing in {body}");
        }
        assert_eq!(body["expiresAt"], "2026-11-21T11:00:00.000Z", "the configured expiry");
        let (status, wallet) = world.call(Route::GetWallet, "alice", &[("walletId", world.payer.to_string())], Value::Null).await;
        assert_eq!((status, wallet["balance"].clone(), wallet["held"].clone(), wallet["available"].clone()), (200, json!(1000), json!(250), json!(750)));
    }

    #[tokio::test]
    async fn a_merchant_suspended_after_the_authorisation_cannot_be_credited_so_the_capture_is_refused_whole() {
        let world = world().await;
        let payment = world.authorize(100).await;
        let suspend = WalletCommand::Suspend { reason: "review".into() };
        let merchant = world.merchant;
        world.app.commands.execute(&CommandContext::new("root", "t"), async |uow| uow.handle::<Wallet>(merchant, &suspend).await).await.unwrap();
        let (status, body) = world.call(Route::CapturePayment, "shop", &[("paymentId", payment.to_string())], json!({"amount": 60})).await;
        assert_eq!((status, body["error"].as_str()), (422, Some("WALLET_NOT_ACTIVE")), "{body}");
        world.project().await;
        let (_, wallet) = world.call(Route::GetWallet, "alice", &[("walletId", world.payer.to_string())], Value::Null).await;
        assert_eq!((wallet["balance"].clone(), wallet["held"].clone()), (json!(1000), json!(100)), "nothing of the capture happened");
    }
}
