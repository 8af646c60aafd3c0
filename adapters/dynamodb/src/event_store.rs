//! The event store on DynamoDB: one item per event in the events table, idempotency
//! records in their own table (TTL), every commit one `TransactWriteItems`.

use crate::common::{escape, from_item, n, reason_codes, s, sdk_error, to_item, Item, CONDITION_FAILED, TRANSACTION_CONFLICT};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use shared::envelope::EventEnvelope;
use shared::ports::{AppendError, Commit, EventStore, IdempotencyRecord, Snapshot, StoreError};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The most actions one DynamoDB transaction may hold. A commit needing more (one
/// per event, one per stream with `expected_version > 0`, one per stream without
/// events, one for the idempotency record) is refused with `AppendError::Store`:
/// splitting it would lose its atomicity.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;

/// [`EventStore`] on DynamoDB (see the crate documentation for the layout). Not an
/// `EventFeed`: on AWS the events table's stream feeds projections and sagas.
#[derive(Debug, Clone)]
pub struct DynamoEventStore {
    client: Client,
    events_table: String,
    idempotency_table: String,
}

/// What the action at an index of the transaction is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// An event or a version check of `commit.streams[i]`.
    Stream(usize),
    Idempotency,
}

impl DynamoEventStore {
    pub fn new(client: Client, events_table: impl Into<String>, idempotency_table: impl Into<String>) -> Self {
        DynamoEventStore { client, events_table: events_table.into(), idempotency_table: idempotency_table.into() }
    }

    fn event_key(stream_id: &str, version: u64) -> Item {
        HashMap::from([("streamId".to_string(), s(stream_id)), ("version".to_string(), n(version))])
    }

    /// Snapshots live in the idempotency table (every command function may already
    /// read and write it): `snapshot <stream id>`. The space keeps them apart from
    /// idempotency records, whose keys are a caller's `sub` and `Idempotency-Key`,
    /// neither of which may contain one.
    fn snapshot_key(stream_id: &str) -> Item {
        HashMap::from([("pk".to_string(), s(format!("snapshot {stream_id}")))])
    }

    fn idempotency_key(scope: &str, key: &str) -> Item {
        HashMap::from([("pk".to_string(), s(format!("{}#{key}", escape(scope))))])
    }

    fn check(&self, stream_id: &str, version: u64, condition: &str) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.events_table)
            .set_key(Some(Self::event_key(stream_id, version)))
            .condition_expression(condition)
            .build()
            .map_err(StoreError::new)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// The transaction's actions and what each is about; malformed or oversized
    /// commits are refused before anything is sent.
    fn prepare(&self, commit: &Commit) -> Result<(Vec<TransactWriteItem>, Vec<Target>), StoreError> {
        let needed: usize =
            commit.streams.iter().map(|a| a.events.len() + usize::from(a.events.is_empty()) + usize::from(a.expected_version > 0)).sum::<usize>()
                + usize::from(commit.idempotency.is_some());
        if needed > MAX_TRANSACTION_ACTIONS {
            return Err(StoreError::new(format!(
                "dynamodb: the commit needs {needed} transaction actions (events, version checks, idempotency record), \
                 more than the {MAX_TRANSACTION_ACTIONS} one DynamoDB transaction holds; it was not written (never split: it must stay atomic)"
            )));
        }
        let mut actions = Vec::with_capacity(needed);
        let mut targets = Vec::with_capacity(needed);
        let mut seen = HashSet::new();
        for (index, append) in commit.streams.iter().enumerate() {
            let stream_id = append.stream_id.as_str();
            if !seen.insert(stream_id) {
                return Err(StoreError::new(format!("dynamodb: stream {stream_id} is listed twice in one commit")));
            }
            let v = append.expected_version;
            if append.events.is_empty() {
                let next = v.checked_add(1).ok_or_else(|| StoreError::new("dynamodb: expected version overflows"))?;
                actions.push(self.check(stream_id, next, "attribute_not_exists(streamId)")?);
                targets.push(Target::Stream(index));
            }
            if v > 0 {
                actions.push(self.check(stream_id, v, "attribute_exists(streamId)")?);
                targets.push(Target::Stream(index));
            }
            for (offset, event) in append.events.iter().enumerate() {
                let version = v.checked_add(offset as u64 + 1);
                if version != Some(event.version) {
                    return Err(StoreError::new(format!(
                        "dynamodb: event {} of stream {stream_id} has version {}, expected {}",
                        event.event_id,
                        event.version,
                        version.map_or_else(|| "none".to_string(), |v| v.to_string())
                    )));
                }
                if event.stream_id() != stream_id {
                    return Err(StoreError::new(format!("dynamodb: event {} belongs to stream {}, not {stream_id}", event.event_id, event.stream_id())));
                }
                let item = to_item(event, "an event", [("streamId", s(stream_id))])?;
                let put = Put::builder()
                    .table_name(&self.events_table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(streamId)")
                    .build()
                    .map_err(StoreError::new)?;
                actions.push(TransactWriteItem::builder().put(put).build());
                targets.push(Target::Stream(index));
            }
        }
        if let Some(record) = &commit.idempotency {
            let mut item = Self::idempotency_key(&record.scope, &record.key);
            let encoded = serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(record)
                .map_err(|e| StoreError::new(format!("dynamodb: encoding an idempotency record: {e}")))?;
            item.insert("record".into(), encoded);
            item.insert(crate::tables::TTL_ATTRIBUTE.into(), n(record.expires_at.timestamp()));
            let put = Put::builder()
                .table_name(&self.idempotency_table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                // The stored record comes back with the cancellation: no read needed.
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(StoreError::new)?;
            actions.push(TransactWriteItem::builder().put(put).build());
            targets.push(Target::Idempotency);
        }
        Ok((actions, targets))
    }

    /// Why a transaction was refused, as the port's error.
    async fn refusal(
        &self,
        error: SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
        commit: &Commit,
        targets: &[Target],
    ) -> AppendError {
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = error.as_service_error() else {
            // Includes TransactionInProgressException (an SDK retry while the first
            // attempt is still running): the outcome is unknown, so it is a failure.
            return AppendError::Store(sdk_error("appending a commit")(error));
        };
        let reasons = cancelled.cancellation_reasons();
        let codes = reason_codes(cancelled);
        if reasons.len() != targets.len() {
            return AppendError::Store(StoreError::new(format!(
                "dynamodb: a transaction of {} actions was cancelled with {} reasons: {codes:?}",
                targets.len(),
                reasons.len()
            )));
        }
        let stream_of = |target: Target| match target {
            Target::Stream(i) => commit.streams[i].stream_id.clone(),
            // The idempotency item itself was busy: name the first stream (the caller
            // forgets its cached state and retries; the retry then sees the key used).
            Target::Idempotency => commit.streams.first().map(|a| a.stream_id.clone()).unwrap_or_default(),
        };
        match classify(&codes, targets) {
            Cancellation::KeyUsed { index } => {
                let record = commit.idempotency.as_ref().expect("an idempotency target comes from a record");
                let stored = match reasons[index].item() {
                    Some(item) if !item.is_empty() => decode_idempotency(item.clone()).map(Some),
                    // ALL_OLD not honoured: read it (consistently).
                    _ => self.idempotency(&record.scope, &record.key).await,
                };
                match stored {
                    Ok(Some(existing)) => AppendError::IdempotencyKeyUsed(Box::new(existing)),
                    // Expired and deleted meanwhile: a retry will succeed.
                    Ok(None) => AppendError::VersionConflict { stream_id: stream_of(Target::Idempotency) },
                    Err(e) => AppendError::Store(e),
                }
            }
            Cancellation::Conflict(target) => AppendError::VersionConflict { stream_id: stream_of(target) },
            Cancellation::Failed => {
                let messages: Vec<&str> = reasons.iter().filter_map(|r| r.message()).collect();
                AppendError::Store(StoreError::new(format!("dynamodb: a commit's transaction was cancelled: {codes:?} {messages:?}")))
            }
        }
    }
}

/// What a cancelled commit means for the caller.
#[derive(Debug, PartialEq, Eq)]
enum Cancellation {
    /// The idempotency record (action `index`) already exists.
    KeyUsed { index: usize },
    /// A stream is not at its expected version, or a concurrent transaction holds
    /// one of the items: the caller reloads and retries.
    Conflict(Target),
    /// Anything else (throttling, validation, capacity): a store failure.
    Failed,
}

/// Reads the cancellation reasons (`codes[i]` is about `targets[i]`). A used key
/// wins over a version conflict, as with the other backends; a failed condition
/// wins over a transaction conflict (it is a definite answer).
fn classify(codes: &[&str], targets: &[Target]) -> Cancellation {
    let reasons = || targets.iter().copied().zip(codes.iter().copied()).enumerate();
    if let Some((index, _)) = reasons().find(|(_, (t, c))| *t == Target::Idempotency && *c == CONDITION_FAILED) {
        return Cancellation::KeyUsed { index };
    }
    if let Some((_, (target, _))) = reasons().find(|(_, (t, c))| matches!(t, Target::Stream(_)) && *c == CONDITION_FAILED) {
        return Cancellation::Conflict(target);
    }
    if let Some((_, (target, _))) = reasons().find(|(_, (_, c))| *c == TRANSACTION_CONFLICT) {
        return Cancellation::Conflict(target);
    }
    Cancellation::Failed
}

fn decode_idempotency(mut item: Item) -> Result<IdempotencyRecord, StoreError> {
    let corrupt = |e: String| StoreError::new(format!("dynamodb: corrupt idempotency item: {e}"));
    let record = item.remove("record").ok_or_else(|| corrupt("no `record`".into()))?;
    serde_dynamo::aws_sdk_dynamodb_1::from_attribute_value(record).map_err(|e| corrupt(e.to_string()))
}

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn load(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventEnvelope>, StoreError> {
        let mut events = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.events_table)
                .consistent_read(true)
                .key_condition_expression("streamId = :stream AND #version > :after")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":stream", s(stream_id))
                .expression_attribute_values(":after", n(after_version))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error("loading a stream"))?;
            for item in page.items.unwrap_or_default() {
                let version = match item.get("version") {
                    Some(AttributeValue::N(v)) => v.clone(),
                    _ => "?".into(),
                };
                let event: EventEnvelope = from_item(item, || format!("event {stream_id} version {version}"))?;
                if event.stream_id() != stream_id {
                    return Err(StoreError::new(format!("dynamodb: corrupt event {stream_id} version {version}: it belongs to {}", event.stream_id())));
                }
                events.push(event);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(events)
    }

    /// One consistent GetItem of the stream's snapshot item.
    async fn snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.idempotency_table)
            .set_key(Some(Self::snapshot_key(stream_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("reading a snapshot"))?;
        let Some(mut item) = found.item.filter(|item| !item.is_empty()) else { return Ok(None) };
        let corrupt = |e: String| StoreError::new(format!("dynamodb: corrupt snapshot of {stream_id}: {e}"));
        let Some(AttributeValue::S(json)) = item.remove("snapshot") else { return Err(corrupt("no `snapshot`".into())) };
        serde_json::from_str(&json).map(Some).map_err(|e| corrupt(e.to_string()))
    }

    /// One conditional PutItem: kept unless the stored snapshot is as new or newer.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut item = Self::snapshot_key(&snapshot.stream_id);
        item.insert("version".into(), n(snapshot.version));
        item.insert("snapshot".into(), s(serde_json::to_string(snapshot).map_err(StoreError::new)?));
        let saved = self
            .client
            .put_item()
            .table_name(&self.idempotency_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #version < :version")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":version", n(snapshot.version))
            .send()
            .await;
        match saved {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(sdk_error("saving a snapshot")(e)),
        }
    }

    /// One consistent GetItem of the version-1 item.
    async fn first_event(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.events_table)
            .consistent_read(true)
            .key("streamId", s(stream_id))
            .key("version", n(1))
            .send()
            .await
            .map_err(sdk_error("reading a stream's first event"))?;
        let Some(item) = found.item else { return Ok(None) };
        let event: EventEnvelope = from_item(item, || format!("event {stream_id} version 1"))?;
        if event.stream_id() != stream_id {
            return Err(StoreError::new(format!("dynamodb: corrupt event {stream_id} version 1: it belongs to {}", event.stream_id())));
        }
        Ok(Some(event))
    }

    async fn append(&self, commit: Commit) -> Result<(), AppendError> {
        if commit.streams.is_empty() && commit.idempotency.is_none() {
            return Ok(());
        }
        let (actions, targets) = self.prepare(&commit)?;
        // A fresh ClientRequestToken per append makes the SDK's own retries safe. If
        // an attempt commits but its response is lost (timeout, connection reset),
        // the SDK sends the same request again: without a token, that retry would be
        // refused (the version slots are taken) and we would report a conflict for a
        // commit that succeeded — the caller would then decide and append the command
        // a second time. With the token, DynamoDB answers a repeat within 10 minutes
        // as the original succeeded, without writing anything again. A token is per
        // append (never reused for another commit), so a token/parameter mismatch
        // cannot happen.
        let sent = self.client.transact_write_items().set_transact_items(Some(actions)).client_request_token(Uuid::new_v4().to_string()).send().await;
        match sent {
            Ok(_) => Ok(()),
            Err(error) => Err(self.refusal(error, &commit, &targets).await),
        }
    }

    async fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.idempotency_table)
            .set_key(Some(Self::idempotency_key(scope, key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("reading an idempotency record"))?;
        let Some(item) = found.item.filter(|item| !item.is_empty()) else { return Ok(None) };
        let record = decode_idempotency(item)?;
        if record.scope != scope || record.key != key {
            return Err(StoreError::new(format!("dynamodb: corrupt idempotency item for {scope}/{key}: it holds {}/{}", record.scope, record.key)));
        }
        Ok(Some(record))
    }
}

/// Every stream of the events table: a scan that reads back only the keys and keeps
/// each stream's first version. `progress` is told how many items each page held.
pub async fn scan_streams(client: &Client, table: &str, progress: &(dyn Fn(u64) + Send + Sync)) -> Result<Vec<String>, StoreError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Key {
        stream_id: String,
        version: u64,
    }
    let mut streams = vec![];
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .projection_expression("streamId, #v")
            .expression_attribute_names("#v", "version")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| StoreError::new(format!("dynamodb: scanning {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e))))?;
        let items = page.items.unwrap_or_default();
        progress(items.len() as u64);
        for item in items {
            let key: Key = serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| StoreError::new(format!("dynamodb: a key of {table}: {e}")))?;
            if key.version == 1 {
                streams.push(key.stream_id);
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(streams),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{classify, Cancellation, Target};

    const S0: Target = Target::Stream(0);
    const S1: Target = Target::Stream(1);
    const KEY: Target = Target::Idempotency;

    #[test]
    fn a_used_key_wins_over_a_version_conflict() {
        let targets = [S0, S1, KEY];
        assert_eq!(classify(&["ConditionalCheckFailed", "None", "ConditionalCheckFailed"], &targets), Cancellation::KeyUsed { index: 2 });
        assert_eq!(classify(&["TransactionConflict", "None", "ConditionalCheckFailed"], &targets), Cancellation::KeyUsed { index: 2 });
    }

    #[test]
    fn a_failed_condition_on_an_event_or_check_is_a_conflict_on_its_stream() {
        let targets = [S0, S0, S1, KEY];
        assert_eq!(classify(&["None", "None", "ConditionalCheckFailed", "None"], &targets), Cancellation::Conflict(S1));
        assert_eq!(classify(&["None", "TransactionConflict", "ConditionalCheckFailed", "None"], &targets), Cancellation::Conflict(S1));
    }

    #[test]
    fn a_concurrent_transaction_is_a_conflict_too() {
        assert_eq!(classify(&["None", "TransactionConflict"], &[S0, S1]), Cancellation::Conflict(S1));
        assert_eq!(classify(&["None", "TransactionConflict"], &[S0, KEY]), Cancellation::Conflict(KEY));
    }

    #[test]
    fn anything_else_is_a_store_failure() {
        assert_eq!(classify(&["ThrottlingError", "None"], &[S0, KEY]), Cancellation::Failed);
        assert_eq!(classify(&["ValidationError"], &[S0]), Cancellation::Failed);
        assert_eq!(classify(&["None", "ProvisionedThroughputExceeded"], &[S0, KEY]), Cancellation::Failed);
    }
}
