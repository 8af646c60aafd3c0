//! The AWS backend: the event store, the read models and saga executions on
//! DynamoDB (aws-sdk-dynamodb, items (de)serialised with serde_dynamo).
//!
//! # Tables
//!
//! Three tables, their names given to the constructors ([`TableNames`];
//! [`create_tables`] makes them for tests and local runs, `template.yaml` for AWS).
//! All are on-demand.
//!
//! **Events** ([`DynamoEventStore`]): partition key `streamId` (S, `wallet#<uuid>`),
//! sort key `version` (N). One item per event: the [`EventEnvelope`] serialised
//! attribute by attribute (`eventId`, `aggregateType`, `aggregateId`, `version`,
//! `eventType`, `schemaVersion`, `occurredAt`, `data` and `metadata` as maps) plus
//! `streamId`. The table's stream (`NEW_IMAGE`) feeds projections and sagas, so the
//! store implements `EventStore` but not `EventFeed`. Items are only ever put,
//! never updated or deleted.
//!
//! **Idempotency**: partition key `pk` (S) = `<scope>#<key>` (with `%` and `#` of
//! the scope escaped as `%25` and `%23`, so that no two (scope, key) pairs share an
//! item), `record` (M: the [`IdempotencyRecord`]) and `expiresAt` (N, epoch
//! seconds), the table's TTL attribute. DynamoDB deletes expired items lazily
//! (typically within days): a record is kept *at least* until `expiresAt`, and
//! still answers until it is actually gone. The same table holds wallet snapshots
//! (`snapshot <stream id>`) and the per-caller rate-limit windows
//! (`ratelimit <kind> <window> <sub>`, [`DynamoRateLimiter`]).
//!
//! **Read models** ([`DynamoReadStore`], one table): partition key `pk` (S), sort
//! key `sk` (S). Views are stored attribute by attribute (money as a number of
//! minor units, `version` as N) next to their keys:
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | wallet view | `WALLET#<walletId>` | `VIEW` |
//! | transaction | `WALLET#<walletId>` | `TX#<version, 20 digits>` |
//! | owner index | `OWNER#<ownerId>` | `<createdAt, fixed width>#<walletId>` (attribute `walletId`) |
//! | transfer view | `TRANSFER#<transferId>` | `VIEW` |
//! | document | `DOC#<kind>#<id>` | `VIEW` (attributes `version`, `body` and `listings` as JSON text) |
//! | listing | `LIST#<kind>#<list>` | `<sort key>` (a copy of the document) |
//! | checkpoint | `CHECKPOINT#<consumer>` | `CHECKPOINT` (attribute `position`) |
//! | execution | `EXECUTION#<stateMachine>#<name>` | `EXECUTION` |
//! | running index | `RUNNING#<stateMachine>` | `EXECUTION#<name>` (a copy of the running execution) |
//!
//! The owner and running indexes are items of the base table, not GSIs, because a
//! GSI is only eventually consistent: a wallet listed right after its view was
//! written, or an execution resumed right after it was started, must be seen. Each
//! index item is written in the same transaction as the item it indexes: the owner
//! item once, with the wallet's first view (owner and creation time never change);
//! the running copy at every update of a running execution, deleted when it ends;
//! a document's listing copies at every save (those it dropped are deleted).
//! Every read of this crate is strongly consistent.
//!
//! # Conditional writes
//!
//! - **Append** ([`DynamoEventStore`]'s `append`): the whole commit is ONE
//!   `TransactWriteItems`, so it is all or nothing. For each stream at expected
//!   version `v`: a `Put` of each event at `v+1 …` with `attribute_not_exists(streamId)`
//!   (the version slot is free), and when `v > 0` a `ConditionCheck` that `(stream, v)`
//!   exists (otherwise a stale, too *high* expected version would leave a gap). A
//!   stream without events is a pure version check: `(stream, v+1)` absent and, when
//!   `v > 0`, `(stream, v)` present. The idempotency record is a `Put` with
//!   `attribute_not_exists(pk)`. Versions have no gaps, so "slot `v` taken and slot
//!   `v+1` free" is exactly "the stream is at `v`". No cheaper correct scheme exists
//!   without a per-stream head item (which would cost a write instead of a check and
//!   put noise on the stream); the check costs one action of the 100 a transaction
//!   may hold, which is why a commit is refused (never split) beyond
//!   [`MAX_TRANSACTION_ACTIONS`].
//! - A cancelled transaction is mapped by cancellation reason, action by action: a
//!   failed condition on the idempotency item is `IdempotencyKeyUsed` (the stored
//!   record comes back with the cancellation, `ReturnValuesOnConditionCheckFailure =
//!   ALL_OLD`, so no extra read), on an event or check it is `VersionConflict`; a
//!   `TransactionConflict` (another transaction on the same items right now) is a
//!   `VersionConflict` too: the caller reloads and retries.
//! - **Views**: `PutItem` with `attribute_not_exists(pk)` when the previous version
//!   is 0, else `version = :previous`; a failed condition is `Saved::Stale`.
//!   Transactions of the history are put with `attribute_not_exists(pk)`: the first
//!   write of a version stays. Executions are created with `attribute_not_exists(pk)`.
//!
//! [`EventEnvelope`]: shared::envelope::EventEnvelope
//! [`IdempotencyRecord`]: shared::ports::IdempotencyRecord

mod common;
mod counter;
mod event_store;
mod rate_limit;
mod read_store;
mod tables;

pub use counter::RequestCounter;
pub use event_store::{scan_streams, DynamoEventStore, MAX_TRANSACTION_ACTIONS};
pub use rate_limit::DynamoRateLimiter;
pub use read_store::DynamoReadStore;
pub use tables::{create_tables, delete_tables, TableNames};

/// Re-exported so that users need not depend on the SDK for the client type.
pub use aws_sdk_dynamodb::Client;

use std::sync::Arc;

/// The region used when neither the environment nor the profile names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The SDK configuration from the environment (credentials chain, region — default
/// [`DEFAULT_REGION`] —, `AWS_ENDPOINT_URL*`), with `endpoint` (e.g. DynamoDB Local's
/// `http://localhost:8000`) overriding the endpoint when given. Add interceptors
/// (a [`RequestCounter`]) to the builder before building the client.
pub async fn config_from_env(endpoint: Option<&str>) -> aws_sdk_dynamodb::config::Builder {
    let region = aws_config::meta::region::RegionProviderChain::default_provider().or_else(DEFAULT_REGION);
    let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region).load().await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&sdk_config);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    builder
}

/// A DynamoDB client configured from the environment; see [`config_from_env`].
pub async fn client_from_env(endpoint: Option<&str>) -> Client {
    Client::from_conf(config_from_env(endpoint).await.build())
}

/// Like [`client_from_env`], every request the client sends (retries included)
/// counted by `counter`.
pub async fn client_from_env_counted(endpoint: Option<&str>, counter: &RequestCounter) -> Client {
    Client::from_conf(config_from_env(endpoint).await.interceptor(counter.clone()).build())
}

/// Every store of one deployment, on one client.
pub struct DynamoBackend {
    pub events: Arc<DynamoEventStore>,
    /// Read models and saga executions (one table).
    pub read: Arc<DynamoReadStore>,
}

impl DynamoBackend {
    pub fn new(client: Client, tables: &TableNames) -> Self {
        DynamoBackend {
            events: Arc::new(DynamoEventStore::new(client.clone(), &tables.events, &tables.idempotency)),
            read: Arc::new(DynamoReadStore::new(client, &tables.read)),
        }
    }
}
