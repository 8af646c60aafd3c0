//! The event feed of `--backend dynamodb`: reads the events table's DynamoDB Stream
//! (as the publisher Lambda does on AWS) and hands the envelopes to the feed
//! consumers (projections, saga starter) in stream order.
//!
//! Positions are this process's own (1, 2, … in the order records were read), so
//! consumers keep their checkpoints in memory and the poller starts at the stream's
//! trim horizon: after a restart the last 24 hours are delivered again, which the
//! idempotent consumers ignore.

use aws_sdk_dynamodbstreams::types::{Shard, ShardIteratorType};
use shared::envelope::EventEnvelope;
use shared::ports::{EventFeed, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// Events kept for consumers that lag; beyond it the oldest are dropped.
const BUFFER: usize = 1_000_000;
const IDLE_POLL: Duration = Duration::from_millis(100);

pub struct StreamFeed {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    buffer: Mutex<VecDeque<(u64, EventEnvelope)>>,
    head: watch::Sender<u64>,
}

#[derive(Default)]
struct ShardProgress {
    iterator: Option<String>,
    done: bool,
}

impl StreamFeed {
    pub fn new(client: aws_sdk_dynamodbstreams::Client, stream_arn: String) -> Self {
        StreamFeed { client, stream_arn, buffer: Mutex::default(), head: watch::channel(0).0 }
    }

    /// Polls every shard, parents before children, until `shutdown` turns true.
    pub async fn poll(&self, mut shutdown: watch::Receiver<bool>) {
        let mut progress: HashMap<String, ShardProgress> = HashMap::new();
        while !*shutdown.borrow() {
            let delivered = match self.poll_once(&mut progress).await {
                Ok(count) => count,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the events table's stream; retrying");
                    0
                }
            };
            if delivered == 0 {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
        }
    }

    async fn poll_once(&self, progress: &mut HashMap<String, ShardProgress>) -> Result<usize, String> {
        let shards = self.shards().await?;
        let known: Vec<String> = shards.iter().filter_map(|s| s.shard_id().map(str::to_string)).collect();
        let mut delivered = 0;
        for shard in &shards {
            let Some(id) = shard.shard_id() else { continue };
            // A child waits until its parent is read to the end: that is the order.
            if let Some(parent) = shard.parent_shard_id().filter(|p| known.iter().any(|k| k == p)) {
                if !progress.get(parent).is_some_and(|p| p.done) {
                    continue;
                }
            }
            let state = progress.entry(id.to_string()).or_default();
            if state.done {
                continue;
            }
            let iterator = match state.iterator.take() {
                Some(iterator) => iterator,
                None => self
                    .client
                    .get_shard_iterator()
                    .stream_arn(&self.stream_arn)
                    .shard_id(id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())?
                    .shard_iterator
                    .ok_or("no shard iterator")?,
            };
            let page = self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(1000)
                .send()
                .await
                .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())?;
            for record in page.records() {
                let Some(image) = record.dynamodb().and_then(|d| d.new_image()) else { continue };
                match serde_dynamo::aws_sdk_dynamodbstreams_1::from_item::<EventEnvelope>(image.clone()) {
                    Ok(envelope) => {
                        self.deliver(envelope);
                        delivered += 1;
                    }
                    Err(e) => tracing::error!(error = %e, "skipping a stream record that is no event envelope"),
                }
            }
            match page.next_shard_iterator {
                Some(next) => state.iterator = Some(next),
                None => state.done = true,
            }
        }
        Ok(delivered)
    }

    async fn shards(&self) -> Result<Vec<Shard>, String> {
        let mut shards = vec![];
        let mut start: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())?;
            let description = page.stream_description.ok_or("no stream description")?;
            shards.extend(description.shards.unwrap_or_default());
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => return Ok(shards),
            }
        }
    }

    fn deliver(&self, envelope: EventEnvelope) {
        let mut buffer = self.buffer.lock().unwrap();
        let position = *self.head.borrow() + 1;
        buffer.push_back((position, envelope));
        if buffer.len() > BUFFER {
            buffer.pop_front();
        }
        drop(buffer);
        self.head.send_replace(position);
    }
}

#[async_trait::async_trait]
impl EventFeed for StreamFeed {
    async fn read_after(&self, position: u64, limit: usize) -> Result<Vec<(u64, EventEnvelope)>, StoreError> {
        let buffer = self.buffer.lock().unwrap();
        let first = buffer.front().map_or(position + 1, |(p, _)| *p);
        if position + 1 < first {
            return Err(StoreError(format!("the consumer at {position} fell more than {BUFFER} events behind the stream")));
        }
        Ok(buffer.iter().skip((position + 1 - first) as usize).take(limit).cloned().collect())
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}
