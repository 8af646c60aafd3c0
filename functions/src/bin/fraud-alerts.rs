//! `GET /api/v2/fraud/alerts`, behind API Gateway (REST, Lambda proxy integration).

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_route(api::Route::FraudAlerts).await
}
