//! `POST /graphql`, behind API Gateway (REST, Lambda proxy integration).

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_route(api::Route::GraphQL).await
}
