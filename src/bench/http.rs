//! `healthpay bench http`: the HTTP load generator.
//!
//! Clients are closed loops (each sends its next command when the previous one is
//! answered) over keep-alive HTTP/1.1 connections (hyper's pooled client, one
//! connection per client). Setup — creating, funding and activating the wallets —
//! happens before the timed phase, through the same API.
//!
//! **Projection lag** is sampled: for every `--lag-every`-th acknowledged credit
//! or debit, a probe polls `GET /api/v2/wallets/{id}` (every `--lag-poll-ms`,
//! on its own pooled connections) until the view's `version` is at least the
//! version the command was acknowledged at, and records the time from the
//! acknowledgement to that answer. At most `--lag-probes` probes run at once (a
//! sample that finds them all busy is skipped and counted), so polling adds a
//! small, bounded load: the report says how many GETs it sent. A probe's value is
//! an upper bound of the true lag by at most one poll interval plus one GET.

use super::system::{self, CpuMeter, CpuUse, Spawned};
use bench_kit::driver::{drive, Client as BenchClient, Outcome, Phase, PhaseResult, ProgressExtra};
use bench_kit::mix::{major_units, Mix, Op, Rng};
use bench_kit::report::{markdown_table, micros, percentiles, phase_report, rate, thousands};
use bench_kit::stats::Latency;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// Every wallet is created with this balance (the API's largest), so debits and
/// transfers never run out of money during a run.
const OPENING_BALANCE: &str = "1000000000";

#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// The server's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Start a fresh `healthpay serve` (SQLite, in a new directory under the temp
    /// dir) for this run instead of using --url; it is stopped at the end.
    #[arg(long)]
    pub spawn: bool,
    /// RUST_LOG of a spawned server (its JSON logs go to a file in its directory).
    #[arg(long, default_value = "info")]
    pub server_rust_log: String,
    /// Keep a spawned server's data directory (deleted after the run otherwise).
    #[arg(long)]
    pub keep_data: bool,
    /// Extra arguments for a spawned server (e.g. "--in-memory").
    #[arg(long, allow_hyphen_values = true)]
    pub server_arg: Vec<String>,
    /// The server's data directory, for its JWT signing secret (as `healthpay token`),
    /// unless HEALTHPAY_JWT_SECRET is set. Ignored with --spawn.
    #[arg(long, default_value = crate::server::DEFAULT_DATA_DIR, env = "HEALTHPAY_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The server's process id, to report the CPU it used (found by itself with --spawn).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Wallets; each command goes to one drawn at random. 1 = the hot-wallet scenario.
    #[arg(long, default_value_t = 64)]
    pub wallets: usize,
    /// Command weights.
    #[arg(long, default_value = "credit=45,debit=45,transfer=10")]
    pub mix: Mix,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Measured seconds (at most 60 unless --long).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Allow --duration above 60 s.
    #[arg(long)]
    pub long: bool,
    /// Open loop: start this many commands per second in total (spread over the
    /// clients) instead of each client sending as soon as it is answered.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Probe the projection lag of every N-th acknowledged credit/debit (0: never).
    #[arg(long, default_value_t = 100)]
    pub lag_every: u64,
    /// At most this many lag probes at once.
    #[arg(long, default_value_t = 8)]
    pub lag_probes: usize,
    /// Milliseconds between a probe's polls.
    #[arg(long, default_value_t = 1)]
    pub lag_poll_ms: u64,
    /// Send an Idempotency-Key with every command (each key used once).
    #[arg(long)]
    pub idempotency_keys: bool,
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A name for this run in the report.
    #[arg(long, default_value = "steady")]
    pub label: String,
    /// Also print the result as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// First measure this machine's HTTP ceiling with the same client, load and
    /// durations: a trivial handler of the same request shape (`bench ceiling-server`,
    /// a subprocess like a spawned server), then the ledger; report the ledger's share
    /// of the ceiling. The ratio is the number to compare across runs and machines.
    #[arg(long)]
    pub ceiling: bool,
}

pub async fn run(args: HttpArgs) -> Result<(), String> {
    if args.clients == 0 || args.wallets == 0 {
        return Err("--clients and --wallets must be at least 1".into());
    }
    if args.duration > 60 && !args.long {
        return Err("--duration above 60 s needs --long".into());
    }
    print_machine();
    let ceiling = match args.ceiling {
        true => Some(measure_ceiling(&args).await?),
        false => None,
    };
    let mut spawned = None;
    let (url, data_dir) = if args.spawn {
        let dir = system::run_dir("http")?;
        let log = dir.join("server.log");
        let mut server_args = vec!["--data-dir".to_string(), dir.display().to_string()];
        server_args.extend(args.server_arg.iter().cloned());
        // The secret first, so that the server and this bench read the same file.
        crate::secret::load_or_create(&dir).map_err(|e| format!("JWT secret: {e}"))?;
        let server = Spawned::serve(&server_args, &[("RUST_LOG", args.server_rust_log.clone())], &log)?;
        eprintln!("bench: started healthpay serve (pid {}) on {} with data in {}", server.pid(), server.url(), dir.display());
        let url = server.url();
        spawned = Some(server);
        (url, dir)
    } else {
        (args.url.clone(), args.data_dir.clone())
    };
    let result = run_against(&args, &url, &data_dir, spawned.as_mut(), ceiling).await;
    if let Some(server) = spawned {
        server.stop().await;
        if args.keep_data {
            eprintln!("bench: the server's data is kept in {}", data_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&data_dir);
        }
    }
    result
}

async fn run_against(
    args: &HttpArgs,
    url: &str,
    data_dir: &std::path::Path,
    mut spawned: Option<&mut Spawned>,
    ceiling: Option<LoadReport>,
) -> Result<(), String> {
    let sub = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let api = Arc::new(Api::new(url, &token(data_dir, &sub)?, args.clients + args.lag_probes)?);
    api.wait_ready(Duration::from_secs(if spawned.is_some() { 60 } else { 5 }), spawned.as_deref_mut()).await?;
    let wallets = setup_wallets(&api, args.wallets, args.mix.transfer > 0 && args.wallets == 1, args.clients, true).await?;
    let server_pid = spawned.as_ref().map(|s| s.pid()).or(args.server_pid);
    let lag = LagSettings { every: args.lag_every, probes: args.lag_probes, poll: Duration::from_millis(args.lag_poll_ms.max(1)) };
    let report = run_load(load_of(args, args.label.clone(), api, wallets, lag, server_pid)).await?;
    if let Some(server) = spawned {
        server.check_alive()?;
    }
    if let Some(ceiling) = &ceiling {
        println!("{}", ceiling.text());
        println!();
    }
    println!("{}", report.text());
    println!();
    let mut header = vec!["run", "clients", "wallets", "mix", "commands/s", "p50", "p95", "p99", "max", "errors", "lag p50", "lag p99"];
    let mut rows = vec![report.row(args.clients, args.wallets, &args.mix)];
    if let Some(ceiling) = &ceiling {
        header.push("share of ceiling");
        let mut ceiling_row = ceiling.row(args.clients, args.wallets, &args.mix);
        ceiling_row.push("100 %".into());
        rows[0].push(share_of(&report, ceiling));
        rows.insert(0, ceiling_row);
    }
    println!("{}", markdown_table(&header, &rows));
    println!("reproduce: {}", super::command_line());
    if args.json {
        let mut json = report.json();
        if let Some(ceiling) = &ceiling {
            json["ceiling"] = ceiling.json();
            json["shareOfCeiling"] = serde_json::json!(report.result.ok_per_second() / ceiling.result.ok_per_second().max(f64::MIN_POSITIVE));
        }
        println!("{json}");
    }
    Ok(())
}

/// The run's load, as the command line asks for it.
fn load_of(args: &HttpArgs, name: String, api: Arc<Api>, wallets: Wallets, lag: LagSettings, server_pid: Option<u32>) -> Load {
    Load {
        name,
        api,
        wallets,
        mix: args.mix,
        clients: args.clients,
        seed: args.seed,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        lag,
        idempotency_keys: args.idempotency_keys,
        one_credit_per_wallet: false,
        server_pid,
        rate: args.rate,
    }
}

/// The same load against `bench ceiling-server` (see `ceiling`), without lag probes
/// (it has no read side), started and stopped here so it never shares the machine
/// with the ledger's server.
async fn measure_ceiling(args: &HttpArgs) -> Result<LoadReport, String> {
    let dir = system::run_dir("ceiling")?;
    let mut server = Spawned::ceiling(&dir.join("ceiling.log"))?;
    eprintln!("bench: started the ceiling server (pid {}) on {}", server.pid(), server.url());
    let measured = async {
        let api = Arc::new(Api::new(&server.url(), "ceiling", args.clients)?);
        api.wait_ready(Duration::from_secs(30), Some(&mut server)).await?;
        let wallets = setup_wallets(&api, args.wallets, args.mix.transfer > 0 && args.wallets == 1, args.clients, true).await?;
        let no_lag = LagSettings { every: 0, probes: 0, poll: Duration::from_millis(1) };
        let report = run_load(load_of(args, "ceiling".into(), api, wallets, no_lag, Some(server.pid()))).await?;
        server.check_alive()?;
        Ok::<_, String>(report)
    }
    .await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

/// The ledger's commands/s as a share of the ceiling's requests/s.
fn share_of(report: &LoadReport, ceiling: &LoadReport) -> String {
    let ceiling = ceiling.result.ok_per_second();
    match ceiling > 0.0 {
        true => format!("{:.1} %", report.result.ok_per_second() / ceiling * 100.0),
        false => "n/a".into(),
    }
}

pub fn print_machine() {
    eprintln!("machine: {} CPUs ({}), load average {} (1/5/15 min) before the run", system::cpus(), system::cpu_model(), system::load_average());
}

/// A token the server accepts: signed with HEALTHPAY_JWT_SECRET or the data dir's secret.
pub fn token(data_dir: &std::path::Path, sub: &str) -> Result<String, String> {
    let secret = crate::secret::load_or_create(data_dir).map_err(|e| format!("JWT secret in {}: {e}", data_dir.display()))?;
    Ok(api::auth::TokenVerifier::new(&secret).mint(sub, &[], chrono::Utc::now().timestamp(), 24 * 3600))
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    /// `"<status> <error code>"` from the contract's error body.
    pub fn error_code(&self) -> String {
        let code = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|b| b.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| "-".into());
        format!("{} {code}", self.status)
    }

    pub fn json_field(&self, field: &str) -> Option<serde_json::Value> {
        serde_json::from_slice::<serde_json::Value>(&self.body).ok()?.get(field).cloned()
    }
}

/// The API over pooled keep-alive HTTP/1.1 connections, with one bearer token.
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    authorization: String,
}

impl Api {
    pub fn new(base: &str, token: &str, connections: usize) -> Result<Self, String> {
        if !system::is_loopback_url(base) {
            return Err(format!("{base} is not a loopback address; the benchmark only talks to 127.0.0.1"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(connections).pool_idle_timeout(Duration::from_secs(300)).build(connector);
        Ok(Api { client, base: base.trim_end_matches('/').to_string(), authorization: format!("Bearer {token}") })
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<String>, idempotency_key: Option<&str>) -> Result<Answer, String> {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.base)).header("authorization", &self.authorization);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(body))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self.client.request(request.body(body).map_err(|e| e.to_string())?).await.map_err(|e| format!("transport: {e}"))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| format!("transport: {e}"))?.to_bytes();
        Ok(Answer { status, body })
    }

    pub async fn post(&self, path: &str, body: String) -> Result<Answer, String> {
        self.send(Method::POST, path, Some(body), None).await
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.send(Method::GET, path, None, None).await
    }

    /// Waits until `GET /health` answers 200.
    pub async fn wait_ready(&self, timeout: Duration, mut server: Option<&mut Spawned>) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(server) = server.as_deref_mut() {
                server.check_alive()?;
            }
            let last = match self.get("/health").await {
                Ok(answer) if answer.status == 200 => return Ok(()),
                Ok(answer) => format!("/health answered {}", answer.status),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!("the server at {} is not ready after {timeout:?}: {last}", self.base));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's `/metrics`, the parts a benchmark reads.
    pub async fn scrape(&self) -> Result<Scrape, String> {
        let answer = self.get("/metrics").await?;
        if answer.status != 200 {
            return Err(format!("/metrics answered {}", answer.status));
        }
        Ok(Scrape::parse(&String::from_utf8_lossy(&answer.body)))
    }
}

/// What a benchmark reads from a `/metrics` scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// `healthpay_dynamodb_requests_total{client="…"}`, when the server has DynamoDB clients.
    pub dynamodb: Option<BTreeMap<String, u64>>,
    /// `healthpay_feed_lag_events{consumer="projections"}`: events appended, not yet projected.
    pub projection_backlog: Option<u64>,
    /// `healthpay_projection_lag_seconds` sum and count (append → projected, per event).
    pub projected: Option<(f64, u64)>,
}

impl Scrape {
    pub fn parse(metrics: &str) -> Scrape {
        let sample =
            |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse::<f64>().ok()));
        let dynamodb: BTreeMap<String, u64> = metrics
            .lines()
            .filter_map(|line| line.strip_prefix("healthpay_dynamodb_requests_total{client=\""))
            .filter_map(|rest| {
                let (client, value) = rest.split_once("\"}")?;
                Some((client.to_string(), value.trim().parse::<f64>().ok()? as u64))
            })
            .collect();
        Scrape {
            dynamodb: (!dynamodb.is_empty()).then_some(dynamodb),
            projection_backlog: sample("healthpay_feed_lag_events{consumer=\"projections\"}").map(|v| v as u64),
            projected: sample("healthpay_projection_lag_seconds_sum").zip(sample("healthpay_projection_lag_seconds_count").map(|v| v as u64)),
        }
    }
}

/// Wallets owned by the token's caller, created with the largest opening balance
/// and activated (each at version 3: created, funded, activated); plus a
/// counterparty for transfers when there is a single wallet. With
/// `wait_for_read_side`, returns once `GET` shows every one of them, so that the
/// setup's projection work is done before anything is measured.
pub async fn setup_wallets(api: &Arc<Api>, count: usize, with_counterparty: bool, concurrency: usize, wait_for_read_side: bool) -> Result<Wallets, String> {
    let started = Instant::now();
    let total = count + usize::from(with_counterparty);
    let permits = Arc::new(Semaphore::new(concurrency.clamp(1, 32)));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..total {
        let (api, permits) = (api.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("open semaphore");
            let created = api.post("/api/v2/commands/wallets/create", format!(r#"{{"walletType":"personal","initialBalance":{OPENING_BALANCE}}}"#)).await?;
            if created.status != 201 {
                return Err(format!("creating a wallet: {} {}", created.error_code(), String::from_utf8_lossy(&created.body)));
            }
            let id: Uuid = created.json_field("walletId").and_then(|v| v.as_str().and_then(|s| s.parse().ok())).ok_or("no walletId in the answer")?;
            let activated = api.post(&format!("/api/v2/commands/wallets/{id}/activate"), String::new()).await?;
            if activated.status != 200 {
                return Err(format!("activating wallet {id}: {}", activated.error_code()));
            }
            Ok::<_, String>((index, id))
        });
    }
    let mut ids = vec![Uuid::nil(); total];
    while let Some(done) = tasks.join_next().await {
        let (index, id) = done.map_err(|e| e.to_string())??;
        ids[index] = id;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ids.iter().filter(|_| wait_for_read_side) {
        loop {
            let answer = api.get(&format!("/api/v2/wallets/{id}")).await?;
            if answer.status == 200 && answer.json_field("version").and_then(|v| v.as_u64()) >= Some(3) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("wallet {id} did not reach the read side within 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!("setup: {total} wallets created, funded and activated in {:.1} s", started.elapsed().as_secs_f64());
    let counterparty = with_counterparty.then(|| ids.pop().expect("the counterparty"));
    Ok(Wallets { ids: Arc::new(ids), counterparty })
}

#[derive(Clone)]
pub struct Wallets {
    pub ids: Arc<Vec<Uuid>>,
    /// The destination of transfers when there is one wallet.
    pub counterparty: Option<Uuid>,
}

#[derive(Debug, Clone, Copy)]
pub struct LagSettings {
    pub every: u64,
    pub probes: usize,
    pub poll: Duration,
}

pub struct Load {
    pub name: String,
    pub api: Arc<Api>,
    pub wallets: Wallets,
    pub mix: Mix,
    pub clients: usize,
    pub seed: u64,
    pub warmup: Duration,
    /// The measured window; for `one_credit_per_wallet`, the phase's time limit.
    pub duration: Duration,
    pub lag: LagSettings,
    pub idempotency_keys: bool,
    /// Instead of the mix: exactly one credit per wallet, wallets split among clients.
    pub one_credit_per_wallet: bool,
    pub server_pid: Option<u32>,
    /// Open loop at this many commands per second (see `Phase::rate`).
    pub rate: Option<f64>,
}

pub struct LoadReport {
    pub result: PhaseResult,
    pub lag: Option<LagReport>,
    /// DynamoDB requests the server sent during the phase (warm-up included), by client.
    pub dynamodb: Option<BTreeMap<String, u64>>,
    pub cpu: CpuUse,
    /// Events not yet projected when the phase ended (the server's gauge).
    pub projection_backlog: Option<u64>,
    /// The server's own projection lag during the phase: (sum of seconds, events).
    pub projected: Option<(f64, u64)>,
}

pub struct LagReport {
    pub latency: Latency,
    pub every: u64,
    pub probes: usize,
    pub poll: Duration,
    pub skipped: u64,
    pub timeouts: u64,
    pub gets: u64,
}

impl LoadReport {
    /// DynamoDB requests of `client` per command answered in the phase.
    pub fn dynamodb_per_command(&self, client: &str) -> Option<f64> {
        let requests = *self.dynamodb.as_ref()?.get(client)?;
        Some(requests as f64 / self.result.answered_all.max(1) as f64)
    }

    pub fn text(&self) -> String {
        let mut extra = vec![];
        if let Some(lag) = &self.lag {
            extra.push(("projection lag", percentiles(&lag.latency.summary())));
            extra.push((
                "  how",
                format!(
                    "{} samples: every {}th acknowledged credit/debit, GET polled every {} ms (growing to a tenth of the wait) by ≤ {} probes; {} skipped (probes busy); {} gave up after 5 s (counted as ≥ 5 s); {} GETs ({:.1}% of commands)",
                    thousands(lag.latency.count()),
                    lag.every,
                    lag.poll.as_millis(),
                    lag.probes,
                    thousands(lag.skipped),
                    thousands(lag.timeouts),
                    thousands(lag.gets),
                    lag.gets as f64 * 100.0 / self.result.answered_all.max(1) as f64
                ),
            ));
        }
        if let Some(requests) = &self.dynamodb {
            let per: Vec<String> =
                requests.iter().map(|(client, n)| format!("{client} {:.3} ({})", *n as f64 / self.result.answered_all.max(1) as f64, thousands(*n))).collect();
            extra.push(("DynamoDB req/command", format!("{}  over {} commands, warm-up included", per.join(" · "), thousands(self.result.answered_all))));
        }
        if let Some(backlog) = self.projection_backlog {
            let server = self.projected.filter(|(_, n)| *n > 0).map_or(String::new(), |(sum, n)| {
                format!(
                    "; the server's own histogram: {} events projected during the phase, mean append→projected {}",
                    thousands(n),
                    micros((sum / n as f64 * 1e6) as u64)
                )
            });
            extra.push(("projection backlog", format!("{} events appended but not yet projected at the end{server}", thousands(backlog))));
        }
        extra.push(("CPU", self.cpu.to_string()));
        phase_report(&self.result, &extra.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>())
    }

    pub fn row(&self, clients: usize, wallets: usize, mix: &Mix) -> Vec<String> {
        let s = self.result.latency.summary();
        vec![
            self.result.name.clone(),
            clients.to_string(),
            wallets.to_string(),
            mix.to_string(),
            rate(self.result.ok_per_second()),
            micros(s.p50_us),
            micros(s.p95_us),
            micros(s.p99_us),
            micros(s.max_us),
            self.result.errors.to_string(),
            lag_cell(self.lag.as_ref(), |l| l.p50_us),
            lag_cell(self.lag.as_ref(), |l| l.p99_us),
        ]
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "phase": self.result.to_json(),
            "projectionLagMicros": self.lag.as_ref().map(|l| l.latency.summary()),
            "dynamodbRequests": self.dynamodb,
            "cpuCores": {"machine": self.cpu.machine, "bench": self.cpu.bench, "server": self.cpu.server},
            "projectionBacklog": self.projection_backlog,
        })
    }
}

/// A lag percentile for a table: `n/a` without samples, `≥ 5.00 s` where probes gave up.
fn lag_cell(lag: Option<&LagReport>, pick: impl Fn(&bench_kit::stats::Summary) -> u64) -> String {
    match lag {
        Some(lag) if lag.latency.count() > 0 => {
            let value = pick(&lag.latency.summary());
            if value >= LAG_GIVE_UP.as_micros() as u64 {
                format!("≥ {}", micros(LAG_GIVE_UP.as_micros() as u64))
            } else {
                micros(value)
            }
        }
        _ => "n/a".into(),
    }
}

pub async fn run_load(load: Load) -> Result<LoadReport, String> {
    let lag = (load.lag.every > 0).then(|| Arc::new(LagProbe::new(load.api.clone(), load.lag)));
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_string();
    let count = load.wallets.ids.len();
    let clients: Vec<HttpClient> = (0..load.clients)
        .map(|i| HttpClient {
            api: load.api.clone(),
            wallets: load.wallets.clone(),
            mix: load.mix,
            rng: Rng::for_client(load.seed, i),
            lag: lag.clone(),
            idempotency: load.idempotency_keys.then(|| format!("{run_id}-{i}")),
            seq: 0,
            fixed: load.one_credit_per_wallet.then(|| (i..count).step_by(load.clients).rev().collect()),
        })
        .collect();
    let phase = if load.one_credit_per_wallet {
        Phase::until_done(&load.name, load.duration)
    } else {
        Phase::timed(&load.name, load.warmup, load.duration).at_rate(load.rate)
    };
    let extra: Option<ProgressExtra> = lag.as_ref().map(|lag| {
        let lag = lag.clone();
        Arc::new(move || format!("lag samples {}", lag.latency.lock().unwrap().count())) as ProgressExtra
    });
    // Lag is sampled in the measured window only.
    if let Some(lag) = &lag {
        let (lag, warmup) = (lag.clone(), phase.warmup);
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            lag.active.store(true, Ordering::Relaxed);
        });
    }
    let before = load.api.scrape().await?;
    let cpu = CpuMeter::start(load.server_pid);
    let result = drive(&phase, clients, extra).await;
    let cpu = cpu.stop();
    let after = load.api.scrape().await?;
    let lag = match lag {
        Some(lag) => {
            lag.active.store(false, Ordering::Relaxed);
            Some(lag.finish().await)
        }
        None => None,
    };
    let dynamodb = before
        .dynamodb
        .zip(after.dynamodb)
        .map(|(before, after)| after.iter().map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0)))).collect());
    let projected = before.projected.zip(after.projected).map(|((sum0, n0), (sum1, n1))| (sum1 - sum0, n1.saturating_sub(n0)));
    Ok(LoadReport { result, lag, dynamodb, cpu, projection_backlog: after.projection_backlog, projected })
}

struct HttpClient {
    api: Arc<Api>,
    wallets: Wallets,
    mix: Mix,
    rng: Rng,
    lag: Option<Arc<LagProbe>>,
    /// The prefix of this client's idempotency keys, when it sends them.
    idempotency: Option<String>,
    seq: u64,
    /// Wallet indexes still to credit, when the client runs a fixed list.
    fixed: Option<Vec<usize>>,
}

impl BenchClient for HttpClient {
    async fn call(&mut self) -> Outcome {
        let draw = self.mix.draw(&mut self.rng, self.wallets.ids.len());
        let (op, wallet) = match &mut self.fixed {
            Some(left) => match left.pop() {
                Some(index) => (Op::Credit, self.wallets.ids[index]),
                None => return Outcome::Done,
            },
            None => (draw.op, self.wallets.ids[draw.wallet]),
        };
        self.seq += 1;
        let amount = major_units(draw.amount_minor);
        let reference = format!("bench-{:016x}", draw.tag);
        let (path, body) = match op {
            Op::Credit => {
                (format!("/api/v2/commands/wallets/{wallet}/credit"), format!(r#"{{"amount":{amount},"transactionType":"deposit","reference":"{reference}"}}"#))
            }
            Op::Debit => {
                (format!("/api/v2/commands/wallets/{wallet}/debit"), format!(r#"{{"amount":{amount},"transactionType":"payment","reference":"{reference}"}}"#))
            }
            Op::Transfer => {
                let destination = draw.destination.map(|d| self.wallets.ids[d]).or(self.wallets.counterparty).expect("a transfer destination");
                (
                    "/api/v2/commands/transfers".to_string(),
                    format!(r#"{{"sourceWalletId":"{wallet}","destinationWalletId":"{destination}","amount":{amount},"reference":"{reference}"}}"#),
                )
            }
        };
        let key = self.idempotency.as_ref().map(|prefix| format!("{prefix}-{}", self.seq));
        match self.api.send(Method::POST, &path, Some(body), key.as_deref()).await {
            Ok(answer) if answer.status < 300 => {
                if let (Some(lag), Op::Credit | Op::Debit) = (&self.lag, op) {
                    lag.acknowledged(wallet, &answer);
                }
                Outcome::Ok
            }
            Ok(answer) => Outcome::Failed(answer.error_code()),
            Err(_) => Outcome::Failed("transport".into()),
        }
    }
}

/// See the module documentation.
struct LagProbe {
    api: Arc<Api>,
    settings: LagSettings,
    acknowledged: AtomicU64,
    permits: Arc<Semaphore>,
    active: AtomicBool,
    latency: Mutex<Latency>,
    skipped: AtomicU64,
    timeouts: AtomicU64,
    gets: AtomicU64,
}

const LAG_GIVE_UP: Duration = Duration::from_secs(5);

impl LagProbe {
    fn new(api: Arc<Api>, settings: LagSettings) -> Self {
        LagProbe {
            api,
            settings,
            acknowledged: AtomicU64::new(0),
            permits: Arc::new(Semaphore::new(settings.probes.max(1))),
            active: AtomicBool::new(false),
            latency: Mutex::default(),
            skipped: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
        }
    }

    fn acknowledged(self: &Arc<Self>, wallet: Uuid, answer: &Answer) {
        if !self.active.load(Ordering::Relaxed) || !self.acknowledged.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.settings.every) {
            return;
        }
        let acked = Instant::now();
        let Some(version) = answer.json_field("version").and_then(|v| v.as_u64()) else { return };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let probe = self.clone();
        tokio::spawn(async move {
            probe.probe(wallet, version, acked).await;
            drop(permit);
        });
    }

    async fn probe(&self, wallet: Uuid, version: u64, acked: Instant) {
        let path = format!("/api/v2/wallets/{wallet}");
        loop {
            self.gets.fetch_add(1, Ordering::Relaxed);
            if let Ok(answer) = self.api.get(&path).await {
                if answer.status == 200 && answer.json_field("version").and_then(|v| v.as_u64()) >= Some(version) {
                    self.latency.lock().unwrap().record(acked.elapsed());
                    return;
                }
            }
            let waited = acked.elapsed();
            if waited > LAG_GIVE_UP {
                // Counted at the give-up time: a lower bound, and it keeps slow
                // samples in the percentiles instead of dropping them.
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                self.latency.lock().unwrap().record(waited);
                return;
            }
            // The poll interval grows with the wait (a tenth of it, at most 50 ms):
            // a value is at most ~10 % above the true lag, and a lagging read side
            // is not hammered.
            tokio::time::sleep((waited / 10).clamp(self.settings.poll, Duration::from_millis(50))).await;
        }
    }

    /// Waits for the probes in flight, then reports.
    async fn finish(&self) -> LagReport {
        let all = self.settings.probes.max(1) as u32;
        let _ = tokio::time::timeout(LAG_GIVE_UP + Duration::from_secs(1), self.permits.acquire_many(all)).await;
        LagReport {
            latency: self.latency.lock().unwrap().clone(),
            every: self.settings.every,
            probes: self.settings.probes,
            poll: self.settings.poll,
            skipped: self.skipped.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_gives_dynamodb_requests_and_projection_progress() {
        let scrape = "# HELP healthpay_dynamodb_requests DynamoDB requests sent\n# TYPE healthpay_dynamodb_requests counter\n\
                      healthpay_dynamodb_requests_total{client=\"commands\"} 1234\nhealthpay_dynamodb_requests_total{client=\"read\"} 56\n\
                      healthpay_commands_total{route=\"x\",outcome=\"ok\"} 3\n# EOF\n";
        let parsed = Scrape::parse(scrape);
        assert_eq!(parsed.dynamodb, Some(BTreeMap::from([("commands".to_string(), 1234), ("read".to_string(), 56)])));
        assert_eq!(Scrape::parse("healthpay_commands_total{route=\"x\",outcome=\"ok\"} 3\n"), Scrape::default());
        let sqlite = "healthpay_feed_lag_events{consumer=\"transfer-saga-starter\"} 0\nhealthpay_feed_lag_events{consumer=\"projections\"} 937\n\
                      healthpay_projection_lag_seconds_sum 35.5\nhealthpay_projection_lag_seconds_count 10876\n";
        assert_eq!(Scrape::parse(sqlite), Scrape { dynamodb: None, projection_backlog: Some(937), projected: Some((35.5, 10876)) });
    }

    #[test]
    fn error_codes_come_from_the_contracts_error_body() {
        let answer = Answer { status: 409, body: Bytes::from_static(br#"{"statusCode":409,"error":"CONCURRENCY_CONFLICT","message":"m"}"#) };
        assert_eq!(answer.error_code(), "409 CONCURRENCY_CONFLICT");
        assert_eq!(Answer { status: 502, body: Bytes::from_static(b"<html>") }.error_code(), "502 -");
    }
}
