//! What the stores share: error mapping, item (de)serialisation, key helpers.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use shared::ports::StoreError;
use std::collections::HashMap;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// An SDK failure as a [`StoreError`], saying what we were doing and, in full, why.
pub(crate) fn sdk_error<E, R>(what: &str) -> impl FnOnce(SdkError<E, R>) -> StoreError + '_
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + 'static,
{
    move |e| StoreError::new(format!("dynamodb: {what}: {}", DisplayErrorContext(e)))
}

/// A value as an item (a struct serialises to its attributes), plus `extra` keys.
pub(crate) fn to_item<T: Serialize, K: Into<String>>(value: &T, what: &str, extra: impl IntoIterator<Item = (K, AttributeValue)>) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(value).map_err(|e| StoreError::new(format!("dynamodb: encoding {what}: {e}")))?;
    item.extend(extra.into_iter().map(|(k, v)| (k.into(), v)));
    Ok(item)
}

/// An item back as a value; an item that does not decode is a [`StoreError`] naming
/// it, never a panic (data from the table is not trusted).
pub(crate) fn from_item<T: DeserializeOwned>(item: Item, what: impl FnOnce() -> String) -> Result<T, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| StoreError::new(format!("dynamodb: corrupt {}: {e}", what())))
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A number attribute read back as `u64`.
pub(crate) fn get_u64(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

/// Escapes `%` and `#` so that the text can be followed by `#` in a key without
/// ambiguity: `("a#b", "c")` and `("a", "b#c")` never meet.
pub(crate) fn escape(part: &str) -> String {
    part.replace('%', "%25").replace('#', "%23")
}

/// A timestamp as text that sorts like the time (fixed width, nanoseconds).
pub(crate) fn time_key(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// The cancellation reason codes of a cancelled transaction, by action index.
pub(crate) fn reason_codes(e: &aws_sdk_dynamodb::types::error::TransactionCanceledException) -> Vec<&str> {
    e.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect()
}

pub(crate) const CONDITION_FAILED: &str = "ConditionalCheckFailed";
pub(crate) const TRANSACTION_CONFLICT: &str = "TransactionConflict";
