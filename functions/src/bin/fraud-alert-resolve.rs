//! `POST /api/v2/commands/fraud/alerts/{alertId}/resolve`, behind API Gateway (REST, Lambda proxy integration).

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_route(api::Route::ResolveFraudAlert).await
}
