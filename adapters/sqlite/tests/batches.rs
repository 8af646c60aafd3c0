//! Batched read-model writes on SQLite (`ReadBatches`), as a rebuild uses them.

mod common;

use shared::clock::SystemClock;
use shared::command::{CommandContext, CommandService};
use shared::envelope::EventEnvelope;
use shared::memory::{MemoryEventStore, MemoryReadStore};
use shared::money::Money;
use shared::ports::*;
use shared::projection::batch::project_batch;
use shared::projection::{project, Projected};
use shared::wallet::*;
use std::sync::Arc;
use uuid::Uuid;

#[tokio::test]
async fn a_batch_that_cannot_be_encoded_writes_nothing() {
    let fresh = common::read_store();
    let good = shared::conformance::read_store::wallet("alice", 1, 0);
    let mut too_new = shared::conformance::read_store::wallet("alice", 1, 0);
    too_new.version = u64::MAX;
    let writes = [ReadWrite::Wallet { view: good.clone(), previous_version: 0 }, ReadWrite::Wallet { view: too_new, previous_version: 0 }];
    assert!(fresh.store.write_batch(&writes).await.is_err());
    assert_eq!(fresh.store.wallet(good.wallet_id).await.unwrap(), None, "all or nothing");
}

/// Wallets with movements, interleaved as a busy feed has them.
async fn a_feed(wallets: usize, movements: usize) -> (Vec<EventEnvelope>, Vec<Uuid>) {
    let store = Arc::new(MemoryEventStore::default());
    let service = CommandService::new(store.clone(), Arc::new(SystemClock));
    let ctx = CommandContext::new("alice", "c");
    let ids: Vec<Uuid> = (0..wallets).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        let create = WalletCommand::open_personal(*id, "alice", Money::from_minor(100_000));
        for command in [create, WalletCommand::Activate] {
            service.execute(&ctx, async |uow| uow.handle::<Wallet>(*id, &command).await).await.unwrap();
        }
    }
    for round in 0..movements {
        for (i, id) in ids.iter().enumerate() {
            let (amount, reference) = (Money::from_minor(100 + (round * 7 + i) as i64), format!("r{round}"));
            let command = if (round + i) % 3 == 0 {
                WalletCommand::Debit(Movement { amount, transaction_type: DebitType::Payment, reference, description: None, currency: None })
            } else {
                WalletCommand::Credit(Movement { amount, transaction_type: CreditType::Deposit, reference, description: None, currency: None })
            };
            service.execute(&ctx, async |uow| uow.handle::<Wallet>(*id, &command).await).await.unwrap();
        }
    }
    let feed = store.read_after(0, 100_000).await.unwrap();
    (feed.into_iter().map(|(_, e)| e).collect(), ids)
}

#[tokio::test]
async fn batches_on_sqlite_end_where_one_event_at_a_time_ends_in_memory() {
    let (events, ids) = a_feed(7, 9).await;
    let reference = MemoryReadStore::default();
    for e in &events {
        project(&reference, e).await.unwrap();
    }
    let fresh = common::read_store();
    for chunk in events.chunks(16) {
        let outcome = project_batch(&fresh.store, chunk).await;
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(outcome.projected, vec![Projected::Applied; chunk.len()]);
    }
    // Delivered again, in other batches: nothing changes.
    for chunk in events.chunks(5) {
        assert_eq!(project_batch(&fresh.store, chunk).await.projected, vec![Projected::Duplicate; chunk.len()]);
    }
    for id in ids {
        assert_eq!(fresh.store.wallet(id).await.unwrap(), reference.wallet(id).await.unwrap());
        assert_eq!(fresh.store.transactions(id, 200, None).await.unwrap(), reference.transactions(id, 200, None).await.unwrap());
    }
}
