//! Transfer saga step (a Step Functions Task): takes the amount from the source wallet.

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_step("transfer-debit-source").await
}
