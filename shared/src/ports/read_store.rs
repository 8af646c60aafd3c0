//! Read models and the ports that keep them. Every write is guarded by the
//! aggregate version it was computed from, so a duplicate or older event can never
//! overwrite a newer state, whatever order deliveries arrive in.

use super::StoreError;
use crate::money::Money;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalletView {
    pub wallet_id: Uuid,
    pub owner_id: String,
    pub wallet_type: String,
    pub currency: String,
    pub kyc_level: String,
    pub status: String,
    pub balance: Money,
    /// The sum of the open payment holds: part of the balance, not available
    /// (`available = balance − held`). Absent from views stored before holds existed.
    #[serde(default)]
    pub held: Money,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionItem {
    pub wallet_id: Uuid,
    pub event_id: Uuid,
    /// `credit` or `debit`.
    #[serde(rename = "type")]
    pub kind: String,
    pub amount: Money,
    pub balance_after: Money,
    pub transaction_type: String,
    pub reference: String,
    pub description: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// The wallet version this movement produced; unique per wallet.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferView {
    pub transfer_id: Uuid,
    pub source_wallet_id: Uuid,
    pub destination_wallet_id: Uuid,
    pub amount: Money,
    pub currency: String,
    pub status: String,
    pub failure_reason: Option<String>,
    /// On a `FAILED` transfer whose refund could not land on its source (closed
    /// meanwhile): the amount held in suspense. Absent otherwise, and on views
    /// stored before refunds could be suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_in_suspense: Option<Money>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a guarded write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// The stored row was no longer at `previous_version`: someone applied this
    /// event (or a later one) first; nothing was changed.
    Stale,
}

#[async_trait]
pub trait WalletViews: Send + Sync {
    async fn wallet(&self, wallet_id: Uuid) -> Result<Option<WalletView>, StoreError>;
    /// Several wallet views in as few store round trips as the backend allows
    /// (DynamoDB: `BatchGetItem`, 100 keys a request); absent ones are left out.
    async fn wallets(&self, wallet_ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, WalletView>, StoreError>;
    /// Writes `view` only if the stored view is at `previous_version` (0: absent).
    async fn save_wallet(&self, view: &WalletView, previous_version: u64) -> Result<Saved, StoreError>;
    /// The owner's wallets, oldest first.
    async fn wallets_of_owner(&self, owner_id: &str) -> Result<Vec<WalletView>, StoreError>;
}

#[async_trait]
pub trait TransactionHistory: Send + Sync {
    /// Idempotent: a second write of the same (wallet, version) changes nothing.
    async fn record_transaction(&self, item: &TransactionItem) -> Result<(), StoreError>;
    /// Newest first; `before_version` is the cursor (exclusive).
    async fn transactions(&self, wallet_id: Uuid, limit: usize, before_version: Option<u64>) -> Result<Vec<TransactionItem>, StoreError>;
}

#[async_trait]
pub trait TransferViews: Send + Sync {
    async fn transfer(&self, transfer_id: Uuid) -> Result<Option<TransferView>, StoreError>;
    async fn save_transfer(&self, view: &TransferView, previous_version: u64) -> Result<Saved, StoreError>;
}

/// A read model kept as one JSON document per aggregate (payments, medical cards,
/// claims), written only over the version it follows, like the typed views. The
/// typed views and their projectors live in `projection`; the stores only keep
/// documents, so a new read model needs no new table or adapter code.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The aggregate's id.
    pub id: Uuid,
    /// The aggregate version the body was computed from.
    pub version: u64,
    pub body: serde_json::Value,
    /// The lists the document appears in now (a pharmacy's claims, the payments
    /// still authorised), each with the key it sorts by. A list always shows the
    /// document's latest body; a listing that a later write leaves out is removed.
    pub listings: Vec<Listing>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The list's name, e.g. `pharmacy#<walletId>`.
    pub list: String,
    /// Lists are read greatest key first; a key must be unique within its list
    /// (end it with the document's id).
    pub sort_key: String,
}

/// One page of a list: greatest sort key first.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPage {
    pub documents: Vec<Document>,
    /// The sort key to pass as `before` for the next page; `None` on the last page.
    pub next: Option<String>,
}

#[async_trait]
pub trait DocumentViews: Send + Sync {
    /// The document of `kind` (`payment`, `medcard`, `claim`) with this id.
    async fn document(&self, kind: &str, id: Uuid) -> Result<Option<Document>, StoreError>;
    /// Writes `document` and its listings (dropping those `previous` had and it no
    /// longer has) only if the stored one is still `previous` — at its version
    /// (`None`: absent) — as one atomic change. The caller read `previous` to compute
    /// `document`, so the store need not read it again.
    async fn save_document(&self, kind: &str, document: &Document, previous: Option<&Document>) -> Result<Saved, StoreError>;
    /// Up to `limit` documents of `kind` listed under `list`, greatest sort key
    /// first, starting after the sort key `before` (exclusive).
    async fn listed(&self, kind: &str, list: &str, limit: usize, before: Option<&str>) -> Result<ListedPage, StoreError>;
}

/// Where a feed consumer got to in the global log (embedded backends).
#[async_trait]
pub trait Checkpoints: Send + Sync {
    async fn checkpoint(&self, consumer: &str) -> Result<u64, StoreError>;
    async fn save_checkpoint(&self, consumer: &str, position: u64) -> Result<(), StoreError>;
}

/// Everything the read side keeps, as one handle.
pub trait ReadStore: WalletViews + TransactionHistory + TransferViews + DocumentViews + Checkpoints {}
impl<T: WalletViews + TransactionHistory + TransferViews + DocumentViews + Checkpoints> ReadStore for T {}

/// One read-model write of a [`ReadBatches::write_batch`]: the arguments of the
/// one-row method it stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadWrite {
    /// [`WalletViews::save_wallet`].
    Wallet { view: WalletView, previous_version: u64 },
    /// [`TransactionHistory::record_transaction`].
    Transaction(TransactionItem),
    /// [`TransferViews::save_transfer`].
    Transfer { view: TransferView, previous_version: u64 },
}

/// Many read-model rows in one go, so that a projector working through a long
/// feed (a rebuild) pays one read and one write of the store per batch of events
/// instead of several per event (see `projection::batch`). The default methods
/// work one row at a time through the one-row methods; an adapter overrides them
/// where it can do better (SQLite: one transaction per call).
#[async_trait]
pub trait ReadBatches: ReadStore {
    /// The stored views of these wallets and transfers; absent ones are left out.
    async fn views(&self, wallet_ids: &[Uuid], transfer_ids: &[Uuid]) -> Result<(Vec<WalletView>, Vec<TransferView>), StoreError> {
        let mut wallets = Vec::with_capacity(wallet_ids.len());
        for id in wallet_ids {
            wallets.extend(self.wallet(*id).await?);
        }
        let mut transfers = Vec::with_capacity(transfer_ids.len());
        for id in transfer_ids {
            transfers.extend(self.transfer(*id).await?);
        }
        Ok((wallets, transfers))
    }

    /// Applies `writes` in order, each exactly as its one-row method would — the
    /// same version guard on views, the same first-write-wins on history lines —
    /// and returns what each guarded view write did (`None` for a history line).
    /// An adapter may commit the batch as one transaction; on an error, any prefix
    /// of it may have been applied (every write is idempotent, so the caller simply
    /// retries).
    async fn write_batch(&self, writes: &[ReadWrite]) -> Result<Vec<Option<Saved>>, StoreError> {
        let mut saved = Vec::with_capacity(writes.len());
        for write in writes {
            saved.push(write.apply_alone(self).await?);
        }
        Ok(saved)
    }
}

impl ReadWrite {
    /// This write through its one-row method: what the guarded view write did
    /// (`None` for a history line).
    pub async fn apply_alone<S: ReadStore + ?Sized>(&self, store: &S) -> Result<Option<Saved>, StoreError> {
        Ok(match self {
            ReadWrite::Wallet { view, previous_version } => Some(store.save_wallet(view, *previous_version).await?),
            ReadWrite::Transaction(item) => {
                store.record_transaction(item).await?;
                None
            }
            ReadWrite::Transfer { view, previous_version } => Some(store.save_transfer(view, *previous_version).await?),
        })
    }
}
