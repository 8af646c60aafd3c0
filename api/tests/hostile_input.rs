//! Hostile input at the edge: each gets a clear 4xx and changes nothing.

mod support;

use api::Route;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use serde_json::{json, Value};
use support::{caller, World};

#[tokio::test]
async fn amounts_with_absurd_exponents_or_digits_are_400_and_move_nothing() {
    let world = World::new();
    let alice = caller("alice", &[]);
    let wallet = world.wallet(&alice, "personal", 100).await;
    let before = world.event_count().await;
    for amount in ["1e999999999", "1e-999999999", "9".repeat(10_000).as_str(), "0.0000000000000000000001", "1e308", "-0", "NaN"] {
        let body = format!(r#"{{"amount": {amount}, "transactionType": "deposit", "reference": "x"}}"#);
        let (status, reply) = world.call_raw(Route::CreditWallet, Some(&alice), &[("walletId", &wallet)], body).await;
        assert_eq!((status, reply["error"].as_str()), (400, Some("VALIDATION_ERROR")), "{amount:.40}: {reply}");
    }
    assert_eq!(world.event_count().await, before);
    assert_eq!(world.balance(&wallet).await, json!(100));
}

#[tokio::test]
async fn an_authorizer_context_with_a_huge_or_blank_sub_is_401() {
    let world = World::new();
    for sub in ["x".repeat(100_000), " ".into(), "a\u{0}b".into()] {
        let mut context = lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
        context.authorizer.fields.insert("sub".into(), sub.clone().into());
        context.authorizer.fields.insert("roles".into(), r#"["admin"]"#.into());
        let mut request = lambda_http::Request::new(lambda_http::Body::Text(r#"{"walletType": "personal"}"#.into()));
        *request.method_mut() = lambda_http::http::Method::POST;
        let request = request.with_request_context(RequestContext::ApiGatewayV1(context));
        let response = api::handle(&world.app, Route::CreateWallet, request).await;
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!((response.status().as_u16(), body["error"].as_str()), (401, Some("UNAUTHENTICATED")), "{:.40}", sub);
    }
    assert_eq!(world.event_count().await, 0);
}
