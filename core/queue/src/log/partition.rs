//! [`PartitionLog`]: the log of one partition, its segments, and its sync bookkeeping.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader};
use super::recovery::{self, RecoveryReport};
use super::segment::{BatchSpan, Segment};
use super::{LogError, StorageOp, SyncOwner, SyncToken};
use crate::config::LogConfig;
use crate::ids::TopicPartition;

/// Ops waiting in [`PartitionLog::poll_op`]'s queue. The caller drains it after every input it
/// hands the partition, so one input's worth is all it ever holds: a leader's append and its
/// syncs, or a follower's fetch response, whose batches are appended one call each (a
/// truncation may come before any of them) and drained together. Batches appended back to
/// back to one segment file are queued as one write; a roll starts another. Reaching this
/// means a caller stopped draining.
pub const PENDING_OPS_MAX: usize = 1 << 16;

/// Sync tokens in flight at once. A request beyond this waits for a completion and then covers
/// everything written meanwhile in one token: group commit instead of an unbounded queue.
pub const SYNCS_IN_FLIGHT_MAX: usize = 16;

/// One sync token: its `Sync` ops not yet reported, and the log end it makes durable.
#[derive(Debug, Clone)]
struct SyncInFlight {
    /// `end_offset()` when the token was issued, lowered by any truncation since.
    end_offset: u64,
    syncs_remaining: usize,
}

/// The durable log of one partition, as a sans-IO state machine.
///
/// # Calling contract
///
/// - Inputs: [`append_as_leader`](Self::append_as_leader),
///   [`append_replicated`](Self::append_replicated), [`truncate_to`](Self::truncate_to),
///   [`request_sync`](Self::request_sync), and [`handle_synced`](Self::handle_synced) once for
///   every `Sync` op the driver finished.
/// - Output: [`poll_op`](Self::poll_op), drained after every input of the replica (a follower's
///   fetch response, appended batch by batch, is one). The driver applies the ops
///   to files in order; a `Sync` covers the earlier ops on its file, and its parent directory.
/// - Reads ([`read`](Self::read) and the offset queries) are answered from memory.
///
/// # Memory
///
/// Every segment's bytes stay in memory as a mirror of what was written (or recovered), so
/// reads never wait on storage and return cheap [`Bytes`] slices of that mirror; each
/// segment's sparse index finds the batch holding an offset in O(log n) plus a short scan.
/// The cost is that memory holds the whole log: it is bounded only by retention, which deletes
/// old segments (a later issue).
///
/// # Durability
///
/// `end_offset()` counts what was appended; `durable_end_offset()` counts what a completed sync
/// made durable, and is always a batch boundary at or below it. [`request_sync`] issues one
/// token with a `Sync` for every file changed since its last `Sync`; the token's end becomes
/// durable once all of its syncs and those of every earlier token are reported, since an
/// earlier token may be the one that covers a file this token did not need to sync.
///
/// After any truncation, and after a recovery that cut or removed anything, the last segment
/// is sealed: the next append rolls a new segment named after the end offset instead of
/// writing into an old file. Until a cut or a removal is durable, a crash may bring the cut
/// bytes or the removed files back. An old file that kept growing could then end exactly where
/// such a stale file begins and recovery would splice the two (recovery leaves gaps behind it:
/// see `a_regrown_segment_is_never_spliced_onto_a_stale_removed_one`). A new file cannot line
/// up that way: its directory entry becoming durable makes the removals before it durable too,
/// and an old file brought back uncut ends past the new file's base, so recovery drops the new
/// file. The recovered log is therefore always a prefix of a log this partition really held,
/// never old batches followed by new ones. Nothing reported durable is lost by dropping the new
/// file: the token that syncs it also syncs the cut one. The cost is one extra segment per
/// truncation.
///
/// [`request_sync`]: Self::request_sync
#[derive(Debug, Clone)]
pub struct PartitionLog {
    partition: TopicPartition,
    /// `partition.dir()`, kept to name files without formatting it again.
    dir: String,
    config: LogConfig,
    /// Segments by base offset; the last one is the active segment.
    segments: BTreeMap<u64, Segment>,
    start_offset: u64,
    end_offset: u64,
    durable_end_offset: u64,
    /// Leader epoch to the first offset written in it (Kafka's leader-epoch cache); one entry per
    /// epoch present in the log.
    epoch_starts: BTreeMap<u64, u64>,
    /// Base offsets of segments with ops no issued `Sync` covers yet.
    unsynced_segments: BTreeSet<u64>,
    /// By token, in issue order.
    syncs_in_flight: BTreeMap<u64, SyncInFlight>,
    /// A sync was requested while [`SYNCS_IN_FLIGHT_MAX`] were in flight.
    sync_deferred: bool,
    next_sync_token: u64,
    pending_ops: VecDeque<PendingOp>,
}

/// A storage op waiting for the driver.
#[derive(Debug, Clone)]
enum PendingOp {
    Op(StorageOp),
    /// Batches appended back to back to the segment file at `path`, to be written at once.
    Append {
        path: String,
        batches: Vec<Bytes>,
    },
}

impl PartitionLog {
    /// An empty log of `partition`, in its directory. No file exists until the first append.
    pub fn new(partition: TopicPartition, config: LogConfig) -> PartitionLog {
        PartitionLog {
            dir: partition.dir(),
            partition,
            config,
            segments: BTreeMap::new(),
            start_offset: 0,
            end_offset: 0,
            durable_end_offset: 0,
            epoch_starts: BTreeMap::new(),
            unsynced_segments: BTreeSet::new(),
            syncs_in_flight: BTreeMap::new(),
            sync_deferred: false,
            next_sync_token: 1,
            pending_ops: VecDeque::new(),
        }
    }

    /// Rebuilds the log of `partition` from the files found in its directory after a restart: `(file name within
    /// dir, contents)` in any order, other owners' files included (they are ignored and listed
    /// in the report).
    ///
    /// Segments are scanned in base-offset order and every batch is checked: its checksum, that
    /// offsets run on without gap or overlap from the first segment's base, and that leader
    /// epochs never decrease. The log ends before the first batch that fails: that segment is
    /// cut there (`Truncate`, or `Remove` if nothing in it survives) and every later segment
    /// removed, as is an empty segment left last; a `Sync` of the last segment follows so the
    /// cut itself becomes durable.
    ///
    /// The contents are taken to be what is durable, so `durable_end_offset() == end_offset()`
    /// afterwards. That holds after a machine crash; a driver that restarts the process without
    /// one, with unsynced writes possibly still in the page cache, must sync every file and the
    /// directory before reading them.
    pub fn recover(
        partition: TopicPartition,
        config: LogConfig,
        files: Vec<(String, Bytes)>,
    ) -> (PartitionLog, RecoveryReport) {
        let scan = recovery::scan(&partition.dir(), config.index_interval_bytes, files);
        let mut log = PartitionLog::new(partition, config);
        log.start_offset = scan.start_offset;
        log.end_offset = scan.report.end_offset;
        log.durable_end_offset = scan.report.end_offset;
        log.segments = scan.segments;
        log.epoch_starts = scan.epoch_starts;
        let changed = !scan.ops.is_empty();
        for op in scan.ops {
            log.push_op(op);
        }
        if changed {
            // The active segment's Sync also syncs the directory, making removals durable.
            if let Some(&base) = log.segments.keys().next_back() {
                log.unsynced_segments.insert(base);
                log.issue_sync();
            }
        }
        (log, scan.report)
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The offset after the last record; 0 for an empty new log.
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// The end of what a completed sync made durable: a batch boundary, at most `end_offset()`.
    pub fn durable_end_offset(&self) -> u64 {
        self.durable_end_offset
    }

    /// The first offset the log holds: the base of its first segment (0 until retention exists).
    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    /// Leader epoch of the last batch; 0 when empty.
    pub fn last_epoch(&self) -> u64 {
        self.epoch_starts.last_key_value().map_or(0, |(&e, _)| e)
    }

    pub fn is_empty(&self) -> bool {
        self.end_offset == self.start_offset
    }

    /// The leader epoch of the batch ending exactly at `end`; `Some(0)` for `end == 0` (the
    /// empty prefix); `None` when no batch ends there. Replication's log-matching check.
    pub fn epoch_at_end(&self, end: u64) -> Option<u64> {
        if end == 0 {
            return Some(0);
        }
        if end > self.end_offset || end <= self.start_offset {
            return None;
        }
        let span = self.batch_containing(end - 1)?;
        (span.end_offset == end).then_some(span.leader_epoch)
    }

    /// The greatest batch end at or below `offset` (0 if none): where a log may be cut so that
    /// it holds nothing past `offset`.
    pub fn batch_boundary_at_or_below(&self, offset: u64) -> u64 {
        if offset >= self.end_offset {
            return self.end_offset;
        }
        self.batch_containing(offset)
            .map_or(0, |span| span.base_offset)
    }

    /// The end of the last batch whose leader epoch is at most `epoch`, with that batch's epoch;
    /// `None` when every batch is from a later epoch (or the log is empty). Lets a follower find
    /// where it diverges from a leader in one round trip (Kafka's OffsetsForLeaderEpoch).
    pub fn last_offset_of_epoch(&self, epoch: u64) -> Option<(u64, u64)> {
        let (&found, _) = self.epoch_starts.range(..=epoch).next_back()?;
        let end = self
            .epoch_starts
            .range((Bound::Excluded(found), Bound::Unbounded))
            .next()
            .map_or(self.end_offset, |(_, &start)| start);
        Some((end, found))
    }

    /// Appends a producer's batch as leader of `leader_epoch`: checks it, stamps it with the next
    /// offset and the epoch, and returns its `(base, end)` offsets.
    ///
    /// The caller must not append with an epoch below `last_epoch()` (a deposed leader must stop
    /// appending); debug builds panic, release builds refuse with `EpochRegressed`.
    pub fn append_as_leader(
        &mut self,
        batch: &[u8],
        leader_epoch: u64,
    ) -> Result<(u64, u64), LogError> {
        let max = self.config.batch_bytes_max as usize;
        if batch.len() > max {
            return Err(LogError::BatchTooLarge {
                len: batch.len(),
                max,
            });
        }
        let last = self.last_epoch();
        debug_assert!(
            leader_epoch >= last,
            "{}: leader epoch {leader_epoch} below the log's last epoch {last}",
            self.dir
        );
        if leader_epoch < last {
            return Err(LogError::EpochRegressed {
                last,
                got: leader_epoch,
            });
        }
        batch::validate(batch)?;
        let base = self.end_offset;
        let stamped = batch::stamp(batch, base, leader_epoch);
        // Stamping keeps a checked batch valid unless its offsets would pass u64::MAX, which
        // only a log end near it (read from a damaged disk or a peer) can bring about.
        let header = batch::parse(&stamped)?;
        self.push_batch(stamped, &header);
        Ok((base, self.end_offset))
    }

    /// Appends a batch a leader already stamped: it must check out, start at `end_offset()`
    /// and carry an epoch no lower than `last_epoch()`.
    ///
    /// No size limit applies: the leader enforced it, and a follower that refused what its
    /// leader accepted would stall. The log keeps `batch` itself without copying, so a batch
    /// sliced from a larger receive buffer keeps that whole buffer alive while it is in the log.
    pub fn append_replicated(&mut self, batch: Bytes) -> Result<(), LogError> {
        let header = batch::validate(&batch)?;
        if header.base_offset != self.end_offset {
            return Err(LogError::NotContiguous {
                expected: self.end_offset,
                got: header.base_offset,
            });
        }
        let last = self.last_epoch();
        if header.leader_epoch < last {
            return Err(LogError::EpochRegressed {
                last,
                got: header.leader_epoch,
            });
        }
        self.push_batch(batch, &header);
        Ok(())
    }

    /// Drops every batch at or after `end`, which must be a batch boundary
    /// (`epoch_at_end(end).is_some()`); replication makes sure it is not below the committed
    /// offset. Emits `Truncate` for the segment cut and `Remove` for every later one, and lowers
    /// `durable_end_offset()` (and any sync in flight) to at most `end`.
    pub fn truncate_to(&mut self, end: u64) {
        // Replication cuts only at ends it has just matched against this log's epochs, so no
        // message can name another point; refusing keeps the log whole should that ever break.
        let boundary = self.epoch_at_end(end).is_some();
        debug_assert!(
            boundary,
            "{}: truncation point {end} is not a batch boundary (log end {})",
            self.dir, self.end_offset
        );
        if !boundary {
            tracing::error!(dir = %self.dir, end, "refusing to truncate inside a batch");
            return;
        }
        if end == self.end_offset {
            return;
        }
        self.durable_end_offset = self.durable_end_offset.min(end);
        for sync in self.syncs_in_flight.values_mut() {
            sync.end_offset = sync.end_offset.min(end);
        }
        while self
            .epoch_starts
            .last_key_value()
            .is_some_and(|(_, &start)| start >= end)
        {
            self.epoch_starts.pop_last();
        }
        let removed = self.segments.split_off(&end);
        for (base, segment) in &removed {
            self.unsynced_segments.remove(base);
            self.push_op(StorageOp::Remove {
                path: segment.path().to_string(),
            });
        }
        let mut cut = None;
        if let Some(segment) = self.segments.values_mut().next_back() {
            if segment.end_offset() > end {
                let len = segment.truncate_to(end);
                let path = segment.path().to_string();
                cut = Some(StorageOp::Truncate { path, len });
            }
            // Cut or not, new batches go to a new file (see the type's docs on sealing).
            segment.seal();
            // Its next Sync also syncs the directory, making the removals durable.
            self.unsynced_segments.insert(segment.base_offset());
        }
        if let Some(op) = cut {
            self.push_op(op);
        }
        self.end_offset = end;
    }

    /// Whole stored batches: from the one holding `from` (or the first starting above it) on,
    /// only batches ending at or before `up_to_end`, and no more than `max_bytes` in total,
    /// except that the first qualifying batch is always returned whatever its size, so a reader
    /// always makes progress.
    pub fn read(&self, from: u64, up_to_end: u64, max_bytes: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let limit = up_to_end.min(self.end_offset);
        if from >= limit {
            return out;
        }
        let Some(first_base) = self
            .segments
            .range(..=from)
            .next_back()
            .or_else(|| self.segments.first_key_value())
            .map(|(&base, _)| base)
        else {
            return out;
        };
        let mut total_bytes = 0usize;
        for segment in self.segments.range(first_base..).map(|(_, s)| s) {
            let Some(first) = segment.find(from) else {
                continue;
            };
            for (span, bytes) in segment.batches_from(first.position) {
                if span.end_offset > limit
                    || (!out.is_empty() && total_bytes + bytes.len() > max_bytes)
                {
                    return out;
                }
                total_bytes += bytes.len();
                out.push(bytes);
            }
        }
        out
    }

    /// Asks for everything appended so far to become durable. Returns false if nothing needs it:
    /// no file changed since the syncs already issued. Otherwise issues a token with one `Sync`
    /// per changed file, or, with [`SYNCS_IN_FLIGHT_MAX`] tokens in flight, issues it as soon as
    /// one completes; returns true either way.
    pub fn request_sync(&mut self) -> bool {
        if self.unsynced_segments.is_empty() {
            return false;
        }
        if self.syncs_in_flight.len() >= SYNCS_IN_FLIGHT_MAX {
            self.sync_deferred = true;
        } else {
            self.issue_sync();
        }
        true
    }

    /// The driver finished one `Sync` op carrying a token of [`SyncOwner::Log`] with sequence
    /// number `token`. Once every sync of this token and of all earlier tokens is done,
    /// `durable_end_offset()` rises to the token's end (lowered by any truncation since it was
    /// issued). Unknown tokens, such as one issued before a restart, are ignored.
    pub fn handle_synced(&mut self, token: u64) {
        let Some(sync) = self.syncs_in_flight.get_mut(&token) else {
            tracing::debug!(dir = %self.dir, token, "sync completion for an unknown token");
            return;
        };
        if sync.syncs_remaining == 0 {
            tracing::warn!(dir = %self.dir, token, "more sync completions than syncs");
            return;
        }
        sync.syncs_remaining -= 1;
        while let Some(first) = self.syncs_in_flight.first_entry() {
            if first.get().syncs_remaining > 0 {
                break;
            }
            let done = first.remove();
            let durable = done.end_offset.min(self.end_offset);
            self.durable_end_offset = self.durable_end_offset.max(durable);
        }
        if self.sync_deferred && self.syncs_in_flight.len() < SYNCS_IN_FLIGHT_MAX {
            self.sync_deferred = false;
            if !self.unsynced_segments.is_empty() {
                self.issue_sync();
            }
        }
    }

    /// The next storage op, in the order they must be applied. Batches appended to one file
    /// with no other op between them come as one `Append`.
    pub fn poll_op(&mut self) -> Option<StorageOp> {
        Some(match self.pending_ops.pop_front()? {
            PendingOp::Op(op) => op,
            PendingOp::Append { path, batches } => StorageOp::Append {
                path,
                bytes: concat(batches),
            },
        })
    }

    // --- internals ---------------------------------------------------------------------------

    /// The batch holding `offset`, if the log does.
    fn batch_containing(&self, offset: u64) -> Option<BatchSpan> {
        let (_, segment) = self.segments.range(..=offset).next_back()?;
        segment.find(offset).filter(|s| s.base_offset <= offset)
    }

    /// Stores a checked batch that starts at `end_offset()`, rolling a new segment when the
    /// active one is sealed, would outgrow `segment_bytes_max` (an empty segment takes a batch of
    /// any size: batches are never split) or its index's offset range.
    fn push_batch(&mut self, bytes: Bytes, header: &BatchHeader) {
        debug_assert_eq!(header.base_offset, self.end_offset);
        let end = header.end_offset();
        let roll = match self.segments.last_key_value() {
            None => true,
            Some((_, active)) => {
                active.is_sealed()
                    || !active.can_address(end)
                    || (!active.is_empty()
                        && active.len_bytes() + bytes.len() as u64 > self.config.segment_bytes_max)
            }
        };
        if roll {
            let base = self.end_offset;
            let replaced = self.segments.insert(base, Segment::new(&self.dir, base));
            assert!(
                replaced.is_none(),
                "{}: a roll reuses segment {base}",
                self.dir
            );
        }
        let (&base, active) = self.segments.last_key_value().expect("rolled above");
        let path = active.path().to_string();
        self.segments
            .get_mut(&base)
            .expect("just found")
            .push_chunk(
                bytes.clone(),
                std::slice::from_ref(header),
                self.config.index_interval_bytes,
            );
        self.unsynced_segments.insert(base);
        if self.last_epoch() < header.leader_epoch || self.epoch_starts.is_empty() {
            self.epoch_starts
                .insert(header.leader_epoch, header.base_offset);
        }
        self.end_offset = end;
        self.queue_append(path, bytes);
    }

    /// Queues `bytes` for the end of the file at `path`, in one write with the append queued
    /// just before it if that went to the same file. A follower so stores what one fetch
    /// brought with one write, as Kafka's does: one write per batch would make a catch-up of
    /// hundreds of batches hundreds of writes, each of which a simulated disk (turmoil's scans
    /// every unsynced write of the host on each write) pays for with all the ones before it.
    fn queue_append(&mut self, path: String, bytes: Bytes) {
        if let Some(PendingOp::Append {
            path: last,
            batches,
        }) = self.pending_ops.back_mut()
        {
            if *last == path {
                batches.push(bytes);
                return;
            }
        }
        self.push_pending(PendingOp::Append {
            path,
            batches: vec![bytes],
        });
    }

    /// Issues one token syncing every unsynced segment.
    fn issue_sync(&mut self) {
        debug_assert!(self.syncs_in_flight.len() < SYNCS_IN_FLIGHT_MAX);
        let token = self.next_sync_token;
        self.next_sync_token += 1;
        let unsynced = std::mem::take(&mut self.unsynced_segments);
        // A token with no syncs would never complete and would hold back every later one.
        assert!(
            !unsynced.is_empty(),
            "{}: a sync token needs a file",
            self.dir
        );
        for base in &unsynced {
            let path = self.segments[base].path().to_string();
            let token = SyncToken {
                owner: SyncOwner::Log(self.partition.clone()),
                seq: token,
            };
            self.push_op(StorageOp::Sync { path, token });
        }
        self.syncs_in_flight.insert(
            token,
            SyncInFlight {
                end_offset: self.end_offset,
                syncs_remaining: unsynced.len(),
            },
        );
    }

    fn push_op(&mut self, op: StorageOp) {
        self.push_pending(PendingOp::Op(op));
    }

    fn push_pending(&mut self, op: PendingOp) {
        debug_assert!(
            self.pending_ops.len() < PENDING_OPS_MAX,
            "{}: {PENDING_OPS_MAX} storage ops not drained",
            self.dir
        );
        self.pending_ops.push_back(op);
    }
}

/// The bytes of `batches` in one buffer; a single batch is passed on without a copy.
fn concat(batches: Vec<Bytes>) -> Bytes {
    if let [one] = batches.as_slice() {
        return one.clone();
    }
    let mut out = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
    for b in &batches {
        out.extend_from_slice(b);
    }
    out.freeze()
}
