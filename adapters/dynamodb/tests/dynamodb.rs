//! What the conformance suites do not cover: DynamoDB's limits (100 actions per
//! transaction, 1 MB query pages, 100 keys per batch read), concurrency through
//! transactions, read-after-write, the item layout other components rely on (the
//! stream consumers, TTL), corrupt items, and the request counter.

mod common;

use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType, TimeToLiveStatus};
use common::{client_for, endpoint, event_store, event_store_with, read_store, Tables};
use shared::conformance::read_store::{transaction, wallet};
use shared::conformance::{append, envelope, idempotency};
use shared::ports::*;
use std::collections::HashMap;
use std::sync::Arc;
use store_dynamodb::{DynamoBackend, DynamoEventStore, RequestCounter, MAX_TRANSACTION_ACTIONS};
use uuid::Uuid;

fn stream(id: Uuid) -> String {
    format!("wallet#{id}")
}

fn key(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn a_100_action_commit_is_written_and_101_are_refused_before_any_request() {
    let counter = RequestCounter::new();
    let fresh = event_store_with(client_for(&endpoint(), Some(&counter))).await;
    let store = &fresh.store;
    assert_eq!(MAX_TRANSACTION_ACTIONS, 100);

    // 98 events + the check of version 1 + the idempotency record = 100 actions.
    let a = Uuid::now_v7();
    store.append(Commit { streams: vec![append(a, 0, 1)], idempotency: None }).await.unwrap();
    counter.take();
    store.append(Commit { streams: vec![append(a, 1, 98)], idempotency: Some(idempotency("alice", "k-100")) }).await.unwrap();
    assert_eq!(counter.take(), 1, "one transaction");
    assert_eq!(store.load(&stream(a), 0).await.unwrap().len(), 99);
    // 100 events of a new stream, nothing else: 100 actions.
    let b = Uuid::now_v7();
    store.append(Commit { streams: vec![append(b, 0, 100)], idempotency: None }).await.unwrap();
    assert_eq!(store.load(&stream(b), 0).await.unwrap().len(), 100);

    // 100 events + the idempotency record = 101; a check more = 101 too.
    let c = Uuid::now_v7();
    counter.take();
    let refusals = [
        Commit { streams: vec![append(c, 0, 100)], idempotency: Some(idempotency("alice", "k-101")) },
        Commit { streams: vec![append(c, 0, 99), StreamAppend { stream_id: stream(a), expected_version: 99, events: vec![] }], idempotency: None },
    ];
    for commit in refusals {
        match store.append(commit).await {
            Err(AppendError::Store(StoreError(message))) => {
                assert!(message.contains("101") && message.contains("100"), "a clear message: {message}");
            }
            other => panic!("expected a store error, got {other:?}"),
        }
    }
    assert_eq!(counter.take(), 0, "refused before sending anything");
    assert!(store.load(&stream(c), 0).await.unwrap().is_empty());
    assert!(store.idempotency("alice", "k-101").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn of_concurrent_first_appends_one_wins_and_only_its_key_is_stored() {
    let fresh = event_store().await;
    let store = Arc::new(fresh.store.clone());
    let id = Uuid::now_v7();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let result = store.append(Commit { streams: vec![append(id, 0, 2)], idempotency: Some(idempotency("alice", &format!("k-{i}"))) }).await;
                (i, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (i, Ok(())) => winners.push(i),
            (_, Err(AppendError::VersionConflict { stream_id })) => assert_eq!(stream_id, stream(id)),
            (_, Err(other)) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(store.load(&stream(id), 0).await.unwrap().len(), 2);
    for i in 0..16 {
        assert_eq!(store.idempotency("alice", &format!("k-{i}")).await.unwrap().is_some(), i == winners[0], "key k-{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn of_concurrent_commits_under_one_idempotency_key_one_is_stored_and_the_others_get_it() {
    let fresh = event_store().await;
    let store = Arc::new(fresh.store.clone());
    let commit = |i: usize| {
        let mut record = idempotency("alice", "shared-key");
        record.request_hash = format!("hash-{i}");
        Commit { streams: vec![append(Uuid::now_v7(), 0, 1)], idempotency: Some(record) }
    };
    let commits: Vec<Commit> = (0..8).map(commit).collect();
    let tasks: Vec<_> = commits
        .iter()
        .cloned()
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move { store.append(c).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    let winners: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let stored = store.idempotency("alice", "shared-key").await.unwrap().expect("stored");
    assert_eq!(stored, commits[winners[0]].idempotency.clone().unwrap());
    for (i, result) in results.into_iter().enumerate().filter(|(i, _)| *i != winners[0]) {
        match result {
            Err(AppendError::IdempotencyKeyUsed(existing)) => assert_eq!(*existing, stored),
            // Lost to the winner's transaction while it was in flight: the retry sees the key.
            Err(AppendError::VersionConflict { .. }) => {
                let again = store.append(commits[i].clone()).await.unwrap_err();
                assert_eq!(again, AppendError::IdempotencyKeyUsed(Box::new(stored.clone())));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(store.load(&commits[i].streams[0].stream_id, 0).await.unwrap().is_empty(), "a refused commit wrote no event");
    }
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn the_request_counter_counts_every_request_sent() {
    let counter = RequestCounter::new();
    let client = client_for(&endpoint(), Some(&counter));
    let tables = Tables::create(&client).await;
    let backend = DynamoBackend::new(client.clone(), &tables.names);
    counter.take();

    let id = Uuid::now_v7();
    backend.events.append(Commit { streams: vec![append(id, 0, 3)], idempotency: Some(idempotency("alice", "k-1")) }).await.unwrap();
    assert_eq!(counter.take(), 1, "a commit is one TransactWriteItems");
    assert_eq!(backend.events.load(&stream(id), 0).await.unwrap().len(), 3);
    assert_eq!(counter.take(), 1, "a short stream is one Query");
    assert!(backend.events.idempotency("alice", "k-1").await.unwrap().is_some());
    assert_eq!(counter.take(), 1);
    let err = backend.events.append(Commit { streams: vec![append(id, 3, 1)], idempotency: Some(idempotency("alice", "k-1")) }).await.unwrap_err();
    assert!(matches!(err, AppendError::IdempotencyKeyUsed(_)));
    assert_eq!(counter.take(), 1, "the used record comes back with the cancellation (ALL_OLD): no extra read");

    let view = wallet("owner-1", 1, 0);
    backend.read.save_wallet(&view, 0).await.unwrap();
    assert_eq!(counter.take(), 1, "the first view and its owner index item: one transaction");
    assert_eq!(backend.read.wallets_of_owner("owner-1").await.unwrap(), vec![view]);
    assert_eq!(counter.take(), 2, "Query of the owner index + BatchGetItem");

    let other = RequestCounter::new();
    let from_env = store_dynamodb::client_from_env_counted(Some(&endpoint()), &other).await;
    from_env.list_tables().limit(1).send().await.expect("client_from_env reaches the endpoint (it needs AWS credentials in the environment)");
    assert_eq!(other.get(), 1);
    assert_eq!(counter.get(), 0, "counters are per client");
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn load_right_after_append_sees_the_events_from_any_client() {
    let fresh = event_store().await;
    let other = DynamoEventStore::new(common::client(), &fresh.tables.names.events, &fresh.tables.names.idempotency);
    let id = Uuid::now_v7();
    for version in 0..30 {
        let next = append(id, version, 1);
        fresh.store.append(Commit { streams: vec![next.clone()], idempotency: None }).await.unwrap();
        let loaded = other.load(&stream(id), version).await.unwrap();
        assert_eq!(loaded, next.events, "after append {}", version + 1);
        assert_eq!(fresh.store.load(&stream(id), 0).await.unwrap().len() as u64, version + 1);
    }
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn a_stream_longer_than_one_query_page_loads_whole_and_in_order() {
    let counter = RequestCounter::new();
    let fresh = event_store_with(client_for(&endpoint(), Some(&counter))).await;
    let id = Uuid::now_v7();
    let padding = "x".repeat(2_000);
    let mut expected = Vec::new();
    // 7 × 99 events of ~2 KB: more than the 1 MB a Query page holds.
    for commit in 0..7u64 {
        let mut next = append(id, commit * 99, 99);
        for event in &mut next.events {
            event.data["padding"] = serde_json::Value::String(padding.clone());
        }
        expected.extend(next.events.clone());
        fresh.store.append(Commit { streams: vec![next], idempotency: None }).await.unwrap();
    }
    counter.take();
    let loaded = fresh.store.load(&stream(id), 0).await.unwrap();
    assert!(counter.take() >= 2, "more than one page");
    assert_eq!(loaded.len(), expected.len());
    assert!(loaded == expected, "every event intact, in version order");
    assert_eq!(fresh.store.load(&stream(id), 600).await.unwrap(), expected[600..].to_vec());
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn items_have_the_documented_layout() {
    let client = common::client();
    let tables = Tables::create(&client).await;
    let backend = DynamoBackend::new(client.clone(), &tables.names);
    let id = Uuid::now_v7();
    let record = idempotency("alice", "k-1");
    backend.events.append(Commit { streams: vec![append(id, 0, 1)], idempotency: Some(record.clone()) }).await.unwrap();
    let get = |table: &str, key: HashMap<String, AttributeValue>| {
        let request = client.get_item().table_name(table).set_key(Some(key)).consistent_read(true);
        async move { request.send().await.unwrap().item.expect("the item exists") }
    };

    let event = get(&tables.names.events, key(&[("streamId", s(stream(id))), ("version", n(1))])).await;
    assert_eq!(event["aggregateType"], s("wallet"));
    assert_eq!(event["aggregateId"], s(id.to_string()));
    assert_eq!(event["eventType"], s("WalletCredited"));
    assert_eq!(event["schemaVersion"], n(1));
    let AttributeValue::M(data) = &event["data"] else { panic!("data is a map: {:?}", event["data"]) };
    assert_eq!(data["amount"], n(1050));
    assert!(matches!(&data["nested"], AttributeValue::M(nested) if matches!(nested["list"], AttributeValue::L(_))));
    let AttributeValue::M(metadata) = &event["metadata"] else { panic!("metadata is a map") };
    assert_eq!(metadata["userId"], s("alice"));

    let stored = get(&tables.names.idempotency, key(&[("pk", s("alice#k-1"))])).await;
    assert_eq!(stored["expiresAt"], n(record.expires_at.timestamp()), "TTL in epoch seconds");
    assert!(matches!(&stored["record"], AttributeValue::M(r) if r["requestHash"] == s("hash-1")));

    let view = wallet("owner-1", 1, 0);
    backend.read.save_wallet(&view, 0).await.unwrap();
    backend.read.record_transaction(&transaction(view.wallet_id, 3)).await.unwrap();
    let pk = format!("WALLET#{}", view.wallet_id);
    let item = get(&tables.names.read, key(&[("pk", s(&pk)), ("sk", s("VIEW"))])).await;
    assert_eq!(item["balance"], n(64_975), "money in minor units");
    assert_eq!(item["version"], n(1));
    let tx = get(&tables.names.read, key(&[("pk", s(&pk)), ("sk", s("TX#00000000000000000003"))])).await;
    assert_eq!(tx["amount"], n(300));
    let owner_sk = format!("{}#{}", view.created_at.format("%Y-%m-%dT%H:%M:%S%.9fZ"), view.wallet_id);
    let index = get(&tables.names.read, key(&[("pk", s("OWNER#owner-1")), ("sk", s(owner_sk))])).await;
    assert_eq!(index["walletId"], s(view.wallet_id.to_string()));
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn created_tables_stream_new_images_and_expire_idempotency_records() {
    let client = common::client();
    let tables = Tables::create(&client).await;
    let events = client.describe_table().table_name(&tables.names.events).send().await.unwrap().table.unwrap();
    let spec = events.stream_specification.expect("a stream");
    assert!(spec.stream_enabled);
    assert_eq!(spec.stream_view_type, Some(StreamViewType::NewImage));
    assert!(events.latest_stream_arn.is_some());
    for table in [&tables.names.events, &tables.names.idempotency, &tables.names.read] {
        let description = client.describe_table().table_name(table).send().await.unwrap().table.unwrap();
        let billing = description.billing_mode_summary.and_then(|b| b.billing_mode);
        assert_eq!(billing, Some(aws_sdk_dynamodb::types::BillingMode::PayPerRequest), "{table}");
    }
    let ttl = client.describe_time_to_live().table_name(&tables.names.idempotency).send().await.unwrap().time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name.as_deref(), Some("expiresAt"));
    assert!(matches!(ttl.time_to_live_status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)));
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn corrupt_items_are_store_errors_not_panics() {
    let client = common::client();
    let tables = Tables::create(&client).await;
    let backend = DynamoBackend::new(client.clone(), &tables.names);
    let put = |table: &str, item: HashMap<String, AttributeValue>| {
        let request = client.put_item().table_name(table).set_item(Some(item));
        async move { request.send().await.unwrap() }
    };
    let id = Uuid::now_v7();
    put(&tables.names.events, key(&[("streamId", s(stream(id))), ("version", n(1)), ("eventId", s("not-a-uuid"))])).await;
    let err = backend.events.load(&stream(id), 0).await.unwrap_err();
    assert!(err.0.contains("corrupt event"), "{err}");
    // An envelope of another aggregate under this stream's key.
    let other = Uuid::now_v7();
    let mut item = serde_dynamo::aws_sdk_dynamodb_1::to_item(envelope(other, 1)).unwrap();
    item.insert("streamId".into(), s(stream(id)));
    put(&tables.names.events, item).await;
    assert!(backend.events.load(&stream(id), 0).await.unwrap_err().0.contains("corrupt"));

    put(&tables.names.idempotency, key(&[("pk", s("alice#k")), ("expiresAt", n(1))])).await;
    assert!(backend.events.idempotency("alice", "k").await.unwrap_err().0.contains("corrupt idempotency"));

    let wallet_id = Uuid::now_v7();
    put(&tables.names.read, key(&[("pk", s(format!("WALLET#{wallet_id}"))), ("sk", s("VIEW")), ("balance", s("lots"))])).await;
    assert!(backend.read.wallet(wallet_id).await.unwrap_err().0.contains("corrupt wallet view"));
    put(&tables.names.read, key(&[("pk", s("CHECKPOINT#projector")), ("sk", s("CHECKPOINT")), ("position", s("x"))])).await;
    assert!(backend.read.checkpoint("projector").await.is_err());
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn idempotency_keys_containing_the_separator_never_collide() {
    let fresh = event_store().await;
    let pairs = [("a#b", "c"), ("a", "b#c"), ("a%23b", "c"), ("", "a#b#c"), ("a#b#c", "")];
    for (scope, key) in pairs {
        fresh.store.append(Commit { streams: vec![], idempotency: Some(idempotency(scope, key)) }).await.unwrap();
    }
    for (scope, key) in pairs {
        let stored = fresh.store.idempotency(scope, key).await.unwrap().expect("stored");
        assert_eq!((stored.scope.as_str(), stored.key.as_str()), (scope, key));
    }
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn malformed_commits_are_refused_before_any_request() {
    let counter = RequestCounter::new();
    let fresh = event_store_with(client_for(&endpoint(), Some(&counter))).await;
    counter.take();
    let id = Uuid::now_v7();
    let mut gap = append(id, 0, 2);
    gap.events[1].version = 3;
    let mut foreign = append(id, 0, 1);
    foreign.stream_id = stream(Uuid::now_v7());
    let twice = Commit { streams: vec![append(id, 0, 1), StreamAppend { stream_id: stream(id), expected_version: 0, events: vec![] }], idempotency: None };
    for commit in [Commit { streams: vec![gap], idempotency: None }, Commit { streams: vec![foreign], idempotency: None }, twice] {
        let err = fresh.store.append(commit).await.unwrap_err();
        assert!(matches!(err, AppendError::Store(_)), "{err:?}");
    }
    assert_eq!(counter.take(), 0);
    fresh.store.append(Commit::default()).await.unwrap();
    assert_eq!(counter.take(), 0, "an empty commit sends nothing");
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn an_owner_with_more_wallets_than_one_batch_read_gets_them_all_oldest_first() {
    let fresh = read_store().await;
    let owner = "owner-with-many";
    let mut wallets: Vec<WalletView> = (0..130).map(|i| wallet(owner, 1, (i * 7919) % 1000)).collect();
    for view in &wallets {
        assert_eq!(fresh.store.save_wallet(view, 0).await.unwrap(), Saved::Written);
    }
    // A later version of one of them is what gets listed.
    let mut moved = wallets[5].clone();
    moved.version = 2;
    moved.balance = shared::money::Money::from_minor(1);
    assert_eq!(fresh.store.save_wallet(&moved, 1).await.unwrap(), Saved::Written);
    wallets[5] = moved;
    wallets.sort_by_key(|w| (w.created_at, w.wallet_id));
    assert!(fresh.store.wallets_of_owner(owner).await.unwrap() == wallets);
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn finished_executions_leave_the_running_list() {
    let fresh = read_store().await;
    let store: &dyn ExecutionStore = &fresh.store;
    let mut record = shared::conformance::execution_store::execution("t#1", "transfer#v2", 0);
    assert!(store.create(&record).await.unwrap());
    assert_eq!(store.running("transfer#v2").await.unwrap(), vec![record.clone()]);
    record.status = ExecutionStatus::Failed;
    record.error = Some("boom".into());
    store.update(&record).await.unwrap();
    assert!(store.running("transfer#v2").await.unwrap().is_empty());
    assert_eq!(store.get("transfer#v2", "t#1").await.unwrap(), Some(record.clone()));
    assert_eq!(store.get("transfer", "v2#t#1").await.unwrap(), None, "machine and name never run together");
    assert!(!store.create(&record).await.unwrap(), "a finished execution's name stays taken");
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn test_tables_are_deleted_when_dropped() {
    let client = common::client();
    let tables = Tables::create(&client).await;
    let names = tables.names.clone();
    drop(tables);
    for name in [names.events, names.idempotency, names.read] {
        let err = client.describe_table().table_name(&name).send().await.expect_err("the table is gone");
        assert!(err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()), "{name}: {err:?}");
    }
}

/// A projector's batch: 10 wallets × 20 events each (opened, activated, credited) cost
/// one BatchGetItem and a few transactions instead of a read and a write or two per
/// event, and leave exactly the views and history one-at-a-time projection leaves.
#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn a_batch_of_projections_costs_a_few_requests_and_ends_as_one_at_a_time() {
    use shared::command::{CommandContext, CommandService};
    use shared::money::Money;
    use shared::wallet::{CreditType, Movement, Wallet, WalletCommand};
    let events = Arc::new(shared::memory::MemoryEventStore::default());
    let commands = CommandService::new(events.clone(), Arc::new(shared::clock::SystemClock));
    let ctx = CommandContext::new("alice", "batch");
    let wallets: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    for &id in &wallets {
        let open = WalletCommand::open_personal(id, "alice", Money::ZERO);
        commands.execute(&ctx, async |uow| uow.handle::<Wallet>(id, &open).await).await.unwrap();
        commands.execute(&ctx, async |uow| uow.handle::<Wallet>(id, &WalletCommand::Activate).await).await.unwrap();
        for i in 0..18 {
            let credit = WalletCommand::Credit(Movement {
                amount: Money::from_minor(100 + i),
                transaction_type: CreditType::Deposit,
                reference: format!("D-{i}"),
                description: None,
                currency: None,
            });
            commands.execute(&ctx, async |uow| uow.handle::<Wallet>(id, &credit).await).await.unwrap();
        }
    }
    let feed: Vec<shared::envelope::EventEnvelope> = events.read_after(0, 1_000).await.unwrap().into_iter().map(|(_, e)| e).collect();
    assert_eq!(feed.len(), 200);

    let counter = RequestCounter::new();
    let client = client_for(&endpoint(), Some(&counter));
    let tables = Tables::create(&client).await;
    let store = store_dynamodb::DynamoReadStore::new(client, &tables.names.read);
    counter.take();
    let outcome = shared::projection::batch::project_batch(&store, &feed).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let requests = counter.take();
    // 1 read; 200 actions (10 view runs + 10 owner index items + 180 history lines) in 2 transactions.
    assert!(requests <= 5, "{requests} requests for 200 events");
    // The same events one at a time, as the projector did before: for BENCHMARKS.md.
    let one_by_one = Tables::create(&client_for(&endpoint(), None)).await;
    let single = store_dynamodb::DynamoReadStore::new(client_for(&endpoint(), Some(&counter)), &one_by_one.names.read);
    counter.take();
    for envelope in &feed {
        shared::projection::project(&single, envelope).await.unwrap();
    }
    let before = counter.take();
    eprintln!(
        "DynamoDB requests per projected event: {:.3} one at a time, {:.3} batched ({before} and {requests} for {} events)",
        before as f64 / feed.len() as f64,
        requests as f64 / feed.len() as f64,
        feed.len()
    );
    let memory = shared::memory::MemoryReadStore::default();
    for envelope in &feed {
        shared::projection::project(&memory, envelope).await.unwrap();
    }
    for &id in &wallets {
        assert_eq!(store.wallet(id).await.unwrap(), memory.wallet(id).await.unwrap());
        assert_eq!(store.transactions(id, 50, None).await.unwrap(), memory.transactions(id, 50, None).await.unwrap());
    }
    // The same batch again (a redelivery): nothing changes, every event a duplicate.
    let again = shared::projection::batch::project_batch(&store, &feed).await;
    assert!(again.error.is_none() && again.projected.iter().all(|p| *p != shared::projection::Projected::Applied));
    assert_eq!(store.wallet(wallets[0]).await.unwrap(), memory.wallet(wallets[0]).await.unwrap());
}

/// A hot wallet loaded cold from DynamoDB: its whole stream (`Query` pages) against
/// its snapshot plus the tail (BENCHMARKS.md: `HEALTHPAY_SNAPSHOT_EVENTS=100000`).
#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn a_long_wallet_loads_from_its_snapshot_and_the_tail() {
    use shared::conformance::snapshot_load;
    let counter = RequestCounter::new();
    let fresh = event_store_with(client_for(&endpoint(), Some(&counter))).await;
    let count = snapshot_load::events(2_000);
    let stream_id = snapshot_load::seed(&fresh.store, count, 99).await;
    counter.take();
    let ((full, full_events), (fast, tail_events)) = snapshot_load::measure(&fresh.store, &stream_id).await;
    assert_eq!(full_events as u64, count);
    assert!(tail_events < 200, "{tail_events} events after the snapshot");
    eprintln!(
        "dynamodb, {count}-event wallet, cold, {} requests in all: whole stream {:.1} ms ({full_events} events), snapshot + tail {:.1} ms ({tail_events} events): {:.0}x",
        counter.take(),
        full.as_secs_f64() * 1e3,
        fast.as_secs_f64() * 1e3,
        full.as_secs_f64() / fast.as_secs_f64()
    );
}

#[tokio::test]
#[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
async fn a_callers_window_admits_its_burst_in_one_request_each_refuses_the_rest_and_spares_others() {
    use shared::clock::ManualClock;
    use store_dynamodb::DynamoRateLimiter;
    let counter = RequestCounter::new();
    let client = client_for(&endpoint(), Some(&counter));
    let tables = Tables::create(&client).await;
    // 2 a second, 4 at once: windows of 2 s admitting 4 each.
    let limits = RateLimits { commands: Rate::new(2, 4).unwrap(), queries: Rate::new(100, 100).unwrap() };
    let clock = Arc::new(ManualClock::at(chrono::DateTime::parse_from_rfc3339("2026-11-30T10:00:00.500Z").unwrap().to_utc()));
    let limiter = DynamoRateLimiter::new(client.clone(), &tables.names.idempotency, limits, clock.clone());
    counter.take();
    for _ in 0..4 {
        assert_eq!(limiter.admit("noisy", RequestKind::Command).await.unwrap(), Ok(()));
    }
    assert_eq!(counter.take(), 4, "one UpdateItem per request");
    let over = limiter.admit("noisy", RequestKind::Command).await.unwrap().unwrap_err();
    assert_eq!(over.retry_after, std::time::Duration::from_millis(1_500), "until the window's end");
    assert_eq!(limiter.admit("quiet", RequestKind::Command).await.unwrap(), Ok(()), "another caller has its own count");
    assert_eq!(limiter.admit("noisy", RequestKind::Query).await.unwrap(), Ok(()), "queries have their own count");
    // The refusal wrote nothing: the count stayed at the limit.
    let item = client
        .get_item()
        .table_name(&tables.names.idempotency)
        .key("pk", s(format!("ratelimit command {} noisy", 1_796_032_800)))
        .send()
        .await
        .unwrap()
        .item
        .expect("the window's counter");
    assert_eq!(item["hits"], n(4));
    assert_eq!(item["expiresAt"], n(1_796_032_800 + 2 + 60), "expires a minute after its window");
    clock.advance(chrono::Duration::milliseconds(1_500));
    assert_eq!(limiter.admit("noisy", RequestKind::Command).await.unwrap(), Ok(()), "a new window");
}
