//! GraphQL's wallet loader batches: fifty wallets asked in one query are one read
//! of the store, where REST (or a resolver without the loader) makes fifty. Also the
//! measurement behind BENCHMARKS.md's GraphQL line:
//!
//! ```sh
//! cargo test --release -p api --test graphql_batching -- --nocapture
//! ```

mod support;

use api::auth::with_caller;
use api::{handle, App, Route};
use async_trait::async_trait;
use serde_json::{json, Value};
use shared::memory::MemoryReadStore;
use shared::ports::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{caller, World};
use uuid::Uuid;

/// The in-memory read store, counting the wallet reads that reach it.
struct Counting {
    inner: Arc<MemoryReadStore>,
    single: AtomicUsize,
    batched: AtomicUsize,
}

impl Counting {
    fn reads(&self) -> (usize, usize) {
        (self.single.swap(0, Ordering::SeqCst), self.batched.swap(0, Ordering::SeqCst))
    }
}

#[async_trait]
impl WalletViews for Counting {
    async fn wallet(&self, wallet_id: Uuid) -> Result<Option<WalletView>, StoreError> {
        self.single.fetch_add(1, Ordering::SeqCst);
        self.inner.wallet(wallet_id).await
    }
    async fn wallets(&self, wallet_ids: &[Uuid]) -> Result<HashMap<Uuid, WalletView>, StoreError> {
        self.batched.fetch_add(1, Ordering::SeqCst);
        self.inner.wallets(wallet_ids).await
    }
    async fn save_wallet(&self, view: &WalletView, previous_version: u64) -> Result<Saved, StoreError> {
        self.inner.save_wallet(view, previous_version).await
    }
    async fn wallets_of_owner(&self, owner_id: &str) -> Result<Vec<WalletView>, StoreError> {
        self.inner.wallets_of_owner(owner_id).await
    }
}

#[async_trait]
impl TransactionHistory for Counting {
    async fn record_transaction(&self, item: &TransactionItem) -> Result<(), StoreError> {
        self.inner.record_transaction(item).await
    }
    async fn transactions(&self, wallet_id: Uuid, limit: usize, before_version: Option<u64>) -> Result<Vec<TransactionItem>, StoreError> {
        self.inner.transactions(wallet_id, limit, before_version).await
    }
}

#[async_trait]
impl TransferViews for Counting {
    async fn transfer(&self, transfer_id: Uuid) -> Result<Option<TransferView>, StoreError> {
        self.inner.transfer(transfer_id).await
    }
    async fn save_transfer(&self, view: &TransferView, previous_version: u64) -> Result<Saved, StoreError> {
        self.inner.save_transfer(view, previous_version).await
    }
}

#[async_trait]
impl DocumentViews for Counting {
    async fn document(&self, kind: &str, id: Uuid) -> Result<Option<Document>, StoreError> {
        self.inner.document(kind, id).await
    }
    async fn save_document(&self, kind: &str, document: &Document, previous: Option<&Document>) -> Result<Saved, StoreError> {
        self.inner.save_document(kind, document, previous).await
    }
    async fn listed(&self, kind: &str, list: &str, limit: usize, before: Option<&str>) -> Result<ListedPage, StoreError> {
        self.inner.listed(kind, list, limit, before).await
    }
}

#[async_trait]
impl Checkpoints for Counting {
    async fn checkpoint(&self, consumer: &str) -> Result<u64, StoreError> {
        self.inner.checkpoint(consumer).await
    }
    async fn save_checkpoint(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        self.inner.save_checkpoint(consumer, position).await
    }
}

const WALLETS: usize = 50;

/// Alice's fifty wallets, and the app reading them through the counting store.
async fn fifty_wallets() -> (App, Arc<Counting>, Vec<String>) {
    let world = World::new();
    let alice = caller("alice", &[]);
    let mut ids = Vec::new();
    for _ in 0..WALLETS {
        ids.push(world.wallet(&alice, "personal", 10).await);
    }
    let counting = Arc::new(Counting { inner: world.read.clone(), single: AtomicUsize::new(0), batched: AtomicUsize::new(0) });
    let app = App { read: counting.clone(), ..world.app.clone() };
    (app, counting, ids)
}

async fn call(app: &App, route: Route, as_sub: &str, path: &[(&str, &str)], body: Option<Value>) -> Value {
    let mut request = lambda_http::Request::new(body.map_or(lambda_http::Body::Empty, |b| lambda_http::Body::Text(b.to_string())));
    *request.method_mut() = route.method().parse().unwrap();
    *request.uri_mut() = route.path().parse().unwrap();
    let request = lambda_http::RequestExt::with_path_parameters(request, path.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>());
    let response = handle(app, route, with_caller(request, &caller(as_sub, &[]))).await;
    assert_eq!(response.status(), 200);
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

/// Fifty `wallet(id:)` fields under aliases, and the same fifty as `wallets(ids:)`.
fn queries(ids: &[String]) -> [Value; 2] {
    let aliased: String = ids.iter().enumerate().map(|(i, id)| format!("w{i}: wallet(id: \"{id}\") {{ walletId balance }} ")).collect();
    [
        json!({"query": format!("{{ {aliased} }}")}),
        json!({"query": "query($ids: [ID!]!) { wallets(ids: $ids) { walletId balance } }", "variables": {"ids": ids}}),
    ]
}

#[tokio::test]
async fn fifty_wallets_in_one_query_are_one_read_of_the_store() {
    let (app, counting, ids) = fifty_wallets().await;
    for query in queries(&ids) {
        let answer = call(&app, Route::GraphQL, "alice", &[], Some(query)).await;
        assert!(answer.get("errors").is_none(), "{answer}");
        let data = answer["data"].as_object().unwrap();
        let count = data.get("wallets").map_or(data.len(), |list| list.as_array().unwrap().len());
        assert_eq!(count, WALLETS);
        assert_eq!(counting.reads(), (0, 1), "no single reads, one batch");
    }
    // A stranger's fifty: one batch read too, and every one refused.
    let [aliased, _] = queries(&ids);
    let refused = call(&app, Route::GraphQL, "mallory", &[], Some(aliased)).await;
    let codes: Vec<_> = refused["errors"].as_array().unwrap().iter().map(|e| e["extensions"]["code"].as_str().unwrap()).collect();
    assert_eq!(codes, vec!["FORBIDDEN"; WALLETS]);
    assert_eq!(counting.reads(), (0, 1));

    // REST: one read per wallet.
    for id in &ids {
        call(&app, Route::GetWallet, "alice", &[("walletId", id)], None).await;
    }
    assert_eq!(counting.reads(), (WALLETS, 0));
}

/// Latency of the fifty-wallet query against fifty REST reads, same process, same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_wallets_latency_against_fifty_rest_reads() {
    let (app, _counting, ids) = fifty_wallets().await;
    let [aliased, listed] = queries(&ids);
    let rounds = 200;
    let time = |label: &'static str, run: Duration| {
        let per = run / rounds;
        println!("{label}: {per:?} per 50 wallets");
        per
    };
    let started = Instant::now();
    for _ in 0..rounds {
        for id in &ids {
            call(&app, Route::GetWallet, "alice", &[("walletId", id)], None).await;
        }
    }
    let rest = time("REST, 50 × GET /wallets/{id}", started.elapsed());
    let started = Instant::now();
    for _ in 0..rounds {
        call(&app, Route::GraphQL, "alice", &[], Some(aliased.clone())).await;
    }
    let aliased = time("GraphQL, 50 aliased wallet(id:)", started.elapsed());
    let started = Instant::now();
    for _ in 0..rounds {
        call(&app, Route::GraphQL, "alice", &[], Some(listed.clone())).await;
    }
    let listed = time("GraphQL, wallets(ids: 50)", started.elapsed());
    println!("ratios to REST: aliased {:.2}, wallets(ids) {:.2}", aliased.as_secs_f64() / rest.as_secs_f64(), listed.as_secs_f64() / rest.as_secs_f64());
}
