//! Prescription-claim saga step (a Step Functions Task): validates the card and prices the claim against what is left of the month's limit.

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_step("claim-price").await
}
