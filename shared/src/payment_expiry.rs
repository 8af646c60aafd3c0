//! Releasing the authorisations nobody captured in time.
//!
//! A sweep reads the due authorisations from the payment read model (the
//! `payments-authorized` list, sorted by expiry) and expires each with one
//! command: the payment's `PaymentExpired` and the payer's `WalletHoldReleased`,
//! in one commit. The read model only finds candidates; the decision is the
//! Payment aggregate's, against the clock port (`now ≥ expiresAt`), so a payment
//! captured or voided after the list was read — or listed by a lagging projection —
//! is simply refused and skipped. Sweeps are therefore safe to repeat and to run
//! concurrently (the local server's timer, the scheduled Lambda function).

use crate::aggregate::Aggregate;
use crate::command::{CommandContext, CommandError, CommandService};
use crate::error::DomainError;
use crate::payment::{Payment, PaymentCommand};
use crate::ports::{ReadStore, StoreError};
use crate::projection::payment::{due_bound, PaymentView, AUTHORIZED_LIST, KIND};
use crate::projection::view_of;
use crate::wallet::{Wallet, WalletCommand};
use chrono::Duration;
use uuid::Uuid;

/// How long an authorisation may wait for its capture, unless configured otherwise.
pub const DEFAULT_PAYMENT_EXPIRY: Duration = Duration::days(7);
/// The user id on the events a sweep appends.
pub const SWEEPER: &str = "system:payment-expiry";
/// Due authorisations read per page.
const PAGE: usize = 100;

/// An expiry period of `seconds` (1 second to 365 days).
pub fn expiry_period(seconds: u64) -> Result<Duration, String> {
    if !(1..=365 * 24 * 3600).contains(&seconds) {
        return Err(format!("the payment expiry must be from 1 second to 365 days, got {seconds} seconds"));
    }
    Ok(Duration::seconds(seconds as i64))
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Payments expired (hold released) by this sweep.
    pub expired: Vec<Uuid>,
    /// Listed as due but no longer authorised, or not yet due by the aggregate's own
    /// terms: nothing to do.
    pub skipped: usize,
    /// Could not be expired this time (a store failure, a conflict that outlasted
    /// the retries); the next sweep tries again.
    pub failed: usize,
    /// Left for the next sweep: `max` was reached.
    pub more: bool,
}

/// Expires up to `max` authorisations due by the clock's `now`.
pub async fn expire_due(commands: &CommandService, read: &dyn ReadStore, max: usize) -> Result<Sweep, StoreError> {
    let mut sweep = Sweep::default();
    let mut before = Some(due_bound(commands.clock().now()));
    let mut handled = 0;
    while let Some(bound) = before.take() {
        let page = read.listed(KIND, AUTHORIZED_LIST, PAGE, Some(&bound)).await?;
        for document in page.documents {
            if handled == max {
                sweep.more = true;
                return Ok(sweep);
            }
            handled += 1;
            let id = document.id;
            let payer = match view_of::<PaymentView>(document, id) {
                Ok(view) => view.payer_wallet_id,
                Err(e) => {
                    tracing::error!(payment = %id, error = %e, "cannot read a listed payment view");
                    sweep.failed += 1;
                    continue;
                }
            };
            match expire(commands, id, payer).await {
                Ok(()) => sweep.expired.push(id),
                Err(CommandError::Refused(refusal)) => {
                    tracing::debug!(payment = %id, %refusal, "listed as due, not expired");
                    sweep.skipped += 1;
                }
                Err(e) => {
                    tracing::warn!(payment = %id, error = %e, "cannot expire the payment now; the next sweep retries");
                    sweep.failed += 1;
                }
            }
        }
        before = page.next;
    }
    Ok(sweep)
}

/// Expires one authorisation and releases its hold on `payer`, in one commit; refused
/// (`INVALID_STATE_TRANSITION`) unless the payment is authorised and due.
pub async fn expire(commands: &CommandService, payment_id: Uuid, payer: Uuid) -> Result<(), CommandError> {
    let ctx = CommandContext::new(SWEEPER, format!("payment-expiry-{payment_id}"));
    commands
        .execute(&ctx, async move |uow| {
            let payment: Payment = uow.load(payment_id).await?;
            let started = payment.started().ok_or(DomainError::NotFound { kind: "payment", id: payment_id })?;
            if started.terms.payer_wallet_id != payer {
                return Err(DomainError::Validation(format!("payment {payment_id} is not on wallet {payer}")).into());
            }
            let events = payment.decide(&PaymentCommand::Expire { now: uow.now() })?;
            uow.record::<Payment>(payment_id, events);
            uow.handle::<Wallet>(payer, &WalletCommand::ReleaseHold { hold_id: payment_id }).await?;
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::memory::{MemoryEventStore, MemoryReadStore};
    use crate::money::{Currency, Money};
    use crate::payment::PaymentTerms;
    use crate::ports::{EventFeed, EventStore, WalletViews};
    use crate::projection::project;

    use chrono::{TimeZone, Utc};
    use std::sync::Arc;

    struct World {
        store: Arc<MemoryEventStore>,
        read: MemoryReadStore,
        clock: Arc<ManualClock>,
        commands: CommandService,
        payer: Uuid,
        merchant: Uuid,
        projected: u64,
    }

    impl World {
        async fn new() -> World {
            let store = Arc::new(MemoryEventStore::default());
            let clock = Arc::new(ManualClock::at(Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap()));
            let commands = CommandService::new(store.clone(), clock.clone());
            let (payer, merchant) = (Uuid::now_v7(), Uuid::now_v7());
            let world = World { store, read: MemoryReadStore::default(), clock, commands, payer, merchant, projected: 0 };
            for (id, owner) in [(payer, "alice"), (merchant, "shop")] {
                let create = WalletCommand::open_personal(id, owner, Money::from_minor(10_000));
                world.wallet(id, create).await;
                world.wallet(id, WalletCommand::Activate).await;
            }
            world
        }

        async fn wallet(&self, id: Uuid, command: WalletCommand) {
            self.commands.execute(&CommandContext::new("t", "t"), async |uow| uow.handle::<Wallet>(id, &command).await).await.unwrap();
        }

        /// Authorises `minor` from the payer, expiring after `expiry`, as the API does.
        async fn authorize(&self, minor: i64, expiry: Duration) -> Uuid {
            let id = Uuid::now_v7();
            let terms = PaymentTerms {
                payment_id: id,
                payer_wallet_id: self.payer,
                merchant_wallet_id: self.merchant,
                amount: Money::from_minor(minor),
                currency: Currency::egp(),
                reference: "ORDER".into(),
                description: None,
                expires_at: self.clock.now() + expiry,
                authorized_by: "alice".into(),
            };
            self.commands
                .execute(&CommandContext::new("alice", "t"), async |uow| {
                    uow.handle::<Payment>(id, &PaymentCommand::Authorize(terms.clone())).await?;
                    let hold = WalletCommand::PlaceHold { hold_id: id, amount: terms.amount, currency: Currency::egp() };
                    uow.handle::<Wallet>(self.payer, &hold).await
                })
                .await
                .unwrap();
            id
        }

        async fn project(&mut self) {
            for (position, envelope) in self.store.read_after(self.projected, 1_000).await.unwrap() {
                project(&self.read, &envelope).await.unwrap();
                self.projected = position;
            }
        }

        async fn status(&self, id: Uuid) -> String {
            crate::projection::read_view::<PaymentView>(&self.read, id).await.unwrap().unwrap().status
        }

        async fn held(&self) -> (i64, i64) {
            let view = self.read.wallet(self.payer).await.unwrap().unwrap();
            (view.balance.minor(), view.held.minor())
        }
    }

    #[tokio::test]
    async fn a_sweep_expires_only_the_due_authorisations_and_releases_their_holds() {
        let mut world = World::new().await;
        let soon = world.authorize(1_000, Duration::hours(1)).await;
        let later = world.authorize(2_000, Duration::days(7)).await;
        world.project().await;
        assert_eq!(world.held().await, (10_000, 3_000));
        assert_eq!(expire_due(&world.commands, &world.read, 100).await.unwrap(), Sweep::default(), "nothing is due yet");

        world.clock.advance(Duration::hours(1));
        let sweep = expire_due(&world.commands, &world.read, 100).await.unwrap();
        assert_eq!(sweep, Sweep { expired: vec![soon], ..Sweep::default() }, "due at exactly its expiry");
        world.project().await;
        assert_eq!((world.status(soon).await.as_str(), world.status(later).await.as_str()), ("EXPIRED", "AUTHORIZED"));
        assert_eq!(world.held().await, (10_000, 2_000), "the balance never moved; the expired hold is available again");
        let events = world.store.load(&crate::envelope::stream_id("payment", soon), 0).await.unwrap();
        assert_eq!(events.last().unwrap().metadata.user_id, SWEEPER);

        assert_eq!(expire_due(&world.commands, &world.read, 100).await.unwrap(), Sweep::default(), "expired once");
    }

    #[tokio::test]
    async fn a_payment_captured_or_voided_behind_a_lagging_list_is_skipped() {
        let mut world = World::new().await;
        let captured = world.authorize(1_000, Duration::minutes(1)).await;
        let voided = world.authorize(1_000, Duration::minutes(1)).await;
        world.project().await;
        world
            .commands
            .execute(&CommandContext::new("shop", "t"), async |uow| {
                let now = uow.now();
                uow.handle::<Payment>(captured, &PaymentCommand::Capture { amount: None, now }).await?;
                uow.handle::<Payment>(voided, &PaymentCommand::Void).await?;
                uow.handle::<Wallet>(world.payer, &WalletCommand::ReleaseHold { hold_id: voided }).await
            })
            .await
            .unwrap();
        // The read model has not seen these yet: both are still listed as due.
        world.clock.advance(Duration::minutes(5));
        let sweep = expire_due(&world.commands, &world.read, 100).await.unwrap();
        assert_eq!((sweep.expired.len(), sweep.skipped, sweep.failed), (0, 2, 0));
    }

    #[tokio::test]
    async fn a_sweep_stops_at_its_maximum_and_the_next_one_carries_on() {
        let mut world = World::new().await;
        let mut ids = vec![];
        for _ in 0..5 {
            ids.push(world.authorize(100, Duration::seconds(1)).await);
        }
        world.project().await;
        world.clock.advance(Duration::seconds(2));
        let first = expire_due(&world.commands, &world.read, 3).await.unwrap();
        assert_eq!((first.expired.len(), first.more), (3, true));
        world.project().await;
        let second = expire_due(&world.commands, &world.read, 3).await.unwrap();
        assert_eq!((second.expired.len(), second.more), (2, false));
        world.project().await;
        assert_eq!(world.held().await, (10_000, 0));
    }

    #[test]
    fn the_expiry_period_is_bounded() {
        assert_eq!(expiry_period(604_800).unwrap(), DEFAULT_PAYMENT_EXPIRY);
        assert!(expiry_period(0).is_err());
        assert!(expiry_period(366 * 24 * 3600).is_err());
    }
}
