//! Statistics over seeds: the median with a distribution-free 95% interval, and a proportion
//! with its Wilson interval. Both are exact functions of the numbers (no resampling), so a
//! report regenerates byte for byte.

use serde::{Deserialize, Serialize};

/// The confidence the intervals aim for.
pub const CONFIDENCE: f64 = 0.95;
/// The normal quantile for [`CONFIDENCE`], two-sided.
const Z_95: f64 = 1.959_963_984_540_054;

/// The median of sorted values (the mean of the middle two for an even count).
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// A 95% interval for the median from order statistics: `[x(j), x(n+1-j)]` with the largest
/// `j` whose coverage, `1 - 2 P(B < j)` for `B ~ Binomial(n, 1/2)`, is at least 95%. It holds
/// for any distribution; with fewer than 6 seeds no such interval exists and this is `None`
/// (even `[min, max]` covers the median with probability `1 - 2^(1-n)` only).
pub fn median_interval(sorted: &[f64]) -> Option<[f64; 2]> {
    let n = sorted.len();
    let mut best = None;
    // P(B < j), accumulated term by term.
    let mut below = 0.0;
    for j in 1..=n / 2 {
        below += binomial_half(n, j - 1);
        if 1.0 - 2.0 * below >= CONFIDENCE {
            best = Some(j);
        } else {
            break;
        }
    }
    best.map(|j| [sorted[j - 1], sorted[n - j]])
}

/// The coverage of `[min, max]` as an interval for the median of `n` seeds.
pub fn range_coverage(n: usize) -> f64 {
    1.0 - 2.0 * binomial_half(n, 0)
}

/// P(B = k) for B ~ Binomial(n, 1/2).
fn binomial_half(n: usize, k: usize) -> f64 {
    let mut c = 1.0_f64;
    for i in 0..k {
        c = c * (n - i) as f64 / (i + 1) as f64;
    }
    c * 0.5_f64.powi(n as i32)
}

/// `k` of `n` seeds, with the Wilson score interval for the underlying share.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    pub k: u64,
    pub n: u64,
    /// The 95% interval for the share, `[low, high]`, each in 0..=1.
    pub interval: [f64; 2],
}

impl Proportion {
    pub fn new(k: u64, n: u64) -> Proportion {
        Proportion {
            k,
            n,
            interval: wilson(k, n),
        }
    }
}

/// The Wilson score interval at 95% (better than the normal approximation near 0 and 1, and
/// never outside [0, 1]).
pub fn wilson(k: u64, n: u64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = Z_95 * Z_95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }

    #[test]
    fn no_95_percent_median_interval_below_six_seeds() {
        let v: Vec<f64> = (1..=5).map(f64::from).collect();
        assert_eq!(median_interval(&v), None);
        assert!((range_coverage(5) - 0.9375).abs() < 1e-12);
        let v: Vec<f64> = (1..=6).map(f64::from).collect();
        assert_eq!(median_interval(&v), Some([1.0, 6.0]));
    }

    #[test]
    fn twenty_seeds_give_the_6th_and_15th_values() {
        // The textbook table: n = 20 gives ranks 6 and 15 (coverage 95.9%).
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median_interval(&v), Some([6.0, 15.0]));
    }

    #[test]
    fn wilson_matches_known_values() {
        // 0 of 20: [0, 16.1%]; 10 of 20: [29.9%, 70.1%].
        let [lo, hi] = wilson(0, 20);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.1611).abs() < 1e-3, "{hi}");
        let [lo, hi] = wilson(10, 20);
        assert!((lo - 0.2993).abs() < 1e-3 && (hi - 0.7007).abs() < 1e-3);
    }
}
