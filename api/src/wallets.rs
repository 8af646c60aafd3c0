//! Wallet commands: create, activate, suspend, close, credit, debit.

use crate::error::ApiError;
use crate::http::{amount, one_of, optional_text, text, Incoming, Success};
use crate::App;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use shared::app::{Receipt, WalletOpening};
use shared::ids::WalletId;
use shared::money::{Currency, Money, MAX_AMOUNT};
use shared::ports::StoredResponse;
use shared::wallet::*;

const REFERENCE_MAX: usize = 128;
const DESCRIPTION_MAX: usize = 512;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
struct CreateBody {
    wallet_type: String,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    kyc_level: Option<String>,
    #[serde(default)]
    initial_balance: Option<Box<RawValue>>,
}

pub async fn create(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: CreateBody = incoming.json()?;
    let wallet_type: WalletType = one_of("walletType", &body.wallet_type, "personal, business, merchant")?;
    let currency = match body.currency.as_deref() {
        None => Currency::egp(),
        Some(code) => Currency::parse(code)
            .ok_or_else(|| ApiError::validation(format!("currency must be an ISO 4217 code counted in hundredths, such as EGP or USD, got {code:?}")))?,
    };
    let kyc_level: KycLevel = one_of("kycLevel", body.kyc_level.as_deref().unwrap_or("basic"), "basic, standard, full")?;
    let initial_balance = match &body.initial_balance {
        None => Money::ZERO,
        Some(raw) => {
            // Unlike a movement, an opening balance may be zero.
            let money = Money::parse_decimal(raw.get()).map_err(|e| ApiError::validation(format!("initialBalance: {e}")))?;
            if money < Money::ZERO || money > MAX_AMOUNT {
                return Err(ApiError::validation("initialBalance must be between 0 and 1000000000"));
            }
            money
        }
    };
    let caller = incoming.caller();
    let opening = WalletOpening { wallet_type, currency, kyc_level, initial_balance };
    let render = |r: &Receipt<Wallet>| wallet_body(r).with_status(201);
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.create_wallet(caller, opening, &call).await, render)
}

pub async fn activate(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    on_wallet(app, incoming, WalletCommand::Activate).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct SuspendBody {
    reason: String,
}

pub async fn suspend(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: SuspendBody = incoming.json()?;
    on_wallet(app, incoming, WalletCommand::Suspend { reason: text("reason", &body.reason, DESCRIPTION_MAX)? }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
struct CloseBody {
    #[serde(default)]
    reason: Option<String>,
}

pub async fn close(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: CloseBody = incoming.json()?;
    on_wallet(app, incoming, WalletCommand::Close { reason: optional_text("reason", body.reason.as_deref(), DESCRIPTION_MAX)? }).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
struct MovementBody {
    amount: Box<RawValue>,
    transaction_type: String,
    reference: String,
    #[serde(default)]
    description: Option<String>,
}

impl MovementBody {
    fn movement<T: serde::de::DeserializeOwned>(&self, allowed: &str) -> Result<Movement<T>, ApiError> {
        Ok(Movement {
            amount: amount("amount", &self.amount)?,
            transaction_type: one_of("transactionType", &self.transaction_type, allowed)?,
            reference: text("reference", &self.reference, REFERENCE_MAX)?,
            description: optional_text("description", self.description.as_deref(), DESCRIPTION_MAX)?,
            currency: None,
        })
    }
}

pub async fn credit(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: MovementBody = incoming.json()?;
    on_wallet(app, incoming, WalletCommand::Credit(body.movement("deposit, refund, transfer_in, cashback")?)).await
}

pub async fn debit(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: MovementBody = incoming.json()?;
    on_wallet(app, incoming, WalletCommand::Debit(body.movement("payment, withdrawal, transfer_out, fee")?)).await
}

/// The ledger decides who may (see `shared::app::wallets`).
async fn on_wallet(app: &App, incoming: &Incoming, command: WalletCommand) -> Result<StoredResponse, ApiError> {
    let wallet_id = WalletId(incoming.path_id("walletId")?);
    let caller = incoming.caller();
    let render = wallet_body;
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.on_wallet(caller, wallet_id, command, &call).await, render)
}

fn wallet_body(receipt: &Receipt<Wallet>) -> Success {
    let wallet = receipt.state.open().expect("a wallet command's wallet exists");
    Success::ok(json!({
        "success": true,
        "commandId": receipt.command_id,
        "walletId": wallet.id,
        "version": receipt.version,
        "balance": wallet.balance.to_json_number(),
        "events": receipt.event_ids,
    }))
}
