//! Axes whose every number is a pure function of the data, bit for bit on every platform.
//!
//! plotters' own numeric and logarithmic coordinates place ticks with `powf`, `log10` and `ln`,
//! which call the platform's libm; libms differ in the last bit between systems, and a last bit
//! is enough to print `1000` on one machine and `999.9999999999999` on another. So the charts use
//! these axes instead: ticks are built from integers and exact powers of ten, the logarithm is
//! computed with IEEE-754 basic arithmetic only (correctly rounded everywhere), and labels are
//! printed by Rust's own float formatting, which does not depend on the platform either.

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};

/// Values farther from zero than this (or, on a log axis, closer to zero) are skipped like NaN,
/// so that spans, padding and tick arithmetic can never overflow to infinity.
pub const VALUE_ABS_MAX: f64 = 1e150;
/// Lowest positive value a log axis accepts; see [`VALUE_ABS_MAX`].
pub const LOG_VALUE_MIN: f64 = 1e-150;

/// Share of a linear span added on each side so that extreme points do not sit on the frame.
const LINEAR_PAD_FRACTION: f64 = 0.05;
/// Factor a log axis is widened by on each side, for the same reason.
const LOG_PAD_FACTOR: f64 = 1.1;
/// Half-width given to a linear axis whose data is a single value `v`: `|v|` times this, or
/// [`DEGENERATE_PAD_MIN`] when `v` is zero.
const DEGENERATE_PAD_FRACTION: f64 = 0.1;
const DEGENERATE_PAD_MIN: f64 = 1.0;
/// A log axis around a single value `v` spans `v / 2 ..= v * 2` (exact in binary).
const DEGENERATE_LOG_FACTOR: f64 = 2.0;

/// Linear tick steps are `m * 10^k` for `m` in this list and `k` in
/// `TICK_EXPONENT_MIN..=TICK_EXPONENT_MAX` (wide enough for ±`VALUE_ABS_MAX`).
const TICK_MANTISSAS: [i64; 3] = [1, 2, 5];
const TICK_EXPONENT_MIN: i32 = -160;
const TICK_EXPONENT_MAX: i32 = 160;
/// Mantissas per decade tried on a log axis, densest first; after that, powers of ten whose
/// exponent is a multiple of 2, 3, ...
const LOG_TICK_MANTISSAS: [&[i64]; 3] = [&[1, 2, 3, 4, 5, 6, 7, 8, 9], &[1, 2, 5], &[1]];
/// Terms of the atanh series in [`log10`]: with `|s| <= 0.172` the first term left out,
/// `s^25 / 25`, is below 1e-20 of the first.
const ATANH_TERMS: u32 = 12;
/// Labels at or beyond these magnitudes are printed in exponent form (`1e6`, `2.5e-5`).
const LABEL_PLAIN_MAX: f64 = 1e6;
const LABEL_PLAIN_MIN: f64 = 1e-4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log10,
}

impl Scale {
    pub fn from_log(log: bool) -> Scale {
        if log {
            Scale::Log10
        } else {
            Scale::Linear
        }
    }

    /// Whether `v` can be placed on this scale; anything else is skipped by the charts.
    pub fn accepts(self, v: f64) -> bool {
        match self {
            Scale::Linear => v.is_finite() && v.abs() <= VALUE_ABS_MAX,
            Scale::Log10 => v.is_finite() && (LOG_VALUE_MIN..=VALUE_ABS_MAX).contains(&v),
        }
    }

    fn transform(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log10 => log10(v),
        }
    }
}

/// The smallest and largest accepted value seen; folds data into an axis range.
#[derive(Debug, Clone, Copy)]
pub struct Extent {
    scale: Scale,
    min_max: Option<(f64, f64)>,
}

impl Extent {
    pub fn new(scale: Scale) -> Extent {
        Extent {
            scale,
            min_max: None,
        }
    }

    /// Includes `v` if the scale accepts it; returns whether it did.
    pub fn add(&mut self, v: f64) -> bool {
        if !self.scale.accepts(v) {
            return false;
        }
        self.min_max = Some(match self.min_max {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
        true
    }

    pub fn scale(&self) -> Scale {
        self.scale
    }

    pub fn min(&self) -> Option<f64> {
        self.min_max.map(|(lo, _)| lo)
    }

    pub fn max(&self) -> Option<f64> {
        self.min_max.map(|(_, hi)| hi)
    }

    /// A linear axis from exactly zero (when nothing is below it) to the values seen plus the
    /// usual margin; otherwise [`Extent::padded`].
    pub fn padded_from_zero(self) -> Axis {
        match (self.scale, self.min_max) {
            (Scale::Linear, Some((lo, hi))) if lo >= 0.0 && hi > 0.0 => {
                Axis::new(Scale::Linear, 0.0, hi + hi * LINEAR_PAD_FRACTION)
            }
            _ => self.padded(),
        }
    }

    /// An axis over exactly the values seen (a single value is still widened).
    pub fn tight(self) -> Axis {
        self.axis(false)
    }

    /// An axis over the values seen plus a margin on each side.
    pub fn padded(self) -> Axis {
        self.axis(true)
    }

    fn axis(self, pad: bool) -> Axis {
        let (lo, hi) = match (self.scale, self.min_max) {
            (Scale::Linear, None) => (0.0, 1.0),
            (Scale::Log10, None) => (1.0, 10.0),
            (Scale::Linear, Some((v, w))) if v == w => {
                let half = (v.abs() * DEGENERATE_PAD_FRACTION).max(DEGENERATE_PAD_MIN);
                (v - half, v + half)
            }
            (Scale::Log10, Some((v, w))) if v == w => {
                (v / DEGENERATE_LOG_FACTOR, v * DEGENERATE_LOG_FACTOR)
            }
            (Scale::Linear, Some((lo, hi))) if pad => {
                let margin = (hi - lo) * LINEAR_PAD_FRACTION;
                (lo - margin, hi + margin)
            }
            (Scale::Log10, Some((lo, hi))) if pad => (lo / LOG_PAD_FACTOR, hi * LOG_PAD_FACTOR),
            (_, Some((lo, hi))) => (lo, hi),
        };
        Axis::new(self.scale, lo, hi)
    }
}

/// A continuous axis from `lo` to `hi`: both finite, `lo < hi`, and `lo > 0` on a log scale.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    scale: Scale,
    lo: f64,
    hi: f64,
    /// `lo` and `hi` through the scale's transform, computed once.
    t_lo: f64,
    t_hi: f64,
}

impl Axis {
    pub fn new(scale: Scale, lo: f64, hi: f64) -> Axis {
        let positive = scale == Scale::Linear || lo > 0.0;
        assert!(
            lo.is_finite() && hi.is_finite() && lo < hi && positive,
            "axis {lo}..{hi}"
        );
        Axis {
            scale,
            lo,
            hi,
            t_lo: scale.transform(lo),
            t_hi: scale.transform(hi),
        }
    }

    /// The same axis with its top raised by `fraction` of its span, to leave room for labels.
    pub fn raised(self, fraction: f64) -> Axis {
        assert_eq!(self.scale, Scale::Linear);
        Axis::new(
            self.scale,
            self.lo,
            self.hi + (self.hi - self.lo) * fraction,
        )
    }

    pub fn lo(&self) -> f64 {
        self.lo
    }

    pub fn hi(&self) -> f64 {
        self.hi
    }

    /// `v` moved into the axis range; used for bars that start below a log axis.
    pub fn clamp(&self, v: f64) -> f64 {
        v.clamp(self.lo, self.hi)
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        // Nothing may land outside the plotting area: plotters does not clip.
        let fraction = (self.scale.transform(*v) - self.t_lo) / (self.t_hi - self.t_lo);
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        limit.0 + (fraction * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let max = hint.max_num_points();
        match self.scale {
            Scale::Linear => linear_ticks(self.lo, self.hi, max),
            Scale::Log10 => log_ticks(self.lo, self.hi, max),
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    fn format(v: &f64) -> String {
        format_number(*v)
    }
}

/// Evenly spaced categories `0, 1, .., count - 1`, each in a slot of width 1, labelled by name.
#[derive(Debug, Clone, Copy)]
pub struct CategoryAxis<'a> {
    names: &'a [String],
}

impl<'a> CategoryAxis<'a> {
    pub fn new(names: &'a [String]) -> CategoryAxis<'a> {
        CategoryAxis { names }
    }

    fn slots(&self) -> usize {
        self.names.len().max(1)
    }
}

impl Ranged for CategoryAxis<'_> {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        // Slot `i` spans `i - 0.5 ..= i + 0.5`.
        let fraction = (v + 0.5) / self.slots() as f64;
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        limit.0 + (fraction * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let max = hint.max_num_points();
        if max == 0 {
            return vec![];
        }
        let stride = self.names.len().div_ceil(max).max(1);
        (0..self.names.len())
            .step_by(stride)
            .map(|i| i as f64)
            .collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.slots() as f64 - 0.5
    }
}

impl ValueFormatter<f64> for CategoryAxis<'_> {
    fn format_ext(&self, v: &f64) -> String {
        let index = v.round();
        if index >= 0.0 && index < self.names.len() as f64 {
            self.names[index as usize].clone()
        } else {
            String::new()
        }
    }
}

/// `10^k`, exact for `|k| <= 22` and deterministic beyond.
fn pow10(k: i32) -> f64 {
    let mut p = 1.0;
    for _ in 0..k.unsigned_abs() {
        p *= 10.0;
    }
    p
}

/// `n * 10^k`, correctly rounded while `|k| <= 22` (dividing by an exact power of ten, never
/// multiplying by an inexact `0.1^k`), so that a tick prints as its short decimal.
fn scaled(n: f64, k: i32) -> f64 {
    if k >= 0 {
        n * pow10(k)
    } else {
        n / pow10(-k)
    }
}

/// `v / 10^k`, the inverse of [`scaled`].
fn unscaled(v: f64, k: i32) -> f64 {
    if k >= 0 {
        v / pow10(k)
    } else {
        v * pow10(-k)
    }
}

/// Multiples of the finest `m * 10^k` step that yields at most `max` ticks within `lo..=hi`.
fn linear_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    if max == 0 {
        return vec![];
    }
    for k in TICK_EXPONENT_MIN..=TICK_EXPONENT_MAX {
        for m in TICK_MANTISSAS {
            // In units of the step, scaling by exact powers of ten rather than an inexact step.
            let first = (unscaled(lo, k) / m as f64).ceil();
            let last = (unscaled(hi, k) / m as f64).floor();
            let count = last - first + 1.0;
            if !(count.is_finite() && count <= max as f64) {
                continue;
            }
            // `count <= max`, so this loop is bounded; `+ 0.0` turns a `-0` into `0`.
            return (0..count as i64)
                .map(|i| scaled((first + i as f64) * m as f64, k) + 0.0)
                .filter(|t| (lo..=hi).contains(t))
                .collect();
        }
    }
    vec![]
}

/// Ticks at `m * 10^k` for the densest mantissa set (and decade stride) giving at most `max`
/// and at least two ticks; a range narrower than that falls back to linear ticks.
fn log_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    // Decades are rounded outward; ticks outside `lo..=hi` are dropped below.
    let k_lo = log10(lo).floor() as i32 - 1;
    let k_hi = log10(hi).ceil() as i32 + 1;
    let decades = k_hi - k_lo;
    let in_range = |stride: i32, mantissas: &[i64]| -> Vec<f64> {
        (k_lo..=k_hi)
            .filter(|k| k.rem_euclid(stride) == 0)
            .flat_map(|k| mantissas.iter().map(move |&m| scaled(m as f64, k)))
            .filter(|t| (lo..=hi).contains(t))
            .collect()
    };
    for mantissas in LOG_TICK_MANTISSAS {
        let ticks = in_range(1, mantissas);
        if ticks.len() < 2 {
            break;
        }
        if ticks.len() <= max {
            return ticks;
        }
    }
    // Whole decades are still too many: keep those whose exponent is a multiple of `stride`.
    for stride in 2..=decades.max(2) {
        let ticks = in_range(stride, &[1]);
        if ticks.len() < 2 {
            break;
        }
        if ticks.len() <= max {
            return ticks;
        }
    }
    linear_ticks(lo, hi, max)
}

/// Base-10 logarithm from IEEE-754 basic arithmetic only, so it is bit-identical on every
/// platform (libm's is not). Accurate to a few ulps, which is plenty for placing pixels.
/// Returns negative infinity for zero and negatives, NaN for NaN.
pub fn log10(x: f64) -> f64 {
    const SUBNORMAL_SCALE_BITS: i32 = 54;
    const MANTISSA_MASK: u64 = (1 << 52) - 1;
    const EXPONENT_BIAS: i64 = 1023;
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if x == f64::INFINITY {
        return f64::INFINITY;
    }
    // Split x = m * 2^e with m in [1, 2); lift subnormals into the normal range first.
    let (x, e_offset) = if x < f64::MIN_POSITIVE {
        (
            x * scaled_pow2(SUBNORMAL_SCALE_BITS),
            -i64::from(SUBNORMAL_SCALE_BITS),
        )
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - EXPONENT_BIAS + e_offset;
    let mut m = f64::from_bits((bits & MANTISSA_MASK) | ((EXPONENT_BIAS as u64) << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    // ln(m) = 2 atanh(s) with s = (m - 1) / (m + 1), |s| <= 0.172 for m in [0.707, 1.415].
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut power = s;
    let mut series = 0.0;
    for i in 0..ATANH_TERMS {
        series += power / f64::from(2 * i + 1);
        power *= s2;
    }
    let ln = 2.0 * series + e as f64 * std::f64::consts::LN_2;
    ln * std::f64::consts::LOG10_E
}

fn scaled_pow2(bits: i32) -> f64 {
    let mut p = 1.0;
    for _ in 0..bits {
        p *= 2.0;
    }
    p
}

/// Prints a tick value: the shortest decimal that reads back as the same `f64` (Rust's own
/// algorithm, identical on every platform), in exponent form when very large or very small.
pub fn format_number(v: f64) -> String {
    let v = v + 0.0; // never print "-0"
    let magnitude = v.abs();
    if magnitude != 0.0 && !(LABEL_PLAIN_MIN..LABEL_PLAIN_MAX).contains(&magnitude) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log10_is_close_to_libm_over_many_decades() {
        let mut x = 1e-300_f64;
        while x < 1e300 {
            for m in [1.0, 1.5, 2.0, 3.7, 9.99] {
                let v = x * m;
                let error = (log10(v) - v.log10()).abs();
                assert!(
                    error <= 1e-13 * v.log10().abs().max(1.0),
                    "log10({v}): {error}"
                );
            }
            x *= 1e7;
        }
        assert!(
            log10(5e-324) > -324.0 && log10(5e-324) < -323.0,
            "subnormal"
        );
        assert_eq!(log10(0.0), f64::NEG_INFINITY);
        assert_eq!(log10(-1.0), f64::NEG_INFINITY);
        assert!(log10(f64::NAN).is_nan());
    }

    #[test]
    fn linear_ticks_are_short_decimals_within_range() {
        assert_eq!(linear_ticks(0.0, 1.0, 6), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(linear_ticks(-0.05, 0.35, 5), [0.0, 0.1, 0.2, 0.3]);
        assert_eq!(linear_ticks(-7.0, 12.0, 5), [-5.0, 0.0, 5.0, 10.0]);
        assert_eq!(
            linear_ticks(-7.0, 12.0, 10).len(),
            10,
            "step 2 from -6 to 12"
        );
        let labels: Vec<String> = linear_ticks(0.0, 0.7, 8)
            .into_iter()
            .map(format_number)
            .collect();
        assert_eq!(
            labels,
            ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"]
        );
        assert!(linear_ticks(0.0, 1.0, 0).is_empty());
    }

    #[test]
    fn linear_ticks_never_exceed_the_requested_count() {
        for (lo, hi) in [
            (0.0, 1e150),
            (-1e150, 1e150),
            (1e15, 1e15 + 8.0),
            (3.0, 3.5),
        ] {
            for max in 1..12 {
                let ticks = linear_ticks(lo, hi, max);
                assert!(ticks.len() <= max, "{lo}..{hi} max {max}: {ticks:?}");
                assert!(ticks.iter().all(|t| (lo..=hi).contains(t)));
            }
        }
    }

    #[test]
    fn log_ticks_prefer_whole_decades_then_thin_them() {
        assert_eq!(log_ticks(0.05, 2000.0, 10), [0.1, 1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(
            log_ticks(1.0, 100.0, 10),
            [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
        assert_eq!(log_ticks(1e-6, 1e6, 5), [1e-6, 1e-3, 1.0, 1e3, 1e6]);
        // Narrower than one tick pair: linear ticks on the log axis.
        assert_eq!(log_ticks(2.5, 2.9, 5), [2.5, 2.6, 2.7, 2.8, 2.9]);
    }

    #[test]
    fn labels_are_plain_decimals_or_exponents_never_negative_zero() {
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(1500.0), "1500");
        assert_eq!(format_number(0.001), "0.001");
        assert_eq!(format_number(2e6), "2e6");
        assert_eq!(format_number(2.5e-5), "2.5e-5");
        assert_eq!(format_number(-30.0), "-30");
    }

    #[test]
    fn extent_pads_a_single_value_and_ignores_what_the_scale_rejects() {
        let mut linear = Extent::new(Scale::Linear);
        assert!(!linear.add(f64::NAN));
        assert!(!linear.add(f64::INFINITY));
        assert!(linear.add(0.0));
        let axis = linear.padded();
        assert_eq!((axis.lo(), axis.hi()), (-1.0, 1.0));

        let mut log = Extent::new(Scale::Log10);
        assert!(!log.add(0.0));
        assert!(!log.add(-3.0));
        assert!(log.add(4.0));
        let axis = log.padded();
        assert_eq!((axis.lo(), axis.hi()), (2.0, 8.0));

        let empty = Extent::new(Scale::Log10).padded();
        assert_eq!((empty.lo(), empty.hi()), (1.0, 10.0));
    }

    #[test]
    fn mapping_stays_inside_the_pixel_range() {
        let axis = Axis::new(Scale::Log10, 1.0, 1000.0);
        assert_eq!(axis.map(&1.0, (0, 300)), 0);
        assert_eq!(axis.map(&10.0, (0, 300)), 100);
        assert_eq!(axis.map(&1000.0, (0, 300)), 300);
        assert_eq!(axis.map(&0.0, (0, 300)), 0);
        assert_eq!(axis.map(&f64::NAN, (0, 300)), 0);
        assert_eq!(axis.map(&1e9, (300, 0)), 0);
    }
}
