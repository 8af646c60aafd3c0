//! Payments: authorise (a hold on the payer), capture (the hold becomes a payment to
//! the merchant), void, refund, and the payment view.
//!
//! Each command changes the payment and every wallet it moves money on in one
//! commit (one `TransactWriteItems` on DynamoDB): there is never a payment captured
//! whose merchant was not credited, nor a hold without its authorisation.

use crate::error::ApiError;
use crate::http::{amount, optional_text, parse_uuid, text, Incoming, Success};
use crate::queries::owns_wallet;
use crate::App;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use shared::app::{Authorization, Capture, Receipt, Refund};
use shared::ids::{PaymentId, WalletId};
use shared::payment::Payment;
use shared::ports::StoredResponse;
use shared::projection::payment::PaymentView;
use shared::projection::read_view;

const REFERENCE_MAX: usize = 128;
const DESCRIPTION_MAX: usize = 512;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
struct AuthorizeBody {
    payer_wallet_id: String,
    merchant_wallet_id: String,
    amount: Box<RawValue>,
    reference: String,
    #[serde(default)]
    description: Option<String>,
}

/// Places a hold on the payer and records the authorisation (`shared::app::payments`).
pub async fn authorize(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: AuthorizeBody = incoming.json()?;
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
        body["expiresAt"] = json!(shared::clock::rfc3339(payment.terms.expires_at));
        Success::ok(body).with_status(201).with_header("location", format!("/api/v2/payments/{}", payment.terms.payment_id))
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.authorize_payment(caller, order, &call).await, render)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct CaptureBody {
    #[serde(default)]
    amount: Option<Box<RawValue>>,
}

/// Captures the hold on the payer and credits the merchant, in one commit.
pub async fn capture(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let payment_id = PaymentId(incoming.path_id("paymentId")?);
    let body: CaptureBody = incoming.json()?;
    let requested = body.amount.as_deref().map(|raw| amount("amount", raw)).transpose()?;
    let caller = incoming.caller();
    let render = |capture: &Capture| {
        let mut body = command_body(&capture.receipt);
        body["releasedAmount"] = capture.released.to_json_number();
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
        body["releasedAmount"] = receipt.state.started().expect("a voided payment exists").terms.amount.to_json_number();
        Success::ok(body)
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.void_payment(caller, payment_id, &call).await, render)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct RefundBody {
    #[serde(default)]
    amount: Option<Box<RawValue>>,
    reason: String,
}

/// Gives captured money back to the payer. Without an amount, all that is still refundable.
pub async fn refund(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let payment_id = PaymentId(incoming.path_id("paymentId")?);
    let body: RefundBody = incoming.json()?;
    let requested = body.amount.as_deref().map(|raw| amount("amount", raw)).transpose()?;
    let reason = text("reason", &body.reason, DESCRIPTION_MAX)?;
    let caller = incoming.caller();
    let render = |refund: &Refund| {
        let mut body = command_body(&refund.receipt);
        body["refundAmount"] = refund.refunded.to_json_number();
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
    Ok(StoredResponse { status: 200, body: view_json(&view).to_string(), headers: vec![] })
}

pub fn view_json(view: &PaymentView) -> Value {
    let mut body = json!({
        "paymentId": view.payment_id,
        "payerWalletId": view.payer_wallet_id,
        "merchantWalletId": view.merchant_wallet_id,
        "amount": view.amount.to_json_number(),
        "capturedAmount": view.captured_amount.to_json_number(),
        "refundedAmount": view.refunded_amount.to_json_number(),
        "currency": view.currency,
        "status": view.status,
        "reference": view.reference,
        "expiresAt": shared::clock::rfc3339(view.expires_at),
        "version": view.version,
        "createdAt": shared::clock::rfc3339(view.created_at),
        "updatedAt": shared::clock::rfc3339(view.updated_at),
    });
    if let Some(description) = &view.description {
        body["description"] = json!(description);
    }
    body
}

/// A payment command's success body, in the shape of the wallet commands'.
fn command_body(receipt: &Receipt<Payment>) -> Value {
    let p = receipt.state.started().expect("a command's payment exists");
    json!({
        "success": true,
        "commandId": receipt.command_id,
        "paymentId": p.terms.payment_id,
        "status": p.status.as_str(),
        "amount": p.terms.amount.to_json_number(),
        "capturedAmount": p.captured.to_json_number(),
        "refundedAmount": p.refunded.to_json_number(),
        "currency": p.terms.currency,
        "version": receipt.version,
        "events": receipt.event_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{with_caller, Caller};
    use crate::{handle, NoMetrics, Route};
    use lambda_http::RequestExt;
    use shared::clock::ManualClock;
    use shared::command::{CommandContext, CommandService};
    use shared::memory::{MemoryEventStore, MemoryReadStore};
    use shared::money::Money;
    use shared::ports::EventFeed;
    use shared::wallet::{Wallet, WalletCommand};
    use uuid::Uuid;

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
        let app = App::new(commands, read.clone(), Arc::new(NoMetrics), Arc::new(NoHealth), chrono::Duration::hours(1));
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
