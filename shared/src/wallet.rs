//! The Wallet aggregate: where every wallet rule is decided.
//!
//! Lifecycle: created `pending`; `pending → active`; `active ⇄ suspended`;
//! `active | suspended → closed` only when empty; `closed` is final.
//! Credits and debits need `active`; a debit never takes the balance below zero.

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::money::{Currency, Money};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalletType {
    Personal,
    Business,
    Merchant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KycLevel {
    Basic,
    Standard,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalletStatus {
    Pending,
    Active,
    Suspended,
    Closed,
}

impl WalletStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WalletStatus::Pending => "pending",
            WalletStatus::Active => "active",
            WalletStatus::Suspended => "suspended",
            WalletStatus::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditType {
    Deposit,
    Refund,
    TransferIn,
    Cashback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DebitType {
    Payment,
    Withdrawal,
    TransferOut,
    Fee,
}

/// A movement of money in or out, as the command describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Movement<T> {
    pub amount: Money,
    pub transaction_type: T,
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When set, the wallet must hold this currency (transfers and payments say
    /// which currency they move; a plain deposit takes the wallet's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WalletCommand {
    Create {
        wallet_id: Uuid,
        owner_id: String,
        wallet_type: WalletType,
        currency: Currency,
        kyc_level: KycLevel,
        initial_balance: Money,
    },
    /// `pending → active`, and `suspended → active` (reactivation).
    Activate,
    Suspend {
        reason: String,
    },
    Close {
        reason: Option<String>,
    },
    Credit(Movement<CreditType>),
    Debit(Movement<DebitType>),
    /// A saga's compensation: gives back money the saga took from this wallet.
    /// Unlike a credit it also lands on a suspended wallet — a suspension must not
    /// keep the owner's own money in flight.
    ReturnFunds(Movement<CreditType>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum WalletEvent {
    WalletCreated {
        wallet_id: Uuid,
        owner_id: String,
        wallet_type: WalletType,
        currency: Currency,
        kyc_level: KycLevel,
    },
    WalletActivated {},
    WalletSuspended {
        reason: String,
    },
    WalletReactivated {},
    WalletClosed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    WalletCredited {
        #[serde(flatten)]
        movement: Movement<CreditType>,
        balance_after: Money,
    },
    WalletDebited {
        #[serde(flatten)]
        movement: Movement<DebitType>,
        balance_after: Money,
    },
}

/// The reference on the credit that funds a wallet's `initialBalance`.
pub const INITIAL_BALANCE_REFERENCE: &str = "initial-balance";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenWallet {
    pub id: Uuid,
    pub owner_id: String,
    pub wallet_type: WalletType,
    pub currency: Currency,
    pub kyc_level: KycLevel,
    pub status: WalletStatus,
    pub balance: Money,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Wallet {
    /// No event yet: only `Create` is possible.
    #[default]
    Unopened,
    Open(OpenWallet),
}

impl Wallet {
    pub fn open(&self) -> Option<&OpenWallet> {
        match self {
            Wallet::Open(w) => Some(w),
            Wallet::Unopened => None,
        }
    }
}

impl Aggregate for Wallet {
    const TYPE: &'static str = "wallet";
    type Command = WalletCommand;
    type Event = WalletEvent;

    fn decide(&self, command: &WalletCommand) -> Result<Vec<WalletEvent>, DomainError> {
        let wallet = match (self, command) {
            (Wallet::Unopened, WalletCommand::Create { wallet_id, owner_id, wallet_type, currency, kyc_level, initial_balance }) => {
                let mut events = vec![WalletEvent::WalletCreated {
                    wallet_id: *wallet_id,
                    owner_id: owner_id.clone(),
                    wallet_type: *wallet_type,
                    currency: currency.clone(),
                    kyc_level: *kyc_level,
                }];
                if initial_balance.is_positive() {
                    events.push(WalletEvent::WalletCredited {
                        movement: Movement {
                            amount: *initial_balance,
                            transaction_type: CreditType::Deposit,
                            reference: INITIAL_BALANCE_REFERENCE.into(),
                            description: Some("Initial balance".into()),
                            currency: None,
                        },
                        balance_after: *initial_balance,
                    });
                }
                return Ok(events);
            }
            (Wallet::Open(w), WalletCommand::Create { .. }) => return Err(DomainError::AlreadyExists { kind: "wallet", id: w.id }),
            (Wallet::Unopened, _) => return Err(DomainError::NotFound { kind: "wallet", id: Uuid::nil() }),
            (Wallet::Open(w), _) => w,
        };
        let refuse = |action: &'static str| DomainError::InvalidStateTransition { kind: "wallet", id: wallet.id, status: wallet.status.as_str(), action };
        use WalletStatus::*;
        match command {
            WalletCommand::Create { .. } => unreachable!("handled above"),
            WalletCommand::Activate => match wallet.status {
                Pending => Ok(vec![WalletEvent::WalletActivated {}]),
                Suspended => Ok(vec![WalletEvent::WalletReactivated {}]),
                Active | Closed => Err(refuse("activate")),
            },
            WalletCommand::Suspend { reason } => match wallet.status {
                Active => Ok(vec![WalletEvent::WalletSuspended { reason: reason.clone() }]),
                _ => Err(refuse("suspend")),
            },
            WalletCommand::Close { reason } => match wallet.status {
                Active | Suspended if wallet.balance != Money::ZERO => Err(DomainError::NonZeroBalance { wallet: wallet.id, balance: wallet.balance }),
                Active | Suspended => Ok(vec![WalletEvent::WalletClosed { reason: reason.clone() }]),
                Pending | Closed => Err(refuse("close")),
            },
            WalletCommand::Credit(movement) | WalletCommand::ReturnFunds(movement) => {
                let may_receive: &[WalletStatus] = if matches!(command, WalletCommand::ReturnFunds(_)) { &[Active, Suspended] } else { &[Active] };
                wallet.ensure_can_move(movement.amount, movement.currency.as_ref(), may_receive)?;
                let balance_after =
                    wallet.balance.checked_add(movement.amount).ok_or_else(|| DomainError::LimitExceeded(format!("wallet {} cannot hold more", wallet.id)))?;
                Ok(vec![WalletEvent::WalletCredited { movement: movement.clone(), balance_after }])
            }
            WalletCommand::Debit(movement) => {
                wallet.ensure_can_move(movement.amount, movement.currency.as_ref(), &[Active])?;
                if movement.amount > wallet.balance {
                    return Err(DomainError::InsufficientFunds {
                        wallet: wallet.id,
                        available: wallet.balance,
                        needed: movement.amount,
                        currency: wallet.currency.clone(),
                    });
                }
                let balance_after = Money::from_minor(wallet.balance.minor() - movement.amount.minor());
                Ok(vec![WalletEvent::WalletDebited { movement: movement.clone(), balance_after }])
            }
        }
    }

    fn apply(self, event: &WalletEvent) -> Wallet {
        match (self, event) {
            (Wallet::Unopened, WalletEvent::WalletCreated { wallet_id, owner_id, wallet_type, currency, kyc_level }) => Wallet::Open(OpenWallet {
                id: *wallet_id,
                owner_id: owner_id.clone(),
                wallet_type: *wallet_type,
                currency: currency.clone(),
                kyc_level: *kyc_level,
                status: WalletStatus::Pending,
                balance: Money::ZERO,
            }),
            (Wallet::Open(mut w), event) => {
                match event {
                    WalletEvent::WalletCreated { .. } => {}
                    WalletEvent::WalletActivated {} | WalletEvent::WalletReactivated {} => w.status = WalletStatus::Active,
                    WalletEvent::WalletSuspended { .. } => w.status = WalletStatus::Suspended,
                    WalletEvent::WalletClosed { .. } => w.status = WalletStatus::Closed,
                    WalletEvent::WalletCredited { balance_after, .. } | WalletEvent::WalletDebited { balance_after, .. } => w.balance = *balance_after,
                }
                Wallet::Open(w)
            }
            // Events are only ever appended after `WalletCreated`; a stream that starts
            // otherwise is not a wallet, and stays unopened.
            (unopened @ Wallet::Unopened, _) => unopened,
        }
    }
}

impl OpenWallet {
    fn ensure_can_move(&self, amount: Money, currency: Option<&Currency>, allowed: &[WalletStatus]) -> Result<(), DomainError> {
        if !amount.is_positive() {
            return Err(DomainError::Validation("amount must be greater than 0".into()));
        }
        if !allowed.contains(&self.status) {
            return Err(DomainError::WalletNotActive { wallet: self.id, status: self.status.as_str() });
        }
        match currency {
            Some(c) if *c != self.currency => {
                Err(DomainError::CurrencyMismatch { wallet: self.id, wallet_currency: self.currency.clone(), command_currency: c.clone() })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;

    fn id() -> Uuid {
        Uuid::from_u128(0x7b0c)
    }
    fn egp(major: i64) -> Money {
        Money::from_minor(major * 100)
    }
    fn created() -> WalletEvent {
        WalletEvent::WalletCreated {
            wallet_id: id(),
            owner_id: "alice".into(),
            wallet_type: WalletType::Personal,
            currency: Currency::egp(),
            kyc_level: KycLevel::Basic,
        }
    }
    fn deposit(amount: Money) -> Movement<CreditType> {
        Movement { amount, transaction_type: CreditType::Deposit, reference: "DEP-1".into(), description: None, currency: None }
    }
    fn payment(amount: Money) -> Movement<DebitType> {
        Movement { amount, transaction_type: DebitType::Payment, reference: "PAY-1".into(), description: None, currency: None }
    }
    fn credited(amount: Money, balance_after: Money) -> WalletEvent {
        WalletEvent::WalletCredited { movement: deposit(amount), balance_after }
    }
    fn active_with(balance: Money) -> Vec<WalletEvent> {
        let mut events = vec![created(), WalletEvent::WalletActivated {}];
        if balance.is_positive() {
            events.push(credited(balance, balance));
        }
        events
    }
    fn create(initial_balance: Money) -> WalletCommand {
        WalletCommand::Create {
            wallet_id: id(),
            owner_id: "alice".into(),
            wallet_type: WalletType::Personal,
            currency: Currency::egp(),
            kyc_level: KycLevel::Basic,
            initial_balance,
        }
    }

    #[test]
    fn a_new_wallet_is_created_pending() {
        given::<Wallet>(&[]).when(&create(Money::ZERO)).then(&[created()]);
        let state = given::<Wallet>(&[created()]).state();
        assert_eq!(state.open().unwrap().status, WalletStatus::Pending);
    }

    #[test]
    fn an_initial_balance_is_funded_by_a_deposit_credit() {
        let WalletEvent::WalletCredited { movement, balance_after } = &given::<Wallet>(&[]).when(&create(egp(50))).0.unwrap()[1] else { panic!() };
        assert_eq!((movement.amount, *balance_after, movement.reference.as_str()), (egp(50), egp(50), INITIAL_BALANCE_REFERENCE));
    }

    #[test]
    fn a_wallet_cannot_be_created_twice() {
        given::<Wallet>(&[created()]).when(&create(Money::ZERO)).then_refused("ALREADY_EXISTS");
    }

    #[test]
    fn commands_on_a_missing_wallet_are_not_found() {
        given::<Wallet>(&[]).when(&WalletCommand::Activate).then_refused("NOT_FOUND");
    }

    #[test]
    fn pending_wallets_activate_and_suspended_ones_reactivate() {
        given::<Wallet>(&[created()]).when(&WalletCommand::Activate).then(&[WalletEvent::WalletActivated {}]);
        let suspended = [created(), WalletEvent::WalletActivated {}, WalletEvent::WalletSuspended { reason: "kyc".into() }];
        given::<Wallet>(&suspended).when(&WalletCommand::Activate).then(&[WalletEvent::WalletReactivated {}]);
        given::<Wallet>(&active_with(Money::ZERO)).when(&WalletCommand::Activate).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn only_active_wallets_are_suspended() {
        given::<Wallet>(&active_with(Money::ZERO))
            .when(&WalletCommand::Suspend { reason: "fraud".into() })
            .then(&[WalletEvent::WalletSuspended { reason: "fraud".into() }]);
        given::<Wallet>(&[created()]).when(&WalletCommand::Suspend { reason: "fraud".into() }).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn only_empty_active_or_suspended_wallets_close_and_closed_is_final() {
        given::<Wallet>(&active_with(Money::ZERO)).when(&WalletCommand::Close { reason: None }).then(&[WalletEvent::WalletClosed { reason: None }]);
        given::<Wallet>(&active_with(egp(1))).when(&WalletCommand::Close { reason: None }).then_refused("NON_ZERO_BALANCE");
        given::<Wallet>(&[created()]).when(&WalletCommand::Close { reason: None }).then_refused("INVALID_STATE_TRANSITION");
        let mut closed = active_with(Money::ZERO);
        closed.push(WalletEvent::WalletClosed { reason: None });
        for command in [WalletCommand::Activate, WalletCommand::Close { reason: None }, WalletCommand::Suspend { reason: "x".into() }] {
            given::<Wallet>(&closed).when(&command).then_refused("INVALID_STATE_TRANSITION");
        }
        given::<Wallet>(&closed).when(&WalletCommand::Credit(deposit(egp(1)))).then_refused("WALLET_NOT_ACTIVE");
    }

    #[test]
    fn a_credit_raises_the_balance() {
        given::<Wallet>(&active_with(egp(10))).when(&WalletCommand::Credit(deposit(egp(5)))).then(&[credited(egp(5), egp(15))]);
    }

    #[test]
    fn credits_and_debits_need_an_active_wallet() {
        given::<Wallet>(&[created()]).when(&WalletCommand::Credit(deposit(egp(5)))).then_refused("WALLET_NOT_ACTIVE");
        let mut suspended = active_with(egp(10));
        suspended.push(WalletEvent::WalletSuspended { reason: "kyc".into() });
        given::<Wallet>(&suspended).when(&WalletCommand::Debit(payment(egp(5)))).then_refused("WALLET_NOT_ACTIVE");
    }

    #[test]
    fn a_debit_never_takes_the_balance_below_zero() {
        given::<Wallet>(&active_with(egp(10)))
            .when(&WalletCommand::Debit(payment(egp(10))))
            .then(&[WalletEvent::WalletDebited { movement: payment(egp(10)), balance_after: Money::ZERO }]);
        let refusal = given::<Wallet>(&active_with(egp(10))).when(&WalletCommand::Debit(payment(Money::from_minor(1001)))).then_refused("INSUFFICIENT_FUNDS");
        assert_eq!(refusal.to_string(), format!("wallet {} has 10.00 EGP, debit needs 10.01 EGP", id()));
    }

    #[test]
    fn returned_funds_land_on_a_suspended_wallet_but_not_a_closed_one() {
        let mut suspended = active_with(egp(10));
        suspended.push(WalletEvent::WalletSuspended { reason: "kyc".into() });
        given::<Wallet>(&suspended).when(&WalletCommand::ReturnFunds(deposit(egp(5)))).then(&[credited(egp(5), egp(15))]);
        let mut closed = active_with(Money::ZERO);
        closed.push(WalletEvent::WalletClosed { reason: None });
        given::<Wallet>(&closed).when(&WalletCommand::ReturnFunds(deposit(egp(5)))).then_refused("WALLET_NOT_ACTIVE");
    }

    #[test]
    fn a_movement_in_another_currency_is_refused() {
        let mut usd = deposit(egp(1));
        usd.currency = Currency::parse("USD");
        given::<Wallet>(&active_with(Money::ZERO)).when(&WalletCommand::Credit(usd)).then_refused("CURRENCY_MISMATCH");
    }

    #[test]
    fn non_positive_amounts_are_refused_even_past_the_edge() {
        given::<Wallet>(&active_with(egp(10))).when(&WalletCommand::Debit(payment(Money::ZERO))).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn events_round_trip_through_the_envelope_encoding() {
        let events = [created(), credited(egp(5), egp(5)), WalletEvent::WalletClosed { reason: Some("bye".into()) }];
        for event in events {
            let (event_type, data) = crate::envelope::encode_event(&event);
            assert_eq!(crate::envelope::decode_event::<WalletEvent>(&event_type, &data).unwrap(), event);
        }
        let (event_type, data) = crate::envelope::encode_event(&credited(egp(5), egp(5)));
        assert_eq!(event_type, "WalletCredited");
        assert_eq!(data, serde_json::json!({"amount": 500, "transactionType": "deposit", "reference": "DEP-1", "balanceAfter": 500}));
    }
}
