//! Counting the requests a client sends, for benchmarks ("DynamoDB requests per
//! command") and for tests that pin a request budget.

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An SDK interceptor that counts every HTTP request just before it is sent: one
/// per attempt, so SDK retries count too. Clones share the count.
///
/// ```no_run
/// # async fn f() {
/// let counter = store_dynamodb::RequestCounter::new();
/// let client = store_dynamodb::client_from_env_counted(None, &counter).await;
/// // … or on any config builder: `builder.interceptor(counter.clone())`.
/// # let _ = client;
/// let sent = counter.take();
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(pub Arc<AtomicU64>);

impl RequestCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests sent so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Requests sent since the last `take`, and starts counting afresh.
    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(&self, _: &BeforeTransmitInterceptorContextRef<'_>, _: &RuntimeComponents, _: &mut ConfigBag) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
