//! The local event feed: what the DynamoDB Stream → Kinesis → consumer path does on
//! AWS, done in-process over the embedded store's global log. Each consumer keeps a
//! checkpoint (its position in the log), handles events strictly in log order, and
//! retries an event until it succeeds, so nothing is skipped and a restart resumes
//! where the last saved checkpoint left it (redeliveries are harmless: every
//! consumer is idempotent).

use super::batch::project_batch;
use super::{project, ProjectionError};
use crate::envelope::EventEnvelope;
use crate::ports::{Checkpoints, EventFeed, ReadBatches};
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[async_trait]
pub trait FeedConsumer: Send + Sync {
    /// Stable name: the key of its checkpoint.
    fn name(&self) -> &'static str;
    async fn handle(&self, envelope: &EventEnvelope) -> Result<(), String>;

    /// Handles a run of events in feed order: how many were handled (a prefix), and
    /// why the next one was not (`None`: it was not tried; the caller hands over the
    /// rest again). One by one unless the consumer can do better.
    async fn handle_batch(&self, envelopes: &[EventEnvelope]) -> (usize, Option<String>) {
        for (handled, envelope) in envelopes.iter().enumerate() {
            if let Err(error) = self.handle(envelope).await {
                return (handled, Some(error));
            }
        }
        (envelopes.len(), None)
    }
}

/// Called with each event a consumer has handled (for lag metrics).
pub type Observer = Arc<dyn Fn(&EventEnvelope) + Send + Sync>;

/// Feeds every read model. A run of events is projected as one batch (one read and
/// one write of the store, see `batch`), so under load the read side keeps up with
/// many commands per store transaction instead of three transactions per event.
pub struct Projections {
    pub store: Arc<dyn ReadBatches>,
}

impl Projections {
    /// A stored event no projector can read will never become readable by retrying;
    /// stopping the whole read side for it would be worse.
    fn skippable(error: &ProjectionError) -> bool {
        if matches!(error, ProjectionError::Undecodable { .. }) {
            tracing::error!(%error, "skipping an event no projector can read");
            return true;
        }
        false
    }
}

#[async_trait]
impl FeedConsumer for Projections {
    fn name(&self) -> &'static str {
        "projections"
    }

    async fn handle(&self, envelope: &EventEnvelope) -> Result<(), String> {
        match project(self.store.as_ref(), envelope).await {
            Ok(_) => Ok(()),
            Err(e) if Self::skippable(&e) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn handle_batch(&self, envelopes: &[EventEnvelope]) -> (usize, Option<String>) {
        let outcome = project_batch(self.store.as_ref(), envelopes).await;
        let handled = outcome.projected.len();
        match outcome.error {
            None => (handled, None),
            Some(e) if Self::skippable(&e) => (handled + 1, None),
            Some(e) => (handled, Some(e.to_string())),
        }
    }
}

const BATCH: usize = 512;
const IDLE_RECHECK: Duration = Duration::from_secs(1);
/// While events keep coming, a consumer saves its checkpoint at most this often
/// (and always when it has caught up or stops). A checkpoint is a store write; every
/// consumer is idempotent, so after a crash at most this much is handled again.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct FeedRunner {
    pub feed: Arc<dyn EventFeed>,
    pub checkpoints: Arc<dyn Checkpoints>,
    pub consumer: Arc<dyn FeedConsumer>,
    pub observer: Option<Observer>,
    /// The last position handled, for metrics and readiness.
    pub position: Arc<AtomicU64>,
}

impl FeedRunner {
    pub fn new(feed: Arc<dyn EventFeed>, checkpoints: Arc<dyn Checkpoints>, consumer: Arc<dyn FeedConsumer>) -> Self {
        FeedRunner { feed, checkpoints, consumer, observer: None, position: Arc::default() }
    }

    pub fn observe(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Runs until `shutdown` turns true; returns after saving its checkpoint.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.consumer.name();
        let mut position = loop {
            match self.checkpoints.checkpoint(name).await {
                Ok(p) => break p,
                Err(e) => {
                    tracing::warn!(consumer = name, error = %e, "cannot read checkpoint; retrying");
                    if wait_or_shutdown(&mut shutdown, Duration::from_millis(500)).await {
                        return;
                    }
                }
            }
        };
        self.position.store(position, Ordering::Relaxed);
        let mut saved = Saved { position, at: Instant::now() };
        let mut head = self.feed.head();
        loop {
            if *shutdown.borrow() {
                self.save(&mut saved, position).await;
                return;
            }
            head.borrow_and_update();
            let batch = match self.feed.read_after(position, BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(consumer = name, error = %e, "cannot read the event feed; retrying");
                    if wait_or_shutdown(&mut shutdown, Duration::from_millis(500)).await {
                        self.save(&mut saved, position).await;
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                // Caught up: the checkpoint goes to the store before waiting.
                self.save(&mut saved, position).await;
                tokio::select! {
                    _ = head.changed() => {}
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(IDLE_RECHECK) => {}
                }
                continue;
            }
            let (positions, envelopes): (Vec<u64>, Vec<EventEnvelope>) = batch.into_iter().unzip();
            let mut next = 0;
            let mut backoff = Duration::from_millis(50);
            while next < envelopes.len() {
                let (handled, error) = self.consumer.handle_batch(&envelopes[next..]).await;
                for (at, envelope) in positions[next..].iter().zip(&envelopes[next..]).take(handled) {
                    if let Some(observer) = &self.observer {
                        observer(envelope);
                    }
                    position = *at;
                }
                self.position.store(position, Ordering::Relaxed);
                next += handled;
                let Some(error) = error else { continue };
                let failed = &envelopes[next];
                tracing::warn!(consumer = name, position = positions[next], stream = %failed.stream_id(), version = failed.version, %error, "consumer failed; retrying from this event");
                if wait_or_shutdown(&mut shutdown, backoff).await {
                    self.save(&mut saved, position).await;
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            if saved.at.elapsed() >= CHECKPOINT_EVERY {
                self.save(&mut saved, position).await;
            }
        }
    }

    /// Saves the checkpoint if it moved since the last save.
    async fn save(&self, saved: &mut Saved, position: u64) {
        if saved.position == position {
            return;
        }
        match self.checkpoints.save_checkpoint(self.consumer.name(), position).await {
            Ok(()) => *saved = Saved { position, at: Instant::now() },
            // Not fatal: the next save covers it, and redeliveries are idempotent.
            Err(e) => tracing::warn!(consumer = self.consumer.name(), error = %e, "cannot save checkpoint"),
        }
    }
}

/// The checkpoint as last saved.
struct Saved {
    position: u64,
    at: Instant,
}

/// Sleeps for `period`; true if shutdown was asked for meanwhile.
async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, period: Duration) -> bool {
    tokio::select! {
        _ = shutdown.changed() => {}
        _ = tokio::time::sleep(period) => {}
    }
    *shutdown.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::command::{CommandContext, CommandService};
    use crate::memory::{MemoryEventStore, MemoryReadStore};
    use crate::money::Money;
    use crate::wallet::{Wallet, WalletCommand};
    use std::sync::Mutex;
    use uuid::Uuid;

    /// Records what it handled; refuses the event at `fail_at` once.
    struct Flaky {
        seen: Mutex<Vec<(Uuid, u64)>>,
        fail_at: usize,
        failed: Mutex<bool>,
    }

    #[async_trait]
    impl FeedConsumer for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        async fn handle(&self, envelope: &EventEnvelope) -> Result<(), String> {
            let mut seen = self.seen.lock().unwrap();
            let mut failed = self.failed.lock().unwrap();
            if seen.len() == self.fail_at && !*failed {
                *failed = true;
                return Err("not now".into());
            }
            seen.push((envelope.aggregate_id, envelope.version));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_event_is_retried_and_nothing_is_skipped_or_handled_twice() {
        let store = Arc::new(MemoryEventStore::default());
        let commands = CommandService::new(store.clone(), Arc::new(SystemClock));
        let ctx = CommandContext::new("alice", "c");
        let mut expected = vec![];
        for _ in 0..3 {
            let id = Uuid::now_v7();
            let create = WalletCommand::open_personal(id, "alice", Money::from_minor(100));
            commands.execute(&ctx, async |uow| uow.handle::<Wallet>(id, &create).await).await.unwrap();
            commands.execute(&ctx, async |uow| uow.handle::<Wallet>(id, &WalletCommand::Activate).await).await.unwrap();
            expected.extend([(id, 1), (id, 2), (id, 3)]);
        }
        let checkpoints = Arc::new(MemoryReadStore::default());
        let consumer = Arc::new(Flaky { seen: Mutex::default(), fail_at: 4, failed: Mutex::new(false) });
        let runner = FeedRunner::new(store.clone(), checkpoints.clone(), consumer.clone());
        let position = runner.position.clone();
        let (stop, stopping) = watch::channel(false);
        let running = tokio::spawn(runner.run(stopping));
        while position.load(Ordering::Relaxed) < 9 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
        running.await.unwrap();
        assert_eq!(*consumer.seen.lock().unwrap(), expected);
        assert_eq!(checkpoints.checkpoint("flaky").await.unwrap(), 9);
    }

    #[tokio::test]
    async fn projections_skip_an_unreadable_event_in_a_batch_and_project_the_rest() {
        let store = Arc::new(MemoryEventStore::default());
        let commands = CommandService::new(store.clone(), Arc::new(SystemClock));
        let id = Uuid::now_v7();
        let create = WalletCommand::open_personal(id, "alice", Money::from_minor(100));
        commands.execute(&CommandContext::new("alice", "c"), async |uow| uow.handle::<Wallet>(id, &create).await).await.unwrap();
        let mut events: Vec<EventEnvelope> = store.read_after(0, 10).await.unwrap().into_iter().map(|(_, e)| e).collect();
        let mut unreadable = events[0].clone();
        unreadable.aggregate_id = Uuid::now_v7();
        unreadable.event_type = "WalletTeleported".into();
        unreadable.data = serde_json::json!({"type": "WalletTeleported"});
        events.insert(1, unreadable);
        let read = Arc::new(MemoryReadStore::default());
        let projections = Projections { store: read.clone() };
        // The unreadable one ends a batch; the runner hands over the rest next.
        assert_eq!(projections.handle_batch(&events).await, (2, None));
        assert_eq!(projections.handle_batch(&events[2..]).await, (1, None));
        use crate::ports::WalletViews;
        assert_eq!(read.wallet(id).await.unwrap().unwrap().balance, Money::from_minor(100));
    }
}
