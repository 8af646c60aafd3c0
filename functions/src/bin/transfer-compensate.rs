//! Transfer saga step (a Step Functions Task): refunds the source and ends the transfer FAILED.

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_step("transfer-compensate").await
}
