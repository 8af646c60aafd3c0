//! Identity: who the caller is and what they may do.
//!
//! On AWS, the REST API's Lambda authorizer validates the bearer JWT and passes
//! `sub` and `roles` in the request context; locally, the server validates the same
//! token with [`TokenVerifier`] and fills in the same context. Handlers only ever
//! read the context ([`Caller::from_request`]).

use crate::error::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use serde::{Deserialize, Serialize};

pub const ADMIN: &str = "admin";
pub const KNOWN_ROLES: [&str; 3] = ["admin", "pharmacy", "insurer"];
/// The token issuer and audience this ledger mints and accepts.
pub const ISSUER: &str = "healthpay-ledger";
pub const AUDIENCE: &str = "healthpay-api";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.has_role(ADMIN)
    }
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
    /// The owner, or an admin.
    pub fn may_act_for(&self, owner_id: &str) -> bool {
        self.sub == owner_id || self.is_admin()
    }

    /// Reads the authorizer context API Gateway (or the local server) attached.
    pub fn from_request(request: &lambda_http::Request) -> Result<Caller, ApiError> {
        let fields = match request.request_context_ref() {
            Some(RequestContext::ApiGatewayV1(context)) => &context.authorizer.fields,
            _ => return Err(ApiError::unauthenticated("missing or invalid bearer token")),
        };
        let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
        let sub = text("sub").or_else(|| text("principalId")).ok_or_else(|| ApiError::unauthenticated("missing or invalid bearer token"))?;
        let roles = match fields.get("roles") {
            // Lambda authorizer context values are strings: roles travel comma-separated.
            Some(serde_json::Value::String(list)) => split_roles(list),
            Some(serde_json::Value::Array(list)) => list.iter().filter_map(|r| r.as_str()).map(str::to_string).collect(),
            _ => vec![],
        };
        Ok(Caller { sub: sub.to_string(), roles })
    }

    /// The authorizer context for this caller, as API Gateway passes it on.
    pub fn context_fields(&self) -> std::collections::HashMap<String, serde_json::Value> {
        [("principalId", self.sub.clone()), ("sub", self.sub.clone()), ("roles", self.roles.join(","))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect()
    }
}

/// Whether API Gateway (or a stand-in) attached an authorizer context.
pub fn has_caller(request: &lambda_http::Request) -> bool {
    Caller::from_request(request).is_ok()
}

/// Attaches `caller` as the authorizer context, as API Gateway does after its
/// authorizer allowed the request.
pub fn with_caller(request: lambda_http::Request, caller: &Caller) -> lambda_http::Request {
    let mut context = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.clone(),
        _ => Default::default(),
    };
    context.authorizer.fields = caller.context_fields();
    request.with_request_context(RequestContext::ApiGatewayV1(context))
}

pub fn split_roles(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::to_string).collect()
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
}

/// HS256 tokens with a shared secret: verified by the local server and the Lambda
/// authorizer, minted by `healthpay token` for development.
#[derive(Clone)]
pub struct TokenVerifier {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

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
        validation.leeway = 30;
        TokenVerifier { decoding: DecodingKey::from_secret(secret), encoding: EncodingKey::from_secret(secret), validation }
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

    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| ApiError::unauthenticated(format!("invalid bearer token: {}", rejection(e.kind()))))?;
        if data.claims.sub.trim().is_empty() {
            return Err(ApiError::unauthenticated("invalid bearer token: empty sub"));
        }
        Ok(Caller { sub: data.claims.sub, roles: data.claims.roles })
    }

    pub fn mint(&self, sub: &str, roles: &[String], now: i64, ttl_seconds: i64) -> String {
        let claims = Claims { sub: sub.into(), roles: roles.to_vec(), iss: ISSUER.into(), aud: AUDIENCE.into(), iat: now, exp: now + ttl_seconds };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_others_do_not() {
        let verifier = TokenVerifier::new(b"secret-1");
        let now = chrono::Utc::now().timestamp();
        let token = verifier.mint("alice", &["admin".into()], now, 3600);
        let caller = verifier.verify_header(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(caller, Caller { sub: "alice".into(), roles: vec!["admin".into()] });
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
}
