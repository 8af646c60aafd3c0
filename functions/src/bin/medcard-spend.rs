//! `GET /api/v2/medcards/{medcardId}/spend`, behind API Gateway (REST, Lambda proxy integration).

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_route(api::Route::MedCardSpend).await
}
