//! Latency percentiles of a set of requests: nearest rank over every sample.

use serde::{Deserialize, Serialize};

/// Latency percentiles of a set of requests, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Requests measured.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of `samples` (nanoseconds), by nearest rank.
    pub fn of(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let ms = |ns: u64| ns as f64 / 1e6;
        Latency {
            count: n as u64,
            mean_ms: samples.iter().map(|&s| s as f64).sum::<f64>() / n as f64 / 1e6,
            p50_ms: ms(rank(0.50)),
            p99_ms: ms(rank(0.99)),
            p999_ms: ms(rank(0.999)),
            max_ms: ms(samples[n - 1]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_milliseconds() {
        // 1..=1000 ms, shuffled.
        let samples: Vec<u64> = (1..=1000u64).rev().map(|ms| ms * 1_000_000).collect();
        let latency = Latency::of(samples);
        assert_eq!(latency.count, 1000);
        assert_eq!(latency.p50_ms, 500.0);
        assert_eq!(latency.p99_ms, 990.0);
        assert_eq!(latency.p999_ms, 999.0);
        assert_eq!(latency.max_ms, 1000.0);
        assert_eq!(latency.mean_ms, 500.5);
    }

    #[test]
    fn no_samples_give_zeroes() {
        assert_eq!(Latency::of(Vec::new()).count, 0);
    }
}
