//! Events stored under an older schema version keep loading: a committed stream of
//! the old shape (`fixtures/wallet-stream-v1.json`, a wallet suspended before
//! suspensions had a category) is read by the command side and the projections as
//! if it had been written today.

use shared::aggregate::Aggregate;
use shared::command::{CommandContext, CommandService};
use shared::envelope::EventEnvelope;
use shared::memory::{MemoryEventStore, MemoryReadStore};
use shared::money::Money;
use shared::ports::{Commit, EventStore, StreamAppend, WalletViews};
use shared::wallet::{SuspensionCategory, Wallet, WalletCommand, WalletEvent, WalletStatus};
use std::sync::Arc;

fn fixture() -> Vec<EventEnvelope> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wallet-stream-v1.json")).unwrap();
    serde_json::from_str(&text).expect("the old envelopes still parse")
}

#[test]
fn a_version_1_suspension_reads_with_the_category_its_reason_names() {
    let stream = fixture();
    assert!(stream.iter().all(|e| e.schema_version == 1));
    assert!(stream[3].data.get("category").is_none(), "stored without one");
    let suspended: WalletEvent = stream[3].decode().unwrap();
    assert_eq!(suspended, WalletEvent::WalletSuspended { reason: "fraud: velocity".into(), category: SuspensionCategory::Fraud });
    let wallet = stream.iter().fold(Wallet::default(), |w, e| w.apply(&e.decode().unwrap()));
    let open = wallet.open().unwrap();
    assert_eq!((open.status, open.balance), (WalletStatus::Suspended, Money::from_minor(1_500)));
}

#[tokio::test]
async fn the_projections_and_the_command_side_read_the_old_stream() {
    let stream = fixture();
    let read = MemoryReadStore::default();
    for envelope in &stream {
        shared::projection::project(&read, envelope).await.unwrap();
    }
    let view = read.wallet(stream[0].aggregate_id).await.unwrap().unwrap();
    assert_eq!((view.status.as_str(), view.balance, view.version), ("suspended", Money::from_minor(1_500), 4));

    let events = Arc::new(MemoryEventStore::default());
    let append = StreamAppend { stream_id: stream[0].stream_id(), expected_version: 0, events: stream.clone() };
    events.append(Commit { streams: vec![append], idempotency: None }).await.unwrap();
    let commands = CommandService::new(events.clone(), Arc::new(shared::clock::SystemClock));
    let id = stream[0].aggregate_id;
    let lifted = commands.execute(&CommandContext::new("ops", "t"), async |uow| uow.handle::<Wallet>(id, &WalletCommand::Activate).await).await.unwrap();
    assert_eq!(lifted.open().unwrap().status, WalletStatus::Active);
    let suspend = WalletCommand::Suspend { reason: "kyc review".into() };
    commands.execute(&CommandContext::new("ops", "t"), async |uow| uow.handle::<Wallet>(id, &suspend).await).await.unwrap();
    let stored = events.load(&stream[0].stream_id(), 4).await.unwrap();
    assert!(stored.iter().all(|e| e.schema_version == Wallet::SCHEMA_VERSION), "new events are written in today's shape");
    assert_eq!(stored.last().unwrap().data["category"], "kyc");
}
