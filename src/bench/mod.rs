//! `healthpay bench …`: benchmarks of this code on this machine, each printing the
//! command that reproduces it.
//!
//! - `bench http`: drives the HTTP API of a running (or spawned) server with N
//!   concurrent clients over keep-alive connections — credits, debits, transfers,
//!   on one wallet (hot) or many — and reports commands/s, latency percentiles,
//!   errors by code and projection lag (command acknowledged → `GET` shows it).
//! - `bench dynamodb`: the same against `healthpay serve --backend dynamodb` on a
//!   DynamoDB endpoint, with DynamoDB requests per command for cold and warm
//!   aggregates (counted by an SDK interceptor), then the same append workload
//!   through our command service in-process and through the cqrs-es + dynamo-es
//!   peer (`bench/peer`), and the ratio.
//! - `bench http --ceiling`: first the same load against a trivial handler of the
//!   same request shape (`ceiling`), then the ledger, and the ledger's share of it.
//! - `bench rebuild`: writes N events through the event store port into a fresh
//!   SQLite store and times replaying them into fresh read models.
//!
//! Only loopback addresses are ever contacted.

mod ceiling;
mod dynamodb;
mod http;
mod rebuild;
mod system;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Load the HTTP API of a server (running at --url, or --spawn one) and report
    /// commands/s, latency p50/p95/p99/max, errors by code and projection lag.
    Http(http::HttpArgs),
    /// --backend dynamodb on a DynamoDB endpoint: cold and warm DynamoDB requests
    /// per command, throughput, and ours vs the cqrs-es + dynamo-es peer.
    Dynamodb(dynamodb::DynamoArgs),
    /// Write N events to a fresh SQLite event store, then time replaying them
    /// into fresh read models with the real projectors.
    Rebuild(rebuild::RebuildArgs),
    /// The trivial HTTP handler `bench http --ceiling` compares the ledger with.
    #[command(hide = true)]
    CeilingServer(ceiling::CeilingArgs),
}

pub fn run(command: BenchCommand) -> std::process::ExitCode {
    if matches!(command, BenchCommand::Dynamodb(_)) {
        dynamodb::default_emulator_credentials();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let outcome = runtime.block_on(async {
        match command {
            BenchCommand::Http(args) => http::run(args).await,
            BenchCommand::Dynamodb(args) => dynamodb::run(args).await,
            BenchCommand::Rebuild(args) => rebuild::run(args).await,
            BenchCommand::CeilingServer(args) => ceiling::serve(args).await,
        }
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("healthpay bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command line of this run, to print next to its numbers.
fn command_line() -> String {
    let mut args = std::env::args();
    let program = args.next().map(|p| std::path::Path::new(&p).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or(p)).unwrap_or_default();
    std::iter::once(program).chain(args.map(|a| if a.contains(' ') { format!("'{a}'") } else { a })).collect::<Vec<_>>().join(" ")
}
