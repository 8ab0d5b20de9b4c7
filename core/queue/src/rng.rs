//! The one source of randomness in the core: ChaCha8, seeded by the caller.
//!
//! ChaCha8's output is fixed by its specification, so a seed replays the same draws on every
//! platform and every version of this crate's dependencies.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A child generator for a sub-component, so that adding draws in one component does not
    /// shift the draws of another.
    pub fn fork(&mut self, salt: u64) -> Rng {
        Rng::new(self.0.next_u64() ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[low, high]`; `low` when the range is empty.
    pub fn range_u64(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        let span = high - low + 1;
        // Rejection sampling keeps the draw unbiased.
        let zone = u64::MAX - (u64::MAX % span);
        loop {
            let x = self.0.next_u64();
            if x < zone {
                return low + x % span;
            }
        }
    }

    pub fn duration_between(&mut self, low: Duration, high: Duration) -> Duration {
        Duration::from_nanos(self.range_u64(low.as_nanos() as u64, high.as_nanos() as u64))
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        ((self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    /// Guards determinism across dependency upgrades: a changed algorithm or seed expansion
    /// changes every history. The literals are ChaCha8 (RFC 7539's block function with 8 rounds,
    /// 64-bit counter at 0, zero nonce, two little-endian words per u64) keyed by rand_core's
    /// `seed_from_u64` (PCG32 expansion); they were checked against an implementation written
    /// from those specifications, not only against the crate under test.
    #[test]
    fn chacha8_output_is_pinned() {
        let mut r = Rng::new(42);
        let first: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(
            first,
            [
                0xae90_bfb5_395d_5ba1,
                0xf345_3fc6_2579_9188,
                0x6d71_b708_c5b6_538c,
                0xa09a_b2f9_5816_6752,
            ]
        );
        let mut r = Rng::new(0);
        assert_eq!(
            [r.next_u64(), r.next_u64()],
            [0xb585_f767_a79a_3b6c, 0x7746_a55f_bad8_c037]
        );
        // What the core derives from a draw is pinned too: forks and ranges.
        assert_eq!(Rng::new(42).fork(7).next_u64(), 0x513f_cfa8_cd78_e580);
        assert_eq!(Rng::new(42).range_u64(150, 300), 222);
    }

    #[test]
    fn range_stays_in_bounds() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let x = r.range_u64(150, 300);
            assert!((150..=300).contains(&x));
        }
        assert_eq!(r.range_u64(5, 5), 5);
    }
}
