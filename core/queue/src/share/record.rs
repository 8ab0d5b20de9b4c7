//! Share-partition changes as records of a control batch in the partition's own log.
//!
//! A record's key is `share\0<group>`; its value is one [`Change`], postcard-encoded. A new
//! leader's own control batch (one empty record) and records of other kinds are not share
//! records: [`decode`] skips them, so the format can grow.

use bytes::Bytes;

use super::Change;
use crate::log::batch::{self, NewRecord};

const KEY_PREFIX: &[u8] = b"share\0";

/// A control batch holding `changes` of `group`'s share-partition.
pub fn encode(group: &str, changes: &[Change], timestamp_ns: u64) -> Bytes {
    let key = Bytes::from([KEY_PREFIX, group.as_bytes()].concat());
    let records: Vec<NewRecord> = changes
        .iter()
        .map(|c| NewRecord {
            timestamp_ns,
            key: key.clone(),
            // Strings, integers and enums of them: postcard cannot fail on these.
            value: Bytes::from(postcard::to_allocvec(c).unwrap_or_default()),
        })
        .collect();
    batch::build_control_records(&records)
}

/// The share changes in one stored batch, with their group, in order. A batch that is not a
/// control batch, or does not parse, holds none; a record that does not decode is skipped.
pub fn decode(stored: &[u8]) -> Vec<(String, Change)> {
    let Ok(header) = batch::parse(stored) else {
        return Vec::new();
    };
    if !header.is_control() {
        return Vec::new();
    }
    let records = batch::records(stored).unwrap_or_default();
    records
        .into_iter()
        .filter_map(|r| {
            let group = r.key.strip_prefix(KEY_PREFIX)?;
            let group = std::str::from_utf8(group).ok()?.to_string();
            let change = postcard::from_bytes(&r.value).ok()?;
            Some((group, change))
        })
        .collect()
}
