//! Creating and deleting the tables (tests, local runs; on AWS `template.yaml`
//! defines the same tables).

use crate::common::sdk_error;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use shared::ports::StoreError;
use std::time::Duration;

/// The TTL attribute of the idempotency table (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expiresAt";

/// The names of a deployment's three tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub events: String,
    pub idempotency: String,
    pub read: String,
}

impl TableNames {
    /// `<prefix>-events`, `<prefix>-idempotency`, `<prefix>-read`.
    pub fn prefixed(prefix: &str) -> Self {
        TableNames { events: format!("{prefix}-events"), idempotency: format!("{prefix}-idempotency"), read: format!("{prefix}-read") }
    }

    fn all(&self) -> [&str; 3] {
        [&self.events, &self.idempotency, &self.read]
    }
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().expect("name and key type are set")
}

fn attribute(name: &str, kind: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().expect("name and type are set")
}

/// Creates the three tables (on-demand): events (`streamId` S, `version` N, stream
/// `NEW_IMAGE`), idempotency (`pk` S, TTL on `expiresAt`) and read models (`pk` S,
/// `sk` S), and waits until they are active.
pub async fn create_tables(client: &Client, names: &TableNames) -> Result<(), StoreError> {
    client
        .create_table()
        .table_name(&names.events)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("streamId", KeyType::Hash))
        .key_schema(key("version", KeyType::Range))
        .attribute_definitions(attribute("streamId", ScalarAttributeType::S))
        .attribute_definitions(attribute("version", ScalarAttributeType::N))
        .stream_specification(StreamSpecification::builder().stream_enabled(true).stream_view_type(StreamViewType::NewImage).build().expect("enabled is set"))
        .send()
        .await
        .map_err(sdk_error("creating the events table"))?;
    client
        .create_table()
        .table_name(&names.idempotency)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .attribute_definitions(attribute("pk", ScalarAttributeType::S))
        .send()
        .await
        .map_err(sdk_error("creating the idempotency table"))?;
    client
        .create_table()
        .table_name(&names.read)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attribute("pk", ScalarAttributeType::S))
        .attribute_definitions(attribute("sk", ScalarAttributeType::S))
        .send()
        .await
        .map_err(sdk_error("creating the read-model table"))?;
    for table in names.all() {
        client
            .wait_until_table_exists()
            .table_name(table)
            .wait(Duration::from_secs(300))
            .await
            .map_err(|e| StoreError::new(format!("dynamodb: waiting for table {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e))))?;
    }
    // TTL can only be set on an active table.
    client
        .update_time_to_live()
        .table_name(&names.idempotency)
        .time_to_live_specification(TimeToLiveSpecification::builder().enabled(true).attribute_name(TTL_ATTRIBUTE).build().expect("fields are set"))
        .send()
        .await
        .map_err(sdk_error("enabling TTL on the idempotency table"))?;
    Ok(())
}

/// Deletes the three tables; every deletion is tried, the first failure returned.
pub async fn delete_tables(client: &Client, names: &TableNames) -> Result<(), StoreError> {
    let mut first_error = None;
    for table in names.all() {
        if let Err(e) = client.delete_table().table_name(table).send().await.map_err(sdk_error("deleting a table")) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
