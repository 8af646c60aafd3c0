//! Conformance suites: the behaviour every backend of a port must have, written
//! once. An adapter crate runs them with one line each:
//!
//! ```text
//! shared::event_store_conformance!(async { MyStore::new().await });
//! ```
//! The expression is evaluated afresh for every test and must give an empty store.
//! (A backend whose tests need more — e.g. DynamoDB's, which are `#[ignore]`d without
//! an endpoint — calls the functions below from its own tests; its list of them must
//! name every function here.)

use crate::clock::truncate_to_millis;
use crate::envelope::{EventEnvelope, EventMetadata};
use crate::money::Money;
use crate::ports::*;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

fn at(seconds: i64) -> DateTime<Utc> {
    truncate_to_millis(DateTime::from_timestamp(1_790_000_000 + seconds, 123_000_000).unwrap())
}

pub fn envelope(aggregate_id: Uuid, version: u64) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::now_v7(),
        aggregate_type: "wallet".into(),
        aggregate_id,
        version,
        event_type: "WalletCredited".into(),
        schema_version: 1,
        occurred_at: at(version as i64),
        data: json!({"amount": 1050, "reference": format!("R-{version}"), "nested": {"list": [1, 2.5, "x", null, true]}}),
        metadata: EventMetadata {
            command_id: Uuid::now_v7(),
            correlation_id: "corr-1".into(),
            causation_id: Some("cause-1".into()),
            user_id: "alice".into(),
            idempotency_key: Some("key-1".into()),
        },
    }
}

pub fn append(id: Uuid, expected_version: u64, count: u64) -> StreamAppend {
    StreamAppend {
        stream_id: format!("wallet#{id}"),
        expected_version,
        events: (expected_version + 1..=expected_version + count).map(|v| envelope(id, v)).collect(),
    }
}

pub fn idempotency(scope: &str, key: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        scope: scope.into(),
        key: key.into(),
        request_hash: "hash-1".into(),
        response: StoredResponse { status: 201, body: r#"{"success":true}"#.into(), headers: vec![("location".into(), "/x".into())] },
        created_at: at(0),
        expires_at: at(0) + Duration::hours(24),
    }
}

pub mod event_store {
    use super::*;

    pub async fn an_unknown_stream_is_empty(store: &dyn EventStore) {
        assert!(store.load(&format!("wallet#{}", Uuid::now_v7()), 0).await.unwrap().is_empty());
    }

    pub async fn appended_events_load_back_intact_in_version_order(store: &dyn EventStore) {
        let id = Uuid::now_v7();
        let first = append(id, 0, 3);
        store.append(Commit { streams: vec![first.clone()], idempotency: None }).await.unwrap();
        let second = append(id, 3, 2);
        store.append(Commit { streams: vec![second.clone()], idempotency: None }).await.unwrap();
        let loaded = store.load(&first.stream_id, 0).await.unwrap();
        assert_eq!(loaded, [first.events, second.events.clone()].concat());
        assert_eq!(store.load(&first.stream_id, 3).await.unwrap(), second.events, "after_version filters");
    }

    pub async fn the_first_event_is_version_one_alone(store: &dyn EventStore) {
        let id = Uuid::now_v7();
        let commit = append(id, 0, 3);
        assert_eq!(store.first_event(&commit.stream_id).await.unwrap(), None, "no stream yet");
        store.append(Commit { streams: vec![commit.clone()], idempotency: None }).await.unwrap();
        assert_eq!(store.first_event(&commit.stream_id).await.unwrap(), Some(commit.events[0].clone()));
    }

    /// For backends that keep snapshots: the newest is kept, an older one never
    /// replaces it. (A backend without snapshots answers `None` throughout.)
    pub async fn the_newest_snapshot_is_kept(store: &dyn EventStore) {
        let stream_id = format!("wallet#{}", Uuid::now_v7());
        let snapshot =
            |version: u64| Snapshot { stream_id: stream_id.clone(), version, schema_version: 2, state: serde_json::json!({"v": version, "held": [1, 2]}) };
        assert_eq!(store.snapshot(&stream_id).await.unwrap(), None);
        store.save_snapshot(&snapshot(200)).await.unwrap();
        store.save_snapshot(&snapshot(400)).await.unwrap();
        store.save_snapshot(&snapshot(200)).await.unwrap();
        assert_eq!(store.snapshot(&stream_id).await.unwrap(), Some(snapshot(400)));
        assert_eq!(store.snapshot(&format!("wallet#{}", Uuid::now_v7())).await.unwrap(), None);
    }

    pub async fn a_stale_expected_version_is_a_conflict_and_writes_nothing(store: &dyn EventStore) {
        let id = Uuid::now_v7();
        store.append(Commit { streams: vec![append(id, 0, 2)], idempotency: None }).await.unwrap();
        for stale in [0, 1, 3] {
            let err = store.append(Commit { streams: vec![append(id, stale, 1)], idempotency: None }).await.unwrap_err();
            assert_eq!(err, AppendError::VersionConflict { stream_id: format!("wallet#{id}") }, "expected {stale}");
        }
        assert_eq!(store.load(&format!("wallet#{id}"), 0).await.unwrap().len(), 2);
    }

    pub async fn a_commit_over_several_streams_is_all_or_nothing(store: &dyn EventStore) {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        store.append(Commit { streams: vec![append(b, 0, 1)], idempotency: None }).await.unwrap();
        let err = store.append(Commit { streams: vec![append(a, 0, 1), append(b, 0, 1)], idempotency: None }).await.unwrap_err();
        assert!(matches!(err, AppendError::VersionConflict { ref stream_id } if *stream_id == format!("wallet#{b}")), "{err:?}");
        assert!(store.load(&format!("wallet#{a}"), 0).await.unwrap().is_empty(), "the other stream was not written");
        store.append(Commit { streams: vec![append(a, 0, 1), append(b, 1, 1)], idempotency: None }).await.unwrap();
        assert_eq!(store.load(&format!("wallet#{b}"), 0).await.unwrap().len(), 2);
    }

    pub async fn the_idempotency_record_is_stored_with_the_events_and_only_once(store: &dyn EventStore) {
        let id = Uuid::now_v7();
        let record = idempotency("alice", "k-1");
        store.append(Commit { streams: vec![append(id, 0, 1)], idempotency: Some(record.clone()) }).await.unwrap();
        assert_eq!(store.idempotency("alice", "k-1").await.unwrap(), Some(record.clone()));
        let mut again = idempotency("alice", "k-1");
        again.request_hash = "other".into();
        let err = store.append(Commit { streams: vec![append(id, 1, 1)], idempotency: Some(again) }).await.unwrap_err();
        assert_eq!(err, AppendError::IdempotencyKeyUsed(Box::new(record)));
        assert_eq!(store.load(&format!("wallet#{id}"), 0).await.unwrap().len(), 1, "the refused commit wrote no event");
    }

    pub async fn idempotency_keys_are_scoped_to_the_caller(store: &dyn EventStore) {
        store.append(Commit { streams: vec![], idempotency: Some(idempotency("alice", "k-2")) }).await.unwrap();
        store.append(Commit { streams: vec![], idempotency: Some(idempotency("bob", "k-2")) }).await.unwrap();
        assert!(store.idempotency("carol", "k-2").await.unwrap().is_none());
        assert_eq!(store.idempotency("bob", "k-2").await.unwrap().unwrap().scope, "bob");
    }

    pub async fn a_version_conflict_does_not_store_the_idempotency_record(store: &dyn EventStore) {
        let id = Uuid::now_v7();
        store.append(Commit { streams: vec![append(id, 0, 1)], idempotency: None }).await.unwrap();
        let err = store.append(Commit { streams: vec![append(id, 0, 1)], idempotency: Some(idempotency("alice", "k-3")) }).await.unwrap_err();
        assert!(matches!(err, AppendError::VersionConflict { .. }));
        assert!(store.idempotency("alice", "k-3").await.unwrap().is_none());
    }

    /// A decision that read an aggregate without changing it lists its stream with
    /// no events: the commit holds only if that aggregate has not moved meanwhile.
    pub async fn a_stream_without_events_is_a_version_check(store: &dyn EventStore) {
        let (read, written) = (Uuid::now_v7(), Uuid::now_v7());
        store.append(Commit { streams: vec![append(read, 0, 2)], idempotency: None }).await.unwrap();
        let check = |expected| StreamAppend { stream_id: format!("wallet#{read}"), expected_version: expected, events: vec![] };
        let err = store.append(Commit { streams: vec![check(1), append(written, 0, 1)], idempotency: None }).await.unwrap_err();
        assert_eq!(err, AppendError::VersionConflict { stream_id: format!("wallet#{read}") });
        assert!(store.load(&format!("wallet#{written}"), 0).await.unwrap().is_empty());
        store.append(Commit { streams: vec![check(2), append(written, 0, 1)], idempotency: None }).await.unwrap();
        assert_eq!(store.load(&format!("wallet#{read}"), 0).await.unwrap().len(), 2, "a check appends nothing");
        assert_eq!(store.load(&format!("wallet#{written}"), 0).await.unwrap().len(), 1);
    }

    /// A commit is refused whole if it names a stream twice or numbers events
    /// other than `expected_version + 1 ..` (both are bugs in the caller).
    pub async fn a_malformed_commit_is_refused_whole(store: &dyn EventStore) {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let twice = store.append(Commit { streams: vec![append(b, 0, 1), append(a, 0, 1), append(a, 0, 1)], idempotency: None }).await;
        assert!(twice.is_err(), "the same stream twice");
        let mut misnumbered = append(a, 0, 2);
        misnumbered.events[1].version = 5;
        assert!(store.append(Commit { streams: vec![append(b, 0, 1), misnumbered], idempotency: None }).await.is_err());
        for id in [a, b] {
            assert!(store.load(&format!("wallet#{id}"), 0).await.unwrap().is_empty());
        }
    }

    /// 99 events and the idempotency record: the most one DynamoDB transaction holds.
    pub async fn a_large_commit_is_atomic(store: &dyn EventStore) {
        let id = Uuid::now_v7();
        store.append(Commit { streams: vec![append(id, 0, 99)], idempotency: Some(idempotency("alice", "k-4")) }).await.unwrap();
        let loaded = store.load(&format!("wallet#{id}"), 0).await.unwrap();
        assert_eq!(loaded.iter().map(|e| e.version).collect::<Vec<_>>(), (1..=99).collect::<Vec<_>>());
    }

    pub async fn of_concurrent_appends_at_one_version_exactly_one_wins(store: Arc<dyn EventStore>) {
        let id = Uuid::now_v7();
        store.append(Commit { streams: vec![append(id, 0, 1)], idempotency: None }).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.append(Commit { streams: vec![append(id, 1, 1)], idempotency: None }).await })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => wins += 1,
                Err(AppendError::VersionConflict { .. }) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(wins, 1);
        assert_eq!(store.load(&format!("wallet#{id}"), 0).await.unwrap().len(), 2);
    }
}

pub mod event_feed {
    use super::*;

    pub async fn the_feed_replays_every_commit_in_order_with_positions(store: &(impl EventStore + EventFeed)) {
        let start = *store.head().borrow();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut head = store.head();
        store.append(Commit { streams: vec![append(a, 0, 2)], idempotency: None }).await.unwrap();
        store.append(Commit { streams: vec![append(b, 0, 1), append(a, 2, 1)], idempotency: None }).await.unwrap();
        assert!(head.has_changed().unwrap(), "a commit wakes feed readers");
        assert_eq!(*head.borrow_and_update(), start + 4);
        let feed = store.read_after(start, 100).await.unwrap();
        let seen: Vec<(u64, Uuid, u64)> = feed.iter().map(|(p, e)| (*p, e.aggregate_id, e.version)).collect();
        assert_eq!(seen, expected_order(start, a, b));
        let page = store.read_after(start + 1, 2).await.unwrap();
        assert_eq!(page.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![start + 2, start + 3], "limit and position are honoured");
        assert!(store.read_after(start + 4, 10).await.unwrap().is_empty());
    }

    /// Within one commit, streams keep the order they were given in.
    fn expected_order(start: u64, a: Uuid, b: Uuid) -> Vec<(u64, Uuid, u64)> {
        vec![(start + 1, a, 1), (start + 2, a, 2), (start + 3, b, 1), (start + 4, a, 3)]
    }
}

pub mod read_store {
    use super::*;

    pub fn wallet(owner: &str, version: u64, created_second: i64) -> WalletView {
        WalletView {
            wallet_id: Uuid::now_v7(),
            owner_id: owner.into(),
            wallet_type: "personal".into(),
            currency: "EGP".into(),
            kyc_level: "basic".into(),
            status: "active".into(),
            balance: Money::from_minor(64_975),
            held: Money::from_minor(1_000),
            version,
            created_at: at(created_second),
            updated_at: at(created_second + 1),
        }
    }

    pub fn transaction(wallet_id: Uuid, version: u64) -> TransactionItem {
        TransactionItem {
            wallet_id,
            event_id: Uuid::now_v7(),
            kind: "credit".into(),
            amount: Money::from_minor(100 * version as i64),
            balance_after: Money::from_minor(1_000 + version as i64),
            transaction_type: "deposit".into(),
            reference: format!("R-{version}"),
            description: version.is_multiple_of(2).then(|| "even".to_string()),
            occurred_at: at(version as i64),
            version,
        }
    }

    pub fn transfer(version: u64) -> TransferView {
        TransferView {
            transfer_id: Uuid::now_v7(),
            source_wallet_id: Uuid::now_v7(),
            destination_wallet_id: Uuid::now_v7(),
            amount: Money::from_minor(10_000),
            currency: "EGP".into(),
            status: "PENDING".into(),
            failure_reason: None,
            refund_in_suspense: None,
            version,
            created_at: at(0),
            updated_at: at(1),
        }
    }

    pub async fn wallet_views_are_written_only_over_the_version_they_follow(store: &dyn ReadStore) {
        let mut view = wallet("alice", 1, 0);
        assert_eq!(store.wallet(view.wallet_id).await.unwrap(), None);
        assert_eq!(store.save_wallet(&view, 0).await.unwrap(), Saved::Written);
        assert_eq!(store.wallet(view.wallet_id).await.unwrap(), Some(view.clone()));
        assert_eq!(store.save_wallet(&view, 0).await.unwrap(), Saved::Stale, "a duplicate first event");
        let older = view.clone();
        view.version = 2;
        view.balance = Money::from_minor(1);
        assert_eq!(store.save_wallet(&view, 1).await.unwrap(), Saved::Written);
        assert_eq!(store.save_wallet(&older, 0).await.unwrap(), Saved::Stale, "an older state never overwrites a newer one");
        assert_eq!(store.save_wallet(&view, 1).await.unwrap(), Saved::Stale, "a redelivered event");
        assert_eq!(store.wallet(view.wallet_id).await.unwrap(), Some(view));
    }

    pub async fn an_owners_wallets_are_listed_oldest_first(store: &dyn ReadStore) {
        let owner = format!("owner-{}", Uuid::now_v7());
        let (newer, older, other) = (wallet(&owner, 1, 50), wallet(&owner, 3, 10), wallet("someone-else", 1, 0));
        for w in [&newer, &older, &other] {
            store.save_wallet(w, 0).await.unwrap();
        }
        assert_eq!(store.wallets_of_owner(&owner).await.unwrap(), vec![older, newer]);
        assert!(store.wallets_of_owner("nobody").await.unwrap().is_empty());
    }

    pub async fn wallets_are_read_in_one_batch_and_absent_ones_left_out(store: &dyn ReadStore) {
        let owner = format!("owner-{}", Uuid::now_v7());
        // More than a DynamoDB BatchGetItem (100 keys) or an SQLite statement takes.
        let saved: Vec<WalletView> = (0..520).map(|i| wallet(&owner, 1, i)).collect();
        for view in &saved {
            store.save_wallet(view, 0).await.unwrap();
        }
        let missing = Uuid::now_v7();
        let mut asked: Vec<Uuid> = saved.iter().map(|w| w.wallet_id).collect();
        asked.push(missing);
        asked.push(saved[0].wallet_id);
        let found = store.wallets(&asked).await.unwrap();
        assert_eq!(found.len(), saved.len(), "every saved wallet once, the missing one left out");
        assert!(!found.contains_key(&missing));
        for view in &saved {
            assert_eq!(found.get(&view.wallet_id), Some(view));
        }
        assert!(store.wallets(&[]).await.unwrap().is_empty());
    }

    pub async fn transactions_page_newest_first_and_record_once(store: &dyn ReadStore) {
        let wallet_id = Uuid::now_v7();
        let items: Vec<_> = (1..=5).map(|v| transaction(wallet_id, v)).collect();
        for item in &items {
            store.record_transaction(item).await.unwrap();
        }
        let mut duplicate = items[2].clone();
        duplicate.reference = "changed".into();
        store.record_transaction(&duplicate).await.unwrap();
        store.record_transaction(&transaction(Uuid::now_v7(), 1)).await.unwrap();
        let first = store.transactions(wallet_id, 2, None).await.unwrap();
        assert_eq!(first, vec![items[4].clone(), items[3].clone()]);
        let rest = store.transactions(wallet_id, 10, Some(4)).await.unwrap();
        assert_eq!(rest, vec![items[2].clone(), items[1].clone(), items[0].clone()], "the first write of a version stays");
        assert!(store.transactions(wallet_id, 10, Some(1)).await.unwrap().is_empty());
        assert!(store.transactions(Uuid::now_v7(), 10, None).await.unwrap().is_empty());
    }

    pub async fn transfer_views_are_version_guarded(store: &dyn ReadStore) {
        let mut view = transfer(1);
        assert_eq!(store.save_transfer(&view, 0).await.unwrap(), Saved::Written);
        view.version = 3;
        view.status = "FAILED".into();
        view.failure_reason = Some("WALLET_NOT_ACTIVE".into());
        view.refund_in_suspense = Some(Money::from_minor(10_000));
        assert_eq!(store.save_transfer(&view, 2).await.unwrap(), Saved::Stale);
        assert_eq!(store.save_transfer(&view, 1).await.unwrap(), Saved::Written);
        assert_eq!(store.transfer(view.transfer_id).await.unwrap(), Some(view));
        assert_eq!(store.transfer(Uuid::now_v7()).await.unwrap(), None);
    }

    pub fn document(version: u64, listings: &[(&str, &str)]) -> Document {
        let id = Uuid::now_v7();
        Document {
            id,
            version,
            body: serde_json::json!({"id": id, "status": "PENDING", "amount": 12.5, "items": [{"n": 1}]}),
            listings: listings.iter().map(|(list, key)| Listing { list: list.to_string(), sort_key: format!("{key}#{id}") }).collect(),
        }
    }

    pub async fn documents_are_version_guarded_per_kind(store: &dyn ReadStore) {
        let mut doc = document(1, &[]);
        assert_eq!(store.document("claim", doc.id).await.unwrap(), None);
        assert_eq!(store.save_document("claim", &doc, None).await.unwrap(), Saved::Written);
        assert_eq!(store.document("claim", doc.id).await.unwrap(), Some(doc.clone()));
        assert_eq!(store.document("payment", doc.id).await.unwrap(), None, "kinds do not share ids");
        assert_eq!(store.save_document("claim", &doc, None).await.unwrap(), Saved::Stale, "a duplicate first event");
        let older = doc.clone();
        doc.version = 2;
        doc.body["status"] = "APPROVED".into();
        assert_eq!(store.save_document("claim", &doc, Some(&older)).await.unwrap(), Saved::Written);
        assert_eq!(store.save_document("claim", &older, None).await.unwrap(), Saved::Stale, "an older state never overwrites a newer one");
        assert_eq!(store.save_document("claim", &doc, Some(&older)).await.unwrap(), Saved::Stale, "a redelivered event");
        assert_eq!(store.document("claim", doc.id).await.unwrap(), Some(doc));
    }

    pub async fn listed_documents_page_greatest_key_first_with_their_latest_body(store: &dyn ReadStore) {
        let list = format!("pharmacy#{}", Uuid::now_v7());
        let mut docs: Vec<Document> = (1..=5).map(|n| document(1, &[(&list, &format!("2026-11-0{n}")), ("holder#h", "k")])).collect();
        for doc in &docs {
            store.save_document("claim", doc, None).await.unwrap();
        }
        store.save_document("claim", &document(1, &[("pharmacy#other", "2026-11-09")]), None).await.unwrap();
        let first_of_3 = docs[3].clone();
        docs[3].version = 2;
        docs[3].body["status"] = "REJECTED".into();
        store.save_document("claim", &docs[3], Some(&first_of_3)).await.unwrap();

        let first = store.listed("claim", &list, 2, None).await.unwrap();
        assert_eq!(first.documents, vec![docs[4].clone(), docs[3].clone()], "newest first, with the latest body");
        let next = first.next.expect("more pages");
        let second = store.listed("claim", &list, 2, Some(&next)).await.unwrap();
        assert_eq!(second.documents, vec![docs[2].clone(), docs[1].clone()]);
        let last = store.listed("claim", &list, 2, second.next.as_deref()).await.unwrap();
        assert_eq!(last.documents, vec![docs[0].clone()]);
        assert_eq!(last.next, None);
        let exact = store.listed("claim", &list, 5, None).await.unwrap();
        assert_eq!((exact.documents.len(), exact.next), (5, None), "a full last page has no next");
        assert!(store.listed("claim", "pharmacy#nobody", 10, None).await.unwrap().documents.is_empty());
        assert!(store.listed("payment", &list, 10, None).await.unwrap().documents.is_empty(), "lists are per kind");

        let first_of_4 = docs[4].clone();
        docs[4].version = 2;
        docs[4].listings.retain(|l| l.list != list);
        assert_eq!(store.save_document("claim", &docs[4], Some(&first_of_4)).await.unwrap(), Saved::Written);
        let after = store.listed("claim", &list, 10, None).await.unwrap();
        assert_eq!(after.documents.first(), Some(&docs[3]), "a listing left out by a later write is removed");
        assert_eq!(after.documents.len(), 4);
        assert_eq!(store.listed("claim", "holder#h", 10, None).await.unwrap().documents.len(), 5, "the other listings stay");
    }

    pub async fn checkpoints_start_at_zero_and_persist(store: &dyn ReadStore) {
        assert_eq!(store.checkpoint("projector").await.unwrap(), 0);
        store.save_checkpoint("projector", 42).await.unwrap();
        store.save_checkpoint("other", 7).await.unwrap();
        assert_eq!(store.checkpoint("projector").await.unwrap(), 42);
        store.save_checkpoint("projector", 43).await.unwrap();
        assert_eq!(store.checkpoint("projector").await.unwrap(), 43);
    }
}

/// For backends that implement [`ReadBatches`] (memory, SQLite): a batch does what
/// its writes would do one by one.
pub mod read_batches {
    use super::read_store::{transaction, transfer, wallet};
    use super::*;

    pub async fn a_batch_applies_each_write_as_its_one_row_method_would(store: &dyn ReadBatches) {
        let first = wallet("alice", 1, 0);
        let mut second = first.clone();
        second.version = 2;
        second.balance = Money::from_minor(5);
        let line = transaction(first.wallet_id, 2);
        let mut changed_line = line.clone();
        changed_line.reference = "changed".into();
        let started = transfer(1);
        let mut later = started.clone();
        later.version = 3;
        later.status = "COMPLETED".into();
        let writes = vec![
            ReadWrite::Wallet { view: first.clone(), previous_version: 0 },
            ReadWrite::Transaction(line.clone()),
            ReadWrite::Wallet { view: second.clone(), previous_version: 1 },
            ReadWrite::Wallet { view: second.clone(), previous_version: 1 },
            ReadWrite::Wallet { view: first.clone(), previous_version: 0 },
            ReadWrite::Transaction(changed_line),
            ReadWrite::Transfer { view: started.clone(), previous_version: 0 },
            ReadWrite::Transfer { view: later, previous_version: 2 },
        ];
        let (written, stale) = (Some(Saved::Written), Some(Saved::Stale));
        assert_eq!(
            store.write_batch(&writes).await.unwrap(),
            vec![written, None, written, stale, stale, None, written, stale],
            "a redelivery, an older state and a gap are stale; history lines say nothing"
        );
        assert_eq!(store.wallet(first.wallet_id).await.unwrap(), Some(second));
        assert_eq!(store.transactions(first.wallet_id, 10, None).await.unwrap(), vec![line], "the first write of a version stays");
        assert_eq!(store.transfer(started.transfer_id).await.unwrap(), Some(started));
        assert_eq!(store.write_batch(&[]).await.unwrap(), vec![]);
    }

    pub async fn views_are_read_together_and_absent_ones_left_out(store: &dyn ReadBatches) {
        let (a, b, t) = (wallet("alice", 1, 0), wallet("bob", 4, 1), transfer(2));
        store.save_wallet(&a, 0).await.unwrap();
        store.save_wallet(&b, 0).await.unwrap();
        store.save_transfer(&t, 0).await.unwrap();
        let (mut wallets, transfers) = store.views(&[b.wallet_id, Uuid::now_v7(), a.wallet_id], &[Uuid::now_v7(), t.transfer_id]).await.unwrap();
        wallets.sort_by_key(|w| w.wallet_id);
        let mut expected = vec![a, b];
        expected.sort_by_key(|w| w.wallet_id);
        assert_eq!((wallets, transfers), (expected, vec![t]));
        assert_eq!(store.views(&[], &[]).await.unwrap(), (vec![], vec![]));
    }
}

pub mod execution_store {
    use super::*;

    pub fn execution(name: &str, machine: &str, second: i64) -> ExecutionRecord {
        ExecutionRecord {
            name: name.into(),
            state_machine: machine.into(),
            status: ExecutionStatus::Running,
            current_state: "DebitSource".into(),
            input: json!({"transferId": name}),
            error: None,
            started_at: at(second),
            updated_at: at(second),
        }
    }

    pub async fn an_execution_name_starts_once(store: &dyn ExecutionStore) {
        let first = execution("t-1", "transfer", 0);
        assert!(store.create(&first).await.unwrap());
        let mut second = first.clone();
        second.input = json!({"other": true});
        assert!(!store.create(&second).await.unwrap());
        assert_eq!(store.get("transfer", "t-1").await.unwrap(), Some(first));
        assert!(store.create(&execution("t-1", "claim", 0)).await.unwrap(), "names are per state machine");
    }

    pub async fn progress_is_persisted_and_running_ones_are_listed(store: &dyn ExecutionStore) {
        let (a, b, c) = (execution("a", "transfer", 2), execution("b", "transfer", 1), execution("c", "claim", 0));
        for e in [&a, &b, &c] {
            store.create(e).await.unwrap();
        }
        let mut done = a.clone();
        done.status = ExecutionStatus::Succeeded;
        done.current_state = "TransferCompleted".into();
        done.input = json!({"result": 1});
        store.update(&done).await.unwrap();
        assert_eq!(store.get("transfer", "a").await.unwrap(), Some(done));
        let mut moved = b.clone();
        moved.current_state = "CreditDestination".into();
        moved.updated_at = at(5);
        store.update(&moved).await.unwrap();
        assert_eq!(store.running("transfer").await.unwrap(), vec![moved]);
        assert_eq!(store.get("transfer", "zzz").await.unwrap(), None);
    }
}

/// Runs [`event_store`] (and, with `feed`, [`event_feed`]) against a backend.
#[macro_export]
macro_rules! event_store_conformance {
    ($make:expr) => {
        $crate::event_store_conformance!(@tests $make; an_unknown_stream_is_empty, appended_events_load_back_intact_in_version_order,
            the_first_event_is_version_one_alone, the_newest_snapshot_is_kept,
            a_stale_expected_version_is_a_conflict_and_writes_nothing, a_commit_over_several_streams_is_all_or_nothing,
            the_idempotency_record_is_stored_with_the_events_and_only_once, idempotency_keys_are_scoped_to_the_caller,
            a_version_conflict_does_not_store_the_idempotency_record, a_large_commit_is_atomic, a_stream_without_events_is_a_version_check,
            a_malformed_commit_is_refused_whole);
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn of_concurrent_appends_at_one_version_exactly_one_wins() {
            let store = $make.await;
            $crate::conformance::event_store::of_concurrent_appends_at_one_version_exactly_one_wins(std::sync::Arc::new(store)).await;
        }
    };
    (@tests $make:expr; $($test:ident),*) => {
        $(
            #[tokio::test]
            async fn $test() {
                let store = $make.await;
                $crate::conformance::event_store::$test(&store).await;
            }
        )*
    };
    (feed $make:expr) => {
        #[tokio::test]
        async fn the_feed_replays_every_commit_in_order_with_positions() {
            let store = $make.await;
            $crate::conformance::event_feed::the_feed_replays_every_commit_in_order_with_positions(&store).await;
        }
    };
}

#[macro_export]
macro_rules! read_store_conformance {
    ($make:expr) => {
        $crate::read_store_conformance!(@tests $make; wallet_views_are_written_only_over_the_version_they_follow,
            an_owners_wallets_are_listed_oldest_first, wallets_are_read_in_one_batch_and_absent_ones_left_out, transactions_page_newest_first_and_record_once,
            transfer_views_are_version_guarded, checkpoints_start_at_zero_and_persist, documents_are_version_guarded_per_kind,
            listed_documents_page_greatest_key_first_with_their_latest_body);
    };
    (@tests $make:expr; $($test:ident),*) => {
        $(
            #[tokio::test]
            async fn $test() {
                let store = $make.await;
                $crate::conformance::read_store::$test(&store).await;
            }
        )*
    };
}

#[macro_export]
macro_rules! read_batches_conformance {
    ($make:expr) => {
        $crate::read_batches_conformance!(@tests $make; a_batch_applies_each_write_as_its_one_row_method_would,
            views_are_read_together_and_absent_ones_left_out);
    };
    (@tests $make:expr; $($test:ident),*) => {
        $(
            #[tokio::test]
            async fn $test() {
                let store = $make.await;
                $crate::conformance::read_batches::$test(&store).await;
            }
        )*
    };
}

#[macro_export]
macro_rules! execution_store_conformance {
    ($make:expr) => {
        $crate::execution_store_conformance!(@tests $make; an_execution_name_starts_once, progress_is_persisted_and_running_ones_are_listed);
    };
    (@tests $make:expr; $($test:ident),*) => {
        $(
            #[tokio::test]
            async fn $test() {
                let store = $make.await;
                $crate::conformance::execution_store::$test(&store).await;
            }
        )*
    };
}

/// Loading a hot wallet cold, from its whole stream and from its snapshot plus the
/// tail, on any backend: the figures BENCHMARKS.md quotes.
pub mod snapshot_load {
    use super::*;
    use crate::aggregate::Aggregate;
    use crate::command::SNAPSHOT_EVERY;
    use crate::envelope::encode_event;
    use crate::money::Money;
    use crate::wallet::{CreditType, Movement, Wallet, WalletEvent};
    use std::time::{Duration, Instant};

    /// How many events, from `HEALTHPAY_SNAPSHOT_EVENTS` (BENCHMARKS.md uses 100,000).
    pub fn events(default: u64) -> u64 {
        std::env::var("HEALTHPAY_SNAPSHOT_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
    }

    /// A wallet of `count` events (opened, activated, then credits), appended in
    /// commits of `per_commit`, with the snapshot the command side would have kept.
    pub async fn seed(store: &dyn EventStore, count: u64, per_commit: usize) -> String {
        let id = Uuid::now_v7();
        let stream_id = format!("wallet#{id}");
        let mut state = Wallet::default();
        let mut pending = Vec::new();
        let opening = [
            WalletEvent::WalletCreated {
                wallet_id: id,
                owner_id: "alice".into(),
                wallet_type: crate::wallet::WalletType::Personal,
                currency: crate::money::Currency::egp(),
                kyc_level: crate::wallet::KycLevel::Basic,
            },
            WalletEvent::WalletActivated {},
        ];
        let mut snapshot = None;
        for version in 1..=count {
            let event = match opening.get(version as usize - 1) {
                Some(event) => event.clone(),
                None => WalletEvent::WalletCredited {
                    movement: Movement {
                        amount: Money::from_minor(100),
                        transaction_type: CreditType::Deposit,
                        reference: format!("D-{version}"),
                        description: None,
                        currency: None,
                    },
                    balance_after: Money::from_minor(100 * (version as i64 - 2)),
                },
            };
            state = state.apply(&event);
            let (event_type, data) = encode_event(&event);
            pending.push(EventEnvelope { event_type, data, schema_version: Wallet::SCHEMA_VERSION, ..envelope(id, version) });
            if version % SNAPSHOT_EVERY == 0 {
                snapshot =
                    Some(Snapshot { stream_id: stream_id.clone(), version, schema_version: Wallet::SCHEMA_VERSION, state: state.to_snapshot().unwrap() });
            }
            if pending.len() == per_commit || version == count {
                let expected_version = version - pending.len() as u64;
                let events = std::mem::take(&mut pending);
                store
                    .append(Commit { streams: vec![StreamAppend { stream_id: stream_id.clone(), expected_version, events }], idempotency: None })
                    .await
                    .unwrap();
            }
        }
        if let Some(snapshot) = snapshot {
            store.save_snapshot(&snapshot).await.unwrap();
        }
        stream_id
    }

    /// (the whole stream, snapshot + tail): each the time of a cold load and the
    /// number of events read; both must give the same wallet.
    pub async fn measure(store: &dyn EventStore, stream_id: &str) -> ((Duration, usize), (Duration, usize)) {
        let started = Instant::now();
        let events = store.load(stream_id, 0).await.unwrap();
        let whole = events.iter().fold(Wallet::default(), |w, e| w.apply(&e.decode().unwrap()));
        let full = (started.elapsed(), events.len());
        let started = Instant::now();
        let snapshot = store.snapshot(stream_id).await.unwrap().expect("the store keeps snapshots");
        let tail = store.load(stream_id, snapshot.version).await.unwrap();
        let from_snapshot = tail.iter().fold(Wallet::from_snapshot(&snapshot.state).unwrap(), |w, e| w.apply(&e.decode().unwrap()));
        let fast = (started.elapsed(), tail.len());
        assert_eq!(from_snapshot, whole);
        (full, fast)
    }
}
