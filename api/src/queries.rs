//! The read side: wallet, history, temporal balance, the caller's wallets, transfers.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::Incoming;
use crate::App;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shared::aggregate::Aggregate;
use shared::envelope::stream_id;
use shared::ports::{StoredResponse, TransactionItem, TransferView, WalletView};
use shared::wallet::{Wallet, WalletEvent};
use uuid::Uuid;

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;

/// `?limit=`: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] if absent.
pub fn page_limit(incoming: &Incoming) -> Result<usize, ApiError> {
    match incoming.query("limit") {
        None => Ok(DEFAULT_PAGE),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| ApiError::validation(format!("limit must be an integer from 1 to {MAX_PAGE}"))),
    }
}

pub fn ok(body: Value) -> StoredResponse {
    StoredResponse { status: 200, body: body.to_string(), headers: vec![] }
}

/// The wallet view, if the caller may read it (owner or admin).
async fn readable_wallet(app: &App, incoming: &Incoming) -> Result<WalletView, ApiError> {
    let wallet_id = incoming.path_id("walletId")?;
    let view = app.read.wallet(wallet_id).await?.ok_or_else(|| ApiError::not_found(format!("wallet {wallet_id} was not found")))?;
    if !incoming.caller().may_act_for(&view.owner_id) {
        return Err(ApiError::forbidden(format!("{} may not read wallet {wallet_id}", incoming.caller().sub)));
    }
    Ok(view)
}

pub fn wallet_json(view: &WalletView) -> Value {
    json!({
        "walletId": view.wallet_id,
        "ownerId": view.owner_id,
        "walletType": view.wallet_type,
        "currency": view.currency,
        "kycLevel": view.kyc_level,
        "status": view.status,
        "balance": view.balance.to_json_number(),
        "held": view.held.to_json_number(),
        "available": shared::money::Money::from_minor(view.balance.minor() - view.held.minor()).to_json_number(),
        "version": view.version,
        "createdAt": shared::clock::rfc3339(view.created_at),
        "updatedAt": shared::clock::rfc3339(view.updated_at),
    })
}

pub async fn wallet(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    Ok(ok(wallet_json(&readable_wallet(app, incoming).await?)))
}

fn transaction_json(item: &TransactionItem) -> Value {
    json!({
        "eventId": item.event_id,
        "type": item.kind,
        "amount": item.amount.to_json_number(),
        "balanceAfter": item.balance_after.to_json_number(),
        "transactionType": item.transaction_type,
        "reference": item.reference,
        "description": item.description,
        "occurredAt": shared::clock::rfc3339(item.occurred_at),
        "version": item.version,
    })
}

/// Newest first. The cursor is the version of the last item of the previous page.
pub async fn transactions(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let limit = page_limit(incoming)?;
    let before = match incoming.query("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| ApiError::validation("cursor is not one this API returned"))?),
    };
    let view = readable_wallet(app, incoming).await?;
    let items = app.read.transactions(view.wallet_id, limit, before).await?;
    let next_cursor = (items.len() == limit).then(|| items.last().map(|i| i.version.to_string())).flatten();
    Ok(ok(json!({"items": items.iter().map(transaction_json).collect::<Vec<_>>(), "nextCursor": next_cursor})))
}

/// The balance at `asOf` (default: now), folded from the event store itself.
pub async fn balance(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let wallet_id = incoming.path_id("walletId")?;
    let now = app.commands.clock().now();
    let as_of: DateTime<Utc> = match incoming.query("asOf") {
        None => now,
        Some(raw) => DateTime::parse_from_rfc3339(&raw)
            .map_err(|_| ApiError::validation(format!("asOf must be an RFC 3339 timestamp, got {raw:?}")))?
            .with_timezone(&Utc),
    };
    let events = app.commands.store().load(&stream_id(Wallet::TYPE, wallet_id), 0).await?;
    let decoded = events.iter().map(|e| e.decode::<WalletEvent>().map(|event| (e, event))).collect::<Result<Vec<_>, _>>().map_err(ApiError::internal)?;
    let Some(Wallet::Open(current)) = Some(decoded.iter().fold(Wallet::default(), |w, (_, e)| w.apply(e))) else {
        return Err(ApiError::not_found(format!("wallet {wallet_id} was not found")));
    };
    if !incoming.caller().may_act_for(&current.owner_id) {
        return Err(ApiError::forbidden(format!("{} may not read wallet {wallet_id}", incoming.caller().sub)));
    }
    let until: Vec<_> = decoded.iter().filter(|(envelope, _)| envelope.occurred_at <= as_of).collect();
    let Some((last, _)) = until.last() else {
        return Err(ApiError::not_found(format!("wallet {wallet_id} did not exist at {}", shared::clock::rfc3339(as_of))));
    };
    let Wallet::Open(then) = until.iter().fold(Wallet::default(), |w, (_, e)| w.apply(e)) else {
        return Err(ApiError::internal(format!("wallet {wallet_id}: stream does not start with WalletCreated")));
    };
    Ok(ok(json!({"walletId": wallet_id, "balance": then.balance.to_json_number(), "version": last.version, "asOf": shared::clock::rfc3339(as_of)})))
}

pub async fn my_wallets(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let wallets = app.read.wallets_of_owner(&incoming.caller().sub).await?;
    Ok(ok(json!({"items": wallets.iter().map(wallet_json).collect::<Vec<_>>()})))
}

fn transfer_json(view: &TransferView) -> Value {
    let mut body = json!({
        "transferId": view.transfer_id,
        "sourceWalletId": view.source_wallet_id,
        "destinationWalletId": view.destination_wallet_id,
        "amount": view.amount.to_json_number(),
        "currency": view.currency,
        "status": view.status,
        "version": view.version,
        "createdAt": shared::clock::rfc3339(view.created_at),
        "updatedAt": shared::clock::rfc3339(view.updated_at),
    });
    if let Some(reason) = &view.failure_reason {
        body["failureReason"] = json!(reason);
    }
    // The refund of a failed transfer that its source refused (closed meanwhile):
    // money on no wallet, for an operator to settle.
    if let Some(amount) = view.refund_in_suspense {
        body["refundInSuspense"] = amount.to_json_number();
    }
    body
}

/// Whether the caller owns the wallet, as the read side knows it (owners never change).
pub async fn owns_wallet(app: &App, caller: &Caller, wallet_id: Uuid) -> Result<bool, ApiError> {
    Ok(app.read.wallet(wallet_id).await?.is_some_and(|w| w.owner_id == caller.sub))
}

/// Readable by the source's owner, the destination's owner and admins.
pub async fn transfer(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let transfer_id = incoming.path_id("transferId")?;
    let view = app.read.transfer(transfer_id).await?.ok_or_else(|| ApiError::not_found(format!("transfer {transfer_id} was not found")))?;
    let caller = incoming.caller();
    let allowed = caller.is_admin() || owns_wallet(app, caller, view.source_wallet_id).await? || owns_wallet(app, caller, view.destination_wallet_id).await?;
    if !allowed {
        return Err(ApiError::forbidden(format!("{} may not read transfer {transfer_id}", caller.sub)));
    }
    Ok(ok(transfer_json(&view)))
}
