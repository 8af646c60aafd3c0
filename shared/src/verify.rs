//! The books, checked (`healthpay verify`), and the read models rebuilt in place
//! (`healthpay rebuild`): both from the event store, through the ports, so they run
//! the same on every backend (SQLite and DynamoDB from the CLI, DynamoDB from the
//! scheduled `verify` function, memory in tests).
//!
//! # What `verify` checks
//!
//! Every stream is read whole, in version order; nothing else is trusted.
//!
//! 1. **Streams**: versions run 1, 2, 3 … without a gap; every event decodes.
//! 2. **Balances**: each wallet's `balanceAfter` / `heldAfter` equal the running sum
//!    of its movements and holds; no balance, hold or available amount
//!    (`balance − held`) is ever negative.
//! 3. **Money is conserved**, per currency:
//!
//!    ```text
//!    brought in − taken out = in wallets + in flight + in suspense
//!    ```
//!
//!    Every commit is one atomic write, and all the events of a commit carry its
//!    `commandId`. A wallet movement committed together with an event of a
//!    transfer, prescription claim, payment or insurance claim is one leg of that
//!    aggregate's movement of money *between wallets*; any other movement crosses the
//!    ledger's edge: a credit is money **brought in** (deposits — the initial balance
//!    among them —, cashback, refunds from outside …), a debit money **taken out**
//!    (withdrawals, fees, payments to outside …). **In wallets** is the sum of the
//!    balances (holds are part of them: a payment's authorisation sets money aside
//!    in its payer's balance, it does not move it). **In flight** is what the sagas
//!    have taken and not yet given: a transfer whose source was debited and whose
//!    destination was not credited (`source-debited`, `credit-rejected`); a claim's
//!    copayment and covered amount once debited, until the pharmacy is credited or
//!    they are refunded. **In suspense** is what a failed saga could not give back
//!    (a transfer's `refundInSuspense`, a claim's `refundsInSuspense`: the wallet had
//!    been closed). In flight and in suspense are read from the sagas' *states*;
//!    each saga's own commits must also have taken exactly that from the wallets
//!    (payments and insurance claims: exactly nothing), so a drift is pinned on the
//!    aggregate that caused it.
//! 4. **Holds**: each open hold on a wallet belongs to an `AUTHORIZED` payment of the
//!    same amount, and each authorised payment has its hold.
//! 5. **Sagas end**: a transfer or claim still under way is younger than
//!    [`SAGA_TIMEOUT`]; an authorisation still open is not past its expiry by more.
//! 6. **Read models** (unless only the events are checked): each aggregate's rows —
//!    wallet view and history, transfer view, payment, card (its spend per month),
//!    claim and insurance-claim documents — equal what the projectors make of its
//!    events, re-projected here into a [`MemoryReadStore`]. A read model that is
//!    merely behind (the projector has not got there yet) is compared at its own
//!    version and counted as behind; it is a finding only when it has been behind
//!    for longer than [`Options::projection_lag`].
//!
//! # Rebuilding while the ledger runs
//!
//! [`rebuild`] rewrites, aggregate by aggregate, every row that differs from the
//! fold of the aggregate's events, through the same version-guarded writes the
//! projectors use, so it is safe with the server (or the projector functions)
//! running: it reads the row, then the events (so the events are at least as new
//! as the row), and replaces the row only if it is still at the version it read —
//! otherwise a projector moved it meanwhile and the aggregate is simply done again.
//! It never puts an older state over a newer one, never loses an event (a
//! projector whose write it pre-empted finds its event already applied), and
//! readers see the old row or the corrected one, never none. Each aggregate is
//! re-read after its repair until it reads right (at most [`REBUILD_ATTEMPTS`]
//! times). History lines are written once and then never replaced by the ports
//! (that is what makes a redelivery harmless), so an *altered* line is replaced
//! through the backend's [`HistoryRepair`], which only the rebuild tool uses.

use crate::aggregate::Aggregate;
use crate::claim::{Claim, ClaimOutcome, ClaimStep};
use crate::envelope::EventEnvelope;
use crate::fraud::alert::FraudAlert;
use crate::insurance_claim::InsuranceClaim;
use crate::medcard::MedCard;
use crate::memory::MemoryReadStore;
use crate::payment::{Payment, PaymentStatus};
use crate::ports::{Document, EventFeed, EventStore, ReadStore, Saved, StoreError, TransactionItem, TransferView, WalletView};
use crate::projection::claim::{ClaimView, InsuranceClaimView};
use crate::projection::fraud::FraudAlertView;
use crate::projection::medcard::CardView;
use crate::projection::payment::PaymentView;
use crate::projection::DocumentView;
use crate::transfer::{Transfer, TransferStage};
use crate::wallet::{Wallet, WalletEvent};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use uuid::Uuid;

/// How long a saga may take before `verify` reports it: the longest run the state
/// machines allow (every task timing out on every retry, a claim compensating
/// three steps) is under an hour and a half (see the test that computes it from the
/// ASL definitions), plus room for a start delayed on the event bus.
pub const SAGA_TIMEOUT: Duration = Duration::hours(2);

/// How long a read model may stay behind its events before `verify` reports it.
pub const PROJECTION_LAG: Duration = Duration::minutes(5);

/// How many times [`rebuild`] repairs an aggregate that keeps changing under it.
pub const REBUILD_ATTEMPTS: usize = 5;

/// The read models, by the aggregate type they follow (`--projection` names).
pub const PROJECTIONS: [&str; 7] = [Wallet::TYPE, Transfer::TYPE, Payment::TYPE, MedCard::TYPE, Claim::TYPE, InsuranceClaim::TYPE, FraudAlert::TYPE];

#[derive(Debug, Clone)]
pub struct Options {
    /// What "now" is for saga and projection ages.
    pub now: DateTime<Utc>,
    pub saga_timeout: Duration,
    pub projection_lag: Duration,
}

impl Options {
    pub fn at(now: DateTime<Utc>) -> Self {
        Options { now, saga_timeout: SAGA_TIMEOUT, projection_lag: PROJECTION_LAG }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// A stream with a gap or an event that does not decode.
    Stream,
    /// A `balanceAfter` or `heldAfter` that is not the running sum.
    Balance,
    /// A balance, hold or available amount below zero.
    Negative,
    /// Money not accounted for.
    Conservation,
    /// A hold without its authorised payment, or the reverse.
    Hold,
    /// A saga or authorisation past its time.
    Saga,
    /// A read model that differs from the fold of its events.
    ReadModel,
    /// A read model behind its events for too long.
    Lag,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Stream => "stream",
            Check::Balance => "balance",
            Check::Negative => "negative",
            Check::Conservation => "conservation",
            Check::Hold => "hold",
            Check::Saga => "saga",
            Check::ReadModel => "read-model",
            Check::Lag => "lag",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// The stream (`wallet#<id>`), or `books#<currency>` for a whole currency.
    pub aggregate: String,
    pub check: Check,
    pub detail: String,
}

/// One currency's books, in minor units.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Books {
    pub brought_in: i128,
    pub taken_out: i128,
    /// By transaction type (`deposit`, `withdrawal` …).
    pub brought_in_by_type: BTreeMap<String, i128>,
    pub taken_out_by_type: BTreeMap<String, i128>,
    /// The sum of the balances, holds included.
    pub in_wallets: i128,
    /// The part of the balances held for authorised payments.
    pub held: i128,
    pub in_flight: i128,
    pub in_suspense: i128,
    pub wallets: u64,
    pub sagas_in_flight: u64,
    pub refunds_in_suspense: u64,
}

impl Books {
    /// `brought in − taken out − (in wallets + in flight + in suspense)`: zero when
    /// every minor unit is accounted for.
    pub fn unaccounted(&self) -> i128 {
        self.brought_in - self.taken_out - (self.in_wallets + self.in_flight + self.in_suspense)
    }
}

/// How the stored read models compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadModels {
    pub compared: u64,
    pub drifted: u64,
    /// Behind their events (the projector had not got there yet).
    pub behind: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub streams: u64,
    pub events: u64,
    /// Streams by aggregate type.
    pub aggregates: BTreeMap<String, u64>,
    /// By currency.
    pub books: BTreeMap<String, Books>,
    /// Sagas (transfers, claims) and authorisations still open.
    pub open_sagas: u64,
    /// `None` when only the events were checked.
    pub read_models: Option<ReadModels>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Every aggregate (or currency) with a finding, each once.
    pub fn drifted(&self) -> BTreeSet<&str> {
        self.findings.iter().map(|f| f.aggregate.as_str()).collect()
    }

    /// The report as text, for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let kinds: Vec<String> = self.aggregates.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        out.push_str(&format!("{} events in {} streams ({})\n", self.events, self.streams, kinds.join(", ")));
        for (currency, books) in &self.books {
            out.push_str(&format!("books in {currency}:\n"));
            let by_type = |types: &BTreeMap<String, i128>| match types.is_empty() {
                true => String::new(),
                false => format!("  ({})", types.iter().map(|(t, v)| format!("{t} {}", amount(*v))).collect::<Vec<_>>().join(", ")),
            };
            out.push_str(&format!("  brought in   {:>18}{}\n", amount(books.brought_in), by_type(&books.brought_in_by_type)));
            out.push_str(&format!("  taken out    {:>18}{}\n", amount(books.taken_out), by_type(&books.taken_out_by_type)));
            out.push_str(&format!(
                "  in wallets   {:>18}  ({} wallets; {} of it held for authorised payments)\n",
                amount(books.in_wallets),
                books.wallets,
                amount(books.held)
            ));
            out.push_str(&format!("  in flight    {:>18}  ({} sagas)\n", amount(books.in_flight), books.sagas_in_flight));
            out.push_str(&format!("  in suspense  {:>18}  ({} refunds)\n", amount(books.in_suspense), books.refunds_in_suspense));
            match books.unaccounted() {
                0 => out.push_str("  brought in − taken out = in wallets + in flight + in suspense: balanced\n"),
                off => out.push_str(&format!("  UNBALANCED by {}\n", amount(off))),
            }
        }
        out.push_str(&format!("sagas and authorisations still open: {}\n", self.open_sagas));
        match &self.read_models {
            Some(r) => out.push_str(&format!("read models: {} aggregates compared, {} drifted, {} behind their events\n", r.compared, r.drifted, r.behind)),
            None => out.push_str("read models: not compared (events only)\n"),
        }
        if self.findings.is_empty() {
            out.push_str("CLEAN: the books balance and every read model matches its events\n");
        } else {
            out.push_str(&format!("{} FINDINGS on {} aggregates:\n", self.findings.len(), self.drifted().len()));
            for f in &self.findings {
                out.push_str(&format!("  {} [{}] {}\n", f.aggregate, f.check.as_str(), f.detail));
            }
        }
        out
    }
}

/// Minor units as `1234.56`.
pub fn amount(minor: i128) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

// ------------------------------------------------------------------ the books

/// A wallet as its events say.
#[derive(Default)]
struct WalletFacts {
    currency: String,
    balance: i128,
    held: i128,
    /// Open holds: hold (payment) id → amount.
    holds: BTreeMap<Uuid, i128>,
}

/// One wallet movement: + credit, − debit.
struct Leg {
    wallet: Uuid,
    amount: i128,
    transaction_type: String,
}

/// A money-moving aggregate's state, as far as the books are concerned.
#[derive(Default)]
struct SagaFacts {
    currency: Option<String>,
    /// The claim's card and patient, to find its currency.
    card: Option<Uuid>,
    patient: Option<Uuid>,
    in_flight: i128,
    in_suspense: i128,
    suspended_refunds: u64,
}

/// Folds streams one at a time (in any order) and checks the books at the end.
pub struct Auditor {
    options: Options,
    report: Report,
    wallets: HashMap<Uuid, WalletFacts>,
    /// Wallet movements by the command (commit) that made them.
    legs: HashMap<Uuid, Vec<Leg>>,
    /// The money-moving aggregate each command belongs to.
    owners: HashMap<Uuid, String>,
    sagas: BTreeMap<String, SagaFacts>,
    cards: HashMap<Uuid, String>,
    /// Payment id → (stream, payer, amount, authorised).
    payments: HashMap<Uuid, (String, Uuid, i128, bool)>,
}

impl Auditor {
    pub fn new(options: Options) -> Self {
        Auditor {
            options,
            report: Report::default(),
            wallets: HashMap::new(),
            legs: HashMap::new(),
            owners: HashMap::new(),
            sagas: BTreeMap::new(),
            cards: HashMap::new(),
            payments: HashMap::new(),
        }
    }

    fn find(&mut self, aggregate: &str, check: Check, detail: String) {
        self.report.findings.push(Finding { aggregate: aggregate.to_string(), check, detail });
    }

    /// One whole stream, in version order.
    pub fn stream(&mut self, events: &[EventEnvelope]) {
        let Some(first) = events.first() else { return };
        let stream = first.stream_id();
        self.report.streams += 1;
        self.report.events += events.len() as u64;
        *self.report.aggregates.entry(first.aggregate_type.clone()).or_default() += 1;
        if let Some((at, e)) = events.iter().enumerate().find(|(i, e)| e.version != *i as u64 + 1 || e.stream_id() != stream) {
            self.find(&stream, Check::Stream, format!("event {} is v{} of {}, expected v{} of {stream}", e.event_id, e.version, e.stream_id(), at + 1));
            return;
        }
        match first.aggregate_type.as_str() {
            Wallet::TYPE => self.wallet(&stream, events),
            Transfer::TYPE => {
                let Some(transfer) = self.fold::<Transfer>(&stream, events) else { return };
                let Some(t) = transfer.started() else { return };
                let mut facts = SagaFacts { currency: Some(t.terms.currency.to_string()), ..SagaFacts::default() };
                match (t.stage, &t.refund_in_suspense) {
                    (TransferStage::SourceDebited | TransferStage::CreditRejected, _) => facts.in_flight = t.terms.amount.minor() as i128,
                    (TransferStage::Failed, Some(suspense)) => {
                        facts.in_suspense = suspense.amount.minor() as i128;
                        facts.suspended_refunds = 1;
                    }
                    _ => {}
                }
                self.saga_ends(&stream, events, matches!(t.stage, TransferStage::Completed | TransferStage::Failed));
                self.saga(&stream, events, facts);
            }
            Claim::TYPE => {
                let Some(claim) = self.fold::<Claim>(&stream, events) else { return };
                let Some(c) = claim.started() else { return };
                let mut facts = SagaFacts { card: Some(c.terms.medcard_id), patient: Some(c.terms.patient_wallet_id), ..SagaFacts::default() };
                if let (Some(pricing), true) = (&c.pricing, c.step < ClaimStep::PharmacyCredited) {
                    if c.step >= ClaimStep::CopaymentDebited {
                        facts.in_flight += pricing.priced.copayment.minor() as i128;
                    }
                    if c.step >= ClaimStep::SponsorDebited {
                        facts.in_flight += pricing.priced.covered.minor() as i128;
                    }
                }
                facts.in_suspense = c.refunds_in_suspense.iter().map(|r| r.amount.minor() as i128).sum();
                facts.suspended_refunds = c.refunds_in_suspense.len() as u64;
                self.saga_ends(&stream, events, c.outcome != ClaimOutcome::Pending);
                self.saga(&stream, events, facts);
            }
            Payment::TYPE => {
                let Some(payment) = self.fold::<Payment>(&stream, events) else { return };
                let Some(p) = payment.started() else { return };
                let authorized = p.status == PaymentStatus::Authorized;
                if authorized {
                    self.report.open_sagas += 1;
                    if self.options.now > p.terms.expires_at + self.options.saga_timeout {
                        let detail = format!(
                            "still AUTHORIZED, {} past its expiry at {}: the expiry sweep has not released it",
                            age(self.options.now - p.terms.expires_at),
                            p.terms.expires_at.to_rfc3339()
                        );
                        self.find(&stream, Check::Saga, detail);
                    }
                }
                self.payments.insert(p.terms.payment_id, (stream.clone(), p.terms.payer_wallet_id, p.terms.amount.minor() as i128, authorized));
                self.saga(&stream, events, SagaFacts { currency: Some(p.terms.currency.to_string()), ..SagaFacts::default() });
            }
            InsuranceClaim::TYPE => {
                let Some(claim) = self.fold::<InsuranceClaim>(&stream, events) else { return };
                let currency = claim.submitted().map(|c| c.terms.currency.to_string());
                self.saga(&stream, events, SagaFacts { currency, ..SagaFacts::default() });
            }
            MedCard::TYPE => {
                if let Some(MedCard::Issued(card)) = self.fold::<MedCard>(&stream, events) {
                    self.cards.insert(card.terms.medcard_id, card.terms.currency.to_string());
                }
            }
            // Prescriptions (and any other aggregate) move no money.
            _ => {}
        }
    }

    /// The aggregate's state; `None` (and a finding) if an event does not decode.
    fn fold<A: Aggregate>(&mut self, stream: &str, events: &[EventEnvelope]) -> Option<A> {
        let mut state = A::default();
        for e in events {
            match e.decode::<A::Event>() {
                Ok(event) => state = state.apply(&event),
                Err(error) => {
                    self.find(stream, Check::Stream, format!("v{} {} does not decode: {error}", e.version, e.event_type));
                    return None;
                }
            }
        }
        Some(state)
    }

    fn saga(&mut self, stream: &str, events: &[EventEnvelope], facts: SagaFacts) {
        for e in events {
            self.owners.insert(e.metadata.command_id, stream.to_string());
        }
        self.sagas.insert(stream.to_string(), facts);
    }

    /// A saga still under way must be younger than its timeout.
    fn saga_ends(&mut self, stream: &str, events: &[EventEnvelope], ended: bool) {
        if ended {
            return;
        }
        self.report.open_sagas += 1;
        let started = events[0].occurred_at;
        let age_now = self.options.now - started;
        if age_now > self.options.saga_timeout {
            let last = events.last().map_or("", |e| e.event_type.as_str());
            let detail = format!(
                "still under way after {} (started {}, last event {last}); sagas end within {}",
                age(age_now),
                started.to_rfc3339(),
                age(self.options.saga_timeout)
            );
            self.find(stream, Check::Saga, detail);
        }
    }

    fn wallet(&mut self, stream: &str, events: &[EventEnvelope]) {
        let id = events[0].aggregate_id;
        let mut facts = WalletFacts::default();
        let mut reported = BTreeSet::new();
        for e in events {
            let event: WalletEvent = match e.decode() {
                Ok(event) => event,
                Err(error) => {
                    self.find(stream, Check::Stream, format!("v{} {} does not decode: {error}", e.version, e.event_type));
                    break;
                }
            };
            let (expected, said, what) = match &event {
                WalletEvent::WalletCreated { currency, .. } => {
                    facts.currency = currency.to_string();
                    continue;
                }
                WalletEvent::WalletCredited { movement, balance_after } => {
                    facts.balance += movement.amount.minor() as i128;
                    let kind = json_name(&movement.transaction_type);
                    self.legs.entry(e.metadata.command_id).or_default().push(Leg {
                        wallet: id,
                        amount: movement.amount.minor() as i128,
                        transaction_type: kind,
                    });
                    (facts.balance, balance_after.minor() as i128, "balanceAfter")
                }
                WalletEvent::WalletDebited { movement, balance_after } => {
                    facts.balance -= movement.amount.minor() as i128;
                    let kind = json_name(&movement.transaction_type);
                    self.legs.entry(e.metadata.command_id).or_default().push(Leg {
                        wallet: id,
                        amount: -(movement.amount.minor() as i128),
                        transaction_type: kind,
                    });
                    (facts.balance, balance_after.minor() as i128, "balanceAfter")
                }
                WalletEvent::WalletHoldPlaced { hold_id, amount: placed, held_after } => {
                    facts.held += placed.minor() as i128;
                    if facts.holds.insert(*hold_id, placed.minor() as i128).is_some() {
                        self.find(stream, Check::Hold, format!("v{}: hold {hold_id} placed while already open", e.version));
                    }
                    (facts.held, held_after.minor() as i128, "heldAfter")
                }
                WalletEvent::WalletHoldReleased { hold_id, amount: released, held_after } => {
                    facts.held -= released.minor() as i128;
                    match facts.holds.remove(hold_id) {
                        Some(open) if open == released.minor() as i128 => {}
                        Some(open) => self.find(stream, Check::Hold, format!("v{}: hold {hold_id} of {} released as {released}", e.version, amount(open))),
                        None => self.find(stream, Check::Hold, format!("v{}: hold {hold_id} released but not open", e.version)),
                    }
                    (facts.held, held_after.minor() as i128, "heldAfter")
                }
                _ => continue,
            };
            if expected != said && reported.insert(what) {
                self.find(
                    stream,
                    Check::Balance,
                    format!("v{} {}: {what} says {}, its movements add up to {}", e.version, e.event_type, amount(said), amount(expected)),
                );
            }
            for (name, value) in [("balance", facts.balance), ("held", facts.held), ("available", facts.balance - facts.held)] {
                if value < 0 && reported.insert(name) {
                    self.find(stream, Check::Negative, format!("v{}: the {name} amount is {}", e.version, amount(value)));
                }
            }
        }
        self.wallets.insert(id, facts);
    }

    /// The books: each commit's legs to their saga or across the edge, then every
    /// currency balanced, every saga's legs equal to what its state holds, every
    /// hold matched with its authorisation.
    pub fn finish(mut self) -> Report {
        let mut taken_by_saga: HashMap<String, i128> = HashMap::new();
        for (command, legs) in std::mem::take(&mut self.legs) {
            match self.owners.get(&command) {
                Some(saga) => *taken_by_saga.entry(saga.clone()).or_default() -= legs.iter().map(|l| l.amount).sum::<i128>(),
                None => {
                    for leg in legs {
                        let currency = self.wallets.get(&leg.wallet).map(|w| w.currency.clone()).unwrap_or_default();
                        let books = self.report.books.entry(currency).or_default();
                        if leg.amount >= 0 {
                            books.brought_in += leg.amount;
                            *books.brought_in_by_type.entry(leg.transaction_type).or_default() += leg.amount;
                        } else {
                            books.taken_out -= leg.amount;
                            *books.taken_out_by_type.entry(leg.transaction_type).or_default() -= leg.amount;
                        }
                    }
                }
            }
        }
        for (stream, facts) in std::mem::take(&mut self.sagas) {
            let taken = taken_by_saga.get(&stream).copied().unwrap_or(0);
            let holds = facts.in_flight + facts.in_suspense;
            if taken != holds {
                let detail = format!(
                    "its commits took {} net from wallets, but its state accounts for {} ({} in flight, {} in suspense)",
                    amount(taken),
                    amount(holds),
                    amount(facts.in_flight),
                    amount(facts.in_suspense)
                );
                self.find(&stream, Check::Conservation, detail);
            }
            if holds == 0 {
                continue;
            }
            let currency = facts
                .currency
                .clone()
                .or_else(|| facts.card.and_then(|c| self.cards.get(&c).cloned()))
                .or_else(|| facts.patient.and_then(|w| self.wallets.get(&w).map(|w| w.currency.clone())))
                .unwrap_or_default();
            let books = self.report.books.entry(currency).or_default();
            books.in_flight += facts.in_flight;
            books.in_suspense += facts.in_suspense;
            books.sagas_in_flight += u64::from(facts.in_flight != 0);
            books.refunds_in_suspense += facts.suspended_refunds;
        }
        let mut wallet_ids: Vec<Uuid> = self.wallets.keys().copied().collect();
        wallet_ids.sort();
        for id in wallet_ids {
            let facts = &self.wallets[&id];
            let books = self.report.books.entry(facts.currency.clone()).or_default();
            books.in_wallets += facts.balance;
            books.held += facts.held;
            books.wallets += 1;
            let holds: Vec<(Uuid, i128)> = facts.holds.iter().map(|(h, a)| (*h, *a)).collect();
            for (hold, held) in holds {
                match self.payments.get(&hold) {
                    Some((_, payer, authorised, true)) if *payer == id && *authorised == held => {}
                    Some((payment, _, authorised, still)) => {
                        let detail = format!(
                            "hold {hold} of {} is open, but {payment} is {} for {}",
                            amount(held),
                            if *still { "authorised on another wallet or" } else { "no longer authorised" },
                            amount(*authorised)
                        );
                        self.find(&format!("wallet#{id}"), Check::Hold, detail);
                    }
                    None => self.find(&format!("wallet#{id}"), Check::Hold, format!("hold {hold} of {} is open with no payment", amount(held))),
                }
            }
        }
        let mut missing: Vec<(String, Uuid, Uuid)> = vec![];
        for (payment_id, (stream, payer, _, authorized)) in &self.payments {
            if *authorized && !self.wallets.get(payer).is_some_and(|w| w.holds.contains_key(payment_id)) {
                missing.push((stream.clone(), *payer, *payment_id));
            }
        }
        missing.sort();
        for (stream, payer, _) in missing {
            self.find(&stream, Check::Hold, format!("AUTHORIZED, but wallet {payer} holds nothing for it"));
        }
        let unbalanced: Vec<(String, i128)> = self.report.books.iter().map(|(c, b)| (c.clone(), b.unaccounted())).filter(|(_, off)| *off != 0).collect();
        for (currency, off) in unbalanced {
            let detail = format!("brought in − taken out differs from in wallets + in flight + in suspense by {}", amount(off));
            self.find(&format!("books#{currency}"), Check::Conservation, detail);
        }
        self.report.findings.sort();
        self.report
    }
}

/// `3 h 20 min`, `45 s`.
fn age(d: Duration) -> String {
    let s = d.num_seconds();
    if s >= 3600 {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// The wire name of a unit enum (`TransferIn` → `transfer_in`).
fn json_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

// ------------------------------------------------------------------ read models

/// The rows the read side keeps for one aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// No read model follows this aggregate type.
    None,
    Wallet {
        view: Option<WalletView>,
        /// By version.
        history: BTreeMap<u64, TransactionItem>,
    },
    Transfer(Option<TransferView>),
    Document {
        kind: &'static str,
        document: Option<Document>,
    },
}

impl Rows {
    /// The aggregate version the view was computed from (0: no view).
    fn version(&self) -> u64 {
        match self {
            Rows::None => 0,
            Rows::Wallet { view, .. } => view.as_ref().map_or(0, |v| v.version),
            Rows::Transfer(view) => view.as_ref().map_or(0, |v| v.version),
            Rows::Document { document, .. } => document.as_ref().map_or(0, |d| d.version),
        }
    }
}

/// The document kind that follows an aggregate type.
fn document_kind(aggregate_type: &str) -> Option<&'static str> {
    match aggregate_type {
        Payment::TYPE => Some(PaymentView::KIND),
        MedCard::TYPE => Some(CardView::KIND),
        Claim::TYPE => Some(ClaimView::KIND),
        InsuranceClaim::TYPE => Some(InsuranceClaimView::KIND),
        FraudAlert::TYPE => Some(FraudAlertView::KIND),
        _ => None,
    }
}

/// `wallet#<uuid>` → (`wallet`, uuid).
pub fn parse_stream_id(stream_id: &str) -> Option<(&str, Uuid)> {
    let (kind, id) = stream_id.split_once('#')?;
    Some((kind, id.parse().ok()?))
}

/// What `read` holds for the aggregate.
pub async fn stored_rows(read: &dyn ReadStore, aggregate_type: &str, id: Uuid) -> Result<Rows, StoreError> {
    Ok(match aggregate_type {
        Wallet::TYPE => {
            let view = read.wallet(id).await?;
            let history = read.transactions(id, usize::MAX, None).await?.into_iter().map(|item| (item.version, item)).collect();
            Rows::Wallet { view, history }
        }
        Transfer::TYPE => Rows::Transfer(read.transfer(id).await?),
        other => match document_kind(other) {
            Some(kind) => Rows::Document { kind, document: read.document(kind, id).await? },
            None => Rows::None,
        },
    })
}

/// What the projectors make of `events` (a stream's first events, in order): they
/// are projected into a fresh in-memory read store. An event no projector can read
/// stops there, as it stops the live projector.
pub async fn expected_rows(aggregate_type: &str, id: Uuid, events: &[EventEnvelope]) -> Rows {
    let scratch = MemoryReadStore::default();
    for e in events {
        if crate::projection::project(&scratch, e).await.is_err() {
            break;
        }
    }
    stored_rows(&scratch, aggregate_type, id).await.expect("the memory store does not fail")
}

/// `field: stored X, events say Y; …` for the fields that differ.
fn differences<T: Serialize>(stored: &T, expected: &T) -> String {
    let (a, b) = (serde_json::to_value(stored).unwrap_or_default(), serde_json::to_value(expected).unwrap_or_default());
    let short = |v: Option<&serde_json::Value>| {
        let text = v.map_or_else(|| "absent".to_string(), |v| v.to_string());
        if text.chars().count() > 80 {
            format!("{}…", text.chars().take(80).collect::<String>())
        } else {
            text
        }
    };
    match (&a, &b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .filter(|k| x.get(*k) != y.get(*k))
                .map(|k| format!("{k}: stored {}, events say {}", short(x.get(k)), short(y.get(k))))
                .collect::<Vec<_>>()
                .join("; ")
        }
        _ => format!("stored {}, events say {}", short(Some(&a)), short(Some(&b))),
    }
}

fn document_differences(stored: &Document, expected: &Document) -> String {
    let mut parts = vec![];
    if stored.version != expected.version {
        parts.push(format!("version: stored {}, events say {}", stored.version, expected.version));
    }
    if stored.body != expected.body {
        parts.push(differences(&stored.body, &expected.body));
    }
    let listings = |d: &Document| d.listings.iter().map(|l| format!("{}@{}", l.list, l.sort_key)).collect::<BTreeSet<_>>();
    if listings(stored) != listings(expected) {
        parts.push(format!("listings: stored {:?}, events say {:?}", listings(stored), listings(expected)));
    }
    parts.join("; ")
}

fn same_document(a: &Document, b: &Document) -> bool {
    document_differences(a, b).is_empty()
}

/// How one aggregate's rows compared.
#[derive(Debug, Default)]
pub struct Compared {
    pub findings: Vec<Finding>,
    pub behind: bool,
}

/// Compares the stored rows of one aggregate with its events. The view is
/// compared at its own version (a view behind its events is lag, not drift); the
/// history line of every movement up to the view's version must be there, and
/// every stored line must be its movement's.
pub async fn compare_rows(stream: &str, events: &[EventEnvelope], stored: &Rows, options: &Options) -> Compared {
    let mut out = Compared::default();
    let Some((kind, id)) = parse_stream_id(stream) else { return out };
    let mut find = |check, detail: String| out.findings.push(Finding { aggregate: stream.to_string(), check, detail });
    if matches!(stored, Rows::None) {
        return out;
    }
    let last = events.last().map_or(0, |e| e.version);
    let have = stored.version();
    if have > last {
        find(Check::ReadModel, format!("the read model is at v{have}, the events end at v{last}"));
    }
    if have < last {
        out.behind = true;
        if let Some(next) = events.iter().find(|e| e.version == have + 1) {
            if options.now - next.occurred_at > options.projection_lag {
                find(
                    Check::Lag,
                    format!(
                        "the read model is at v{have}, {} events behind since {} (v{} {})",
                        last - have,
                        next.occurred_at.to_rfc3339(),
                        next.version,
                        next.event_type
                    ),
                );
            }
        }
    }
    let upto: Vec<EventEnvelope> = events.iter().filter(|e| e.version <= have).cloned().collect();
    let expected = expected_rows(kind, id, &upto).await;
    match (stored, &expected) {
        (Rows::Wallet { view, history }, Rows::Wallet { view: expected_view, .. }) => {
            if let Some(v) = view {
                for (name, value) in [("balance", v.balance.minor()), ("held", v.held.minor()), ("available", v.balance.minor() - v.held.minor())] {
                    if value < 0 {
                        find(Check::Negative, format!("the wallet view's {name} is {}", amount(value as i128)));
                    }
                }
            }
            match (view, expected_view) {
                (Some(v), Some(e)) if v != e => find(Check::ReadModel, format!("wallet view: {}", differences(v, e))),
                (None, Some(_)) | (Some(_), None) if have <= last => find(Check::ReadModel, "wallet view: stored without its events, or missing".into()),
                _ => {}
            }
            let lines = movement_lines(events);
            for (version, line) in history {
                match lines.get(version) {
                    Some(expected) if expected == line => {}
                    Some(expected) => find(Check::ReadModel, format!("history line v{version}: {}", differences(line, expected))),
                    None => find(Check::ReadModel, format!("history line v{version} is no movement of the wallet")),
                }
            }
            let missing: Vec<u64> = lines.keys().filter(|v| **v <= have && !history.contains_key(v)).copied().collect();
            if !missing.is_empty() {
                find(Check::ReadModel, format!("history lines missing for versions {missing:?}"));
            }
        }
        (Rows::Transfer(view), Rows::Transfer(expected)) if view != expected => match (view, expected) {
            (Some(v), Some(e)) => find(Check::ReadModel, format!("transfer view: {}", differences(v, e))),
            _ => find(Check::ReadModel, "transfer view: stored without its events, or missing".into()),
        },
        (Rows::Document { kind, document }, Rows::Document { document: expected, .. }) => match (document, expected) {
            (Some(d), Some(e)) if !same_document(d, e) => find(Check::ReadModel, format!("{kind} document: {}", document_differences(d, e))),
            (Some(_), None) | (None, Some(_)) => find(Check::ReadModel, format!("{kind} document: stored without its events, or missing")),
            _ => {}
        },
        _ => {}
    }
    out
}

/// The history line of each movement of a wallet's events, by version.
fn movement_lines(events: &[EventEnvelope]) -> BTreeMap<u64, TransactionItem> {
    events
        .iter()
        .filter_map(|e| e.decode::<WalletEvent>().ok().and_then(|event| crate::projection::wallet::transaction_item(e, &event)).map(|item| (e.version, item)))
        .collect()
}

// ------------------------------------------------------------------ running it

/// Every stream of an embedded store, in the order of their first events, read
/// from its global feed; `progress` is told how many events each page held.
pub async fn streams_in_feed(feed: &dyn EventFeed, progress: &(dyn Fn(u64) + Send + Sync)) -> Result<Vec<String>, StoreError> {
    let mut seen = std::collections::HashSet::new();
    let mut streams = vec![];
    let mut position = 0;
    loop {
        let page = feed.read_after(position, 2_048).await?;
        let Some((last, _)) = page.last() else { return Ok(streams) };
        position = *last;
        progress(page.len() as u64);
        for (_, e) in page {
            let id = e.stream_id();
            if seen.insert(id.clone()) {
                streams.push(id);
            }
        }
    }
}

/// Runs `work` on every stream, at most `concurrency` at once, handing each
/// result to `sink` as it comes (in no particular order).
async fn for_each_stream<T, F, Fut>(streams: Vec<String>, concurrency: usize, work: F, mut sink: impl FnMut(T)) -> Result<(), StoreError>
where
    T: Send + 'static,
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let mut pending = streams.into_iter();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.len() < concurrency.max(1) {
            match pending.next() {
                Some(stream) => {
                    tasks.spawn(work(stream));
                }
                None => break,
            }
        }
        match tasks.join_next().await {
            None => return Ok(()),
            Some(joined) => sink(joined.map_err(|e| StoreError::new(format!("a stream's task failed: {e}")))??),
        }
    }
}

/// Checks the books of `streams` and, with `read`, their read models.
/// `progress` is told each stream's event count as it is done.
pub async fn verify(
    events: Arc<dyn EventStore>,
    read: Option<Arc<dyn ReadStore>>,
    streams: Vec<String>,
    options: Options,
    concurrency: usize,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Report, StoreError> {
    let mut auditor = Auditor::new(options.clone());
    let mut read_models = read.as_ref().map(|_| ReadModels::default());
    let mut findings = vec![];
    let work = |stream: String| {
        let (events, read, options) = (events.clone(), read.clone(), options.clone());
        async move {
            // The rows first, then the events: the events are then at least as new.
            let stored = match (&read, parse_stream_id(&stream)) {
                (Some(read), Some((kind, id))) => Some(stored_rows(read.as_ref(), kind, id).await?),
                _ => None,
            };
            let loaded = events.load(&stream, 0).await?;
            let compared = match &stored {
                Some(rows) if !matches!(rows, Rows::None) => Some(compare_rows(&stream, &loaded, rows, &options).await),
                _ => None,
            };
            Ok((loaded, compared))
        }
    };
    for_each_stream(streams, concurrency, work, |(loaded, compared): (Vec<EventEnvelope>, Option<Compared>)| {
        progress(loaded.len() as u64);
        auditor.stream(&loaded);
        if let (Some(summary), Some(compared)) = (read_models.as_mut(), compared) {
            summary.compared += 1;
            summary.behind += u64::from(compared.behind);
            summary.drifted += u64::from(compared.findings.iter().any(|f| f.check == Check::ReadModel || f.check == Check::Negative));
            findings.extend(compared.findings);
        }
    })
    .await?;
    let mut report = auditor.finish();
    report.read_models = read_models;
    report.findings.extend(findings);
    report.findings.sort();
    Ok(report)
}

/// Replaces history lines, which the ports write only once: the rebuild tool's
/// backend-specific way to correct a line altered behind the ledger's back.
#[async_trait]
pub trait HistoryRepair: Send + Sync {
    /// Writes `item` over whatever line the wallet has at its version.
    async fn replace_transaction(&self, item: &TransactionItem) -> Result<(), StoreError>;
    /// Deletes the wallet's line at `version`.
    async fn remove_transaction(&self, wallet_id: Uuid, version: u64) -> Result<(), StoreError>;
}

/// What [`rebuild`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rebuilt {
    pub streams: u64,
    pub events: u64,
    /// Rows rewritten, by kind (`wallet view`, `history line`, `transfer view`, a document kind).
    pub rewritten: BTreeMap<String, u64>,
    /// Aggregates with at least one row rewritten.
    pub repaired: u64,
    /// What could not be put right.
    pub left: Vec<Finding>,
}

impl Rebuilt {
    pub fn rows(&self) -> u64 {
        self.rewritten.values().sum()
    }
}

/// Rebuilds the read models of `streams` in place (see the module documentation
/// for why this is safe while the ledger runs).
pub async fn rebuild(
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    repair: Option<Arc<dyn HistoryRepair>>,
    streams: Vec<String>,
    concurrency: usize,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Rebuilt, StoreError> {
    let mut total = Rebuilt::default();
    let work = |stream: String| {
        let (events, read, repair) = (events.clone(), read.clone(), repair.clone());
        async move { rebuild_stream(events.as_ref(), read.as_ref(), repair.as_deref(), &stream).await }
    };
    for_each_stream(streams, concurrency, work, |one: Rebuilt| {
        progress(one.events);
        total.streams += 1;
        total.events += one.events;
        total.repaired += one.repaired;
        for (kind, n) in one.rewritten {
            *total.rewritten.entry(kind).or_default() += n;
        }
        total.left.extend(one.left);
    })
    .await?;
    total.left.sort();
    Ok(total)
}

/// Rebuilds one aggregate's rows: rewrites what differs from its events, then
/// reads again, until they read right.
pub async fn rebuild_stream(events: &dyn EventStore, read: &dyn ReadStore, repair: Option<&dyn HistoryRepair>, stream: &str) -> Result<Rebuilt, StoreError> {
    let mut out = Rebuilt { streams: 1, ..Rebuilt::default() };
    let Some((kind, id)) = parse_stream_id(stream) else { return Ok(out) };
    let wrote = |out: &mut Rebuilt, what: &str| *out.rewritten.entry(what.to_string()).or_default() += 1;
    for _ in 0..REBUILD_ATTEMPTS {
        let stored = stored_rows(read, kind, id).await?;
        let loaded = events.load(stream, 0).await?;
        out.events = loaded.len() as u64;
        let expected = expected_rows(kind, id, &loaded).await;
        let mut changed = false;
        let mut left = vec![];
        let mut leave = |detail: String| left.push(Finding { aggregate: stream.to_string(), check: Check::ReadModel, detail });
        match (&stored, &expected) {
            (Rows::Wallet { view, history }, Rows::Wallet { view: expected_view, history: expected_history }) => {
                // History first, as the projector writes it.
                for (version, line) in expected_history {
                    match history.get(version) {
                        None => {
                            read.record_transaction(line).await?;
                            wrote(&mut out, "history line");
                            changed = true;
                        }
                        Some(stored_line) if stored_line != line => match repair {
                            Some(repair) => {
                                repair.replace_transaction(line).await?;
                                wrote(&mut out, "history line");
                                changed = true;
                            }
                            None => leave(format!("history line v{version} differs and this backend cannot replace it: {}", differences(stored_line, line))),
                        },
                        Some(_) => {}
                    }
                }
                for version in history.keys().filter(|v| !expected_history.contains_key(v)) {
                    match repair {
                        Some(repair) => {
                            repair.remove_transaction(id, *version).await?;
                            wrote(&mut out, "history line");
                            changed = true;
                        }
                        None => leave(format!("history line v{version} is no movement of the wallet and this backend cannot remove it")),
                    }
                }
                match (view, expected_view) {
                    (_, Some(e)) if view.as_ref() != Some(e) => {
                        changed = true;
                        if read.save_wallet(e, view.as_ref().map_or(0, |v| v.version)).await? == Saved::Written {
                            wrote(&mut out, "wallet view");
                        }
                    }
                    (Some(_), None) => leave("a wallet view is stored but no event makes one".into()),
                    _ => {}
                }
            }
            (Rows::Transfer(view), Rows::Transfer(expected)) => match (view, expected) {
                (_, Some(e)) if view.as_ref() != Some(e) => {
                    changed = true;
                    if read.save_transfer(e, view.as_ref().map_or(0, |v| v.version)).await? == Saved::Written {
                        wrote(&mut out, "transfer view");
                    }
                }
                (Some(_), None) => leave("a transfer view is stored but no event makes one".into()),
                _ => {}
            },
            (Rows::Document { kind, document }, Rows::Document { document: expected, .. }) => match (document, expected) {
                (_, Some(e)) if !document.as_ref().is_some_and(|d| same_document(d, e)) => {
                    changed = true;
                    if read.save_document(kind, e, document.as_ref()).await? == Saved::Written {
                        wrote(&mut out, &format!("{kind} document"));
                    }
                }
                (Some(_), None) => leave(format!("a {kind} document is stored but no event makes one")),
                _ => {}
            },
            _ => {}
        }
        if !changed {
            out.left = left;
            out.repaired = u64::from(out.rows() > 0);
            return Ok(out);
        }
    }
    out.repaired = u64::from(out.rows() > 0);
    out.left.push(Finding {
        aggregate: stream.to_string(),
        check: Check::ReadModel,
        detail: format!("still changing after {REBUILD_ATTEMPTS} repairs (a busy aggregate): run the rebuild again"),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Authorization, Call, Caller, CardIssue, CardOrder, InsuranceClaimFiling, Ledger, PrescriptionFiling, TransferOrder, WalletOpening};
    use crate::claim::ClaimItem;
    use crate::clock::{Clock, ManualClock};
    use crate::command::{CommandContext, CommandService};
    use crate::ids::*;
    use crate::medcard::Beneficiary;
    use crate::memory::MemoryEventStore;
    use crate::money::{Currency, Money};
    use crate::ports::{Checkpoints, DocumentViews, TransactionHistory, TransferViews, WalletViews};
    use crate::saga::claim::{ClaimSteps, StepInput as ClaimStep_};
    use crate::saga::transfer::{StepInput, TransferSteps};
    use crate::transfer::{TransferCommand, TransferTerms};
    use crate::wallet::{CreditType, DebitType, KycLevel, Movement, WalletCommand, WalletType};

    fn egp(major: i64) -> Money {
        Money::from_minor(major * 100)
    }

    fn call<R>() -> Call<'static, R> {
        Call::once(CommandContext::new("ops", "test"))
    }

    /// A ledger that has done a bit of everything, and its read side fed.
    struct World {
        events: Arc<MemoryEventStore>,
        read: Arc<MemoryReadStore>,
        clock: Arc<ManualClock>,
        commands: Arc<CommandService>,
        ledger: Ledger,
        ops: Caller,
        alice: WalletId,
        bob: WalletId,
        completed: Uuid,
        in_flight: Uuid,
        claim: Uuid,
    }

    impl World {
        async fn wallet(&self, funds: i64, active: bool) -> WalletId {
            let opening =
                WalletOpening { wallet_type: WalletType::Personal, currency: Currency::egp(), kyc_level: KycLevel::Full, initial_balance: egp(funds) };
            let created = self.ledger.create_wallet(&self.ops, opening, &call()).await.unwrap().done().unwrap();
            let id = WalletId(created.state.open().unwrap().id);
            if active {
                self.ledger.on_wallet(&self.ops, id, WalletCommand::Activate, &call()).await.unwrap();
            }
            id
        }

        async fn transfer(&self, from: WalletId, to: WalletId, major: i64) -> StepInput {
            let order = TransferOrder { source: from, destination: to, amount: egp(major), reference: "T".into(), description: None };
            let id = self.ledger.create_transfer(&self.ops, order, &call()).await.unwrap().done().unwrap();
            StepInput { transfer_id: id.uuid(), correlation_id: None }
        }

        async fn project_all(&self) {
            let done = self.read.checkpoint("test").await.unwrap();
            let feed = self.events.read_after(done, usize::MAX).await.unwrap();
            for (_, e) in &feed {
                crate::projection::project(self.read.as_ref(), e).await.unwrap();
            }
            let head = feed.last().map_or(done, |(p, _)| *p);
            self.read.save_checkpoint("test", head).await.unwrap();
        }

        async fn verify_at(&self, now: DateTime<Utc>) -> Report {
            let streams = streams_in_feed(self.events.as_ref(), &|_| {}).await.unwrap();
            verify(self.events.clone(), Some(self.read.clone()), streams, Options::at(now), 4, &|_| {}).await.unwrap()
        }

        async fn verify(&self) -> Report {
            self.verify_at(self.clock.now()).await
        }

        async fn rebuild(&self) -> Rebuilt {
            let streams = streams_in_feed(self.events.as_ref(), &|_| {}).await.unwrap();
            rebuild(self.events.clone(), self.read.clone(), None, streams, 4, &|_| {}).await.unwrap()
        }
    }

    async fn world() -> World {
        let events = Arc::new(MemoryEventStore::default());
        let clock = Arc::new(ManualClock::at("2026-11-21T10:00:00Z".parse().unwrap()));
        let commands = Arc::new(CommandService::new(events.clone(), clock.clone()));
        let ledger = Ledger::new(commands.clone(), Duration::hours(1));
        let ops = Caller::new("ops", ["admin", "pharmacy", "insurer"]).unwrap();
        let mut w = World {
            events,
            read: Arc::new(MemoryReadStore::default()),
            clock,
            commands: commands.clone(),
            ledger,
            ops,
            alice: WalletId(Uuid::nil()),
            bob: WalletId(Uuid::nil()),
            completed: Uuid::nil(),
            in_flight: Uuid::nil(),
            claim: Uuid::nil(),
        };
        let (alice, bob, merchant, sponsor, pharmacy, patient, pending) = (
            w.wallet(1_000, true).await,
            w.wallet(0, true).await,
            w.wallet(0, true).await,
            w.wallet(10_000, true).await,
            w.wallet(0, true).await,
            w.wallet(500, true).await,
            w.wallet(0, false).await,
        );
        (w.alice, w.bob) = (alice, bob);
        let deposit = Movement { amount: egp(200), transaction_type: CreditType::Deposit, reference: "D".into(), description: None, currency: None };
        w.ledger.on_wallet(&w.ops, bob, WalletCommand::Credit(deposit), &call()).await.unwrap();
        let withdrawal = Movement { amount: egp(50), transaction_type: DebitType::Withdrawal, reference: "W".into(), description: None, currency: None };
        w.ledger.on_wallet(&w.ops, alice, WalletCommand::Debit(withdrawal), &call()).await.unwrap();

        let steps = TransferSteps::new(commands.clone());
        let completed = w.transfer(alice, bob, 100).await;
        steps.debit_source(&completed).await.unwrap();
        steps.credit_destination(&completed).await.unwrap();
        let refunded = w.transfer(alice, pending, 30).await;
        steps.debit_source(&refunded).await.unwrap();
        steps.credit_destination(&refunded).await.unwrap();
        assert_eq!(steps.compensate(&refunded).await.unwrap().status, "FAILED");
        let in_flight = w.transfer(alice, bob, 20).await;
        steps.debit_source(&in_flight).await.unwrap();
        (w.completed, w.in_flight) = (completed.transfer_id, in_flight.transfer_id);

        let authorize = |amount| Authorization { payer: bob, merchant, amount: egp(amount), reference: "P".into(), description: None };
        let paid = w.ledger.authorize_payment(&w.ops, authorize(80), &call()).await.unwrap().done().unwrap();
        let paid = PaymentId(paid.state.started().unwrap().terms.payment_id);
        w.ledger.capture_payment(&w.ops, paid, Some(egp(60)), &call()).await.unwrap();
        w.ledger.refund_payment(&w.ops, paid, Some(egp(10)), "broken".into(), &call()).await.unwrap();
        w.ledger.authorize_payment(&w.ops, authorize(15), &call()).await.unwrap();

        let issue = CardIssue {
            holder_id: "ops".into(),
            sponsor_wallet: sponsor,
            plan_name: "Gold".into(),
            coverage_percent: 80,
            monthly_limit: egp(1_000),
            expires_at: "2030-01-01T00:00:00Z".parse().unwrap(),
        };
        let card = w.ledger.issue_medcard(&w.ops, issue, &call()).await.unwrap().done().unwrap();
        let card = MedCardId(card.state.issued().unwrap().terms.medcard_id);
        w.ledger.on_medcard(&w.ops, card, CardOrder::Activate, &call()).await.unwrap();
        let beneficiary = Beneficiary { beneficiary_id: Uuid::now_v7(), name: "Self".into(), relationship: "self".into() };
        w.ledger.on_medcard(&w.ops, card, CardOrder::AddBeneficiary(beneficiary.clone()), &call()).await.unwrap();
        let filing = PrescriptionFiling {
            medcard: card,
            beneficiary: BeneficiaryId(beneficiary.beneficiary_id),
            prescription_id: "RX-1".into(),
            pharmacy_wallet: pharmacy,
            patient_wallet: patient,
            items: vec![ClaimItem { drug_code: "A".into(), drug_name: "Drug A".into(), quantity: 2, unit_price: egp(50) }],
        };
        let claim = w.ledger.submit_prescription_claim(&w.ops, filing, &call()).await.unwrap().done().unwrap();
        let claim_steps = ClaimSteps::new(commands.clone());
        let input = ClaimStep_ { claim_id: claim.uuid(), correlation_id: None };
        for (_, function) in &crate::saga::claim::STEPS[..5] {
            claim_steps.run_step(function, &input).await.unwrap();
        }
        w.claim = claim.uuid();

        let filing = InsuranceClaimFiling { medcard: card, provider_wallet: pharmacy, amount: egp(40), description: "x-ray".into(), documents: vec![] };
        let insurance = w.ledger.submit_insurance_claim(&w.ops, filing, &call()).await.unwrap().done().unwrap();
        w.ledger.approve_insurance_claim(&w.ops, insurance, None, &call()).await.unwrap();
        w.project_all().await;
        w
    }

    #[tokio::test]
    async fn a_healthy_ledger_verifies_clean_and_its_books_balance() {
        let w = world().await;
        let report = w.verify().await;
        assert!(report.clean(), "{}", report.render());
        let books = &report.books["EGP"];
        let minor = |major: i128| major * 100;
        assert_eq!((books.brought_in, books.taken_out), (minor(1_000 + 10_000 + 500 + 200), minor(50)));
        assert_eq!(books.brought_in_by_type, BTreeMap::from([("deposit".to_string(), minor(11_700))]));
        assert_eq!(books.taken_out_by_type, BTreeMap::from([("withdrawal".to_string(), minor(50))]));
        assert_eq!((books.in_flight, books.in_suspense, books.held), (minor(20), 0, minor(15)), "one transfer debited, one authorisation open");
        assert_eq!(books.in_wallets, minor(11_700 - 50 - 20));
        assert_eq!((books.wallets, books.sagas_in_flight), (7, 1));
        assert_eq!(report.open_sagas, 2);
        let read = report.read_models.clone().unwrap();
        assert_eq!((read.drifted, read.behind), (0, 0));
        assert_eq!(read.compared, report.streams - report.aggregates["prescription"], "every aggregate with a read model");
        assert!(report.render().contains("CLEAN"), "{}", report.render());
        let rebuilt = w.rebuild().await;
        assert_eq!((rebuilt.rows(), rebuilt.repaired, rebuilt.left.len()), (0, 0, 0), "nothing to rebuild: {rebuilt:?}");
    }

    #[tokio::test]
    async fn read_models_changed_behind_the_ledgers_back_are_named_and_rebuild_puts_them_right() {
        let w = world().await;
        let mut view = w.read.wallet(w.bob.uuid()).await.unwrap().unwrap();
        view.balance = Money::from_minor(view.balance.minor() + 1_000_000);
        assert_eq!(w.read.save_wallet(&view, view.version).await.unwrap(), Saved::Written);
        let mut transfer = w.read.transfer(w.completed).await.unwrap().unwrap();
        transfer.status = "FAILED".into();
        w.read.save_transfer(&transfer, transfer.version).await.unwrap();
        let mut claim = w.read.document(ClaimView::KIND, w.claim).await.unwrap().unwrap();
        claim.body["coveredAmount"] = serde_json::json!(1);
        w.read.save_document(ClaimView::KIND, &claim, Some(&claim.clone())).await.unwrap();

        let report = w.verify().await;
        let named: Vec<&str> = report.drifted().into_iter().collect();
        let mut expected = vec![format!("claim#{}", w.claim), format!("transfer#{}", w.completed), format!("wallet#{}", w.bob)];
        expected.sort();
        assert_eq!(named, expected, "{}", report.render());
        assert!(report.findings.iter().all(|f| f.check == Check::ReadModel), "{}", report.render());
        assert_eq!(report.read_models.as_ref().unwrap().drifted, 3);
        let bob = report.findings.iter().find(|f| f.aggregate.starts_with("wallet#")).unwrap();
        assert!(bob.detail.contains("balance: stored"), "{}", bob.detail);
        assert!(report.books["EGP"].unaccounted() == 0, "the books are read from the events, not the read models");

        let rebuilt = w.rebuild().await;
        assert_eq!(rebuilt.repaired, 3, "{rebuilt:?}");
        assert_eq!(rebuilt.rows(), 3);
        assert!(rebuilt.left.is_empty(), "{:?}", rebuilt.left);
        let again = w.verify().await;
        assert!(again.clean(), "{}", again.render());
        assert_eq!(w.rebuild().await.rows(), 0);
    }

    #[tokio::test]
    async fn rebuild_fills_in_what_is_missing_and_the_live_projector_then_finds_it_done() {
        let w = world().await;
        let fresh = Arc::new(MemoryReadStore::default());
        let streams = streams_in_feed(w.events.as_ref(), &|_| {}).await.unwrap();
        let rebuilt = rebuild(w.events.clone(), fresh.clone(), None, streams.clone(), 2, &|_| {}).await.unwrap();
        assert_eq!(rebuilt.repaired, streams.len() as u64 - 1, "every aggregate but the prescription has rows");
        for (_, e) in w.events.read_after(0, usize::MAX).await.unwrap() {
            let done = crate::projection::project(fresh.as_ref(), &e).await.unwrap();
            assert!(matches!(done, crate::projection::Projected::Duplicate | crate::projection::Projected::Ignored), "{done:?}");
        }
        let report = verify(w.events.clone(), Some(fresh), streams, Options::at(w.clock.now()), 1, &|_| {}).await.unwrap();
        assert!(report.clean(), "{}", report.render());
    }

    #[tokio::test]
    async fn an_altered_history_line_is_reported_and_left_when_the_store_cannot_replace_it() {
        let w = world().await;
        let tampered = Arc::new(MemoryReadStore::default());
        let line = w.read.transactions(w.alice.uuid(), 1, None).await.unwrap().remove(0);
        let mut forged = line.clone();
        forged.amount = Money::from_minor(1);
        tampered.record_transaction(&forged).await.unwrap();
        for (_, e) in w.events.read_after(0, usize::MAX).await.unwrap() {
            crate::projection::project(tampered.as_ref(), &e).await.unwrap();
        }
        let streams = streams_in_feed(w.events.as_ref(), &|_| {}).await.unwrap();
        let report = verify(w.events.clone(), Some(tampered.clone()), streams.clone(), Options::at(w.clock.now()), 4, &|_| {}).await.unwrap();
        assert_eq!(report.drifted().into_iter().collect::<Vec<_>>(), vec![format!("wallet#{}", w.alice)]);
        assert!(report.findings[0].detail.starts_with(&format!("history line v{}: amount: stored 1, events say", line.version)), "{}", report.render());
        let rebuilt = rebuild(w.events.clone(), tampered, None, streams, 4, &|_| {}).await.unwrap();
        assert_eq!(rebuilt.rows(), 0);
        assert_eq!(rebuilt.left.len(), 1);
        assert!(rebuilt.left[0].detail.contains("cannot replace it"), "{:?}", rebuilt.left);
    }

    #[tokio::test]
    async fn a_read_model_behind_its_events_is_lag_until_it_has_been_behind_too_long() {
        let w = world().await;
        let deposit = Movement { amount: egp(1), transaction_type: CreditType::Cashback, reference: "C".into(), description: None, currency: None };
        w.ledger.on_wallet(&w.ops, w.bob, WalletCommand::Credit(deposit), &call()).await.unwrap();
        let report = w.verify().await;
        assert!(report.clean(), "{}", report.render());
        assert_eq!(report.read_models.as_ref().unwrap().behind, 1);
        assert_eq!(report.books["EGP"].brought_in_by_type["cashback"], 100);
        let later = w.verify_at(w.clock.now() + Duration::minutes(6)).await;
        let lag: Vec<&Finding> = later.findings.iter().filter(|f| f.check == Check::Lag).collect();
        assert_eq!(lag.len(), 1, "{}", later.render());
        assert_eq!(lag[0].aggregate, format!("wallet#{}", w.bob));
        w.project_all().await;
        assert!(w.verify_at(w.clock.now() + Duration::minutes(6)).await.findings.iter().all(|f| f.check != Check::Lag));
    }

    #[tokio::test]
    async fn sagas_past_their_timeout_and_authorisations_past_their_expiry_are_reported() {
        let w = world().await;
        let report = w.verify_at(w.clock.now() + Duration::hours(4)).await;
        let sagas: Vec<(&str, Check)> = report.findings.iter().map(|f| (f.aggregate.as_str(), f.check)).collect();
        assert_eq!(sagas.len(), 2, "{}", report.render());
        assert!(sagas.contains(&(format!("transfer#{}", w.in_flight).as_str(), Check::Saga)), "{}", report.render());
        assert!(report.findings.iter().any(|f| f.aggregate.starts_with("payment#") && f.detail.contains("still AUTHORIZED")), "{}", report.render());
    }

    #[tokio::test]
    async fn money_a_saga_took_but_does_not_account_for_is_pinned_on_it_and_unbalances_the_books() {
        let w = world().await;
        let (transfer, alice) = (Uuid::now_v7(), w.alice.uuid());
        let terms = TransferTerms {
            transfer_id: transfer,
            source_wallet_id: alice,
            destination_wallet_id: w.bob.uuid(),
            amount: egp(5),
            currency: Currency::egp(),
            reference: "T".into(),
            description: None,
            initiated_by: "ops".into(),
        };
        // A debit committed with the transfer's start, which records no debit.
        let debit = WalletCommand::Debit(Movement {
            amount: egp(5),
            transaction_type: DebitType::TransferOut,
            reference: "T".into(),
            description: None,
            currency: None,
        });
        w.commands
            .execute(&CommandContext::new("ops", "bug"), async |uow| {
                uow.handle::<Transfer>(transfer, &TransferCommand::Initiate(terms.clone())).await?;
                uow.handle::<Wallet>(alice, &debit).await
            })
            .await
            .unwrap();
        w.project_all().await;
        let report = w.verify().await;
        let named: BTreeSet<&str> = report.drifted();
        assert_eq!(named, BTreeSet::from([format!("transfer#{transfer}").as_str(), "books#EGP"]), "{}", report.render());
        assert!(report.findings.iter().all(|f| f.check == Check::Conservation));
        assert_eq!(report.books["EGP"].unaccounted(), 500);
        assert!(report.render().contains("UNBALANCED by 5.00"), "{}", report.render());
    }

    /// Appends hand-made wallet events (as a buggy writer could have).
    async fn forged_wallet(events: &[WalletEvent]) -> (Arc<MemoryEventStore>, Uuid) {
        let store = Arc::new(MemoryEventStore::default());
        let id = Uuid::now_v7();
        let envelopes: Vec<EventEnvelope> = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let (event_type, data) = crate::envelope::encode_event(event);
                EventEnvelope {
                    event_id: Uuid::now_v7(),
                    aggregate_type: Wallet::TYPE.into(),
                    aggregate_id: id,
                    version: i as u64 + 1,
                    event_type,
                    schema_version: 1,
                    occurred_at: "2026-11-21T10:00:00Z".parse().unwrap(),
                    data,
                    metadata: crate::envelope::EventMetadata {
                        command_id: Uuid::now_v7(),
                        correlation_id: "c".into(),
                        causation_id: None,
                        user_id: "u".into(),
                        idempotency_key: None,
                    },
                }
            })
            .collect();
        let append = crate::ports::StreamAppend { stream_id: crate::envelope::stream_id(Wallet::TYPE, id), expected_version: 0, events: envelopes };
        store.append(crate::ports::Commit { streams: vec![append], idempotency: None }).await.unwrap();
        (store, id)
    }

    #[tokio::test]
    async fn a_balance_that_does_not_add_up_or_goes_below_zero_is_reported() {
        let created = WalletEvent::WalletCreated {
            wallet_id: Uuid::nil(),
            owner_id: "u".into(),
            wallet_type: WalletType::Personal,
            currency: Currency::egp(),
            kyc_level: KycLevel::Basic,
        };
        let credit = |minor, after| WalletEvent::WalletCredited {
            movement: Movement {
                amount: Money::from_minor(minor),
                transaction_type: CreditType::Deposit,
                reference: "D".into(),
                description: None,
                currency: None,
            },
            balance_after: Money::from_minor(after),
        };
        let debit = |minor, after| WalletEvent::WalletDebited {
            movement: Movement { amount: Money::from_minor(minor), transaction_type: DebitType::Fee, reference: "F".into(), description: None, currency: None },
            balance_after: Money::from_minor(after),
        };
        let (store, id) = forged_wallet(&[created, credit(100, 100), credit(50, 170), debit(500, -350)]).await;
        let streams = streams_in_feed(store.as_ref(), &|_| {}).await.unwrap();
        let report = verify(store, None, streams, Options::at(Utc::now()), 1, &|_| {}).await.unwrap();
        let checks: Vec<(Check, &str)> = report.findings.iter().map(|f| (f.check, f.detail.as_str())).collect();
        assert_eq!(
            checks,
            vec![
                (Check::Balance, "v3 WalletCredited: balanceAfter says 1.70, its movements add up to 1.50"),
                (Check::Negative, "v4: the available amount is -3.50"),
                (Check::Negative, "v4: the balance amount is -3.50"),
            ],
            "{}",
            report.render()
        );
        assert!(report.findings.iter().all(|f| f.aggregate == format!("wallet#{id}")));
        assert!(report.read_models.is_none());
    }

    /// The longest a state machine can run: every task times out on every attempt
    /// and waits out every retry interval; a claim compensates at most three steps.
    fn worst_case_seconds(definition: &str) -> f64 {
        let machine: serde_json::Value = serde_json::from_str(definition).unwrap();
        let mut total = 0.0;
        for (name, state) in machine["States"].as_object().unwrap() {
            if state["Type"] != "Task" {
                continue;
            }
            let timeout = state["TimeoutSeconds"].as_f64().expect("every task has a timeout");
            let mut task = timeout;
            for retry in state["Retry"].as_array().into_iter().flatten() {
                let (mut interval, rate) = (retry["IntervalSeconds"].as_f64().unwrap_or(1.0), retry["BackoffRate"].as_f64().unwrap_or(2.0));
                let cap = retry["MaxDelaySeconds"].as_f64().unwrap_or(f64::MAX);
                for _ in 0..retry["MaxAttempts"].as_u64().unwrap_or(3) {
                    task += interval.min(cap) + timeout;
                    interval *= rate;
                }
            }
            total += if name.starts_with("Compensate") { task * 3.0 } else { task };
        }
        total
    }

    #[test]
    fn the_saga_timeout_covers_the_longest_run_of_either_state_machine() {
        for definition in [crate::saga::transfer::DEFINITION, crate::saga::claim::DEFINITION] {
            let worst = worst_case_seconds(definition);
            assert!(worst < SAGA_TIMEOUT.num_seconds() as f64 * 0.8, "{worst} s leaves too little room under {SAGA_TIMEOUT}");
            assert!(worst > 600.0, "{worst} s: the computation lost the retries");
        }
    }

    #[test]
    fn amounts_render_in_major_units() {
        assert_eq!(
            (amount(0), amount(5), amount(-12_345), amount(100_000_000_000_000_000)),
            ("0.00".into(), "0.05".into(), "-123.45".into(), "1000000000000000.00".into())
        );
    }
}
