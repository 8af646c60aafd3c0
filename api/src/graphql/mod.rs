//! The GraphQL API: `POST /graphql`, one more route of the table (`routes.rs`), so
//! the local server and the `graphql` Lambda function behind API Gateway serve it
//! with the same JWT check as every route.
//!
//! Resolvers only parse, call and render: each calls the REST route's handler for
//! what it asks ([`bridge`]), so the application layer and the read side's checks
//! decide who may, errors carry the REST error body's code in `extensions.code`, and
//! a mutation's `Idempotency-Key` is stored and replayed exactly as REST does. A
//! wallet by id is read through a per-request DataLoader ([`query::WalletLoader`]):
//! fifty wallets in one query are one batched read of the store.
//!
//! - [`types`]: the object types (the REST bodies' fields and names), `Money`;
//! - [`query`], [`mutation`]: one field per query route, one mutation per command;
//! - [`subscription`]: live views over the local server's WebSocket (`/graphql/ws`);
//! - the committed SDL is `docs/schema.graphql` (a test holds it equal to [`sdl`]).

pub mod bridge;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use crate::error::ApiError;
use crate::http::{Incoming, REPLAYED_HEADER};
use crate::App;
use async_graphql::dataloader::DataLoader;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::Schema;
use shared::ports::StoredResponse;
use std::sync::{Arc, OnceLock};

/// Deepest selection accepted (the deepest useful one, a card's claims' items, is 5).
pub const MAX_DEPTH: usize = 8;
/// Largest query cost accepted: each field costs 1, a list field its page size (or
/// its ids) times its selection. Fifty wallets with every field cost about 650; a
/// wallet's 200-movement page about 2,000.
pub const MAX_COMPLEXITY: usize = 5_000;
/// The environment variable (and `healthpay serve --graphql-introspection`) that
/// turns introspection off: `false` in production, where the schema is published
/// as `docs/schema.graphql` instead of answered.
pub const INTROSPECTION_ENV: &str = "HEALTHPAY_GRAPHQL_INTROSPECTION";

pub type LedgerSchema = Schema<query::Query, mutation::Mutation, subscription::Subscription>;

/// How this process serves GraphQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub introspection: bool,
}

impl Settings {
    /// Introspection on unless [`INTROSPECTION_ENV`] is `false`, `off` or `0`.
    pub fn from_env() -> Settings {
        let off = std::env::var(INTROSPECTION_ENV).is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "off" | "0"));
        Settings { introspection: !off }
    }
}

/// The schema, with its limits; built once per process for each setting.
pub fn schema(settings: Settings) -> LedgerSchema {
    static WITH: OnceLock<LedgerSchema> = OnceLock::new();
    static WITHOUT: OnceLock<LedgerSchema> = OnceLock::new();
    let build = || {
        let builder = Schema::build(query::Query, mutation::Mutation, subscription::Subscription)
            .limit_depth(MAX_DEPTH)
            .limit_complexity(MAX_COMPLEXITY)
            .extension(SocketOperations);
        if settings.introspection { builder } else { builder.disable_introspection() }.finish()
    };
    if settings.introspection { WITH.get_or_init(build) } else { WITHOUT.get_or_init(build) }.clone()
}

/// The schema in SDL, as committed in `docs/schema.graphql`.
pub fn sdl() -> String {
    schema(Settings { introspection: true }).sdl()
}

/// `POST /graphql`: a GraphQL-over-HTTP request (`{"query", "variables",
/// "operationName"}`), answered 200 with `{"data", "errors"}`. One operation a
/// request: a batch (a JSON array) is refused.
pub async fn serve(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let request: async_graphql::Request = incoming.json()?;
    let scope = bridge::Scope::of(app, incoming);
    let request = request.data(scope.clone()).data(wallet_loader(app));
    let mut response = schema(app.graphql).execute(request).await;
    // Every resolver's error carries the REST code already; what is left is the
    // request's own shape (syntax, unknown fields, wrong types, over the limits).
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "VALIDATION_ERROR");
            extensions.set("statusCode", 400);
        }
    }
    let body = serde_json::to_string(&response).map_err(ApiError::internal)?;
    let replayed = scope.replayed().then(|| (REPLAYED_HEADER.to_string(), "true".to_string()));
    Ok(StoredResponse { status: 200, body, headers: replayed.into_iter().collect() })
}

/// What batches one request's (or one WebSocket connection's) reads of wallets by id.
pub fn wallet_loader(app: &App) -> DataLoader<query::WalletLoader> {
    DataLoader::new(query::WalletLoader(app.read.clone()), tokio::spawn)
}

/// Charges a query or mutation sent over the WebSocket one query token, as
/// `POST /graphql` is charged before it runs (its mutations are charged one by one
/// as they run, wherever they come from). A subscription is charged when it opens
/// ([`bridge::Scope::open_subscription`]).
struct SocketOperations;

impl ExtensionFactory for SocketOperations {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(SocketOperations)
    }
}

#[async_trait::async_trait]
impl Extension for SocketOperations {
    async fn execute(&self, ctx: &ExtensionContext<'_>, operation_name: Option<&str>, next: NextExecute<'_>) -> async_graphql::Response {
        if let Some(scope) = ctx.data_opt::<Arc<bridge::Scope>>() {
            if let Err(refused) = scope.charge_socket_operation().await {
                return async_graphql::Response::from_errors(vec![refused.into_server_error(Default::default())]);
            }
        }
        next.run(ctx, operation_name).await
    }
}

/// `POST /graphql`'s body (for the OpenAPI document; `async_graphql::Request` reads it).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct GraphqlRequest {
    /// The operation, in GraphQL (docs/schema.graphql).
    query: String,
    variables: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Which operation of `query` to run, if it has several.
    operation_name: Option<String>,
}

/// A GraphQL answer: `data`, and `errors` for the fields that failed.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct GraphqlReply {
    data: Option<serde_json::Value>,
    errors: Option<Vec<GraphqlError>>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct GraphqlError {
    message: String,
    path: Option<Vec<serde_json::Value>>,
    /// `code`: the REST error body's code (FORBIDDEN, NOT_FOUND, VALIDATION_ERROR,
    /// INSUFFICIENT_FUNDS, …); `statusCode`: the status REST would have answered.
    extensions: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_schema_is_the_generated_one() {
        crate::assert_committed("docs/schema.graphql", &sdl(), "HEALTHPAY_BLESS_SCHEMA", "graphql-schema --out docs/schema.graphql", "graphql");
    }
}
