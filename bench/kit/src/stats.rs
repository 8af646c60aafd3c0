//! Latency histograms and error counts.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The largest latency a histogram holds exactly (longer ones are recorded as this).
pub const MAX_RECORDED: Duration = Duration::from_secs(120);

/// Latencies in microseconds: an HDR histogram (3 significant digits, so every
/// percentile is within 0.1 % of the exact value), plus the exact count, sum and
/// maximum.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
    count: u64,
    sum_micros: u128,
    max_micros: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            histogram: Histogram::new_with_bounds(1, MAX_RECORDED.as_micros() as u64, 3).expect("valid histogram bounds"),
            count: 0,
            sum_micros: 0,
            max_micros: 0,
        }
    }
}

/// Percentiles and extremes of a [`Latency`], in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, elapsed: Duration) {
        self.record_micros(elapsed.as_micros().min(u64::MAX as u128) as u64);
    }

    pub fn record_micros(&mut self, micros: u64) {
        // Sub-microsecond answers count as 1 µs (the histogram's lowest value).
        self.histogram.saturating_record(micros.max(1));
        self.count += 1;
        self.sum_micros += micros as u128;
        self.max_micros = self.max_micros.max(micros);
    }

    pub fn merge(&mut self, other: &Latency) {
        self.histogram.add(&other.histogram).expect("histograms with the same bounds add up");
        self.count += other.count;
        self.sum_micros += other.sum_micros;
        self.max_micros = self.max_micros.max(other.max_micros);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0..=1); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        // The HDR value is the top of the bucket; never report more than the true max.
        self.histogram.value_at_quantile(q).min(self.max_micros)
    }

    pub fn summary(&self) -> Summary {
        if self.count == 0 {
            return Summary::default();
        }
        Summary {
            count: self.count,
            mean_us: self.sum_micros as f64 / self.count as f64,
            p50_us: self.quantile(0.50),
            p95_us: self.quantile(0.95),
            p99_us: self.quantile(0.99),
            max_us: self.max_micros,
        }
    }
}

/// How many commands failed, by `"<status> <code>"` (e.g. `409 CONCURRENCY_CONFLICT`,
/// `transport`), sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ErrorCounts(pub BTreeMap<String, u64>);

impl ErrorCounts {
    pub fn add(&mut self, code: &str) {
        *self.0.entry(code.to_string()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        for (code, n) in &other.0 {
            *self.0.entry(code.clone()).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The count of every code starting with `prefix` (`"409"`, `"5"`).
    pub fn with_prefix(&self, prefix: &str) -> u64 {
        self.0.iter().filter(|(code, _)| code.starts_with(prefix)).map(|(_, n)| n).sum()
    }
}

impl fmt::Display for ErrorCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.0.iter().map(|(code, n)| format!("{code}: {n}")).collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within_a_thousandth(value: u64, exact: u64) -> bool {
        value.abs_diff(exact) as f64 <= exact as f64 / 1000.0 + 1.0
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latency = Latency::new();
        for micros in 1..=10_000 {
            latency.record_micros(micros);
        }
        let s = latency.summary();
        assert_eq!(s.count, 10_000);
        assert!(within_a_thousandth(s.p50_us, 5_000), "{s:?}");
        assert!(within_a_thousandth(s.p95_us, 9_500), "{s:?}");
        assert!(within_a_thousandth(s.p99_us, 9_900), "{s:?}");
        assert_eq!(s.max_us, 10_000);
        assert!((s.mean_us - 5_000.5).abs() < 1e-9);
    }

    #[test]
    fn a_tail_shows_in_p99_not_in_p50() {
        let mut latency = Latency::new();
        for _ in 0..980 {
            latency.record(Duration::from_micros(200));
        }
        for _ in 0..20 {
            latency.record(Duration::from_millis(40));
        }
        let s = latency.summary();
        assert!(within_a_thousandth(s.p50_us, 200), "{s:?}");
        assert!(within_a_thousandth(s.p95_us, 200), "{s:?}");
        assert!(within_a_thousandth(s.p99_us, 40_000), "{s:?}");
        assert_eq!(s.max_us, 40_000);
    }

    #[test]
    fn merged_histograms_count_everything_and_empty_ones_report_zero() {
        assert_eq!(Latency::new().summary(), Summary::default());
        let (mut a, mut b) = (Latency::new(), Latency::new());
        a.record_micros(100);
        b.record_micros(300);
        b.record(MAX_RECORDED * 2);
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 3);
        assert_eq!(s.max_us, (MAX_RECORDED * 2).as_micros() as u64, "the maximum is exact even beyond the histogram");
        assert!(within_a_thousandth(s.p50_us, 300));
    }

    #[test]
    fn error_counts_add_merge_and_print_sorted() {
        let mut a = ErrorCounts::default();
        assert_eq!(a.to_string(), "none");
        a.add("500 INTERNAL");
        a.add("409 CONCURRENCY_CONFLICT");
        let mut b = ErrorCounts::default();
        b.add("409 CONCURRENCY_CONFLICT");
        b.add("transport");
        a.merge(&b);
        assert_eq!(a.to_string(), "409 CONCURRENCY_CONFLICT: 2, 500 INTERNAL: 1, transport: 1");
        assert_eq!((a.total(), a.with_prefix("409"), a.with_prefix("5")), (4, 2, 1));
    }
}
