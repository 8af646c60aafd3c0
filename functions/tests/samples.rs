//! Every sample in `events/` runs through the handler of the function it is for, so
//! the samples never rot. The state they refer to (wallets, a transfer) is seeded
//! in memory; each sample runs against a fresh copy of it.

use api::{App, Route};
use shared::clock::SystemClock;
use shared::command::{CommandContext, CommandService};
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
    for (id, balance, active) in [(W, 100_000, true), (W2, 0, true), (P, 0, false), (Z, 0, true)] {
        let id = Uuid::parse_str(id).unwrap();
        let create = WalletCommand::Create {
            wallet_id: id,
            owner_id: "alice".into(),
            wallet_type: WalletType::Personal,
            currency: Currency::egp(),
            kyc_level: KycLevel::Basic,
            initial_balance: Money::from_minor(balance),
        };
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
    let read = Arc::new(MemoryReadStore::default());
    for (_, envelope) in events.read_after(0, 1_000).await.unwrap() {
        project(read.as_ref(), &envelope).await.unwrap();
    }
    Seeded { commands, read }
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
        (Route::Health, 200),
    ];
    assert_eq!(expected.len(), Route::ALL.len(), "one sample per route");
    for (route, status) in expected {
        let file = format!("api-{}.json", route.name().replace('.', "-"));
        let request = lambda_http::request::from_str(&read_sample(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let state = seeded().await;
        let app = App { commands: state.commands, read: state.read, metrics: Arc::new(api::NoMetrics), health: Arc::new(AlwaysHealthy) };
        let response = api::handle(&app, route, request).await;
        let body = String::from_utf8_lossy(response.body().as_ref()).to_string();
        assert_eq!(response.status().as_u16(), status, "{file}: {body}");
        assert_eq!(response.headers()["x-correlation-id"], format!("sample-{}", route.name().replace('.', "-")).as_str(), "{file}");
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
