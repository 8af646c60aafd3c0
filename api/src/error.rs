//! The contract's error body, and how every failure maps onto it.

use shared::command::CommandError;
use shared::error::DomainError;

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
    /// Details go to the log, never to the caller.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(500, "INTERNAL", "internal error; the request may be retried with the same Idempotency-Key")
    }

    /// The JSON error body of the contract.
    pub fn body(&self, timestamp: &str, correlation_id: &str) -> serde_json::Value {
        serde_json::json!({
            "statusCode": self.status,
            "error": self.code,
            "message": self.message,
            "timestamp": timestamp,
            "correlationId": correlation_id,
        })
    }
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
