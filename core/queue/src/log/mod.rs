//! One partition's durable log, as a sans-IO state machine.
//!
//! [`PartitionLog`] owns the partition's segments and never touches storage: every change it
//! makes to files comes out as a [`StorageOp`] that the driver drains with
//! [`PartitionLog::poll_op`] and applies in order, and the driver reports finished syncs with
//! [`PartitionLog::handle_synced`]. After a restart the driver reads the partition directory and
//! hands every file to [`PartitionLog::recover`].
//!
//! Files, relative to the broker's data dir: the partition directory `dir` (such as
//! `orders-0`) holds segments named `{base_offset:020}.log`, each a run of whole record
//! batches ([`batch`]). Other names in the directory (replication's [`meta`] file, for one)
//! belong to other owners and recovery leaves them alone.
//!
//! Module map: [`segment`] (one file and its in-memory mirror), [`index`] (the sparse offset
//! index of a segment), [`recovery`] (rebuilding a log from files), [`meta`] (small
//! checksummed records for replication's hard state).

use bytes::Bytes;

use crate::ids::TopicPartition;

pub mod batch;
pub mod index;
pub mod meta;
mod partition;
pub mod recovery;
pub mod segment;
#[cfg(test)]
mod tests;

pub use batch::BatchError;
pub use partition::{PartitionLog, PENDING_OPS_MAX, SYNCS_IN_FLIGHT_MAX};
pub use recovery::RecoveryReport;

/// A change to a file, for the driver to apply. Paths are relative to the broker's data dir
/// and use `/`. The driver applies ops in the order they are drained; a `Sync` covers every op
/// on its file drained before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageOp {
    /// Append bytes at the end of the file, creating it (and syncing its directory entry at the
    /// next Sync) if absent.
    Append {
        path: String,
        bytes: Bytes,
    },
    /// Make every earlier op on this file durable (fsync + parent dir sync). When done, the
    /// driver reports it with `handle_synced(token)`; the token's owner says which state
    /// machine that goes to.
    Sync {
        path: String,
        token: SyncToken,
    },
    /// Cut the file to `len` bytes.
    Truncate {
        path: String,
        len: u64,
    },
    Remove {
        path: String,
    },
}

/// Which state machine asked for a `Sync`, so that its completion is routed by type, never by
/// taking the path apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SyncOwner {
    /// A partition's log segments ([`PartitionLog`]).
    Log(TopicPartition),
    /// A partition's replication hard state, term and vote ([`meta`] records).
    RaftMeta(TopicPartition),
    /// The broker's producer-id incarnation counter.
    ProducerIds,
}

/// Names one `Sync`: the machine that issued it and that machine's own sequence number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncToken {
    pub owner: SyncOwner,
    pub seq: u64,
}

impl StorageOp {
    /// The file the op acts on.
    pub fn path(&self) -> &str {
        match self {
            StorageOp::Append { path, .. }
            | StorageOp::Sync { path, .. }
            | StorageOp::Truncate { path, .. }
            | StorageOp::Remove { path } => path,
        }
    }
}

/// Why the log refused a batch. The log is unchanged after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("batch of {len} bytes exceeds the limit of {max}")]
    BatchTooLarge { len: usize, max: usize },
    #[error("batch starts at offset {got}, the log ends at {expected}")]
    NotContiguous { expected: u64, got: u64 },
    #[error("batch has leader epoch {got}, below the log's last epoch {last}")]
    EpochRegressed { last: u64, got: u64 },
}
