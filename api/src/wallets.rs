//! Wallet commands: create, activate, suspend, close, credit, debit.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{amount, one_of, optional_text, text, Incoming, Success};
use crate::App;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use shared::aggregate::Aggregate;
use shared::command::{Failure, UnitOfWork};
use shared::error::DomainError;
use shared::money::{Currency, Money, MAX_AMOUNT};
use shared::ports::StoredResponse;
use shared::wallet::*;
use uuid::Uuid;

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
    let wallet_id = Uuid::now_v7();
    let create = WalletCommand::Create { wallet_id, owner_id: incoming.caller().sub.clone(), wallet_type, currency, kyc_level, initial_balance };
    incoming
        .command(app, async move |uow| {
            let wallet = uow.handle::<Wallet>(wallet_id, &create).await?;
            Ok(Success::ok(command_body(uow, wallet_id, &wallet)).with_status(201))
        })
        .await
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

/// Load the wallet, check the caller may do this, decide, record.
async fn on_wallet(app: &App, incoming: &Incoming, command: WalletCommand) -> Result<StoredResponse, ApiError> {
    let wallet_id = incoming.path_id("walletId")?;
    let caller = incoming.caller().clone();
    incoming
        .command(app, async move |uow| {
            let wallet: Wallet = uow.load(wallet_id).await?;
            let open = wallet.open().ok_or(DomainError::NotFound { kind: "wallet", id: wallet_id })?;
            authorize(&caller, open, &command)?;
            let events = wallet.decide(&command)?;
            let after = uow.record::<Wallet>(wallet_id, events);
            Ok(Success::ok(command_body(uow, wallet_id, &after)))
        })
        .await
}

/// The contract's ownership rules for wallet commands.
///
/// Reactivating a *suspended* wallet is `admin` only, like suspending it: otherwise
/// an owner could lift a suspension the moment it was imposed.
pub fn authorize(caller: &Caller, wallet: &OpenWallet, command: &WalletCommand) -> Result<(), Failure> {
    let allowed = match command {
        WalletCommand::Suspend { .. } => caller.is_admin(),
        WalletCommand::Activate if wallet.status == WalletStatus::Suspended => caller.is_admin(),
        _ => caller.may_act_for(&wallet.owner_id),
    };
    if allowed {
        Ok(())
    } else {
        Err(DomainError::Forbidden(format!("{} may not do this to wallet {}", caller.sub, wallet.id)).into())
    }
}

fn command_body(uow: &UnitOfWork, wallet_id: Uuid, wallet: &Wallet) -> serde_json::Value {
    json!({
        "success": true,
        "commandId": uow.context().command_id,
        "walletId": wallet_id,
        "version": uow.version::<Wallet>(wallet_id),
        "balance": wallet.open().map_or(Money::ZERO, |w| w.balance).to_json_number(),
        "events": uow.event_ids(),
    })
}
