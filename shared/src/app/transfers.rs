//! Starting a transfer: the source wallet's owner (or `admin`) says yes. The saga
//! (debit, credit, compensation) runs afterwards: on AWS in Step Functions, locally
//! in the ASL runner.

use super::{forbidden, Call, Caller, Ledger, Reply};
use crate::command::CommandError;
use crate::ids::{TransferId, WalletId};
use crate::money::Money;
use crate::transfer::{Transfer, TransferCommand, TransferTerms};

#[derive(Debug, Clone, PartialEq)]
pub struct TransferOrder {
    pub source: WalletId,
    pub destination: WalletId,
    pub amount: Money,
    pub reference: String,
    pub description: Option<String>,
}

impl Ledger {
    pub async fn create_transfer(&self, caller: &Caller, order: TransferOrder, call: &Call<'_, TransferId>) -> Result<Reply<TransferId>, CommandError> {
        let source = self.wallet_origin(order.source).await?;
        if !caller.may_act_for(&source.owner_id) {
            return Err(forbidden(format!("{} may not transfer from wallet {}", caller.sub, order.source)));
        }
        let transfer_id = TransferId::generate();
        let terms = TransferTerms {
            transfer_id: transfer_id.uuid(),
            source_wallet_id: order.source.uuid(),
            destination_wallet_id: order.destination.uuid(),
            amount: order.amount,
            // A wallet's currency never changes: the transfer is in the source's.
            currency: source.currency.clone(),
            reference: order.reference,
            description: order.description,
            initiated_by: caller.sub.clone(),
        };
        self.run(call, async move |uow| {
            uow.handle::<Transfer>(transfer_id.uuid(), &TransferCommand::Initiate(terms.clone())).await?;
            Ok(transfer_id)
        })
        .await
    }
}
