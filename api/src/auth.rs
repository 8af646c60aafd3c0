//! Identity: who the caller is and what they may do.
//!
//! On AWS, the REST API's Lambda authorizer validates the bearer JWT and passes
//! `sub` and `roles` in the request context; locally, the server validates the same
//! token with [`TokenVerifier`] and fills in the same context. Handlers only ever
//! read the context ([`caller_of`]).

use crate::error::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use serde::{Deserialize, Serialize};
pub use shared::app::{Caller, Role};
use std::collections::HashMap;

/// The token issuer and audience this ledger mints and accepts.
pub const ISSUER: &str = "healthpay-ledger";
pub const AUDIENCE: &str = "healthpay-api";

fn no_caller() -> ApiError {
    ApiError::unauthenticated("missing or invalid bearer token")
}

/// Reads the authorizer context API Gateway (or the local server) attached.
///
/// `roles` is a JSON array, as [`context_fields`] writes it (API Gateway passes
/// authorizer context values as strings, so the array arrives JSON-encoded in
/// one). It is never split on commas: any other shape is refused, not guessed at.
pub fn caller_of(request: &lambda_http::Request) -> Result<Caller, ApiError> {
    let fields = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => &context.authorizer.fields,
        _ => return Err(no_caller()),
    };
    let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    let sub = text("sub").or_else(|| text("principalId")).ok_or_else(no_caller)?;
    let roles: Vec<String> = match fields.get("roles") {
        None | Some(serde_json::Value::Null) => vec![],
        Some(serde_json::Value::String(encoded)) => serde_json::from_str(encoded).map_err(|_| no_caller())?,
        Some(list @ serde_json::Value::Array(_)) => serde_json::from_value(list.clone()).map_err(|_| no_caller())?,
        Some(_) => return Err(no_caller()),
    };
    Caller::new(sub, roles).map_err(|e| ApiError::unauthenticated(format!("invalid bearer token: {e}")))
}

/// The authorizer context for `caller`, as API Gateway passes it on: string values,
/// `roles` a JSON array.
pub fn context_fields(caller: &Caller) -> HashMap<String, serde_json::Value> {
    let roles: Vec<&str> = caller.roles().map(Role::as_str).collect();
    let roles = serde_json::to_string(&roles).expect("a list of strings serialises");
    [("principalId", caller.sub.clone()), ("sub", caller.sub.clone()), ("roles", roles)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
        .collect()
}

/// Whether API Gateway (or a stand-in) attached an authorizer context.
pub fn has_caller(request: &lambda_http::Request) -> bool {
    caller_of(request).is_ok()
}

/// Attaches `caller` as the authorizer context, as API Gateway does after its
/// authorizer allowed the request.
pub fn with_caller(request: lambda_http::Request, caller: &Caller) -> lambda_http::Request {
    let mut context = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.clone(),
        _ => Default::default(),
    };
    context.authorizer.fields = context_fields(caller);
    request.with_request_context(RequestContext::ApiGatewayV1(context))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// Not before: a token is refused until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// HS256 tokens with a shared secret: verified by the local server and the Lambda
/// authorizer, minted by `healthpay token` for development.
#[derive(Clone)]
pub struct TokenVerifier {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    /// Tokens whose signature and claims were checked already, by the whole token.
    verified: std::sync::Arc<std::sync::Mutex<HashMap<String, Verified>>>,
}

/// A token that verified: who it names and when it is valid.
#[derive(Clone)]
struct Verified {
    caller: Caller,
    not_before: Option<i64>,
    expires: i64,
}

/// At most this many verified tokens are remembered (then the memory starts afresh).
const VERIFIED_TOKENS: usize = 10_000;
/// Seconds of clock skew allowed on `exp` and `nbf`.
const LEEWAY: i64 = 30;

/// Why a token was refused, in the caller's terms: the library's own wording names
/// its internals (`InvalidSignature`, its list of algorithms).
fn rejection(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind::*;
    match kind {
        ExpiredSignature => "it has expired".into(),
        ImmatureSignature => "it is not valid yet".into(),
        InvalidSignature => "its signature does not verify".into(),
        InvalidAlgorithm | InvalidAlgorithmName => "it must be signed with HS256".into(),
        InvalidIssuer | InvalidAudience => "it was not issued for this API (iss, aud)".into(),
        MissingRequiredClaim(claim) => format!("it has no {claim} claim"),
        _ => "it is not a well-formed JWT".into(),
    }
}

impl TokenVerifier {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY as u64;
        TokenVerifier { decoding: DecodingKey::from_secret(secret), encoding: EncodingKey::from_secret(secret), validation, verified: Default::default() }
    }

    /// Verifies an `Authorization` header value (`Bearer <jwt>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthenticated("missing bearer token: send Authorization: Bearer <JWT>"))?;
        self.verify(token)
    }

    /// The caller a token names, if it verifies now.
    ///
    /// A client sends the same token with every request until it expires, and checking
    /// its HMAC and decoding its claims was a tenth of a command's CPU on the local
    /// server: a token that verified is remembered (keyed by all of it, signature
    /// included, so a token that differs by one byte is checked afresh) and only its
    /// time window is checked again. A refused token is never remembered.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let remembered = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(token).cloned();
        if let Some(known) = remembered.filter(|known| known.expires >= now - LEEWAY && known.not_before.is_none_or(|nbf| nbf <= now + LEEWAY)) {
            return Ok(known.caller);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| ApiError::unauthenticated(format!("invalid bearer token: {}", rejection(e.kind()))))?;
        let caller = Caller::new(&data.claims.sub, &data.claims.roles).map_err(|e| ApiError::unauthenticated(format!("invalid bearer token: {e}")))?;
        let mut verified = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.to_string(), Verified { caller: caller.clone(), not_before: data.claims.nbf, expires: data.claims.exp });
        Ok(caller)
    }

    pub fn mint(&self, sub: &str, roles: &[String], now: i64, ttl_seconds: i64) -> String {
        self.sign(&Claims { sub: sub.into(), roles: roles.to_vec(), iss: ISSUER.into(), aud: AUDIENCE.into(), iat: now, exp: now + ttl_seconds, nbf: None })
    }

    /// Signs any claims (tests use it for tokens `mint` would never make).
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 signing cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_token_is_refused_once_it_expires_and_a_one_byte_change_is_checked_afresh() {
        let verifier = TokenVerifier::new(b"secret-1");
        let now = chrono::Utc::now().timestamp();
        // Valid for one more second, thanks to the leeway.
        let token = verifier.mint("alice", &[], now - 600, 600 - LEEWAY + 1);
        assert_eq!(verifier.verify(&token).unwrap().sub, "alice");
        assert_eq!(verifier.verify(&token).unwrap().sub, "alice", "remembered");
        let (head, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
        let forged = format!("{head}.{flipped}{}", &signature[1..]);
        assert!(verifier.verify(&forged).is_err(), "a different signature is verified, not looked up");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(verifier.verify(&token).unwrap_err().message, "invalid bearer token: it has expired");
    }

    #[test]
    fn minted_tokens_verify_and_others_do_not() {
        let verifier = TokenVerifier::new(b"secret-1");
        let now = chrono::Utc::now().timestamp();
        let token = verifier.mint("alice", &["admin".into()], now, 3600);
        let caller = verifier.verify_header(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(caller, Caller::new("alice", ["admin"]).unwrap());
        assert_eq!(verifier.verify_header(None).unwrap_err().status, 401);
        assert_eq!(verifier.verify_header(Some(&token)).unwrap_err().status, 401, "no Bearer prefix");
        let forged = TokenVerifier::new(b"other").verify(&token).unwrap_err();
        assert_eq!((forged.code, forged.message.as_str()), ("UNAUTHENTICATED", "invalid bearer token: its signature does not verify"));
        let expired = verifier.mint("alice", &[], now - 7200, 60);
        assert_eq!(verifier.verify(&expired).unwrap_err().message, "invalid bearer token: it has expired");
        assert_eq!(verifier.verify("garbage").unwrap_err().message, "invalid bearer token: it is not a well-formed JWT");
        // alg "none": refused without the library's list of algorithms.
        let unsigned = format!("eyJhbGciOiJub25lIn0.{}.", token.split('.').nth(1).unwrap());
        let refused = verifier.verify(&unsigned).unwrap_err();
        assert_eq!((refused.status, refused.message.as_str()), (401, "invalid bearer token: it is not a well-formed JWT"));
    }

    #[test]
    fn a_token_is_refused_before_its_nbf_and_for_a_sub_that_is_not_1_to_128_visible_characters() {
        let verifier = TokenVerifier::new(b"secret-1");
        let now = chrono::Utc::now().timestamp();
        let claims =
            |sub: &str, nbf: Option<i64>| Claims { sub: sub.into(), roles: vec![], iss: ISSUER.into(), aud: AUDIENCE.into(), iat: now, exp: now + 600, nbf };
        let early = verifier.verify(&verifier.sign(&claims("alice", Some(now + 300)))).unwrap_err();
        assert_eq!(early.message, "invalid bearer token: it is not valid yet");
        assert!(verifier.verify(&verifier.sign(&claims("alice", Some(now - 1)))).is_ok());
        for sub in ["x".repeat(129), "al ice".into(), " ".into(), "a\u{7}".into()] {
            let refused = verifier.verify(&verifier.sign(&claims(&sub, None))).unwrap_err();
            assert_eq!(refused.status, 401, "{sub:?}");
        }
    }

    #[test]
    fn roles_travel_as_a_json_array_and_any_other_shape_is_refused() {
        let caller = Caller::new("alice", ["insurer", "pharmacy"]).unwrap();
        let request = with_caller(lambda_http::Request::new(lambda_http::Body::Empty), &caller);
        assert_eq!(context_fields(&caller)["roles"], serde_json::json!(r#"["pharmacy","insurer"]"#));
        assert_eq!(caller_of(&request).unwrap(), caller);
        let mut context = lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
        context.authorizer.fields.insert("sub".into(), "mallory".into());
        context.authorizer.fields.insert("roles".into(), "pharmacy,admin".into());
        let comma = lambda_http::Request::new(lambda_http::Body::Empty).with_request_context(RequestContext::ApiGatewayV1(context));
        assert_eq!(caller_of(&comma).unwrap_err().status, 401, "a comma-joined list is not read");
    }
}
