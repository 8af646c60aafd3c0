//! The local server's [`RateLimiter`]: a `governor` token bucket per caller, one set
//! for commands and one for queries, in memory (no store access: a refused request
//! costs a hash-map lookup). On AWS the DynamoDB adapter keeps the count instead, so
//! that it holds across Lambda containers.

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use shared::ports::{OverLimit, Rate, RateLimiter, RateLimits, RequestKind, StoreError};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every this many checks, buckets that have refilled are dropped: a full bucket is
/// the same as none, and callers come and go.
const FORGET_IDLE_EVERY: u64 = 1 << 16;

pub struct GovernorLimiter {
    commands: DefaultKeyedRateLimiter<String>,
    queries: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    checks: AtomicU64,
}

fn quota(rate: Rate) -> Quota {
    let nonzero = |n: u32| NonZeroU32::new(n).expect("Rate::new refuses zero");
    Quota::per_second(nonzero(rate.per_second)).allow_burst(nonzero(rate.burst))
}

impl GovernorLimiter {
    pub fn new(limits: RateLimits) -> Self {
        GovernorLimiter {
            commands: DefaultKeyedRateLimiter::keyed(quota(limits.commands)),
            queries: DefaultKeyedRateLimiter::keyed(quota(limits.queries)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl RateLimiter for GovernorLimiter {
    async fn admit(&self, caller: &str, kind: RequestKind) -> Result<Result<(), OverLimit>, StoreError> {
        let buckets = match kind {
            RequestKind::Command => &self.commands,
            RequestKind::Query => &self.queries,
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_IDLE_EVERY == FORGET_IDLE_EVERY - 1 {
            buckets.retain_recent();
        }
        Ok(buckets.check_key(&caller.to_string()).map_err(|not_until| OverLimit { retry_after: not_until.wait_time_from(self.clock.now()) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_caller_over_its_burst_waits_while_others_and_its_other_budget_are_untouched() {
        let limiter = GovernorLimiter::new(RateLimits { commands: Rate::new(2, 3).unwrap(), queries: Rate::new(100, 100).unwrap() });
        for _ in 0..3 {
            assert_eq!(limiter.admit("noisy", RequestKind::Command).await.unwrap(), Ok(()));
        }
        let over = limiter.admit("noisy", RequestKind::Command).await.unwrap().unwrap_err();
        // One request comes back every half second at 2 per second.
        assert!(over.retry_after > Duration::ZERO && over.retry_after <= Duration::from_millis(500), "{over:?}");
        assert_eq!(limiter.admit("quiet", RequestKind::Command).await.unwrap(), Ok(()), "another caller has its own bucket");
        assert_eq!(limiter.admit("noisy", RequestKind::Query).await.unwrap(), Ok(()), "queries have their own budget");
        tokio::time::sleep(over.retry_after + Duration::from_millis(20)).await;
        assert_eq!(limiter.admit("noisy", RequestKind::Command).await.unwrap(), Ok(()), "admitted again once the wait is over");
        assert!(limiter.admit("noisy", RequestKind::Command).await.unwrap().is_err(), "and only one came back");
    }
}
