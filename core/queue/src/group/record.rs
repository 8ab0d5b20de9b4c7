//! Group snapshots as records of the offsets partition.
//!
//! A commit's key is `group \0 topic \0 partition` (see [`crate::broker::offsets`]); a group
//! snapshot's key starts with [`SNAPSHOT_KEY_PREFIX`], a byte no group name may start with, so
//! the two never collide and a reader that knows only commits skips snapshots. The value is the
//! snapshot in postcard; the last snapshot of a group wins on replay.

use bytes::Bytes;

use super::classic::GroupSnapshot;
use crate::log::batch::{self, NewRecord};

/// Marks a group snapshot's key.
pub const SNAPSHOT_KEY_PREFIX: u8 = 0x01;

pub fn encode(snapshot: &GroupSnapshot, timestamp_ns: u64) -> Bytes {
    let mut key = vec![SNAPSHOT_KEY_PREFIX];
    key.extend_from_slice(snapshot.group.as_bytes());
    let value = postcard::to_stdvec(snapshot).unwrap_or_default();
    batch::build(&[NewRecord {
        timestamp_ns,
        key: Bytes::from(key),
        value: Bytes::from(value),
    }])
}

/// The snapshot a record holds, if it is one; a damaged one reads as none.
pub fn decode(key: &[u8], value: &[u8]) -> Option<GroupSnapshot> {
    let (&first, name) = key.split_first()?;
    if first != SNAPSHOT_KEY_PREFIX {
        return None;
    }
    let snapshot: GroupSnapshot = postcard::from_bytes(value).ok()?;
    (snapshot.group.as_bytes() == name).then_some(snapshot)
}
