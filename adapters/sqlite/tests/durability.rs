//! What the conformance suites cannot see: durability across reopening, group
//! commit under concurrency, corrupt rows, immutability, the backend's layout.

mod common;

use chrono::{DateTime, Utc};
use common::TempDir;
use shared::conformance::{append, execution_store, idempotency, read_store};
use shared::ports::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use store_sqlite::{SqliteBackend, SqliteEventStore, SqliteReadStore};
use uuid::Uuid;

/// Drops a store off the runtime, failing the test if its writer thread does not
/// exit (the drop joins it).
async fn close<T: Send + 'static>(store: T) {
    tokio::time::timeout(Duration::from_secs(10), tokio::task::spawn_blocking(move || drop(store)))
        .await
        .expect("the store closed (its writer thread exited)")
        .unwrap();
}

/// A record made at `created_at`, kept the contract's 24 hours.
fn made_at(key: &str, created_at: DateTime<Utc>) -> IdempotencyRecord {
    IdempotencyRecord { created_at, expires_at: created_at + chrono::Duration::hours(24), ..idempotency("alice", key) }
}

#[tokio::test]
async fn expired_idempotency_records_are_purged_and_live_ones_stay() {
    let dir = TempDir::new();
    let path = dir.path().join("events.db");
    let now = Utc::now();
    let expired = made_at("k-expired", now - chrono::Duration::hours(25));
    let live = made_at("k-live", now - chrono::Duration::hours(23));
    let store = SqliteEventStore::open(&path).unwrap();
    for record in [&expired, &live] {
        store.append(Commit { streams: vec![append(Uuid::now_v7(), 0, 1)], idempotency: Some(record.clone()) }).await.unwrap();
    }
    // Until a purge runs, an expired record is still honoured (at least 24 hours).
    assert_eq!(store.idempotency("alice", "k-expired").await.unwrap(), Some(expired.clone()));

    assert_eq!(store.purge_expired_idempotency(now).await.unwrap(), 1);
    assert_eq!(store.idempotency("alice", "k-expired").await.unwrap(), None, "the expired record is gone");
    assert_eq!(store.idempotency("alice", "k-live").await.unwrap(), Some(live.clone()), "the live one stays");
    assert_eq!(store.purge_expired_idempotency(now).await.unwrap(), 0, "a second purge finds nothing");
    // The expired key is free again; the live one is not.
    let again = made_at("k-expired", now);
    store.append(Commit { streams: vec![append(Uuid::now_v7(), 0, 1)], idempotency: Some(again.clone()) }).await.unwrap();
    assert_eq!(store.idempotency("alice", "k-expired").await.unwrap(), Some(again.clone()));
    let err = store.append(Commit { streams: vec![], idempotency: Some(made_at("k-live", now)) }).await.unwrap_err();
    assert_eq!(err, AppendError::IdempotencyKeyUsed(Box::new(live.clone())));
    // Records expired while the store was closed go when it opens again.
    let stale = made_at("k-stale", now - chrono::Duration::days(30));
    store.append(Commit { streams: vec![], idempotency: Some(stale.clone()) }).await.unwrap();
    assert_eq!(store.idempotency("alice", "k-stale").await.unwrap(), Some(stale));
    close(store).await;
    let store = SqliteEventStore::open(&path).unwrap();
    assert_eq!(store.idempotency("alice", "k-stale").await.unwrap(), None, "purged on open");
    assert_eq!(store.idempotency("alice", "k-live").await.unwrap(), Some(live.clone()));
    assert_eq!(store.idempotency("alice", "k-expired").await.unwrap(), Some(again));
    // Expiry is to the instant: a day later, both remaining records have expired.
    assert_eq!(store.purge_expired_idempotency(live.expires_at).await.unwrap(), 0, "not before expiresAt");
    assert_eq!(store.purge_expired_idempotency(now + chrono::Duration::hours(25)).await.unwrap(), 2);
    assert_eq!(store.idempotency("alice", "k-live").await.unwrap(), None);
    close(store).await;
}

#[tokio::test]
async fn reopening_keeps_events_idempotency_records_and_positions() {
    let dir = TempDir::new();
    let path = dir.path().join("events.db");
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let first = append(a, 0, 3);
    // Live: opening the store purges expired records.
    let record = made_at("k-reopen", Utc::now());

    let store = SqliteEventStore::open(&path).unwrap();
    store.append(Commit { streams: vec![first.clone()], idempotency: Some(record.clone()) }).await.unwrap();
    store.append(Commit { streams: vec![append(b, 0, 2)], idempotency: None }).await.unwrap();
    assert_eq!(*store.head().borrow(), 5);
    close(store).await;

    let store = SqliteEventStore::open(&path).unwrap();
    assert_eq!(*store.head().borrow(), 5, "the head is where it was");
    assert_eq!(store.load(&first.stream_id, 0).await.unwrap(), first.events);
    assert_eq!(store.load(&format!("wallet#{b}"), 0).await.unwrap().len(), 2);
    assert_eq!(store.idempotency("alice", "k-reopen").await.unwrap(), Some(record.clone()));
    let err = store.append(Commit { streams: vec![append(a, 3, 1)], idempotency: Some(made_at("k-reopen", Utc::now())) }).await.unwrap_err();
    assert_eq!(err, AppendError::IdempotencyKeyUsed(Box::new(record)));
    let err = store.append(Commit { streams: vec![append(a, 2, 1)], idempotency: None }).await.unwrap_err();
    assert_eq!(err, AppendError::VersionConflict { stream_id: first.stream_id.clone() }, "versions survive too");

    let mut head = store.head();
    let more = append(a, 3, 2);
    store.append(Commit { streams: vec![more.clone()], idempotency: None }).await.unwrap();
    assert!(head.has_changed().unwrap());
    assert_eq!(*head.borrow_and_update(), 7);
    let feed = store.read_after(0, 100).await.unwrap();
    assert_eq!(feed.iter().map(|(p, _)| *p).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>(), "positions continue");
    assert_eq!(feed[5..].iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), more.events);
    close(store).await;

    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_on_distinct_streams_all_succeed_with_distinct_positions() {
    let store = Arc::new(common::event_store());
    let ids: Vec<Uuid> = (0..200).map(|_| Uuid::now_v7()).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|&id| {
            let store = store.clone();
            tokio::spawn(async move { store.append(Commit { streams: vec![append(id, 0, 1)], idempotency: None }).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(*store.head().borrow(), 200);
    let feed = store.read_after(0, 1000).await.unwrap();
    assert_eq!(feed.iter().map(|(p, _)| *p).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>(), "distinct positions, no gaps");
    let streams: HashSet<Uuid> = feed.iter().map(|(_, e)| e.aggregate_id).collect();
    assert_eq!(streams, ids.iter().copied().collect(), "every stream once");
    for id in ids.iter().take(10) {
        assert_eq!(store.load(&format!("wallet#{id}"), 0).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_fifty_concurrent_appends_at_one_version_one_wins_and_49_conflict() {
    let store = Arc::new(common::event_store());
    let id = Uuid::now_v7();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.append(Commit { streams: vec![append(id, 0, 2)], idempotency: None }).await })
        })
        .collect();
    let (mut wins, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(AppendError::VersionConflict { stream_id }) => {
                assert_eq!(stream_id, format!("wallet#{id}"));
                conflicts += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 49));
    assert_eq!(store.load(&format!("wallet#{id}"), 0).await.unwrap().len(), 2);
    assert_eq!(*store.head().borrow(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_idempotent_retries_store_one_record() {
    let store = Arc::new(common::event_store());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store.append(Commit { streams: vec![append(Uuid::now_v7(), 0, 1)], idempotency: Some(idempotency("alice", "k-race")) }).await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(AppendError::IdempotencyKeyUsed(record)) => assert_eq!(*record, idempotency("alice", "k-race")),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.read_after(0, 100).await.unwrap().len(), 1, "the refused commits wrote no event");
}

#[tokio::test]
async fn a_corrupt_row_is_a_store_error_naming_the_stream_and_version() {
    let store = common::event_store();
    let id = Uuid::now_v7();
    let stream = format!("wallet#{id}");
    store.append(Commit { streams: vec![append(id, 0, 1)], idempotency: None }).await.unwrap();
    let conn = rusqlite::Connection::open(&store.path).unwrap();
    conn.execute("INSERT INTO events (stream_id, version, envelope) VALUES (?1, 2, '{not json')", [&stream]).unwrap();

    let err = store.load(&stream, 0).await.unwrap_err();
    assert!(err.0.contains(&stream) && err.0.contains("version 2"), "{err}");
    assert_eq!(store.load(&stream, 1).await.unwrap_err(), err, "the same error from load");
    // The feed sees a row written behind the store's back once the store commits after
    // it (its recent events are served from memory until then), and on reopening.
    store.append(Commit { streams: vec![append(Uuid::now_v7(), 0, 1)], idempotency: None }).await.unwrap();
    assert_eq!(store.read_after(0, 10).await.unwrap_err(), err, "the same error from the feed");
    assert_eq!(store.read_after(1, 10).await.unwrap_err(), err);
    let reopened = store_sqlite::SqliteEventStore::open(&store.path).unwrap();
    assert_eq!(reopened.read_after(0, 10).await.unwrap_err(), err);
}

#[tokio::test]
async fn stored_events_cannot_be_updated_or_deleted() {
    let store = common::event_store();
    let id = Uuid::now_v7();
    store.append(Commit { streams: vec![append(id, 0, 1)], idempotency: None }).await.unwrap();
    let conn = rusqlite::Connection::open(&store.path).unwrap();
    let update = conn.execute("UPDATE events SET envelope = '{}'", []).unwrap_err();
    assert!(update.to_string().contains("immutable"), "{update}");
    let delete = conn.execute("DELETE FROM events", []).unwrap_err();
    assert!(delete.to_string().contains("immutable"), "{delete}");
    assert_eq!(store.load(&format!("wallet#{id}"), 0).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_guarded_view_writes_exactly_one_wins() {
    let store = Arc::new(common::read_store());
    let view = read_store::wallet("alice", 1, 0);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, mut view) = (store.clone(), view.clone());
            view.status = format!("attempt-{i}");
            tokio::spawn(async move { store.save_wallet(&view, 0).await })
        })
        .collect();
    let mut written = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() == Saved::Written {
            written += 1;
        }
    }
    assert_eq!(written, 1);
}

#[tokio::test]
async fn the_backend_creates_its_directory_and_keeps_everything_across_reopening() {
    let dir = TempDir::new();
    let data_dir = dir.path().join("nested").join("data");
    let wallet = read_store::wallet("alice", 1, 0);
    let transaction = read_store::transaction(wallet.wallet_id, 1);
    let execution = execution_store::execution("t-1", "transfer", 0);
    let id = Uuid::now_v7();

    let backend = SqliteBackend::open(&data_dir).unwrap();
    for file in ["events.db", "read.db", "sagas.db"] {
        assert!(data_dir.join(file).exists(), "{file}");
    }
    backend.events.append(Commit { streams: vec![append(id, 0, 1)], idempotency: None }).await.unwrap();
    assert_eq!(backend.read.save_wallet(&wallet, 0).await.unwrap(), Saved::Written);
    backend.read.record_transaction(&transaction).await.unwrap();
    backend.read.save_checkpoint("projector", 1).await.unwrap();
    assert!(backend.executions.create(&execution).await.unwrap());
    close(backend).await;

    let backend = SqliteBackend::open(&data_dir).unwrap();
    assert_eq!(backend.events.load(&format!("wallet#{id}"), 0).await.unwrap().len(), 1);
    assert_eq!(backend.read.wallet(wallet.wallet_id).await.unwrap(), Some(wallet.clone()));
    assert_eq!(backend.read.wallets_of_owner("alice").await.unwrap(), vec![wallet.clone()]);
    assert_eq!(backend.read.transactions(wallet.wallet_id, 10, None).await.unwrap(), vec![transaction]);
    assert_eq!(backend.read.checkpoint("projector").await.unwrap(), 1);
    assert_eq!(backend.executions.running("transfer").await.unwrap(), vec![execution]);
    close(backend).await;
}

#[tokio::test]
async fn the_read_models_and_executions_may_share_one_file() {
    let dir = TempDir::new();
    let path = dir.path().join("shared.db");
    let read = SqliteReadStore::open(&path).unwrap();
    let executions = store_sqlite::SqliteExecutionStore::open(&path).unwrap();
    let transfer = read_store::transfer(1);
    assert_eq!(read.save_transfer(&transfer, 0).await.unwrap(), Saved::Written);
    assert!(executions.create(&execution_store::execution("t-2", "transfer", 0)).await.unwrap());
    assert_eq!(read.transfer(transfer.transfer_id).await.unwrap(), Some(transfer));
    assert_eq!(executions.running("transfer").await.unwrap().len(), 1);
}
