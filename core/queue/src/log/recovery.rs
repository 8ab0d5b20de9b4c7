//! Rebuilding a partition's log from the files found in its directory after a restart.
//!
//! Only a prefix of batches that checks out is kept: a crash can tear the last write, a disk
//! can flip bits, and a crash before a cut or a removal was durable can leave stale segments
//! behind. Everything from the first batch that fails a check on is discarded, since nothing
//! after a gap or a bad batch can be trusted to belong to the same history.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::batch;
use super::segment::{self, Segment};
use super::StorageOp;

/// What recovery found and what it discarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments kept.
    pub segments: usize,
    /// Batches kept.
    pub batches: usize,
    /// The recovered log's end offset.
    pub end_offset: u64,
    /// Bytes discarded: cut from the failing segment plus the size of every removed segment.
    pub truncated_bytes: u64,
    /// File names of the segments removed whole, in offset order.
    pub removed_segments: Vec<String>,
    /// The first check that failed, with the file and byte position.
    pub first_error: Option<String>,
    /// The failed check is not what a crash mid-write leaves (nothing, zeros, or a batch cut
    /// short at the end of the file): the disk damaged data that may have been durable and
    /// acknowledged, so the owner must not act as if it never held it.
    pub corrupt: bool,
    /// Names in the directory that are not segments (such as replication's meta file), sorted;
    /// left untouched.
    pub ignored_files: Vec<String>,
}

/// The result of scanning a directory, for `PartitionLog::recover` to adopt.
pub(super) struct Scan {
    pub segments: BTreeMap<u64, Segment>,
    pub start_offset: u64,
    pub epoch_starts: BTreeMap<u64, u64>,
    /// `Truncate` and `Remove` ops that discard what failed.
    pub ops: Vec<StorageOp>,
    pub report: RecoveryReport,
}

/// Zero bytes a torn batch ends in at least. A tear loses a write's blocks from a block
/// boundary on, so its zeros are as long as the lost part, which is rarely this short with
/// blocks of 512 bytes or more; a whole batch may end in fewer zeros of its own (a leader's
/// empty control record ends in its two zero lengths, 8 bytes). Misjudging a short tear as
/// corruption only makes the replica repair from a leader before it votes again; the other
/// way round it would vote having cut acknowledged records.
const TORN_ZEROS_MIN: usize = 16;

/// Whether the bytes from a failed batch on are what a crash mid-write leaves. Each unsynced
/// write keeps a prefix of its blocks, or nothing, independently of the others, and what it
/// lost reads back as zeros when a later write extended the file: so a torn batch runs past
/// the end of the file, is a hole (zeros where its length should be), or ends in at least
/// [`TORN_ZEROS_MIN`] zeros. A torn length is zero, whole, or keeps its high bytes (at least
/// 256), never a short non-zero one. A bit flip leaves a whole batch with a length that fails
/// its checksum or is too short for a header. (Misread as torn: a flip in the length field
/// that makes a batch run past the end, and a tear that lost fewer than [`TORN_ZEROS_MIN`]
/// bytes is misread the other way.)
fn torn(rest: &[u8]) -> bool {
    if rest.iter().all(|&b| b == 0) {
        return true;
    }
    if matches!(
        batch::parse(rest),
        Err(batch::BatchError::Incomplete { .. })
    ) {
        return true;
    }
    let Some(len) = rest.get(8..12) else {
        return true;
    };
    let batch_len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if batch_len == 0 {
        return true;
    }
    let end = batch_len.saturating_add(batch::LOG_OVERHEAD_BYTES);
    if end < batch::HEADER_BYTES {
        return false;
    }
    rest.get(..end)
        .is_some_and(|batch| batch.iter().rev().take_while(|&&b| b == 0).count() >= TORN_ZEROS_MIN)
}

/// Scans `files` (names within `dir`, any order) as described on `PartitionLog::recover`.
pub(super) fn scan(dir: &str, index_interval_bytes: u64, files: Vec<(String, Bytes)>) -> Scan {
    let mut report = RecoveryReport::default();
    let mut by_base: BTreeMap<u64, (String, Bytes)> = BTreeMap::new();
    for (name, bytes) in files {
        match segment::parse_file_name(&name) {
            Some(base) => {
                by_base.insert(base, (name, bytes));
            }
            None => report.ignored_files.push(name),
        }
    }
    report.ignored_files.sort();

    let start_offset = by_base.keys().next().copied().unwrap_or(0);
    let mut segments = BTreeMap::new();
    let mut epoch_starts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut ops = Vec::new();
    let mut expected_offset = start_offset;
    let mut last_epoch = 0;
    let mut failed = false;

    for (base, (name, bytes)) in by_base {
        let path = format!("{dir}/{name}");
        let remove = |report: &mut RecoveryReport, ops: &mut Vec<StorageOp>| {
            report.truncated_bytes += bytes.len() as u64;
            report.removed_segments.push(name.clone());
            ops.push(StorageOp::Remove { path: path.clone() });
        };
        if failed {
            remove(&mut report, &mut ops);
            continue;
        }
        if base != expected_offset {
            failed = true;
            report.first_error = Some(format!(
                "{name}: segment starts at offset {base}, the log before it ends at \
                 {expected_offset}"
            ));
            remove(&mut report, &mut ops);
            continue;
        }

        let mut segment = Segment::new(dir, base);
        let mut headers = Vec::new();
        let mut position = 0usize;
        let error = loop {
            if position == bytes.len() {
                break None;
            }
            let h = match batch::parse(&bytes[position..]) {
                Ok(h) => h,
                Err(e) => break Some(e.to_string()),
            };
            if h.base_offset != expected_offset {
                break Some(format!(
                    "batch starts at offset {}, expected {expected_offset}",
                    h.base_offset
                ));
            }
            if h.leader_epoch < last_epoch {
                break Some(format!(
                    "leader epoch {} follows epoch {last_epoch}",
                    h.leader_epoch
                ));
            }
            let end_offset = match h.base_offset.checked_add(u64::from(h.record_count)) {
                Some(end) if segment.can_address(end) => end,
                _ => break Some("batch offsets overflow the segment".to_string()),
            };
            if epoch_starts.is_empty() || h.leader_epoch > last_epoch {
                epoch_starts.insert(h.leader_epoch, h.base_offset);
            }
            last_epoch = h.leader_epoch;
            expected_offset = end_offset;
            position += h.total_bytes();
            headers.push(h);
        };

        if let Some(error) = error {
            failed = true;
            report.first_error = Some(format!("{name} at byte {position}: {error}"));
            report.corrupt = !torn(&bytes[position..]);
            if position == 0 {
                remove(&mut report, &mut ops);
                continue;
            }
            report.truncated_bytes += (bytes.len() - position) as u64;
            ops.push(StorageOp::Truncate {
                path: path.clone(),
                len: position as u64,
            });
        }
        segment.push_chunk(bytes.slice(..position), &headers, index_interval_bytes);
        report.segments += 1;
        report.batches += headers.len();
        segments.insert(base, segment);
    }
    if failed {
        // Appends must go to a new file, as after `PartitionLog::truncate_to`. An empty last
        // segment (a roll whose first append was lost) cannot be sealed: its successor would
        // have its name and so be the same file. Remove it instead.
        if let Some(empty) = segments.last_entry().filter(|e| e.get().is_empty()) {
            let empty = empty.remove();
            let name = segment::file_name(empty.base_offset());
            report.segments -= 1;
            report.removed_segments.push(name);
            ops.push(StorageOp::Remove {
                path: empty.path().to_string(),
            });
        }
        if let Some(last) = segments.values_mut().next_back() {
            last.seal();
        }
    }
    report.end_offset = expected_offset;
    if let Some(error) = &report.first_error {
        tracing::warn!(
            dir,
            error,
            end_offset = report.end_offset,
            truncated_bytes = report.truncated_bytes,
            removed = report.removed_segments.len(),
            "log recovery discarded a damaged tail"
        );
    }
    Scan {
        segments,
        start_offset,
        epoch_starts,
        ops,
        report,
    }
}
