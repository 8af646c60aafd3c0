//! The event envelope: what the event store keeps, the stream carries and the
//! projections read. Stored envelopes are immutable; nothing ever rewrites one.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    /// UUID v7: unique, and sortable by creation time.
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// 1 for an aggregate's first event, then +1 per event, no gaps.
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    /// The event's fields. An event without fields is stored without `data`: some
    /// DynamoDB stream implementations (DynamoDB Local, hence LocalStack) emit an
    /// empty map attribute with no type, which no reader can decode.
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    pub command_id: Uuid,
    pub correlation_id: String,
    /// What caused the command: the request id of an HTTP call, or the saga step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl EventEnvelope {
    /// The event store's stream (partition) key: `wallet#<uuid>`.
    pub fn stream_id(&self) -> String {
        stream_id(&self.aggregate_type, self.aggregate_id)
    }

    /// Reads the typed domain event back out of the envelope.
    /// The event, in the shape the code reads today: events stored under an older
    /// schema version go through their upcasters first (`crate::upcast`).
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, serde_json::Error> {
        let (event_type, data) = crate::upcast::to_current(&self.aggregate_type, &self.event_type, self.schema_version, &self.data);
        decode_event(&event_type, &data)
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn is_empty_object(value: &serde_json::Value) -> bool {
    value.as_object().is_some_and(|o| o.is_empty())
}

pub fn stream_id(aggregate_type: &str, id: Uuid) -> String {
    format!("{aggregate_type}#{id}")
}

/// Domain events are enums tagged `{"type": …, "data": {…}}`; the envelope keeps the
/// tag as `event_type` and the fields as `data`.
pub fn encode_event<E: Serialize>(event: &E) -> (String, serde_json::Value) {
    let value = serde_json::to_value(event).expect("domain events always serialise");
    let serde_json::Value::Object(mut map) = value else { unreachable!("domain events are tagged enums") };
    let event_type = match map.remove("type") {
        Some(serde_json::Value::String(t)) => t,
        _ => unreachable!("domain events are tagged with `type`"),
    };
    (event_type, map.remove("data").unwrap_or_else(|| serde_json::json!({})))
}

pub fn decode_event<E: DeserializeOwned>(event_type: &str, data: &serde_json::Value) -> Result<E, serde_json::Error> {
    serde_json::from_value(serde_json::json!({ "type": event_type, "data": data }))
}
