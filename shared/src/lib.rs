//! HealthPay Ledger core.
//!
//! - Pure domain: [`money`], [`wallet`], [`transfer`] (aggregates as
//!   `decide(state, command) -> events` and `apply(state, event)`), [`error`].
//! - The event [`envelope`] and the [`ports`] the core needs (event store, read
//!   models, saga executions, [`clock`]); [`memory`] is the in-memory adapter.
//! - Application services: [`command`] (load → decide → append with optimistic
//!   concurrency and idempotency), [`projection`] (read models fed by events),
//!   [`saga`] (the transfer saga's steps and the local ASL runner).

pub mod aggregate;
pub mod clock;
pub mod command;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod envelope;
pub mod error;
pub mod memory;
pub mod money;
pub mod ports;
pub mod projection;
pub mod saga;
pub mod transfer;
pub mod wallet;
