//! Starting a transfer. The saga (debit, credit, compensation) runs afterwards:
//! on AWS in Step Functions, locally in the ASL runner.

use crate::error::ApiError;
use crate::http::{amount, optional_text, parse_uuid, text, Incoming, Success};
use crate::App;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use shared::error::DomainError;
use shared::ports::StoredResponse;
use shared::transfer::{Transfer, TransferCommand, TransferTerms};
use shared::wallet::Wallet;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
struct TransferBody {
    source_wallet_id: String,
    destination_wallet_id: String,
    amount: Box<RawValue>,
    reference: String,
    #[serde(default)]
    description: Option<String>,
}

pub async fn create(app: &App, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
    let body: TransferBody = incoming.json()?;
    let source = parse_uuid("sourceWalletId", &body.source_wallet_id)?;
    let destination = parse_uuid("destinationWalletId", &body.destination_wallet_id)?;
    let amount = amount("amount", &body.amount)?;
    let reference = text("reference", &body.reference, 128)?;
    let description = optional_text("description", body.description.as_deref(), 512)?;
    let caller = incoming.caller().clone();
    let transfer_id = Uuid::now_v7();
    incoming
        .command(app, async move |uow| {
            // Owner and currency never change: no need to hold up commands on the source.
            let wallet: Wallet = uow.peek(source).await?;
            let source_wallet = wallet.open().ok_or(DomainError::NotFound { kind: "wallet", id: source })?;
            if !caller.may_act_for(&source_wallet.owner_id) {
                return Err(DomainError::Forbidden(format!("{} may not transfer from wallet {source}", caller.sub)).into());
            }
            let terms = TransferTerms {
                transfer_id,
                source_wallet_id: source,
                destination_wallet_id: destination,
                amount,
                currency: source_wallet.currency.clone(),
                reference: reference.clone(),
                description: description.clone(),
                initiated_by: caller.sub.clone(),
            };
            uow.handle::<Transfer>(transfer_id, &TransferCommand::Initiate(terms)).await?;
            Ok(Success::ok(json!({"transferId": transfer_id, "status": "PENDING"}))
                .with_status(202)
                .with_header("location", format!("/api/v2/transfers/{transfer_id}")))
        })
        .await
}
