//! How the producer picks a partition for a record sent to a topic rather than to a partition
//! ([`super::Producer::send_to_topic`]).
//!
//! - [`Partitioner::KeyHash`]: CRC32C of the key modulo the partition count. CRC32C is fixed by
//!   its specification, so a key maps to the same partition on every run, machine and version
//!   (std's hasher is randomly seeded and may change between releases). Records without a key go
//!   the sticky way, as in Kafka.
//! - [`Partitioner::RoundRobin`]: partitions in turn, per topic.
//! - [`Partitioner::Sticky`]: every record goes to the partition whose batch the previous one
//!   joined, until that batch closes (full, or handed out); then a partition is drawn from the
//!   producer's seeded generator, another one than before when there are several. Fewer, fuller
//!   batches than round robin at the same rate (Kafka's KIP-480).

use std::collections::BTreeMap;

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Partitioner {
    #[default]
    KeyHash,
    RoundRobin,
    Sticky,
}

/// The partition of `key` among `count` for [`Partitioner::KeyHash`].
pub fn key_hash_partition(key: &[u8], count: u32) -> u32 {
    assert!(count > 0, "a topic has at least one partition");
    crc32c::crc32c(key) % count
}

/// Per-topic state of the partitioners.
#[derive(Debug, Default)]
pub(crate) struct PartitionerState {
    round_robin_next: BTreeMap<String, u32>,
    /// The sticky partition of each topic and the batch (by its creation number) it fills.
    sticky: BTreeMap<String, (u32, u64)>,
    /// Forked from the producer's generator on first use, so that producers not using the
    /// sticky partitioner draw exactly as before it existed.
    rng: Option<Rng>,
}

impl PartitionerState {
    /// The partition for a record of `topic` (with `count` partitions). `open_batch(p)` is the
    /// creation number of partition `p`'s open batch, if it has one.
    pub(crate) fn choose(
        &mut self,
        partitioner: Partitioner,
        topic: &str,
        key: Option<&[u8]>,
        count: u32,
        open_batch: impl Fn(u32) -> Option<u64>,
        producer_rng: &mut Rng,
    ) -> u32 {
        match (partitioner, key) {
            (Partitioner::KeyHash, Some(key)) => key_hash_partition(key, count),
            (Partitioner::RoundRobin, _) => {
                let next = self.round_robin_next.entry(topic.to_string()).or_default();
                let p = *next % count;
                *next = (p + 1) % count;
                p
            }
            (Partitioner::Sticky | Partitioner::KeyHash, _) => {
                let previous = self.sticky.get(topic).copied();
                if let Some((p, batch)) = previous {
                    if p < count && open_batch(p) == Some(batch) {
                        return p;
                    }
                }
                let rng = self.rng.get_or_insert_with(|| producer_rng.fork(0x571C));
                match previous {
                    Some((p, _)) if count > 1 && p < count => {
                        let draw = rng.range_u64(0, count as u64 - 2) as u32;
                        if draw >= p {
                            draw + 1
                        } else {
                            draw
                        }
                    }
                    _ => rng.range_u64(0, count as u64 - 1) as u32,
                }
            }
        }
    }

    /// The record chosen for `partition` joined the batch numbered `batch`.
    pub(crate) fn placed(
        &mut self,
        partitioner: Partitioner,
        topic: &str,
        keyed: bool,
        partition: u32,
        batch: u64,
    ) {
        let sticky =
            partitioner == Partitioner::Sticky || (partitioner == Partitioner::KeyHash && !keyed);
        if sticky {
            self.sticky.insert(topic.to_string(), (partition, batch));
        }
    }
}
