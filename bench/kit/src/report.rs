//! Formatting: numbers, durations, the progress line, per-phase reports and
//! Markdown tables.

use crate::driver::PhaseResult;
use crate::stats::Summary;
use std::time::Duration;

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate: whole numbers with separators from 100 up, one decimal below.
pub fn rate(per_second: f64) -> String {
    if !per_second.is_finite() {
        return "n/a".into();
    }
    if per_second >= 100.0 {
        thousands(per_second.round() as u64)
    } else {
        format!("{per_second:.1}")
    }
}

/// A latency in microseconds, in the unit that reads best: `850 µs`, `3.21 ms`,
/// `42.0 ms`, `310 ms`, `1.25 s`.
pub fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=9_999 => format!("{:.2} ms", us as f64 / 1e3),
        10_000..=99_999 => format!("{:.1} ms", us as f64 / 1e3),
        100_000..=999_999 => format!("{:.0} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// `p50 1.10 ms · p95 2.31 ms · p99 3.40 ms · max 12.1 ms`.
pub fn percentiles(s: &Summary) -> String {
    if s.count == 0 {
        return "n/a (no samples)".into();
    }
    format!("p50 {} · p95 {} · p99 {} · max {}", micros(s.p50_us), micros(s.p95_us), micros(s.p99_us), micros(s.max_us))
}

/// One progress line: `steady    12s/33s   23,456 cmd/s   ok 301,234   failed 0   lag samples 120`.
#[allow(clippy::too_many_arguments)]
pub fn progress_line(name: &str, elapsed: Duration, total: Duration, warming_up: bool, per_second: f64, ok: u64, failed: u64, extra: &str) -> String {
    let stage = if warming_up { " (warm-up)" } else { "" };
    let mut line = format!(
        "{name}{stage} {:>3}s/{}s {:>9} cmd/s   ok {}   failed {}",
        elapsed.as_secs(),
        total.as_secs(),
        rate(per_second),
        thousands(ok),
        thousands(failed)
    );
    if !extra.is_empty() {
        line.push_str("   ");
        line.push_str(extra);
    }
    line
}

/// The text report of a phase, followed by `extra` lines (`label`, value).
pub fn phase_report(result: &PhaseResult, extra: &[(&str, String)]) -> String {
    let mut lines = vec![
        format!("== {}: {} clients, {:.1} s measured", result.name, result.clients, result.window.as_secs_f64()),
        format!("{:<22}{}  ({} acknowledged, {} failed)", "commands/s", rate(result.ok_per_second()), thousands(result.ok), thousands(result.errors.total())),
        format!("{:<22}{}  ({} answers)", "latency", percentiles(&result.latency.summary()), thousands(result.latency.count())),
        format!("{:<22}{}", "errors by code", result.errors),
    ];
    if !result.warmup_errors.is_empty() {
        lines.push(format!("{:<22}{}", "errors in warm-up", result.warmup_errors));
    }
    if result.timed_out {
        lines.push(format!("{:<22}stopped at the time limit with commands left", "NOTE"));
    }
    for (label, value) in extra {
        lines.push(format!("{label:<22}{value}"));
    }
    lines.join("\n")
}

/// A Markdown table (GitHub flavour).
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// `ours / theirs` as `2.31×`, or `n/a` when theirs is zero.
pub fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 && ours.is_finite() {
        format!("{:.2}×", ours / theirs)
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ErrorCounts, Latency};

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(rate(25_123.6), "25,124");
        assert_eq!(rate(42.25), "42.2");
        assert_eq!(rate(f64::NAN), "n/a");
        assert_eq!(ratio(3.0, 2.0), "1.50×");
        assert_eq!(ratio(3.0, 0.0), "n/a");
    }

    #[test]
    fn latencies_pick_their_unit() {
        assert_eq!(micros(850), "850 µs");
        assert_eq!(micros(3_214), "3.21 ms");
        assert_eq!(micros(42_000), "42.0 ms");
        assert_eq!(micros(310_400), "310 ms");
        assert_eq!(micros(1_250_000), "1.25 s");
    }

    #[test]
    fn a_phase_report_names_every_number() {
        let mut latency = Latency::new();
        for us in [900, 1_000, 1_100, 5_000] {
            latency.record_micros(us);
        }
        let mut errors = ErrorCounts::default();
        errors.add("422 INSUFFICIENT_FUNDS");
        let result = PhaseResult {
            name: "steady".into(),
            clients: 64,
            window: Duration::from_secs(2),
            ok: 3,
            errors,
            warmup_errors: ErrorCounts::default(),
            latency,
            timed_out: false,
            answered_all: 4,
        };
        let text = phase_report(&result, &[("projection lag", "p50 1.00 ms".into())]);
        assert!(text.starts_with("== steady: 64 clients, 2.0 s measured\n"), "{text}");
        assert!(text.contains("commands/s            1.5  (3 acknowledged, 1 failed)"), "{text}");
        assert!(text.contains("p99 5.00 ms · max 5.00 ms  (4 answers)"), "{text}");
        assert!(text.contains("errors by code        422 INSUFFICIENT_FUNDS: 1"), "{text}");
        assert!(text.ends_with("projection lag        p50 1.00 ms"), "{text}");
        assert!(!text.contains("warm-up"));
        let json = result.to_json();
        assert_eq!(json["ok"], 3);
        assert_eq!(json["errors"]["422 INSUFFICIENT_FUNDS"], 1);
        assert_eq!(json["latencyMicros"]["max_us"], 5_000);
    }

    #[test]
    fn progress_and_tables_have_their_shape() {
        let line = progress_line("steady", Duration::from_millis(12_400), Duration::from_secs(33), false, 23_456.0, 301_234, 0, "lag samples 120");
        assert_eq!(line, "steady  12s/33s    23,456 cmd/s   ok 301,234   failed 0   lag samples 120");
        assert!(progress_line("steady", Duration::ZERO, Duration::from_secs(3), true, 0.0, 0, 0, "").starts_with("steady (warm-up)   0s/3s"));
        let table = markdown_table(&["what", "cmd/s"], &[vec!["embedded".into(), "25,000".into()]]);
        assert_eq!(table, "| what | cmd/s |\n|---|---|\n| embedded | 25,000 |\n");
    }
}
