//! Progress on stderr for the long-running tools (`rebuild`, `verify`, `bench
//! rebuild`): an `indicatif` bar redrawn in place on a terminal; elsewhere (a log, CI)
//! a plain line every 5 seconds and one at the end, so the output stays readable.

use bench_kit::report::{rate, thousands};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Progress {
    name: &'static str,
    unit: &'static str,
    total: u64,
    done: AtomicU64,
    started: Instant,
    /// On a terminal.
    bar: Option<ProgressBar>,
    /// Otherwise: when the last line was printed.
    last_line: Mutex<Instant>,
}

const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// `total` of `unit`s to do (0: unknown, a spinner).
    pub fn new(name: &'static str, unit: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = if total == 0 { ProgressBar::new_spinner() } else { ProgressBar::new(total) };
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            let template = if total == 0 {
                format!("{{prefix:<7}} {{spinner}} {{human_pos}} {unit} {{per_sec}} {{elapsed}}")
            } else {
                format!("{{prefix:<7}}[{{bar:20}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} eta {{eta}}")
            };
            bar.set_style(ProgressStyle::with_template(&template).expect("a valid template").progress_chars("#>-"));
            bar.set_prefix(name);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let now = Instant::now();
        Progress { name, unit, total, done: AtomicU64::new(0), started: now, bar, last_line: Mutex::new(now) }
    }

    pub fn inc(&self, by: u64) {
        let done = self.done.fetch_add(by, Ordering::Relaxed) + by;
        self.show(done);
    }

    pub fn set(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.show(done);
    }

    fn show(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    eprintln!("{}", line(self.name, self.unit, done, self.total, self.started.elapsed()));
                }
            }
        }
    }

    /// Draws the final state and leaves it on screen.
    pub fn finish(&self) {
        let done = self.done.load(Ordering::Relaxed);
        match &self.bar {
            Some(bar) => bar.finish(),
            None => eprintln!("{}", line(self.name, self.unit, done, self.total, self.started.elapsed())),
        }
    }
}

/// `replay [#########-----------]  450,560/1,000,000 events  48,123 events/s  eta 11 s`.
pub fn line(name: &str, unit: &str, done: u64, total: u64, elapsed: Duration) -> String {
    const WIDTH: u64 = 20;
    let per_second = done as f64 / elapsed.as_secs_f64().max(1e-9);
    if total == 0 {
        return format!("{name:<7}{:>9} {unit} {:>9} {unit}/s", thousands(done), rate(per_second));
    }
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(WIDTH) as usize;
    let eta = if done >= total || per_second <= 0.0 { String::new() } else { format!("  eta {:.0} s", (total - done) as f64 / per_second) };
    format!(
        "{name:<7}[{}{}] {:>9}/{} {unit} {:>9} {unit}/s{eta}",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled),
        thousands(done),
        thousands(total),
        rate(per_second)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_fills_with_the_work() {
        assert_eq!(line("replay", "events", 0, 1_000, Duration::from_secs(1)), "replay [--------------------]         0/1,000 events       0.0 events/s");
        assert_eq!(
            line("replay", "events", 500_000, 1_000_000, Duration::from_secs(10)),
            "replay [##########----------]   500,000/1,000,000 events    50,000 events/s  eta 10 s"
        );
        assert!(line("write", "events", 1_000, 1_000, Duration::from_secs(2)).starts_with("write  [####################]"));
        assert_eq!(line("scan", "events", 2_000, 0, Duration::from_secs(2)), "scan       2,000 events     1,000 events/s");
    }
}
