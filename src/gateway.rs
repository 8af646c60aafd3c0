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
use std::time::Duration;

/// Largest request body accepted (API Gateway's own limit is 10 MB; ours are small JSON).
pub const MAX_BODY: usize = 1 << 20;

pub struct Gateway {
    pub app: App,
    pub verifier: TokenVerifier,
    /// How long a request's whole body may take to arrive (`--body-timeout-seconds`).
    pub body_timeout: Duration,
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
        let mut context = ApiGatewayProxyRequestContext::default();
        context.http_method = parts.method.clone();
        context.resource_path = Some(route.path().to_string());
        context.path = Some(parts.uri.path().to_string());
        context.stage = Some("local".into());
        context.request_id = Some(uuid::Uuid::now_v7().to_string());
        // The token first, as API Gateway's authorizer: a request without a valid one is
        // refused without reading (or waiting for) its body.
        if route.needs_caller() {
            let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
            match self.verifier.verify_header(authorization) {
                Ok(caller) => context.authorizer.fields = api::auth::context_fields(&caller),
                Err(error) => {
                    drop(body);
                    let request = proxy_request(parts, Body::Empty, params, query, context);
                    return to_axum(api::reject(&self.app, route, request, error));
                }
            }
        }
        // A body over the limit (announced or not) is refused, never cut short; one
        // still arriving at the deadline is 408 (and the connection closes, its body unread).
        let (body, refusal) = match tokio::time::timeout(self.body_timeout, axum::body::to_bytes(body, MAX_BODY)).await {
            Ok(Ok(bytes)) => (to_lambda_body(bytes), None),
            Ok(Err(_)) => (Body::Empty, Some(api::error::ApiError::validation(format!("request body larger than {MAX_BODY} bytes")))),
            Err(_) => (
                Body::Empty,
                Some(api::error::ApiError::new(408, "REQUEST_TIMEOUT", format!("the request body did not arrive within {} s", self.body_timeout.as_secs()))),
            ),
        };
        let request = proxy_request(parts, body, params, query, context);
        match refusal {
            Some(error) if error.status == 408 => {
                let mut response = to_axum(api::reject(&self.app, route, request, error));
                response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                response
            }
            Some(error) => to_axum(api::reject(&self.app, route, request, error)),
            None => to_axum(api::handle(&self.app, route, request).await),
        }
    }
}

/// The request as a REST API proxy integration hands it to a function.
fn proxy_request(
    parts: axum::http::request::Parts,
    body: Body,
    params: Option<Path<HashMap<String, String>>>,
    query: RawQuery,
    context: ApiGatewayProxyRequestContext,
) -> lambda_http::Request {
    let query: HashMap<String, Vec<String>> =
        query.0.map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(&q).unwrap_or_default()).unwrap_or_default().into_iter().fold(
            HashMap::new(),
            |mut map, (k, v)| {
                map.entry(k).or_default().push(v);
                map
            },
        );
    lambda_http::http::Request::from_parts(parts, body)
        .with_path_parameters(params.map(|p| p.0).unwrap_or_default())
        .with_query_string_parameters(query)
        .with_request_context(RequestContext::ApiGatewayV1(context))
}

fn to_axum(response: lambda_http::Response<Body>) -> axum::response::Response {
    let (parts, body) = response.into_parts();
    axum::response::Response::from_parts(parts, axum::body::Body::from(body.to_vec()))
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
