//! Wallet commands: create, activate, suspend, close, credit, debit.

use crate::error::ApiError;
use crate::http::{amount, one_of, optional_text, text, Incoming, Success};
use crate::schema::{Amount, CreditType, CurrencyCode, DebitType, KycLevel as KycLevelName, OpeningBalance, RequestAmount, WalletType as WalletTypeName};
use crate::App;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shared::app::{Receipt, WalletOpening};
use shared::ids::WalletId;
use shared::money::{Currency, Money, MAX_AMOUNT};
use shared::ports::StoredResponse;
use shared::wallet::*;
use utoipa::ToSchema;
use uuid::Uuid;

const REFERENCE_MAX: usize = 128;
const DESCRIPTION_MAX: usize = 512;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct CreateWalletBody {
    #[schema(value_type = WalletTypeName)]
    wallet_type: String,
    /// EGP if absent.
    #[serde(default)]
    #[schema(value_type = CurrencyCode)]
    currency: Option<String>,
    /// `basic` if absent.
    #[serde(default)]
    #[schema(value_type = KycLevelName)]
    kyc_level: Option<String>,
    /// Funded by a `deposit` credit (reference `initial-balance`); 0 if absent.
    #[serde(default)]
    #[schema(value_type = OpeningBalance)]
    initial_balance: Option<Box<RawValue>>,
}

pub async fn create(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: CreateWalletBody = incoming.json()?;
    let wallet_type: WalletType = one_of("walletType", &body.wallet_type, &WalletTypeName::VALUES.join(", "))?;
    let currency = match body.currency.as_deref() {
        None => Currency::egp(),
        Some(code) => Currency::parse(code)
            .ok_or_else(|| ApiError::validation(format!("currency must be an ISO 4217 code counted in hundredths, such as EGP or USD, got {code:?}")))?,
    };
    let kyc_level: KycLevel = one_of("kycLevel", body.kyc_level.as_deref().unwrap_or("basic"), &KycLevelName::VALUES.join(", "))?;
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct SuspendWalletBody {
    #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
    reason: String,
}

pub async fn suspend(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: SuspendWalletBody = incoming.json()?;
    on_wallet(app, incoming, WalletCommand::Suspend { reason: text("reason", &body.reason, DESCRIPTION_MAX)? }).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct CloseWalletBody {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
    reason: Option<String>,
}

pub async fn close(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: CloseWalletBody = incoming.json()?;
    on_wallet(app, incoming, WalletCommand::Close { reason: optional_text("reason", body.reason.as_deref(), DESCRIPTION_MAX)? }).await
}

/// A credit and a debit have the same fields; only the transaction types differ.
macro_rules! movement_body {
    ($(#[$doc:meta])* $name:ident, $types:ty) => {
        $(#[$doc])*
        #[derive(Deserialize, ToSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
        pub(crate) struct $name {
            #[schema(value_type = RequestAmount)]
            amount: Box<RawValue>,
            #[schema(value_type = $types)]
            transaction_type: String,
            #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
            reference: String,
            #[serde(default)]
            #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
            description: Option<String>,
        }

        impl $name {
            fn movement<T: serde::de::DeserializeOwned>(&self) -> Result<Movement<T>, ApiError> {
                Ok(Movement {
                    amount: amount("amount", &self.amount)?,
                    transaction_type: one_of("transactionType", &self.transaction_type, &<$types>::VALUES.join(", "))?,
                    reference: text("reference", &self.reference, REFERENCE_MAX)?,
                    description: optional_text("description", self.description.as_deref(), DESCRIPTION_MAX)?,
                    currency: None,
                })
            }
        }
    };
}

movement_body!(CreditBody, CreditType);
movement_body!(DebitBody, DebitType);

pub async fn credit(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: CreditBody = incoming.json()?;
    on_wallet(app, incoming, WalletCommand::Credit(body.movement()?)).await
}

pub async fn debit(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: DebitBody = incoming.json()?;
    on_wallet(app, incoming, WalletCommand::Debit(body.movement()?)).await
}

/// The ledger decides who may (see `shared::app::wallets`).
async fn on_wallet(app: &App, incoming: &Incoming, command: WalletCommand) -> Result<StoredResponse, ApiError> {
    let wallet_id = WalletId(incoming.path_id("walletId")?);
    let caller = incoming.caller();
    let render = wallet_body;
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.on_wallet(caller, wallet_id, command, &call).await, render)
}

/// What a wallet command did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletCommandReply {
    success: bool,
    command_id: Uuid,
    wallet_id: Uuid,
    /// The wallet's version after the command.
    version: u64,
    balance: Amount,
    /// The ids of the events the command appended.
    events: Vec<Uuid>,
}

fn wallet_body(receipt: &Receipt<Wallet>) -> Success {
    let wallet = receipt.state.open().expect("a wallet command's wallet exists");
    Success::ok(WalletCommandReply {
        success: true,
        command_id: receipt.command_id,
        wallet_id: wallet.id,
        version: receipt.version,
        balance: wallet.balance.into(),
        events: receipt.event_ids.clone(),
    })
}
