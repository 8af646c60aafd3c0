//! The contract's error body, and how every failure maps onto it.

use serde::Serialize;
use shared::command::CommandError;
use shared::error::DomainError;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        ApiError::new(400, "VALIDATION_ERROR", message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        ApiError::new(401, "UNAUTHENTICATED", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "FORBIDDEN", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, "NOT_FOUND", message)
    }
    pub fn rate_limited(message: impl Into<String>) -> Self {
        ApiError::new(429, "RATE_LIMITED", message)
    }
    /// Details go to the log, never to the caller.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(500, "INTERNAL", "internal error; the request may be retried with the same Idempotency-Key")
    }

    /// The JSON error body of the contract.
    pub fn body(&self, timestamp: &str, correlation_id: &str) -> serde_json::Value {
        let body = ErrorBody {
            status_code: self.status,
            error: self.code.to_string(),
            message: self.message.clone(),
            timestamp: timestamp.to_string(),
            correlation_id: correlation_id.to_string(),
        };
        serde_json::to_value(body).expect("an error body serialises")
    }
}

/// Every error's body, whatever its status.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    title = "Error",
    example = json!({"statusCode": 422, "error": "INSUFFICIENT_FUNDS", "message": "wallet 0190… has 100 EGP available, the debit needs 250 EGP", "timestamp": "2026-11-21T10:00:00.000Z", "correlationId": "0190d5e2-7f1c-7a51-9d0b-1f9a1c2b3d4e"})
)]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    pub status_code: u16,
    /// A stable code: VALIDATION_ERROR, UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, REQUEST_TIMEOUT, ALREADY_EXISTS, CONCURRENCY_CONFLICT, INSUFFICIENT_FUNDS, WALLET_NOT_ACTIVE, INVALID_STATE_TRANSITION, CURRENCY_MISMATCH, SAME_WALLET, LIMIT_EXCEEDED, IDEMPOTENCY_KEY_REUSED, RATE_LIMITED, INTERNAL, or another business rule's code.
    #[schema(examples("INSUFFICIENT_FUNDS"))]
    pub error: String,
    /// What went wrong, for a person; never internals.
    pub message: String,
    /// When the request was received (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The request's correlation id (X-Correlation-Id); on a replayed answer, the first request's.
    pub correlation_id: String,
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let status = match e {
            DomainError::Validation(_) => 400,
            DomainError::Forbidden(_) => 403,
            DomainError::NotFound { .. } | DomainError::Unknown { .. } => 404,
            DomainError::AlreadyExists { .. } | DomainError::PrescriptionAlreadyClaimed { .. } => 409,
            _ => 422,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Refused(refusal) => refusal.into(),
            CommandError::Conflict { .. } => ApiError::new(409, "CONCURRENCY_CONFLICT", "too many concurrent commands on this aggregate; retry the request"),
            CommandError::IdempotencyKeyReused => {
                ApiError::new(422, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was already used with a different request")
            }
            CommandError::Store(e) => ApiError::internal(e),
        }
    }
}

impl From<shared::ports::StoreError> for ApiError {
    fn from(e: shared::ports::StoreError) -> Self {
        ApiError::internal(e)
    }
}
