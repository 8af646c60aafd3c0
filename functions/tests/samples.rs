//! Every sample in `events/` runs through the handler of the function it is for, so
//! the samples never rot. The state they refer to (wallets, a transfer) is seeded
//! in memory; each sample runs against a fresh copy of it.

use api::{App, Route};
use shared::claim::{Claim, ClaimCommand, ClaimItem, ClaimTerms};
use shared::clock::SystemClock;
use shared::command::{CommandContext, CommandService};
use shared::insurance_claim::{InsuranceClaim, InsuranceClaimCommand, InsuranceClaimTerms};
use shared::medcard::{Beneficiary, CardTerms, MedCard, MedCardCommand};
use shared::memory::{MemoryEventStore, MemoryReadStore};
use shared::money::{Currency, Money};
use shared::ports::EventFeed;
use shared::projection::project;
use shared::saga::transfer::{StepInput, TransferSteps};
use shared::transfer::{Transfer, TransferCommand, TransferTerms};
use shared::wallet::{KycLevel, Wallet, WalletCommand, WalletType};
use std::sync::Arc;
use uuid::Uuid;

const W: &str = "0195f3a0-0000-7000-8000-000000000001";
const W2: &str = "0195f3a0-0000-7000-8000-000000000002";
const P: &str = "0195f3a0-0000-7000-8000-000000000003";
const Z: &str = "0195f3a0-0000-7000-8000-000000000004";
/// The card holder's (bob's) wallet: a claim's copayment comes only from it.
const Y: &str = "0195f3a0-0000-7000-8000-000000000005";
const T: &str = "0195f3a0-0000-7000-8000-0000000000a1";

fn read_sample(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Seeded {
    commands: Arc<CommandService>,
    read: Arc<MemoryReadStore>,
}

async fn seeded() -> Seeded {
    let events = Arc::new(MemoryEventStore::default());
    let commands = Arc::new(CommandService::new(events.clone(), Arc::new(SystemClock)));
    let ctx = CommandContext::new("alice", "seed");
    for (id, owner, balance, active) in
        [(W, "alice", 100_000, true), (W2, "alice", 0, true), (P, "alice", 0, false), (Z, "alice", 0, true), (Y, "bob", 50_000, true)]
    {
        let id = Uuid::parse_str(id).unwrap();
        let create = WalletCommand::open_personal(id, owner, Money::from_minor(balance));
        commands.execute(&ctx, async move |uow| uow.handle::<Wallet>(id, &create).await).await.unwrap();
        if active {
            commands.execute(&ctx, async move |uow| uow.handle::<Wallet>(id, &WalletCommand::Activate).await).await.unwrap();
        }
    }
    let transfer = Uuid::parse_str(T).unwrap();
    let terms = TransferTerms {
        transfer_id: transfer,
        source_wallet_id: Uuid::parse_str(W).unwrap(),
        destination_wallet_id: Uuid::parse_str(W2).unwrap(),
        amount: Money::from_minor(10_000),
        currency: Currency::egp(),
        reference: "TXF-1".into(),
        description: None,
        initiated_by: "alice".into(),
    };
    commands.execute(&ctx, async move |uow| uow.handle::<Transfer>(transfer, &TransferCommand::Initiate(terms.clone())).await).await.unwrap();
    seed_cards_and_claims(&commands, &ctx).await;
    seed_payments(&commands, &ctx).await;
    seed_fraud_alert(&commands).await;
    let read = Arc::new(MemoryReadStore::default());
    for (_, envelope) in events.read_after(0, 1_000).await.unwrap() {
        project(read.as_ref(), &envelope).await.unwrap();
    }
    Seeded { commands, read }
}

const M: &str = "0195f3a0-0000-7000-8000-0000000000c1";
const M2: &str = "0195f3a0-0000-7000-8000-0000000000c2";
const B: &str = "0195f3a0-0000-7000-8000-0000000000b1";
const C: &str = "0195f3a0-0000-7000-8000-0000000000d1";
const I: &str = "0195f3a0-0000-7000-8000-0000000000e1";

/// Card M (active, sponsored by W, beneficiary B) and card M2 (issued only), a
/// prescription claim C on M filed into W2, an insurance claim I on M by W2.
async fn seed_cards_and_claims(commands: &CommandService, ctx: &CommandContext) {
    let id = |text: &str| Uuid::parse_str(text).unwrap();
    for (card, active) in [(M, true), (M2, false)] {
        let terms = CardTerms {
            medcard_id: id(card),
            holder_id: "bob".into(),
            sponsor_wallet_id: id(W),
            plan_name: "Gold".into(),
            coverage_percent: 80,
            monthly_limit: Money::from_minor(100_000),
            currency: Currency::egp(),
            expires_at: chrono::Utc::now() + chrono::Duration::days(365),
            issued_by: "alice".into(),
        };
        let mut card_commands = vec![MedCardCommand::Issue(terms)];
        if active {
            card_commands.push(MedCardCommand::Activate);
            card_commands.push(MedCardCommand::AddBeneficiary(Beneficiary { beneficiary_id: id(B), name: "Bob".into(), relationship: "self".into() }));
        }
        for command in card_commands {
            commands.execute(ctx, async |uow| uow.handle::<MedCard>(id(card), &command).await).await.unwrap();
        }
    }
    let claim = ClaimTerms {
        claim_id: id(C),
        medcard_id: id(M),
        beneficiary_id: id(B),
        prescription_id: "RX-1001".into(),
        pharmacy_wallet_id: id(W2),
        patient_wallet_id: id(Y),
        items: vec![ClaimItem { drug_code: "PAN500".into(), drug_name: "Panadol".into(), quantity: 2, unit_price: Money::from_minor(15_000) }],
        submitted_by: "alice".into(),
        holder_id: Some("bob".into()),
    };
    commands.execute(ctx, async |uow| uow.handle::<Claim>(id(C), &ClaimCommand::Submit(claim.clone())).await).await.unwrap();
    let insurance = InsuranceClaimTerms {
        claim_id: id(I),
        medcard_id: id(M),
        provider_wallet_id: id(W2),
        amount: Money::from_minor(25_000),
        currency: Currency::egp(),
        description: "Consultation".into(),
        documents: vec![],
        submitted_by: "alice".into(),
    };
    commands.execute(ctx, async |uow| uow.handle::<InsuranceClaim>(id(I), &InsuranceClaimCommand::Submit(insurance.clone())).await).await.unwrap();
}

/// The trigger of the open fraud alert on W (high value); the alert's id is derived
/// from wallet, rule and trigger, as the samples' `alertId` is.
const FRAUD_TRIGGER: &str = "0195f3a0-0000-7000-8000-0000000000a9";
const FRAUD_ALERT: &str = "56b34bef-cf65-591d-a548-c793ac739df6";

async fn seed_fraud_alert(commands: &Arc<CommandService>) {
    use shared::fraud::{Finding, Rule};
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap().to_utc();
    let finding = Finding {
        wallet_id: Uuid::parse_str(W).unwrap(),
        rule: Rule::HighValue,
        severity: Rule::HighValue.severity(),
        window_start: at,
        window_end: at,
        observed_count: 1,
        observed_amount: Money::from_minor(1_200_000),
        threshold: "one outgoing movement of 10000.00 or more".into(),
        trigger_event_id: Uuid::parse_str(FRAUD_TRIGGER).unwrap(),
    };
    assert_eq!(finding.alert_id().to_string(), FRAUD_ALERT, "the samples name this alert");
    let ledger = shared::app::Ledger::new(commands.clone(), shared::payment_expiry::DEFAULT_PAYMENT_EXPIRY);
    ledger.raise_fraud_alert(&finding, &CommandContext::new(shared::app::FRAUD_DETECTOR, "seed")).await.unwrap();
}

const PA: &str = "0195f3a0-0000-7000-8000-0000000000f1";
const PC: &str = "0195f3a0-0000-7000-8000-0000000000f2";
const PE: &str = "0195f3a0-0000-7000-8000-0000000000f3";

/// Payments of 100.00 from W to W2: PA authorised, PC captured, PE authorised and
/// already past its expiry (for the expiry sweep's sample).
async fn seed_payments(commands: &CommandService, ctx: &CommandContext) {
    use shared::payment::{Payment, PaymentCommand, PaymentTerms};
    let id = |text: &str| Uuid::parse_str(text).unwrap();
    let now = chrono::Utc::now();
    for (payment, expires_at) in [(PA, now + chrono::Duration::days(7)), (PC, now + chrono::Duration::days(7)), (PE, now - chrono::Duration::minutes(1))] {
        let terms = PaymentTerms {
            payment_id: id(payment),
            payer_wallet_id: id(W),
            merchant_wallet_id: id(W2),
            amount: Money::from_minor(10_000),
            currency: Currency::egp(),
            reference: format!("ORDER-{}", &payment[payment.len() - 2..]),
            description: None,
            expires_at,
            authorized_by: "alice".into(),
        };
        commands
            .execute(ctx, async |uow| {
                uow.handle::<Payment>(id(payment), &PaymentCommand::Authorize(terms.clone())).await?;
                let hold = WalletCommand::PlaceHold { hold_id: id(payment), amount: terms.amount, currency: Currency::egp() };
                uow.handle::<Wallet>(id(W), &hold).await
            })
            .await
            .unwrap();
    }
    commands
        .execute(ctx, async |uow| {
            let (payment, amount) = (id(PC), Money::from_minor(10_000));
            uow.handle::<Payment>(payment, &PaymentCommand::Capture { amount: None, now: uow.now() }).await?;
            let capture = WalletCommand::CaptureHold { hold_id: payment, amount, reference: "ORDER-f2".into(), description: None };
            uow.handle::<Wallet>(id(W), &capture).await?;
            let credit = shared::wallet::Movement {
                amount,
                transaction_type: shared::wallet::CreditType::TransferIn,
                reference: "ORDER-f2".into(),
                description: None,
                currency: Some(Currency::egp()),
            };
            uow.handle::<Wallet>(id(W2), &WalletCommand::Credit(credit)).await
        })
        .await
        .unwrap();
}

struct AlwaysHealthy;

#[async_trait::async_trait]
impl api::HealthCheck for AlwaysHealthy {
    async fn components(&self) -> Vec<(String, bool, serde_json::Value)> {
        vec![("eventStore".into(), true, serde_json::json!({}))]
    }
}

#[tokio::test]
async fn every_api_sample_gets_the_answer_the_contract_promises() {
    let expected = [
        (Route::CreateWallet, 201),
        (Route::ActivateWallet, 200),
        (Route::SuspendWallet, 200),
        (Route::CloseWallet, 200),
        (Route::CreditWallet, 200),
        (Route::DebitWallet, 200),
        (Route::CreateTransfer, 202),
        (Route::GetWallet, 200),
        (Route::ListTransactions, 200),
        (Route::GetBalance, 200),
        (Route::MyWallets, 200),
        (Route::GetTransfer, 200),
        (Route::AuthorizePayment, 201),
        (Route::CapturePayment, 200),
        (Route::VoidPayment, 200),
        (Route::RefundPayment, 200),
        (Route::GetPayment, 200),
        (Route::IssueMedCard, 201),
        (Route::ActivateMedCard, 200),
        (Route::SuspendMedCard, 200),
        (Route::ExpireMedCard, 200),
        (Route::AddBeneficiary, 200),
        (Route::RemoveBeneficiary, 200),
        (Route::ChangeMedCardLimit, 200),
        (Route::GetMedCard, 200),
        (Route::MedCardSpend, 200),
        (Route::MedCardClaims, 200),
        (Route::SubmitPrescriptionClaim, 202),
        (Route::GetClaim, 200),
        (Route::PharmacyClaims, 200),
        (Route::MyClaims, 200),
        (Route::SubmitInsuranceClaim, 201),
        (Route::ApproveInsuranceClaim, 200),
        (Route::RejectInsuranceClaim, 200),
        (Route::GetInsuranceClaim, 200),
        (Route::FraudAlerts, 200),
        (Route::GetFraudAlert, 200),
        (Route::ResolveFraudAlert, 200),
        (Route::GraphQL, 200),
        (Route::Health, 200),
    ];
    assert_eq!(expected.len(), Route::ALL.len(), "one sample per route");
    for (route, status) in expected {
        let file = format!("api-{}.json", route.binary());
        let request = lambda_http::request::from_str(&read_sample(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let state = seeded().await;
        let app = App::new(
            state.commands,
            state.read,
            Arc::new(api::NoMetrics),
            Arc::new(AlwaysHealthy),
            Arc::new(shared::ports::NoRateLimits),
            shared::payment_expiry::DEFAULT_PAYMENT_EXPIRY,
        );
        let response = api::handle(&app, route, request).await;
        let body = String::from_utf8_lossy(response.body().as_ref()).to_string();
        assert_eq!(response.status().as_u16(), status, "{file}: {body}");
        assert_eq!(response.headers()["x-correlation-id"], format!("sample-{}", route.binary()).as_str(), "{file}");
    }
}

#[tokio::test]
async fn the_step_sample_runs_every_transfer_step() {
    let state = seeded().await;
    let steps = TransferSteps::new(state.commands.clone());
    let input: StepInput = serde_json::from_str(&read_sample("step-input.json")).unwrap();
    // Debit, credit, and a late compensation that finds the transfer complete and leaves it so.
    for (function, status) in [("transfer-debit-source", "PENDING"), ("transfer-credit-destination", "COMPLETED"), ("transfer-compensate", "COMPLETED")] {
        let event = lambda_runtime::LambdaEvent::new(serde_json::to_value(&input).unwrap(), lambda_runtime::Context::default());
        let outcome = functions::steps::run_step(&steps, function, event).await.unwrap();
        assert_eq!((outcome.accepted, outcome.status.as_str()), (true, status), "{function}");
    }
}

/// The claim of the claim-step samples (`step-claim-*.json`): 2 × 150 + 1 × 100 on a
/// card covering 80 %, submitted with its prescription, its pharmacy wallet active or not.
async fn seeded_claim(pharmacy_active: bool) -> Arc<CommandService> {
    use shared::claim::{Claim, ClaimCommand, ClaimItem, ClaimTerms};
    use shared::medcard::{Beneficiary, CardTerms, MedCard, MedCardCommand};
    use shared::prescription::{self, Prescription, PrescriptionCommand};
    let id = |n: u128| Uuid::from_u128(0x0195f3a0_0000_7000_8000_00000000d200 + n);
    let (pharmacy, patient, sponsor, card, beneficiary) = (id(1), id(2), id(3), id(4), id(5));
    let claim: Uuid = serde_json::from_str::<serde_json::Value>(&read_sample("step-claim-price.json")).unwrap()["claimId"].as_str().unwrap().parse().unwrap();
    let commands = Arc::new(CommandService::new(Arc::new(MemoryEventStore::default()), Arc::new(SystemClock)));
    let ctx = CommandContext::new("admin", "seed");
    for (wallet, balance, active) in [(pharmacy, 0, pharmacy_active), (patient, 50_000, true), (sponsor, 1_000_000, true)] {
        let create = WalletCommand::Create {
            wallet_id: wallet,
            owner_id: "alice".into(),
            wallet_type: WalletType::Business,
            currency: Currency::egp(),
            kyc_level: KycLevel::Full,
            initial_balance: Money::from_minor(balance),
        };
        let mut wallet_commands = vec![create];
        if active {
            wallet_commands.push(WalletCommand::Activate);
        }
        for command in wallet_commands {
            commands.execute(&ctx, async |uow| uow.handle::<Wallet>(wallet, &command).await).await.unwrap();
        }
    }
    let terms = CardTerms {
        medcard_id: card,
        holder_id: "bob".into(),
        sponsor_wallet_id: sponsor,
        plan_name: "Gold".into(),
        coverage_percent: 80,
        monthly_limit: Money::from_minor(100_000),
        currency: Currency::egp(),
        expires_at: chrono::Utc::now() + chrono::Duration::days(365),
        issued_by: "insurer-1".into(),
    };
    let beneficiary_entry = Beneficiary { beneficiary_id: beneficiary, name: "Bob".into(), relationship: "self".into() };
    for command in [MedCardCommand::Issue(terms), MedCardCommand::Activate, MedCardCommand::AddBeneficiary(beneficiary_entry)] {
        commands.execute(&ctx, async |uow| uow.handle::<MedCard>(card, &command).await).await.unwrap();
    }
    let item =
        |code: &str, quantity, unit_price| ClaimItem { drug_code: code.into(), drug_name: code.into(), quantity, unit_price: Money::from_minor(unit_price) };
    let terms = ClaimTerms {
        claim_id: claim,
        medcard_id: card,
        beneficiary_id: beneficiary,
        prescription_id: "RX-2002".into(),
        pharmacy_wallet_id: pharmacy,
        patient_wallet_id: patient,
        items: vec![item("PAN500", 2, 15_000), item("AMOX250", 1, 10_000)],
        submitted_by: "pharmacy-1".into(),
        holder_id: None,
    };
    commands
        .execute(&ctx, async |uow| {
            let claim_prescription = PrescriptionCommand::Claim { prescription_id: terms.prescription_id.clone(), claim_id: claim };
            uow.handle::<Prescription>(prescription::stream_uuid(&terms.prescription_id), &claim_prescription).await?;
            uow.handle::<Claim>(claim, &ClaimCommand::Submit(terms.clone())).await
        })
        .await
        .unwrap();
    commands
}

#[tokio::test]
async fn the_claim_step_samples_run_every_claim_step() {
    let run = async |commands: &Arc<CommandService>, function: &str| {
        let steps = shared::saga::claim::ClaimSteps::new(commands.clone());
        let sample = format!("step-{function}.json");
        let event = lambda_runtime::LambdaEvent::new(serde_json::from_str(&read_sample(&sample)).unwrap(), lambda_runtime::Context::default());
        let outcome = functions::steps::run_step(&steps, function, event).await.unwrap_or_else(|e| panic!("{sample}: {e:?}"));
        (outcome.accepted, outcome.status, outcome.reason)
    };
    let ok = |status: &str| (true, status.to_string(), None);
    // Every step in turn approves the claim; a late compensation finds it approved and leaves it so.
    let approved = seeded_claim(true).await;
    for function in ["claim-price", "claim-reserve-coverage", "claim-debit-copayment", "claim-debit-sponsor"] {
        assert_eq!(run(&approved, function).await, ok("PENDING"), "{function}");
    }
    assert_eq!(run(&approved, "claim-credit-pharmacy").await, ok("APPROVED"));
    assert_eq!(run(&approved, "claim-compensate").await, ok("APPROVED"));
    // A pharmacy wallet that is not active refuses the credit: each compensation pass undoes one step.
    let refused = seeded_claim(false).await;
    for function in ["claim-price", "claim-reserve-coverage", "claim-debit-copayment", "claim-debit-sponsor"] {
        assert_eq!(run(&refused, function).await, ok("PENDING"), "{function}");
    }
    let reason = Some("WALLET_NOT_ACTIVE".to_string());
    assert_eq!(run(&refused, "claim-credit-pharmacy").await, (false, "PENDING".into(), reason.clone()));
    for status in ["PENDING", "PENDING", "REJECTED"] {
        assert_eq!(run(&refused, "claim-compensate").await, (false, status.into(), reason.clone()));
    }
}

#[tokio::test]
async fn the_schedule_sample_expires_the_due_authorisation_and_only_it() {
    let state = seeded().await;
    let event: serde_json::Value = serde_json::from_str(&read_sample("payment-expiry-schedule.json")).unwrap();
    let answer = functions::payment_expiry::sweep(&state.commands, state.read.as_ref(), event.clone()).await.unwrap();
    assert_eq!(answer, serde_json::json!({"expired": [PE], "skipped": 0, "failed": 0, "more": false}));
    // The read model still lists PE until it projects the expiry: a second sweep skips it.
    let again = functions::payment_expiry::sweep(&state.commands, state.read.as_ref(), event).await.unwrap();
    assert_eq!((again["expired"].clone(), again["skipped"].clone()), (serde_json::json!([]), serde_json::json!(1)));
}
