//! `healthpay bench dynamodb`: the server on `--backend dynamodb`, and our append
//! path side by side with the cqrs-es + dynamo-es peer, on one DynamoDB endpoint.
//!
//! 1. **Setup**: a `healthpay serve --backend dynamodb` (fresh tables
//!    `bench-<id>-*`) creates, funds and activates the wallets; then it is stopped.
//! 2. **Cold**: a *new* server process — its command service has never seen these
//!    wallets — gets exactly one credit per wallet. DynamoDB requests per command
//!    are read from its `healthpay_dynamodb_requests_total{client="commands"}`
//!    (the event store's client: loads, appends, idempotency lookups) before and
//!    after, divided by the commands answered. Its `read` and `streams` clients —
//!    projections, saga executions, the stream poller, which in this process also
//!    replays the setup's stream records from the trim horizon — are reported apart.
//! 3. **Warm**: the same server, the mix for `--duration` seconds on the same
//!    wallets (now in the command service's cache): throughput, latency, errors,
//!    projection lag, requests per command.
//! 4. **Ours in-process**: the same workload (clients, wallets, mix, seed,
//!    duration) straight through our `CommandService` on `DynamoEventStore` —
//!    the layer the peer's `CqrsFramework` sits at, without HTTP and without the
//!    read side sharing the emulator.
//! 5. **Peer**: `healthpay-bench-peer` (bench/peer), the same workload through
//!    cqrs-es + dynamo-es, its own tables on the same endpoint.
//!
//! Then the table and the ratios. Tables are deleted at the end.

use super::http::{run_load, setup_wallets, Api, LagSettings, Load, LoadReport};
use super::system::{self, Spawned};
use bench_kit::driver::{drive, Client as BenchClient, Outcome, Phase, PhaseResult};
use bench_kit::mix::{Mix, Op, Rng};
use bench_kit::report::{markdown_table, micros, phase_report, rate, ratio, thousands};
use clap::{Args, ValueEnum};
use shared::clock::SystemClock;
use shared::command::{CommandContext, CommandError, CommandService};
use shared::money::Money;
use shared::wallet::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Args, Debug, Clone)]
pub struct DynamoArgs {
    /// The DynamoDB endpoint (loopback only), e.g. LocalStack's http://127.0.0.1:4566.
    #[arg(long, env = "HEALTHPAY_DYNAMODB_ENDPOINT")]
    pub endpoint_url: String,
    /// Concurrent clients in every phase.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Wallets (the cold phase sends one command to each).
    #[arg(long, default_value_t = 256)]
    pub wallets: usize,
    /// Command weights of the warm phase and of the in-process and peer runs
    /// (the peer has no transfers).
    #[arg(long, default_value = "credit=50,debit=50")]
    pub mix: Mix,
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Measured seconds of each timed phase (at most 60 unless --long).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    #[arg(long)]
    pub long: bool,
    /// Probe the projection lag of every N-th acknowledged command of the warm phase (0: never).
    #[arg(long, default_value_t = 20)]
    pub lag_every: u64,
    #[arg(long, default_value_t = 4)]
    pub lag_probes: usize,
    #[arg(long, default_value_t = 2)]
    pub lag_poll_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// RUST_LOG of the spawned servers (their logs go to files).
    #[arg(long, default_value = "info")]
    pub server_rust_log: String,
    /// The peer executable (default: healthpay-bench-peer next to this one; build it
    /// with `cargo build --release -p bench-peer`).
    #[arg(long)]
    pub peer_bin: Option<PathBuf>,
    /// How the peer keeps aggregates (dynamo-es `event` store or `aggregate` store).
    #[arg(long, value_enum, default_value_t = PeerStore::Event)]
    pub peer_store: PeerStore,
    #[arg(long)]
    pub skip_peer: bool,
    #[arg(long)]
    pub skip_in_process: bool,
    /// Skip the server phases (setup, cold, warm): only ours in-process and the peer.
    #[arg(long)]
    pub skip_server: bool,
    #[arg(long)]
    pub keep_tables: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStore {
    Event,
    Aggregate,
}

/// Sets test credentials for an emulator when none are configured (before the
/// runtime starts, while the process has one thread).
pub fn default_emulator_credentials() {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() && std::env::var_os("AWS_PROFILE").is_none() {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        std::env::set_var("AWS_REGION", store_dynamodb::DEFAULT_REGION);
    }
}

pub async fn run(args: DynamoArgs) -> Result<(), String> {
    if !system::is_loopback_url(&args.endpoint_url) {
        return Err(format!("{} is not a loopback endpoint; the benchmark only talks to 127.0.0.1", args.endpoint_url));
    }
    if args.clients == 0 || args.wallets == 0 {
        return Err("--clients and --wallets must be at least 1".into());
    }
    if args.duration > 60 && !args.long {
        return Err("--duration above 60 s needs --long".into());
    }
    let peer_bin = match &args.peer_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("healthpay-bench-peer"),
    };
    if !args.skip_peer && !peer_bin.exists() {
        return Err(format!("no peer at {} (cargo build --release -p bench-peer, or --peer-bin, or --skip-peer)", peer_bin.display()));
    }
    super::http::print_machine();
    let id = Uuid::new_v4().simple().to_string()[..8].to_string();
    let prefix = format!("bench-{id}");
    let dir = system::run_dir("dynamodb")?;
    let client = store_dynamodb::client_from_env(Some(&args.endpoint_url)).await;
    let tables = store_dynamodb::TableNames::prefixed(&prefix);
    let outcome = measure(&args, &peer_bin, &prefix, &dir).await;
    if !args.keep_tables {
        let _ = store_dynamodb::delete_tables(&client, &tables).await;
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("bench: tables {prefix}-* and {} kept", dir.display());
    }
    outcome
}

async fn measure(args: &DynamoArgs, peer_bin: &std::path::Path, prefix: &str, dir: &std::path::Path) -> Result<(), String> {
    let server = if args.skip_server {
        let client = store_dynamodb::client_from_env(Some(&args.endpoint_url)).await;
        store_dynamodb::create_tables(&client, &store_dynamodb::TableNames::prefixed(prefix)).await.map_err(|e| e.to_string())?;
        None
    } else {
        Some(server_phases(args, prefix, dir).await?)
    };

    // 4. Ours in-process.
    let ours = if args.skip_in_process { None } else { Some(in_process(args, prefix).await?) };

    // 5. The peer.
    let peer = if args.skip_peer { None } else { Some(run_peer(args, peer_bin, prefix).await?) };

    // The summary.
    let per_command = |r: &LoadReport| r.dynamodb_per_command("commands").map_or("n/a".into(), |v| format!("{v:.3}"));
    let mut rows = vec![];
    if let Some((cold, warm)) = &server {
        rows.push(vec![
            "ours, cold (new server process)".into(),
            rate(cold.result.ok_per_second()),
            micros(cold.result.latency.summary().p50_us),
            micros(cold.result.latency.summary().p99_us),
            per_command(cold),
            cold.result.errors.to_string(),
            "".into(),
        ]);
        rows.push(vec![
            "ours, warm: HTTP server, read side on".into(),
            rate(warm.result.ok_per_second()),
            micros(warm.result.latency.summary().p50_us),
            micros(warm.result.latency.summary().p99_us),
            per_command(warm),
            warm.result.errors.to_string(),
            peer.as_ref().map_or("".into(), |p| ratio(warm.result.ok_per_second(), p.per_second)),
        ]);
    }
    if let Some((result, requests)) = &ours {
        rows.push(vec![
            "ours, warm: CommandService in-process".into(),
            rate(result.ok_per_second()),
            micros(result.latency.summary().p50_us),
            micros(result.latency.summary().p99_us),
            format!("{:.3}", *requests as f64 / result.answered_all.max(1) as f64),
            result.errors.to_string(),
            peer.as_ref().map_or("".into(), |p| ratio(result.ok_per_second(), p.per_second)),
        ]);
    }
    if let Some(peer) = &peer {
        rows.push(vec![
            format!("peer: cqrs-es + dynamo-es ({} store)", peer.store),
            rate(peer.per_second),
            micros(peer.p50_us),
            micros(peer.p99_us),
            format!("{:.3}", peer.requests_per_command),
            peer.errors.clone(),
            "1.00×".into(),
        ]);
    }
    println!(
        "== DynamoDB at {}: {} clients, {} wallets, mix {}, {} s measured per timed run",
        args.endpoint_url, args.clients, args.wallets, args.mix, args.duration
    );
    println!("{}", markdown_table(&["run", "commands/s", "p50", "p99", "DynamoDB req/command", "errors", "vs peer"], &rows));
    if let Some(lag) = server.as_ref().and_then(|(_, warm)| warm.lag.as_ref()) {
        println!("projection lag (warm, HTTP): {}", bench_kit::report::percentiles(&lag.latency.summary()));
    }
    println!("reproduce: {}", super::command_line());
    Ok(())
}

/// Setup, cold and warm through spawned servers; returns (cold, warm).
async fn server_phases(args: &DynamoArgs, prefix: &str, dir: &std::path::Path) -> Result<(LoadReport, LoadReport), String> {
    let server_args = ["--backend", "dynamodb", "--endpoint-url", &args.endpoint_url, "--table-prefix", prefix, "--data-dir", &dir.display().to_string()]
        .map(str::to_string)
        .to_vec();
    let env = [("RUST_LOG", args.server_rust_log.clone())];
    crate::secret::load_or_create(dir).map_err(|e| format!("JWT secret: {e}"))?;
    let token = super::http::token(dir, &format!("bench-{}", &prefix[6..]))?;
    let lag = LagSettings { every: args.lag_every, probes: args.lag_probes, poll: Duration::from_millis(args.lag_poll_ms.max(1)) };

    // 1. Setup through a first server process.
    let mut setup_server = Spawned::serve(&server_args, &env, &dir.join("server-setup.log"))?;
    let api = Arc::new(Api::new(&setup_server.url(), &token, args.clients + args.lag_probes)?);
    api.wait_ready(Duration::from_secs(90), Some(&mut setup_server)).await?;
    // The next server process replays the stream from its trim horizon anyway.
    let wallets = setup_wallets(&api, args.wallets, args.mix.transfer > 0 && args.wallets == 1, args.clients, false).await?;
    setup_server.stop().await;

    // 2. Cold and 3. warm, in a fresh server process.
    let mut server = Spawned::serve(&server_args, &env, &dir.join("server.log"))?;
    let api = Arc::new(Api::new(&server.url(), &token, args.clients + args.lag_probes)?);
    api.wait_ready(Duration::from_secs(90), Some(&mut server)).await?;
    let load = |name: &str, one_credit_per_wallet: bool, lag: LagSettings| Load {
        name: name.into(),
        api: api.clone(),
        wallets: wallets.clone(),
        mix: args.mix,
        clients: args.clients,
        seed: args.seed,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        lag,
        idempotency_keys: false,
        one_credit_per_wallet,
        server_pid: Some(server.pid()),
        rate: None,
    };
    let cold = run_load(load("cold: first command on each wallet in this server process", true, LagSettings { every: 0, ..lag })).await?;
    println!("{}\n", cold.text());
    let warm = run_load(load("warm: server --backend dynamodb", false, lag)).await?;
    println!("{}\n", warm.text());
    server.check_alive()?;
    server.stop().await;

    Ok((cold, warm))
}

/// The workload straight through `CommandService` on `DynamoEventStore` (its
/// own freshly created wallets, so they are warm as the peer's are); returns
/// the phase and the DynamoDB requests it sent.
async fn in_process(args: &DynamoArgs, prefix: &str) -> Result<(PhaseResult, u64), String> {
    let counter = store_dynamodb::RequestCounter::new();
    let client = store_dynamodb::client_from_env_counted(Some(&args.endpoint_url), &counter).await;
    let tables = store_dynamodb::TableNames::prefixed(prefix);
    let store = Arc::new(store_dynamodb::DynamoEventStore::new(client, &tables.events, &tables.idempotency));
    let service = Arc::new(CommandService::new(store, Arc::new(SystemClock)));
    eprintln!("in-process: opening {} wallets …", args.wallets);
    let ids: Arc<Vec<Uuid>> = Arc::new((0..args.wallets).map(|_| Uuid::now_v7()).collect());
    let openers = (0..args.clients.min(args.wallets))
        .map(|i| Opener { service: service.clone(), ids: ids.iter().skip(i).step_by(args.clients.min(args.wallets)).copied().collect() })
        .collect();
    let opened = drive(&Phase { progress: false, ..Phase::until_done("in-process setup", Duration::from_secs(120)) }, openers, None).await;
    if opened.ok != args.wallets as u64 {
        return Err(format!("opening the in-process wallets: {} of {}; errors: {}", opened.ok, args.wallets, opened.errors));
    }
    let clients =
        (0..args.clients).map(|i| InProcess { service: service.clone(), wallets: ids.clone(), mix: args.mix, rng: Rng::for_client(args.seed, i) }).collect();
    let before = counter.get();
    let phase = Phase::timed("ours: CommandService on DynamoEventStore, in-process", Duration::from_secs(args.warmup), Duration::from_secs(args.duration));
    let result = drive(&phase, clients, None).await;
    let requests = counter.get() - before;
    println!(
        "{}\n",
        phase_report(
            &result,
            &[(
                "DynamoDB requests",
                format!(
                    "{:.3} per command ({} / {} commands, warm-up included)",
                    requests as f64 / result.answered_all.max(1) as f64,
                    thousands(requests),
                    thousands(result.answered_all)
                )
            )]
        )
    );
    Ok((result, requests))
}

struct Opener {
    service: Arc<CommandService>,
    ids: Vec<Uuid>,
}

impl BenchClient for Opener {
    async fn call(&mut self) -> Outcome {
        let Some(id) = self.ids.pop() else { return Outcome::Done };
        let ctx = CommandContext::new("bench", "bench-setup");
        let create = WalletCommand::open_personal(id, "bench", Money::from_minor(100_000_000_000));
        for command in [create, WalletCommand::Activate] {
            if let Err(e) = service_handle(&self.service, &ctx, id, command).await {
                return Outcome::Failed(e);
            }
        }
        Outcome::Ok
    }
}

async fn service_handle(service: &CommandService, ctx: &CommandContext, id: Uuid, command: WalletCommand) -> Result<(), String> {
    match service.execute(ctx, async move |uow| uow.handle::<Wallet>(id, &command).await).await {
        Ok(_) => Ok(()),
        Err(CommandError::Refused(e)) => Err(format!("refused {}", e.code())),
        Err(CommandError::Conflict { .. }) => Err("conflict".into()),
        Err(CommandError::IdempotencyKeyReused) => Err("idempotency key reused".into()),
        Err(CommandError::Store(e)) => Err(format!("store {}", e.0.chars().take(80).collect::<String>())),
    }
}

struct InProcess {
    service: Arc<CommandService>,
    wallets: Arc<Vec<Uuid>>,
    mix: Mix,
    rng: Rng,
}

impl BenchClient for InProcess {
    async fn call(&mut self) -> Outcome {
        // The same draws as the HTTP clients and the peer.
        let draw = self.mix.draw(&mut self.rng, self.wallets.len());
        let id = self.wallets[draw.wallet];
        let (amount, reference) = (Money::from_minor(draw.amount_minor as i64), format!("bench-{:016x}", draw.tag));
        let command = match draw.op {
            Op::Credit => WalletCommand::Credit(Movement { amount, transaction_type: CreditType::Deposit, reference, description: None, currency: None }),
            Op::Debit => WalletCommand::Debit(Movement { amount, transaction_type: DebitType::Payment, reference, description: None, currency: None }),
            Op::Transfer => return Outcome::Failed("transfers are not part of the in-process workload".into()),
        };
        match service_handle(&self.service, &CommandContext::new("bench", "bench"), id, command).await {
            Ok(()) => Outcome::Ok,
            Err(code) => Outcome::Failed(code),
        }
    }
}

struct PeerResult {
    store: String,
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
    requests_per_command: f64,
    errors: String,
}

async fn run_peer(args: &DynamoArgs, peer_bin: &std::path::Path, prefix: &str) -> Result<PeerResult, String> {
    let store = match args.peer_store {
        PeerStore::Event => "event",
        PeerStore::Aggregate => "aggregate",
    };
    let mut command = std::process::Command::new(peer_bin);
    command.args([
        "--endpoint-url",
        &args.endpoint_url,
        "--clients",
        &args.clients.to_string(),
        "--wallets",
        &args.wallets.to_string(),
        "--mix",
        &args.mix.to_string(),
        "--warmup",
        &args.warmup.to_string(),
        "--duration",
        &args.duration.to_string(),
        "--seed",
        &args.seed.to_string(),
        "--store",
        store,
        "--table-prefix",
        &format!("{prefix}-peer"),
    ]);
    eprintln!("bench: running the peer ({})", peer_bin.display());
    let output = tokio::task::spawn_blocking(move || command.stderr(std::process::Stdio::inherit()).output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("running the peer: {e}"))?;
    if !output.status.success() {
        return Err(format!("the peer failed ({})", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).ok_or("the peer printed no result")?;
    let json: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("the peer's result: {e}"))?;
    let phase = &json["phase"];
    Ok(PeerResult {
        store: store.into(),
        per_second: phase["commandsPerSecond"].as_f64().unwrap_or(0.0),
        p50_us: phase["latencyMicros"]["p50_us"].as_u64().unwrap_or(0),
        p99_us: phase["latencyMicros"]["p99_us"].as_u64().unwrap_or(0),
        requests_per_command: json["requestsPerCommand"].as_f64().unwrap_or(f64::NAN),
        errors: match phase["errors"].as_object() {
            Some(map) if !map.is_empty() => map.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "),
            _ => "none".into(),
        },
    })
}
