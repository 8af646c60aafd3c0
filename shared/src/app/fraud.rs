//! Fraud alerts.
//!
//! | command | who |
//! |---|---|
//! | raise (and suspend on a high-severity rule) | the fraud detector only: no route sends it |
//! | read, resolve | `admin` only ([`reviews_fraud`]) |
//!
//! An alert and the suspension it causes are one commit: a crash cannot leave a
//! suspension without its alert, nor an alert whose suspension a redelivery would
//! then repeat (raising an existing alert records nothing, so it suspends nothing
//! either — a wallet an admin has reactivated stays active however often the bus
//! redelivers).

use super::{forbidden, Call, Caller, Ledger, Receipt, Reply};
use crate::aggregate::Aggregate;
use crate::command::{CommandContext, CommandError};
use crate::fraud::alert::{FraudAlert, FraudAlertCommand, FraudAlertEvent, Resolution};
use crate::fraud::{Finding, Severity};
use crate::ids::FraudAlertId;
use crate::wallet::{Wallet, WalletCommand, WalletStatus};

/// The `user_id` on the events the detector causes.
pub const FRAUD_DETECTOR: &str = "fraud-detector";

/// Whether `caller` may read and resolve fraud alerts: operators (`admin`) only. An
/// alert says how the detector sees a wallet; its owner learns of a suspension from
/// the wallet itself.
pub fn reviews_fraud(caller: &Caller) -> bool {
    caller.is_admin()
}

/// What raising a finding did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raised {
    /// A new alert; `suspended`: it also suspended the wallet.
    New { alert_id: FraudAlertId, suspended: bool },
    /// The alert existed (a redelivery or a replay): nothing was recorded.
    AlreadyRaised,
}

impl Ledger {
    /// Records `finding` as an alert and, for a high-severity rule, suspends the
    /// wallet (reason `fraud: <rule>`) if it is active, through the wallet's own
    /// decision like any suspension. Only the detector calls this.
    pub async fn raise_fraud_alert(&self, finding: &Finding, context: &CommandContext) -> Result<Raised, CommandError> {
        let alert_id = finding.alert_id();
        let finding = finding.clone();
        self.commands
            .execute(context, async move |uow| {
                let alert: FraudAlert = uow.load(alert_id).await?;
                let mut events = alert.decide(&FraudAlertCommand::Raise(finding.clone()))?;
                let Some(FraudAlertEvent::FraudAlertRaised { suspended_wallet, .. }) = events.first_mut() else {
                    return Ok(Raised::AlreadyRaised);
                };
                if finding.severity == Severity::High {
                    let wallet: Wallet = uow.load(finding.wallet_id).await?;
                    if wallet.open().is_some_and(|w| w.status == WalletStatus::Active) {
                        let suspension = wallet.decide(&WalletCommand::Suspend { reason: finding.rule.suspension_reason() })?;
                        uow.record::<Wallet>(finding.wallet_id, suspension);
                        *suspended_wallet = true;
                    }
                }
                let suspended = *suspended_wallet;
                uow.record::<FraudAlert>(alert_id, events);
                Ok(Raised::New { alert_id: FraudAlertId(alert_id), suspended })
            })
            .await
    }

    /// Closes an open alert with an admin's verdict. Resolving does not lift a
    /// suspension: that stays the wallet's own admin decision (its activate route).
    pub async fn resolve_fraud_alert(
        &self,
        caller: &Caller,
        alert_id: FraudAlertId,
        resolution: Resolution,
        note: Option<String>,
        call: &Call<'_, Receipt<FraudAlert>>,
    ) -> Result<Reply<Receipt<FraudAlert>>, CommandError> {
        if !reviews_fraud(caller) {
            return Err(forbidden(format!("{} may not resolve fraud alerts (admin only)", caller.sub)));
        }
        let resolve = FraudAlertCommand::Resolve { resolution, note, resolved_by: caller.sub.clone() };
        self.run(call, async move |uow| {
            let alert = uow.handle::<FraudAlert>(alert_id.uuid(), &resolve).await?;
            Ok(Receipt::of(uow, alert_id.uuid(), alert))
        })
        .await
    }
}
