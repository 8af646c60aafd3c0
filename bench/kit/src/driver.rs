//! A closed-loop load driver: each client sends its next command as soon as the
//! previous one is answered, so the offered load adapts to the system (throughput
//! and latency are measured together, as a client population would see them).

use crate::report::progress_line;
use crate::stats::{ErrorCounts, Latency};
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one call of a client did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command was acknowledged.
    Ok,
    /// It failed; the code (`"409 CONCURRENCY_CONFLICT"`, `"transport"`, …) is counted.
    Failed(String),
    /// The client has nothing left to send (phases that run a fixed list of commands).
    Done,
}

/// One simulated client: its own state (connection, random generator, wallets).
pub trait Client: Send + 'static {
    fn call(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// Extra text for the progress line (e.g. lag samples so far).
pub type ProgressExtra = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    /// Commands answered during the warm-up are not measured (errors are reported apart).
    pub warmup: Duration,
    /// The measured window; with `until_done`, the time limit of the whole phase.
    pub duration: Duration,
    /// Run until every client is [`Outcome::Done`] (no warm-up), measuring all of it.
    pub until_done: bool,
    /// Print a progress line on stderr (every second on a terminal, every 5 s otherwise).
    pub progress: bool,
    /// Open loop: the clients together start this many commands per second (each
    /// client an equal share, evenly spaced) instead of sending as fast as they are
    /// answered. A command's latency is then counted from its scheduled start, so
    /// that time spent waiting behind a slow answer is not hidden.
    pub rate: Option<f64>,
}

impl Phase {
    pub fn timed(name: impl Into<String>, warmup: Duration, duration: Duration) -> Self {
        Phase { name: name.into(), warmup, duration, until_done: false, progress: true, rate: None }
    }

    pub fn until_done(name: impl Into<String>, limit: Duration) -> Self {
        Phase { name: name.into(), warmup: Duration::ZERO, duration: limit, until_done: true, progress: true, rate: None }
    }

    /// Open loop at `per_second` commands per second in total (see [`Phase::rate`]).
    pub fn at_rate(self, per_second: Option<f64>) -> Self {
        Phase { rate: per_second.filter(|r| *r > 0.0), ..self }
    }
}

#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub name: String,
    pub clients: usize,
    /// The length of the measured window.
    pub window: Duration,
    /// Commands acknowledged in the window.
    pub ok: u64,
    /// Commands that failed in the window, by code.
    pub errors: ErrorCounts,
    /// Failures during the warm-up (not in the window, never hidden).
    pub warmup_errors: ErrorCounts,
    /// Every command answered in the window, acknowledged or failed.
    pub latency: Latency,
    /// An `until_done` phase stopped at its time limit with commands left.
    pub timed_out: bool,
    /// Every command answered in the whole phase, warm-up included (to divide
    /// counters read before and after the phase, such as DynamoDB requests).
    pub answered_all: u64,
}

impl PhaseResult {
    /// Acknowledged commands per second of the window.
    pub fn ok_per_second(&self) -> f64 {
        let seconds = self.window.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    pub fn answered(&self) -> u64 {
        self.ok + self.errors.total()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "clients": self.clients,
            "seconds": self.window.as_secs_f64(),
            "ok": self.ok,
            "commandsPerSecond": self.ok_per_second(),
            "latencyMicros": self.latency.summary(),
            "errors": self.errors,
            "warmupErrors": self.warmup_errors,
            "timedOut": self.timed_out,
            "answeredAll": self.answered_all,
        })
    }
}

#[derive(Default)]
struct Live {
    ok: AtomicU64,
    failed: AtomicU64,
}

struct ClientTally {
    latency: Latency,
    ok: u64,
    errors: ErrorCounts,
    warmup_errors: ErrorCounts,
    last_answer: Option<Instant>,
    done: bool,
}

/// Runs `clients` concurrently (one tokio task each) through `phase`.
pub async fn drive<C: Client>(phase: &Phase, clients: Vec<C>, extra: Option<ProgressExtra>) -> PhaseResult {
    let count = clients.len();
    let started = Instant::now();
    let measure_from = started + phase.warmup;
    let end = measure_from + phase.duration;
    let live = Arc::new(Live::default());
    // Open loop: client i starts at i/count of an interval, then once per interval.
    let interval = phase.rate.map(|rate| Duration::from_secs_f64(count as f64 / rate));
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, mut client)| {
            let live = live.clone();
            let mut next = interval.map(|every| started + every.mul_f64(index as f64 / count as f64));
            tokio::spawn(async move {
                let mut tally = ClientTally {
                    latency: Latency::new(),
                    ok: 0,
                    errors: ErrorCounts::default(),
                    warmup_errors: ErrorCounts::default(),
                    last_answer: None,
                    done: false,
                };
                loop {
                    let sent = match (next.as_mut(), interval) {
                        (Some(at), Some(every)) => {
                            let scheduled = *at;
                            *at += every;
                            tokio::time::sleep_until(scheduled.into()).await;
                            scheduled
                        }
                        _ => Instant::now(),
                    };
                    if sent >= end {
                        break;
                    }
                    let outcome = client.call().await;
                    let answered = Instant::now();
                    let measured = sent >= measure_from && answered <= end;
                    match outcome {
                        Outcome::Done => {
                            tally.done = true;
                            break;
                        }
                        Outcome::Ok => {
                            live.ok.fetch_add(1, Ordering::Relaxed);
                            if measured {
                                tally.ok += 1;
                                tally.latency.record(answered - sent);
                                tally.last_answer = Some(answered);
                            }
                        }
                        Outcome::Failed(code) => {
                            live.failed.fetch_add(1, Ordering::Relaxed);
                            if measured {
                                tally.errors.add(&code);
                                tally.latency.record(answered - sent);
                                tally.last_answer = Some(answered);
                            } else if sent < measure_from {
                                tally.warmup_errors.add(&code);
                            }
                        }
                    }
                }
                tally
            })
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let ticker = phase.progress.then(|| {
        let (live, stop, phase, extra) = (live.clone(), stop.clone(), phase.clone(), extra.clone());
        tokio::spawn(async move {
            let terminal = std::io::stderr().is_terminal();
            let every = if terminal { Duration::from_secs(1) } else { Duration::from_secs(5) };
            let total = phase.warmup + phase.duration;
            let (mut last_at, mut last_done) = (Instant::now(), 0u64);
            let mut printed = false;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if last_at.elapsed() < every {
                    continue;
                }
                let (ok, failed) = (live.ok.load(Ordering::Relaxed), live.failed.load(Ordering::Relaxed));
                let rate = (ok + failed - last_done) as f64 / last_at.elapsed().as_secs_f64();
                (last_at, last_done) = (Instant::now(), ok + failed);
                let elapsed = started.elapsed();
                let extra = extra.as_ref().map(|f| f()).unwrap_or_default();
                let line = progress_line(&phase.name, elapsed, total, elapsed < phase.warmup, rate, ok, failed, &extra);
                let mut err = std::io::stderr().lock();
                let _ = if terminal { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
                let _ = err.flush();
                printed = true;
            }
            if printed && terminal {
                let _ = writeln!(std::io::stderr());
            }
        })
    });

    let mut result = PhaseResult {
        name: phase.name.clone(),
        clients: count,
        window: phase.duration,
        ok: 0,
        errors: ErrorCounts::default(),
        warmup_errors: ErrorCounts::default(),
        latency: Latency::new(),
        timed_out: false,
        answered_all: 0,
    };
    let mut last_answer = None;
    let mut all_done = true;
    for task in tasks {
        let tally = task.await.expect("a benchmark client panicked");
        result.ok += tally.ok;
        result.errors.merge(&tally.errors);
        result.warmup_errors.merge(&tally.warmup_errors);
        result.latency.merge(&tally.latency);
        last_answer = last_answer.max(tally.last_answer);
        all_done &= tally.done;
    }
    stop.store(true, Ordering::Relaxed);
    result.answered_all = live.ok.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed);
    if let Some(ticker) = ticker {
        let _ = ticker.await;
    }
    if phase.until_done {
        result.timed_out = !all_done;
        result.window = last_answer.map_or(Duration::ZERO, |at| at - started);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers `Ok` after a short sleep, fails every fourth call, stops after `limit` calls.
    struct Fake {
        calls: u32,
        limit: u32,
    }

    impl Client for Fake {
        async fn call(&mut self) -> Outcome {
            if self.calls == self.limit {
                return Outcome::Done;
            }
            self.calls += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            if self.calls.is_multiple_of(4) {
                Outcome::Failed("409 CONCURRENCY_CONFLICT".into())
            } else {
                Outcome::Ok
            }
        }
    }

    #[tokio::test]
    async fn an_until_done_phase_counts_every_answer_exactly() {
        let phase = Phase { progress: false, ..Phase::until_done("fixed", Duration::from_secs(30)) };
        assert_eq!(phase.rate, None);
        let clients = (0..3).map(|_| Fake { calls: 0, limit: 8 }).collect();
        let result = drive(&phase, clients, None).await;
        assert_eq!((result.ok, result.errors.total(), result.latency.count()), (18, 6, 24));
        assert_eq!(result.errors.with_prefix("409"), 6);
        assert_eq!(result.answered_all, 24);
        assert!(!result.timed_out);
        assert!(result.window >= Duration::from_millis(8), "{:?}", result.window);
    }

    #[tokio::test]
    async fn an_open_loop_phase_keeps_to_its_rate() {
        // 2 clients at 200/s in total for 100 ms: 20 commands are scheduled, no more.
        let phase = Phase { progress: false, ..Phase::timed("paced", Duration::ZERO, Duration::from_millis(100)) }.at_rate(Some(200.0));
        let clients = (0..2).map(|_| Fake { calls: 0, limit: u32::MAX }).collect();
        let result = drive(&phase, clients, None).await;
        assert!((15..=20).contains(&result.answered_all), "{}", result.answered_all);
        assert_eq!(Phase::timed("x", Duration::ZERO, Duration::ZERO).at_rate(Some(0.0)).rate, None);
    }

    #[tokio::test]
    async fn a_phase_over_its_time_limit_says_so() {
        let phase = Phase { progress: false, ..Phase::until_done("too long", Duration::from_millis(20)) };
        let result = drive(&phase, vec![Fake { calls: 0, limit: u32::MAX }], None).await;
        assert!(result.timed_out);
        assert!(result.ok > 0);
    }
}
