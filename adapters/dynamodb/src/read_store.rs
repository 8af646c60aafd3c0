//! Read models (wallet views, transaction history, transfer views), checkpoints and
//! saga executions in one DynamoDB table (`pk`, `sk`); see the crate documentation
//! for the item layout.

use crate::common::{escape, from_item, get_u64, n, reason_codes, s, sdk_error, time_key, to_item, Item, CONDITION_FAILED, TRANSACTION_CONFLICT};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use shared::ports::{
    Checkpoints, Document, DocumentViews, ExecutionRecord, ExecutionStatus, ExecutionStore, ListedPage, Listing, ReadBatches, ReadWrite, Saved, StoreError,
    TransactionHistory, TransactionItem, TransferView, TransferViews, WalletView, WalletViews,
};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// How often a write refused with `TransactionConflict` (another transaction on
/// the same item right now) is tried again before giving up.
const CONFLICT_RETRIES: u32 = 8;
/// `BatchGetItem` takes at most this many keys.
const BATCH_GET_KEYS: usize = 100;
const VIEW: &str = "VIEW";

/// The read models ([`WalletViews`], [`TransactionHistory`], [`TransferViews`],
/// [`Checkpoints`]) and saga executions ([`ExecutionStore`]) in one DynamoDB table.
/// Every read is strongly consistent; every view write is guarded by its version.
#[derive(Debug, Clone)]
pub struct DynamoReadStore {
    client: Client,
    table: String,
}

fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn wallet_pk(wallet_id: Uuid) -> String {
    format!("WALLET#{wallet_id}")
}

fn transaction_sk(version: u64) -> String {
    format!("TX#{version:020}")
}

fn owner_pk(owner_id: &str) -> String {
    format!("OWNER#{owner_id}")
}

fn transfer_pk(transfer_id: Uuid) -> String {
    format!("TRANSFER#{transfer_id}")
}

fn document_key(kind: &str, id: Uuid) -> Item {
    key(format!("DOC#{kind}#{id}"), VIEW)
}

/// Kinds are fixed names without `#`, so `LIST#<kind>#<list>` never meets another.
fn list_pk(kind: &str, list: &str) -> String {
    format!("LIST#{kind}#{list}")
}

/// A document's attributes: the body and the listings as JSON text, so that any
/// JSON (an empty object included, which DynamoDB Local's streams mangle) round-trips.
fn document_attributes(document: &Document) -> Item {
    let listings: Vec<(&str, &str)> = document.listings.iter().map(|l| (l.list.as_str(), l.sort_key.as_str())).collect();
    HashMap::from([
        ("id".to_string(), s(document.id.to_string())),
        ("version".to_string(), n(document.version)),
        ("body".to_string(), s(document.body.to_string())),
        ("listings".to_string(), s(serde_json::to_string(&listings).expect("pairs of strings serialise"))),
    ])
}

fn document_from_item(item: &Item, what: &str) -> Result<Document, StoreError> {
    let corrupt = |field: &str| StoreError::new(format!("dynamodb: corrupt {what}: bad {field}"));
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(text)) => Ok(text.as_str()),
        _ => Err(corrupt(name)),
    };
    let listings: Vec<(String, String)> = serde_json::from_str(text("listings")?).map_err(|_| corrupt("listings"))?;
    Ok(Document {
        id: text("id")?.parse().map_err(|_| corrupt("id"))?,
        version: get_u64(item, "version").ok_or_else(|| corrupt("version"))?,
        body: serde_json::from_str(text("body")?).map_err(|_| corrupt("body"))?,
        listings: listings.into_iter().map(|(list, sort_key)| Listing { list, sort_key }).collect(),
    })
}

fn checkpoint_key(consumer: &str) -> Item {
    key(format!("CHECKPOINT#{consumer}"), "CHECKPOINT")
}

fn execution_key(state_machine: &str, name: &str) -> Item {
    key(format!("EXECUTION#{}#{name}", escape(state_machine)), "EXECUTION")
}

fn running_pk(state_machine: &str) -> String {
    format!("RUNNING#{state_machine}")
}

fn running_key(state_machine: &str, name: &str) -> Item {
    key(running_pk(state_machine), format!("EXECUTION#{name}"))
}

/// The condition of a `PutItem`.
#[derive(Debug, Clone, Copy)]
enum Guard {
    None,
    /// No item has this key yet.
    Absent,
    /// The stored item is at this `version`.
    Version(u64),
}

/// Waits a little longer at every attempt, with jitter, before a retry.
async fn backoff(attempt: u32) {
    let jitter = (Uuid::new_v4().as_u128() % 5) as u64;
    tokio::time::sleep(Duration::from_millis((5 << attempt.min(6)) + jitter)).await;
}

fn put_action(table: &str, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder().table_name(table).set_item(Some(item)).set_condition_expression(condition.map(String::from)).build().map_err(StoreError::new)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

impl DynamoReadStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoReadStore { client, table: table.into() }
    }

    /// A `PutItem` under `guard`; `Ok(false)` if the guard failed. Retried on
    /// `TransactionConflict` (the item is part of a transaction right now).
    async fn put(&self, item: Item, guard: Guard, what: &str) -> Result<bool, StoreError> {
        let mut attempt = 0;
        loop {
            let request = self.client.put_item().table_name(&self.table).set_item(Some(item.clone()));
            let request = match guard {
                Guard::None => request,
                Guard::Absent => request.condition_expression("attribute_not_exists(pk)"),
                Guard::Version(previous) => request
                    .condition_expression("#version = :previous")
                    .expression_attribute_names("#version", "version")
                    .expression_attribute_values(":previous", n(previous)),
            };
            let error = match request.send().await {
                Ok(_) => return Ok(true),
                Err(error) => error,
            };
            match error.as_service_error() {
                Some(e) if e.is_conditional_check_failed_exception() => return Ok(false),
                Some(e) if e.is_transaction_conflict_exception() && attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                _ => return Err(sdk_error(what)(error)),
            }
        }
    }

    /// A `TransactWriteItems`: `Ok(Ok(()))` if written, `Ok(Err(codes))` if a
    /// condition failed (the cancellation reason codes, by action). Retried on
    /// `TransactionConflict`. Each attempt has its own `ClientRequestToken`, so an
    /// SDK retry of an attempt that did commit answers as committed.
    async fn transact(&self, actions: Vec<TransactWriteItem>, what: &str) -> Result<Result<(), Vec<String>>, StoreError> {
        let mut attempt = 0;
        loop {
            let sent =
                self.client.transact_write_items().set_transact_items(Some(actions.clone())).client_request_token(Uuid::new_v4().to_string()).send().await;
            let error = match sent {
                Ok(_) => return Ok(Ok(())),
                Err(error) => error,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = error.as_service_error() else {
                return Err(sdk_error(what)(error));
            };
            let codes: Vec<String> = reason_codes(cancelled).into_iter().map(String::from).collect();
            if codes.iter().any(|c| c == CONDITION_FAILED) {
                return Ok(Err(codes));
            }
            if codes.iter().any(|c| c == TRANSACTION_CONFLICT) && attempt < CONFLICT_RETRIES {
                attempt += 1;
                backoff(attempt).await;
                continue;
            }
            return Err(StoreError::new(format!("dynamodb: {what}: transaction cancelled: {codes:?}")));
        }
    }

    async fn get_item<T: DeserializeOwned>(&self, key: Item, what: impl FnOnce() -> String) -> Result<Option<T>, StoreError> {
        let found =
            self.client.get_item().table_name(&self.table).set_key(Some(key)).consistent_read(true).send().await.map_err(sdk_error("reading an item"))?;
        found.item.filter(|item| !item.is_empty()).map(|item| from_item(item, what)).transpose()
    }

    /// Every item of a partition (consistently, paginated), in `sk` order.
    async fn partition(&self, pk: String, what: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error(what))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// The version-guarded write of a view: absent counts as version 0.
    async fn save_view(&self, item: Item, previous_version: u64) -> Result<Saved, StoreError> {
        let guard = if previous_version == 0 { Guard::Absent } else { Guard::Version(previous_version) };
        let written = self.put(item, guard, "saving a view").await?;
        Ok(if written { Saved::Written } else { Saved::Stale })
    }

    /// Wallet views by id, consistently, in batches; absent ones are left out.
    async fn wallet_views(&self, wallet_ids: &[Uuid]) -> Result<HashMap<Uuid, WalletView>, StoreError> {
        let keys = wallet_ids.iter().map(|id| key(wallet_pk(*id), VIEW)).collect();
        let mut views = HashMap::with_capacity(wallet_ids.len());
        for item in self.batch_get(keys, "reading wallet views").await? {
            let view: WalletView = from_item(item, || "wallet view".to_string())?;
            views.insert(view.wallet_id, view);
        }
        Ok(views)
    }
}

#[async_trait]
impl WalletViews for DynamoReadStore {
    async fn wallet(&self, wallet_id: Uuid) -> Result<Option<WalletView>, StoreError> {
        self.get_item(key(wallet_pk(wallet_id), VIEW), || format!("wallet view {wallet_id}")).await
    }

    async fn save_wallet(&self, view: &WalletView, previous_version: u64) -> Result<Saved, StoreError> {
        let item = to_item(view, "a wallet view", [("pk", s(wallet_pk(view.wallet_id))), ("sk", s(VIEW))])?;
        if previous_version > 0 {
            return self.save_view(item, previous_version).await;
        }
        // The first view also writes the owner's index item, in the same
        // transaction: whoever lists the owner's wallets sees the new one as soon
        // as it can be read. Owner and creation time never change afterwards.
        let mut index = key(owner_pk(&view.owner_id), format!("{}#{}", time_key(&view.created_at), view.wallet_id));
        index.insert("walletId".into(), s(view.wallet_id.to_string()));
        let actions = vec![put_action(&self.table, item, Some("attribute_not_exists(pk)"))?, put_action(&self.table, index, None)?];
        match self.transact(actions, "creating a wallet view").await? {
            Ok(()) => Ok(Saved::Written),
            Err(codes) if codes.first().is_some_and(|c| c == CONDITION_FAILED) => Ok(Saved::Stale),
            Err(codes) => Err(StoreError::new(format!("dynamodb: creating a wallet view: transaction cancelled: {codes:?}"))),
        }
    }

    async fn wallets(&self, wallet_ids: &[Uuid]) -> Result<HashMap<Uuid, WalletView>, StoreError> {
        // BatchGetItem refuses a request that names a key twice.
        let mut unique = wallet_ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        self.wallet_views(&unique).await
    }

    async fn wallets_of_owner(&self, owner_id: &str) -> Result<Vec<WalletView>, StoreError> {
        let index = self.partition(owner_pk(owner_id), "listing an owner's wallets").await?;
        let ids = index
            .iter()
            .map(|item| match item.get("walletId") {
                Some(AttributeValue::S(id)) => id.parse::<Uuid>().map_err(|e| StoreError::new(format!("dynamodb: corrupt owner index of {owner_id}: {e}"))),
                _ => Err(StoreError::new(format!("dynamodb: corrupt owner index of {owner_id}: no walletId"))),
            })
            .collect::<Result<Vec<Uuid>, _>>()?;
        let mut views = self.wallet_views(&ids).await?;
        // The index is sorted by (creation time, wallet id): oldest first.
        Ok(ids.iter().filter_map(|id| views.remove(id)).collect())
    }
}

#[async_trait]
impl TransactionHistory for DynamoReadStore {
    async fn record_transaction(&self, item: &TransactionItem) -> Result<(), StoreError> {
        let stored = to_item(item, "a transaction", [("pk", s(wallet_pk(item.wallet_id))), ("sk", s(transaction_sk(item.version)))])?;
        // First write wins: a redelivery of the same (wallet, version) changes nothing.
        self.put(stored, Guard::Absent, "recording a transaction").await?;
        Ok(())
    }

    async fn transactions(&self, wallet_id: Uuid, limit: usize, before_version: Option<u64>) -> Result<Vec<TransactionItem>, StoreError> {
        if limit == 0 || before_version == Some(0) {
            return Ok(Vec::new());
        }
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .scan_index_forward(false)
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .expression_attribute_values(":pk", s(wallet_pk(wallet_id)))
                .set_exclusive_start_key(start.take());
            query = match before_version {
                None => query.key_condition_expression("pk = :pk AND begins_with(sk, :tx)").expression_attribute_values(":tx", s("TX#")),
                Some(before) => query
                    .key_condition_expression("pk = :pk AND sk BETWEEN :low AND :high")
                    .expression_attribute_values(":low", s("TX#"))
                    .expression_attribute_values(":high", s(transaction_sk(before - 1))),
            };
            let page = query.send().await.map_err(sdk_error("reading transactions"))?;
            for item in page.items.unwrap_or_default() {
                items.push(from_item::<TransactionItem>(item, || format!("transaction of wallet {wallet_id}"))?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() && items.len() < limit => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

#[async_trait]
impl TransferViews for DynamoReadStore {
    async fn transfer(&self, transfer_id: Uuid) -> Result<Option<TransferView>, StoreError> {
        self.get_item(key(transfer_pk(transfer_id), VIEW), || format!("transfer view {transfer_id}")).await
    }

    async fn save_transfer(&self, view: &TransferView, previous_version: u64) -> Result<Saved, StoreError> {
        let item = to_item(view, "a transfer view", [("pk", s(transfer_pk(view.transfer_id))), ("sk", s(VIEW))])?;
        self.save_view(item, previous_version).await
    }
}

/// A document and its listing copies change in one `TransactWriteItems`, the
/// document's put guarded by its version; listings it no longer has are deleted
/// there too (the stored document says which it had).
#[async_trait]
impl DocumentViews for DynamoReadStore {
    async fn document(&self, kind: &str, id: Uuid) -> Result<Option<Document>, StoreError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(document_key(kind, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("reading a document"))?;
        found.item.filter(|item| !item.is_empty()).map(|item| document_from_item(&item, &format!("{kind} document {id}"))).transpose()
    }

    async fn save_document(&self, kind: &str, document: &Document, previous: Option<&Document>) -> Result<Saved, StoreError> {
        let previous_version = previous.map_or(0, |d| d.version);
        // The put is guarded by that version, so `previous` is what is stored if the
        // transaction commits: its listings are the ones to drop.
        let dropped: Vec<&Listing> = previous.map_or(vec![], |p| p.listings.iter().filter(|l| !document.listings.contains(l)).collect());
        if document.listings.len() + dropped.len() >= 100 {
            return Err(StoreError::new(format!("dynamodb: {kind} document {} has too many listings for one transaction", document.id)));
        }
        let attributes = document_attributes(document);
        let mut item = document_key(kind, document.id);
        item.extend(attributes.clone());
        let (condition, guard) = if previous_version == 0 { ("attribute_not_exists(pk)", None) } else { ("#version = :previous", Some(previous_version)) };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(guard.map(|_| HashMap::from([("#version".to_string(), "version".to_string())])))
            .set_expression_attribute_values(guard.map(|previous| HashMap::from([(":previous".to_string(), n(previous))])))
            .build()
            .map_err(StoreError::new)?;
        let mut actions = vec![TransactWriteItem::builder().put(put).build()];
        for listing in &document.listings {
            let mut copy = key(list_pk(kind, &listing.list), listing.sort_key.clone());
            copy.extend(attributes.clone());
            actions.push(put_action(&self.table, copy, None)?);
        }
        for listing in &dropped {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(list_pk(kind, &listing.list), listing.sort_key.clone())))
                .build()
                .map_err(StoreError::new)?;
            actions.push(TransactWriteItem::builder().delete(delete).build());
        }
        match self.transact(actions, "saving a document").await? {
            Ok(()) => Ok(Saved::Written),
            Err(codes) if codes.first().is_some_and(|c| c == CONDITION_FAILED) => Ok(Saved::Stale),
            Err(codes) => Err(StoreError::new(format!("dynamodb: saving a document: transaction cancelled: {codes:?}"))),
        }
    }

    async fn listed(&self, kind: &str, list: &str, limit: usize, before: Option<&str>) -> Result<ListedPage, StoreError> {
        let mut documents = Vec::new();
        let mut more = false;
        let mut start: Option<Item> = None;
        // One more than asked: whether there is a next page.
        while documents.len() <= limit {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .scan_index_forward(false)
                .limit(i32::try_from(limit + 1 - documents.len()).unwrap_or(i32::MAX))
                .expression_attribute_values(":pk", s(list_pk(kind, list)))
                .set_exclusive_start_key(start.take());
            let query = match before {
                Some(before) => query.key_condition_expression("pk = :pk AND sk < :before").expression_attribute_values(":before", s(before)),
                None => query.key_condition_expression("pk = :pk"),
            };
            let page = query.send().await.map_err(sdk_error("listing documents"))?;
            for item in page.items.unwrap_or_default() {
                let sort_key = match item.get("sk") {
                    Some(AttributeValue::S(sk)) => sk.clone(),
                    _ => return Err(StoreError::new(format!("dynamodb: corrupt listing in {list}: no sort key"))),
                };
                documents.push((sort_key, document_from_item(&item, &format!("{kind} listing in {list}"))?));
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        if documents.len() > limit {
            more = true;
            documents.truncate(limit);
        }
        let next = if more { documents.last().map(|(sort_key, _)| sort_key.clone()) } else { None };
        Ok(ListedPage { documents: documents.into_iter().map(|(_, document)| document).collect(), next })
    }
}

/// One row at a time (the trait's defaults): DynamoDB has no multi-row guarded
/// write cheaper than the rows' own.
/// A batch of projections costs few requests: the views it needs in one
/// `BatchGetItem` (per 100), and its writes in as few `TransactWriteItems` (100
/// actions each) as the version guards allow. Each view's run of writes — version
/// after version, each guarded on the one before — is one write of the last state,
/// guarded on the version the run started from; history lines are first-write-wins
/// puts. When a transaction's guard fails (a redelivery, another projector got
/// there first), its writes are done again one by one, so every write ends exactly
/// as its one-row method would.
#[async_trait]
impl ReadBatches for DynamoReadStore {
    async fn views(&self, wallet_ids: &[Uuid], transfer_ids: &[Uuid]) -> Result<(Vec<WalletView>, Vec<TransferView>), StoreError> {
        let keys: Vec<Item> = wallet_ids.iter().map(|id| key(wallet_pk(*id), VIEW)).chain(transfer_ids.iter().map(|id| key(transfer_pk(*id), VIEW))).collect();
        let (mut wallets, mut transfers) = (Vec::new(), Vec::new());
        for item in self.batch_get(keys, "reading views").await? {
            match item.get("pk") {
                Some(AttributeValue::S(pk)) if pk.starts_with("WALLET#") => wallets.push(from_item(item, || "wallet view".to_string())?),
                _ => transfers.push(from_item(item, || "transfer view".to_string())?),
            }
        }
        Ok((wallets, transfers))
    }

    async fn write_batch(&self, writes: &[ReadWrite]) -> Result<Vec<Option<Saved>>, StoreError> {
        let mut outcomes: Vec<Option<Option<Saved>>> = vec![None; writes.len()];
        let plan = plan_batch(writes);
        for (index, outcome) in &plan.settled {
            outcomes[*index] = Some(*outcome);
        }
        let mut chunks: Vec<Vec<&Grouped>> = vec![vec![]];
        let mut actions = 0;
        for group in &plan.groups {
            let size = group.action_count();
            if actions + size > MAX_TRANSACT_ACTIONS {
                chunks.push(vec![]);
                actions = 0;
            }
            chunks.last_mut().expect("one chunk at least").push(group);
            actions += size;
        }
        for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
            let mut transaction = Vec::with_capacity(MAX_TRANSACT_ACTIONS);
            for group in &chunk {
                transaction.extend(group.actions(&self.table, writes)?);
            }
            match self.transact(transaction, "writing a batch of views").await? {
                Ok(()) => {
                    for group in &chunk {
                        for &index in &group.indices {
                            outcomes[index] = Some(match writes[index] {
                                ReadWrite::Transaction(_) => None,
                                _ => Some(Saved::Written),
                            });
                        }
                    }
                }
                // A guard failed: each write of the chunk again, alone, with its own guard.
                Err(_) => {
                    for group in &chunk {
                        for &index in &group.indices {
                            outcomes[index] = Some(writes[index].apply_alone(self).await?);
                        }
                    }
                }
            }
        }
        // Writes that follow no run (a stale redelivery inside the batch) go last, alone.
        for &index in &plan.loose {
            outcomes[index] = Some(writes[index].apply_alone(self).await?);
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every write has an outcome")).collect())
    }
}

/// `TransactWriteItems` takes at most this many actions.
const MAX_TRANSACT_ACTIONS: usize = 100;

/// How a batch of writes goes to DynamoDB.
#[derive(Default)]
struct BatchPlan {
    /// Runs of one view's writes, and single history lines, in first-write order.
    groups: Vec<Grouped>,
    /// Writes to do alone after the groups (they follow no run).
    loose: Vec<usize>,
    /// Writes whose outcome is known without a request (a history line written
    /// earlier in the same batch: first write wins).
    settled: Vec<(usize, Option<Saved>)>,
}

/// One run: the indices of its writes, in order.
struct Grouped {
    indices: Vec<usize>,
    /// The version the view's run started from (0: the view is new); `None` for a history line.
    from_version: Option<u64>,
    /// A new wallet view also writes its owner's index item.
    new_wallet: bool,
}

impl Grouped {
    fn action_count(&self) -> usize {
        if self.new_wallet {
            2
        } else {
            1
        }
    }

    fn actions(&self, table: &str, writes: &[ReadWrite]) -> Result<Vec<TransactWriteItem>, StoreError> {
        let last = &writes[*self.indices.last().expect("a run has a write")];
        let guard = match self.from_version {
            None | Some(0) => "attribute_not_exists(pk)".to_string(),
            Some(version) => format!("#version = :v{version}x"),
        };
        let item = match last {
            ReadWrite::Wallet { view, .. } => to_item(view, "a wallet view", [("pk", s(wallet_pk(view.wallet_id))), ("sk", s(VIEW))])?,
            ReadWrite::Transfer { view, .. } => to_item(view, "a transfer view", [("pk", s(transfer_pk(view.transfer_id))), ("sk", s(VIEW))])?,
            ReadWrite::Transaction(line) => to_item(line, "a transaction", [("pk", s(wallet_pk(line.wallet_id))), ("sk", s(transaction_sk(line.version)))])?,
        };
        let mut put = Put::builder().table_name(table).set_item(Some(item)).condition_expression(guard);
        if let Some(version) = self.from_version.filter(|v| *v > 0) {
            put = put.expression_attribute_names("#version", "version").expression_attribute_values(format!(":v{version}x"), n(version));
        }
        let mut actions = vec![TransactWriteItem::builder().put(put.build().map_err(StoreError::new)?).build()];
        if let (true, ReadWrite::Wallet { view, .. }) = (self.new_wallet, last) {
            let mut index = key(owner_pk(&view.owner_id), format!("{}#{}", time_key(&view.created_at), view.wallet_id));
            index.insert("walletId".into(), s(view.wallet_id.to_string()));
            actions.push(put_action(table, index, None)?);
        }
        Ok(actions)
    }
}

/// Groups each view's chain of writes (every write guarded on the version the one
/// before it wrote) into one run; history lines each make their own.
fn plan_batch(writes: &[ReadWrite]) -> BatchPlan {
    let mut plan = BatchPlan::default();
    // Per view: its run's index in `groups` and the version its last write wrote.
    let mut runs: HashMap<(&str, Uuid), (usize, u64)> = HashMap::new();
    let mut lines: std::collections::HashSet<(Uuid, u64)> = std::collections::HashSet::new();
    for (index, write) in writes.iter().enumerate() {
        let (view, previous, version) = match write {
            ReadWrite::Wallet { view, previous_version } => (("wallet", view.wallet_id), *previous_version, view.version),
            ReadWrite::Transfer { view, previous_version } => (("transfer", view.transfer_id), *previous_version, view.version),
            ReadWrite::Transaction(line) => {
                if lines.insert((line.wallet_id, line.version)) {
                    plan.groups.push(Grouped { indices: vec![index], from_version: None, new_wallet: false });
                } else {
                    plan.settled.push((index, None));
                }
                continue;
            }
        };
        match runs.get_mut(&view) {
            Some((group, last)) if *last == previous && version > previous => {
                plan.groups[*group].indices.push(index);
                *last = version;
            }
            Some(_) => plan.loose.push(index),
            None if version > previous => {
                runs.insert(view, (plan.groups.len(), version));
                let new_wallet = view.0 == "wallet" && previous == 0;
                plan.groups.push(Grouped { indices: vec![index], from_version: Some(previous), new_wallet });
            }
            None => plan.loose.push(index),
        }
    }
    plan
}

impl DynamoReadStore {
    /// Items by key, consistently, 100 keys a request; absent ones are left out.
    async fn batch_get(&self, keys: Vec<Item>, what: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            let mut pending = Some(KeysAndAttributes::builder().set_keys(Some(chunk.to_vec())).consistent_read(true).build().map_err(StoreError::new)?);
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let out = self.client.batch_get_item().request_items(&self.table, request).send().await.map_err(sdk_error(what))?;
                items.extend(out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
                if let Some(unprocessed) = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys.is_empty()) {
                    attempt += 1;
                    if attempt > CONFLICT_RETRIES {
                        return Err(StoreError::new(format!("dynamodb: {what}: keys left unprocessed after retries")));
                    }
                    backoff(attempt).await;
                    pending = Some(unprocessed);
                }
            }
        }
        Ok(items)
    }
}

#[async_trait]
impl Checkpoints for DynamoReadStore {
    async fn checkpoint(&self, consumer: &str) -> Result<u64, StoreError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(checkpoint_key(consumer)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("reading a checkpoint"))?;
        match found.item.filter(|item| !item.is_empty()) {
            None => Ok(0),
            Some(item) => get_u64(&item, "position").ok_or_else(|| StoreError::new(format!("dynamodb: corrupt checkpoint {consumer}: no numeric position"))),
        }
    }

    async fn save_checkpoint(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        let mut item = checkpoint_key(consumer);
        item.insert("position".into(), n(position));
        self.put(item, Guard::None, "saving a checkpoint").await?;
        Ok(())
    }
}

impl DynamoReadStore {
    /// The execution's item and, while it runs, its copy in the running index.
    fn execution_actions(&self, record: &ExecutionRecord, condition: Option<&str>) -> Result<Vec<TransactWriteItem>, StoreError> {
        let item = to_item(record, "an execution", execution_key(&record.state_machine, &record.name))?;
        let running_key = running_key(&record.state_machine, &record.name);
        let index = if record.status == ExecutionStatus::Running {
            put_action(&self.table, to_item(record, "an execution", running_key)?, None)?
        } else {
            let delete = Delete::builder().table_name(&self.table).set_key(Some(running_key)).build().map_err(StoreError::new)?;
            TransactWriteItem::builder().delete(delete).build()
        };
        Ok(vec![put_action(&self.table, item, condition)?, index])
    }
}

#[async_trait]
impl ExecutionStore for DynamoReadStore {
    async fn create(&self, record: &ExecutionRecord) -> Result<bool, StoreError> {
        let actions = self.execution_actions(record, Some("attribute_not_exists(pk)"))?;
        match self.transact(actions, "starting an execution").await? {
            Ok(()) => Ok(true),
            Err(codes) if codes.first().is_some_and(|c| c == CONDITION_FAILED) => Ok(false),
            Err(codes) => Err(StoreError::new(format!("dynamodb: starting an execution: transaction cancelled: {codes:?}"))),
        }
    }

    async fn update(&self, record: &ExecutionRecord) -> Result<(), StoreError> {
        let actions = self.execution_actions(record, None)?;
        match self.transact(actions, "updating an execution").await? {
            Ok(()) => Ok(()),
            Err(codes) => Err(StoreError::new(format!("dynamodb: updating an execution: transaction cancelled: {codes:?}"))),
        }
    }

    async fn get(&self, state_machine: &str, name: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        self.get_item(execution_key(state_machine, name), || format!("execution {state_machine}/{name}")).await
    }

    async fn running(&self, state_machine: &str) -> Result<Vec<ExecutionRecord>, StoreError> {
        let items = self.partition(running_pk(state_machine), "listing running executions").await?;
        let mut running = items
            .into_iter()
            .map(|item| from_item::<ExecutionRecord>(item, || format!("running execution of {state_machine}")))
            .collect::<Result<Vec<_>, _>>()?;
        running.sort_by(|a, b| (a.started_at, &a.name).cmp(&(b.started_at, &b.name)));
        Ok(running)
    }
}
