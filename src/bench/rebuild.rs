//! `healthpay bench rebuild`: how fast read models are rebuilt from the events.
//!
//! 1. **Write** (setup, timed but not the measurement): N wallet events — wallets
//!    created with an opening deposit, activated, then credits and debits of
//!    every kind decided by the real aggregate (a debit that would overdraw
//!    becomes a credit) — appended through the `EventStore` port into a fresh
//!    SQLite event store, ten events per commit, wallets interleaved in the log.
//! 2. **Replay** (the measurement): the feed is read from position 0 in batches
//!    and every event goes through the real projectors (`shared::projection`) into
//!    fresh read models: by default `project_batch` (one read and one SQLite
//!    transaction of the read store per batch — version guards and history
//!    idempotency unchanged, see `shared::projection::batch`); with `--per-event`,
//!    `project` one event at a time as the live feed runner does. Reading the next
//!    batch from the event store overlaps with projecting the current one.
//! 3. **Check**: for a sample of wallets, the rebuilt view and history must equal
//!    what the projectors make of the wallet's events — the comparison
//!    `healthpay verify` makes (`shared::verify::compare_rows`).

use super::system::{self, CpuMeter};
use crate::progress::Progress;
use bench_kit::mix::Rng;
use bench_kit::report::{rate, thousands};
use clap::Args;
use shared::aggregate::Aggregate;
use shared::envelope::{encode_event, stream_id, EventEnvelope, EventMetadata};
use shared::money::{Currency, Money};
use shared::ports::{Checkpoints, Commit, EventFeed, EventStore, StreamAppend};
use shared::projection::batch::project_batch;
use shared::projection::{project, Projected, ProjectionError};
use shared::verify::{compare_rows, stored_rows, Options};
use shared::wallet::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store_sqlite::{SqliteEventStore, SqliteReadStore};
use uuid::Uuid;

#[derive(Args, Debug, Clone)]
pub struct RebuildArgs {
    /// Events to write and replay.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Wallets the events belong to (default: one per 100 events).
    #[arg(long)]
    pub wallets: Option<u64>,
    /// Where the stores go. A directory holding an events.db is reused as it is
    /// (nothing is written; its events are replayed); otherwise it must be empty or
    /// absent. Default: a new directory under the temp dir, deleted afterwards.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Events per feed batch (per read-model transaction).
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Project one event at a time (`project`), as the live feed runner does.
    #[arg(long)]
    pub per_event: bool,
    /// Seconds each phase may take; the replay stops there and reports what it did.
    #[arg(long, default_value_t = 60)]
    pub time_limit: u64,
    /// Seed of the generated movements.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep a generated data directory.
    #[arg(long)]
    pub keep: bool,
}

/// Events per commit when writing, and the consumer name of the replay's checkpoint.
const EVENTS_PER_COMMIT: usize = 10;
const CONSUMER: &str = "rebuild";

pub async fn run(args: RebuildArgs) -> Result<(), String> {
    if args.events == 0 || args.batch == 0 {
        return Err("--events and --batch must be at least 1".into());
    }
    super::http::print_machine();
    let (dir, generated) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (system::run_dir("rebuild")?, true),
    };
    let outcome = rebuild(&args, &dir).await;
    if generated && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("rebuild: data kept in {}", dir.display());
    }
    outcome
}

async fn rebuild(args: &RebuildArgs, dir: &Path) -> Result<(), String> {
    let events_path = dir.join("events.db");
    let reused = events_path.exists();
    if !reused && dir.exists() && std::fs::read_dir(dir).map_err(|e| e.to_string())?.next().is_some() {
        return Err(format!("{} is not empty and holds no events.db; give an empty directory, or one from an earlier run", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let events = Arc::new(SqliteEventStore::open(&events_path).map_err(|e| e.to_string())?);
    let mut lines = vec![];
    if reused {
        let head = *events.head().borrow();
        eprintln!("rebuild: reusing the {} events of {}", thousands(head), events_path.display());
        lines.push(format!("{:<16}reused {} ({} events)", "events", events_path.display(), thousands(head)));
    } else {
        let wallets = args.wallets.unwrap_or((args.events / 100).max(1));
        let (written, took) = write_events(&events, args.events, wallets, args.seed, Duration::from_secs(args.time_limit)).await?;
        lines.push(format!(
            "{:<16}{} events of {} wallets in {:.1} s: {} events/s through EventStore::append ({} events per commit, group commit, synchronous=FULL)",
            "write (setup)",
            thousands(written),
            thousands(wallets),
            took.as_secs_f64(),
            rate(written as f64 / took.as_secs_f64()),
            EVENTS_PER_COMMIT
        ));
    }
    let total = *events.head().borrow();

    let read_path = dir.join("rebuild-read.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", read_path.display()));
    }
    let read = Arc::new(SqliteReadStore::open(&read_path).map_err(|e| e.to_string())?);
    let cpu = CpuMeter::start(None);
    let (replayed, took, finished) = replay(&events, &read, total, args).await?;
    let cpu = cpu.stop();
    let how = if args.per_event {
        "one event at a time (`project`), one SQLite transaction per row write".to_string()
    } else {
        format!("`project_batch`, {} events per batch, one read-store transaction per batch", args.batch)
    };
    lines.insert(
        0,
        format!(
            "{:<16}{} events/s  ({} of {} events in {:.1} s{}; {how})",
            "replay",
            rate(replayed as f64 / took.as_secs_f64().max(1e-9)),
            thousands(replayed),
            thousands(total),
            took.as_secs_f64(),
            if finished { "" } else { " — STOPPED at the time limit" }
        ),
    );
    lines.push(format!("{:<16}{}", "check", check(&events, &read, replayed == total).await?));
    lines.push(format!("{:<16}{} (during the replay)", "CPU", cpu));
    println!("== rebuild: {} events replayed from the event store into fresh read models", thousands(total));
    for line in lines {
        println!("{line}");
    }
    println!("reproduce: {}", super::command_line());
    Ok(())
}

/// Generates and appends `count` events; returns how many and how long it took.
async fn write_events(store: &Arc<SqliteEventStore>, count: u64, wallets: u64, seed: u64, limit: Duration) -> Result<(u64, Duration), String> {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut streams: Vec<Generated> = (0..wallets).map(|i| Generated::new(format!("owner-{}", i % 1_000))).collect();
    let base_time = chrono::Utc::now() - chrono::Duration::days(30);
    let mut written = 0u64;
    let progress = Progress::new("write", "events", count);
    while written < count {
        if started.elapsed() > limit {
            return Err(format!("writing the events took longer than {limit:?}; use fewer --events or a larger --time-limit"));
        }
        // One round: up to EVENTS_PER_COMMIT events for every wallet, appended concurrently.
        let mut commits = Vec::with_capacity(streams.len());
        for stream in streams.iter_mut() {
            if written >= count {
                break;
            }
            let room = (count - written).min(EVENTS_PER_COMMIT as u64) as usize;
            let expected_version = stream.version;
            let events = stream.next_events(room, &mut rng, base_time + chrono::Duration::milliseconds(written as i64));
            written += events.len() as u64;
            commits.push(Commit { streams: vec![StreamAppend { stream_id: stream_id(Wallet::TYPE, stream.id), expected_version, events }], idempotency: None });
        }
        let mut tasks = tokio::task::JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(1_024));
        for commit in commits {
            let (store, permits) = (store.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("open semaphore");
                store.append(commit).await.map_err(|e| e.to_string())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(|e| e.to_string())??;
        }
        progress.set(written);
    }
    progress.finish();
    Ok((written, started.elapsed()))
}

/// One wallet's stream as it is generated: its state decides every next event.
struct Generated {
    id: Uuid,
    owner: String,
    state: Wallet,
    version: u64,
}

impl Generated {
    fn new(owner: String) -> Self {
        Generated { id: Uuid::now_v7(), owner, state: Wallet::default(), version: 0 }
    }

    fn next_events(&mut self, room: usize, rng: &mut Rng, at: chrono::DateTime<chrono::Utc>) -> Vec<EventEnvelope> {
        let mut out = Vec::with_capacity(room);
        while out.len() < room {
            let command = self.next_command(rng, room - out.len());
            let decided = self.state.decide(&command).or_else(|_| self.state.decide(&self.credit(rng)));
            let events = decided.expect("a credit on an active wallet is always accepted");
            let command_id = Uuid::now_v7();
            for event in events {
                self.state = std::mem::take(&mut self.state).apply(&event);
                self.version += 1;
                let (event_type, data) = encode_event(&event);
                out.push(EventEnvelope {
                    event_id: Uuid::now_v7(),
                    aggregate_type: Wallet::TYPE.into(),
                    aggregate_id: self.id,
                    version: self.version,
                    event_type,
                    schema_version: Wallet::SCHEMA_VERSION,
                    occurred_at: at + chrono::Duration::microseconds(out.len() as i64),
                    data,
                    metadata: EventMetadata {
                        command_id,
                        correlation_id: format!("bench-{command_id}"),
                        causation_id: None,
                        user_id: self.owner.clone(),
                        idempotency_key: None,
                    },
                });
            }
        }
        out
    }

    fn next_command(&self, rng: &mut Rng, room: usize) -> WalletCommand {
        match &self.state {
            // Created with an opening deposit: two events; alone if there is room for one.
            Wallet::Unopened => WalletCommand::Create {
                wallet_id: self.id,
                owner_id: self.owner.clone(),
                wallet_type: [WalletType::Personal, WalletType::Business, WalletType::Merchant][rng.below(3) as usize],
                currency: Currency::egp(),
                kyc_level: KycLevel::Standard,
                initial_balance: if room >= 2 { Money::from_minor(rng.between(10_000, 1_000_000) as i64) } else { Money::ZERO },
            },
            Wallet::Open(w) if w.status == WalletStatus::Pending => WalletCommand::Activate,
            Wallet::Open(_) if rng.below(2) == 0 => self.credit(rng),
            Wallet::Open(_) => WalletCommand::Debit(Movement {
                amount: Money::from_minor(rng.between(100, 50_000) as i64),
                transaction_type: [DebitType::Payment, DebitType::Withdrawal, DebitType::TransferOut, DebitType::Fee][rng.below(4) as usize],
                reference: format!("PAY-{}", rng.below(1_000_000_000)),
                description: (rng.below(3) == 0).then(|| "pharmacy purchase".to_string()),
                currency: None,
            }),
        }
    }

    fn credit(&self, rng: &mut Rng) -> WalletCommand {
        WalletCommand::Credit(Movement {
            amount: Money::from_minor(rng.between(100, 50_000) as i64),
            transaction_type: [CreditType::Deposit, CreditType::Refund, CreditType::TransferIn, CreditType::Cashback][rng.below(4) as usize],
            reference: format!("DEP-{}", rng.below(1_000_000_000)),
            description: (rng.below(3) == 0).then(|| "claim refund".to_string()),
            currency: None,
        })
    }
}

/// Replays the feed into `read`; returns (events replayed, time, finished).
async fn replay(events: &Arc<SqliteEventStore>, read: &Arc<SqliteReadStore>, total: u64, args: &RebuildArgs) -> Result<(u64, Duration, bool), String> {
    let limit = Duration::from_secs(args.time_limit);
    let started = Instant::now();
    // The reader runs ahead by a few batches: decoding the log overlaps with projecting.
    let (batches, mut incoming) = tokio::sync::mpsc::channel::<Result<Vec<(u64, EventEnvelope)>, String>>(4);
    let reader = {
        let (events, batch) = (events.clone(), args.batch);
        tokio::spawn(async move {
            let mut position = 0;
            loop {
                let next = events.read_after(position, batch).await.map_err(|e| e.to_string());
                let last = next.as_ref().ok().and_then(|b| b.last().map(|(p, _)| *p));
                let end = next.as_ref().is_ok_and(|b| b.is_empty());
                if batches.send(next).await.is_err() || end {
                    return;
                }
                match last {
                    Some(last) => position = last,
                    None => return,
                }
            }
        })
    };
    let progress = Progress::new("replay", "events", total);
    let mut replayed = 0u64;
    let mut finished = true;
    while let Some(batch) = incoming.recv().await {
        let batch = batch?;
        let Some(&(last, _)) = batch.last() else { break };
        let envelopes: Vec<EventEnvelope> = batch.into_iter().map(|(_, e)| e).collect();
        if args.per_event {
            for envelope in &envelopes {
                match project(read.as_ref(), envelope).await {
                    Ok(_) | Err(ProjectionError::Undecodable { .. }) => {}
                    Err(e) => return Err(format!("replay: {e}")),
                }
            }
        } else {
            project_all(read.as_ref(), &envelopes).await?;
        }
        read.save_checkpoint(CONSUMER, last).await.map_err(|e| e.to_string())?;
        replayed += envelopes.len() as u64;
        progress.set(replayed);
        if started.elapsed() > limit {
            finished = replayed == total;
            break;
        }
    }
    let took = started.elapsed();
    reader.abort();
    progress.finish();
    Ok((replayed, took, finished))
}

/// `project_batch` over the whole batch; an event no projector can read is
/// skipped (as the live projections do), any other error stops the replay.
async fn project_all(read: &SqliteReadStore, envelopes: &[EventEnvelope]) -> Result<(), String> {
    let mut rest = envelopes;
    while !rest.is_empty() {
        let outcome = project_batch(read, rest).await;
        let done = outcome.projected.len();
        if outcome.projected.iter().any(|p| *p != Projected::Applied && *p != Projected::Ignored) {
            return Err("replay into fresh read models found an event already applied".into());
        }
        match outcome.error {
            None => return Ok(()),
            Some(ProjectionError::Undecodable { .. }) => rest = &rest[done + 1..],
            Some(e) => return Err(format!("replay: {e}")),
        }
    }
    Ok(())
}

/// A sample of wallets: the rebuilt view equals the fold of the wallet's events.
async fn check(events: &SqliteEventStore, read: &SqliteReadStore, complete: bool) -> Result<String, String> {
    if !complete {
        return Ok("skipped (the replay did not finish)".into());
    }
    let head = *events.head().borrow();
    let step = (head / 200).max(1);
    let mut checked = std::collections::BTreeSet::new();
    let mut position = 0;
    while position < head {
        let Some((_, envelope)) = events.read_after(position, 1).await.map_err(|e| e.to_string())?.into_iter().next() else { break };
        position += step;
        if envelope.aggregate_type != Wallet::TYPE || !checked.insert(envelope.aggregate_id) {
            continue;
        }
        // The rows first, then the events, as `healthpay verify` reads them.
        let stored = stored_rows(read, Wallet::TYPE, envelope.aggregate_id).await.map_err(|e| e.to_string())?;
        let stream = events.load(&envelope.stream_id(), 0).await.map_err(|e| e.to_string())?;
        let compared = compare_rows(&envelope.stream_id(), &stream, &stored, &Options::at(chrono::Utc::now())).await;
        if compared.behind || !compared.findings.is_empty() {
            let findings: Vec<String> = compared.findings.iter().map(|f| f.detail.clone()).collect();
            return Err(format!(
                "wallet {}: the rebuilt read model {} its events: {}",
                envelope.aggregate_id,
                if compared.behind { "is behind" } else { "differs from" },
                findings.join("; ")
            ));
        }
    }
    Ok(format!("{} wallets sampled across the log: view and history equal to the projection of their events (shared::verify)", checked.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_streams_are_valid_histories_of_the_aggregate() {
        let mut rng = Rng::new(4);
        let mut stream = Generated::new("owner".into());
        let mut events = stream.next_events(1, &mut rng, chrono::Utc::now());
        events.extend(stream.next_events(40, &mut rng, chrono::Utc::now()));
        assert_eq!(events.len(), 41);
        assert!(events.iter().enumerate().all(|(i, e)| e.version == i as u64 + 1));
        assert_eq!((events[0].event_type.as_str(), events[1].event_type.as_str()), ("WalletCreated", "WalletActivated"), "one room: created without a deposit");
        let folded = events.iter().fold(Wallet::default(), |w, e| w.apply(&e.decode::<WalletEvent>().unwrap()));
        assert_eq!(folded, stream.state);
        assert!(folded.open().unwrap().balance >= Money::ZERO);
        let kinds: std::collections::BTreeSet<_> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert!(kinds.contains("WalletCredited") && kinds.contains("WalletDebited"), "{kinds:?}");
    }
}
