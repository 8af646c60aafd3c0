//! Payments: authorise (a hold on the payer), capture (the hold becomes a payment to
//! the merchant), void, refund, and the payment view.
//!
//! Each command changes the payment and every wallet it moves money on in one
//! commit (one `TransactWriteItems` on DynamoDB): there is never a payment captured
//! whose merchant was not credited, nor a hold without its authorisation.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{amount, optional_text, parse_uuid, text, Incoming, Success};
use crate::queries::owns_wallet;
use crate::App;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use shared::aggregate::Aggregate;
use shared::command::{Failure, UnitOfWork};
use shared::error::DomainError;
use shared::money::Money;
use shared::payment::{Payment, PaymentCommand, PaymentEvent, PaymentTerms, StartedPayment};
use shared::ports::StoredResponse;
use shared::projection::payment::PaymentView;
use shared::projection::read_view;
use shared::wallet::{CreditType, DebitType, Movement, Wallet, WalletCommand, WalletStatus};
use uuid::Uuid;

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

/// Places a hold on the payer and records the authorisation, in one commit.
///
/// The payer is loaded (its available balance decides); the merchant is only
/// peeked at (its owner and currency never change, and a hot merchant wallet must
/// not serialise its customers' authorisations): its status is checked as last
/// seen here, and strictly by the capture, whose credit needs an active wallet.
pub async fn authorize(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: AuthorizeBody = incoming.json()?;
    let payer = parse_uuid("payerWalletId", &body.payer_wallet_id)?;
    let merchant = parse_uuid("merchantWalletId", &body.merchant_wallet_id)?;
    let amount = amount("amount", &body.amount)?;
    let reference = text("reference", &body.reference, REFERENCE_MAX)?;
    let description = optional_text("description", body.description.as_deref(), DESCRIPTION_MAX)?;
    let caller = incoming.caller().clone();
    let expiry = app.payment_expiry;
    let payment_id = Uuid::now_v7();
    incoming
        .command(app, async move |uow| {
            let payer_wallet: Wallet = uow.load(payer).await?;
            let payer_open = payer_wallet.open().ok_or(DomainError::NotFound { kind: "wallet", id: payer })?;
            if !caller.may_act_for(&payer_open.owner_id) {
                return Err(DomainError::Forbidden(format!("{} may not pay from wallet {payer}", caller.sub)).into());
            }
            if payer == merchant {
                return Err(DomainError::SameWallet.into());
            }
            let merchant_wallet: Wallet = uow.peek(merchant).await?;
            let merchant_open = merchant_wallet.open().ok_or(DomainError::NotFound { kind: "wallet", id: merchant })?;
            if merchant_open.currency != payer_open.currency {
                return Err(DomainError::CurrencyMismatch {
                    wallet: merchant,
                    wallet_currency: merchant_open.currency.clone(),
                    command_currency: payer_open.currency.clone(),
                }
                .into());
            }
            if merchant_open.status != WalletStatus::Active {
                return Err(DomainError::WalletNotActive { wallet: merchant, status: merchant_open.status.as_str() }.into());
            }
            let currency = payer_open.currency.clone();
            let terms = PaymentTerms {
                payment_id,
                payer_wallet_id: payer,
                merchant_wallet_id: merchant,
                amount,
                currency: currency.clone(),
                reference: reference.clone(),
                description: description.clone(),
                expires_at: uow.now() + expiry,
                authorized_by: caller.sub.clone(),
            };
            let payment = uow.handle::<Payment>(payment_id, &PaymentCommand::Authorize(terms)).await?;
            let hold = payer_wallet.decide(&WalletCommand::PlaceHold { hold_id: payment_id, amount, currency })?;
            uow.record::<Wallet>(payer, hold);
            let mut body = command_body(uow, &payment);
            body["expiresAt"] = json!(shared::clock::rfc3339(payment.started().expect("just authorised").terms.expires_at));
            Ok(Success::ok(body).with_status(201).with_header("location", format!("/api/v2/payments/{payment_id}")))
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct CaptureBody {
    #[serde(default)]
    amount: Option<Box<RawValue>>,
}

/// Captures the hold on the payer (debit of the captured amount, the rest released)
/// and credits the merchant, in one commit.
pub async fn capture(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let payment_id = incoming.path_id("paymentId")?;
    let body: CaptureBody = incoming.json()?;
    let requested = body.amount.as_deref().map(|raw| amount("amount", raw)).transpose()?;
    let caller = incoming.caller().clone();
    incoming
        .command(app, async move |uow| {
            let (payment, started) = load_payment(uow, payment_id).await?;
            let terms = &started.terms;
            load_wallets_in_order(uow, terms).await?;
            merchant_may(&caller, uow, terms, "capture").await?;
            let events = payment.decide(&PaymentCommand::Capture { amount: requested, now: uow.now() })?;
            let Some(PaymentEvent::PaymentCaptured { amount, released }) = events.first().cloned() else { unreachable!("a capture decides PaymentCaptured") };
            let after = uow.record::<Payment>(payment_id, events);
            let capture_hold =
                WalletCommand::CaptureHold { hold_id: payment_id, amount, reference: terms.reference.clone(), description: terms.description.clone() };
            uow.handle::<Wallet>(terms.payer_wallet_id, &capture_hold).await?;
            let credit = movement(terms, amount, CreditType::PaymentReceived, terms.description.clone());
            uow.handle::<Wallet>(terms.merchant_wallet_id, &WalletCommand::Credit(credit)).await?;
            let mut body = command_body(uow, &after);
            body["releasedAmount"] = released.to_json_number();
            Ok(Success::ok(body))
        })
        .await
}

/// Cancels an authorisation and releases its hold, in one commit.
pub async fn void(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let payment_id = incoming.path_id("paymentId")?;
    let caller = incoming.caller().clone();
    incoming
        .command(app, async move |uow| {
            let (payment, started) = load_payment(uow, payment_id).await?;
            let terms = &started.terms;
            merchant_may(&caller, uow, terms, "void").await?;
            let events = payment.decide(&PaymentCommand::Void)?;
            let after = uow.record::<Payment>(payment_id, events);
            uow.handle::<Wallet>(terms.payer_wallet_id, &WalletCommand::ReleaseHold { hold_id: payment_id }).await?;
            let mut body = command_body(uow, &after);
            body["releasedAmount"] = terms.amount.to_json_number();
            Ok(Success::ok(body))
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct RefundBody {
    #[serde(default)]
    amount: Option<Box<RawValue>>,
    reason: String,
}

/// Gives captured money back: a debit of the merchant and a `refund` credit of the
/// payer, in one commit. Without an amount, all that is still refundable.
pub async fn refund(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let payment_id = incoming.path_id("paymentId")?;
    let body: RefundBody = incoming.json()?;
    let requested = body.amount.as_deref().map(|raw| amount("amount", raw)).transpose()?;
    let reason = text("reason", &body.reason, DESCRIPTION_MAX)?;
    let caller = incoming.caller().clone();
    incoming
        .command(app, async move |uow| {
            let (payment, started) = load_payment(uow, payment_id).await?;
            let terms = &started.terms;
            load_wallets_in_order(uow, terms).await?;
            merchant_may(&caller, uow, terms, "refund").await?;
            let events = payment.decide(&PaymentCommand::Refund { amount: requested, reason: reason.clone() })?;
            let Some(PaymentEvent::PaymentRefunded { amount, .. }) = events.first().cloned() else { unreachable!("a refund decides PaymentRefunded") };
            let after = uow.record::<Payment>(payment_id, events);
            let debit = movement(terms, amount, DebitType::PaymentRefund, Some(reason.clone()));
            uow.handle::<Wallet>(terms.merchant_wallet_id, &WalletCommand::Debit(debit)).await?;
            // Like a saga's compensation, a refund also reaches a suspended payer: a
            // suspension must not keep the payer's own money away.
            let credit = movement(terms, amount, CreditType::Refund, Some(reason.clone()));
            uow.handle::<Wallet>(terms.payer_wallet_id, &WalletCommand::ReturnFunds(credit)).await?;
            let mut body = command_body(uow, &after);
            body["refundAmount"] = amount.to_json_number();
            Ok(Success::ok(body))
        })
        .await
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

/// The payment, which must exist.
async fn load_payment(uow: &mut UnitOfWork<'_>, payment_id: Uuid) -> Result<(Payment, StartedPayment), Failure> {
    let payment: Payment = uow.load(payment_id).await?;
    let started = payment.started().cloned().ok_or(DomainError::NotFound { kind: "payment", id: payment_id })?;
    Ok((payment, started))
}

/// Loads both wallets of a payment in id order, so that two commands moving money
/// between the same two wallets in opposite directions queue on their per-stream
/// locks instead of each holding one and waiting for the other.
async fn load_wallets_in_order(uow: &mut UnitOfWork<'_>, terms: &PaymentTerms) -> Result<(), Failure> {
    let mut ids = [terms.payer_wallet_id, terms.merchant_wallet_id];
    ids.sort();
    for id in ids {
        let _: Wallet = uow.load(id).await?;
    }
    Ok(())
}

/// Capture, void and refund are the merchant's (its wallet's owner) or an admin's.
async fn merchant_may(caller: &Caller, uow: &UnitOfWork<'_>, terms: &PaymentTerms, action: &str) -> Result<(), Failure> {
    if caller.is_admin() {
        return Ok(());
    }
    let merchant: Wallet = uow.peek(terms.merchant_wallet_id).await?;
    if merchant.open().is_some_and(|w| w.owner_id == caller.sub) {
        return Ok(());
    }
    Err(DomainError::Forbidden(format!("{} may not {action} payment {}", caller.sub, terms.payment_id)).into())
}

/// A payment command's success body, in the shape of the wallet commands'.
/// A movement of the payment's money, under its reference and in its currency.
fn movement<T>(terms: &PaymentTerms, amount: Money, transaction_type: T, description: Option<String>) -> Movement<T> {
    Movement { amount, transaction_type, reference: terms.reference.clone(), description, currency: Some(terms.currency.clone()) }
}

fn command_body(uow: &UnitOfWork, payment: &Payment) -> Value {
    let p = payment.started().expect("a command's payment exists");
    json!({
        "success": true,
        "commandId": uow.context().command_id,
        "paymentId": p.terms.payment_id,
        "status": p.status.as_str(),
        "amount": p.terms.amount.to_json_number(),
        "capturedAmount": p.captured.to_json_number(),
        "refundedAmount": p.refunded.to_json_number(),
        "currency": p.terms.currency,
        "version": uow.version::<Payment>(p.terms.payment_id),
        "events": uow.event_ids(),
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
    use shared::ports::EventFeed;

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
        let app = App { commands, read: read.clone(), metrics: Arc::new(NoMetrics), health: Arc::new(NoHealth), payment_expiry: chrono::Duration::hours(1) };
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
