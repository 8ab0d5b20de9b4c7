//! Time as the core sees it: a point on a monotonic clock that the driver passes in.
//!
//! The core never reads a clock. Every `handle_*` call carries `now`, and every timer the core
//! wants is returned from `poll_timeout`. Under simulation the driver's clock is turmoil's; in
//! production it is the process's monotonic clock. Both start at zero when the driver starts.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Nanoseconds since the driver started.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    /// Far enough away to mean "never"; still safe to add small durations to.
    pub const FAR_FUTURE: Instant = Instant(u64::MAX / 2);

    pub const fn from_nanos(ns: u64) -> Instant {
        Instant(ns)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `d` before this instant, or `None` when that is before the clock started.
    pub fn checked_sub(self, d: Duration) -> Option<Instant> {
        let d = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_sub(d).map(Instant)
    }

    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        )
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}ms", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// The earliest of a set of optional deadlines.
pub fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

/// The earliest of deadlines added one at a time, without collecting them first (for
/// `poll_timeout`s, which run on every turn of a driver's loop).
#[derive(Debug, Clone, Copy, Default)]
pub struct Earliest(Option<Instant>);

impl Earliest {
    pub fn of(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Earliest {
        Earliest(earliest(deadlines))
    }

    pub fn add(&mut self, deadline: Option<Instant>) {
        self.0 = earliest([self.0, deadline]);
    }

    pub fn get(self) -> Option<Instant> {
        self.0
    }
}

/// A `[min, max]` pair of milliseconds, as configurations write a jittered wait; serde refuses
/// a pair that is not ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<u64>")]
pub struct MillisRange {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl MillisRange {
    pub fn min(&self) -> Duration {
        Duration::from_millis(self.min_ms)
    }

    pub fn max(&self) -> Duration {
        Duration::from_millis(self.max_ms)
    }
}

impl TryFrom<Vec<u64>> for MillisRange {
    type Error = String;

    fn try_from(pair: Vec<u64>) -> Result<MillisRange, String> {
        match pair[..] {
            [min_ms, max_ms] if min_ms <= max_ms => Ok(MillisRange { min_ms, max_ms }),
            [min_ms, max_ms] => Err(format!(
                "min ({min_ms}) is above max ({max_ms}); write [min, max]"
            )),
            _ => Err(format!(
                "expected [min, max] (two integers), got {} values",
                pair.len()
            )),
        }
    }
}
