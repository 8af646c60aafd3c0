//! The application layer: every rule about who may move whose money, and every
//! command workflow (who may act → load → decide → commit), one function per command.
//! The HTTP edge, the Lambda functions and any other front end only parse, call
//! [`Ledger`] and render what it answers.
//!
//! **Who-may comes first, and costs little.** A command is refused before it loads
//! an aggregate's history, takes its per-aggregate lock or waits in its queue: the
//! facts a permission rests on (a wallet's owner, a card's holder and sponsor, a
//! payment's merchant) are set by the aggregate's first event and never change, so
//! they are read from that one event ([`Ledger::origin`], cached) rather than from
//! the current state.

pub mod caller;
mod claims;
mod fraud;
mod medcards;
mod payments;
mod transfers;
mod wallets;

#[cfg(test)]
mod tests;

pub use caller::{Caller, Role};
pub use claims::{InsuranceClaimFiling, PrescriptionFiling};
pub use fraud::{reviews_fraud, Raised, FRAUD_DETECTOR};
pub use medcards::{CardIssue, CardOrder};
pub use payments::{Authorization, Capture, Refund};
pub use transfers::TransferOrder;
pub use wallets::WalletOpening;

use crate::aggregate::Aggregate;
use crate::command::{Answer, CommandContext, CommandError, CommandService, Failure, IdempotencyRequest, UnitOfWork};
use crate::envelope::stream_id;
use crate::error::DomainError;
use crate::ids::WalletId;
use crate::ports::StoredResponse;
use crate::wallet::{OpenWallet, Wallet};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Beyond this many, the cache of aggregates' first states is dropped and refilled.
const ORIGIN_CACHE_CAPACITY: usize = 100_000;

/// The ledger's commands, each with its rules.
pub struct Ledger {
    commands: Arc<CommandService>,
    /// How long a payment authorisation may wait for its capture.
    payment_expiry: chrono::Duration,
    origins: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

/// How one command call runs: who asked and why (copied onto its events) and, when
/// the caller sent an `Idempotency-Key`, how its answer is rendered to be stored in
/// the same commit as its events.
pub struct Call<'a, R> {
    pub context: CommandContext,
    pub idempotency: Option<Idempotent<'a, R>>,
}

pub struct Idempotent<'a, R> {
    pub request: IdempotencyRequest,
    pub render: Render<'a, R>,
}

/// Renders a command's outcome as the answer stored under its idempotency key.
pub type Render<'a, R> = Box<dyn Fn(Result<&R, &DomainError>) -> StoredResponse + Send + Sync + 'a>;

impl<R> Call<'_, R> {
    /// A call without an idempotency key.
    pub fn once(context: CommandContext) -> Self {
        Call { context, idempotency: None }
    }
}

/// What a command answered: its outcome, or (with an idempotency key) the answer
/// stored with its effects — this call's own, or an earlier call's, replayed.
#[derive(Debug)]
pub enum Reply<R> {
    Done(R),
    Stored { response: StoredResponse, replayed: bool },
}

impl<R> Reply<R> {
    /// The outcome of a call made without an idempotency key.
    pub fn done(self) -> Option<R> {
        match self {
            Reply::Done(outcome) => Some(outcome),
            Reply::Stored { .. } => None,
        }
    }
}

/// What a command changed on its main aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt<A> {
    pub command_id: Uuid,
    /// Every event the command appended, across all the aggregates it changed.
    pub event_ids: Vec<Uuid>,
    /// The aggregate's version after the command.
    pub version: u64,
    /// The aggregate after the command.
    pub state: A,
}

impl<A: Aggregate> Receipt<A> {
    fn of(uow: &UnitOfWork, id: Uuid, state: A) -> Self {
        Receipt { command_id: uow.context().command_id, event_ids: uow.event_ids(), version: uow.version::<A>(id), state }
    }
}

fn forbidden(message: String) -> CommandError {
    CommandError::Refused(DomainError::Forbidden(message))
}

impl Ledger {
    pub fn new(commands: Arc<CommandService>, payment_expiry: chrono::Duration) -> Self {
        Ledger { commands, payment_expiry, origins: Mutex::default() }
    }

    pub fn commands(&self) -> &Arc<CommandService> {
        &self.commands
    }

    /// The aggregate as its first event made it: the facts that never change after
    /// (owners, terms). One event read, then cached; the default state if it does
    /// not exist.
    pub async fn origin<A: Aggregate>(&self, id: Uuid) -> Result<A, CommandError> {
        let stream = stream_id(A::TYPE, id);
        if let Some(state) = self.origins.lock().unwrap().get(&stream).and_then(|s| s.downcast_ref::<A>()) {
            return Ok(state.clone());
        }
        let Some(first) = self.commands.store().first_event(&stream).await.map_err(CommandError::Store)? else { return Ok(A::default()) };
        let event: A::Event =
            first.decode().map_err(|e| CommandError::Store(crate::ports::StoreError::new(format!("{stream} v1: undecodable {}: {e}", first.event_type))))?;
        let state = A::default().apply(&event);
        let mut origins = self.origins.lock().unwrap();
        if origins.len() >= ORIGIN_CACHE_CAPACITY {
            origins.clear();
        }
        origins.insert(stream, Arc::new(state.clone()));
        Ok(state)
    }

    /// The wallet as it was opened (owner, type, currency); 404 if there is none.
    pub async fn wallet_origin(&self, wallet_id: WalletId) -> Result<OpenWallet, CommandError> {
        let wallet: Wallet = self.origin(wallet_id.uuid()).await?;
        wallet.open().cloned().ok_or(CommandError::Refused(DomainError::NotFound { kind: "wallet", id: wallet_id.uuid() }))
    }

    /// Whether `caller` owns the wallet (as opened) or is `admin`.
    async fn acts_for_wallet(&self, caller: &Caller, wallet_id: WalletId) -> Result<bool, CommandError> {
        Ok(caller.is_admin() || self.wallet_origin(wallet_id).await?.owner_id == caller.sub)
    }

    /// Runs `decide` as one command: exactly once with its answer stored when the
    /// call is idempotent.
    async fn run<R>(&self, call: &Call<'_, R>, decide: impl AsyncFnMut(&mut UnitOfWork) -> Result<R, Failure>) -> Result<Reply<R>, CommandError> {
        let Some(idempotent) = &call.idempotency else {
            return Ok(Reply::Done(self.commands.execute(&call.context, decide).await?));
        };
        let answer = self.commands.execute_idempotent(&call.context, &idempotent.request, decide, |outcome, _| (idempotent.render)(outcome)).await?;
        Ok(match answer {
            Answer::Fresh(response) => Reply::Stored { response, replayed: false },
            Answer::Replayed(response) => Reply::Stored { response, replayed: true },
        })
    }
}
