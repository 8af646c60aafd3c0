//! The in-memory backend: every port on plain maps behind a mutex. It is what
//! `healthpay serve --in-memory` runs on and what fast tests use; it passes the same
//! conformance suites as the durable backends.

use crate::envelope::EventEnvelope;
use crate::ports::*;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

pub struct MemoryEventStore {
    inner: Mutex<EventLog>,
    head: watch::Sender<u64>,
}

#[derive(Default)]
struct EventLog {
    streams: HashMap<String, Vec<EventEnvelope>>,
    /// Position `i + 1` is `log[i]`: (stream, index in stream).
    log: Vec<(String, usize)>,
    idempotency: HashMap<(String, String), IdempotencyRecord>,
    snapshots: HashMap<String, Snapshot>,
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        MemoryEventStore { inner: Mutex::default(), head: watch::channel(0).0 }
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn load(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventEnvelope>, StoreError> {
        let inner = self.inner.lock().unwrap();
        Ok(inner.streams.get(stream_id).map(|events| events.iter().filter(|e| e.version > after_version).cloned().collect()).unwrap_or_default())
    }

    async fn snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.inner.lock().unwrap().snapshots.get(stream_id).cloned())
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap();
        if inner.snapshots.get(&snapshot.stream_id).is_none_or(|kept| kept.version < snapshot.version) {
            inner.snapshots.insert(snapshot.stream_id.clone(), snapshot.clone());
        }
        Ok(())
    }

    async fn append(&self, commit: Commit) -> Result<(), AppendError> {
        let mut inner = self.inner.lock().unwrap();
        // Check everything first: all or nothing.
        if let Some(record) = &commit.idempotency {
            if let Some(existing) = inner.idempotency.get(&(record.scope.clone(), record.key.clone())) {
                return Err(AppendError::IdempotencyKeyUsed(Box::new(existing.clone())));
            }
        }
        for (index, append) in commit.streams.iter().enumerate() {
            let numbered = append.events.iter().zip(append.expected_version + 1..).all(|(e, v)| e.version == v && e.stream_id() == append.stream_id);
            if !numbered {
                return Err(StoreError(format!("{}: events must be numbered from v{}", append.stream_id, append.expected_version + 1)).into());
            }
            let current = inner.streams.get(&append.stream_id).map_or(0, |s| s.len() as u64);
            let repeated = commit.streams[..index].iter().any(|earlier| earlier.stream_id == append.stream_id);
            if current != append.expected_version || repeated {
                return Err(AppendError::VersionConflict { stream_id: append.stream_id.clone() });
            }
        }
        for append in commit.streams {
            let stream = inner.streams.entry(append.stream_id.clone()).or_default();
            let first_index = stream.len();
            let count = append.events.len();
            stream.extend(append.events);
            for index in first_index..first_index + count {
                inner.log.push((append.stream_id.clone(), index));
            }
        }
        if let Some(record) = commit.idempotency {
            inner.idempotency.insert((record.scope.clone(), record.key.clone()), record);
        }
        let head = inner.log.len() as u64;
        drop(inner);
        self.head.send_replace(head);
        Ok(())
    }

    async fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self.inner.lock().unwrap().idempotency.get(&(scope.to_string(), key.to_string())).cloned())
    }
}

#[async_trait]
impl EventFeed for MemoryEventStore {
    async fn read_after(&self, position: u64, limit: usize) -> Result<Vec<(u64, EventEnvelope)>, StoreError> {
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .log
            .iter()
            .enumerate()
            .skip(position as usize)
            .take(limit)
            .map(|(i, (stream, index))| (i as u64 + 1, inner.streams[stream][*index].clone()))
            .collect())
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

#[derive(Default)]
pub struct MemoryReadStore {
    inner: Mutex<ReadModels>,
}

#[derive(Default)]
struct ReadModels {
    wallets: HashMap<Uuid, WalletView>,
    transactions: HashMap<Uuid, BTreeMap<u64, TransactionItem>>,
    transfers: HashMap<Uuid, TransferView>,
    documents: HashMap<(String, Uuid), Document>,
    /// (kind, list) → sort key → document id.
    listings: HashMap<(String, String), BTreeMap<String, Uuid>>,
    checkpoints: HashMap<String, u64>,
}

/// The guarded write every read model shares: write only over `previous_version`.
fn save_guarded<V: Clone>(map: &mut HashMap<Uuid, V>, id: Uuid, view: &V, previous_version: u64, version_of: impl Fn(&V) -> u64) -> Saved {
    let current = map.get(&id).map_or(0, &version_of);
    if current != previous_version {
        return Saved::Stale;
    }
    map.insert(id, view.clone());
    Saved::Written
}

#[async_trait]
impl WalletViews for MemoryReadStore {
    async fn wallet(&self, wallet_id: Uuid) -> Result<Option<WalletView>, StoreError> {
        Ok(self.inner.lock().unwrap().wallets.get(&wallet_id).cloned())
    }
    async fn save_wallet(&self, view: &WalletView, previous_version: u64) -> Result<Saved, StoreError> {
        Ok(save_guarded(&mut self.inner.lock().unwrap().wallets, view.wallet_id, view, previous_version, |v| v.version))
    }
    async fn wallets(&self, wallet_ids: &[Uuid]) -> Result<HashMap<Uuid, WalletView>, StoreError> {
        let inner = self.inner.lock().unwrap();
        Ok(wallet_ids.iter().filter_map(|id| inner.wallets.get(id).map(|view| (*id, view.clone()))).collect())
    }
    async fn wallets_of_owner(&self, owner_id: &str) -> Result<Vec<WalletView>, StoreError> {
        let mut wallets: Vec<WalletView> = self.inner.lock().unwrap().wallets.values().filter(|w| w.owner_id == owner_id).cloned().collect();
        wallets.sort_by_key(|w| (w.created_at, w.wallet_id));
        Ok(wallets)
    }
}

#[async_trait]
impl TransactionHistory for MemoryReadStore {
    async fn record_transaction(&self, item: &TransactionItem) -> Result<(), StoreError> {
        self.inner.lock().unwrap().transactions.entry(item.wallet_id).or_default().entry(item.version).or_insert_with(|| item.clone());
        Ok(())
    }
    async fn transactions(&self, wallet_id: Uuid, limit: usize, before_version: Option<u64>) -> Result<Vec<TransactionItem>, StoreError> {
        let inner = self.inner.lock().unwrap();
        let Some(items) = inner.transactions.get(&wallet_id) else { return Ok(vec![]) };
        Ok(items.range(..before_version.unwrap_or(u64::MAX)).rev().take(limit).map(|(_, item)| item.clone()).collect())
    }
}

#[async_trait]
impl TransferViews for MemoryReadStore {
    async fn transfer(&self, transfer_id: Uuid) -> Result<Option<TransferView>, StoreError> {
        Ok(self.inner.lock().unwrap().transfers.get(&transfer_id).cloned())
    }
    async fn save_transfer(&self, view: &TransferView, previous_version: u64) -> Result<Saved, StoreError> {
        Ok(save_guarded(&mut self.inner.lock().unwrap().transfers, view.transfer_id, view, previous_version, |v| v.version))
    }
}

#[async_trait]
impl DocumentViews for MemoryReadStore {
    async fn document(&self, kind: &str, id: Uuid) -> Result<Option<Document>, StoreError> {
        Ok(self.inner.lock().unwrap().documents.get(&(kind.to_string(), id)).cloned())
    }
    async fn save_document(&self, kind: &str, document: &Document, previous: Option<&Document>) -> Result<Saved, StoreError> {
        let mut inner = self.inner.lock().unwrap();
        let key = (kind.to_string(), document.id);
        if inner.documents.get(&key).map_or(0, |d| d.version) != previous.map_or(0, |d| d.version) {
            return Ok(Saved::Stale);
        }
        if let Some(previous) = inner.documents.insert(key, document.clone()) {
            for listing in previous.listings.iter().filter(|l| !document.listings.contains(l)) {
                if let Some(list) = inner.listings.get_mut(&(kind.to_string(), listing.list.clone())) {
                    list.remove(&listing.sort_key);
                }
            }
        }
        for listing in &document.listings {
            inner.listings.entry((kind.to_string(), listing.list.clone())).or_default().insert(listing.sort_key.clone(), document.id);
        }
        Ok(Saved::Written)
    }
    async fn listed(&self, kind: &str, list: &str, limit: usize, before: Option<&str>) -> Result<ListedPage, StoreError> {
        let inner = self.inner.lock().unwrap();
        let Some(listing) = inner.listings.get(&(kind.to_string(), list.to_string())) else {
            return Ok(ListedPage { documents: vec![], next: None });
        };
        let upper = match before {
            Some(before) => std::ops::Bound::Excluded(before.to_string()),
            None => std::ops::Bound::Unbounded,
        };
        let page: Vec<(&String, &Uuid)> = listing.range((std::ops::Bound::Unbounded, upper)).rev().take(limit.saturating_add(1)).collect();
        let next = (page.len() > limit).then(|| page[limit - 1].0.clone());
        let documents = page.iter().take(limit).filter_map(|(_, id)| inner.documents.get(&(kind.to_string(), **id)).cloned()).collect();
        Ok(ListedPage { documents, next })
    }
}

#[async_trait]
impl Checkpoints for MemoryReadStore {
    async fn checkpoint(&self, consumer: &str) -> Result<u64, StoreError> {
        Ok(self.inner.lock().unwrap().checkpoints.get(consumer).copied().unwrap_or(0))
    }
    async fn save_checkpoint(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        self.inner.lock().unwrap().checkpoints.insert(consumer.to_string(), position);
        Ok(())
    }
}

/// One row at a time (the trait's defaults): nothing to gain in memory.
impl ReadBatches for MemoryReadStore {}

#[derive(Default)]
pub struct MemoryExecutionStore {
    inner: Mutex<HashMap<(String, String), ExecutionRecord>>,
}

#[async_trait]
impl ExecutionStore for MemoryExecutionStore {
    async fn create(&self, record: &ExecutionRecord) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().unwrap();
        let key = (record.state_machine.clone(), record.name.clone());
        if inner.contains_key(&key) {
            return Ok(false);
        }
        inner.insert(key, record.clone());
        Ok(true)
    }
    async fn update(&self, record: &ExecutionRecord) -> Result<(), StoreError> {
        self.inner.lock().unwrap().insert((record.state_machine.clone(), record.name.clone()), record.clone());
        Ok(())
    }
    async fn get(&self, state_machine: &str, name: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        Ok(self.inner.lock().unwrap().get(&(state_machine.to_string(), name.to_string())).cloned())
    }
    async fn running(&self, state_machine: &str) -> Result<Vec<ExecutionRecord>, StoreError> {
        let inner = self.inner.lock().unwrap();
        let mut running: Vec<ExecutionRecord> =
            inner.values().filter(|r| r.state_machine == state_machine && r.status == ExecutionStatus::Running).cloned().collect();
        running.sort_by_key(|r| r.started_at);
        Ok(running)
    }
}

#[cfg(test)]
mod event_store_conformance {
    use super::*;
    crate::event_store_conformance!(async { MemoryEventStore::default() });
    crate::event_store_conformance!(feed async { MemoryEventStore::default() });
}

#[cfg(test)]
mod read_store_conformance {
    use super::*;
    crate::read_store_conformance!(async { MemoryReadStore::default() });
    crate::read_batches_conformance!(async { MemoryReadStore::default() });
}

#[cfg(test)]
mod execution_store_conformance {
    use super::*;
    crate::execution_store_conformance!(async { MemoryExecutionStore::default() });
}
