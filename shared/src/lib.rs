//! HealthPay Ledger core.
//!
//! - Pure domain: [`money`], [`wallet`] (with payment holds), [`transfer`],
//!   [`payment`], [`medcard`] (monthly limit reservations), [`claim`] (the
//!   prescription claim saga's record and its pricing), [`prescription`] (a
//!   prescription is paid at most once) and [`insurance_claim`]
//!   (aggregates as `decide(state, command) -> events` and `apply(state, event)`),
//!   [`error`].
//! - The event [`envelope`] and the [`ports`] the core needs (event store, read
//!   models, saga executions, [`clock`]); [`memory`] is the in-memory adapter.
//! - Application services: [`command`] (load → decide → append with optimistic
//!   concurrency and idempotency), [`projection`] (read models fed by events),
//!   [`saga`] (the transfer and prescription-claim sagas' steps and the local ASL runner),
//!   [`payment_expiry`] (releasing authorisations nobody captured in time), [`fraud`]
//!   (rules over outgoing money, the alert aggregate and the detector that raises it).

pub mod aggregate;
pub mod app;
pub mod claim;
pub mod clock;
pub mod command;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod envelope;
pub mod error;
pub mod fraud;
pub mod ids;
pub mod insurance_claim;
pub mod medcard;
pub mod memory;
pub mod money;
pub mod payment;
pub mod payment_expiry;
pub mod ports;
pub mod prescription;
pub mod projection;
pub mod saga;
pub mod transfer;
pub mod upcast;
pub mod verify;
pub mod wallet;
