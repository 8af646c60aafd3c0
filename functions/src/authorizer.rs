//! The REST API's Lambda (TOKEN) authorizer: validates the bearer JWT exactly like
//! the local server does, and passes `sub` and `roles` on as context.

use api::auth::{Caller, TokenVerifier};
use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequest, ApiGatewayCustomAuthorizerResponse};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};

/// API Gateway answers 401 when a TOKEN authorizer fails with exactly this message.
pub const UNAUTHORIZED: &str = "Unauthorized";

pub fn authorize(verifier: &TokenVerifier, request: &ApiGatewayCustomAuthorizerRequest) -> Result<ApiGatewayCustomAuthorizerResponse, &'static str> {
    let caller = verifier.verify_header(request.authorization_token.as_deref()).map_err(|e| {
        tracing::info!(reason = %e.message, "token refused");
        UNAUTHORIZED
    })?;
    Ok(allow(&caller, request.method_arn.as_deref().unwrap_or("*")))
}

/// Allows every method of this API stage, so that API Gateway may cache the decision
/// per token (`ReauthorizeEvery`) across routes; ownership is checked by the handlers.
fn allow(caller: &Caller, method_arn: &str) -> ApiGatewayCustomAuthorizerResponse {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".into()];
    statement.effect = IamPolicyEffect::Allow;
    statement.resource = vec![stage_wildcard(method_arn)];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".into());
    policy.statement = vec![statement];
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(caller.sub.clone());
    response.policy_document = policy;
    response.context = serde_json::to_value(api::auth::context_fields(caller)).expect("string maps serialise");
    response
}

/// `arn:aws:execute-api:r:a:api/stage/GET/path` → `arn:aws:execute-api:r:a:api/stage/*`.
fn stage_wildcard(method_arn: &str) -> String {
    let mut parts = method_arn.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(api), Some(stage)) => format!("{api}/{stage}/*"),
        _ => method_arn.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_token_is_allowed_with_its_claims_as_context() {
        let verifier = TokenVerifier::new(b"0123456789abcdef");
        let token = verifier.mint("alice", &["admin".into()], chrono::Utc::now().timestamp(), 600);
        let mut request: ApiGatewayCustomAuthorizerRequest = crate::sample("authorizer-token.json");
        request.authorization_token = Some(format!("Bearer {token}"));
        let response = authorize(&verifier, &request).unwrap();
        assert_eq!(response.principal_id.as_deref(), Some("alice"));
        assert_eq!(response.context["roles"], r#"["admin"]"#, "a JSON array, never a comma-joined list");
        assert_eq!(response.context["sub"], "alice");
        assert_eq!(response.policy_document.statement[0].resource, vec!["arn:aws:execute-api:us-east-1:000000000000:abc123/v1/*".to_string()]);
    }

    #[test]
    fn a_missing_or_bad_token_is_unauthorized() {
        let verifier = TokenVerifier::new(b"0123456789abcdef");
        let request: ApiGatewayCustomAuthorizerRequest = crate::sample("authorizer-token.json");
        assert_eq!(authorize(&verifier, &request).unwrap_err(), UNAUTHORIZED, "the sample's token is signed with another secret");
        let mut none = request.clone();
        none.authorization_token = None;
        assert_eq!(authorize(&verifier, &none).unwrap_err(), UNAUTHORIZED);
    }
}
