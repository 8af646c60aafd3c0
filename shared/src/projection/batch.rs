//! Projecting a batch of events with one read and one write of the read store:
//! what a rebuild (replaying a long feed into fresh read models) needs to be fast.
//!
//! The projectors are the very same as for one event ([`project`]); they run
//! against a staging overlay of the store that
//!
//! 1. is filled by one [`ReadBatches::views`] call with the stored view of every
//!    wallet and transfer the batch touches;
//! 2. answers the projectors' reads from there, and applies their writes there
//!    with the same version guard as the store (so event *n + 1* of a wallet sees
//!    what event *n* made of it, exactly as if it had been written);
//! 3. hands every write, in order, to one [`ReadBatches::write_batch`], where the
//!    store applies each with its own guard again — nothing is skipped or merged,
//!    and a duplicate or out-of-order delivery is still refused by the store.
//!
//! A view write the store finds stale although the overlay did not (another
//! projector wrote the row in between) turns its event's outcome into
//! [`Projected::Duplicate`], as it would have been one event at a time.

use super::{project, Projected, ProjectionError};
use crate::aggregate::Aggregate;
use crate::envelope::EventEnvelope;
use crate::ports::*;
use crate::transfer::Transfer;
use crate::wallet::Wallet;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// What [`project_batch`] did.
#[derive(Debug)]
pub struct BatchOutcome {
    /// One outcome per event handled, in order: a prefix of the batch.
    pub projected: Vec<Projected>,
    /// Why event number `projected.len()` was not projected (the writes of every
    /// event before it are saved): retry from there. `None`: the whole batch is done.
    pub error: Option<ProjectionError>,
}

/// Projects `envelopes` (in feed order) with one read and one write of `store`.
pub async fn project_batch(store: &dyn ReadBatches, envelopes: &[EventEnvelope]) -> BatchOutcome {
    let mut wallet_ids = Vec::new();
    let mut transfer_ids = Vec::new();
    for envelope in envelopes {
        let ids = match envelope.aggregate_type.as_str() {
            Wallet::TYPE => &mut wallet_ids,
            Transfer::TYPE => &mut transfer_ids,
            _ => continue,
        };
        if !ids.contains(&envelope.aggregate_id) {
            ids.push(envelope.aggregate_id);
        }
    }
    let (wallets, transfers) = match store.views(&wallet_ids, &transfer_ids).await {
        Ok(views) => views,
        Err(e) => return BatchOutcome { projected: vec![], error: Some(e.into()) },
    };
    let mut staged = Staged {
        base: store,
        state: Mutex::new(Overlay {
            wallets: wallet_ids.iter().map(|id| (*id, None)).collect(),
            transfers: transfer_ids.iter().map(|id| (*id, None)).collect(),
            ..Overlay::default()
        }),
    };
    {
        let overlay = staged.state.get_mut().unwrap();
        overlay.wallets.extend(wallets.into_iter().map(|v| (v.wallet_id, Some(v))));
        overlay.transfers.extend(transfers.into_iter().map(|v| (v.transfer_id, Some(v))));
    }

    let mut projected = Vec::with_capacity(envelopes.len());
    let mut error = None;
    for (index, envelope) in envelopes.iter().enumerate() {
        staged.state.lock().unwrap().event = index;
        match project(&staged, envelope).await {
            Ok(outcome) => projected.push(outcome),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }

    // The failed event is retried whole: whatever it staged before failing goes.
    let overlay = staged.state.into_inner().unwrap();
    let (events, writes): (Vec<usize>, Vec<ReadWrite>) = overlay.writes.into_iter().filter(|(event, _)| *event < projected.len()).unzip();
    if writes.is_empty() {
        return BatchOutcome { projected, error };
    }
    match store.write_batch(&writes).await {
        Ok(saved) => {
            for (event, saved) in events.into_iter().zip(saved) {
                if saved == Some(Saved::Stale) && projected[event] == Projected::Applied {
                    projected[event] = Projected::Duplicate;
                }
            }
            BatchOutcome { projected, error }
        }
        Err(e) => BatchOutcome { projected: vec![], error: Some(e.into()) },
    }
}

/// The overlay: the views as the batch has changed them so far (`None`: known
/// absent), and the writes to hand to the store, each with the index of the event
/// that made it.
#[derive(Default)]
struct Overlay {
    wallets: HashMap<Uuid, Option<WalletView>>,
    transfers: HashMap<Uuid, Option<TransferView>>,
    writes: Vec<(usize, ReadWrite)>,
    event: usize,
}

struct Staged<'a> {
    base: &'a dyn ReadBatches,
    state: Mutex<Overlay>,
}

impl Staged<'_> {
    /// A wallet the batch did not announce (never, for the projectors) is read
    /// from the store on first use.
    async fn known_wallet(&self, id: Uuid) -> Result<Option<WalletView>, StoreError> {
        if let Some(view) = self.state.lock().unwrap().wallets.get(&id) {
            return Ok(view.clone());
        }
        let view = self.base.wallet(id).await?;
        Ok(self.state.lock().unwrap().wallets.entry(id).or_insert(view).clone())
    }

    async fn known_transfer(&self, id: Uuid) -> Result<Option<TransferView>, StoreError> {
        if let Some(view) = self.state.lock().unwrap().transfers.get(&id) {
            return Ok(view.clone());
        }
        let view = self.base.transfer(id).await?;
        Ok(self.state.lock().unwrap().transfers.entry(id).or_insert(view).clone())
    }
}

#[async_trait]
impl WalletViews for Staged<'_> {
    async fn wallet(&self, wallet_id: Uuid) -> Result<Option<WalletView>, StoreError> {
        self.known_wallet(wallet_id).await
    }

    async fn save_wallet(&self, view: &WalletView, previous_version: u64) -> Result<Saved, StoreError> {
        let current = self.known_wallet(view.wallet_id).await?.map_or(0, |v| v.version);
        if current != previous_version {
            return Ok(Saved::Stale);
        }
        let mut overlay = self.state.lock().unwrap();
        overlay.wallets.insert(view.wallet_id, Some(view.clone()));
        let event = overlay.event;
        overlay.writes.push((event, ReadWrite::Wallet { view: view.clone(), previous_version }));
        Ok(Saved::Written)
    }

    /// Not staged: the stored rows.
    async fn wallets(&self, wallet_ids: &[Uuid]) -> Result<HashMap<Uuid, WalletView>, StoreError> {
        self.base.wallets(wallet_ids).await
    }

    /// Not staged: the stored rows.
    async fn wallets_of_owner(&self, owner_id: &str) -> Result<Vec<WalletView>, StoreError> {
        self.base.wallets_of_owner(owner_id).await
    }
}

#[async_trait]
impl TransactionHistory for Staged<'_> {
    async fn record_transaction(&self, item: &TransactionItem) -> Result<(), StoreError> {
        let mut overlay = self.state.lock().unwrap();
        let event = overlay.event;
        overlay.writes.push((event, ReadWrite::Transaction(item.clone())));
        Ok(())
    }

    /// Not staged: the stored rows.
    async fn transactions(&self, wallet_id: Uuid, limit: usize, before_version: Option<u64>) -> Result<Vec<TransactionItem>, StoreError> {
        self.base.transactions(wallet_id, limit, before_version).await
    }
}

#[async_trait]
impl TransferViews for Staged<'_> {
    async fn transfer(&self, transfer_id: Uuid) -> Result<Option<TransferView>, StoreError> {
        self.known_transfer(transfer_id).await
    }

    async fn save_transfer(&self, view: &TransferView, previous_version: u64) -> Result<Saved, StoreError> {
        let current = self.known_transfer(view.transfer_id).await?.map_or(0, |v| v.version);
        if current != previous_version {
            return Ok(Saved::Stale);
        }
        let mut overlay = self.state.lock().unwrap();
        overlay.transfers.insert(view.transfer_id, Some(view.clone()));
        let event = overlay.event;
        overlay.writes.push((event, ReadWrite::Transfer { view: view.clone(), previous_version }));
        Ok(Saved::Written)
    }
}

/// Not staged: documents (payments, cards, claims) are written straight to the
/// store. Each is guarded by its own aggregate's version and no wallet or transfer
/// view depends on one, so writing them ahead of the batch changes no outcome.
#[async_trait]
impl DocumentViews for Staged<'_> {
    async fn document(&self, kind: &str, id: Uuid) -> Result<Option<Document>, StoreError> {
        self.base.document(kind, id).await
    }
    async fn save_document(&self, kind: &str, document: &Document, previous: Option<&Document>) -> Result<Saved, StoreError> {
        self.base.save_document(kind, document, previous).await
    }
    async fn listed(&self, kind: &str, list: &str, limit: usize, before: Option<&str>) -> Result<ListedPage, StoreError> {
        self.base.listed(kind, list, limit, before).await
    }
}

/// Not staged: checkpoints are the caller's business.
#[async_trait]
impl Checkpoints for Staged<'_> {
    async fn checkpoint(&self, consumer: &str) -> Result<u64, StoreError> {
        self.base.checkpoint(consumer).await
    }
    async fn save_checkpoint(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        self.base.save_checkpoint(consumer, position).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::command::{CommandContext, CommandService};
    use crate::memory::{MemoryEventStore, MemoryReadStore};
    use crate::money::{Currency, Money};
    use crate::transfer::{TransferCommand, TransferTerms};
    use crate::wallet::*;
    use std::sync::Arc;

    fn credit(minor: i64) -> WalletCommand {
        WalletCommand::Credit(Movement {
            amount: Money::from_minor(minor),
            transaction_type: CreditType::Deposit,
            reference: "c".into(),
            description: None,
            currency: None,
        })
    }

    fn debit(minor: i64) -> WalletCommand {
        WalletCommand::Debit(Movement {
            amount: Money::from_minor(minor),
            transaction_type: DebitType::Payment,
            reference: "d".into(),
            description: Some("coffee".into()),
            currency: None,
        })
    }

    /// Two wallets with some history and a transfer between them, in feed order.
    async fn a_feed() -> (Vec<EventEnvelope>, [Uuid; 3]) {
        let store = Arc::new(MemoryEventStore::default());
        let service = CommandService::new(store.clone(), Arc::new(SystemClock));
        let ctx = CommandContext::new("alice", "c");
        let (a, b, t) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let wallet = async |id: Uuid, command: WalletCommand| {
            service.execute(&ctx, async |uow| uow.handle::<Wallet>(id, &command).await).await.unwrap();
        };
        for id in [a, b] {
            let create = WalletCommand::open_personal(id, "alice", Money::from_minor(10_000));
            wallet(id, create).await;
            wallet(id, WalletCommand::Activate).await;
        }
        wallet(a, credit(500)).await;
        wallet(b, debit(300)).await;
        let terms = TransferTerms {
            transfer_id: t,
            source_wallet_id: a,
            destination_wallet_id: b,
            amount: Money::from_minor(1_000),
            currency: Currency::egp(),
            reference: "t".into(),
            description: None,
            initiated_by: "alice".into(),
        };
        for command in [TransferCommand::Initiate(terms), TransferCommand::RecordSourceDebited] {
            service.execute(&ctx, async |uow| uow.handle::<Transfer>(t, &command).await).await.unwrap();
        }
        wallet(a, debit(1_000)).await;
        wallet(b, credit(1_000)).await;
        service.execute(&ctx, async |uow| uow.handle::<Transfer>(t, &TransferCommand::RecordCompleted).await).await.unwrap();
        wallet(b, WalletCommand::Suspend { reason: "review".into() }).await;
        let feed = crate::ports::EventFeed::read_after(store.as_ref(), 0, 1_000).await.unwrap();
        (feed.into_iter().map(|(_, e)| e).collect(), [a, b, t])
    }

    /// Everything the read side holds about these aggregates.
    async fn contents(store: &dyn ReadStore, [a, b, t]: [Uuid; 3]) -> impl PartialEq + std::fmt::Debug {
        (
            store.wallet(a).await.unwrap(),
            store.wallet(b).await.unwrap(),
            store.transactions(a, 100, None).await.unwrap(),
            store.transactions(b, 100, None).await.unwrap(),
            store.transfer(t).await.unwrap(),
        )
    }

    #[tokio::test]
    async fn batches_end_where_one_event_at_a_time_ends() {
        let (events, ids) = a_feed().await;
        let one_by_one = MemoryReadStore::default();
        for e in &events {
            assert_eq!(project(&one_by_one, e).await.unwrap(), Projected::Applied);
        }
        for size in [1, 3, events.len()] {
            let batched = MemoryReadStore::default();
            for chunk in events.chunks(size) {
                let outcome = project_batch(&batched, chunk).await;
                assert!(outcome.error.is_none(), "{:?}", outcome.error);
                assert_eq!(outcome.projected, vec![Projected::Applied; chunk.len()]);
            }
            assert_eq!(contents(&batched, ids).await, contents(&one_by_one, ids).await, "batches of {size}");
        }
        let view = one_by_one.wallet(ids[1]).await.unwrap().unwrap();
        assert_eq!((view.status.as_str(), view.balance, view.version), ("suspended", Money::from_minor(10_700), 6));
    }

    #[tokio::test]
    async fn a_redelivered_batch_changes_nothing() {
        let (events, ids) = a_feed().await;
        let store = MemoryReadStore::default();
        assert!(project_batch(&store, &events).await.error.is_none());
        let before = contents(&store, ids).await;
        let again = project_batch(&store, &events).await;
        assert!(again.error.is_none());
        assert_eq!(again.projected, vec![Projected::Duplicate; events.len()]);
        assert_eq!(contents(&store, ids).await, before);
    }

    #[tokio::test]
    async fn a_gap_stops_the_batch_after_saving_what_came_before_it() {
        let (mut events, ids) = a_feed().await;
        // Wallet a's v3 (its credit) goes missing: its next event cannot be applied.
        let missing = events.iter().position(|e| e.aggregate_id == ids[0] && e.version == 3).unwrap();
        events.remove(missing);
        let stuck = events.iter().position(|e| e.aggregate_id == ids[0] && e.version == 4).unwrap();
        let store = MemoryReadStore::default();
        let outcome = project_batch(&store, &events).await;
        assert_eq!(outcome.projected.len(), stuck);
        assert!(matches!(outcome.error, Some(ProjectionError::Gap { have: 2, got: 4, .. })), "{:?}", outcome.error);
        let expected = MemoryReadStore::default();
        for e in &events[..stuck] {
            project(&expected, e).await.unwrap();
        }
        assert_eq!(contents(&store, ids).await, contents(&expected, ids).await);
        assert_eq!(store.wallet(ids[0]).await.unwrap().unwrap().version, 2);
    }

    /// A store whose batched read sees nothing: as if another projector wrote
    /// every row between the read and the write.
    struct Blind(MemoryReadStore);

    #[async_trait]
    impl WalletViews for Blind {
        async fn wallet(&self, id: Uuid) -> Result<Option<WalletView>, StoreError> {
            self.0.wallet(id).await
        }
        async fn save_wallet(&self, view: &WalletView, previous_version: u64) -> Result<Saved, StoreError> {
            self.0.save_wallet(view, previous_version).await
        }
        async fn wallets(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, WalletView>, StoreError> {
            self.0.wallets(ids).await
        }
        async fn wallets_of_owner(&self, owner_id: &str) -> Result<Vec<WalletView>, StoreError> {
            self.0.wallets_of_owner(owner_id).await
        }
    }
    #[async_trait]
    impl TransactionHistory for Blind {
        async fn record_transaction(&self, item: &TransactionItem) -> Result<(), StoreError> {
            self.0.record_transaction(item).await
        }
        async fn transactions(&self, wallet_id: Uuid, limit: usize, before: Option<u64>) -> Result<Vec<TransactionItem>, StoreError> {
            self.0.transactions(wallet_id, limit, before).await
        }
    }
    #[async_trait]
    impl TransferViews for Blind {
        async fn transfer(&self, id: Uuid) -> Result<Option<TransferView>, StoreError> {
            self.0.transfer(id).await
        }
        async fn save_transfer(&self, view: &TransferView, previous_version: u64) -> Result<Saved, StoreError> {
            self.0.save_transfer(view, previous_version).await
        }
    }
    #[async_trait]
    impl DocumentViews for Blind {
        async fn document(&self, kind: &str, id: Uuid) -> Result<Option<Document>, StoreError> {
            self.0.document(kind, id).await
        }
        async fn save_document(&self, kind: &str, document: &Document, previous: Option<&Document>) -> Result<Saved, StoreError> {
            self.0.save_document(kind, document, previous).await
        }
        async fn listed(&self, kind: &str, list: &str, limit: usize, before: Option<&str>) -> Result<ListedPage, StoreError> {
            self.0.listed(kind, list, limit, before).await
        }
    }
    #[async_trait]
    impl Checkpoints for Blind {
        async fn checkpoint(&self, consumer: &str) -> Result<u64, StoreError> {
            self.0.checkpoint(consumer).await
        }
        async fn save_checkpoint(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
            self.0.save_checkpoint(consumer, position).await
        }
    }
    #[async_trait]
    impl ReadBatches for Blind {
        async fn views(&self, _: &[Uuid], _: &[Uuid]) -> Result<(Vec<WalletView>, Vec<TransferView>), StoreError> {
            Ok((vec![], vec![]))
        }
    }

    #[tokio::test]
    async fn a_row_written_behind_the_overlays_back_is_refused_by_the_store_and_counted_a_duplicate() {
        let (events, ids) = a_feed().await;
        let reference = MemoryReadStore::default();
        for e in &events {
            project(&reference, e).await.unwrap();
        }
        let store = Blind(MemoryReadStore::default());
        // Wallet a's first event is already there; the overlay does not know it.
        project(&store.0, &events[0]).await.unwrap();
        let outcome = project_batch(&store, &events[..2]).await;
        assert!(outcome.error.is_none());
        assert_eq!(outcome.projected, vec![Projected::Duplicate, Projected::Applied]);
        assert!(project_batch(&store.0, &events[2..]).await.error.is_none());
        assert_eq!(contents(&store, ids).await, contents(&reference, ids).await);
    }
}
