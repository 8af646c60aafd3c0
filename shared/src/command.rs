//! Command handling: load → decide → append, the same for every command.
//!
//! - **Optimistic concurrency.** Each aggregate a command touches is appended at the
//!   version it was decided on, all in one atomic commit. On a version conflict the
//!   command is decided again against the new state (bounded, with jitter) before
//!   the caller ever sees `CONCURRENCY_CONFLICT`.
//! - **Hot aggregates.** Within one process, commands on the same aggregate queue on
//!   a per-stream lock instead of racing into conflicts, so a hot wallet costs a
//!   queue, not a storm of retries. Across processes (Lambda containers) the
//!   conditional write alone keeps the ledger right.
//! - **Warm aggregates.** States a command produced are kept in a bounded cache and
//!   used without reading the store; the conditional write catches staleness. A
//!   *refusal* decided on a cached state is never trusted: it is decided again on a
//!   fresh read first.
//! - **Idempotency.** The answer a command gave is stored in the same commit as its
//!   events, so an answer exists exactly when its effects do.

use crate::aggregate::Aggregate;
use crate::clock::Clock;
use crate::envelope::{encode_event, stream_id, EventEnvelope, EventMetadata};
use crate::error::DomainError;
use crate::ports::{AppendError, Commit, EventStore, IdempotencyRecord, Snapshot, StoreError, StoredResponse, StreamAppend};
use chrono::{DateTime, Duration, Utc};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Who asked, and why: copied onto every event the command appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    pub command_id: Uuid,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub user_id: String,
    pub idempotency_key: Option<String>,
}

impl CommandContext {
    pub fn new(user_id: impl Into<String>, correlation_id: impl Into<String>) -> Self {
        CommandContext { command_id: Uuid::now_v7(), correlation_id: correlation_id.into(), causation_id: None, user_id: user_id.into(), idempotency_key: None }
    }
}

/// A caller's `Idempotency-Key` and the digest of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRequest {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
}

/// Why a decision could not be made: a business refusal, or the store failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Refused(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Refused(DomainError),
    #[error("the command kept conflicting with concurrent commands on {stream_id}")]
    Conflict { stream_id: String },
    #[error("idempotency key already used with a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Store(StoreError),
}

/// The answer to an idempotent command: fresh, or the stored answer replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Fresh(StoredResponse),
    Replayed(StoredResponse),
}

impl Answer {
    pub fn response(&self) -> &StoredResponse {
        match self {
            Answer::Fresh(r) | Answer::Replayed(r) => r,
        }
    }
}

/// How long idempotency records are kept (the contract says at least 24 hours).
pub const IDEMPOTENCY_TTL: Duration = Duration::hours(24);
const MAX_ATTEMPTS: u32 = 12;
/// A stream of an aggregate that keeps snapshots gets one every this many events.
pub const SNAPSHOT_EVERY: u64 = 200;
/// Beyond this, the warm cache is dropped and refilled (bounded memory).
const CACHE_CAPACITY: usize = 100_000;
/// How long a command waits for another command on the same aggregate before it
/// goes ahead optimistically (which also rules out lock-order deadlocks).
const STREAM_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

type CachedState = (u64, Arc<dyn Any + Send + Sync>);

pub struct CommandService {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, CachedState>>,
    stream_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl CommandService {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        CommandService { store, clock, cache: Mutex::default(), stream_locks: Mutex::default() }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs `decide` until its changes commit. A refusal is returned as
    /// `CommandError::Refused` and appends nothing.
    pub async fn execute<R>(&self, ctx: &CommandContext, decide: impl AsyncFnMut(&mut UnitOfWork) -> Result<R, Failure>) -> Result<R, CommandError> {
        let (outcome, _) = self.run(ctx, None, decide, |_, _| None).await?;
        outcome.map_err(CommandError::Refused)
    }

    /// Like [`execute`](Self::execute), for a command that carries an idempotency key:
    /// `respond` renders the answer (success or refusal), which is stored with the
    /// events; a retry with the same key and request gets it again, unchanged.
    pub async fn execute_idempotent<R>(
        &self,
        ctx: &CommandContext,
        idempotency: &IdempotencyRequest,
        decide: impl AsyncFnMut(&mut UnitOfWork) -> Result<R, Failure>,
        respond: impl Fn(Result<&R, &DomainError>, &UnitOfWork) -> StoredResponse,
    ) -> Result<Answer, CommandError> {
        if let Some(stored) = self.store.idempotency(&idempotency.scope, &idempotency.key).await.map_err(CommandError::Store)? {
            return replay(stored, idempotency);
        }
        let (_, response) = self.run(ctx, Some(idempotency), decide, |outcome, uow| Some(respond(outcome, uow))).await?;
        match response {
            Some(Ok(fresh)) => Ok(Answer::Fresh(fresh)),
            Some(Err(stored)) => replay(*stored, idempotency),
            None => unreachable!("an idempotent command always renders its answer"),
        }
    }

    #[allow(clippy::type_complexity)]
    async fn run<R>(
        &self,
        ctx: &CommandContext,
        idempotency: Option<&IdempotencyRequest>,
        mut decide: impl AsyncFnMut(&mut UnitOfWork) -> Result<R, Failure>,
        respond: impl Fn(Result<&R, &DomainError>, &UnitOfWork) -> Option<StoredResponse>,
    ) -> Result<(Result<R, DomainError>, Option<Result<StoredResponse, Box<IdempotencyRecord>>>), CommandError> {
        let mut last_conflict = String::new();
        let mut trust_cache = true;
        for attempt in 0..MAX_ATTEMPTS {
            let mut uow = UnitOfWork::new(self, ctx, trust_cache);
            let outcome = match decide(&mut uow).await {
                Ok(value) => Ok(value),
                Err(Failure::Refused(refusal)) if uow.used_cache => {
                    // A refusal may only stand on a fresh read.
                    tracing::debug!(%refusal, "refusal decided on a cached state; deciding again on a fresh read");
                    trust_cache = false;
                    continue;
                }
                Err(Failure::Refused(refusal)) => Err(refusal),
                Err(Failure::Store(e)) => return Err(CommandError::Store(e)),
            };
            let response = respond(outcome.as_ref(), &uow);
            let record = idempotency.zip(response.clone()).map(|(request, response)| IdempotencyRecord {
                scope: request.scope.clone(),
                key: request.key.clone(),
                request_hash: request.request_hash.clone(),
                response,
                created_at: uow.now,
                expires_at: uow.now + IDEMPOTENCY_TTL,
            });
            let streams = if outcome.is_ok() { uow.take_appends() } else { vec![] };
            if streams.is_empty() && record.is_none() {
                return Ok((outcome, None));
            }
            match self.store.append(Commit { streams, idempotency: record }).await {
                Ok(()) => {
                    uow.remember_states();
                    self.snapshot_long_streams(&uow).await;
                    return Ok((outcome, response.map(Ok)));
                }
                Err(AppendError::VersionConflict { stream_id }) => {
                    if attempt + 1 < MAX_ATTEMPTS {
                        crate::metrics::record(crate::metrics::Observation::ConcurrencyRetry);
                    }
                    self.forget(&stream_id);
                    trust_cache = false;
                    last_conflict = stream_id;
                    drop(uow);
                    // Jittered backoff: concurrent losers should not collide again in lockstep.
                    let jitter = (Uuid::new_v4().as_u128() % 4_000) as u64;
                    tokio::time::sleep(std::time::Duration::from_micros(jitter * (attempt as u64 + 1).min(5))).await;
                }
                Err(AppendError::IdempotencyKeyUsed(existing)) => return Ok((outcome, Some(Err(existing)))),
                Err(AppendError::Store(e)) => return Err(CommandError::Store(e)),
            }
        }
        tracing::warn!(stream_id = %last_conflict, "command gave up after {MAX_ATTEMPTS} conflicting attempts");
        crate::metrics::record(crate::metrics::Observation::ConcurrencyConflict);
        Err(CommandError::Conflict { stream_id: last_conflict })
    }

    /// Every [`SNAPSHOT_EVERY`] events of a stream, a snapshot of the state the
    /// commit produced. Best effort: a snapshot that cannot be saved only means a
    /// longer load later.
    async fn snapshot_long_streams(&self, uow: &UnitOfWork<'_>) {
        for tracked in uow.tracked.iter().filter(|t| !t.pending.is_empty()) {
            let after = tracked.expected_version + tracked.pending.len() as u64;
            if after / SNAPSHOT_EVERY == tracked.expected_version / SNAPSHOT_EVERY {
                continue;
            }
            let Some(state) = (tracked.to_snapshot)(tracked.state.as_ref()) else { continue };
            let snapshot = Snapshot { stream_id: tracked.stream_id.clone(), version: after, schema_version: tracked.schema_version, state };
            if let Err(error) = self.store.save_snapshot(&snapshot).await {
                tracing::warn!(%error, stream_id = %tracked.stream_id, "cannot save a snapshot; the stream is loaded from its events");
            }
        }
    }

    fn cached(&self, stream_id: &str) -> Option<CachedState> {
        self.cache.lock().unwrap().get(stream_id).cloned()
    }

    fn remember(&self, states: impl IntoIterator<Item = (String, CachedState)>) {
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.extend(states);
    }

    fn forget(&self, stream_id: &str) {
        self.cache.lock().unwrap().remove(stream_id);
    }

    async fn lock_stream(&self, stream_id: &str) -> Option<StreamGuard<'_>> {
        let lock = self.stream_locks.lock().unwrap().entry(stream_id.to_string()).or_default().clone();
        let guard = tokio::time::timeout(STREAM_LOCK_WAIT, lock.clone().lock_owned()).await.ok()?;
        Some(StreamGuard { service: self, stream_id: stream_id.to_string(), lock, guard: Some(guard) })
    }
}

fn replay(stored: IdempotencyRecord, request: &IdempotencyRequest) -> Result<Answer, CommandError> {
    if stored.request_hash == request.request_hash {
        Ok(Answer::Replayed(stored.response))
    } else {
        Err(CommandError::IdempotencyKeyReused)
    }
}

/// Holds a stream's in-process lock; drops the lock's map entry when nobody waits.
struct StreamGuard<'s> {
    service: &'s CommandService,
    stream_id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self.service.stream_locks.lock().unwrap();
        // Two references left: the map's and ours. Nobody else holds or waits.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.stream_id);
        }
    }
}

struct Tracked {
    stream_id: String,
    aggregate_type: &'static str,
    aggregate_id: Uuid,
    schema_version: u32,
    expected_version: u64,
    state: Arc<dyn Any + Send + Sync>,
    /// The aggregate's `to_snapshot`, for a state of unknown type.
    to_snapshot: fn(&(dyn Any + Send + Sync)) -> Option<serde_json::Value>,
    pending: Vec<EventEnvelope>,
}

fn to_snapshot<A: Aggregate>(state: &(dyn Any + Send + Sync)) -> Option<serde_json::Value> {
    state.downcast_ref::<A>().and_then(A::to_snapshot)
}

/// One attempt at a command: the aggregates it loaded and the events it decided.
pub struct UnitOfWork<'s> {
    service: &'s CommandService,
    ctx: &'s CommandContext,
    now: DateTime<Utc>,
    trust_cache: bool,
    used_cache: bool,
    tracked: Vec<Tracked>,
    guards: Vec<StreamGuard<'s>>,
}

impl<'s> UnitOfWork<'s> {
    fn new(service: &'s CommandService, ctx: &'s CommandContext, trust_cache: bool) -> Self {
        UnitOfWork { service, ctx, now: service.clock.now(), trust_cache, used_cache: false, tracked: vec![], guards: vec![] }
    }

    /// The time every event of this command carries.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    pub fn context(&self) -> &CommandContext {
        self.ctx
    }

    /// The aggregate's current state (as this command has changed it so far).
    pub async fn load<A: Aggregate>(&mut self, id: Uuid) -> Result<A, Failure> {
        let stream = stream_id(A::TYPE, id);
        if let Some(tracked) = self.tracked.iter().find(|t| t.stream_id == stream) {
            return Ok(downcast::<A>(&tracked.state));
        }
        if let Some(guard) = self.service.lock_stream(&stream).await {
            self.guards.push(guard);
        }
        let cached = if self.trust_cache { self.service.cached(&stream) } else { None };
        let (version, state): (u64, A) = match cached {
            Some((version, state)) if state.is::<A>() => {
                self.used_cache = true;
                (version, downcast::<A>(&state))
            }
            _ => fetch::<A>(self.service.store.as_ref(), &stream).await?,
        };
        self.tracked.push(Tracked {
            stream_id: stream,
            aggregate_type: A::TYPE,
            aggregate_id: id,
            schema_version: A::SCHEMA_VERSION,
            expected_version: version,
            state: Arc::new(state.clone()),
            to_snapshot: to_snapshot::<A>,
            pending: vec![],
        });
        Ok(state)
    }

    /// Reads an aggregate for facts that never change once it exists (a wallet's
    /// owner and currency): no lock, and the commit does not depend on its version.
    pub async fn peek<A: Aggregate>(&self, id: Uuid) -> Result<A, Failure> {
        let stream = stream_id(A::TYPE, id);
        if let Some(tracked) = self.tracked.iter().find(|t| t.stream_id == stream) {
            return Ok(downcast::<A>(&tracked.state));
        }
        match self.service.cached(&stream) {
            Some((_, state)) if state.is::<A>() => Ok(downcast::<A>(&state)),
            _ => Ok(fetch::<A>(self.service.store.as_ref(), &stream).await?.1),
        }
    }

    /// Loads the aggregate, decides `command` and records the events: the usual
    /// one-aggregate command in one call. Returns the state after the events.
    pub async fn handle<A: Aggregate>(&mut self, id: Uuid, command: &A::Command) -> Result<A, Failure> {
        let state: A = self.load(id).await?;
        let events = state.decide(command)?;
        Ok(self.record::<A>(id, events))
    }

    /// Records decided events on a loaded aggregate and returns its new state.
    ///
    /// # Panics
    /// If the aggregate was not loaded by this unit of work first (a programming error:
    /// its expected version would be unknown).
    pub fn record<A: Aggregate>(&mut self, id: Uuid, events: Vec<A::Event>) -> A {
        let stream = stream_id(A::TYPE, id);
        let ctx = self.ctx;
        let now = self.now;
        let tracked = self.tracked.iter_mut().find(|t| t.stream_id == stream).unwrap_or_else(|| panic!("{stream} recorded before it was loaded"));
        let mut state = downcast::<A>(&tracked.state);
        for event in events {
            state = state.apply(&event);
            let (event_type, data) = encode_event(&event);
            let version = tracked.expected_version + tracked.pending.len() as u64 + 1;
            tracked.pending.push(EventEnvelope {
                event_id: Uuid::now_v7(),
                aggregate_type: tracked.aggregate_type.to_string(),
                aggregate_id: tracked.aggregate_id,
                version,
                event_type,
                schema_version: tracked.schema_version,
                occurred_at: now,
                data,
                metadata: EventMetadata {
                    command_id: ctx.command_id,
                    correlation_id: ctx.correlation_id.clone(),
                    causation_id: ctx.causation_id.clone(),
                    user_id: ctx.user_id.clone(),
                    idempotency_key: ctx.idempotency_key.clone(),
                },
            });
        }
        tracked.state = Arc::new(state.clone());
        state
    }

    /// The aggregate's version after this command's events (0 if never loaded).
    pub fn version<A: Aggregate>(&self, id: Uuid) -> u64 {
        let stream = stream_id(A::TYPE, id);
        self.tracked.iter().find(|t| t.stream_id == stream).map_or(0, |t| t.expected_version + t.pending.len() as u64)
    }

    /// The ids of every event this command recorded, in order.
    pub fn event_ids(&self) -> Vec<Uuid> {
        self.tracked.iter().flat_map(|t| t.pending.iter().map(|e| e.event_id)).collect()
    }

    /// Every loaded aggregate goes into the commit, those without new events as a
    /// version check: the decision rested on their state, so it holds only if that
    /// state is still current (a stale cached state can never decide a refusal that
    /// is recorded as an event, e.g. a transfer failed for "insufficient funds").
    fn take_appends(&mut self) -> Vec<StreamAppend> {
        if self.tracked.iter().all(|t| t.pending.is_empty()) {
            return vec![];
        }
        self.tracked.iter().map(|t| StreamAppend { stream_id: t.stream_id.clone(), expected_version: t.expected_version, events: t.pending.clone() }).collect()
    }

    /// After a commit, the states it produced are the freshest there are.
    fn remember_states(&self) {
        self.service.remember(self.tracked.iter().map(|t| (t.stream_id.clone(), (t.expected_version + t.pending.len() as u64, t.state.clone()))));
    }
}

/// Folds a stream read from the store into its current state and version: from its
/// snapshot when it has one of this aggregate's schema version, else from the start.
async fn fetch<A: Aggregate>(store: &dyn EventStore, stream: &str) -> Result<(u64, A), StoreError> {
    let snapshot = match A::KEEPS_SNAPSHOTS {
        true => store.snapshot(stream).await?.filter(|s| s.schema_version == A::SCHEMA_VERSION),
        false => None,
    };
    let (from, mut state) = snapshot.and_then(|s| A::from_snapshot(&s.state).map(|state| (s.version, state))).unwrap_or_default();
    let events = store.load(stream, from).await?;
    let version = events.last().map_or(from, |e| e.version);
    for envelope in &events {
        let event: A::Event = envelope.decode().map_err(|e| StoreError(format!("{stream} v{}: undecodable {}: {e}", envelope.version, envelope.event_type)))?;
        state = state.apply(&event);
    }
    Ok((version, state))
}

fn downcast<A: Aggregate>(state: &Arc<dyn Any + Send + Sync>) -> A {
    state.downcast_ref::<A>().expect("a stream id names one aggregate type").clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::memory::MemoryEventStore;
    use crate::money::Money;
    use crate::wallet::*;

    fn service() -> Arc<CommandService> {
        Arc::new(CommandService::new(Arc::new(MemoryEventStore::default()), Arc::new(SystemClock)))
    }

    fn debit(minor: i64) -> WalletCommand {
        WalletCommand::Debit(Movement {
            amount: Money::from_minor(minor),
            transaction_type: DebitType::Payment,
            reference: "r".into(),
            description: None,
            currency: None,
        })
    }

    async fn funded_wallet(service: &CommandService, minor: i64) -> Uuid {
        let id = Uuid::now_v7();
        let ctx = CommandContext::new("alice", "c");
        let create = WalletCommand::open_personal(id, "alice", Money::from_minor(minor));
        service.execute(&ctx, async |uow| uow.handle::<Wallet>(id, &create).await).await.unwrap();
        service.execute(&ctx, async |uow| uow.handle::<Wallet>(id, &WalletCommand::Activate).await).await.unwrap();
        id
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_debits_serialise_and_never_overdraw() {
        let service = service();
        let id = funded_wallet(&service, 100_000).await;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let service = service.clone();
                tokio::spawn(async move {
                    let command = debit(3_000);
                    service.execute(&CommandContext::new("alice", "c"), async move |uow| uow.handle::<Wallet>(id, &command).await).await
                })
            })
            .collect();
        let (mut ok, mut refused) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(CommandError::Refused(e)) => {
                    assert_eq!(e.code(), "INSUFFICIENT_FUNDS");
                    refused += 1
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!((ok, refused), (33, 17));
        let events = service.store().load(&stream_id("wallet", id), 0).await.unwrap();
        let Wallet::Open(w) = events.iter().fold(Wallet::default(), |s, e| s.apply(&e.decode().unwrap())) else { panic!() };
        assert_eq!(w.balance, Money::from_minor(1_000));
    }

    #[tokio::test]
    async fn a_refusal_on_a_stale_cached_state_is_decided_again_on_a_fresh_read() {
        let store = Arc::new(MemoryEventStore::default());
        let a = CommandService::new(store.clone(), Arc::new(SystemClock));
        let b = CommandService::new(store, Arc::new(SystemClock));
        let id = funded_wallet(&a, 1_000).await;
        // `b` credits behind `a`'s back: `a`'s cache now says 10.00 where 60.00 is true.
        let credit = WalletCommand::Credit(Movement {
            amount: Money::from_minor(5_000),
            transaction_type: CreditType::Deposit,
            reference: "r".into(),
            description: None,
            currency: None,
        });
        b.execute(&CommandContext::new("alice", "c"), async |uow| uow.handle::<Wallet>(id, &credit).await).await.unwrap();
        let after = a.execute(&CommandContext::new("alice", "c"), async |uow| uow.handle::<Wallet>(id, &debit(3_000)).await).await.unwrap();
        assert_eq!(after.open().unwrap().balance, Money::from_minor(3_000));
    }

    #[tokio::test]
    async fn an_idempotent_command_applies_once_and_replays_its_answer() {
        let service = service();
        let id = funded_wallet(&service, 10_000).await;
        let request = IdempotencyRequest { scope: "alice".into(), key: "k".into(), request_hash: "h1".into() };
        let respond = |outcome: Result<&Wallet, &DomainError>, uow: &UnitOfWork| StoredResponse {
            status: if outcome.is_ok() { 200 } else { 422 },
            body: format!("v{}", uow.version::<Wallet>(id)),
            headers: vec![],
        };
        let ctx = CommandContext::new("alice", "c");
        let first = service.execute_idempotent(&ctx, &request, async |uow| uow.handle::<Wallet>(id, &debit(1_000)).await, respond).await.unwrap();
        let again = service.execute_idempotent(&ctx, &request, async |uow| uow.handle::<Wallet>(id, &debit(1_000)).await, respond).await.unwrap();
        assert_eq!(first, Answer::Fresh(StoredResponse { status: 200, body: "v4".into(), headers: vec![] }));
        assert_eq!(again, Answer::Replayed(first.response().clone()));
        let other = IdempotencyRequest { request_hash: "h2".into(), ..request };
        let reused = service.execute_idempotent(&ctx, &other, async |uow| uow.handle::<Wallet>(id, &debit(1_000)).await, respond).await;
        assert_eq!(reused, Err(CommandError::IdempotencyKeyReused));
        assert_eq!(service.store().load(&stream_id("wallet", id), 0).await.unwrap().len(), 4, "applied once");
    }

    #[tokio::test]
    async fn a_refusal_is_stored_and_replayed_too() {
        let service = service();
        let id = funded_wallet(&service, 100).await;
        let request = IdempotencyRequest { scope: "alice".into(), key: "k".into(), request_hash: "h".into() };
        let respond = |outcome: Result<&Wallet, &DomainError>, _: &UnitOfWork| StoredResponse {
            status: if outcome.is_ok() { 200 } else { 422 },
            body: String::new(),
            headers: vec![],
        };
        let ctx = CommandContext::new("alice", "c");
        let first = service.execute_idempotent(&ctx, &request, async |uow| uow.handle::<Wallet>(id, &debit(1_000)).await, respond).await.unwrap();
        assert_eq!(first.response().status, 422);
        let again = service.execute_idempotent(&ctx, &request, async |uow| uow.handle::<Wallet>(id, &debit(1_000)).await, respond).await.unwrap();
        assert!(matches!(again, Answer::Replayed(ref r) if r.status == 422));
    }

    #[tokio::test]
    async fn a_long_stream_loads_from_its_snapshot_and_the_tail_and_a_snapshot_of_another_schema_is_ignored() {
        let store = Arc::new(MemoryEventStore::default());
        let warm = CommandService::new(store.clone(), Arc::new(SystemClock));
        let id = funded_wallet(&warm, 0).await;
        let credit = WalletCommand::Credit(Movement {
            amount: Money::from_minor(100),
            transaction_type: CreditType::Deposit,
            reference: "r".into(),
            description: None,
            currency: None,
        });
        for _ in 0..450 {
            warm.execute(&CommandContext::new("alice", "c"), async |uow| uow.handle::<Wallet>(id, &credit).await).await.unwrap();
        }
        let stream = stream_id("wallet", id);
        let snapshot = store.snapshot(&stream).await.unwrap().expect("snapshotted");
        assert_eq!((snapshot.version, snapshot.schema_version), (400, Wallet::SCHEMA_VERSION));
        let folded = store.load(&stream, 0).await.unwrap().iter().fold(Wallet::default(), |w, e| w.apply(&e.decode().unwrap()));
        let (version, from_snapshot) = fetch::<Wallet>(store.as_ref(), &stream).await.unwrap();
        assert_eq!((version, &from_snapshot), (452, &folded), "snapshot + tail = the whole fold");

        // A snapshot the code cannot read (another schema version, or unreadable) is ignored.
        for (schema_version, state) in [(Wallet::SCHEMA_VERSION + 1, snapshot.state.clone()), (Wallet::SCHEMA_VERSION, serde_json::json!("garbage"))] {
            let other = Arc::new(MemoryEventStore::default());
            let events = store.load(&stream, 0).await.unwrap();
            other.append(Commit { streams: vec![StreamAppend { stream_id: stream.clone(), expected_version: 0, events }], idempotency: None }).await.unwrap();
            other.save_snapshot(&Snapshot { schema_version, state, ..snapshot.clone() }).await.unwrap();
            assert_eq!(fetch::<Wallet>(other.as_ref(), &stream).await.unwrap(), (452, folded.clone()));
        }
        let cold = CommandService::new(store.clone(), Arc::new(SystemClock));
        let after = cold.execute(&CommandContext::new("alice", "c"), async |uow| uow.handle::<Wallet>(id, &debit(45_000)).await).await.unwrap();
        assert_eq!(after.open().unwrap().balance, Money::ZERO);
    }

    /// The in-memory store, counting snapshot lookups.
    #[derive(Default)]
    struct CountingSnapshots(MemoryEventStore, std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl EventStore for CountingSnapshots {
        async fn load(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventEnvelope>, StoreError> {
            self.0.load(stream_id, after_version).await
        }
        async fn snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0.snapshot(stream_id).await
        }
        async fn append(&self, commit: Commit) -> Result<(), AppendError> {
            self.0.append(commit).await
        }
        async fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
            self.0.idempotency(scope, key).await
        }
    }

    #[tokio::test]
    async fn only_aggregates_that_keep_snapshots_look_for_one() {
        let store = CountingSnapshots::default();
        let looked = || store.1.load(std::sync::atomic::Ordering::SeqCst);
        fetch::<crate::transfer::Transfer>(&store, "transfer#x").await.unwrap();
        assert_eq!(looked(), 0, "a transfer is always folded from its events: no extra read");
        fetch::<Wallet>(&store, "wallet#x").await.unwrap();
        assert_eq!(looked(), 1);
    }
}
