//! The Wallet aggregate: where every wallet rule is decided.
//!
//! Lifecycle: created `pending`; `pending → active`; `active ⇄ suspended`;
//! `active | suspended → closed` only when empty; `closed` is final.
//! Credits and debits need `active`; a debit never takes the balance below zero, and
//! a credit never takes it above [`MAX_BALANCE`] (`LIMIT_EXCEEDED`).
//!
//! Holds: a payment's authorisation puts a *hold* on the payer's wallet. Held money
//! stays in the balance but is no longer *available*: `available = balance − held`,
//! and every debit and new hold must fit in what is available, so
//! `0 ≤ held ≤ balance` always. A hold (keyed by its payment id, placed at most once
//! in the wallet's life) ends by being captured (part or all of it is debited, the
//! rest released) or released (void, expiry). An empty wallet, the only kind that
//! closes, has no balance and no holds: a wallet with open holds has money in flight
//! and is refused `MONEY_IN_FLIGHT`, one with only a balance `NON_ZERO_BALANCE`.

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::money::{Currency, Money, MAX_BALANCE};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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
    /// A claim paid to a pharmacy or provider.
    ClaimPayment,
    /// A captured card-style payment, on the merchant's side.
    PaymentReceived,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DebitType {
    Payment,
    Withdrawal,
    TransferOut,
    Fee,
    /// A claim's share paid by a card's sponsor or its patient.
    ClaimPayment,
    /// A refunded card-style payment, on the merchant's side.
    PaymentRefund,
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
    ///
    /// It is also exempt from [`MAX_BALANCE`]. The money was in this wallet moments
    /// ago, so with no credit in between the balance goes back to where it was,
    /// under the cap. Only credits received meanwhile can have filled the room it
    /// left; refusing the refund then would leave the owner's own money nowhere (a
    /// compensation must not fail), so it lands and the balance sits above the cap
    /// by at most the amounts still in flight (each at most `MAX_AMOUNT`), far
    /// inside the range a balance renders exactly in. Every credit is refused until
    /// the balance is back under the cap.
    ReturnFunds(Movement<CreditType>),
    /// Sets `amount` of the available balance aside for a payment (`hold_id` is the
    /// payment id). Needs `active`, the wallet's currency, and `amount ≤ available`.
    PlaceHold {
        hold_id: Uuid,
        amount: Money,
        currency: Currency,
    },
    /// Debits `amount` (at most the hold, more than 0) as a `payment` and releases the
    /// whole hold, so a partial capture gives the rest back. A capture is a debit, so
    /// like one it needs `active`: a suspension freezes outgoing money, the payment
    /// stays authorised and can still be voided or expire.
    CaptureHold {
        hold_id: Uuid,
        amount: Money,
        reference: String,
        description: Option<String>,
    },
    /// Gives the whole hold back to the available balance (a void or an expiry). It
    /// only ever frees the owner's own money, so no status stops it.
    ReleaseHold {
        hold_id: Uuid,
    },
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
    /// Since schema version 2 a suspension has a category; version 1 had the
    /// reason alone (see [`upcast_suspension_v1`]).
    WalletSuspended {
        reason: String,
        category: SuspensionCategory,
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
    /// `amount` of the balance is set aside for payment `hold_id`; the balance is
    /// unchanged, `held_after` is the sum of the open holds.
    WalletHoldPlaced {
        hold_id: Uuid,
        amount: Money,
        held_after: Money,
    },
    /// The hold of `amount` is over (voided, expired or captured) and no longer counts
    /// against the available balance.
    ///
    /// A capture is recorded as this release **followed by** an ordinary
    /// `WalletDebited` (transaction type `payment`) in the same commit, rather than as
    /// one `WalletHoldCaptured` event: every reader of money movements (the balance
    /// view, the transaction history, the temporal balance query, the adapters'
    /// stored projections) already understands a debit, so a captured payment shows up
    /// in the history with its reference and amount without any read-side change; and
    /// with the release first, each event on its own keeps `0 ≤ held ≤ balance`, so
    /// the wallet is valid at every version, not just at the end of the commit.
    WalletHoldReleased {
        hold_id: Uuid,
        amount: Money,
        held_after: Money,
    },
}

/// The reference on the credit that funds a wallet's `initialBalance`.
pub const INITIAL_BALANCE_REFERENCE: &str = "initial-balance";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenWallet {
    pub id: Uuid,
    pub owner_id: String,
    pub wallet_type: WalletType,
    pub currency: Currency,
    pub kyc_level: KycLevel,
    pub status: WalletStatus,
    pub balance: Money,
    /// The sum of the open holds: part of the balance, not available.
    pub held: Money,
    /// The open holds, by hold id (the payment id).
    pub holds: BTreeMap<Uuid, Money>,
    /// Holds already captured or released: a hold id is placed at most once.
    pub settled_holds: BTreeSet<Uuid>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

impl WalletCommand {
    /// Opens a personal EGP wallet with basic KYC: the wallet tests, samples and
    /// benchmarks start from.
    pub fn open_personal(wallet_id: Uuid, owner_id: &str, initial_balance: Money) -> WalletCommand {
        WalletCommand::Create {
            wallet_id,
            owner_id: owner_id.to_string(),
            wallet_type: WalletType::Personal,
            currency: Currency::egp(),
            kyc_level: KycLevel::Basic,
            initial_balance,
        }
    }
}

/// Why a wallet was suspended, for whoever reviews suspensions (fraud alerts
/// suspend with a reason `fraud: <rule>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuspensionCategory {
    Fraud,
    Kyc,
    Other,
}

impl SuspensionCategory {
    /// The category a suspension's reason names.
    pub fn of(reason: &str) -> Self {
        let reason = reason.to_ascii_lowercase();
        if reason.starts_with("fraud") {
            SuspensionCategory::Fraud
        } else if reason.contains("kyc") {
            SuspensionCategory::Kyc
        } else {
            SuspensionCategory::Other
        }
    }
}

/// Schema 1 → 2: a `WalletSuspended` of version 1 had no category; it is the one
/// its reason names, as a new suspension's is.
pub fn upcast_suspension_v1(event_type: &str, mut data: serde_json::Value) -> (String, serde_json::Value) {
    let reason = data.get("reason").and_then(|r| r.as_str()).unwrap_or_default();
    let category = serde_json::to_value(SuspensionCategory::of(reason)).expect("a unit enum serialises");
    if let Some(fields) = data.as_object_mut() {
        fields.entry("category").or_insert(category);
    }
    (event_type.to_string(), data)
}

impl Aggregate for Wallet {
    const TYPE: &'static str = "wallet";
    /// 2: `WalletSuspended` has a category.
    const SCHEMA_VERSION: u32 = 2;

    /// Merchant and sponsor wallets collect hundreds of thousands of events.
    const KEEPS_SNAPSHOTS: bool = true;

    fn to_snapshot(&self) -> Option<serde_json::Value> {
        Some(serde_json::to_value(self).expect("a wallet serialises"))
    }

    fn from_snapshot(state: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(state.clone()).ok()
    }
    type Command = WalletCommand;
    type Event = WalletEvent;

    fn decide(&self, command: &WalletCommand) -> Result<Vec<WalletEvent>, DomainError> {
        let wallet = match (self, command) {
            (Wallet::Unopened, WalletCommand::Create { wallet_id, owner_id, wallet_type, currency, kyc_level, initial_balance }) => {
                if *initial_balance > MAX_BALANCE {
                    return Err(DomainError::LimitExceeded(format!(
                        "an initial balance of {initial_balance} is above {MAX_BALANCE}, the most a wallet may hold"
                    )));
                }
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
            (Wallet::Unopened, _) => return Err(DomainError::Unknown { kind: "wallet" }),
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
                Active => Ok(vec![WalletEvent::WalletSuspended { reason: reason.clone(), category: SuspensionCategory::of(reason) }]),
                _ => Err(refuse("suspend")),
            },
            WalletCommand::Close { reason } => match wallet.status {
                // Open holds first: they are payments under way, which closing must not strand.
                Active | Suspended if !wallet.holds.is_empty() => Err(DomainError::MoneyInFlight { wallet: wallet.id, held: wallet.held }),
                Active | Suspended if wallet.balance != Money::ZERO => Err(DomainError::NonZeroBalance { wallet: wallet.id, balance: wallet.balance }),
                Active | Suspended => Ok(vec![WalletEvent::WalletClosed { reason: reason.clone() }]),
                Pending | Closed => Err(refuse("close")),
            },
            WalletCommand::Credit(movement) | WalletCommand::ReturnFunds(movement) => {
                let may_receive: &[WalletStatus] = if matches!(command, WalletCommand::ReturnFunds(_)) { &[Active, Suspended] } else { &[Active] };
                wallet.ensure_can_move(movement.amount, movement.currency.as_ref(), may_receive)?;
                let balance_after =
                    wallet.balance.checked_add(movement.amount).ok_or_else(|| DomainError::LimitExceeded(format!("wallet {} cannot hold more", wallet.id)))?;
                // A compensation is exempt from the cap: see `WalletCommand::ReturnFunds`.
                if balance_after > MAX_BALANCE && !matches!(command, WalletCommand::ReturnFunds(_)) {
                    return Err(DomainError::LimitExceeded(format!(
                        "wallet {} holds {} {}; a credit of {} would take it above {MAX_BALANCE}, the most a wallet may hold",
                        wallet.id, wallet.balance, wallet.currency, movement.amount
                    )));
                }
                Ok(vec![WalletEvent::WalletCredited { movement: movement.clone(), balance_after }])
            }
            WalletCommand::Debit(movement) => {
                wallet.ensure_can_move(movement.amount, movement.currency.as_ref(), &[Active])?;
                wallet.ensure_available(movement.amount)?;
                let balance_after = Money::from_minor(wallet.balance.minor() - movement.amount.minor());
                Ok(vec![WalletEvent::WalletDebited { movement: movement.clone(), balance_after }])
            }
            WalletCommand::PlaceHold { hold_id, amount, currency } => {
                wallet.ensure_can_move(*amount, Some(currency), &[Active])?;
                if wallet.holds.contains_key(hold_id) || wallet.settled_holds.contains(hold_id) {
                    return Err(DomainError::AlreadyExists { kind: "hold", id: *hold_id });
                }
                wallet.ensure_available(*amount)?;
                let held_after = Money::from_minor(wallet.held.minor() + amount.minor());
                Ok(vec![WalletEvent::WalletHoldPlaced { hold_id: *hold_id, amount: *amount, held_after }])
            }
            WalletCommand::CaptureHold { hold_id, amount, reference, description } => {
                let hold = wallet.open_hold(*hold_id, "capture")?;
                if *amount > hold {
                    return Err(DomainError::LimitExceeded(format!("hold {hold_id} on wallet {} is {hold}, a capture cannot take {amount}", wallet.id)));
                }
                wallet.ensure_can_move(*amount, None, &[Active])?;
                let held_after = Money::from_minor(wallet.held.minor() - hold.minor());
                let balance_after = Money::from_minor(wallet.balance.minor() - amount.minor());
                let movement = Movement {
                    amount: *amount,
                    transaction_type: DebitType::Payment,
                    reference: reference.clone(),
                    description: description.clone(),
                    currency: Some(wallet.currency.clone()),
                };
                Ok(vec![
                    WalletEvent::WalletHoldReleased { hold_id: *hold_id, amount: hold, held_after },
                    WalletEvent::WalletDebited { movement, balance_after },
                ])
            }
            WalletCommand::ReleaseHold { hold_id } => {
                let hold = wallet.open_hold(*hold_id, "release")?;
                let held_after = Money::from_minor(wallet.held.minor() - hold.minor());
                Ok(vec![WalletEvent::WalletHoldReleased { hold_id: *hold_id, amount: hold, held_after }])
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
                held: Money::ZERO,
                holds: BTreeMap::new(),
                settled_holds: BTreeSet::new(),
            }),
            (Wallet::Open(mut w), event) => {
                match event {
                    WalletEvent::WalletCreated { .. } => {}
                    WalletEvent::WalletActivated {} | WalletEvent::WalletReactivated {} => w.status = WalletStatus::Active,
                    WalletEvent::WalletSuspended { .. } => w.status = WalletStatus::Suspended,
                    WalletEvent::WalletClosed { .. } => w.status = WalletStatus::Closed,
                    WalletEvent::WalletCredited { balance_after, .. } | WalletEvent::WalletDebited { balance_after, .. } => w.balance = *balance_after,
                    WalletEvent::WalletHoldPlaced { hold_id, amount, held_after } => {
                        w.holds.insert(*hold_id, *amount);
                        w.held = *held_after;
                    }
                    WalletEvent::WalletHoldReleased { hold_id, held_after, .. } => {
                        w.holds.remove(hold_id);
                        w.settled_holds.insert(*hold_id);
                        w.held = *held_after;
                    }
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
    /// What a debit or a new hold may take: the balance less the open holds.
    pub fn available(&self) -> Money {
        Money::from_minor(self.balance.minor() - self.held.minor())
    }

    fn ensure_available(&self, amount: Money) -> Result<(), DomainError> {
        if amount > self.available() {
            return Err(DomainError::InsufficientFunds { wallet: self.id, available: self.available(), needed: amount, currency: self.currency.clone() });
        }
        Ok(())
    }

    /// The amount of an open hold; a hold never placed is not found, one already
    /// captured or released cannot end twice.
    fn open_hold(&self, hold_id: Uuid, action: &'static str) -> Result<Money, DomainError> {
        match self.holds.get(&hold_id) {
            Some(amount) => Ok(*amount),
            None if self.settled_holds.contains(&hold_id) => Err(DomainError::InvalidStateTransition { kind: "hold", id: hold_id, status: "settled", action }),
            None => Err(DomainError::NotFound { kind: "hold", id: hold_id }),
        }
    }

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
        let suspended = [created(), WalletEvent::WalletActivated {}, WalletEvent::WalletSuspended { reason: "kyc".into(), category: SuspensionCategory::Kyc }];
        given::<Wallet>(&suspended).when(&WalletCommand::Activate).then(&[WalletEvent::WalletReactivated {}]);
        given::<Wallet>(&active_with(Money::ZERO)).when(&WalletCommand::Activate).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn only_active_wallets_are_suspended() {
        given::<Wallet>(&active_with(Money::ZERO))
            .when(&WalletCommand::Suspend { reason: "fraud".into() })
            .then(&[WalletEvent::WalletSuspended { reason: "fraud".into(), category: SuspensionCategory::Fraud }]);
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
        suspended.push(WalletEvent::WalletSuspended { reason: "kyc".into(), category: SuspensionCategory::Kyc });
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
        suspended.push(WalletEvent::WalletSuspended { reason: "kyc".into(), category: SuspensionCategory::Kyc });
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

    fn hold_id(n: u128) -> Uuid {
        Uuid::from_u128(0x401d_0000 + n)
    }
    fn place(n: u128, amount: Money) -> WalletCommand {
        WalletCommand::PlaceHold { hold_id: hold_id(n), amount, currency: Currency::egp() }
    }
    fn placed(n: u128, amount: Money, held_after: Money) -> WalletEvent {
        WalletEvent::WalletHoldPlaced { hold_id: hold_id(n), amount, held_after }
    }
    fn released(n: u128, amount: Money, held_after: Money) -> WalletEvent {
        WalletEvent::WalletHoldReleased { hold_id: hold_id(n), amount, held_after }
    }
    fn capture(n: u128, amount: Money) -> WalletCommand {
        WalletCommand::CaptureHold { hold_id: hold_id(n), amount, reference: "PAY-1".into(), description: None }
    }
    fn captured_debit(amount: Money, balance_after: Money) -> WalletEvent {
        let movement = Movement { amount, transaction_type: DebitType::Payment, reference: "PAY-1".into(), description: None, currency: Some(Currency::egp()) };
        WalletEvent::WalletDebited { movement, balance_after }
    }
    /// An active wallet with `balance` and a hold #1 of `held`.
    fn holding(balance: Money, held: Money) -> Vec<WalletEvent> {
        let mut events = active_with(balance);
        events.push(placed(1, held, held));
        events
    }
    fn suspended(mut events: Vec<WalletEvent>) -> Vec<WalletEvent> {
        events.push(WalletEvent::WalletSuspended { reason: "kyc".into(), category: SuspensionCategory::Kyc });
        events
    }
    fn amounts(events: &[WalletEvent]) -> (Money, Money, Money) {
        let wallet = given::<Wallet>(events).state();
        let w = wallet.open().unwrap();
        (w.balance, w.held, w.available())
    }

    #[test]
    fn a_hold_sets_money_aside_without_changing_the_balance() {
        given::<Wallet>(&active_with(egp(10))).when(&place(1, egp(4))).then(&[placed(1, egp(4), egp(4))]);
        assert_eq!(amounts(&holding(egp(10), egp(4))), (egp(10), egp(4), egp(6)));
    }

    #[test]
    fn a_hold_must_fit_in_the_available_balance() {
        given::<Wallet>(&holding(egp(10), egp(6))).when(&place(2, egp(4))).then(&[placed(2, egp(4), egp(10))]);
        let refusal = given::<Wallet>(&holding(egp(10), egp(6))).when(&place(2, Money::from_minor(401))).then_refused("INSUFFICIENT_FUNDS");
        assert_eq!(refusal.to_string(), format!("wallet {} has 4.00 EGP, debit needs 4.01 EGP", id()));
    }

    #[test]
    fn a_debit_must_fit_in_the_available_balance_not_the_whole_balance() {
        given::<Wallet>(&holding(egp(10), egp(6)))
            .when(&WalletCommand::Debit(payment(egp(4))))
            .then(&[WalletEvent::WalletDebited { movement: payment(egp(4)), balance_after: egp(6) }]);
        let refusal = given::<Wallet>(&holding(egp(10), egp(6))).when(&WalletCommand::Debit(payment(egp(5)))).then_refused("INSUFFICIENT_FUNDS");
        assert_eq!(refusal.to_string(), format!("wallet {} has 4.00 EGP, debit needs 5.00 EGP", id()));
    }

    #[test]
    fn a_hold_id_is_placed_once_even_after_its_hold_ended() {
        given::<Wallet>(&holding(egp(10), egp(1))).when(&place(1, egp(1))).then_refused("ALREADY_EXISTS");
        let mut ended = holding(egp(10), egp(1));
        ended.push(released(1, egp(1), Money::ZERO));
        given::<Wallet>(&ended).when(&place(1, egp(1))).then_refused("ALREADY_EXISTS");
    }

    #[test]
    fn a_hold_needs_an_active_wallet_its_currency_and_a_positive_amount() {
        given::<Wallet>(&[created()]).when(&place(1, egp(1))).then_refused("WALLET_NOT_ACTIVE");
        given::<Wallet>(&suspended(active_with(egp(10)))).when(&place(1, egp(1))).then_refused("WALLET_NOT_ACTIVE");
        let usd = WalletCommand::PlaceHold { hold_id: hold_id(1), amount: egp(1), currency: Currency::parse("USD").unwrap() };
        given::<Wallet>(&active_with(egp(10))).when(&usd).then_refused("CURRENCY_MISMATCH");
        given::<Wallet>(&active_with(egp(10))).when(&place(1, Money::ZERO)).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn a_capture_releases_the_whole_hold_then_debits_the_captured_amount() {
        given::<Wallet>(&holding(egp(10), egp(6))).when(&capture(1, egp(4))).then(&[released(1, egp(6), Money::ZERO), captured_debit(egp(4), egp(6))]);
        let after = [holding(egp(10), egp(6)), vec![released(1, egp(6), Money::ZERO), captured_debit(egp(4), egp(6))]].concat();
        assert_eq!(amounts(&after), (egp(6), Money::ZERO, egp(6)), "the 2.00 not captured is available again");
    }

    #[test]
    fn a_capture_leaves_the_other_holds_in_place() {
        let mut two = holding(egp(10), egp(6));
        two.push(placed(2, egp(3), egp(9)));
        given::<Wallet>(&two).when(&capture(2, egp(3))).then(&[released(2, egp(3), egp(6)), captured_debit(egp(3), egp(7))]);
    }

    #[test]
    fn a_capture_takes_more_than_nothing_and_at_most_its_hold() {
        given::<Wallet>(&holding(egp(10), egp(6))).when(&capture(1, Money::from_minor(601))).then_refused("LIMIT_EXCEEDED");
        given::<Wallet>(&holding(egp(10), egp(6))).when(&capture(1, Money::ZERO)).then_refused("VALIDATION_ERROR");
    }

    #[test]
    fn a_capture_is_a_debit_and_needs_an_active_wallet() {
        given::<Wallet>(&suspended(holding(egp(10), egp(6)))).when(&capture(1, egp(6))).then_refused("WALLET_NOT_ACTIVE");
    }

    #[test]
    fn a_release_gives_the_hold_back_even_on_a_suspended_wallet() {
        given::<Wallet>(&holding(egp(10), egp(6))).when(&WalletCommand::ReleaseHold { hold_id: hold_id(1) }).then(&[released(1, egp(6), Money::ZERO)]);
        given::<Wallet>(&suspended(holding(egp(10), egp(6)))).when(&WalletCommand::ReleaseHold { hold_id: hold_id(1) }).then(&[released(
            1,
            egp(6),
            Money::ZERO,
        )]);
        let after = [holding(egp(10), egp(6)), vec![released(1, egp(6), Money::ZERO)]].concat();
        assert_eq!(amounts(&after), (egp(10), Money::ZERO, egp(10)));
    }

    #[test]
    fn an_unknown_hold_is_not_found_and_an_ended_one_does_not_end_twice() {
        given::<Wallet>(&active_with(egp(10))).when(&WalletCommand::ReleaseHold { hold_id: hold_id(9) }).then_refused("NOT_FOUND");
        given::<Wallet>(&active_with(egp(10))).when(&capture(9, egp(1))).then_refused("NOT_FOUND");
        let ended = [holding(egp(10), egp(6)), vec![released(1, egp(6), Money::ZERO), captured_debit(egp(6), egp(4))]].concat();
        given::<Wallet>(&ended).when(&WalletCommand::ReleaseHold { hold_id: hold_id(1) }).then_refused("INVALID_STATE_TRANSITION");
        given::<Wallet>(&ended).when(&capture(1, egp(1))).then_refused("INVALID_STATE_TRANSITION");
    }

    #[test]
    fn a_wallet_closes_only_without_balance_and_without_holds() {
        let refusal = given::<Wallet>(&holding(egp(10), egp(10))).when(&WalletCommand::Close { reason: None }).then_refused("MONEY_IN_FLIGHT");
        assert_eq!(refusal, DomainError::MoneyInFlight { wallet: id(), held: egp(10) });
        let all_captured = [holding(egp(10), egp(10)), vec![released(1, egp(10), Money::ZERO), captured_debit(egp(10), Money::ZERO)]].concat();
        given::<Wallet>(&all_captured).when(&WalletCommand::Close { reason: None }).then(&[WalletEvent::WalletClosed { reason: None }]);
    }

    #[test]
    fn open_holds_are_money_in_flight_and_a_bare_balance_is_non_zero() {
        // A hold smaller than the balance: the hold is what stops the close.
        let refusal = given::<Wallet>(&holding(egp(10), egp(4))).when(&WalletCommand::Close { reason: None }).then_refused("MONEY_IN_FLIGHT");
        assert_eq!(
            refusal.to_string(),
            format!("wallet {} has 4.00 held for payments still in flight; capture, void or let them expire before closing it", id())
        );
        given::<Wallet>(&suspended(holding(egp(10), egp(4)))).when(&WalletCommand::Close { reason: None }).then_refused("MONEY_IN_FLIGHT");
        // Released, the hold is gone and the balance alone is left.
        let released_hold = [holding(egp(10), egp(4)), vec![released(1, egp(4), Money::ZERO)]].concat();
        let refusal = given::<Wallet>(&released_hold).when(&WalletCommand::Close { reason: None }).then_refused("NON_ZERO_BALANCE");
        assert_eq!(refusal, DomainError::NonZeroBalance { wallet: id(), balance: egp(10) });
    }

    fn at_cap() -> Vec<WalletEvent> {
        let mut events = active_with(Money::ZERO);
        events.push(credited(MAX_BALANCE, MAX_BALANCE));
        events
    }

    #[test]
    fn a_credit_up_to_the_balance_cap_lands_and_one_minor_unit_more_is_limit_exceeded() {
        let almost = MAX_BALANCE.checked_sub(egp(5)).unwrap();
        given::<Wallet>(&active_with(almost)).when(&WalletCommand::Credit(deposit(egp(5)))).then(&[credited(egp(5), MAX_BALANCE)]);
        let refusal = given::<Wallet>(&active_with(almost)).when(&WalletCommand::Credit(deposit(Money::from_minor(501)))).then_refused("LIMIT_EXCEEDED");
        assert_eq!(
            refusal.to_string(),
            format!("wallet {} holds 99999999995.00 EGP; a credit of 5.01 would take it above 100000000000.00, the most a wallet may hold", id())
        );
        given::<Wallet>(&at_cap()).when(&WalletCommand::Credit(deposit(Money::from_minor(1)))).then_refused("LIMIT_EXCEEDED");
    }

    #[test]
    fn an_initial_balance_above_the_cap_is_limit_exceeded() {
        assert!(given::<Wallet>(&[]).when(&create(MAX_BALANCE)).0.is_ok());
        given::<Wallet>(&[]).when(&create(Money::from_minor(MAX_BALANCE.minor() + 1))).then_refused("LIMIT_EXCEEDED");
    }

    #[test]
    fn returned_funds_are_exempt_from_the_cap_so_a_compensation_always_lands() {
        // At the cap, 5.00 left in a saga and a deposit refilled it: the refund still lands.
        let mut refilled = at_cap();
        refilled.push(WalletEvent::WalletDebited { movement: payment(egp(5)), balance_after: MAX_BALANCE.checked_sub(egp(5)).unwrap() });
        refilled.push(credited(egp(5), MAX_BALANCE));
        let above = MAX_BALANCE.checked_add(egp(5)).unwrap();
        given::<Wallet>(&refilled).when(&WalletCommand::ReturnFunds(deposit(egp(5)))).then(&[credited(egp(5), above)]);
        // Above the cap, every credit is refused until the balance is back under it.
        let mut over = refilled.clone();
        over.push(credited(egp(5), above));
        given::<Wallet>(&over).when(&WalletCommand::Credit(deposit(Money::from_minor(1)))).then_refused("LIMIT_EXCEEDED");
        assert_eq!(above.to_json_number().to_string(), "100000000005", "still rendered exactly");
    }

    #[test]
    fn events_stored_before_holds_existed_still_apply() {
        let stored = [
            ("WalletCreated", serde_json::json!({"walletId": id(), "ownerId": "alice", "walletType": "personal", "currency": "EGP", "kycLevel": "basic"})),
            ("WalletActivated", serde_json::json!({})),
            ("WalletCredited", serde_json::json!({"amount": 500, "transactionType": "deposit", "reference": "DEP-1", "balanceAfter": 500})),
        ];
        let events: Vec<WalletEvent> = stored.iter().map(|(t, data)| crate::envelope::decode_event(t, data).unwrap()).collect();
        assert_eq!(amounts(&events), (egp(5), Money::ZERO, egp(5)));
    }

    #[test]
    fn events_round_trip_through_the_envelope_encoding() {
        let events = [
            created(),
            credited(egp(5), egp(5)),
            WalletEvent::WalletClosed { reason: Some("bye".into()) },
            placed(1, egp(2), egp(3)),
            released(1, egp(2), egp(1)),
            captured_debit(egp(1), egp(4)),
        ];
        for event in events {
            let (event_type, data) = crate::envelope::encode_event(&event);
            assert_eq!(crate::envelope::decode_event::<WalletEvent>(&event_type, &data).unwrap(), event);
        }
        let (event_type, data) = crate::envelope::encode_event(&credited(egp(5), egp(5)));
        assert_eq!(event_type, "WalletCredited");
        assert_eq!(data, serde_json::json!({"amount": 500, "transactionType": "deposit", "reference": "DEP-1", "balanceAfter": 500}));
        let (event_type, data) = crate::envelope::encode_event(&placed(1, egp(2), egp(3)));
        assert_eq!((event_type.as_str(), data), ("WalletHoldPlaced", serde_json::json!({"holdId": hold_id(1), "amount": 200, "heldAfter": 300})));
    }
}
