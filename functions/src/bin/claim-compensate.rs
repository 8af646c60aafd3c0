//! Prescription-claim saga step (a Step Functions Task): undoes the newest step still done (refund the sponsor, refund the copayment, release the reservation and reject).

#[tokio::main]
async fn main() -> Result<(), functions::aws::Error> {
    functions::aws::serve_step("claim-compensate").await
}
