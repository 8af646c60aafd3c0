//! Prescription-claim saga step (a Step Functions Task): takes the covered amount from the card's sponsor wallet.

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_step("claim-debit-sponsor").await
}
