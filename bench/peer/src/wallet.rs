//! A minimal wallet aggregate for cqrs-es: open, credit, debit with a balance
//! check; one event per command.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Wallet {
    pub opened: bool,
    pub owner: String,
    pub currency: String,
    /// Minor units.
    pub balance: i64,
}

#[derive(Debug, Clone)]
pub enum WalletCommand {
    Open { owner: String, currency: String, opening_balance: i64 },
    Credit { amount: i64, reference: String },
    Debit { amount: i64, reference: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum WalletEvent {
    Opened { owner: String, currency: String, opening_balance: i64 },
    Credited { amount: i64, reference: String, balance_after: i64 },
    Debited { amount: i64, reference: String, balance_after: i64 },
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> String {
        match self {
            WalletEvent::Opened { .. } => "WalletOpened",
            WalletEvent::Credited { .. } => "WalletCredited",
            WalletEvent::Debited { .. } => "WalletDebited",
        }
        .into()
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("ALREADY_EXISTS")]
    AlreadyOpen,
    #[error("NOT_FOUND")]
    NotOpen,
    #[error("VALIDATION_ERROR")]
    NotPositive,
    #[error("INSUFFICIENT_FUNDS")]
    InsufficientFunds,
}

impl Aggregate for Wallet {
    const TYPE: &'static str = "wallet";
    type Command = WalletCommand;
    type Event = WalletEvent;
    type Error = WalletError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        let event = match command {
            WalletCommand::Open { .. } if self.opened => return Err(WalletError::AlreadyOpen),
            WalletCommand::Open { owner, currency, opening_balance } => WalletEvent::Opened { owner, currency, opening_balance },
            _ if !self.opened => return Err(WalletError::NotOpen),
            WalletCommand::Credit { amount, .. } | WalletCommand::Debit { amount, .. } if amount <= 0 => return Err(WalletError::NotPositive),
            WalletCommand::Credit { amount, reference } => WalletEvent::Credited { amount, reference, balance_after: self.balance + amount },
            WalletCommand::Debit { amount, .. } if amount > self.balance => return Err(WalletError::InsufficientFunds),
            WalletCommand::Debit { amount, reference } => WalletEvent::Debited { amount, reference, balance_after: self.balance - amount },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WalletEvent::Opened { owner, currency, opening_balance } => {
                self.opened = true;
                self.owner = owner;
                self.currency = currency;
                self.balance = opening_balance;
            }
            WalletEvent::Credited { balance_after, .. } | WalletEvent::Debited { balance_after, .. } => self.balance = balance_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decide(state: &mut Wallet, command: WalletCommand) -> Result<Vec<WalletEvent>, WalletError> {
        let sink = EventSink::default();
        state.handle(command, &(), &sink).await?;
        Ok(sink.collect().await)
    }

    #[tokio::test]
    async fn a_wallet_opens_once_and_never_goes_below_zero() {
        let mut wallet = Wallet::default();
        assert_eq!(decide(&mut wallet, WalletCommand::Debit { amount: 1, reference: "r".into() }).await, Err(WalletError::NotOpen));
        decide(&mut wallet, WalletCommand::Open { owner: "o".into(), currency: "EGP".into(), opening_balance: 500 }).await.unwrap();
        assert_eq!(
            decide(&mut wallet, WalletCommand::Open { owner: "o".into(), currency: "EGP".into(), opening_balance: 0 }).await,
            Err(WalletError::AlreadyOpen)
        );
        let events = decide(&mut wallet, WalletCommand::Debit { amount: 200, reference: "r".into() }).await.unwrap();
        assert_eq!(events, vec![WalletEvent::Debited { amount: 200, reference: "r".into(), balance_after: 300 }]);
        assert_eq!(wallet.balance, 300);
        assert_eq!(decide(&mut wallet, WalletCommand::Debit { amount: 301, reference: "r".into() }).await, Err(WalletError::InsufficientFunds));
        decide(&mut wallet, WalletCommand::Credit { amount: 1, reference: "r".into() }).await.unwrap();
        assert_eq!(wallet.balance, 301);
        assert_eq!(decide(&mut wallet, WalletCommand::Credit { amount: 0, reference: "r".into() }).await, Err(WalletError::NotPositive));
    }
}
