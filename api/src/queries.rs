//! The read side: wallet, history, temporal balance, the caller's wallets, transfers.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::Incoming;
use crate::schema::{Amount, KycLevel, MovementKind, Timestamp, TransferStatus, WalletStatus, WalletType};
use crate::App;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::aggregate::Aggregate;
use shared::envelope::stream_id;
use shared::ports::{StoredResponse, TransactionItem, TransferView, WalletView};
use shared::projection::{view_of, DocumentView};
use shared::wallet::{Wallet, WalletEvent};
use utoipa::ToSchema;
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

/// One page (`?limit&cursor`) of a read-store list of document views, greatest sort
/// key first, each rendered by `reply`, and the cursor of the next page. Cursors are
/// opaque to callers: the hex of a list's sort key.
pub async fn document_page<V: DocumentView, R>(
    app: &App,
    incoming: &Incoming,
    list: &str,
    reply: impl Fn(&V) -> R,
) -> Result<(Vec<R>, Option<String>), ApiError> {
    let limit = page_limit(incoming)?;
    let before = match incoming.query("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => {
            Some(hex::decode(&raw).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| ApiError::validation("cursor is not one this API returned"))?)
        }
    };
    let page = app.read.listed(V::KIND, list, limit, before.as_deref()).await?;
    let items = page.documents.into_iter().map(|d| view_of::<V>(d.clone(), d.id).map(|v| reply(&v))).collect::<Result<Vec<_>, _>>()?;
    Ok((items, page.next.map(hex::encode)))
}

/// A 200 with `body` (a response struct of this crate: its schema is in the document).
pub fn ok(body: impl Serialize) -> StoredResponse {
    // Through a `Value`, as every body: its keys in one (sorted) order.
    let body = serde_json::to_value(body).expect("a response body serialises");
    StoredResponse { status: 200, body: body.to_string(), headers: vec![] }
}

/// The wallet view, if the caller may read it (owner or admin).
async fn readable_wallet(app: &App, incoming: &Incoming) -> Result<WalletView, ApiError> {
    let wallet_id = incoming.path_id("walletId")?;
    let view = app.read.wallet(wallet_id).await?.ok_or_else(|| ApiError::not_found(format!("wallet {wallet_id} was not found")))?;
    may_read_wallet(incoming.caller(), &view)?;
    Ok(view)
}

/// Who may read a wallet view: its owner or `admin` (also GraphQL's batched wallets).
pub fn may_read_wallet(caller: &Caller, view: &WalletView) -> Result<(), ApiError> {
    if !caller.may_act_for(&view.owner_id) {
        return Err(ApiError::forbidden(format!("{} may not read wallet {}", caller.sub, view.wallet_id)));
    }
    Ok(())
}

/// A wallet, from the read side.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletReply {
    wallet_id: Uuid,
    /// The `sub` that created it.
    owner_id: String,
    #[schema(value_type = WalletType)]
    wallet_type: String,
    currency: String,
    #[schema(value_type = KycLevel)]
    kyc_level: String,
    #[schema(value_type = WalletStatus)]
    status: String,
    /// Counts held money too: a hold moves nothing, a capture does.
    balance: Amount,
    /// The open payment authorisations' holds.
    held: Amount,
    /// `balance − held`: what a debit, transfer or authorisation may take.
    available: Amount,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl WalletReply {
    pub fn of(view: &WalletView) -> Self {
        WalletReply {
            wallet_id: view.wallet_id,
            owner_id: view.owner_id.clone(),
            wallet_type: view.wallet_type.clone(),
            currency: view.currency.clone(),
            kyc_level: view.kyc_level.clone(),
            status: view.status.clone(),
            balance: view.balance.into(),
            held: view.held.into(),
            available: shared::money::Money::from_minor(view.balance.minor() - view.held.minor()).into(),
            version: view.version,
            created_at: view.created_at.into(),
            updated_at: view.updated_at.into(),
        }
    }
}

pub async fn wallet(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    Ok(ok(WalletReply::of(&readable_wallet(app, incoming).await?)))
}

/// One movement of a wallet's history.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionReply {
    event_id: Uuid,
    #[serde(rename = "type")]
    #[schema(value_type = MovementKind)]
    kind: String,
    amount: Amount,
    balance_after: Amount,
    /// A credit or debit type, or one the ledger records itself (`payment_received`, `payment_refund`, `claim_payment`).
    transaction_type: String,
    reference: String,
    description: Option<String>,
    occurred_at: Timestamp,
    /// The wallet version this movement produced.
    version: u64,
}

impl TransactionReply {
    fn of(item: &TransactionItem) -> Self {
        TransactionReply {
            event_id: item.event_id,
            kind: item.kind.clone(),
            amount: item.amount.into(),
            balance_after: item.balance_after.into(),
            transaction_type: item.transaction_type.clone(),
            reference: item.reference.clone(),
            description: item.description.clone(),
            occurred_at: item.occurred_at.into(),
            version: item.version,
        }
    }
}

/// A page of a wallet's history, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionPage {
    items: Vec<TransactionReply>,
    /// Pass as `cursor` for the next page; `null` on the last page. Opaque.
    next_cursor: Option<String>,
}

/// A wallet's balance at a time, folded from the event store.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceReply {
    wallet_id: Uuid,
    balance: Amount,
    /// The wallet's version at `asOf`.
    version: u64,
    as_of: Timestamp,
}

/// The caller's wallets.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletList {
    items: Vec<WalletReply>,
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
    Ok(ok(TransactionPage { items: items.iter().map(TransactionReply::of).collect(), next_cursor }))
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
    Ok(ok(BalanceReply { wallet_id, balance: then.balance.into(), version: last.version, as_of: as_of.into() }))
}

pub async fn my_wallets(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let wallets = app.read.wallets_of_owner(&incoming.caller().sub).await?;
    Ok(ok(WalletList { items: wallets.iter().map(WalletReply::of).collect() }))
}

/// A transfer, from the read side.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferReply {
    transfer_id: Uuid,
    source_wallet_id: Uuid,
    destination_wallet_id: Uuid,
    amount: Amount,
    currency: String,
    #[schema(value_type = TransferStatus)]
    status: String,
    /// On a `FAILED` transfer: why the credit failed (INSUFFICIENT_FUNDS, WALLET_NOT_ACTIVE, CURRENCY_MISMATCH, NOT_FOUND, LIMIT_EXCEEDED, INTERNAL).
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
    /// The refund of a failed transfer that its source refused (closed meanwhile):
    /// money on no wallet, for an operator to settle. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    refund_in_suspense: Option<Amount>,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl TransferReply {
    fn of(view: &TransferView) -> Self {
        TransferReply {
            transfer_id: view.transfer_id,
            source_wallet_id: view.source_wallet_id,
            destination_wallet_id: view.destination_wallet_id,
            amount: view.amount.into(),
            currency: view.currency.clone(),
            status: view.status.clone(),
            failure_reason: view.failure_reason.clone(),
            refund_in_suspense: view.refund_in_suspense.map(Amount),
            version: view.version,
            created_at: view.created_at.into(),
            updated_at: view.updated_at.into(),
        }
    }
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
    Ok(ok(TransferReply::of(&view)))
}
