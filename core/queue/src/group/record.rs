//! Group snapshots as records of the offsets partition.
//!
//! A commit's key is `group \0 topic \0 partition` (see [`crate::broker::offsets`]); a group
//! snapshot's key starts with [`SNAPSHOT_KEY_PREFIX`], a byte no group name may start with, so
//! the two never collide and a reader that knows only commits skips snapshots. The value is the
//! snapshot in postcard; the last snapshot of a group wins on replay.

use bytes::Bytes;

use serde::{Deserialize, Serialize};

use super::classic::GroupSnapshot;
use super::consumer::ConsumerGroupSnapshot;
use crate::log::batch::{self, NewRecord};

/// Marks a group snapshot's key.
pub const SNAPSHOT_KEY_PREFIX: u8 = 0x01;

/// A group's persisted state under either protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Snapshot {
    Classic(GroupSnapshot),
    Consumer(ConsumerGroupSnapshot),
}

impl Snapshot {
    pub fn group(&self) -> &str {
        match self {
            Snapshot::Classic(s) => &s.group,
            Snapshot::Consumer(s) => &s.group,
        }
    }
}

pub fn encode(snapshot: &Snapshot, timestamp_ns: u64) -> Bytes {
    let mut key = vec![SNAPSHOT_KEY_PREFIX];
    key.extend_from_slice(snapshot.group().as_bytes());
    // postcard cannot fail on these types (strings, integers, maps); an empty value would
    // read back as no snapshot at all.
    let value = postcard::to_stdvec(snapshot).unwrap_or_default();
    batch::build(&[NewRecord {
        timestamp_ns,
        key: Bytes::from(key),
        value: Bytes::from(value),
    }])
}

/// The snapshot a record holds, if it is one; a damaged one reads as none.
pub fn decode(key: &[u8], value: &[u8]) -> Option<Snapshot> {
    let (&first, name) = key.split_first()?;
    if first != SNAPSHOT_KEY_PREFIX {
        return None;
    }
    let snapshot: Snapshot = postcard::from_bytes(value).ok()?;
    (snapshot.group().as_bytes() == name).then_some(snapshot)
}
