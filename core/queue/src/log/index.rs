//! The sparse offset index of one segment.
//!
//! One entry per `index_interval_bytes` of log maps an offset (relative to the segment's base)
//! to the byte position of the batch starting there. A lookup takes the greatest entry at or
//! below the wanted offset and the segment scans forward batch by batch from its position, so a
//! lookup reads at most about `index_interval_bytes` of batch headers while the index stays a
//! small fraction of the log (Kafka's `OffsetIndex`, kept in memory instead of a mapped file;
//! it is rebuilt from the segment's bytes on recovery, so it is never written to disk).

/// One index entry: the batch that starts at `relative_offset` starts at byte `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset of the batch's first record minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch within the segment file.
    pub position: u64,
}

/// Entries in increasing order of both offset and position. Position 0 (the segment's first
/// batch) is implied and never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<IndexEntry>,
}

impl OffsetIndex {
    pub fn new() -> OffsetIndex {
        OffsetIndex::default()
    }

    /// Adds an entry after every existing one. The caller appends batches in order, so both
    /// fields must grow.
    pub fn push(&mut self, entry: IndexEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset > last.relative_offset && entry.position > last.position,
                "index entries must grow: {last:?} then {entry:?}"
            );
        }
        assert!(entry.position > 0, "position 0 is implied");
        self.entries.push(entry);
    }

    /// Position of the last indexed batch starting at or below `relative_offset`, or 0 (the
    /// segment's first batch) when no entry is that low.
    pub fn lookup(&self, relative_offset: u32) -> u64 {
        let after = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        match after {
            0 => 0,
            n => self.entries[n - 1].position,
        }
    }

    /// Position of the last entry, or 0 when there is none: where the current stretch of
    /// unindexed bytes began.
    pub fn last_position(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.position)
    }

    /// Drops every entry at or after byte `position`, for a segment cut to that length.
    pub fn truncate_to_position(&mut self, position: u64) {
        let keep = self.entries.partition_point(|e| e.position < position);
        self.entries.truncate(keep);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(u32, u64)]) -> OffsetIndex {
        let mut i = OffsetIndex::new();
        for &(relative_offset, position) in entries {
            i.push(IndexEntry {
                relative_offset,
                position,
            });
        }
        i
    }

    #[test]
    fn lookup_takes_the_greatest_entry_at_or_below() {
        let i = index(&[(10, 100), (20, 250), (35, 400)]);
        assert_eq!(
            i.lookup(0),
            0,
            "below the first entry falls back to the segment start"
        );
        assert_eq!(i.lookup(9), 0);
        assert_eq!(i.lookup(10), 100);
        assert_eq!(i.lookup(19), 100);
        assert_eq!(i.lookup(20), 250);
        assert_eq!(i.lookup(u32::MAX), 400);
    }

    #[test]
    fn truncation_drops_entries_at_and_after_the_cut() {
        let mut i = index(&[(10, 100), (20, 250), (35, 400)]);
        i.truncate_to_position(250);
        assert_eq!(i.len(), 1);
        assert_eq!(i.lookup(30), 100);
        assert_eq!(i.last_position(), 100);
        i.truncate_to_position(0);
        assert!(i.is_empty());
        assert_eq!(i.last_position(), 0);
    }

    #[test]
    #[should_panic(expected = "index entries must grow")]
    fn out_of_order_entry_is_refused() {
        index(&[(10, 100), (5, 200)]);
    }
}
