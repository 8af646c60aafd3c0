//! Per-caller rate limits: each caller (a token's `sub`) has a budget of requests,
//! commands and queries apart, and a request over it is refused (429 `RATE_LIMITED`
//! with `Retry-After`) before anything else happens. The HTTP edge asks
//! ([`api::handle`](../../../api/fn.handle.html), right after the token); one adapter
//! per backend answers: `governor` token buckets in the local server's memory
//! (`src/rate_limit.rs`), a fixed-window counter per caller in DynamoDB on AWS, so
//! the limit holds across Lambda containers (`adapters/dynamodb/src/rate_limit.rs`).

use super::StoreError;
use async_trait::async_trait;
use std::time::Duration;

/// Commands and queries have budgets of their own: a client polling its balance
/// does not use up what it needs to pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    Command,
    Query,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Command => "command",
            RequestKind::Query => "query",
        }
    }
}

/// A token bucket: `per_second` requests on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    pub fn new(per_second: u32, burst: u32) -> Result<Rate, String> {
        if per_second == 0 || burst == 0 {
            return Err("a rate limit needs at least 1 request per second and a burst of at least 1".into());
        }
        Ok(Rate { per_second, burst })
    }
}

/// Every caller's limits, one per kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub commands: Rate,
    pub queries: Rate,
}

/// The defaults (server flags, template parameters): far above what one person's
/// client sends, so that only a runaway or hostile one meets them, and above what the
/// test suites and `healthpay bench` send as one caller.
pub const DEFAULT_RATE_LIMITS: RateLimits =
    RateLimits { commands: Rate { per_second: 1_000, burst: 2_000 }, queries: Rate { per_second: 2_000, burst: 4_000 } };

impl RateLimits {
    pub fn of(&self, kind: RequestKind) -> Rate {
        match kind {
            RequestKind::Command => self.commands,
            RequestKind::Query => self.queries,
        }
    }
}

/// A refusal: the caller is over its limit, and may try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub retry_after: Duration,
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one request from `caller`'s budget for `kind`, or says when to come back.
    /// `Err` only when the backend failed (the edge then lets the request through: the
    /// gateway's own throttle still guards the whole API).
    async fn admit(&self, caller: &str, kind: RequestKind) -> Result<Result<(), OverLimit>, StoreError>;
}

/// Admits everything: in-process tests of handlers that are not about limits, and
/// `healthpay serve --no-rate-limits` (the baseline the limiter's cost is measured against).
pub struct NoRateLimits;

#[async_trait]
impl RateLimiter for NoRateLimits {
    async fn admit(&self, _: &str, _: RequestKind) -> Result<Result<(), OverLimit>, StoreError> {
        Ok(Ok(()))
    }
}
