//! A lock-free latency histogram for hot paths: log-spaced buckets (eight per doubling,
//! from 1 µs to about 17 s) of atomic counters, so recording costs two relaxed atomic adds
//! and a quantile is a bucket's upper bound, at most 9 % above the exact value.
//!
//! Used for the stages of a write acknowledgement (`/debug/latency`, `/metrics`), so that
//! a late ack can be attributed to the stage that was late: queueing for the `write`
//! runtime, parsing, the WAL, the table lock, the applier.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Buckets per doubling of the latency.
const PER_DOUBLING: usize = 8;
/// 1 µs · 2^(192/8) ≈ 16.8 s; the last bucket also takes everything above.
const BUCKETS: usize = 192;

/// Upper bound, in nanoseconds, of bucket `i`.
fn upper_nanos(i: usize) -> f64 {
    1_000.0 * 2f64.powf((i + 1) as f64 / PER_DOUBLING as f64)
}

fn bucket_of(nanos: u64) -> usize {
    if nanos <= 1_000 {
        return 0;
    }
    let doublings = (nanos as f64 / 1_000.0).log2();
    ((doublings * PER_DOUBLING as f64).ceil() as usize)
        .saturating_sub(1)
        .min(BUCKETS - 1)
}

/// A histogram of durations; see the module docs.
#[derive(Debug)]
pub struct LatencyHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let nanos = d.as_nanos().min(u64::MAX as u128) as u64;
        self.counts[bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A guard that records the time since `start` when dropped: for a section with
    /// several exits (`?`), or one that ends when a lock guard declared before it drops.
    pub fn timer_from(&self, start: Instant) -> Timer<'_> {
        Timer { hist: self, start }
    }

    /// The counts so far; subtract two snapshots for the latencies between them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// See [`LatencyHistogram::timer_from`].
#[must_use = "the time is recorded when the timer is dropped"]
pub struct Timer<'a> {
    hist: &'a LatencyHistogram,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.hist.record(self.start.elapsed());
    }
}

/// The counts of a [`LatencyHistogram`] at one moment (serialized as JSON on
/// `/debug/latency`: `counts[i]` is the number of durations in
/// `(1 µs · 2^(i/8), 1 µs · 2^((i+1)/8)]`, the first bucket also takes everything below).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HistogramSnapshot {
    pub counts: Vec<u64>,
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The durations recorded after `earlier` was taken.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
                .collect(),
            sum_nanos: self.sum_nanos.saturating_sub(earlier.sum_nanos),
        }
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1), in milliseconds; 0
    /// when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_nanos(i) / 1e6;
            }
        }
        upper_nanos(BUCKETS - 1) / 1e6
    }

    /// Mean in milliseconds; 0 when empty.
    pub fn mean_ms(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            n => self.sum_nanos as f64 / n as f64 / 1e6,
        }
    }

    /// Prometheus histogram lines for `name{labels}` with `le` buckets at every
    /// doubling (cumulative), `_sum` and `_count`, in seconds.
    pub fn to_prometheus(&self, name: &str, labels: &str) -> String {
        use std::fmt::Write as _;
        let sep = if labels.is_empty() { "" } else { "," };
        let mut out = String::new();
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c;
            if (i + 1) % PER_DOUBLING == 0 {
                let le = upper_nanos(i) / 1e9;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
                );
            }
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_nanos as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket_of_the_exact_ones() {
        let h = LatencyHistogram::default();
        // 1..=10_000 µs, uniformly.
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 10_000);
        for (q, exact_ms) in [(0.5, 5.0), (0.99, 9.9), (1.0, 10.0)] {
            let got = s.quantile_ms(q);
            // An upper bound, at most one bucket (×2^(1/8) ≈ 1.09) above.
            assert!(
                got >= exact_ms && got <= exact_ms * 1.091,
                "q{q}: {got} vs {exact_ms}"
            );
        }
        assert!((s.mean_ms() - 5.0005).abs() < 1e-6, "{}", s.mean_ms());
    }

    #[test]
    fn since_subtracts_and_extremes_land_in_the_end_buckets() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_nanos(10));
        let before = h.snapshot();
        h.record(Duration::from_secs(3600));
        h.record(Duration::from_millis(2));
        let delta = h.snapshot().since(&before);
        assert_eq!(delta.count(), 2);
        assert_eq!(before.counts[0], 1);
        assert_eq!(delta.counts[BUCKETS - 1], 1);
        assert!(delta.quantile_ms(0.5) >= 2.0 && delta.quantile_ms(0.5) < 2.2);
        let text = delta.to_prometheus("x_seconds", "stage=\"a\"");
        assert!(
            text.contains("x_seconds_bucket{stage=\"a\",le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(text.contains("x_seconds_count{stage=\"a\"} 2"), "{text}");
    }
}
