//! `healthpay`: the all-in-one HealthPay Ledger server and its tools.
//!
//! `healthpay serve` runs the whole system in one process — every API route, the
//! projections and the transfer saga — wiring the same handlers the Lambda
//! functions use to an embedded store. `healthpay token` mints development JWTs.
//! `healthpay redrive` puts what the AWS deployment parked back to work.
//! `healthpay verify` checks the books and the read models against the event store;
//! `healthpay rebuild` rewrites the read models that differ from their events.
//! `healthpay openapi` prints (or writes) the API's OpenAPI document.
//! `healthpay bench …` measures it (see BENCHMARKS.md).

mod bench;
mod dynamodb_stream;
mod gateway;
mod graphql_ws;
mod maintenance;
mod metrics;
mod progress;
mod rate_limit;
mod redrive;
mod secret;
mod server;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "healthpay", version, about = "HealthPay Ledger: event-sourced payments ledger for healthcare")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the whole API, projections and sagas in one process.
    Serve(server::ServeArgs),
    /// Print a development JWT that a server with the same data dir (or the same
    /// HEALTHPAY_JWT_SECRET) accepts.
    Token {
        /// The caller's user id (the token's `sub`).
        #[arg(long)]
        sub: String,
        /// Comma-separated roles: admin, pharmacy, insurer.
        #[arg(long, default_value = "")]
        roles: String,
        /// Where the server keeps its data (and its generated signing secret).
        #[arg(long, default_value = server::DEFAULT_DATA_DIR, env = "HEALTHPAY_DATA_DIR")]
        data_dir: PathBuf,
        /// How long the token is valid, in hours.
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
    },
    /// Project again (or start the sagas of) what the AWS deployment's dead-letter
    /// queue holds, once its cause is fixed; deletes what is done.
    Redrive(redrive::RedriveArgs),
    /// Check the books from the event store alone and against the read models:
    /// money conserved (brought in − taken out = in wallets + in flight + in
    /// suspense, per currency), no negative balance, hold or available amount, every
    /// read model equal to the projection of its events, every saga ended or younger
    /// than its timeout. Prints a report; exits 1 naming each aggregate that drifted
    /// (2 if the stores cannot be read). Safe while the server runs (it only reads).
    Verify(maintenance::VerifyArgs),
    /// Rebuild read models from the event store, aggregate by aggregate: every row
    /// that differs from the projection of its events is rewritten. Safe while the
    /// server (or, on AWS, the projector functions) keeps running: each write is
    /// guarded by the version the row was read at, exactly like a projector's, so a
    /// row a projector moved meanwhile is read and rebuilt again, never overwritten
    /// with an older state, and no event is lost (a projector whose write was
    /// pre-empted finds its event applied). Exits 1 if something could not be put right.
    Rebuild(maintenance::RebuildArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API (generated from the code; the
    /// committed copy is docs/openapi.json, which a test holds equal to it).
    Openapi {
        /// Write it to this file instead of standard output (e.g. docs/openapi.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The same document in the OpenAPI 3.0 dialect, which API Gateway's REST API
        /// import reads (it does not read 3.1).
        #[arg(long)]
        api_gateway: bool,
    },
    /// Print the GraphQL schema (SDL) of POST /graphql (generated from the code; the
    /// committed copy is docs/schema.graphql, which a test holds equal to it).
    GraphqlSchema {
        /// Write it to this file instead of standard output (e.g. docs/schema.graphql).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Benchmarks: HTTP load, DynamoDB requests per command and the cqrs-es peer,
    /// read-model rebuild (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            // Kept to the end: dropping it flushes the log lines still queued.
            let _log_writer = init_tracing();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
            match runtime.block_on(server::serve(args)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "server stopped");
                    eprintln!("healthpay: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Token { sub, roles, data_dir, ttl_hours } => match token(&sub, &roles, &data_dir, ttl_hours) {
            Ok(token) => {
                println!("{token}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("healthpay token: {e}");
                std::process::ExitCode::from(2)
            }
        },
        Command::Verify(args) => maintenance::verify(args),
        Command::Rebuild(args) => maintenance::rebuild(args),
        Command::Openapi { out, api_gateway } => {
            let document = if api_gateway {
                serde_json::to_string_pretty(&api::openapi::api_gateway_document()).expect("the document serialises") + "\n"
            } else {
                api::openapi::to_json()
            };
            write_out("openapi", out.as_deref(), &document)
        }
        Command::GraphqlSchema { out } => write_out("graphql-schema", out.as_deref(), &api::graphql::sdl()),
        Command::Bench { command } => bench::run(command),
        Command::Redrive(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
            match runtime.block_on(redrive::run(args)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("healthpay redrive: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

fn token(sub: &str, roles: &str, data_dir: &std::path::Path, ttl_hours: i64) -> Result<String, String> {
    api::auth::Caller::new(sub.trim(), [""; 0]).map_err(|e| format!("--sub: {e}"))?;
    // On the command line roles are comma-separated; each must be a role this ledger knows
    // (a token carries them as a list, and the server ignores names it does not know).
    let roles: Vec<String> = roles.split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::to_string).collect();
    if let Some(unknown) = roles.iter().find(|r| api::auth::Role::parse(r).is_none()) {
        let known: Vec<&str> = api::auth::Role::ALL.iter().map(|r| r.as_str()).collect();
        return Err(format!("unknown role {unknown:?}; roles are {}", known.join(", ")));
    }
    if !(1..=24 * 365).contains(&ttl_hours) {
        return Err("--ttl-hours must be from 1 to 8760".into());
    }
    let verifier = api::auth::TokenVerifier::new(&secret::load_or_create(data_dir).map_err(|e| e.to_string())?);
    Ok(verifier.mint(sub.trim(), &roles, chrono::Utc::now().timestamp(), ttl_hours * 3600))
}

/// Standard output without its line buffering: the log writer thread writes every
/// line queued since its last write, then flushes, so a busy server makes one
/// `write(2)` per batch of lines instead of one per line.
fn log_output() -> Box<dyn std::io::Write + Send> {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::io::BufWriter::with_capacity(64 * 1024, std::fs::File::from(fd))),
        Err(_) => Box::new(std::io::stdout()),
    }
}

/// JSON lines on stdout; `RUST_LOG` filters (default `info`).
///
/// A request formats its line and hands it to a writer thread (tracing-appender),
/// instead of waiting for a `write(2)` to standard output under a lock that every
/// request takes: one line per request is cheap again. Nothing is dropped: when the
/// writer falls 128k lines behind, requests wait for it as they did before.
fn init_tracing() -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).thread_name("log-writer").finish(log_output());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().json().with_writer(writer).with_env_filter(filter).with_current_span(true).with_span_list(false).with_target(false).init();
    guard
}

/// Writes a generated document to `out`, or to standard output.
fn write_out(command: &str, out: Option<&std::path::Path>, document: &str) -> std::process::ExitCode {
    let written = match out {
        Some(path) => std::fs::write(path, document).map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(document.as_bytes()).map_err(|e| e.to_string())
        }
    };
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("healthpay {command}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
