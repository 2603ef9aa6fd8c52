//! The latency histogram: fixed bucket bounds, and the P95 read from bucket counts.

/// Upper bounds of the latency buckets, in milliseconds. Dense between 250 and 600 ms so
/// the P95 near the target (400 ms) and the alert threshold (500 ms) is read within 50 ms.
/// A last, open bucket (`+Inf`) follows.
pub const BOUNDS_MS: [u64; 20] = [
    5, 10, 25, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 600, 750, 1000, 1500, 2500, 5000,
    10000,
];

/// Number of buckets, the open one included.
pub const BUCKETS: usize = BOUNDS_MS.len() + 1;

/// The bucket a duration (in microseconds) falls into: the first bound it does not exceed.
pub fn bucket_of(micros: u64) -> usize {
    // Bounds are inclusive (`le`), as Prometheus counts them.
    BOUNDS_MS
        .iter()
        .position(|&b| micros <= b * 1000)
        .unwrap_or(BOUNDS_MS.len())
}

/// The `q` quantile (0 < q < 1) of a histogram given as per-bucket (not cumulative)
/// counts, in milliseconds; 0 with no observations.
///
/// As Prometheus' `histogram_quantile`: the rank is `q × total`; inside the bucket that
/// holds the rank, observations are taken as spread evenly between the bucket's lower and
/// upper bound, so the value is interpolated linearly. The first bucket starts at 0; a rank
/// in the open bucket reads as the highest finite bound (10 s).
pub fn quantile_ms(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let Some(&upper) = BOUNDS_MS.get(i) else {
                return BOUNDS_MS[BOUNDS_MS.len() - 1] as f64;
            };
            let lower = if i == 0 { 0 } else { BOUNDS_MS[i - 1] };
            let within = (rank - below as f64).max(0.0) / c as f64;
            return lower as f64 + (upper - lower) as f64 * within;
        }
        below += c;
    }
    BOUNDS_MS[BOUNDS_MS.len() - 1] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(obs: &[(u64, u64)]) -> Vec<u64> {
        let mut h = vec![0; BUCKETS];
        for &(ms, n) in obs {
            h[bucket_of(ms * 1000)] += n;
        }
        h
    }

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(5_000), 0);
        assert_eq!(bucket_of(5_001), 1);
        assert_eq!(bucket_of(400_000), 10);
        assert_eq!(bucket_of(400_001), 11);
        assert_eq!(bucket_of(10_000_000), 19);
        assert_eq!(bucket_of(10_000_001), 20);
        assert_eq!(BUCKETS, 21);
    }

    #[test]
    fn p95_interpolates_inside_the_bucket() {
        // 90 fast (in (10, 25]), 10 slow (in (400, 450]): rank 95 is the 5th of the 10
        // slow ones, half-way through 400..450.
        let h = hist(&[(20, 90), (420, 10)]);
        assert!((quantile_ms(&h, 0.95) - 425.0).abs() < 1e-9);
        // All in the first bucket: 0..5 ms.
        let h = hist(&[(1, 100)]);
        assert!((quantile_ms(&h, 0.95) - 4.75).abs() < 1e-9);
        // Rank in the open bucket reads as the last finite bound.
        let h = hist(&[(60_000, 1)]);
        assert_eq!(quantile_ms(&h, 0.95), 10_000.0);
        assert_eq!(quantile_ms(&[0; BUCKETS], 0.95), 0.0);
    }
}
