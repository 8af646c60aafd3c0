//! Prescription-claim saga step (a Step Functions Task): gives the pharmacy the total, confirms the card's reservation and approves the claim.

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_step("claim-credit-pharmacy").await
}
