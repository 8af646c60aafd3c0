//! A hot wallet loaded cold from SQLite: its whole stream against its snapshot plus
//! the tail (BENCHMARKS.md: `HEALTHPAY_SNAPSHOT_EVENTS=100000 cargo test --release
//! -p store-sqlite --test snapshots -- --nocapture`).

mod common;

use shared::conformance::snapshot_load;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wallet_loads_from_its_snapshot_and_the_tail() {
    let fresh = common::event_store();
    let count = snapshot_load::events(20_000);
    let stream_id = snapshot_load::seed(&fresh.store, count, 1_000).await;
    let ((full, full_events), (fast, tail_events)) = snapshot_load::measure(&fresh.store, &stream_id).await;
    assert_eq!(full_events as u64, count);
    assert!(tail_events < 200, "{tail_events} events after the snapshot");
    eprintln!(
        "sqlite, {count}-event wallet, cold: whole stream {:.1} ms ({full_events} events), snapshot + tail {:.2} ms ({tail_events} events): {:.0}x",
        full.as_secs_f64() * 1e3,
        fast.as_secs_f64() * 1e3,
        full.as_secs_f64() / fast.as_secs_f64()
    );
}
