//! What the fault schedule and the run loop did to the cluster, as the summary and the report
//! list it: one [`AppliedFault`] per action.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::scenario::FaultTag;

/// One thing done to the cluster, for the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedFault {
    pub at_ms: u64,
    pub kind: AppliedKind,
    pub detail: String,
}

/// What was done: a scenario fault started (a `heal`, also a timed fault's own repair), or one
/// of the follow-ups that undo a fault or stand in for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliedKind {
    /// A `[[faults]]` kind took effect; [`FaultTag::Heal`] also for the end of a partition.
    Fault(FaultTag),
    /// A crashed broker was started again.
    Restart,
    /// Held links were released.
    Release,
    /// A lossy link got its base fail rate back.
    LossEnd,
    /// A slow link got its base latency back.
    LatencyEnd,
    /// A skewed clock runs at true speed again (its jumps stay: clocks do not step back).
    ClockEnd,
    /// A broker stopped on a storage error; the run loop restarts it.
    StorageFailure,
    /// A full disk has free space again.
    DiskFullEnd,
    /// A disk's EIO window ended.
    DiskEioEnd,
}

impl AppliedKind {
    /// The name in `summary.json` and the report.
    pub const fn name(self) -> &'static str {
        match self {
            AppliedKind::Fault(tag) => tag.name(),
            AppliedKind::Restart => "restart",
            AppliedKind::Release => "release",
            AppliedKind::LossEnd => "loss_end",
            AppliedKind::LatencyEnd => "latency_end",
            AppliedKind::ClockEnd => "clock_end",
            AppliedKind::StorageFailure => "storage_failure",
            AppliedKind::DiskFullEnd => "disk_full_end",
            AppliedKind::DiskEioEnd => "disk_eio_end",
        }
    }
}

impl fmt::Display for AppliedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl Serialize for AppliedKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}
