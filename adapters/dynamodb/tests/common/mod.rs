//! Test fixtures: a DynamoDB endpoint from `HEALTHPAY_DYNAMODB_ENDPOINT` (the
//! tests are `#[ignore]`d without one, and fail — never pass — if run without it),
//! and stores on their own uniquely named tables, deleted when dropped.

#![allow(dead_code)]

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use store_dynamodb::{create_tables, delete_tables, Client, DynamoEventStore, DynamoReadStore, RequestCounter, TableNames};
use uuid::Uuid;

pub const ENDPOINT_VAR: &str = "HEALTHPAY_DYNAMODB_ENDPOINT";
pub const NEEDS_DYNAMODB: &str = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)";

pub fn endpoint() -> String {
    std::env::var(ENDPOINT_VAR).ok().filter(|e| !e.trim().is_empty()).unwrap_or_else(|| panic!("{NEEDS_DYNAMODB}"))
}

/// A client of the test endpoint. Credentials come from the environment when set;
/// the emulator accepts any, so fixed ones stand in otherwise (no credential chain,
/// no instance-metadata lookups).
pub fn client_for(endpoint: &str, counter: Option<&RequestCounter>) -> Client {
    let credentials = Credentials::new(
        std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into()),
        std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into()),
        None,
        None,
        "healthpay-tests",
    );
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())))
        .endpoint_url(endpoint)
        .credentials_provider(credentials);
    if let Some(counter) = counter {
        config = config.interceptor(counter.clone());
    }
    Client::from_conf(config.build())
}

pub fn client() -> Client {
    client_for(&endpoint(), None)
}

/// A test's own tables, deleted (best effort) when dropped — also when the test
/// panics.
pub struct Tables {
    pub names: TableNames,
    endpoint: String,
}

impl Tables {
    pub async fn create(client: &Client) -> Tables {
        let names = TableNames::prefixed(&format!("t{}", Uuid::new_v4().simple()));
        create_tables(client, &names).await.expect("creating the test tables");
        Tables { names, endpoint: endpoint() }
    }
}

impl Drop for Tables {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be single-threaded: delete
        // on a thread of our own, with a client of our own (none of its connections
        // live on the test's runtime).
        let (names, endpoint) = (self.names.clone(), self.endpoint.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async {
                if let Err(e) = delete_tables(&client_for(&endpoint, None), &names).await {
                    eprintln!("could not delete the test tables {names:?}: {e}");
                }
            });
        })
        .join();
    }
}

/// A store with the tables it lives in (declared after it: the store goes first).
pub struct Fresh<S> {
    pub store: S,
    pub client: Client,
    pub tables: Tables,
}

pub async fn event_store_with(client: Client) -> Fresh<DynamoEventStore> {
    let tables = Tables::create(&client).await;
    Fresh { store: DynamoEventStore::new(client.clone(), &tables.names.events, &tables.names.idempotency), client, tables }
}

pub async fn event_store() -> Fresh<DynamoEventStore> {
    event_store_with(client()).await
}

pub async fn read_store() -> Fresh<DynamoReadStore> {
    let client = client();
    let tables = Tables::create(&client).await;
    Fresh { store: DynamoReadStore::new(client.clone(), &tables.names.read), client, tables }
}
