//! Committed consumer offsets and group snapshots, stored as records of the internal offsets
//! topic.
//!
//! A commit is a record whose key names `(group, topic, partition)` and whose value is the next
//! offset to read. It is proposed to the offsets partition that coordinates the group and
//! acknowledged once committed, so a commit survives whatever a committed produce survives. Each
//! broker rebuilds the map by replaying the committed records of the offsets partitions it
//! hosts, which is how offsets come back after a restart. The same replay keeps the last
//! [`Snapshot`] of every group coordinated there (see [`crate::group::record`]), from which a
//! broker that becomes the coordinator rebuilds the groups.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::group::record::{self, Snapshot};
use crate::ids::TopicPartition;
use crate::log::batch::{self, NewRecord};

/// The offsets and group snapshots held by one partition of the offsets topic, up to `applied`.
#[derive(Debug, Default)]
pub struct OffsetStore {
    applied: u64,
    committed: BTreeMap<(String, TopicPartition), u64>,
    groups: BTreeMap<String, Snapshot>,
}

impl OffsetStore {
    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn get(&self, group: &str, partition: &TopicPartition) -> Option<u64> {
        self.committed
            .get(&(group.to_string(), partition.clone()))
            .copied()
    }

    /// The last snapshot of every group, for a new coordinator to load.
    pub fn group_snapshots(&self) -> impl Iterator<Item = &Snapshot> {
        self.groups.values()
    }

    /// Applies committed batches that start at `applied`, in order. A batch that fails its
    /// checks stops the replay there: its commits cannot be read, and `applied` stays below it,
    /// so the caller learns the log is damaged at `applied` rather than skipping past it.
    pub fn apply(&mut self, batches: &[Bytes]) -> Result<(), DamagedBatch> {
        for b in batches {
            // Applied already (a header that does not even parse is checked below).
            if batch::peek_header(b).is_ok_and(|h| h.end_offset() <= self.applied) {
                continue;
            }
            let Ok(header) = batch::parse(b) else {
                return Err(DamagedBatch { at: self.applied });
            };
            if !header.is_control() {
                for r in batch::records(b).unwrap_or_default() {
                    if let Some(snapshot) = record::decode(&r.key, &r.value) {
                        self.groups.insert(snapshot.group().to_string(), snapshot);
                    } else if let Some((key, offset)) = decode(&r.key, &r.value) {
                        self.committed.insert(key, offset);
                    }
                }
            }
            self.applied = header.end_offset();
        }
        Ok(())
    }
}

/// A committed batch of an offsets partition that does not parse (its checksum fails): the
/// store cannot apply it or anything after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamagedBatch {
    /// The offset the store has applied up to, where the damaged batch starts.
    pub at: u64,
}

pub fn encode_commit(
    group: &str,
    partition: &TopicPartition,
    offset: u64,
    timestamp_ns: u64,
) -> Bytes {
    let key = format!("{group}\0{}\0{}", partition.topic, partition.partition);
    batch::build(&[NewRecord {
        timestamp_ns,
        key: Bytes::from(key),
        value: Bytes::copy_from_slice(&offset.to_be_bytes()),
    }])
}

fn decode(key: &[u8], value: &[u8]) -> Option<((String, TopicPartition), u64)> {
    let key = std::str::from_utf8(key).ok()?;
    let mut parts = key.split('\0');
    let group = parts.next()?.to_string();
    let topic = parts.next()?.to_string();
    let partition = parts.next()?.parse().ok()?;
    let offset = u64::from_be_bytes(value.try_into().ok()?);
    Some(((group, TopicPartition::new(topic, partition)), offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaying_commits_keeps_the_last_one() {
        let tp = TopicPartition::new("orders", 2);
        let mut store = OffsetStore::default();
        let b1 = batch::stamp(&encode_commit("g", &tp, 10, 1), 0, 1);
        let b2 = batch::stamp(&encode_commit("g", &tp, 25, 2), 1, 1);
        store.apply(&[b1.clone(), b2]).unwrap();
        assert_eq!(store.get("g", &tp), Some(25));
        assert_eq!(store.get("other", &tp), None);
        assert_eq!(store.applied(), 2);
        store.apply(&[b1]).unwrap();
        assert_eq!(
            store.get("g", &tp),
            Some(25),
            "old batches are not re-applied"
        );
    }

    #[test]
    fn a_damaged_batch_stops_the_replay_where_it_starts() {
        let tp = TopicPartition::new("orders", 0);
        let mut store = OffsetStore::default();
        let b1 = batch::stamp(&encode_commit("g", &tp, 10, 1), 0, 1);
        let b2 = batch::stamp(&encode_commit("g", &tp, 25, 2), 1, 1);
        let mut damaged = b2.to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        let b3 = batch::stamp(&encode_commit("g", &tp, 40, 3), 2, 1);
        let result = store.apply(&[b1, Bytes::from(damaged), b3.clone()]);
        assert_eq!(result, Err(DamagedBatch { at: 1 }));
        assert_eq!(
            store.applied(),
            1,
            "nothing at or past the damaged batch is applied"
        );
        assert_eq!(store.get("g", &tp), Some(10));
        // A good copy of the batch (once repaired) carries the replay on.
        assert_eq!(store.apply(&[b2]), Ok(()));
        assert_eq!(store.applied(), 2);
    }
}
