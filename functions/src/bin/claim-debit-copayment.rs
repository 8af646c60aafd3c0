//! Prescription-claim saga step (a Step Functions Task): takes the copayment from the patient's wallet.

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_step("claim-debit-copayment").await
}
