//! Starting a transfer. The saga (debit, credit, compensation) runs afterwards:
//! on AWS in Step Functions, locally in the ASL runner.

use crate::error::ApiError;
use crate::http::{amount, optional_text, parse_uuid, text, Incoming, Success};
use crate::App;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use shared::app::TransferOrder;
use shared::ids::{TransferId, WalletId};
use shared::ports::StoredResponse;

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
    let order = TransferOrder { source: WalletId(source), destination: WalletId(destination), amount, reference, description };
    let caller = incoming.caller();
    let render = |transfer_id: &TransferId| {
        Success::ok(json!({"transferId": transfer_id, "status": "PENDING"}))
            .with_status(202)
            .with_header("location", format!("/api/v2/transfers/{transfer_id}"))
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.create_transfer(caller, order, &call).await, render)
}
