//! Origin latency: the histogram's buckets and the summary the stats JSON
//! gives.

/// Upper bounds of the finite latency buckets, in microseconds.
pub(super) const LATENCY_BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// The `le` labels of the buckets, the last one `+Inf`.
pub(super) const LATENCY_LE: [&str; 14] =
    ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
pub(super) const BUCKETS: usize = LATENCY_LE.len();

/// Latency in milliseconds from bucket counts: the mean from the exact sum,
/// each quantile as the upper bound of the bucket holding it (the largest
/// latency seen when that is the unbounded bucket).
pub(super) fn latency_summary(buckets: &[u64; BUCKETS], sum_us: u64, max_us: u64) -> LatencySummary {
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return LatencySummary::default();
    }
    let quantile = |q: f64| {
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (i, n) in buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let us = LATENCY_BOUNDS_US.get(i).copied().unwrap_or(max_us);
                return us as f64 / 1000.0;
            }
        }
        max_us as f64 / 1000.0
    };
    LatencySummary {
        count,
        mean: sum_us as f64 / count as f64 / 1000.0,
        p50: quantile(0.50),
        p90: quantile(0.90),
        p99: quantile(0.99),
    }
}

/// Origin latency in milliseconds, estimated from the histogram; zeros when `count` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

#[cfg(test)]
mod tests {
    use crate::metrics::DistStats;
    use std::time::Duration;

    #[test]
    fn latency_quantiles_from_buckets() {
        let s = DistStats::new("E1");
        // 80 at 3 ms (bucket 5 ms), 15 at 40 ms (bucket 50 ms), 5 at 700 ms (bucket 1 s).
        for _ in 0..80 {
            s.record_origin_latency(Duration::from_millis(3));
        }
        for _ in 0..15 {
            s.record_origin_latency(Duration::from_millis(40));
        }
        for _ in 0..5 {
            s.record_origin_latency(Duration::from_millis(700));
        }
        let l = s.snapshot().origin_latency_ms;
        assert_eq!(l.count, 100);
        assert!((l.mean - (80.0 * 3.0 + 15.0 * 40.0 + 5.0 * 700.0) / 100.0).abs() < 1e-9);
        assert_eq!((l.p50, l.p90, l.p99), (5.0, 50.0, 1000.0));
        // Exactly on a bound stays in that bucket; beyond the last bound reports the largest seen.
        let t = DistStats::new("E2");
        t.record_origin_latency(Duration::from_millis(1));
        assert_eq!(t.snapshot().origin_latency_ms.p50, 1.0);
        t.record_origin_latency(Duration::from_secs(30));
        t.record_origin_latency(Duration::from_secs(20));
        let l = t.snapshot().origin_latency_ms;
        assert_eq!((l.count, l.p50, l.p99), (3, 30_000.0, 30_000.0));
    }
}
