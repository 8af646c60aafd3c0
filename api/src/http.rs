//! One request's plumbing: correlation id, caller, body parsing, idempotency, and
//! turning answers into API Gateway proxy responses.

use crate::auth::Caller;
use crate::error::ApiError;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use shared::app::{Call, Idempotent, Reply};
use shared::command::{CommandContext, CommandError, IdempotencyRequest};
use shared::error::DomainError;
use shared::money::Money;
use shared::ports::StoredResponse;
use uuid::Uuid;

pub const CORRELATION_HEADER: &str = "x-correlation-id";
pub const IDEMPOTENCY_HEADERS: [&str; 2] = ["idempotency-key", "x-request-id"];
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// On a 429: whole seconds until the caller's budget has room again.
pub const RETRY_AFTER_HEADER: &str = "retry-after";
const MAX_KEY_LENGTH: usize = 255;

/// What a command decided, before it is rendered.
pub struct Success {
    pub status: u16,
    pub body: serde_json::Value,
    pub headers: Vec<(String, String)>,
}

impl Success {
    /// A 200 with `body` (a response struct of this crate: its schema is in the document).
    pub fn ok(body: impl serde::Serialize) -> Self {
        Success { status: 200, body: serde_json::to_value(body).expect("a response body serialises"), headers: vec![] }
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    pub fn with_header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.into(), value));
        self
    }
    fn render(self) -> StoredResponse {
        StoredResponse { status: self.status, body: self.body.to_string(), headers: self.headers }
    }
}

pub struct Incoming {
    pub request: Request,
    pub correlation_id: String,
    pub received_at: String,
    caller: Option<Caller>,
}

impl Incoming {
    pub fn new(request: Request, now: chrono::DateTime<chrono::Utc>) -> Self {
        let correlation_id = request
            .headers()
            .get(CORRELATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string)
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        Incoming { request, correlation_id, received_at: shared::clock::rfc3339(now), caller: None }
    }

    pub fn authenticate(&mut self) -> Result<(), ApiError> {
        self.caller = Some(crate::auth::caller_of(&self.request)?);
        Ok(())
    }

    pub fn caller(&self) -> &Caller {
        self.caller.as_ref().expect("routes that need a caller are authenticated first")
    }

    pub fn path_id(&self, name: &str) -> Result<Uuid, ApiError> {
        let params = self.request.path_parameters();
        let raw = params.first(name).ok_or_else(|| ApiError::validation(format!("missing path parameter {name}")))?;
        parse_uuid(name, raw)
    }

    pub fn query(&self, name: &str) -> Option<String> {
        self.request.query_string_parameters().first(name).map(str::to_string)
    }

    /// Parses the JSON body, which must be an object. An empty body reads as `{}`
    /// (for commands whose body is optional).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let bytes = self.body_bytes();
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => return serde_json::from_slice(b"{}").map_err(|e| ApiError::validation(format!("a request body is required: {e}"))),
            // serde would read `[1, "payment", …]` into the fields in order.
            Some(b'{') => {}
            Some(_) => {
                let sent_as = self.request.headers().get("content-type").and_then(|v| v.to_str().ok()).filter(|ct| !ct.contains("json"));
                let hint = sent_as.map(|ct| format!(" (it was sent as {ct}: send Content-Type: application/json)")).unwrap_or_default();
                return Err(ApiError::validation(format!("invalid request body: expected a JSON object{hint}")));
            }
        }
        serde_json::from_slice(bytes).map_err(|e| ApiError::validation(format!("invalid request body: {e}")))
    }

    fn body_bytes(&self) -> &[u8] {
        self.request.body().as_ref()
    }

    fn idempotency(&self) -> Result<Option<IdempotencyRequest>, ApiError> {
        let Some(key) = IDEMPOTENCY_HEADERS.iter().find_map(|h| self.request.headers().get(*h)) else { return Ok(None) };
        let key = key.to_str().map_err(|_| ApiError::validation("Idempotency-Key must be visible ASCII"))?.trim();
        if key.is_empty() || key.len() > MAX_KEY_LENGTH || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::validation(format!("Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters")));
        }
        Ok(Some(IdempotencyRequest { scope: self.caller().sub.clone(), key: key.to_string(), request_hash: self.request_hash() }))
    }

    /// Method, path and body; a JSON body in canonical form (key order and white
    /// space do not make a request different).
    fn request_hash(&self) -> String {
        let body = self.body_bytes();
        let canonical = serde_json::from_slice::<serde_json::Value>(body).map(|v| v.to_string().into_bytes()).unwrap_or_else(|_| body.to_vec());
        let mut hash = Sha256::new();
        hash.update(self.request.method().as_str());
        hash.update([0]);
        hash.update(self.request.uri().path());
        hash.update([0]);
        hash.update(&canonical);
        hex::encode(hash.finalize())
    }

    fn command_context(&self, idempotency: Option<&IdempotencyRequest>) -> CommandContext {
        let mut ctx = CommandContext::new(self.caller().sub.clone(), self.correlation_id.clone());
        ctx.causation_id = self.request.lambda_context_ref().map(|c| c.request_id.clone()).filter(|id| !id.is_empty());
        ctx.idempotency_key = idempotency.map(|i| i.key.clone());
        ctx
    }

    /// How a command of the application layer ([`shared::app::Ledger`]) is to run for
    /// this request: its context and, with an idempotency key, `render` to store its
    /// answer with its events. Pass the ledger's reply to [`Incoming::answer`].
    pub fn call<'a, R>(&'a self, render: &'a (impl Fn(&R) -> Success + Send + Sync)) -> Result<Call<'a, R>, ApiError> {
        let idempotency = self.idempotency()?;
        let context = self.command_context(idempotency.as_ref());
        let idempotency = idempotency.map(|request| Idempotent {
            request,
            render: Box::new(move |outcome: Result<&R, &DomainError>| match outcome {
                Ok(done) => render(done).render(),
                Err(refusal) => self.render_error(&ApiError::from(refusal.clone())),
            }),
        });
        Ok(Call { context, idempotency })
    }

    /// Renders what the ledger replied: its outcome with `render`, or the answer it
    /// stored (a replay marked as one).
    pub fn answer<R>(&self, reply: Result<Reply<R>, CommandError>, render: impl Fn(&R) -> Success) -> Result<StoredResponse, ApiError> {
        Ok(match reply? {
            Reply::Done(done) => render(&done).render(),
            Reply::Stored { response, replayed: false } => response,
            Reply::Stored { mut response, replayed: true } => {
                response.headers.push((REPLAYED_HEADER.into(), "true".into()));
                response
            }
        })
    }

    pub fn render_error(&self, error: &ApiError) -> StoredResponse {
        StoredResponse { status: error.status, body: error.body(&self.received_at, &self.correlation_id).to_string(), headers: vec![] }
    }

    pub fn respond(&self, answer: StoredResponse) -> Response<Body> {
        let mut builder =
            Response::builder().status(answer.status).header("content-type", "application/json").header(CORRELATION_HEADER, self.correlation_id.as_str());
        for (name, value) in &answer.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder.body(Body::Text(answer.body)).expect("status and headers are valid")
    }
}

pub fn parse_uuid(name: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::validation(format!("{name} must be a UUID, got {raw:?}")))
}

/// A contract amount: a JSON number, > 0, at most 2 decimals, at most 1,000,000,000.
pub fn amount(field: &str, raw: &serde_json::value::RawValue) -> Result<Money, ApiError> {
    Money::parse_amount(raw.get()).map_err(|e| ApiError::validation(format!("{field}: {e}")))
}

/// A whole number from `min` to `max`. Like an amount's, its value counts, not its
/// spelling: `2`, `2.0` and `2e0` are all 2 (JSON Schema's `integer` says the same);
/// `2.5` is not a whole number.
pub fn whole_number(raw: &serde_json::value::RawValue, min: u64, max: u64) -> Option<u64> {
    let minor = Money::parse_decimal(raw.get()).ok()?.minor();
    let whole = (minor % 100 == 0).then_some(minor / 100)?;
    u64::try_from(whole).ok().filter(|n| (min..=max).contains(n))
}

/// A required, bounded, non-blank text field.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::validation(format!("{field} must not be empty")));
    }
    if trimmed.chars().count() > max {
        return Err(ApiError::validation(format!("{field} must be at most {max} characters")));
    }
    Ok(trimmed.to_string())
}

pub fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    value.map(|v| text(field, v, max)).transpose()
}

/// Parses a unit enum from its wire name, naming the allowed values on error.
/// Only the values `allowed` lists are accepted, even if `T` has more (a debit
/// cannot call itself a claim payment).
pub fn one_of<T: DeserializeOwned>(field: &str, value: &str, allowed: &str) -> Result<T, ApiError> {
    let refused = || ApiError::validation(format!("{field} must be one of {allowed}, got {value:?}"));
    if !allowed.split(", ").any(|a| a == value) {
        return Err(refused());
    }
    serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|_| refused())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(content_type: &str, body: &str) -> Incoming {
        let request = lambda_http::http::Request::builder().header("content-type", content_type).body(Body::from(body)).unwrap();
        Incoming::new(request, chrono::Utc::now())
    }

    #[test]
    fn a_whole_number_is_its_value_whatever_its_spelling() {
        let raw = |text: &str| serde_json::value::RawValue::from_string(text.to_string()).unwrap();
        for (text, expected) in [("2", Some(2)), ("2.0", Some(2)), ("2e0", Some(2)), ("0.2e1", Some(2)), ("2.5", None), ("0", None), ("101", None)] {
            assert_eq!(whole_number(&raw(text), 1, 100), expected, "{text}");
        }
        for text in ["\"2\"", "true", "-1", "1e400", "2.0000000000000001"] {
            assert_eq!(whole_number(&raw(text), 0, u64::MAX), None, "{text}");
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Named {
        name: String,
    }

    #[test]
    fn a_body_must_be_a_json_object_and_a_form_is_told_how_to_send_one() {
        assert_eq!(body_of("application/json", r#" {"name": "a"}"#).json::<Named>().unwrap().name, "a");
        let array = body_of("application/json", r#"["a"]"#).json::<Named>().unwrap_err();
        assert_eq!(array.message, "invalid request body: expected a JSON object");
        // What LocalStack makes of curl's default form encoding.
        let form = body_of("application/x-www-form-urlencoded", "%7B%22name%22%3A%22a%22%7D=").json::<Named>().unwrap_err();
        assert_eq!(
            form.message,
            "invalid request body: expected a JSON object (it was sent as application/x-www-form-urlencoded: send Content-Type: application/json)"
        );
        let unknown = body_of("application/json", r#"{"name": "a", "nick": "b"}"#).json::<Named>().unwrap_err();
        assert!(unknown.message.contains("unknown field `nick`"), "{}", unknown.message);
    }
}
