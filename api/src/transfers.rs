//! Starting a transfer. The saga (debit, credit, compensation) runs afterwards:
//! on AWS in Step Functions, locally in the ASL runner.

use crate::error::ApiError;
use crate::http::{amount, optional_text, parse_uuid, text, Incoming, Success};
use crate::schema::{RequestAmount, TransferStatus};
use crate::App;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shared::app::TransferOrder;
use shared::ids::{TransferId, WalletId};
use shared::ports::StoredResponse;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object")]
pub(crate) struct TransferBody {
    #[schema(format = Uuid)]
    source_wallet_id: String,
    #[schema(format = Uuid)]
    destination_wallet_id: String,
    #[schema(value_type = RequestAmount)]
    amount: Box<RawValue>,
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    reference: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
    description: Option<String>,
}

/// A transfer accepted: its saga runs next (`GET /api/v2/transfers/{transferId}`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferAccepted {
    #[schema(value_type = uuid::Uuid)]
    transfer_id: TransferId,
    /// Always `PENDING` here.
    #[schema(value_type = TransferStatus)]
    status: &'static str,
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
        Success::ok(TransferAccepted { transfer_id: *transfer_id, status: "PENDING" })
            .with_status(202)
            .with_header("location", format!("/api/v2/transfers/{transfer_id}"))
    };
    let call = incoming.call(&render)?;
    incoming.answer(app.ledger.create_transfer(caller, order, &call).await, render)
}
