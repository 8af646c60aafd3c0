//! Given/when/then for the application layer on the in-memory store: who may act,
//! that a refusal changes nothing, and that it is decided before any expensive work.

use super::*;
use crate::clock::ManualClock;
use crate::command::CommandContext;
use crate::envelope::EventEnvelope;
use crate::ids::*;
use crate::medcard::Beneficiary;
use crate::memory::MemoryEventStore;
use crate::money::{Currency, Money};
use crate::ports::{AppendError, Commit, EventStore, IdempotencyRecord, StoreError};
use crate::wallet::{DebitType, KycLevel, Movement, WalletCommand, WalletType};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The in-memory store, counting whole-stream loads.
#[derive(Default)]
struct Counting {
    inner: MemoryEventStore,
    loads: AtomicUsize,
}

#[async_trait::async_trait]
impl EventStore for Counting {
    async fn load(&self, stream_id: &str, after_version: u64) -> Result<Vec<EventEnvelope>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(stream_id, after_version).await
    }
    async fn first_event(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        self.inner.first_event(stream_id).await
    }
    async fn snapshot(&self, stream_id: &str) -> Result<Option<crate::ports::Snapshot>, StoreError> {
        self.inner.snapshot(stream_id).await
    }
    async fn save_snapshot(&self, snapshot: &crate::ports::Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn append(&self, commit: Commit) -> Result<(), AppendError> {
        self.inner.append(commit).await
    }
    async fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.idempotency(scope, key).await
    }
}

struct Given {
    ledger: Ledger,
    store: Arc<Counting>,
}

fn who(sub: &str, roles: &[&str]) -> Caller {
    Caller::new(sub, roles.iter().copied()).unwrap()
}

fn call<R>() -> Call<'static, R> {
    Call::once(CommandContext::new("test", "test"))
}

fn egp(major: i64) -> Money {
    Money::from_minor(major * 100)
}

fn debit(major: i64) -> WalletCommand {
    WalletCommand::Debit(Movement { amount: egp(major), transaction_type: DebitType::Payment, reference: "r".into(), description: None, currency: None })
}

fn given() -> Given {
    let store = Arc::new(Counting::default());
    let clock = Arc::new(ManualClock::at(chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap().to_utc()));
    let commands = Arc::new(CommandService::new(store.clone(), clock));
    Given { ledger: Ledger::new(commands, chrono::Duration::hours(1)), store }
}

impl Given {
    async fn wallet(&self, owner: &Caller, funds: i64) -> WalletId {
        let opening = WalletOpening { wallet_type: WalletType::Personal, currency: Currency::egp(), kyc_level: KycLevel::Basic, initial_balance: egp(funds) };
        let created = self.ledger.create_wallet(owner, opening, &call()).await.unwrap().done().unwrap();
        let id = WalletId(created.state.open().unwrap().id);
        self.ledger.on_wallet(owner, id, WalletCommand::Activate, &call()).await.unwrap();
        id
    }

    async fn events(&self) -> usize {
        use crate::ports::EventFeed;
        self.store.inner.read_after(0, 1_000_000).await.unwrap().len()
    }

    async fn card(&self, insurer: &Caller, sponsor: WalletId, holder: &str) -> MedCardId {
        let issue = CardIssue {
            holder_id: holder.into(),
            sponsor_wallet: sponsor,
            plan_name: "Gold".into(),
            coverage_percent: 50,
            monthly_limit: egp(1_000),
            expires_at: chrono::DateTime::parse_from_rfc3339("2035-01-01T00:00:00Z").unwrap().to_utc(),
        };
        let issued = self.ledger.issue_medcard(insurer, issue, &call()).await.unwrap().done().unwrap();
        let id = MedCardId(issued.state.issued().unwrap().terms.medcard_id);
        self.ledger.on_medcard(insurer, id, CardOrder::Activate, &call()).await.unwrap();
        id
    }
}

#[track_caller]
fn assert_forbidden<R: std::fmt::Debug>(result: Result<R, CommandError>) {
    match result {
        Err(CommandError::Refused(DomainError::Forbidden(_))) => {}
        other => panic!("expected FORBIDDEN, got {other:?}"),
    }
}

#[tokio::test]
async fn wallet_commands_are_the_owners_suspension_is_the_admins() {
    let g = given();
    let (alice, mallory, admin) = (who("alice", &[]), who("mallory", &["pharmacy", "insurer"]), who("ops", &["admin"]));
    let wallet = g.wallet(&alice, 100).await;
    let before = g.events().await;
    for command in [debit(1), WalletCommand::Close { reason: None }, WalletCommand::Activate, WalletCommand::Suspend { reason: "x".into() }] {
        assert_forbidden(g.ledger.on_wallet(&mallory, wallet, command, &call()).await);
    }
    assert_forbidden(g.ledger.on_wallet(&alice, wallet, WalletCommand::Suspend { reason: "x".into() }, &call()).await);
    assert_eq!(g.events().await, before, "refusals change nothing");
    g.ledger.on_wallet(&admin, wallet, WalletCommand::Suspend { reason: "review".into() }, &call()).await.unwrap();
    assert_forbidden(g.ledger.on_wallet(&alice, wallet, WalletCommand::Activate, &call()).await);
    g.ledger.on_wallet(&admin, wallet, WalletCommand::Activate, &call()).await.unwrap();
    let after = g.ledger.on_wallet(&alice, wallet, debit(30), &call()).await.unwrap().done().unwrap();
    assert_eq!(after.state.open().unwrap().balance, egp(70));
}

#[tokio::test]
async fn only_caller_commands_reach_a_wallet() {
    let g = given();
    let alice = who("alice", &[]);
    let wallet = g.wallet(&alice, 100).await;
    let hold = WalletCommand::PlaceHold { hold_id: uuid::Uuid::now_v7(), amount: egp(100), currency: Currency::egp() };
    assert!(matches!(g.ledger.on_wallet(&alice, wallet, hold, &call()).await, Err(CommandError::Refused(DomainError::Validation(_)))));
}

#[tokio::test]
async fn a_strangers_refusal_reads_one_event_and_never_waits_for_the_wallets_queue() {
    let g = given();
    let alice = who("alice", &[]);
    let wallet = g.wallet(&alice, 100).await;
    // A command of alice's holds the wallet's per-aggregate lock until released.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
    let (mut released, mut locked) = (Some(released), Some(locked));
    let slow = CommandContext::new("alice", "slow");
    let busy = g.ledger.commands().execute(&slow, async |uow| {
        let _: Wallet = uow.load(wallet.uuid()).await?;
        if let (Some(locked), Some(released)) = (locked.take(), released.take()) {
            locked.send(()).unwrap();
            released.await.ok();
        }
        Ok(())
    });
    let stranger = async {
        is_locked.await.unwrap();
        let loads = g.store.loads.load(Ordering::SeqCst);
        let mallory = who("mallory", &[]);
        let refusal = tokio::time::timeout(std::time::Duration::from_millis(500), g.ledger.on_wallet(&mallory, wallet, debit(1), &call())).await;
        let loaded = g.store.loads.load(Ordering::SeqCst) - loads;
        release.send(()).unwrap();
        (refusal, loaded)
    };
    let (busy, (refusal, loaded)) = tokio::join!(busy, stranger);
    busy.unwrap();
    assert_forbidden(refusal.expect("refused without waiting for the wallet's queue"));
    assert_eq!(loaded, 0, "no stream was loaded to refuse it");
}

#[tokio::test]
async fn transfers_and_payments_move_only_money_the_caller_may_move() {
    let g = given();
    let (alice, shop, mallory) = (who("alice", &[]), who("shop", &[]), who("mallory", &[]));
    let (payer, merchant, own) = (g.wallet(&alice, 100).await, g.wallet(&shop, 0).await, g.wallet(&mallory, 0).await);
    let order = TransferOrder { source: payer, destination: own, amount: egp(10), reference: "r".into(), description: None };
    assert_forbidden(g.ledger.create_transfer(&mallory, order, &call()).await);
    let pay = Authorization { payer, merchant, amount: egp(40), reference: "o".into(), description: None };
    assert_forbidden(g.ledger.authorize_payment(&mallory, pay.clone(), &call()).await);
    let before = g.events().await;
    let payment = g.ledger.authorize_payment(&alice, pay, &call()).await.unwrap().done().unwrap();
    assert!(g.events().await > before);
    let payment_id = PaymentId(payment.state.started().unwrap().terms.payment_id);
    let before = g.events().await;
    for caller in [&mallory, &alice] {
        assert_forbidden(g.ledger.capture_payment(caller, payment_id, None, &call()).await);
        assert_forbidden(g.ledger.void_payment(caller, payment_id, &call()).await);
        assert_forbidden(g.ledger.refund_payment(caller, payment_id, None, "x".into(), &call()).await);
    }
    assert_eq!(g.events().await, before, "refusals change nothing");
    let captured = g.ledger.capture_payment(&shop, payment_id, Some(egp(25)), &call()).await.unwrap().done().unwrap();
    assert_eq!(captured.released, egp(15));
}

#[tokio::test]
async fn cards_are_managed_by_their_sponsor_and_beneficiaries_by_their_holder_too() {
    let g = given();
    let (insurer, rival, patient, admin) = (who("ins-1", &["insurer"]), who("ins-2", &["insurer"]), who("pat", &[]), who("ops", &["admin"]));
    let sponsor = g.wallet(&insurer, 1_000).await;
    let rival_issue = CardIssue {
        holder_id: "pat".into(),
        sponsor_wallet: sponsor,
        plan_name: "Gold".into(),
        coverage_percent: 50,
        monthly_limit: egp(10),
        expires_at: chrono::DateTime::parse_from_rfc3339("2035-01-01T00:00:00Z").unwrap().to_utc(),
    };
    assert_forbidden(g.ledger.issue_medcard(&rival, rival_issue.clone(), &call()).await);
    assert_forbidden(g.ledger.issue_medcard(&who("ins-1", &[]), rival_issue, &call()).await);
    let card = g.card(&insurer, sponsor, "pat").await;
    let beneficiary = Beneficiary { beneficiary_id: uuid::Uuid::now_v7(), name: "Self".into(), relationship: "self".into() };
    assert_forbidden(g.ledger.on_medcard(&rival, card, CardOrder::Suspend { reason: "x".into() }, &call()).await);
    assert_forbidden(g.ledger.on_medcard(&patient, card, CardOrder::ChangeMonthlyLimit { monthly_limit: egp(1) }, &call()).await);
    assert_forbidden(g.ledger.on_medcard(&rival, card, CardOrder::AddBeneficiary(beneficiary.clone()), &call()).await);
    g.ledger.on_medcard(&patient, card, CardOrder::AddBeneficiary(beneficiary), &call()).await.unwrap();
    g.ledger.on_medcard(&admin, card, CardOrder::Suspend { reason: "audit".into() }, &call()).await.unwrap();
}

#[tokio::test]
async fn a_prescription_claims_copayment_comes_only_from_the_card_holders_wallet() {
    let g = given();
    let (insurer, patient, pharmacy, stranger, admin) =
        (who("ins", &["insurer"]), who("pat", &[]), who("rx", &["pharmacy"]), who("stranger", &[]), who("ops", &["admin"]));
    let sponsor = g.wallet(&insurer, 10_000).await;
    let (patient_wallet, pharmacy_wallet, stranger_wallet) = (g.wallet(&patient, 100).await, g.wallet(&pharmacy, 0).await, g.wallet(&stranger, 1_000).await);
    let card = g.card(&insurer, sponsor, "pat").await;
    let filing = |patient_wallet| PrescriptionFiling {
        medcard: card,
        beneficiary: BeneficiaryId::generate(),
        prescription_id: format!("RX-{patient_wallet}"),
        pharmacy_wallet,
        patient_wallet,
        items: vec![crate::claim::ClaimItem { drug_code: "X".into(), drug_name: "X".into(), quantity: 1, unit_price: egp(500) }],
    };
    let before = g.events().await;
    // Whoever files it, admin included.
    for caller in [&pharmacy, &admin] {
        assert_forbidden(g.ledger.submit_prescription_claim(caller, filing(stranger_wallet), &call()).await);
    }
    // Only a pharmacy files, into its own wallet.
    assert_forbidden(g.ledger.submit_prescription_claim(&patient, filing(patient_wallet), &call()).await);
    assert_forbidden(g.ledger.submit_prescription_claim(&who("rx-2", &["pharmacy"]), filing(patient_wallet), &call()).await);
    assert_eq!(g.events().await, before, "nothing was filed");
    g.ledger.submit_prescription_claim(&pharmacy, filing(patient_wallet), &call()).await.unwrap();
}

#[tokio::test]
async fn insurance_claims_are_decided_by_the_sponsoring_insurer() {
    let g = given();
    let (insurer, rival, provider) = (who("ins", &["insurer"]), who("ins-2", &["insurer"]), who("clinic", &[]));
    let sponsor = g.wallet(&insurer, 1_000).await;
    let provider_wallet = g.wallet(&provider, 0).await;
    let card = g.card(&insurer, sponsor, "pat").await;
    let filing = InsuranceClaimFiling { medcard: card, provider_wallet, amount: egp(200), description: "visit".into(), documents: vec![] };
    assert_forbidden(g.ledger.submit_insurance_claim(&rival, filing.clone(), &call()).await);
    let claim = g.ledger.submit_insurance_claim(&provider, filing, &call()).await.unwrap().done().unwrap();
    assert_forbidden(g.ledger.approve_insurance_claim(&rival, claim, None, &call()).await);
    assert_forbidden(g.ledger.reject_insurance_claim(&provider, claim, "no".into(), &call()).await);
    let (settled, approved) = g.ledger.approve_insurance_claim(&insurer, claim, Some(egp(150)), &call()).await.unwrap().done().unwrap();
    assert_eq!((settled.state.submitted().unwrap().status.as_str(), approved), ("SETTLED", egp(150)));
}
