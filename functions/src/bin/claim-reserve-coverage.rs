//! Prescription-claim saga step (a Step Functions Task): reserves the covered amount on the medical card's monthly limit.

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_step("claim-reserve-coverage").await
}
