//! Payments: the payer's owner authorises (a hold on the payer); the merchant's
//! owner captures, voids and refunds; `admin` may do any of it.
//!
//! Each command changes the payment and every wallet it moves money on in one commit
//! (one `TransactWriteItems` on DynamoDB): there is never a payment captured whose
//! merchant was not credited, nor a hold without its authorisation.

use super::{forbidden, Call, Caller, Ledger, Receipt, Reply};
use crate::aggregate::Aggregate;
use crate::command::{CommandError, Failure, UnitOfWork};
use crate::error::DomainError;
use crate::ids::{PaymentId, WalletId};
use crate::money::Money;
use crate::payment::{Payment, PaymentCommand, PaymentEvent, PaymentTerms};
use crate::wallet::{CreditType, DebitType, Movement, Wallet, WalletCommand, WalletStatus};

#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    pub payer: WalletId,
    pub merchant: WalletId,
    pub amount: Money,
    pub reference: String,
    pub description: Option<String>,
}

/// A capture's outcome: the part of the hold not captured went back to the payer.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub receipt: Receipt<Payment>,
    pub released: Money,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub receipt: Receipt<Payment>,
    pub refunded: Money,
}

impl Ledger {
    /// Places a hold on the payer and records the authorisation, in one commit.
    ///
    /// The payer is loaded (its available balance decides); the merchant only
    /// peeked at (owner and currency never change, and a hot merchant wallet must
    /// not serialise its customers' authorisations): its status is checked as last
    /// seen here, and strictly by the capture, whose credit needs an active wallet.
    pub async fn authorize_payment(
        &self,
        caller: &Caller,
        order: Authorization,
        call: &Call<'_, Receipt<Payment>>,
    ) -> Result<Reply<Receipt<Payment>>, CommandError> {
        if !self.acts_for_wallet(caller, order.payer).await? {
            return Err(forbidden(format!("{} may not pay from wallet {}", caller.sub, order.payer)));
        }
        if order.payer == order.merchant {
            return Err(CommandError::Refused(DomainError::SameWallet));
        }
        let payment_id = PaymentId::generate();
        let (payer, merchant) = (order.payer.uuid(), order.merchant.uuid());
        let (authorized_by, expiry) = (caller.sub.clone(), self.payment_expiry);
        self.run(call, async move |uow| {
            let payer_wallet: Wallet = uow.load(payer).await?;
            let payer_open = payer_wallet.open().ok_or(DomainError::NotFound { kind: "wallet", id: payer })?;
            let merchant_wallet: Wallet = uow.peek(merchant).await?;
            let merchant_open = merchant_wallet.open().ok_or(DomainError::NotFound { kind: "wallet", id: merchant })?;
            if merchant_open.currency != payer_open.currency {
                return Err(DomainError::CurrencyMismatch {
                    wallet: merchant,
                    wallet_currency: merchant_open.currency.clone(),
                    command_currency: payer_open.currency.clone(),
                }
                .into());
            }
            if merchant_open.status != WalletStatus::Active {
                return Err(DomainError::WalletNotActive { wallet: merchant, status: merchant_open.status.as_str() }.into());
            }
            let currency = payer_open.currency.clone();
            let terms = PaymentTerms {
                payment_id: payment_id.uuid(),
                payer_wallet_id: payer,
                merchant_wallet_id: merchant,
                amount: order.amount,
                currency: currency.clone(),
                reference: order.reference.clone(),
                description: order.description.clone(),
                expires_at: uow.now() + expiry,
                authorized_by: authorized_by.clone(),
            };
            let payment = uow.handle::<Payment>(payment_id.uuid(), &PaymentCommand::Authorize(terms)).await?;
            let hold = payer_wallet.decide(&WalletCommand::PlaceHold { hold_id: payment_id.uuid(), amount: order.amount, currency })?;
            uow.record::<Wallet>(payer, hold);
            Ok(Receipt::of(uow, payment_id.uuid(), payment))
        })
        .await
    }

    /// Captures the hold on the payer (debit of the captured amount, the rest
    /// released) and credits the merchant, in one commit. `None`: the whole hold.
    pub async fn capture_payment(
        &self,
        caller: &Caller,
        payment_id: PaymentId,
        amount: Option<Money>,
        call: &Call<'_, Capture>,
    ) -> Result<Reply<Capture>, CommandError> {
        self.merchant_may(caller, payment_id, "capture").await?;
        self.run(call, async move |uow| {
            let (payment, terms) = load_payment(uow, payment_id).await?;
            load_wallets_in_order(uow, &terms).await?;
            let events = payment.decide(&PaymentCommand::Capture { amount, now: uow.now() })?;
            let Some(PaymentEvent::PaymentCaptured { amount, released }) = events.first().cloned() else { unreachable!("a capture decides PaymentCaptured") };
            let after = uow.record::<Payment>(payment_id.uuid(), events);
            let capture_hold =
                WalletCommand::CaptureHold { hold_id: payment_id.uuid(), amount, reference: terms.reference.clone(), description: terms.description.clone() };
            uow.handle::<Wallet>(terms.payer_wallet_id, &capture_hold).await?;
            let credit = movement(&terms, amount, CreditType::PaymentReceived, terms.description.clone());
            uow.handle::<Wallet>(terms.merchant_wallet_id, &WalletCommand::Credit(credit)).await?;
            Ok(Capture { receipt: Receipt::of(uow, payment_id.uuid(), after), released })
        })
        .await
    }

    /// Cancels an authorisation and releases its hold, in one commit.
    pub async fn void_payment(
        &self,
        caller: &Caller,
        payment_id: PaymentId,
        call: &Call<'_, Receipt<Payment>>,
    ) -> Result<Reply<Receipt<Payment>>, CommandError> {
        self.merchant_may(caller, payment_id, "void").await?;
        self.run(call, async move |uow| {
            let (payment, terms) = load_payment(uow, payment_id).await?;
            let events = payment.decide(&PaymentCommand::Void)?;
            let after = uow.record::<Payment>(payment_id.uuid(), events);
            uow.handle::<Wallet>(terms.payer_wallet_id, &WalletCommand::ReleaseHold { hold_id: payment_id.uuid() }).await?;
            Ok(Receipt::of(uow, payment_id.uuid(), after))
        })
        .await
    }

    /// Gives captured money back: a debit of the merchant and a `refund` credit of
    /// the payer, in one commit. `None`: all that is still refundable.
    pub async fn refund_payment(
        &self,
        caller: &Caller,
        payment_id: PaymentId,
        amount: Option<Money>,
        reason: String,
        call: &Call<'_, Refund>,
    ) -> Result<Reply<Refund>, CommandError> {
        self.merchant_may(caller, payment_id, "refund").await?;
        self.run(call, async move |uow| {
            let (payment, terms) = load_payment(uow, payment_id).await?;
            load_wallets_in_order(uow, &terms).await?;
            let events = payment.decide(&PaymentCommand::Refund { amount, reason: reason.clone() })?;
            let Some(PaymentEvent::PaymentRefunded { amount, .. }) = events.first().cloned() else { unreachable!("a refund decides PaymentRefunded") };
            let after = uow.record::<Payment>(payment_id.uuid(), events);
            let debit = movement(&terms, amount, DebitType::PaymentRefund, Some(reason.clone()));
            uow.handle::<Wallet>(terms.merchant_wallet_id, &WalletCommand::Debit(debit)).await?;
            // Like a saga's compensation, a refund also reaches a suspended payer: a
            // suspension must not keep the payer's own money away.
            let credit = movement(&terms, amount, CreditType::Refund, Some(reason.clone()));
            uow.handle::<Wallet>(terms.payer_wallet_id, &WalletCommand::ReturnFunds(credit)).await?;
            Ok(Refund { receipt: Receipt::of(uow, payment_id.uuid(), after), refunded: amount })
        })
        .await
    }

    /// Capture, void and refund are the merchant's (its wallet's owner) or an admin's.
    async fn merchant_may(&self, caller: &Caller, payment_id: PaymentId, action: &str) -> Result<(), CommandError> {
        let payment: Payment = self.origin(payment_id.uuid()).await?;
        let terms = &payment.started().ok_or(CommandError::Refused(DomainError::NotFound { kind: "payment", id: payment_id.uuid() }))?.terms;
        if self.acts_for_wallet(caller, WalletId(terms.merchant_wallet_id)).await? {
            return Ok(());
        }
        Err(forbidden(format!("{} may not {action} payment {payment_id}", caller.sub)))
    }
}

/// The payment, which must exist, and its terms.
async fn load_payment(uow: &mut UnitOfWork<'_>, payment_id: PaymentId) -> Result<(Payment, PaymentTerms), Failure> {
    let payment: Payment = uow.load(payment_id.uuid()).await?;
    let terms = payment.started().ok_or(DomainError::NotFound { kind: "payment", id: payment_id.uuid() })?.terms.clone();
    Ok((payment, terms))
}

/// Loads both wallets of a payment in id order, so that two commands moving money
/// between the same two wallets in opposite directions queue on their per-stream
/// locks instead of each holding one and waiting for the other.
async fn load_wallets_in_order(uow: &mut UnitOfWork<'_>, terms: &PaymentTerms) -> Result<(), Failure> {
    let mut ids = [terms.payer_wallet_id, terms.merchant_wallet_id];
    ids.sort();
    for id in ids {
        let _: Wallet = uow.load(id).await?;
    }
    Ok(())
}

/// A movement of the payment's money, under its reference and in its currency.
fn movement<T>(terms: &PaymentTerms, amount: Money, transaction_type: T, description: Option<String>) -> Movement<T> {
    Movement { amount, transaction_type, reference: terms.reference.clone(), description, currency: Some(terms.currency.clone()) }
}
