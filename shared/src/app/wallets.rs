//! Wallet commands. A wallet belongs to the `sub` that created it.
//!
//! | command | who |
//! |---|---|
//! | create | anyone (the wallet is theirs) |
//! | activate `pending → active`, close, credit, debit | the owner, `admin` |
//! | activate `suspended → active`, suspend | `admin` only |
//!
//! Lifting a suspension is as privileged as imposing one: otherwise an owner could
//! undo a fraud suspension the moment it was made.

use super::{forbidden, Call, Caller, Ledger, Receipt, Reply};
use crate::aggregate::Aggregate;
use crate::command::CommandError;
use crate::error::DomainError;
use crate::ids::WalletId;
use crate::money::{Currency, Money};
use crate::wallet::{KycLevel, Wallet, WalletCommand, WalletStatus, WalletType};

/// What `create_wallet` needs besides the caller (who becomes the owner).
#[derive(Debug, Clone, PartialEq)]
pub struct WalletOpening {
    pub wallet_type: WalletType,
    pub currency: Currency,
    pub kyc_level: KycLevel,
    pub initial_balance: Money,
}

impl Ledger {
    pub async fn create_wallet(
        &self,
        caller: &Caller,
        opening: WalletOpening,
        call: &Call<'_, Receipt<Wallet>>,
    ) -> Result<Reply<Receipt<Wallet>>, CommandError> {
        let wallet_id = WalletId::generate();
        let create = WalletCommand::Create {
            wallet_id: wallet_id.uuid(),
            owner_id: caller.sub.clone(),
            wallet_type: opening.wallet_type,
            currency: opening.currency,
            kyc_level: opening.kyc_level,
            initial_balance: opening.initial_balance,
        };
        self.run(call, async move |uow| {
            let wallet = uow.handle::<Wallet>(wallet_id.uuid(), &create).await?;
            Ok(Receipt::of(uow, wallet_id.uuid(), wallet))
        })
        .await
    }

    /// Activate, suspend, close, credit or debit a wallet.
    pub async fn on_wallet(
        &self,
        caller: &Caller,
        wallet_id: WalletId,
        command: WalletCommand,
        call: &Call<'_, Receipt<Wallet>>,
    ) -> Result<Reply<Receipt<Wallet>>, CommandError> {
        let admin_only = match &command {
            WalletCommand::Suspend { .. } => true,
            WalletCommand::Activate | WalletCommand::Close { .. } | WalletCommand::Credit(_) | WalletCommand::Debit(_) => false,
            // Holds, captures and refunds move money for payments and sagas, never on their own.
            _ => return Err(CommandError::Refused(DomainError::Validation("not a wallet command a caller may send".into()))),
        };
        let refused = || forbidden(format!("{} may not do this to wallet {wallet_id}", caller.sub));
        if (admin_only && !caller.is_admin()) || !self.acts_for_wallet(caller, wallet_id).await? {
            return Err(refused());
        }
        let caller = caller.clone();
        self.run(call, async move |uow| {
            let wallet: Wallet = uow.load(wallet_id.uuid()).await?;
            let open = wallet.open().ok_or(DomainError::NotFound { kind: "wallet", id: wallet_id.uuid() })?;
            if matches!(command, WalletCommand::Activate) && open.status == WalletStatus::Suspended && !caller.is_admin() {
                return Err(DomainError::Forbidden(format!("{} may not lift the suspension of wallet {wallet_id} (admin only)", caller.sub)).into());
            }
            let events = wallet.decide(&command)?;
            let after = uow.record::<Wallet>(wallet_id.uuid(), events);
            Ok(Receipt::of(uow, wallet_id.uuid(), after))
        })
        .await
    }
}
