//! The scheduled payment-expiry sweep: EventBridge invokes it every few minutes;
//! it releases the holds of the authorisations nobody captured in time (see
//! `shared::payment_expiry`). A sweep is safe to repeat or to overlap with another.

use serde_json::{json, Value};
use shared::command::CommandService;
use shared::payment_expiry::{expire_due, expiry_period, DEFAULT_PAYMENT_EXPIRY};
use shared::ports::ReadStore;

/// How many authorisations one invocation expires at most; the rest wait for the
/// next one (the function's timeout leaves ample room for this many).
pub const MAX_PER_SWEEP: usize = 1_000;

/// The period new authorisations get: `PAYMENT_EXPIRY_SECONDS`, default 7 days.
pub fn period_from_env() -> Result<chrono::Duration, crate::aws::Error> {
    match std::env::var("PAYMENT_EXPIRY_SECONDS") {
        Err(_) => Ok(DEFAULT_PAYMENT_EXPIRY),
        Ok(raw) => {
            let seconds = raw.trim().parse::<u64>().map_err(|_| format!("PAYMENT_EXPIRY_SECONDS must be a number of seconds, got {raw:?}"))?;
            Ok(expiry_period(seconds)?)
        }
    }
}

/// Handles one scheduled event (its content does not matter): sweeps, and answers
/// what it did. A store failure fails the invocation (the schedule retries).
pub async fn sweep(commands: &CommandService, read: &dyn ReadStore, _event: Value) -> Result<Value, crate::aws::Error> {
    let sweep = expire_due(commands, read, MAX_PER_SWEEP).await?;
    tracing::info!(expired = sweep.expired.len(), skipped = sweep.skipped, failed = sweep.failed, more = sweep.more, "payment expiry sweep");
    Ok(json!({"expired": sweep.expired, "skipped": sweep.skipped, "failed": sweep.failed, "more": sweep.more}))
}
