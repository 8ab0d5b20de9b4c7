//! What a partition leader knows of each idempotent producer: its epoch and the sequence numbers
//! and offsets of its last few batches, so that a retried batch is recognised and answered with
//! its original offset instead of being appended twice (claim P4).
//!
//! The state is a pure function of the partition's log: [`ProducerStates::rebuild`] scans every
//! batch's header, and the leader then [`record`](ProducerStates::record)s each batch it
//! appends. A leader never truncates its own log during its term, so the state it rebuilt when
//! its term began stays equal to the state of its log for the whole term; the broker rebuilds it
//! whenever it finds the state built for another term. That makes the state correct on whichever
//! replica leads, after any truncation: a batch an old leader appended and a new one truncated
//! away is not in the log, so its retry is appended, not mistaken for a duplicate.
//!
//! Rules for a batch from producer `p` at epoch `e` with sequences `first..=last`:
//! - `e` below the epoch `p` last wrote in this log: [`ErrorCode::ProducerFenced`].
//! - `p` unknown to this log, or `e` above its last epoch: the batch must start at sequence 0,
//!   else [`ErrorCode::OutOfOrderSequence`]. The log is complete (no retention yet), so an
//!   unknown producer really has no batch here.
//! - same epoch, `first..=last` equal to one of the last [`PRODUCER_BATCHES_RETAINED`] batches:
//!   a duplicate, answered with that batch's offsets.
//! - same epoch, `first` right after the last batch's `last`: appended.
//! - same epoch, `first` further on: [`ErrorCode::OutOfOrderSequence`] (an earlier batch is
//!   missing); `first` before it: [`ErrorCode::DuplicateSequence`].
//!
//! An idempotent producer keeps at most [`PRODUCER_BATCHES_RETAINED`] batches of a partition
//! unacknowledged, so any retry it sends is either in that window or not in the log at all.
//!
//! Memory: one entry per producer that ever wrote to the partition, each of at most
//! [`PRODUCER_BATCHES_RETAINED`] batches; bounded by the log itself, which is in memory too.

use std::collections::{BTreeMap, VecDeque};

use crate::log::batch::{self, BatchHeader};
use crate::log::PartitionLog;
use crate::protocol::ErrorCode;

/// Batches per producer and partition whose sequences the leader remembers, and therefore the
/// most produce requests an idempotent producer may have in flight per partition (Kafka's 5).
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// Bytes read from the log per step of a rebuild scan.
const REBUILD_READ_BYTES_MAX: usize = 1 << 20;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencedBatch {
    pub first_sequence: u32,
    pub last_sequence: u32,
    pub base_offset: u64,
    pub end_offset: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ProducerEntry {
    epoch: u16,
    /// Oldest first; at most [`PRODUCER_BATCHES_RETAINED`].
    batches: VecDeque<SequencedBatch>,
}

/// What the leader should do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already in the log: answer with the original batch's offsets, do not append.
    Duplicate(SequencedBatch),
}

/// The producer state of one partition's log. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    /// By producer id.
    producers: BTreeMap<u64, ProducerEntry>,
}

impl ProducerStates {
    /// The state of `log`, from every batch header in it.
    pub fn rebuild(log: &PartitionLog) -> ProducerStates {
        let mut states = ProducerStates::default();
        let mut at = log.start_offset();
        let end = log.end_offset();
        while at < end {
            let batches = log.read(at, end, REBUILD_READ_BYTES_MAX);
            if batches.is_empty() {
                break;
            }
            // The furthest end a readable header reaches; none past `at` (every header
            // damaged) ends the scan, which must progress.
            at = batches
                .iter()
                .filter_map(|b| batch::peek_header(b).ok())
                .map(|h| h.end_offset())
                .filter(|&e| e > at)
                .max()
                .unwrap_or(end);
            for b in &batches {
                if let Ok(h) = batch::peek_header(b) {
                    states.record(&h);
                }
            }
        }
        states
    }

    /// Checks an idempotent batch (`header.has_producer()`) before it is appended.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, ErrorCode> {
        debug_assert!(header.has_producer());
        let first = header.base_sequence;
        let last = header.last_sequence();
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return starts_at_zero(first);
        };
        if header.producer_epoch < entry.epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        if header.producer_epoch > entry.epoch {
            return starts_at_zero(first);
        }
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| (b.first_sequence, b.last_sequence) == (first, last))
        {
            return Ok(SequenceCheck::Duplicate(*b));
        }
        let Some(newest) = entry.batches.back() else {
            return starts_at_zero(first);
        };
        let expected = newest.last_sequence.wrapping_add(1);
        if first == expected {
            return Ok(SequenceCheck::Append);
        }
        // Sequence numbers wrap: "before" means less than half the space behind.
        if (first.wrapping_sub(expected) as i32) < 0 {
            Err(ErrorCode::DuplicateSequence)
        } else {
            Err(ErrorCode::OutOfOrderSequence)
        }
    }

    /// Takes note of a batch now in the log (stamped with its offsets). Batches without a
    /// producer are ignored.
    pub fn record(&mut self, header: &BatchHeader) {
        if !header.has_producer() {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_RETAINED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(SequencedBatch {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
            end_offset: header.end_offset(),
        });
    }

    /// Producers known to this log.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

fn starts_at_zero(first: u32) -> Result<SequenceCheck, ErrorCode> {
    if first == 0 {
        Ok(SequenceCheck::Append)
    } else {
        Err(ErrorCode::OutOfOrderSequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{BatchHeader, NewRecord};
    use bytes::Bytes;

    fn header(pid: u64, epoch: u16, first: u32, records: u32, base_offset: u64) -> BatchHeader {
        let recs: Vec<NewRecord> = (0..records)
            .map(|i| NewRecord {
                timestamp_ns: i as u64,
                key: Bytes::from(format!("k{i}")),
                value: Bytes::new(),
            })
            .collect();
        let b = batch::set_producer(&batch::build(&recs), pid, epoch, first);
        batch::validate(&batch::stamp(&b, base_offset, 1)).unwrap()
    }

    #[test]
    fn sequences_must_follow_on_and_retries_are_recognised() {
        let mut s = ProducerStates::default();
        assert_eq!(
            s.check(&header(9, 0, 2, 1, 0)),
            Err(ErrorCode::OutOfOrderSequence),
            "an unknown producer starts at 0"
        );
        let a = header(9, 0, 0, 2, 10);
        assert_eq!(s.check(&a), Ok(SequenceCheck::Append));
        s.record(&a);
        let b = header(9, 0, 2, 3, 12);
        assert_eq!(s.check(&b), Ok(SequenceCheck::Append));
        s.record(&b);
        assert_eq!(
            s.check(&header(9, 0, 0, 2, 0)),
            Ok(SequenceCheck::Duplicate(SequencedBatch {
                first_sequence: 0,
                last_sequence: 1,
                base_offset: 10,
                end_offset: 12
            }))
        );
        assert_eq!(
            s.check(&header(9, 0, 6, 1, 0)),
            Err(ErrorCode::OutOfOrderSequence),
            "sequence 5 is missing"
        );
        assert_eq!(s.check(&header(9, 0, 5, 1, 0)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..=PRODUCER_BATCHES_RETAINED as u32 {
            s.record(&header(3, 0, i, 1, i as u64));
        }
        assert!(matches!(
            s.check(&header(3, 0, 1, 1, 0)),
            Ok(SequenceCheck::Duplicate(_))
        ));
        assert_eq!(
            s.check(&header(3, 0, 0, 1, 0)),
            Err(ErrorCode::DuplicateSequence),
            "fell out of the window"
        );
    }

    #[test]
    fn older_epoch_is_fenced_and_a_new_epoch_restarts_at_zero() {
        let mut s = ProducerStates::default();
        s.record(&header(4, 1, 0, 1, 0));
        assert_eq!(
            s.check(&header(4, 0, 1, 1, 0)),
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(
            s.check(&header(4, 2, 1, 1, 0)),
            Err(ErrorCode::OutOfOrderSequence)
        );
        assert_eq!(s.check(&header(4, 2, 0, 1, 0)), Ok(SequenceCheck::Append));
    }
}
