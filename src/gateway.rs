//! The local stand-in for API Gateway: validates the bearer JWT the way the Lambda
//! authorizer does on AWS, and hands each handler the request in the shape of a
//! REST API proxy integration (path parameters, query string, authorizer context).

use api::auth::TokenVerifier;
use api::{App, Route};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request};
use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use std::collections::HashMap;
use std::sync::Arc;

/// Largest request body accepted (API Gateway's own limit is 10 MB; ours are small JSON).
pub const MAX_BODY: usize = 1 << 20;

pub struct Gateway {
    pub app: App,
    pub verifier: TokenVerifier,
}

impl Gateway {
    pub async fn serve(
        self: Arc<Self>,
        route: Route,
        params: Option<Path<HashMap<String, String>>>,
        query: RawQuery,
        request: Request,
    ) -> axum::response::Response {
        let (parts, body) = request.into_parts();
        let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        // A body over the limit (announced or not) is refused, never cut short.
        let (body, too_large) = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(bytes) => (to_lambda_body(bytes), false),
            Err(_) => (Body::Empty, true),
        };
        let mut context = ApiGatewayProxyRequestContext::default();
        context.http_method = parts.method.clone();
        context.resource_path = Some(route.path().to_string());
        context.path = Some(parts.uri.path().to_string());
        context.stage = Some("local".into());
        context.request_id = Some(uuid::Uuid::now_v7().to_string());
        let rejection = if route.needs_caller() {
            match self.verifier.verify_header(authorization.as_deref()) {
                Ok(caller) => {
                    context.authorizer.fields = api::auth::context_fields(&caller);
                    None
                }
                Err(e) => Some(e),
            }
        } else {
            None
        };
        let query: HashMap<String, Vec<String>> =
            query.0.map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(&q).unwrap_or_default()).unwrap_or_default().into_iter().fold(
                HashMap::new(),
                |mut map, (k, v)| {
                    map.entry(k).or_default().push(v);
                    map
                },
            );
        let request = lambda_http::http::Request::from_parts(parts, body)
            .with_path_parameters(params.map(|p| p.0).unwrap_or_default())
            .with_query_string_parameters(query)
            .with_request_context(RequestContext::ApiGatewayV1(context));
        let response = match (rejection, too_large) {
            (_, true) => api::reject(&self.app, route, request, api::error::ApiError::validation(format!("request body larger than {MAX_BODY} bytes"))),
            (Some(error), _) => api::reject(&self.app, route, request, error),
            (None, false) => api::handle(&self.app, route, request).await,
        };
        let (parts, body) = response.into_parts();
        axum::response::Response::from_parts(parts, axum::body::Body::from(body.to_vec()))
    }
}

fn to_lambda_body(bytes: Bytes) -> Body {
    if bytes.is_empty() {
        return Body::Empty;
    }
    match String::from_utf8(bytes.to_vec()) {
        Ok(text) => Body::Text(text),
        Err(e) => Body::Binary(e.into_bytes()),
    }
}
