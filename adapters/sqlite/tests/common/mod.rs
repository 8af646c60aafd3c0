//! Test fixtures: a fresh temporary directory per test, and stores that delete
//! theirs when dropped.

#![allow(dead_code)]

use async_trait::async_trait;
use shared::envelope::EventEnvelope;
use shared::ports::*;
use std::path::{Path, PathBuf};
use store_sqlite::{SqliteEventStore, SqliteExecutionStore, SqliteReadStore};
use tokio::sync::watch;
use uuid::Uuid;

/// A new empty directory under the system's temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("store-sqlite-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store on its own fresh database; the directory goes when the store does
/// (fields drop in order: the store closes its files first).
pub struct Fresh<S> {
    pub store: S,
    /// The database file.
    pub path: PathBuf,
    _dir: TempDir,
}

fn fresh<S>(file: &str, open: impl FnOnce(&Path) -> Result<S, StoreError>) -> Fresh<S> {
    let dir = TempDir::new();
    let path = dir.path().join(file);
    Fresh { store: open(&path).unwrap(), path, _dir: dir }
}

pub fn event_store() -> Fresh<SqliteEventStore> {
    fresh("events.db", SqliteEventStore::open)
}

pub fn read_store() -> Fresh<SqliteReadStore> {
    fresh("read.db", SqliteReadStore::open)
}

pub fn execution_store() -> Fresh<SqliteExecutionStore> {
    fresh("sagas.db", SqliteExecutionStore::open)
}

#[async_trait]
impl<S: EventStore> EventStore for Fresh<S> {
    async fn load(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventEnvelope>, StoreError> {
        self.store.load(stream_id, after_version).await
    }
    async fn first_event(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        self.store.first_event(stream_id).await
    }
    async fn snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        self.store.snapshot(stream_id).await
    }
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.store.save_snapshot(snapshot).await
    }
    async fn append(&self, commit: Commit) -> Result<(), AppendError> {
        self.store.append(commit).await
    }
    async fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.store.idempotency(scope, key).await
    }
}

#[async_trait]
impl<S: EventFeed> EventFeed for Fresh<S> {
    async fn read_after(&self, position: u64, limit: usize) -> Result<Vec<(u64, EventEnvelope)>, StoreError> {
        self.store.read_after(position, limit).await
    }
    fn head(&self) -> watch::Receiver<u64> {
        self.store.head()
    }
}

#[async_trait]
impl<S: WalletViews> WalletViews for Fresh<S> {
    async fn wallet(&self, wallet_id: Uuid) -> Result<Option<WalletView>, StoreError> {
        self.store.wallet(wallet_id).await
    }
    async fn save_wallet(&self, view: &WalletView, previous_version: u64) -> Result<Saved, StoreError> {
        self.store.save_wallet(view, previous_version).await
    }
    async fn wallets(&self, wallet_ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, WalletView>, StoreError> {
        self.store.wallets(wallet_ids).await
    }
    async fn wallets_of_owner(&self, owner_id: &str) -> Result<Vec<WalletView>, StoreError> {
        self.store.wallets_of_owner(owner_id).await
    }
}

#[async_trait]
impl<S: TransactionHistory> TransactionHistory for Fresh<S> {
    async fn record_transaction(&self, item: &TransactionItem) -> Result<(), StoreError> {
        self.store.record_transaction(item).await
    }
    async fn transactions(&self, wallet_id: Uuid, limit: usize, before_version: Option<u64>) -> Result<Vec<TransactionItem>, StoreError> {
        self.store.transactions(wallet_id, limit, before_version).await
    }
}

#[async_trait]
impl<S: TransferViews> TransferViews for Fresh<S> {
    async fn transfer(&self, transfer_id: Uuid) -> Result<Option<TransferView>, StoreError> {
        self.store.transfer(transfer_id).await
    }
    async fn save_transfer(&self, view: &TransferView, previous_version: u64) -> Result<Saved, StoreError> {
        self.store.save_transfer(view, previous_version).await
    }
}

#[async_trait]
impl<S: DocumentViews> DocumentViews for Fresh<S> {
    async fn document(&self, kind: &str, id: Uuid) -> Result<Option<Document>, StoreError> {
        self.store.document(kind, id).await
    }
    async fn save_document(&self, kind: &str, document: &Document, previous: Option<&Document>) -> Result<Saved, StoreError> {
        self.store.save_document(kind, document, previous).await
    }
    async fn listed(&self, kind: &str, list: &str, limit: usize, before: Option<&str>) -> Result<ListedPage, StoreError> {
        self.store.listed(kind, list, limit, before).await
    }
}

#[async_trait]
impl<S: Checkpoints> Checkpoints for Fresh<S> {
    async fn checkpoint(&self, consumer: &str) -> Result<u64, StoreError> {
        self.store.checkpoint(consumer).await
    }
    async fn save_checkpoint(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        self.store.save_checkpoint(consumer, position).await
    }
}

/// Delegates both methods, so that the adapter's own batches are what is tested.
#[async_trait]
impl<S: ReadBatches> ReadBatches for Fresh<S> {
    async fn views(&self, wallet_ids: &[Uuid], transfer_ids: &[Uuid]) -> Result<(Vec<WalletView>, Vec<TransferView>), StoreError> {
        self.store.views(wallet_ids, transfer_ids).await
    }
    async fn write_batch(&self, writes: &[ReadWrite]) -> Result<Vec<Option<Saved>>, StoreError> {
        self.store.write_batch(writes).await
    }
}

#[async_trait]
impl<S: ExecutionStore> ExecutionStore for Fresh<S> {
    async fn create(&self, record: &ExecutionRecord) -> Result<bool, StoreError> {
        self.store.create(record).await
    }
    async fn update(&self, record: &ExecutionRecord) -> Result<(), StoreError> {
        self.store.update(record).await
    }
    async fn get(&self, state_machine: &str, name: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        self.store.get(state_machine, name).await
    }
    async fn running(&self, state_machine: &str) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.store.running(state_machine).await
    }
}
