//! Per-caller rate limits that hold across Lambda containers: a fixed-window counter
//! per caller and kind of request, in the idempotency table (its `expiresAt` TTL
//! removes spent windows), one conditional `UpdateItem` per request.
//!
//! A [`Rate`] of `per_second` with `burst` becomes windows of `ceil(burst /
//! per_second)` seconds that admit `burst` requests each: the same average rate and at
//! most `burst` at once within a window (up to twice that across a window's edge,
//! the price of one write per request instead of a read-modify-write).
//!
//! Item: `pk` = `ratelimit <kind> <window start, epoch s> <sub>` (spaces: neither a
//! `sub` nor an idempotency key has one, so no idempotency record shares the key), `hits` (N),
//! `expiresAt` (N, the window's end plus a minute). The update adds one to `hits`
//! on condition that it is below the limit; a refused request fails the condition
//! and so writes nothing.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use shared::clock::Clock;
use shared::ports::{OverLimit, Rate, RateLimiter, RateLimits, RequestKind, StoreError};
use std::sync::Arc;
use std::time::Duration;

pub struct DynamoRateLimiter {
    client: Client,
    table: String,
    limits: RateLimits,
    clock: Arc<dyn Clock>,
}

/// Where `now_ms` falls: the window's start (epoch seconds), its length and how long
/// until it ends.
fn window(rate: Rate, now_ms: i64) -> (i64, i64, Duration) {
    let length = i64::from(rate.burst.div_ceil(rate.per_second)).max(1);
    let start = now_ms.div_euclid(1000 * length) * length;
    let left_ms = (start + length) * 1000 - now_ms;
    (start, length, Duration::from_millis(left_ms.max(1) as u64))
}

impl DynamoRateLimiter {
    pub fn new(client: Client, idempotency_table: &str, limits: RateLimits, clock: Arc<dyn Clock>) -> Self {
        DynamoRateLimiter { client, table: idempotency_table.to_string(), limits, clock }
    }
}

#[async_trait]
impl RateLimiter for DynamoRateLimiter {
    async fn admit(&self, caller: &str, kind: RequestKind) -> Result<Result<(), OverLimit>, StoreError> {
        let rate = self.limits.of(kind);
        let (start, length, left) = window(rate, self.clock.now().timestamp_millis());
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("ratelimit {} {start} {caller}", kind.as_str())))
            .update_expression("ADD hits :one SET expiresAt = if_not_exists(expiresAt, :expires)")
            .condition_expression("attribute_not_exists(hits) OR hits < :limit")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(rate.burst.to_string()))
            .expression_attribute_values(":expires", AttributeValue::N((start + length + 60).to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(Err(OverLimit { retry_after: left })),
            Err(e) => Err(StoreError::new(format!("rate limit counter: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_last_burst_over_rate_seconds_and_say_how_long_is_left() {
        let rate = Rate::new(5, 10).unwrap();
        assert_eq!(window(rate, 10_500), (10, 2, Duration::from_millis(1_500)));
        assert_eq!(window(rate, 11_999), (10, 2, Duration::from_millis(1)));
        assert_eq!(window(rate, 12_000), (12, 2, Duration::from_millis(2_000)));
        // A burst below the rate still gets whole-second windows.
        assert_eq!(window(Rate::new(100, 10).unwrap(), 7_250), (7, 1, Duration::from_millis(750)));
    }
}
