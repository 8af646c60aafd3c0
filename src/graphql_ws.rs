//! `GET /graphql/ws`: GraphQL subscriptions over WebSocket (`graphql-transport-ws`,
//! and the older `graphql-ws`) on the local server. The connection is authenticated
//! by its `connection_init` payload — `{"authorization": "Bearer <JWT>"}` (or
//! `{"token": "<JWT>"}`), browsers cannot set headers on a WebSocket — with the same
//! verifier as every route; each subscription is then answered only as far as its
//! REST route would answer that caller (`api::graphql::subscription`).

use crate::gateway::Gateway;
use api::graphql::bridge::Scope;
use api::graphql::subscription::LiveFeed;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use std::sync::Arc;

/// The path of the WebSocket endpoint.
pub const PATH: &str = "/graphql/ws";

pub async fn upgrade(gateway: Arc<Gateway>, live: LiveFeed, protocol: GraphQLProtocol, upgrade: WebSocketUpgrade) -> Response {
    let schema = api::graphql::schema(gateway.app.graphql);
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| {
        GraphQLWebSocket::new(socket, schema, protocol)
            .on_connection_init(move |payload| async move {
                let text = |key: &str| payload.get(key).and_then(|v| v.as_str()).map(str::to_string);
                let header = text("authorization").or_else(|| text("Authorization")).or_else(|| text("token").map(|t| format!("Bearer {t}")));
                let caller = gateway.verifier.verify_header(header.as_deref()).map_err(|refusal| async_graphql::Error::new(refusal.message))?;
                let mut data = async_graphql::Data::default();
                data.insert(Scope::for_caller(&gateway.app, &caller, uuid::Uuid::now_v7().to_string()));
                data.insert(live);
                // Queries over the socket batch their wallet reads as POST /graphql does.
                data.insert(api::graphql::wallet_loader(&gateway.app));
                Ok(data)
            })
            .serve()
    })
}
