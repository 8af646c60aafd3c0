//! Transfer saga step (a Step Functions Task): gives the amount to the destination wallet and completes the transfer.

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_step("transfer-credit-destination").await
}
