//! The REST API's Lambda (TOKEN) authorizer.

use functions::aws::Error;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    functions::init_tracing();
    let verifier = Arc::new(functions::aws::token_verifier()?);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequest>| {
        let verifier = verifier.clone();
        async move { functions::authorizer::authorize(&verifier, &event.payload).map_err(Error::from) }
    }))
    .await
}
