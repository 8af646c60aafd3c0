//! The local event feed: what the DynamoDB Stream → Kinesis → consumer path does on
//! AWS, done in-process over the embedded store's global log. Each consumer keeps a
//! checkpoint (its position in the log), handles events strictly in log order, and
//! retries an event until it succeeds, so nothing is skipped and a restart resumes
//! where the last saved checkpoint left it (redeliveries are harmless: every
//! consumer is idempotent).

use super::{project, ProjectionError};
use crate::envelope::EventEnvelope;
use crate::ports::{Checkpoints, EventFeed, ReadStore};
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[async_trait]
pub trait FeedConsumer: Send + Sync {
    /// Stable name: the key of its checkpoint.
    fn name(&self) -> &'static str;
    async fn handle(&self, envelope: &EventEnvelope) -> Result<(), String>;
}

/// Called with each event a consumer has handled (for lag metrics).
pub type Observer = Arc<dyn Fn(&EventEnvelope) + Send + Sync>;

/// Feeds every read model.
pub struct Projections {
    pub store: Arc<dyn ReadStore>,
}

#[async_trait]
impl FeedConsumer for Projections {
    fn name(&self) -> &'static str {
        "projections"
    }
    async fn handle(&self, envelope: &EventEnvelope) -> Result<(), String> {
        match project(self.store.as_ref(), envelope).await {
            Ok(_) => Ok(()),
            Err(e @ ProjectionError::Undecodable { .. }) => {
                // A stored event no projector can read will never become readable by
                // retrying; stopping the whole read side for it would be worse.
                tracing::error!(error = %e, "skipping an event no projector can read");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

const BATCH: usize = 512;
const IDLE_RECHECK: Duration = Duration::from_secs(1);
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
        let mut head = self.feed.head();
        loop {
            if *shutdown.borrow() {
                return;
            }
            head.borrow_and_update();
            let batch = match self.feed.read_after(position, BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(consumer = name, error = %e, "cannot read the event feed; retrying");
                    if wait_or_shutdown(&mut shutdown, Duration::from_millis(500)).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = head.changed() => {}
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(IDLE_RECHECK) => {}
                }
                continue;
            }
            for (at, envelope) in batch {
                let mut backoff = Duration::from_millis(50);
                while let Err(error) = self.consumer.handle(&envelope).await {
                    tracing::warn!(consumer = name, position = at, stream = %envelope.stream_id(), version = envelope.version, %error, "consumer failed; retrying the same event");
                    if wait_or_shutdown(&mut shutdown, backoff).await {
                        self.save(position).await;
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                if let Some(observer) = &self.observer {
                    observer(&envelope);
                }
                position = at;
                self.position.store(position, Ordering::Relaxed);
            }
            self.save(position).await;
        }
    }

    async fn save(&self, position: u64) {
        if let Err(e) = self.checkpoints.save_checkpoint(self.consumer.name(), position).await {
            // Not fatal: the next save covers it, and redeliveries are idempotent.
            tracing::warn!(consumer = self.consumer.name(), error = %e, "cannot save checkpoint");
        }
    }
}

/// Sleeps for `period`; true if shutdown was asked for meanwhile.
async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, period: Duration) -> bool {
    tokio::select! {
        _ = shutdown.changed() => {}
        _ = tokio::time::sleep(period) => {}
    }
    *shutdown.borrow()
}
