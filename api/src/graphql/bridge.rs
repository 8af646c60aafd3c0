//! How a resolver calls the ledger: through the REST route's own handler, as the
//! same caller, so that parsing, validation, who-may (`shared::app::Ledger` and the
//! read side's checks), idempotency and error codes are the ones REST has, by
//! construction. The handler's answer is the contract's JSON body: a success is read
//! into the GraphQL type, an error body becomes a GraphQL error whose
//! `extensions.code` is the body's `error` (and `extensions.statusCode` its status).

use crate::error::ApiError;
use crate::http::{Incoming, CORRELATION_HEADER, IDEMPOTENCY_HEADERS, REPLAYED_HEADER};
use crate::routes::{dispatch, Route};
use crate::App;
use async_graphql::{ErrorExtensions, ID};
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use serde::de::DeserializeOwned;
use shared::app::Caller;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// What every resolver of one GraphQL request shares: the ledger and the HTTP
/// request it came in (its authorizer context, correlation id, Idempotency-Key).
pub struct Scope {
    pub app: App,
    caller: Caller,
    context: Option<RequestContext>,
    correlation_id: String,
    idempotency_key: Option<lambda_http::http::HeaderValue>,
    /// Whether a command's answer was an earlier request's, replayed.
    replayed: AtomicBool,
    /// For a WebSocket connection, its live subscriptions (none for `POST /graphql`).
    socket: Option<Arc<AtomicUsize>>,
}

/// Live subscriptions one WebSocket connection may hold at once: each is woken by
/// every projected event, so a connection may not open them without bound.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 32;

/// One of a connection's subscription places, given back when the subscription's
/// stream is dropped (completed by the client, ended, or its connection closed).
pub struct SubscriptionSlot(Arc<AtomicUsize>);

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Scope {
    pub fn of(app: &App, incoming: &Incoming) -> Arc<Scope> {
        let key = IDEMPOTENCY_HEADERS.iter().find_map(|h| incoming.request.headers().get(*h)).cloned();
        Arc::new(Scope {
            app: app.clone(),
            caller: incoming.caller().clone(),
            context: incoming.request.request_context_ref().cloned(),
            correlation_id: incoming.correlation_id.clone(),
            idempotency_key: key,
            replayed: AtomicBool::new(false),
            socket: None,
        })
    }

    /// A WebSocket connection's scope: `caller` as its `connection_init` token named
    /// it, attached as API Gateway's authorizer would attach it.
    pub fn for_caller(app: &App, caller: &Caller, correlation_id: String) -> Arc<Scope> {
        let mut context = lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
        context.authorizer.fields = crate::auth::context_fields(caller);
        Arc::new(Scope {
            app: app.clone(),
            caller: caller.clone(),
            context: Some(RequestContext::ApiGatewayV1(context)),
            correlation_id,
            idempotency_key: None,
            replayed: AtomicBool::new(false),
            socket: Some(Arc::default()),
        })
    }

    /// Spends the caller's query token for an operation sent over a WebSocket, which
    /// no HTTP admission counted (`POST /graphql` is charged before it runs).
    pub async fn charge_socket_operation(&self) -> async_graphql::Result<()> {
        if self.socket.is_none() {
            return Ok(());
        }
        crate::charge(&self.app, Route::GraphQL, &self.caller.sub).await.map_err(refused)
    }

    /// A place for one more live subscription on this connection, and its query
    /// token: refused past [`MAX_SUBSCRIPTIONS_PER_CONNECTION`] (before any token is
    /// spent) or over the caller's query limit.
    pub async fn open_subscription(&self, route: Route) -> async_graphql::Result<Option<SubscriptionSlot>> {
        let Some(live) = &self.socket else { return Ok(None) };
        live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < MAX_SUBSCRIPTIONS_PER_CONNECTION).then_some(open + 1)).map_err(|_| {
            to_graphql(ApiError::new(
                429,
                "TOO_MANY_SUBSCRIPTIONS",
                format!("at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} live subscriptions per connection; complete one first"),
            ))
        })?;
        let slot = SubscriptionSlot(live.clone());
        crate::charge(&self.app, route, &self.caller.sub).await.map_err(refused)?;
        Ok(Some(slot))
    }

    /// Whether an answer was replayed (the `Idempotent-Replayed` header, as REST sends it).
    pub fn replayed(&self) -> bool {
        self.replayed.load(Ordering::Relaxed)
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Runs `route` with path parameters `params` (in the route's order), the query
    /// string `query` and the JSON `body`, and reads a success into `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        route: Route,
        params: &[(&str, &str)],
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> async_graphql::Result<T> {
        let incoming = self.incoming(route, params, query, body).map_err(to_graphql)?;
        if route.is_command() {
            // Each mutation spends a command token, as its REST request would: many
            // mutations in one document are no way around the caller's limit.
            crate::charge(&self.app, route, &self.caller.sub).await.map_err(refused)?;
        }
        let answer = dispatch(&self.app, route, &incoming).await.map_err(to_graphql)?;
        if answer.headers.iter().any(|(name, _)| name == REPLAYED_HEADER) {
            self.replayed.store(true, Ordering::Relaxed);
        }
        if answer.status >= 400 {
            return Err(error_body(answer.status, &answer.body));
        }
        serde_json::from_str(&answer.body).map_err(|e| to_graphql(ApiError::internal(format!("{}: unreadable answer: {e}", route.name()))))
    }

    /// The request API Gateway would have handed the route's function.
    fn incoming(&self, route: Route, params: &[(&str, &str)], query: &[(&str, String)], body: Option<serde_json::Value>) -> Result<Incoming, ApiError> {
        let path = params.iter().fold(route.path().to_string(), |path, (name, value)| path.replace(&format!("{{{name}}}"), value));
        let mut builder = lambda_http::http::Request::builder()
            .method(route.method())
            .uri(path)
            .header("content-type", "application/json")
            .header(CORRELATION_HEADER, self.correlation_id.as_str());
        // A command's answer is stored under the key exactly as REST stores it (the
        // key, the caller, and a hash of method, path and body).
        if let (true, Some(key)) = (route.is_command(), &self.idempotency_key) {
            builder = builder.header(IDEMPOTENCY_HEADERS[0], key.clone());
        }
        let body = body.map_or(Body::Empty, |b| Body::Text(b.to_string()));
        let mut request = builder
            .body(body)
            .map_err(|e| ApiError::validation(format!("invalid id: {e}")))?
            .with_path_parameters(params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>())
            .with_query_string_parameters(query.iter().map(|(k, v)| (k.to_string(), vec![v.clone()])).collect::<HashMap<_, _>>());
        if let Some(context) = &self.context {
            request = request.with_request_context(context.clone());
        }
        let mut incoming = Incoming::new(request, self.app.commands.clock().now());
        incoming.authenticate()?;
        Ok(incoming)
    }
}

/// A GraphQL error with the REST error body's code and status in its extensions.
pub fn to_graphql(error: ApiError) -> async_graphql::Error {
    async_graphql::Error::new(error.message).extend_with(|_, e| {
        e.set("code", error.code);
        e.set("statusCode", error.status);
    })
}

/// A rate-limit refusal as a GraphQL error: `RATE_LIMITED`, 429, and `retryAfter` in seconds.
fn refused(refusal: crate::Refusal) -> async_graphql::Error {
    to_graphql(refusal.error).extend_with(|_, e| e.set("retryAfter", refusal.retry_after_seconds))
}

fn error_body(status: u16, body: &str) -> async_graphql::Error {
    let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let text = |key: &str| body.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let code = text("error");
    async_graphql::Error::new(text("message")).extend_with(|_, e| {
        e.set("code", code.as_str());
        e.set("statusCode", status);
    })
}

/// An `ID` argument that names a UUID, as a path parameter must.
pub fn uuid(name: &str, id: &ID) -> async_graphql::Result<Uuid> {
    crate::http::parse_uuid(name, id.as_str()).map_err(to_graphql)
}

/// The request's [`Scope`], which [`super::serve`] attaches to every request.
pub fn scope<'a>(ctx: &async_graphql::Context<'a>) -> &'a Scope {
    ctx.data_unchecked::<Arc<Scope>>()
}
