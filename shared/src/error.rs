//! Why a command was refused, in the ledger's own words. Each variant has a stable
//! code (the contract's `error` field); the HTTP edge maps codes to statuses.

use crate::money::{Currency, Money};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Validation(String),
    #[error("{kind} {id} was not found")]
    NotFound { kind: &'static str, id: Uuid },
    /// An aggregate that does not exist, decided where its id is not known (a
    /// command on an empty stream): the caller knows which id it sent.
    #[error("no such {kind}")]
    Unknown { kind: &'static str },
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: &'static str, id: Uuid },
    #[error("wallet {wallet} has {available} {currency}, debit needs {needed} {currency}")]
    InsufficientFunds { wallet: Uuid, available: Money, needed: Money, currency: Currency },
    #[error("wallet {wallet} is {status}, the command needs an active wallet")]
    WalletNotActive { wallet: Uuid, status: &'static str },
    #[error("cannot {action} {kind} {id} while it is {status}")]
    InvalidStateTransition { kind: &'static str, id: Uuid, status: &'static str, action: &'static str },
    #[error("wallet {wallet} holds {wallet_currency}, the command is in {command_currency}")]
    CurrencyMismatch { wallet: Uuid, wallet_currency: Currency, command_currency: Currency },
    #[error("source and destination are the same wallet")]
    SameWallet,
    #[error("wallet {wallet} still holds {balance}; only an empty wallet can be closed")]
    NonZeroBalance { wallet: Uuid, balance: Money },
    /// Money is still in flight on the wallet (open payment holds): it cannot close
    /// until they are captured, voided or expire.
    #[error("wallet {wallet} has {held} held for payments still in flight; capture, void or let them expire before closing it")]
    MoneyInFlight { wallet: Uuid, held: Money },
    /// A bound on size: an amount, a balance ([`crate::money::MAX_BALANCE`]), the
    /// beneficiaries of a card ([`crate::medcard::MAX_BENEFICIARIES`]), a monthly limit.
    #[error("{0}")]
    LimitExceeded(String),
    /// An ownership or role rule: the caller may not do this to this aggregate.
    #[error("{0}")]
    Forbidden(String),
    /// A medical card that is not `ACTIVE` (issued, suspended) cannot cover a claim.
    #[error("medical card {card} is {status}, a claim needs an active card")]
    CardNotActive { card: Uuid, status: &'static str },
    /// A medical card past its expiry (or expired by its sponsor) covers nothing.
    #[error("medical card {card} has expired")]
    CardExpired { card: Uuid },
    #[error("beneficiary {beneficiary} is not covered by medical card {card}")]
    BeneficiaryNotCovered { card: Uuid, beneficiary: Uuid },
    /// A prescription is paid at most once: another claim holds it.
    #[error("prescription {prescription} is already claimed by claim {claim}")]
    PrescriptionAlreadyClaimed { prescription: String, claim: Uuid },
}

impl DomainError {
    /// The contract's `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Validation(_) => "VALIDATION_ERROR",
            DomainError::NotFound { .. } | DomainError::Unknown { .. } => "NOT_FOUND",
            DomainError::AlreadyExists { .. } => "ALREADY_EXISTS",
            DomainError::InsufficientFunds { .. } => "INSUFFICIENT_FUNDS",
            DomainError::WalletNotActive { .. } => "WALLET_NOT_ACTIVE",
            DomainError::InvalidStateTransition { .. } => "INVALID_STATE_TRANSITION",
            DomainError::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            DomainError::SameWallet => "SAME_WALLET",
            DomainError::NonZeroBalance { .. } => "NON_ZERO_BALANCE",
            DomainError::MoneyInFlight { .. } => "MONEY_IN_FLIGHT",
            DomainError::LimitExceeded(_) => "LIMIT_EXCEEDED",
            DomainError::Forbidden(_) => "FORBIDDEN",
            DomainError::CardNotActive { .. } => "CARD_NOT_ACTIVE",
            DomainError::CardExpired { .. } => "CARD_EXPIRED",
            DomainError::BeneficiaryNotCovered { .. } => "BENEFICIARY_NOT_COVERED",
            DomainError::PrescriptionAlreadyClaimed { .. } => "ALREADY_EXISTS",
        }
    }
}
