//! `healthpay bench ceiling-server`: the HTTP ceiling of this machine, the baseline
//! `bench http --ceiling` measures in the same run as the ledger.
//!
//! A trivial axum server that answers the ledger's routes in the same shape and does
//! nothing else: it checks that a bearer token is present, parses the JSON body and
//! answers a small JSON document. Same runtime (tokio's multi-threaded default, as
//! `healthpay serve`), same HTTP stack (hyper 1 through axum), same client. So the
//! ratio ledger ÷ ceiling says what the ledger's own work costs, whatever the
//! machine's speed or load that minute — an absolute commands/s does not survive a
//! shared, noisy machine; a ratio measured side by side does.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Args, Debug, Clone)]
pub struct CeilingArgs {
    /// Loopback port to listen on.
    #[arg(long)]
    pub port: u16,
}

/// Answers until killed (the benchmark that started it stops it with SIGTERM).
pub async fn serve(args: CeilingArgs) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await.map_err(|e| format!("binding 127.0.0.1:{}: {e}", args.port))?;
    axum::serve(listener, router()).with_graceful_shutdown(crate::server::shutdown_signal()).await.map_err(|e| e.to_string())
}

fn router() -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "healthy"})) }))
        .route("/metrics", get(|| async { "" }))
        // Setup polls the wallet view until it shows the wallet at version 3.
        .route("/api/v2/wallets/{wallet_id}", get(|Path(id): Path<String>| async move { Json(json!({"walletId": id, "version": u32::MAX})) }))
        .route("/api/v2/commands/wallets/create", post(|headers: HeaderMap, body: Bytes| async move { command(&headers, &body, StatusCode::CREATED) }))
        .route("/api/v2/commands/transfers", post(|headers: HeaderMap, body: Bytes| async move { command(&headers, &body, StatusCode::CREATED) }))
        .route("/api/v2/commands/wallets/{wallet_id}/{action}", post(|headers: HeaderMap, body: Bytes| async move { command(&headers, &body, StatusCode::OK) }))
}

/// What every command route does here: the request's shape is checked (a bearer
/// token, a JSON body when there is one), and a JSON answer like the ledger's goes back.
fn command(headers: &HeaderMap, body: &Bytes, status: StatusCode) -> Response {
    static VERSION: AtomicU64 = AtomicU64::new(0);
    if !headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer ")) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"statusCode": 401, "error": "UNAUTHORIZED", "message": "missing bearer token"}))).into_response();
    }
    let request: Value = match body.is_empty() {
        true => Value::Null,
        false => match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(e) => {
                return (StatusCode::BAD_REQUEST, Json(json!({"statusCode": 400, "error": "VALIDATION_ERROR", "message": e.to_string()}))).into_response()
            }
        },
    };
    let id = uuid::Uuid::now_v7();
    let answer = json!({
        "walletId": id,
        "transferId": id,
        "status": "active",
        "amount": request.get("amount"),
        "version": VERSION.fetch_add(1, Ordering::Relaxed),
    });
    (status, Json(answer)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_answers_in_the_ledgers_shape_and_refuses_what_the_ledger_would() {
        let mut headers = HeaderMap::new();
        assert_eq!(command(&headers, &Bytes::from_static(b"{}"), StatusCode::OK).status(), StatusCode::UNAUTHORIZED);
        headers.insert("authorization", "Bearer x".parse().unwrap());
        assert_eq!(command(&headers, &Bytes::from_static(b"{not json"), StatusCode::OK).status(), StatusCode::BAD_REQUEST);
        assert_eq!(command(&headers, &Bytes::from_static(br#"{"amount":1.25}"#), StatusCode::OK).status(), StatusCode::OK);
        assert_eq!(command(&headers, &Bytes::new(), StatusCode::CREATED).status(), StatusCode::CREATED);
    }
}
