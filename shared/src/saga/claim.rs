//! The prescription-claim saga's steps. Like the transfer saga's, each one is
//! idempotent: it reads how far the claim got from the [`Claim`] aggregate and does
//! only what is left, and every money or limit move commits atomically together
//! with the claim event that records it. Retries, redeliveries and a resumed
//! execution therefore never move money, or use the card's limit, twice.
//!
//! ```text
//! price ─▶ reserve coverage ─▶ debit copayment ─▶ debit sponsor ─▶ credit pharmacy = APPROVED
//!   │            │                    │                 │                │
//!   └─ refused ──┴─▶ REJECTED         └──── refused: compensate, one undo per pass ┘
//!                        ▲   release reservation ◀─ refund copayment ◀─ refund sponsor
//!                        └──────────────┘
//! ```
//!
//! Pricing and reserving are separate steps on purpose. The price is decided on what
//! was left of the month's limit when the claim was priced; the reservation is
//! decided on the card as it is when it commits, so of two claims that together
//! exceed the limit the second one is refused `LIMIT_EXCEEDED` instead of being
//! quietly re-priced to whatever the first one left.
//!
//! The commit that rejects a claim also releases its prescription, so a prescription
//! whose claim was rejected may be claimed again; an approved claim keeps it.
//!
//! A refund its wallet refuses (closed since it was debited) can never land, so the
//! compensation does not retry it: the refund is recorded in suspense on the claim
//! and compensation goes on, so the claim still ends `REJECTED`.

use super::asl;
pub use super::steps::{LocalSteps, SagaStarter, StepError, StepOutcome};
use super::steps::{SagaSteps, Trigger};
use crate::aggregate::Aggregate;
use crate::claim::{price, Claim, ClaimCommand, ClaimEvent, ClaimOutcome, ClaimStep, Compensation, Pricing, Refund, StartedClaim};
use crate::command::{CommandContext, CommandError, CommandService, Failure, UnitOfWork};
use crate::envelope::{stream_id, EventEnvelope};
use crate::error::DomainError;
use crate::medcard::{IssuedCard, MedCard, MedCardCommand, Month};
use crate::money::Money;
use crate::ports::EventStore;
use crate::prescription::{self, Prescription, PrescriptionCommand};
use crate::wallet::{CreditType, DebitType, Movement, Wallet, WalletCommand};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// The ASL definition, as deployed by `template.yaml`.
pub const DEFINITION: &str = include_str!("../../../statemachines/claim.asl.json");
pub const STATE_MACHINE: &str = "claim";

/// Each Task's `DefinitionSubstitutions` key, and the step's local function name.
pub const STEPS: [(&str, &str); 6] = [
    ("PriceFunctionArn", "claim-price"),
    ("ReserveCoverageFunctionArn", "claim-reserve-coverage"),
    ("DebitCopaymentFunctionArn", "claim-debit-copayment"),
    ("DebitSponsorFunctionArn", "claim-debit-sponsor"),
    ("CreditPharmacyFunctionArn", "claim-credit-pharmacy"),
    ("CompensateFunctionArn", "claim-compensate"),
];

/// What every step receives (the rest of the execution state is ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepInput {
    pub claim_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

pub struct ClaimSteps {
    commands: Arc<CommandService>,
}

const SAGA_USER: &str = "saga:claim";

impl ClaimSteps {
    pub fn new(commands: Arc<CommandService>) -> Self {
        ClaimSteps { commands }
    }

    fn context(input: &StepInput, step: &str) -> CommandContext {
        let mut ctx = CommandContext::new(SAGA_USER, input.correlation_id.clone().unwrap_or_else(|| input.claim_id.to_string()));
        ctx.causation_id = Some(format!("claim:{}:{step}", input.claim_id));
        ctx
    }

    /// Validates the card and prices the claim against what is left of the limit of
    /// the month the claim was submitted in, or rejects the claim with the card's
    /// refusal (`CARD_NOT_ACTIVE`, `CARD_EXPIRED`, `BENEFICIARY_NOT_COVERED`,
    /// `LIMIT_EXCEEDED` when nothing is left): nothing was done, nothing to undo.
    pub async fn price(&self, input: &StepInput) -> Result<StepOutcome, StepError> {
        let month = Month::of(submitted_at(self.commands.store().as_ref(), input.claim_id).await?);
        self.forward(input, Forward::Price { month }).await
    }

    /// Reserves exactly the priced covered amount on the card, or rejects the claim
    /// with the card's refusal (`LIMIT_EXCEEDED` when less is left by now).
    pub async fn reserve_coverage(&self, input: &StepInput) -> Result<StepOutcome, StepError> {
        self.forward(input, Forward::ReserveCoverage).await
    }

    /// Takes the copayment from the patient's wallet, or records why it was refused
    /// (compensation then releases the reservation).
    pub async fn debit_copayment(&self, input: &StepInput) -> Result<StepOutcome, StepError> {
        self.forward(input, Forward::DebitCopayment).await
    }

    /// Takes the covered amount from the card's sponsor wallet, or records why it was
    /// refused (compensation then refunds the copayment and releases the reservation).
    pub async fn debit_sponsor(&self, input: &StepInput) -> Result<StepOutcome, StepError> {
        self.forward(input, Forward::DebitSponsor).await
    }

    /// Gives the pharmacy the total, confirms the card's reservation and approves the
    /// claim, all in one commit; or records why the pharmacy's wallet refused it
    /// (compensation then undoes every earlier step).
    pub async fn credit_pharmacy(&self, input: &StepInput) -> Result<StepOutcome, StepError> {
        self.forward(input, Forward::CreditPharmacy).await
    }

    /// Runs a forward step in one commit: if the claim is where the step starts, the
    /// step's move and the claim event recording it (the step done, or `Fail` with
    /// the refusal); otherwise the step was done already and nothing changes.
    async fn forward(&self, input: &StepInput, step: Forward) -> Result<StepOutcome, StepError> {
        let id = input.claim_id;
        let outcome = self
            .commands
            .execute(&Self::context(input, step.name()), async move |uow| {
                let claim = load_started(uow, id).await?;
                if !due(&claim, step.from()) {
                    return Ok(outcome_of(&claim));
                }
                let next = step.act(uow, &claim).await?;
                Ok(outcome_of(&record_claim(uow, id, &next).await?))
            })
            .await?;
        Ok(outcome)
    }

    /// Undoes the newest step still done, together with the claim event recording it:
    /// refunds the sponsor, else refunds the copayment, else releases the reservation
    /// (which rejects the claim). Refunds land even on a wallet suspended meanwhile;
    /// one its wallet refuses (closed meanwhile) is recorded in suspense instead.
    /// A claim whose step kept failing is failed `INTERNAL` first (rejected at once
    /// if nothing was reserved yet). A decided claim is left as it is. The outcome
    /// is `PENDING` while something is left to undo: the state machine runs it again.
    pub async fn compensate(&self, input: &StepInput) -> Result<StepOutcome, StepError> {
        let id = input.claim_id;
        let outcome = self
            .commands
            .execute(&Self::context(input, "compensate"), async move |uow| {
                let mut claim = load_started(uow, id).await?;
                if claim.outcome != ClaimOutcome::Pending {
                    return Ok(outcome_of(&claim));
                }
                if !claim.is_compensating() {
                    // A step kept failing: the claim fails here, with what was done still to undo.
                    claim = record_claim(uow, id, &ClaimCommand::Fail { reason: "INTERNAL".into() }).await?;
                }
                let Some(undo) = claim.next_compensation() else { return Ok(outcome_of(&claim)) };
                let pricing = pricing_of(&claim)?;
                let card = card_of(uow, &claim).await?;
                let next = match undo {
                    Compensation::RefundSponsor => {
                        let wallet_id = card.terms.sponsor_wallet_id;
                        match Move::refund(&claim, &card, pricing.priced.covered, "coverage").run(uow, wallet_id).await? {
                            Ok(()) => ClaimCommand::RecordSponsorRefunded,
                            Err(refusal) => suspend(&claim, Refund::Sponsor, wallet_id, &refusal),
                        }
                    }
                    Compensation::RefundCopayment => {
                        let wallet_id = claim.terms.patient_wallet_id;
                        match Move::refund(&claim, &card, pricing.priced.copayment, "copayment").run(uow, wallet_id).await? {
                            Ok(()) => ClaimCommand::RecordCopaymentRefunded,
                            Err(refusal) => suspend(&claim, Refund::Copayment, wallet_id, &refusal),
                        }
                    }
                    Compensation::ReleaseReservation => {
                        uow.handle::<MedCard>(claim.terms.medcard_id, &MedCardCommand::ReleaseReservation { claim_id: id }).await?;
                        ClaimCommand::RecordReservationReleased
                    }
                };
                Ok(outcome_of(&record_claim(uow, id, &next).await?))
            })
            .await?;
        Ok(outcome)
    }

    /// Runs the step a local Task names (its function name after substitution).
    pub async fn run_step(&self, function: &str, input: &StepInput) -> Result<StepOutcome, StepError> {
        match function {
            "claim-price" => self.price(input).await,
            "claim-reserve-coverage" => self.reserve_coverage(input).await,
            "claim-debit-copayment" => self.debit_copayment(input).await,
            "claim-debit-sponsor" => self.debit_sponsor(input).await,
            "claim-credit-pharmacy" => self.credit_pharmacy(input).await,
            "claim-compensate" => self.compensate(input).await,
            other => Err(StepError { error_name: "UnknownFunction", message: format!("no claim step is called {other}") }),
        }
    }
}

#[async_trait]
impl SagaSteps for ClaimSteps {
    type Input = StepInput;
    const INPUT_SHAPE: &'static str = "{\"claimId\": …}";

    async fn run_step(&self, function: &str, input: &StepInput) -> Result<StepOutcome, StepError> {
        ClaimSteps::run_step(self, function, input).await
    }
}

/// The claim saga's forward steps, in order.
#[derive(Debug, Clone, Copy)]
enum Forward {
    /// Priced against the limit of the month the claim was submitted in.
    Price {
        month: Month,
    },
    ReserveCoverage,
    DebitCopayment,
    DebitSponsor,
    CreditPharmacy,
}

impl Forward {
    fn name(self) -> &'static str {
        match self {
            Forward::Price { .. } => "price",
            Forward::ReserveCoverage => "reserve-coverage",
            Forward::DebitCopayment => "debit-copayment",
            Forward::DebitSponsor => "debit-sponsor",
            Forward::CreditPharmacy => "credit-pharmacy",
        }
    }

    /// Where the claim must be for the step to run.
    fn from(self) -> ClaimStep {
        match self {
            Forward::Price { .. } => ClaimStep::Submitted,
            Forward::ReserveCoverage => ClaimStep::Priced,
            Forward::DebitCopayment => ClaimStep::CoverageReserved,
            Forward::DebitSponsor => ClaimStep::CopaymentDebited,
            Forward::CreditPharmacy => ClaimStep::SponsorDebited,
        }
    }

    /// Does the step's move in `uow` and says what to record on the claim: the step
    /// done, or `Fail` with the refusal that stopped it (nothing moved then).
    async fn act(self, uow: &mut UnitOfWork<'_>, claim: &StartedClaim) -> Result<ClaimCommand, Failure> {
        let terms = &claim.terms;
        let done = match self {
            Forward::Price { month } => {
                // Loaded, not peeked: a price (or a refusal such as CARD_NOT_ACTIVE) must
                // not rest on a stale copy, so the commit checks the card's version. The
                // reservation step decides the limit again on the card as it is then.
                let card: MedCard = uow.load(terms.medcard_id).await?;
                let priced = match card.issued() {
                    None => Err(DomainError::NotFound { kind: "medcard", id: terms.medcard_id }),
                    Some(card) => card
                        .ensure_covers(terms.beneficiary_id, uow.now())
                        .and_then(|()| price(&terms.items, card.terms.coverage_percent, card.remaining(month)))
                        .map(|priced| (priced, card.terms.coverage_percent)),
                };
                priced.map(|(priced, coverage_percent)| ClaimCommand::RecordPriced { priced, coverage_percent, month })
            }
            Forward::ReserveCoverage => {
                let pricing = pricing_of(claim)?;
                let card: MedCard = uow.load(terms.medcard_id).await?;
                let reserve = MedCardCommand::Reserve {
                    claim_id: terms.claim_id,
                    beneficiary_id: terms.beneficiary_id,
                    month: pricing.month,
                    amount: pricing.priced.covered,
                    now: uow.now(),
                };
                card.decide(&reserve).map(|events| {
                    uow.record::<MedCard>(terms.medcard_id, events);
                    ClaimCommand::RecordCoverageReserved
                })
            }
            Forward::DebitCopayment => {
                let (pricing, card) = (pricing_of(claim)?, card_of(uow, claim).await?);
                let debit = Move::debit(claim, &card, pricing.priced.copayment, "Copayment");
                debit.run(uow, terms.patient_wallet_id).await?.map(|()| ClaimCommand::RecordCopaymentDebited)
            }
            Forward::DebitSponsor => {
                let (pricing, card) = (pricing_of(claim)?, card_of(uow, claim).await?);
                let debit = Move::debit(claim, &card, pricing.priced.covered, "Coverage");
                debit.run(uow, card.terms.sponsor_wallet_id).await?.map(|()| ClaimCommand::RecordSponsorDebited)
            }
            Forward::CreditPharmacy => {
                let (pricing, card) = (pricing_of(claim)?, card_of(uow, claim).await?);
                let credit = Move::credit(claim, &card, pricing.priced.total, "Payment");
                match credit.run(uow, terms.pharmacy_wallet_id).await? {
                    Ok(()) => {
                        uow.handle::<MedCard>(terms.medcard_id, &MedCardCommand::ConfirmReservation { claim_id: terms.claim_id }).await?;
                        Ok(ClaimCommand::RecordPharmacyCredited)
                    }
                    Err(refusal) => Err(refusal),
                }
            }
        };
        Ok(done.unwrap_or_else(|refusal| fail(&refusal)))
    }
}

/// One of the claim's money moves on one wallet. A zero amount (full or no
/// coverage) moves nothing and is not refused: the step is recorded all the same.
struct Move {
    command: Option<WalletCommand>,
}

impl Move {
    fn movement<T>(claim: &StartedClaim, card: &IssuedCard, amount: Money, transaction_type: T, description: String) -> Option<Movement<T>> {
        amount.is_positive().then(|| Movement {
            amount,
            transaction_type,
            reference: claim.terms.prescription_id.clone(),
            description: Some(description),
            currency: Some(card.terms.currency.clone()),
        })
    }

    fn debit(claim: &StartedClaim, card: &IssuedCard, amount: Money, what: &str) -> Move {
        let description = format!("{what} of claim {} for prescription {}", claim.terms.claim_id, claim.terms.prescription_id);
        Move { command: Self::movement(claim, card, amount, DebitType::ClaimPayment, description).map(WalletCommand::Debit) }
    }

    fn credit(claim: &StartedClaim, card: &IssuedCard, amount: Money, what: &str) -> Move {
        let description = format!("{what} of claim {} for prescription {}", claim.terms.claim_id, claim.terms.prescription_id);
        Move { command: Self::movement(claim, card, amount, CreditType::ClaimPayment, description).map(WalletCommand::Credit) }
    }

    fn refund(claim: &StartedClaim, card: &IssuedCard, amount: Money, what: &str) -> Move {
        let reason = claim.failure_reason.as_deref().unwrap_or("INTERNAL");
        let description = format!("Refund of the {what} of claim {}: {reason}", claim.terms.claim_id);
        Move { command: Self::movement(claim, card, amount, CreditType::Refund, description).map(WalletCommand::ReturnFunds) }
    }

    /// Records the move on `wallet_id`, or returns the wallet's refusal (recording nothing).
    async fn run(self, uow: &mut UnitOfWork<'_>, wallet_id: Uuid) -> Result<Result<(), DomainError>, Failure> {
        let Some(command) = self.command else { return Ok(Ok(())) };
        let wallet: Wallet = uow.load(wallet_id).await?;
        match wallet.decide(&command) {
            Ok(events) => {
                uow.record::<Wallet>(wallet_id, events);
                Ok(Ok(()))
            }
            // A missing wallet is "not found", whatever id the empty state reports.
            Err(DomainError::NotFound { .. } | DomainError::Unknown { .. }) => Ok(Err(DomainError::NotFound { kind: "wallet", id: wallet_id })),
            Err(refusal) => Ok(Err(refusal)),
        }
    }
}

/// A refund `wallet_id` refused goes to suspense. The wallet was loaded to decide
/// the refund, so the commit checks its version: the refusal never rests on a
/// stale copy.
fn suspend(claim: &StartedClaim, refund: Refund, wallet_id: Uuid, refusal: &DomainError) -> ClaimCommand {
    tracing::warn!(claim = %claim.terms.claim_id, wallet = %wallet_id, ?refund, %refusal, "a wallet refused a claim's refund: the amount is held in suspense");
    ClaimCommand::RecordRefundSuspended { refund, wallet_id, reason: refusal.code().into() }
}

/// The claim fails with the refusal's contract code.
fn fail(refusal: &DomainError) -> ClaimCommand {
    ClaimCommand::Fail { reason: refusal.code().into() }
}

/// Records `command` on the claim. The commit that rejects the claim also releases
/// its prescription, so the prescription may be claimed again.
async fn record_claim(uow: &mut UnitOfWork<'_>, id: Uuid, command: &ClaimCommand) -> Result<StartedClaim, Failure> {
    let claim = started(uow.handle::<Claim>(id, command).await?);
    if claim.outcome == ClaimOutcome::Rejected {
        let release = PrescriptionCommand::Release { claim_id: id };
        uow.handle::<Prescription>(prescription::stream_uuid(&claim.terms.prescription_id), &release).await?;
    }
    Ok(claim)
}

async fn load_started(uow: &mut UnitOfWork<'_>, id: Uuid) -> Result<StartedClaim, Failure> {
    let claim: Claim = uow.load(id).await?;
    claim.started().cloned().ok_or(Failure::Refused(DomainError::NotFound { kind: "claim", id }))
}

fn started(claim: Claim) -> StartedClaim {
    claim.started().cloned().expect("a claim that was loaded as submitted stays submitted")
}

/// Whether the claim is going (not failed, not decided) and at `step`: the next
/// step is the one to take.
fn due(claim: &StartedClaim, step: ClaimStep) -> bool {
    claim.outcome == ClaimOutcome::Pending && claim.failure_reason.is_none() && claim.step == step
}

fn pricing_of(claim: &StartedClaim) -> Result<Pricing, Failure> {
    claim.pricing.clone().ok_or(Failure::Refused(DomainError::InvalidStateTransition {
        kind: "claim",
        id: claim.terms.claim_id,
        status: "submitted",
        action: "pay",
    }))
}

/// The claim's card, read for facts that never change (its sponsor wallet, currency).
async fn card_of(uow: &UnitOfWork<'_>, claim: &StartedClaim) -> Result<IssuedCard, Failure> {
    let card: MedCard = uow.peek(claim.terms.medcard_id).await?;
    card.issued().cloned().ok_or(Failure::Refused(DomainError::NotFound { kind: "medcard", id: claim.terms.medcard_id }))
}

/// When the claim was submitted: its limit is that month's, however late it is priced.
async fn submitted_at(store: &dyn EventStore, id: Uuid) -> Result<DateTime<Utc>, StepError> {
    let events = store.load(&stream_id(Claim::TYPE, id), 0).await.map_err(|e| StepError::from(CommandError::Store(e)))?;
    events.first().map(|e| e.occurred_at).ok_or_else(|| StepError::from(CommandError::Refused(DomainError::NotFound { kind: "claim", id })))
}

fn outcome_of(claim: &StartedClaim) -> StepOutcome {
    let accepted = match claim.outcome {
        ClaimOutcome::Approved => true,
        ClaimOutcome::Rejected => false,
        ClaimOutcome::Pending => claim.failure_reason.is_none(),
    };
    StepOutcome { accepted, status: claim.outcome.status().into(), reason: claim.failure_reason.clone() }
}

/// Parses the claim state machine with the local function names substituted.
pub fn local_state_machine() -> Result<asl::StateMachine, asl::AslError> {
    super::steps::local_state_machine(STATE_MACHINE, DEFINITION, &STEPS)
}

/// Every `ClaimSubmitted` starts a claim saga, named after the claim.
pub const TRIGGER: Trigger = Trigger { state_machine: STATE_MACHINE, consumer: "claim-saga-starter", input: trigger_input };

fn trigger_input(envelope: &EventEnvelope) -> Option<serde_json::Value> {
    starts_saga(envelope).then(|| serde_json::to_value(start_input(envelope)).expect("inputs serialise"))
}

/// Starts the claim saga for every `ClaimSubmitted` on the local feed.
pub fn starter(runner: Arc<asl::Runner>) -> SagaStarter {
    SagaStarter { trigger: &TRIGGER, runner }
}

/// The execution input for a claim: its id and the correlation id of the request.
pub fn start_input(submitted: &EventEnvelope) -> StepInput {
    StepInput { claim_id: submitted.aggregate_id, correlation_id: Some(submitted.metadata.correlation_id.clone()) }
}

/// Whether the event starts a claim saga.
pub fn starts_saga(envelope: &EventEnvelope) -> bool {
    envelope.aggregate_type == Claim::TYPE && matches!(envelope.decode::<ClaimEvent>(), Ok(ClaimEvent::ClaimSubmitted(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::{ClaimItem, ClaimTerms};
    use crate::clock::{Clock, ManualClock};
    use crate::medcard::{Beneficiary, CardTerms};
    use crate::memory::{MemoryEventStore, MemoryExecutionStore};
    use crate::money::Currency;
    use crate::ports::ExecutionStatus;

    use chrono::TimeZone;
    use serde_json::json;

    fn egp(major: i64) -> i64 {
        major * 100
    }

    fn item(code: &str, quantity: u32, unit_price: i64) -> ClaimItem {
        ClaimItem { drug_code: code.into(), drug_name: format!("Drug {code}"), quantity, unit_price: Money::from_minor(unit_price) }
    }

    /// 2 × 150 + 1 × 100 = 400 EGP.
    fn prescription_items() -> Vec<ClaimItem> {
        vec![item("PAN500", 2, egp(150)), item("AMOX250", 1, egp(100))]
    }

    /// A pharmacy, a patient, a sponsor and a card covering one beneficiary.
    struct Fixture {
        clock: Arc<ManualClock>,
        commands: Arc<CommandService>,
        steps: Arc<ClaimSteps>,
        pharmacy: Uuid,
        patient: Uuid,
        sponsor: Uuid,
        card: Uuid,
        beneficiary: Uuid,
    }

    /// How the parties start out.
    struct Setup {
        coverage_percent: u8,
        monthly_limit: i64,
        patient_balance: i64,
        sponsor_balance: i64,
    }

    impl Default for Setup {
        fn default() -> Self {
            Setup { coverage_percent: 80, monthly_limit: egp(1_000), patient_balance: egp(500), sponsor_balance: egp(10_000) }
        }
    }

    impl Fixture {
        async fn new() -> Self {
            Self::with(Setup::default()).await
        }

        async fn with(setup: Setup) -> Self {
            let clock = Arc::new(ManualClock::at(Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()));
            let commands = Arc::new(CommandService::new(Arc::new(MemoryEventStore::default()), clock.clone()));
            let mut f = Fixture {
                steps: Arc::new(ClaimSteps::new(commands.clone())),
                clock,
                commands,
                pharmacy: Uuid::nil(),
                patient: Uuid::nil(),
                sponsor: Uuid::nil(),
                card: Uuid::now_v7(),
                beneficiary: Uuid::now_v7(),
            };
            f.pharmacy = f.wallet(0, true).await;
            f.patient = f.wallet(setup.patient_balance, true).await;
            f.sponsor = f.wallet(setup.sponsor_balance, true).await;
            let terms = CardTerms {
                medcard_id: f.card,
                holder_id: "hala".into(),
                sponsor_wallet_id: f.sponsor,
                plan_name: "Gold".into(),
                coverage_percent: setup.coverage_percent,
                monthly_limit: Money::from_minor(setup.monthly_limit),
                currency: Currency::egp(),
                expires_at: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
                issued_by: "insurer-1".into(),
            };
            let beneficiary = Beneficiary { beneficiary_id: f.beneficiary, name: "Omar".into(), relationship: "child".into() };
            for command in [MedCardCommand::Issue(terms), MedCardCommand::Activate, MedCardCommand::AddBeneficiary(beneficiary)] {
                f.card_command(command).await;
            }
            f
        }

        async fn run<A: Aggregate>(&self, id: Uuid, command: A::Command)
        where
            A::Command: Send + Sync,
        {
            let ctx = CommandContext::new("admin", "test");
            self.commands.execute(&ctx, async |uow| uow.handle::<A>(id, &command).await).await.unwrap();
        }

        async fn card_command(&self, command: MedCardCommand) {
            self.run::<MedCard>(self.card, command).await;
        }

        async fn wallet(&self, minor: i64, active: bool) -> Uuid {
            let id = Uuid::now_v7();
            let create = WalletCommand::open_personal(id, "alice", Money::from_minor(minor));
            self.run::<Wallet>(id, create).await;
            if active {
                self.run::<Wallet>(id, WalletCommand::Activate).await;
            }
            id
        }

        async fn state<A: Aggregate>(&self, id: Uuid) -> A {
            let events = self.commands.store().load(&stream_id(A::TYPE, id), 0).await.unwrap();
            events.iter().fold(A::default(), |state, e| state.apply(&e.decode().unwrap()))
        }

        async fn balance(&self, id: Uuid) -> i64 {
            self.state::<Wallet>(id).await.open().unwrap().balance.minor()
        }

        /// Pharmacy, patient and sponsor balances.
        async fn balances(&self) -> (i64, i64, i64) {
            (self.balance(self.pharmacy).await, self.balance(self.patient).await, self.balance(self.sponsor).await)
        }

        async fn card_state(&self) -> IssuedCard {
            self.state::<MedCard>(self.card).await.issued().unwrap().clone()
        }

        async fn claim_state(&self, input: &StepInput) -> StartedClaim {
            self.state::<Claim>(input.claim_id).await.started().unwrap().clone()
        }

        /// The claim's event types, in order.
        async fn claim_events(&self, input: &StepInput) -> Vec<String> {
            let events = self.commands.store().load(&stream_id(Claim::TYPE, input.claim_id), 0).await.unwrap();
            events.into_iter().map(|e| e.event_type).collect()
        }

        /// Every event of every stream the saga touches.
        async fn event_count(&self, claims: &[&StepInput]) -> usize {
            let mut streams = vec![stream_id(MedCard::TYPE, self.card)];
            streams.extend([self.pharmacy, self.patient, self.sponsor].map(|w| stream_id(Wallet::TYPE, w)));
            for claim in claims {
                streams.push(stream_id(Claim::TYPE, claim.claim_id));
                let prescription_id = self.claim_state(claim).await.terms.prescription_id;
                streams.push(stream_id(Prescription::TYPE, prescription::stream_uuid(&prescription_id)));
            }
            let mut count = 0;
            for stream in streams {
                count += self.commands.store().load(&stream, 0).await.unwrap().len();
            }
            count
        }

        fn terms(&self, items: Vec<ClaimItem>) -> ClaimTerms {
            let claim_id = Uuid::now_v7();
            ClaimTerms {
                claim_id,
                medcard_id: self.card,
                beneficiary_id: self.beneficiary,
                prescription_id: format!("RX-{claim_id}"),
                pharmacy_wallet_id: self.pharmacy,
                patient_wallet_id: self.patient,
                items,
                submitted_by: "pharmacy-1".into(),
                holder_id: Some("patient-1".into()),
            }
        }

        /// Submits the claim as the HTTP command does: it claims the prescription in
        /// the same commit.
        async fn submit(&self, terms: ClaimTerms) -> StepInput {
            let id = terms.claim_id;
            let ctx = CommandContext::new("pharmacy-1", "submit");
            self.commands
                .execute(&ctx, async |uow| {
                    let claim = PrescriptionCommand::Claim { prescription_id: terms.prescription_id.clone(), claim_id: id };
                    uow.handle::<Prescription>(prescription::stream_uuid(&terms.prescription_id), &claim).await?;
                    uow.handle::<Claim>(id, &ClaimCommand::Submit(terms.clone())).await
                })
                .await
                .unwrap();
            StepInput { claim_id: id, correlation_id: None }
        }

        async fn claim(&self) -> StepInput {
            self.submit(self.terms(prescription_items())).await
        }

        /// Runs the real ASL definition through the local runner; returns the final
        /// execution state.
        async fn saga(&self, input: &StepInput) -> serde_json::Value {
            let machine = Arc::new(local_state_machine().unwrap());
            let runner = asl::Runner::new(machine, Arc::new(LocalSteps(self.steps.clone())), Arc::new(MemoryExecutionStore::default()), self.clock.clone());
            let name = input.claim_id.to_string();
            assert!(runner.start(&name, serde_json::to_value(input).unwrap()).await.unwrap());
            let done = runner.run(&name).await.unwrap();
            assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
            done.input
        }

        /// Whether the claim's prescription is free to be claimed again.
        async fn prescription_free(&self, input: &StepInput) -> bool {
            let prescription_id = self.claim_state(input).await.terms.prescription_id;
            self.state::<Prescription>(prescription::stream_uuid(&prescription_id)).await.claimed_by.is_none()
        }

        fn month(&self) -> Month {
            Month::of(self.clock.now())
        }
    }

    fn outcome(status: &str, accepted: bool, reason: Option<&str>) -> serde_json::Value {
        let mut outcome = json!({"accepted": accepted, "status": status});
        if let Some(reason) = reason {
            outcome["reason"] = reason.into();
        }
        outcome
    }

    const START: [&str; 1] = ["ClaimSubmitted"];

    fn events(names: &[&str]) -> Vec<String> {
        START.iter().chain(names).map(|n| n.to_string()).collect()
    }

    #[tokio::test]
    async fn an_approved_claim_pays_the_pharmacy_the_total_from_the_patient_and_the_sponsor() {
        // Given a card covering 80 % up to 1000 a month, when a claim for 2 × 150 + 1 × 100 runs,
        let f = Fixture::new().await;
        let before = f.balances().await;
        let input = f.claim().await;
        let output = f.saga(&input).await;
        // then it is approved, with 320 covered and 80 paid by the patient,
        assert_eq!(output["pharmacy"], outcome("APPROVED", true, None));
        let pricing = f.claim_state(&input).await.pricing.unwrap();
        assert_eq!((pricing.priced.total.minor(), pricing.priced.covered.minor(), pricing.priced.copayment.minor()), (egp(400), egp(320), egp(80)));
        assert_eq!((pricing.coverage_percent, pricing.month), (80, f.month()));
        // the pharmacy got 400, the patient paid 80 and the sponsor 320,
        let after = f.balances().await;
        assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (egp(400), -egp(80), -egp(320)));
        // and the card spent 320 on 1 claim this month, with nothing left reserved.
        let card = f.card_state().await;
        assert_eq!((card.spent(f.month()).minor(), card.claim_count(f.month()), card.reserved(f.month()).minor()), (egp(320), 1, 0));
        assert_eq!(card.remaining(f.month()).minor(), egp(680));
        assert_eq!(
            f.claim_events(&input).await,
            events(&["ClaimPriced", "ClaimCoverageReserved", "ClaimCopaymentDebited", "ClaimSponsorDebited", "ClaimPharmacyCredited", "ClaimApproved"])
        );
        assert!(!f.prescription_free(&input).await, "an approved claim keeps its prescription");
    }

    #[tokio::test]
    async fn a_patient_who_cannot_pay_the_copayment_gets_the_claim_rejected_and_the_reservation_released() {
        let f = Fixture::with(Setup { patient_balance: egp(50), ..Setup::default() }).await;
        let before = f.balances().await;
        let input = f.claim().await;
        let output = f.saga(&input).await;
        assert_eq!(output["copayment"], outcome("PENDING", false, Some("INSUFFICIENT_FUNDS")));
        assert_eq!(output["compensation"], outcome("REJECTED", false, Some("INSUFFICIENT_FUNDS")));
        assert!(output.get("sponsor").is_none() && output.get("pharmacy").is_none());
        assert_eq!(f.balances().await, before, "no wallet moved");
        let card = f.card_state().await;
        assert_eq!((card.reserved(f.month()).minor(), card.spent(f.month()).minor(), card.remaining(f.month()).minor()), (0, 0, egp(1_000)));
        assert_eq!(
            f.claim_events(&input).await,
            events(&["ClaimPriced", "ClaimCoverageReserved", "ClaimStepFailed", "ClaimReservationReleased", "ClaimRejected"])
        );
        assert!(f.prescription_free(&input).await, "a rejected prescription may be claimed again");
    }

    #[tokio::test]
    async fn a_closed_pharmacy_wallet_rejects_the_claim_and_every_step_is_undone_newest_first() {
        let f = Fixture::new().await;
        let closed = f.wallet(0, true).await;
        f.run::<Wallet>(closed, WalletCommand::Close { reason: None }).await;
        let before = (f.balance(f.patient).await, f.balance(f.sponsor).await);
        let input = f.submit(ClaimTerms { pharmacy_wallet_id: closed, ..f.terms(prescription_items()) }).await;
        let output = f.saga(&input).await;
        assert_eq!(output["sponsor"], outcome("PENDING", true, None), "the copayment and the sponsor were debited first");
        assert_eq!(output["pharmacy"], outcome("PENDING", false, Some("WALLET_NOT_ACTIVE")));
        assert_eq!(output["compensation"], outcome("REJECTED", false, Some("WALLET_NOT_ACTIVE")));
        assert_eq!((f.balance(f.patient).await, f.balance(f.sponsor).await, f.balance(closed).await), (before.0, before.1, 0), "both refunded");
        assert_eq!(f.card_state().await.remaining(f.month()).minor(), egp(1_000));
        assert_eq!(
            f.claim_events(&input).await,
            events(&[
                "ClaimPriced",
                "ClaimCoverageReserved",
                "ClaimCopaymentDebited",
                "ClaimSponsorDebited",
                "ClaimStepFailed",
                "ClaimSponsorRefunded",
                "ClaimCopaymentRefunded",
                "ClaimReservationReleased",
                "ClaimRejected",
            ])
        );
        let claim = f.claim_state(&input).await;
        assert_eq!((claim.outcome.status(), claim.failure_reason.as_deref()), ("REJECTED", Some("WALLET_NOT_ACTIVE")));
        // Each refund is in the commit of the claim event that records it.
        let store = f.commands.store();
        let claim_events = store.load(&stream_id(Claim::TYPE, input.claim_id), 0).await.unwrap();
        let sponsor_refund = store.load(&stream_id(Wallet::TYPE, f.sponsor), 0).await.unwrap().pop().unwrap();
        let patient_refund = store.load(&stream_id(Wallet::TYPE, f.patient), 0).await.unwrap().pop().unwrap();
        let command_of = |event_type: &str| claim_events.iter().find(|e| e.event_type == event_type).unwrap().metadata.command_id;
        assert_eq!(sponsor_refund.metadata.command_id, command_of("ClaimSponsorRefunded"));
        assert_eq!(patient_refund.metadata.command_id, command_of("ClaimCopaymentRefunded"));
        assert!(f.prescription_free(&input).await);
    }

    #[tokio::test]
    async fn a_card_that_does_not_cover_the_claim_rejects_it_at_once_and_moves_nothing() {
        for (code, refuse) in [("CARD_NOT_ACTIVE", 0), ("CARD_EXPIRED", 1), ("CARD_EXPIRED", 2), ("BENEFICIARY_NOT_COVERED", 3)] {
            let f = Fixture::new().await;
            let before = f.balances().await;
            let mut terms = f.terms(prescription_items());
            match refuse {
                0 => f.card_command(MedCardCommand::Suspend { reason: "unpaid premium".into() }).await,
                1 => f.card_command(MedCardCommand::Expire).await,
                // Past its expiresAt, though nobody expired it.
                2 => f.clock.advance(chrono::Duration::days(60)),
                _ => terms.beneficiary_id = Uuid::now_v7(),
            }
            let input = f.submit(terms).await;
            let output = f.saga(&input).await;
            assert_eq!(output["price"], outcome("REJECTED", false, Some(code)), "{code}");
            assert!(output.get("reservation").is_none() && output.get("compensation").is_none(), "{code}: nothing to undo");
            assert_eq!(f.claim_events(&input).await, events(&["ClaimRejected"]), "{code}");
            assert_eq!(f.balances().await, before, "{code}");
            assert!(f.card_state().await.reservations.is_empty(), "{code}");
            assert!(f.prescription_free(&input).await, "{code}");
        }
    }

    #[tokio::test]
    async fn a_card_with_nothing_left_this_month_rejects_the_claim_limit_exceeded() {
        let f = Fixture::with(Setup { coverage_percent: 100, monthly_limit: egp(400), ..Setup::default() }).await;
        let first = f.claim().await;
        assert_eq!(f.saga(&first).await["pharmacy"]["status"], "APPROVED");
        let second = f.claim().await;
        assert_eq!(f.saga(&second).await["price"], outcome("REJECTED", false, Some("LIMIT_EXCEEDED")));
    }

    #[tokio::test]
    async fn the_cover_stops_at_what_is_left_of_the_limit_and_the_patient_pays_the_rest() {
        let f = Fixture::with(Setup { monthly_limit: egp(250), ..Setup::default() }).await;
        let before = f.balances().await;
        let input = f.claim().await;
        assert_eq!(f.saga(&input).await["pharmacy"]["status"], "APPROVED");
        let after = f.balances().await;
        assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (egp(400), -egp(150), -egp(250)));
        assert_eq!(f.card_state().await.remaining(f.month()), Money::ZERO);
    }

    #[tokio::test]
    async fn full_or_no_coverage_moves_no_money_from_the_party_that_owes_nothing_but_records_every_step() {
        for (coverage_percent, patient, sponsor) in [(100, 0, -egp(400)), (0, -egp(400), 0)] {
            let f = Fixture::with(Setup { coverage_percent, ..Setup::default() }).await;
            let before = f.balances().await;
            let input = f.claim().await;
            assert_eq!(f.saga(&input).await["pharmacy"]["status"], "APPROVED", "{coverage_percent} %");
            let after = f.balances().await;
            assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (egp(400), patient, sponsor), "{coverage_percent} %");
            assert_eq!(f.claim_events(&input).await.len(), 7, "{coverage_percent} %: every step is recorded");
            let card = f.card_state().await;
            assert_eq!((card.spent(f.month()).minor(), card.claim_count(f.month())), (-sponsor, 1), "{coverage_percent} %");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_two_concurrent_claims_that_together_exceed_the_limit_exactly_one_is_approved() {
        // Both are priced against the full limit (600 each of 1000) before either reserves.
        let f = Fixture::with(Setup { coverage_percent: 100, ..Setup::default() }).await;
        let before = f.balances().await;
        let claims = [f.submit(f.terms(vec![item("A", 1, egp(600))])).await, f.submit(f.terms(vec![item("B", 1, egp(600))])).await];
        for claim in &claims {
            assert!(f.steps.price(claim).await.unwrap().accepted);
        }
        let f = Arc::new(f);
        let runs = claims.clone().map(|claim| {
            let f = f.clone();
            tokio::spawn(async move { f.saga(&claim).await })
        });
        let mut statuses = vec![];
        for run in runs {
            let output = run.await.unwrap();
            statuses.push(output.get("pharmacy").map_or_else(|| output["reservation"].clone(), |p| p.clone()));
        }
        statuses.sort_by_key(|s| s["status"].to_string());
        assert_eq!(statuses, [outcome("APPROVED", true, None), outcome("REJECTED", false, Some("LIMIT_EXCEEDED"))]);
        let card = f.card_state().await;
        assert_eq!((card.spent(f.month()).minor(), card.reserved(f.month()).minor(), card.claim_count(f.month())), (egp(600), 0, 1));
        let after = f.balances().await;
        assert_eq!((after.0 - before.0, after.2 - before.2), (egp(600), -egp(600)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sagas_never_cover_more_than_the_limit() {
        // Each claim alone would take the whole month's limit.
        let f = Arc::new(Fixture::with(Setup { coverage_percent: 100, monthly_limit: egp(400), ..Setup::default() }).await);
        let before = f.balances().await;
        let mut claims = vec![];
        for _ in 0..4 {
            claims.push(f.claim().await);
        }
        let runs: Vec<_> = claims
            .iter()
            .cloned()
            .map(|claim| {
                let f = f.clone();
                tokio::spawn(async move { f.saga(&claim).await })
            })
            .collect();
        let mut approved = 0;
        for run in runs {
            let output = run.await.unwrap();
            if output["pharmacy"]["status"] == "APPROVED" {
                approved += 1;
            } else {
                let refusal = output.get("reservation").unwrap_or(&output["price"]);
                assert_eq!(refusal, &outcome("REJECTED", false, Some("LIMIT_EXCEEDED")), "{output}");
            }
        }
        assert_eq!(approved, 1);
        assert_eq!(f.card_state().await.spent(f.month()).minor(), egp(400));
        let after = f.balances().await;
        assert_eq!(after.0 + after.1 + after.2, before.0 + before.1 + before.2, "no money created or lost");
    }

    #[tokio::test]
    async fn every_step_run_twice_changes_nothing_the_second_time() {
        let f = Fixture::new().await;
        let input = f.claim().await;
        let steps: [&str; 5] = ["claim-price", "claim-reserve-coverage", "claim-debit-copayment", "claim-debit-sponsor", "claim-credit-pharmacy"];
        for step in steps {
            let first = f.steps.run_step(step, &input).await.unwrap();
            let (count, balances) = (f.event_count(&[&input]).await, f.balances().await);
            let again = f.steps.run_step(step, &input).await.unwrap();
            assert_eq!((again, f.event_count(&[&input]).await, f.balances().await), (first, count, balances), "{step}");
        }
        // A late compensation (e.g. a Catch after an ambiguous timeout) leaves an approved claim alone.
        let count = f.event_count(&[&input]).await;
        assert_eq!(f.steps.compensate(&input).await.unwrap(), StepOutcome { accepted: true, status: "APPROVED".into(), reason: None });
        assert_eq!(f.event_count(&[&input]).await, count);
        // And every step after the end is a no-op too.
        for step in steps {
            f.steps.run_step(step, &input).await.unwrap();
        }
        assert_eq!(f.event_count(&[&input]).await, count);
        assert_eq!(f.card_state().await.claim_count(f.month()), 1);
    }

    #[tokio::test]
    async fn every_compensation_run_twice_changes_nothing_the_second_time() {
        let f = Fixture::new().await;
        let closed = f.wallet(0, true).await;
        f.run::<Wallet>(closed, WalletCommand::Close { reason: None }).await;
        let input = f.submit(ClaimTerms { pharmacy_wallet_id: closed, ..f.terms(prescription_items()) }).await;
        for step in ["claim-price", "claim-reserve-coverage", "claim-debit-copayment", "claim-debit-sponsor", "claim-credit-pharmacy"] {
            f.steps.run_step(step, &input).await.unwrap();
        }
        let mut statuses = vec![];
        loop {
            let status = f.steps.compensate(&input).await.unwrap().status;
            statuses.push(status.clone());
            if status != "PENDING" {
                break;
            }
        }
        assert_eq!(statuses, ["PENDING", "PENDING", "REJECTED"]);
        let (count, balances) = (f.event_count(&[&input]).await, f.balances().await);
        for step in ["claim-compensate", "claim-credit-pharmacy", "claim-price"] {
            assert_eq!(f.steps.run_step(step, &input).await.unwrap().status, "REJECTED");
        }
        assert_eq!((f.event_count(&[&input]).await, f.balances().await), (count, balances));
    }

    #[tokio::test]
    async fn a_step_that_kept_failing_is_compensated_as_internal_even_onto_a_wallet_suspended_meanwhile() {
        let f = Fixture::new().await;
        let before = f.balances().await;
        let input = f.claim().await;
        for step in ["claim-price", "claim-reserve-coverage", "claim-debit-copayment"] {
            f.steps.run_step(step, &input).await.unwrap();
        }
        f.run::<Wallet>(f.patient, WalletCommand::Suspend { reason: "review".into() }).await;
        // The sponsor debit never got through: the Catch sends the claim to compensation.
        let first = f.steps.compensate(&input).await.unwrap();
        assert_eq!(first, StepOutcome { accepted: false, status: "PENDING".into(), reason: Some("INTERNAL".into()) });
        assert_eq!(f.balances().await, before, "the copayment is back on the suspended wallet");
        assert_eq!(f.steps.compensate(&input).await.unwrap().status, "REJECTED");
        assert_eq!(
            f.claim_events(&input).await,
            events(&[
                "ClaimPriced",
                "ClaimCoverageReserved",
                "ClaimCopaymentDebited",
                "ClaimStepFailed",
                "ClaimCopaymentRefunded",
                "ClaimReservationReleased",
                "ClaimRejected"
            ])
        );
        assert_eq!(f.card_state().await.remaining(f.month()).minor(), egp(1_000));
    }

    #[tokio::test]
    async fn refunds_to_wallets_closed_meanwhile_go_to_suspense_and_the_claim_ends_rejected() {
        // The patient has exactly the copayment and the sponsor exactly the cover, so
        // both are empty, and may close, once debited; the pharmacy's wallet is closed.
        let f = Fixture::with(Setup { patient_balance: egp(80), sponsor_balance: egp(320), ..Setup::default() }).await;
        let closed = f.wallet(0, true).await;
        f.run::<Wallet>(closed, WalletCommand::Close { reason: None }).await;
        let input = f.submit(ClaimTerms { pharmacy_wallet_id: closed, ..f.terms(prescription_items()) }).await;
        for step in ["claim-price", "claim-reserve-coverage", "claim-debit-copayment", "claim-debit-sponsor"] {
            assert!(f.steps.run_step(step, &input).await.unwrap().accepted, "{step}");
        }
        assert_eq!(f.balances().await, (0, 0, 0));
        // Both wallets close while the claim is in flight.
        f.run::<Wallet>(f.patient, WalletCommand::Close { reason: None }).await;
        f.run::<Wallet>(f.sponsor, WalletCommand::Close { reason: None }).await;
        // The whole saga (the real ASL) ends instead of retrying refunds that can never land.
        let output = f.saga(&input).await;
        assert_eq!(output["pharmacy"], outcome("PENDING", false, Some("WALLET_NOT_ACTIVE")));
        assert_eq!(output["compensation"], outcome("REJECTED", false, Some("WALLET_NOT_ACTIVE")));
        assert_eq!(
            f.claim_events(&input).await,
            events(&[
                "ClaimPriced",
                "ClaimCoverageReserved",
                "ClaimCopaymentDebited",
                "ClaimSponsorDebited",
                "ClaimStepFailed",
                "ClaimRefundSuspended",
                "ClaimRefundSuspended",
                "ClaimReservationReleased",
                "ClaimRejected",
            ])
        );
        let claim = f.claim_state(&input).await;
        assert_eq!((claim.outcome.status(), claim.failure_reason.as_deref()), ("REJECTED", Some("WALLET_NOT_ACTIVE")));
        let in_suspense: Vec<_> = claim.refunds_in_suspense.iter().map(|r| (r.refund, r.wallet_id, r.amount.minor(), r.reason.as_str())).collect();
        assert_eq!(in_suspense, [(Refund::Sponsor, f.sponsor, egp(320), "WALLET_NOT_ACTIVE"), (Refund::Copayment, f.patient, egp(80), "WALLET_NOT_ACTIVE")]);
        // The 400 is on no wallet, but accounted for on the claim; the limit is given back.
        assert_eq!(f.balances().await, (0, 0, 0));
        assert_eq!(f.card_state().await.remaining(f.month()).minor(), egp(1_000));
        assert!(f.prescription_free(&input).await);
        // The claim view shows it.
        let stored = f.commands.store().load(&stream_id(Claim::TYPE, input.claim_id), 0).await.unwrap();
        let mut view = None;
        for envelope in &stored {
            view = <crate::projection::claim::ClaimView as crate::projection::DocumentView>::next(view, envelope, &envelope.decode().unwrap());
        }
        let view = view.unwrap();
        assert_eq!((view.status.as_str(), view.stage.as_str()), ("REJECTED", "refund-in-suspense"));
        assert_eq!(view.refunds_in_suspense, claim.refunds_in_suspense);
        let mut stored_view = serde_json::to_value(&view).unwrap();
        assert_eq!(
            stored_view["refundsInSuspense"][1],
            json!({"refund": "copayment", "walletId": f.patient, "amount": egp(80), "reason": "WALLET_NOT_ACTIVE"})
        );
        stored_view.as_object_mut().unwrap().remove("refundsInSuspense");
        let older: crate::projection::claim::ClaimView = serde_json::from_value(stored_view).unwrap();
        assert!(older.refunds_in_suspense.is_empty(), "a view stored before refunds could be suspended still reads");
        // Compensating again changes nothing.
        let count = f.event_count(&[&input]).await;
        for _ in 0..2 {
            assert_eq!(
                f.steps.compensate(&input).await.unwrap(),
                StepOutcome { accepted: false, status: "REJECTED".into(), reason: Some("WALLET_NOT_ACTIVE".into()) }
            );
        }
        assert_eq!(f.event_count(&[&input]).await, count);
    }

    #[tokio::test]
    async fn only_the_refund_that_cannot_land_goes_to_suspense() {
        // The patient closes; the sponsor is still there and gets its refund.
        let f = Fixture::with(Setup { patient_balance: egp(80), ..Setup::default() }).await;
        let sponsor_before = f.balance(f.sponsor).await;
        let input = f.claim().await;
        for step in ["claim-price", "claim-reserve-coverage", "claim-debit-copayment", "claim-debit-sponsor"] {
            f.steps.run_step(step, &input).await.unwrap();
        }
        f.run::<Wallet>(f.patient, WalletCommand::Close { reason: None }).await;
        // The pharmacy credit never got through: the Catch sends the claim to compensation.
        let mut statuses = vec![];
        loop {
            let status = f.steps.compensate(&input).await.unwrap().status;
            statuses.push(status.clone());
            if status != "PENDING" {
                break;
            }
        }
        assert_eq!(statuses, ["PENDING", "PENDING", "REJECTED"]);
        assert_eq!(f.balance(f.sponsor).await, sponsor_before, "the sponsor got its cover back");
        let claim = f.claim_state(&input).await;
        assert_eq!(claim.failure_reason.as_deref(), Some("INTERNAL"));
        let in_suspense: Vec<_> = claim.refunds_in_suspense.iter().map(|r| (r.refund, r.amount.minor())).collect();
        assert_eq!(in_suspense, [(Refund::Copayment, egp(80))]);
        let events = f.claim_events(&input).await;
        assert_eq!(events[5..], ["ClaimStepFailed", "ClaimSponsorRefunded", "ClaimRefundSuspended", "ClaimReservationReleased", "ClaimRejected"]);
    }

    #[tokio::test]
    async fn a_claim_that_failed_before_anything_was_reserved_is_rejected_at_once_by_compensation() {
        let f = Fixture::new().await;
        let input = f.claim().await;
        let outcome = f.steps.compensate(&input).await.unwrap();
        assert_eq!((outcome.status.as_str(), outcome.reason.as_deref()), ("REJECTED", Some("INTERNAL")));
        assert_eq!(f.claim_events(&input).await, events(&["ClaimRejected"]));
        assert!(f.prescription_free(&input).await);
    }

    #[tokio::test]
    async fn a_rejected_prescription_can_be_claimed_again_and_paid() {
        let f = Fixture::with(Setup { patient_balance: egp(50), ..Setup::default() }).await;
        let first = f.claim().await;
        assert_eq!(f.saga(&first).await["compensation"]["status"], "REJECTED");
        f.run::<Wallet>(
            f.patient,
            WalletCommand::Credit(Movement {
                amount: Money::from_minor(egp(100)),
                transaction_type: CreditType::Deposit,
                reference: "top-up".into(),
                description: None,
                currency: None,
            }),
        )
        .await;
        let prescription_id = f.claim_state(&first).await.terms.prescription_id;
        let second = f.submit(ClaimTerms { prescription_id, ..f.terms(prescription_items()) }).await;
        assert_eq!(f.saga(&second).await["pharmacy"]["status"], "APPROVED");
        assert!(!f.prescription_free(&second).await);
    }

    #[tokio::test]
    async fn the_limit_used_is_the_submission_months_even_when_priced_later() {
        let f = Fixture::new().await;
        f.clock.advance(chrono::Duration::days(9) + chrono::Duration::hours(13)); // 2026-11-30T23:00Z
        let november = f.month();
        let input = f.claim().await;
        f.clock.advance(chrono::Duration::hours(2)); // December by the time the saga runs
        assert_eq!(f.saga(&input).await["pharmacy"]["status"], "APPROVED");
        let card = f.card_state().await;
        assert_eq!((card.spent(november).minor(), card.spent(f.month()).minor()), (egp(320), 0));
    }

    #[tokio::test]
    async fn a_step_for_an_unknown_claim_is_an_error_for_the_state_machine() {
        let f = Fixture::new().await;
        let unknown = StepInput { claim_id: Uuid::now_v7(), correlation_id: None };
        for (function, _) in STEPS.map(|(key, function)| (function, key)) {
            assert_eq!(f.steps.run_step(function, &unknown).await.unwrap_err().error_name, "ClaimNotFound", "{function}");
        }
        assert_eq!(f.steps.run_step("transfer-debit-source", &unknown).await.unwrap_err().error_name, "UnknownFunction");
    }

    #[tokio::test]
    async fn a_submitted_claim_starts_a_saga_named_after_it_and_nothing_else_does() {
        let f = Fixture::new().await;
        let input = f.claim().await;
        let store = f.commands.store();
        let claim_events = store.load(&stream_id(Claim::TYPE, input.claim_id), 0).await.unwrap();
        let (name, start) = TRIGGER.start(&claim_events[0]).unwrap();
        assert_eq!((name, start), (input.claim_id.to_string(), json!({"claimId": input.claim_id, "correlationId": "submit"})));
        f.saga(&input).await;
        let later = store.load(&stream_id(Claim::TYPE, input.claim_id), 1).await.unwrap();
        let others = store.load(&stream_id(Wallet::TYPE, f.patient), 0).await.unwrap();
        assert!(later.iter().chain(&others).all(|e| TRIGGER.start(e).is_none()));
        assert!(TRIGGER.start(&claim_events[0]).is_some_and(|_| !super::super::transfer::starts_saga(&claim_events[0])));
    }

    #[tokio::test]
    async fn money_is_conserved_across_every_outcome() {
        let setups = [Setup::default(), Setup { patient_balance: egp(50), ..Setup::default() }, Setup { sponsor_balance: egp(100), ..Setup::default() }];
        for (i, setup) in setups.into_iter().enumerate() {
            let f = Fixture::with(setup).await;
            let before = f.balances().await;
            let input = f.claim().await;
            f.saga(&input).await;
            let after = f.balances().await;
            assert_eq!(after.0 + after.1 + after.2, before.0 + before.1 + before.2, "setup {i}");
            let claim = f.claim_state(&input).await;
            let paid = if claim.outcome == ClaimOutcome::Approved { egp(400) } else { 0 };
            assert_eq!(after.0 - before.0, paid, "setup {i}: {:?}", claim.failure_reason);
        }
    }
}
