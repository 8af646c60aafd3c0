//! Ports: the small traits the core needs from the outside world. One adapter per
//! backend implements them (in-memory here, SQLite and DynamoDB in `adapters/`).

pub mod event_store;
pub mod executions;
pub mod rate_limit;
pub mod read_store;

pub use event_store::*;
pub use executions::*;
pub use rate_limit::{NoRateLimits, OverLimit, Rate, RateLimiter, RateLimits, RequestKind, DEFAULT_RATE_LIMITS};
pub use read_store::*;

/// A backend failed (I/O, unavailable, corrupt row). Never a business outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store failure: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn new(e: impl std::fmt::Display) -> Self {
        StoreError(e.to_string())
    }
}
