//! Tests of `PartitionLog`, one file per behaviour; `disk` is the in-memory directory they
//! apply storage ops to.

mod append_read;
mod crash;
mod disk;
mod recovery;
mod truncate_sync;

use bytes::Bytes;

use crate::config::{FsyncPolicy, LogConfig};
use crate::ids::TopicPartition;
use crate::log::batch::{self, NewRecord};
use crate::log::{PartitionLog, StorageOp, SyncOwner, SyncToken};

/// The directory of [`tp`].
pub const DIR: &str = "orders-0";

/// The partition every log test writes.
pub fn tp() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

/// The token of the log's `seq`-th sync.
pub fn log_token(seq: u64) -> SyncToken {
    SyncToken {
        owner: SyncOwner::Log(tp()),
        seq,
    }
}

/// Small segments and a dense index, so a few batches span several segments.
pub fn small_config() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::EveryBatch,
        fsync_interval_ms: 100,
        segment_bytes_max: 400,
        index_interval_bytes: 120,
        batch_bytes_max: 4096,
    }
}

/// A producer's batch of `records` records whose values are `value_len` bytes of `tag`.
pub fn producer_batch(records: usize, value_len: usize, tag: u8) -> Bytes {
    let recs: Vec<NewRecord> = (0..records)
        .map(|i| NewRecord {
            timestamp_ns: i as u64,
            key: Bytes::from(vec![tag; 2]),
            value: Bytes::from(vec![tag; value_len]),
        })
        .collect();
    batch::build(&recs)
}

/// Appends `n` batches of 1 to 4 records as leader of `epoch`.
pub fn append_n(log: &mut PartitionLog, n: usize, epoch: u64) {
    for i in 0..n {
        let b = producer_batch(i % 4 + 1, 10 + (i * 7) % 40, i as u8);
        log.append_as_leader(&b, epoch).unwrap();
    }
}

/// Every stored batch, in order.
pub fn all_batches(log: &PartitionLog) -> Vec<Bytes> {
    log.read(0, u64::MAX, usize::MAX)
}

/// Every batch end offset, in order.
pub fn batch_ends(log: &PartitionLog) -> Vec<u64> {
    all_batches(log)
        .iter()
        .map(|b| batch::parse(b).unwrap().end_offset())
        .collect()
}

pub fn drain(log: &mut PartitionLog) -> Vec<StorageOp> {
    std::iter::from_fn(|| log.poll_op()).collect()
}

pub fn segment_path(base: u64) -> String {
    format!("{DIR}/{}", crate::log::segment::file_name(base))
}
