//! One segment: a file of whole record batches `{dir}/{base_offset:020}.log`, mirrored in
//! memory, with its sparse offset index.
//!
//! The mirror is a list of chunks, each an immutable [`Bytes`] holding whole batches in file
//! order: a recovered file's valid prefix is one chunk, and every append adds the exact bytes
//! handed to the driver in [`StorageOp::Append`](super::StorageOp::Append) as another, so the
//! op and the mirror share one allocation and a read returns cheap slices of it. A batch never
//! spans two chunks.

use bytes::{Buf, Bytes};

use super::batch::{self, BatchHeader};
use super::index::{IndexEntry, OffsetIndex};

/// Suffix of a segment's file name.
pub const SEGMENT_SUFFIX: &str = ".log";
/// Digits of the zero-padded base offset in a segment's file name: enough for any `u64`.
pub const SEGMENT_NAME_DIGITS: usize = 20;

/// File name of the segment whose first offset is `base_offset`, e.g.
/// `00000000000000000042.log`. Zero padding makes name order offset order.
pub fn file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{SEGMENT_SUFFIX}")
}

/// The base offset a segment file name stands for, or `None` for any name this module did not
/// produce (wrong suffix, not exactly [`SEGMENT_NAME_DIGITS`] digits, or out of range).
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where one stored batch lies and which offsets it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    /// Byte position of the batch in its segment file.
    pub position: u64,
    pub len_bytes: u64,
    pub base_offset: u64,
    /// The offset after the batch's last record.
    pub end_offset: u64,
    pub leader_epoch: u64,
}

// Field positions of the batch layout documented in `batch.rs`. The mirror only holds batches
// that passed `batch::parse` on the way in, so reading these fields needs no checksum and no
// error path; `peeked_span_agrees_with_parse` guards against the layout drifting.
const BASE_OFFSET_AT: usize = 0;
const BATCH_LEN_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const RECORD_COUNT_AT: usize = 61;

/// Reads the span of the checked batch at the front of `bytes`.
fn peek_span(position: u64, bytes: &[u8]) -> BatchSpan {
    let field = |at: usize, len: usize| &bytes[at..at + len];
    let base_offset = field(BASE_OFFSET_AT, 8).get_u64();
    let batch_len = field(BATCH_LEN_AT, 4).get_u32();
    let leader_epoch = field(LEADER_EPOCH_AT, 8).get_u64();
    let record_count = field(RECORD_COUNT_AT, 4).get_u32();
    BatchSpan {
        position,
        len_bytes: (batch::LOG_OVERHEAD_BYTES + batch_len as usize) as u64,
        base_offset,
        // Checked batches only: `batch::parse` refused any whose end passes u64::MAX.
        end_offset: base_offset.saturating_add(u64::from(record_count)),
        leader_epoch,
    }
}

#[derive(Debug, Clone)]
struct Chunk {
    /// Byte position of the chunk's first byte in the segment file.
    position: u64,
    bytes: Bytes,
}

#[derive(Clone)]
pub struct Segment {
    base_offset: u64,
    path: String,
    chunks: Vec<Chunk>,
    len_bytes: u64,
    end_offset: u64,
    index: OffsetIndex,
    /// The last batch's header. Replication asks for the epoch at the log's end on every
    /// append and acknowledgement; this answers without scanning from the index.
    last_batch: Option<BatchSpan>,
    /// Set when a truncation or recovery left this segment last: later appends go to a new
    /// segment rather than into a file that stale bytes or files may follow after a crash
    /// (see `PartitionLog`).
    sealed: bool,
}

/// Leaves the bytes out: a log's worth of them in a panic message helps nobody.
impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("base_offset", &self.base_offset)
            .field("end_offset", &self.end_offset)
            .field("len_bytes", &self.len_bytes)
            .field("chunks", &self.chunks.len())
            .field("index_entries", &self.index.len())
            .field("sealed", &self.sealed)
            .finish()
    }
}

impl Segment {
    /// An empty segment starting at `base_offset` in the partition directory `dir`.
    pub fn new(dir: &str, base_offset: u64) -> Segment {
        Segment {
            base_offset,
            path: format!("{dir}/{}", file_name(base_offset)),
            chunks: Vec::new(),
            len_bytes: 0,
            end_offset: base_offset,
            index: OffsetIndex::new(),
            last_batch: None,
            sealed: false,
        }
    }

    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// The file's path relative to the data dir.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The offset after the segment's last record; the base offset when empty.
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    pub fn is_empty(&self) -> bool {
        self.len_bytes == 0
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    pub fn seal(&mut self) {
        self.sealed = true;
    }

    pub fn index(&self) -> &OffsetIndex {
        &self.index
    }

    /// Whether a batch ending at `end_offset` can join this segment without its offsets
    /// outgrowing the index's `u32` relative offsets.
    pub fn can_address(&self, end_offset: u64) -> bool {
        end_offset - self.base_offset <= u64::from(u32::MAX)
    }

    /// Appends `bytes`, which holds exactly the checked batches `headers`, contiguous with the
    /// segment's end, and indexes every batch that starts `index_interval_bytes` or more after
    /// the last indexed one.
    pub fn push_chunk(&mut self, bytes: Bytes, headers: &[BatchHeader], index_interval_bytes: u64) {
        assert!(!self.sealed, "{}: appending to a sealed segment", self.path);
        let chunk_position = self.len_bytes;
        for h in headers {
            assert_eq!(
                h.base_offset, self.end_offset,
                "{}: batches must be contiguous",
                self.path
            );
            let end_offset = h.end_offset();
            assert!(
                self.can_address(end_offset),
                "{}: offsets outgrow the index",
                self.path
            );
            let position = self.len_bytes;
            if position > 0 && position - self.index.last_position() >= index_interval_bytes {
                self.index.push(IndexEntry {
                    // Fits: `can_address` held for this batch's end, which is above its base.
                    relative_offset: (h.base_offset - self.base_offset) as u32,
                    position,
                });
            }
            self.len_bytes += h.total_bytes() as u64;
            self.end_offset = end_offset;
            self.last_batch = Some(BatchSpan {
                position,
                len_bytes: h.total_bytes() as u64,
                base_offset: h.base_offset,
                end_offset,
                leader_epoch: h.leader_epoch,
            });
        }
        assert_eq!(
            self.len_bytes - chunk_position,
            bytes.len() as u64,
            "{}: the chunk holds exactly its batches",
            self.path
        );
        if !bytes.is_empty() {
            self.chunks.push(Chunk {
                position: chunk_position,
                bytes,
            });
        }
    }

    /// The batch starting at byte `position`, which must be a batch start below `len_bytes()`,
    /// and its bytes.
    pub fn batch_at(&self, position: u64) -> (BatchSpan, Bytes) {
        let (chunk, start, span) = self.span_at(position);
        let bytes = chunk.bytes.slice(start..start + span.len_bytes as usize);
        (span, bytes)
    }

    /// The header of the batch starting at byte `position` (as [`Segment::batch_at`]), with
    /// its chunk and its start within the chunk, without taking its bytes.
    fn span_at(&self, position: u64) -> (&Chunk, usize, BatchSpan) {
        assert!(
            position < self.len_bytes,
            "{}: position past the end",
            self.path
        );
        let chunk = &self.chunks[self.chunks.partition_point(|c| c.position <= position) - 1];
        let start = (position - chunk.position) as usize;
        (chunk, start, peek_span(position, &chunk.bytes[start..]))
    }

    /// Batches from the one starting at byte `position` to the end of the segment.
    pub fn batches_from(&self, position: u64) -> impl Iterator<Item = (BatchSpan, Bytes)> + '_ {
        self.walk_from(position).map(|(chunk, start, span)| {
            let bytes = chunk.bytes.slice(start..start + span.len_bytes as usize);
            (span, bytes)
        })
    }

    /// The batches from the one starting at byte `position` as `(chunk, start in the chunk,
    /// header)`, stepping from chunk to chunk rather than searching for each batch's chunk.
    fn walk_from(&self, position: u64) -> impl Iterator<Item = (&Chunk, usize, BatchSpan)> + '_ {
        let mut next = position;
        // The chunks cover the segment's bytes end to end, so a position below `len_bytes`
        // lies in one of them.
        let mut c = self
            .chunks
            .partition_point(|c| c.position <= position)
            .saturating_sub(1);
        std::iter::from_fn(move || {
            if next >= self.len_bytes {
                return None;
            }
            while self.chunks[c].position + self.chunks[c].bytes.len() as u64 <= next {
                c += 1;
            }
            let chunk = &self.chunks[c];
            let start = (next - chunk.position) as usize;
            let span = peek_span(next, &chunk.bytes[start..]);
            next += span.len_bytes;
            Some((chunk, start, span))
        })
    }

    /// The headers of [`Segment::batches_from`]: a scan that needs no bytes takes none (a
    /// `Bytes` slice is a reference count up and down per batch).
    fn spans_from(&self, position: u64) -> impl Iterator<Item = BatchSpan> + '_ {
        self.walk_from(position).map(|(_, _, span)| span)
    }

    /// The first batch that ends after `offset`: the one holding `offset`, or the segment's
    /// first batch if `offset` lies below it. `None` once `offset >= end_offset()`.
    ///
    /// O(log index entries) to find the scan's start, then at most about
    /// `index_interval_bytes` of batch headers.
    pub fn find(&self, offset: u64) -> Option<BatchSpan> {
        if offset >= self.end_offset {
            return None;
        }
        if let Some(last) = self.last_batch.filter(|l| l.base_offset <= offset) {
            return Some(last);
        }
        // Below `end_offset`, so within the range `can_address` admitted.
        let relative_offset = offset.saturating_sub(self.base_offset) as u32;
        self.spans_from(self.index.lookup(relative_offset))
            .find(|span| span.end_offset > offset)
    }

    /// Cuts the segment after the batches ending at or before `offset`, which must be the end
    /// of one of its batches (or its base offset), and returns the new length in bytes.
    pub fn truncate_to(&mut self, offset: u64) -> u64 {
        if offset >= self.end_offset {
            assert_eq!(
                offset, self.end_offset,
                "{}: truncating past the end",
                self.path
            );
            return self.len_bytes;
        }
        let (position, last_batch) = if offset <= self.base_offset {
            assert_eq!(
                offset, self.base_offset,
                "{}: truncating below the base",
                self.path
            );
            (0, None)
        } else {
            let span = self.find(offset).expect("offset is below end_offset");
            assert_eq!(
                span.base_offset, offset,
                "{}: truncation point {offset} is inside a batch",
                self.path
            );
            // The batch ending at `offset` holds `offset - 1`.
            (span.position, self.find(offset - 1))
        };
        self.last_batch = last_batch;
        let keep = self.chunks.partition_point(|c| c.position < position);
        self.chunks.truncate(keep);
        if let Some(last) = self.chunks.last_mut() {
            let chunk_len = (position - last.position) as usize;
            last.bytes.truncate(chunk_len);
        }
        self.index.truncate_to_position(position);
        self.len_bytes = position;
        self.end_offset = offset;
        position
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::NewRecord;

    fn stamped(base: u64, records: usize, epoch: u64) -> (Bytes, BatchHeader) {
        let recs: Vec<NewRecord> = (0..records)
            .map(|i| NewRecord {
                timestamp_ns: i as u64,
                key: Bytes::from_static(b"k"),
                value: Bytes::from(vec![1u8; 20]),
            })
            .collect();
        let b = batch::stamp(&batch::build(&recs), base, epoch);
        let h = batch::validate(&b).unwrap();
        (b, h)
    }

    #[test]
    fn file_names_round_trip_and_reject_foreign_names() {
        assert_eq!(file_name(42), "00000000000000000042.log");
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        for foreign in [
            "42.log",
            "meta",
            "00000000000000000042.index",
            "0000000000000000004a.log",
            "99999999999999999999.log",
            "+0000000000000000042.log",
        ] {
            assert_eq!(parse_file_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn peeked_span_agrees_with_parse() {
        let (b, h) = stamped(1 << 40, 3, 7);
        let span = peek_span(0, &b);
        assert_eq!(span.base_offset, h.base_offset);
        assert_eq!(span.end_offset, h.end_offset());
        assert_eq!(span.leader_epoch, h.leader_epoch);
        assert_eq!(span.len_bytes, h.total_bytes() as u64);
    }

    /// The cached last batch answers `find` as the scan from the index would, also after
    /// truncations.
    #[test]
    fn find_agrees_with_a_full_scan_after_appends_and_truncations() {
        let mut s = Segment::new("t-0", 100);
        let mut offset = 100;
        let mut ends = Vec::new();
        for n in 1..=20 {
            let (b, h) = stamped(offset, n % 3 + 1, n as u64 / 4);
            offset = h.end_offset();
            ends.push(offset);
            s.push_chunk(b, &[h], 150);
        }
        let scan = |s: &Segment, o: u64| {
            s.spans_from(0)
                .find(|span| span.end_offset > o)
                .filter(|_| o < s.end_offset())
        };
        for cut in [ends[15], ends[7], ends[0], 100] {
            for o in 95..offset + 2 {
                assert_eq!(s.find(o), scan(&s, o), "offset {o} with the end at {cut}");
            }
            s.truncate_to(cut);
            assert_eq!(s.end_offset(), cut);
        }
        assert_eq!(s.last_batch, None);
        let (b, h) = stamped(100, 2, 7);
        s.push_chunk(b, &[h], 150);
        assert_eq!(s.find(101).map(|l| l.leader_epoch), Some(7));
    }

    #[test]
    fn find_scans_from_the_index_to_the_batch_holding_an_offset() {
        let mut s = Segment::new("t-0", 100);
        let mut offset = 100;
        for n in 1..=20 {
            let (b, h) = stamped(offset, n % 3 + 1, 1);
            offset = h.end_offset();
            s.push_chunk(b, &[h], 150);
        }
        assert!(s.index().len() > 3, "a small interval indexes many batches");
        assert_eq!(
            s.find(99).unwrap().base_offset,
            100,
            "below the base: first batch"
        );
        for o in 100..offset {
            let span = s.find(o).unwrap();
            assert!(
                span.base_offset <= o && o < span.end_offset,
                "offset {o}: {span:?}"
            );
        }
        assert_eq!(s.find(offset), None);
    }

    #[test]
    fn truncation_cuts_chunks_and_index_at_a_batch_boundary() {
        let mut s = Segment::new("t-0", 0);
        let mut ends = vec![];
        for _ in 0..10 {
            let (b, h) = stamped(s.end_offset(), 2, 1);
            ends.push((h.end_offset(), s.len_bytes() + b.len() as u64));
            s.push_chunk(b, &[h], 100);
        }
        let (cut_offset, cut_len) = ends[4];
        assert_eq!(s.truncate_to(cut_offset), cut_len);
        assert_eq!((s.end_offset(), s.len_bytes()), (cut_offset, cut_len));
        assert!(s.index().last_position() < cut_len);
        assert_eq!(s.batches_from(0).count(), 5);
        assert_eq!(s.truncate_to(0), 0);
        assert!(s.is_empty());
    }
}
