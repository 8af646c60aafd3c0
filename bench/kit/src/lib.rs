//! What the HealthPay benchmarks share — `healthpay bench …` and the cqrs-es peer
//! (`bench/peer`) — so that both run exactly the same workload and report it the
//! same way:
//!
//! - [`mix`]: the command mix (credits, debits, transfers), a small deterministic
//!   random generator, amounts;
//! - [`stats`]: latency histograms (HDR, microseconds) and error counts by code;
//! - [`driver`]: a closed-loop driver — N clients, each sending its next command
//!   when the previous one is answered — with a warm-up, a time limit and a
//!   progress line;
//! - [`report`]: number formatting, the per-phase text report and Markdown rows.

pub mod driver;
pub mod mix;
pub mod report;
pub mod stats;
