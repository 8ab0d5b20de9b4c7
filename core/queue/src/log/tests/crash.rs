//! The key durability property, under random appends, truncations, syncs and crashes:
//! nothing the log reported durable is lost, and a crash never produces a log the partition
//! did not hold (such as old bytes that a truncation removed followed by new ones).

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::disk::SimDisk;
use super::*;
use crate::rng::Rng;

#[derive(Debug, Clone)]
enum Step {
    Append {
        records: usize,
        value_len: usize,
    },
    /// `batches` one-record batches appended with no drain between them, as a follower appends
    /// what one fetch brought: the log merges them into one write per segment file. The crash
    /// model tears any byte prefix whatever the write boundaries, so what this adds is the
    /// merged queue itself meeting rolls, truncations and crashes (`crash.regressions` keeps
    /// a case it shrank to: a run, then a truncation).
    AppendRun {
        batches: usize,
        value_len: usize,
    },
    /// The next appends come from a new leader.
    NewEpoch,
    /// Cut the log at the batch boundary at or below `back` offsets before its end, as
    /// replication does on a follower whose tail diverged.
    Truncate {
        back: u64,
    },
    RequestSync,
    /// The driver finishes the oldest `n` syncs it started.
    CompleteSyncs {
        n: usize,
    },
    /// The driver finishes some sync other than the oldest first.
    CompleteSyncOutOfOrder {
        at: usize,
    },
    /// Power loss; with `writeback`, some unsynced writes reached the disk anyway.
    Crash {
        writeback: Option<u64>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Few distinct sizes, so segments often hold the same offsets before and after a
        // truncation and file names coincide, which is where stale files are dangerous.
        8 => (1usize..3, prop_oneof![Just(0usize), Just(60), 0usize..120])
            .prop_map(|(records, value_len)| Step::Append { records, value_len }),
        2 => (2usize..12, prop_oneof![Just(0usize), 0usize..90])
            .prop_map(|(batches, value_len)| Step::AppendRun { batches, value_len }),
        1 => Just(Step::NewEpoch),
        2 => (0u64..12).prop_map(|back| Step::Truncate { back }),
        4 => Just(Step::RequestSync),
        3 => (1usize..4).prop_map(|n| Step::CompleteSyncs { n }),
        2 => (0usize..8).prop_map(|at| Step::CompleteSyncOutOfOrder { at }),
        1 => proptest::option::of(any::<u64>()).prop_map(|writeback| Step::Crash { writeback }),
    ]
}

struct Model {
    log: PartitionLog,
    disk: SimDisk,
    epoch: u64,
    /// Every log the partition held just before a truncation or a crash took batches away.
    /// Every log it ever held is a prefix of one of these or of the current one.
    fullest: Vec<Vec<Bytes>>,
}

impl Model {
    fn new() -> Model {
        Model {
            log: PartitionLog::new(tp(), small_config()),
            disk: SimDisk::new(),
            epoch: 1,
            fullest: vec![],
        }
    }

    fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Append { records, value_len } => {
                let b = producer_batch(records, value_len, records as u8);
                self.log.append_as_leader(&b, self.epoch).unwrap();
            }
            Step::AppendRun { batches, value_len } => {
                for i in 0..batches {
                    let b = producer_batch(1, value_len, i as u8);
                    self.log.append_as_leader(&b, self.epoch).unwrap();
                }
            }
            Step::NewEpoch => self.epoch += 1,
            Step::Truncate { back } => {
                let end = self
                    .log
                    .batch_boundary_at_or_below(self.log.end_offset().saturating_sub(back));
                self.fullest.push(all_batches(&self.log));
                self.log.truncate_to(end);
                prop_assert_eq!(self.log.end_offset(), end);
            }
            Step::RequestSync => {
                self.log.request_sync();
            }
            Step::CompleteSyncs { n } => self.disk.complete_syncs(&mut self.log, n),
            Step::CompleteSyncOutOfOrder { at } => self.disk.complete_sync_at(&mut self.log, at),
            Step::Crash { writeback } => self.crash(writeback)?,
        }
        self.disk.apply_ops(&mut self.log);
        let durable = self.log.durable_end_offset();
        prop_assert!(durable <= self.log.end_offset());
        prop_assert!(
            self.log.epoch_at_end(durable).is_some(),
            "durable end {} is not a batch boundary",
            durable
        );
        Ok(())
    }

    fn crash(&mut self, writeback: Option<u64>) -> Result<(), TestCaseError> {
        let durable = self.log.durable_end_offset();
        let before = all_batches(&self.log);
        self.fullest.push(before.clone());
        let mut rng = writeback.map(Rng::new);
        self.disk.crash(rng.as_mut());
        let (log, report) = PartitionLog::recover(tp(), small_config(), self.disk.dir_files(DIR));
        self.log = log;
        let after = all_batches(&self.log);

        let synced = before
            .iter()
            .take_while(|b| batch::parse(b).unwrap().end_offset() <= durable)
            .count();
        prop_assert!(
            after.len() >= synced && after[..synced] == before[..synced],
            "lost synced batches: durable end {}, recovered end {}, {:?}",
            durable,
            self.log.end_offset(),
            report
        );
        prop_assert!(
            self.fullest.iter().any(|held| held.starts_with(&after)),
            "recovered a log the partition never held: {:?}",
            report
        );
        prop_assert_eq!(self.log.durable_end_offset(), self.log.end_offset());
        prop_assert_eq!(report.end_offset, self.log.end_offset());
        self.epoch = self.epoch.max(self.log.last_epoch());
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4096,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// Nothing synced is lost; what comes back is a prefix of a log the partition held.
    #[test]
    fn crash_recovery_keeps_everything_synced_and_invents_nothing(
        steps in proptest::collection::vec(step(), 1..80),
        final_writeback in proptest::option::of(any::<u64>()),
    ) {
        let mut model = Model::new();
        for s in &steps {
            model.run(s)?;
        }
        model.run(&Step::Crash { writeback: final_writeback })?;
    }
}

/// Found by the property above: a segment left last by a truncation, though not cut, must not
/// grow either. Segments {0} [0, 2), {2} [2, 6), {6} [6, 7); the log is cut to 4, which removes
/// {6}. A crash, then recovery removes the stale {6} again, and a 2-record batch would make {2}
/// end at 6. Another crash with the removal not yet durable but {2}'s growth written back:
/// {2} and the stale {6} line up, and recovery would splice them.
#[test]
fn a_regrown_segment_is_never_spliced_onto_a_stale_removed_one() {
    use Step::*;
    let steps = [
        Append {
            records: 2,
            value_len: 92,
        },
        Append {
            records: 2,
            value_len: 0,
        },
        RequestSync,
        Append {
            records: 1,
            value_len: 0,
        },
        CompleteSyncs { n: 1 },
        Append {
            records: 1,
            value_len: 0,
        },
        Append {
            records: 1,
            value_len: 60,
        },
        RequestSync,
        CompleteSyncs { n: 1 },
        CompleteSyncOutOfOrder { at: 1 },
        Truncate { back: 3 },
        Crash { writeback: None },
        Append {
            records: 2,
            value_len: 60,
        },
        Crash {
            writeback: Some(10356306116055619544),
        },
    ];
    let mut model = Model::new();
    for s in &steps {
        model.run(s).unwrap();
    }
}

/// Found by the property above: a crash can leave a rolled segment's file empty (its
/// directory entry was synced through another file, its contents not) with a stale segment
/// after it. Recovery removes the stale one; had it kept and sealed the empty file, the next
/// roll would have the same name and append into that very file, which could then grow up to
/// the stale segment's base before its removal was durable.
#[test]
fn an_empty_segment_left_by_a_crash_is_not_reused_after_a_removal() {
    use Step::*;
    let steps = [
        Append {
            records: 1,
            value_len: 0,
        },
        Append {
            records: 1,
            value_len: 60,
        },
        Append {
            records: 2,
            value_len: 60,
        },
        Append {
            records: 2,
            value_len: 60,
        },
        RequestSync,
        CompleteSyncs { n: 1 },
        Truncate { back: 3 },
        CompleteSyncOutOfOrder { at: 1 },
        Crash { writeback: None },
        Append {
            records: 2,
            value_len: 0,
        },
        Append {
            records: 1,
            value_len: 60,
        },
        Crash {
            writeback: Some(8402695307656110645),
        },
        Crash {
            writeback: Some(4129763636127216255),
        },
    ];
    let mut model = Model::new();
    for s in &steps {
        model.run(s).unwrap();
    }
}

/// The interleaving that sealing cut segments exists for. Segment A holds offsets 0..4 and is
/// durable; a follower truncates to 2 and writes a new leader's batches 2.. . The token that
/// syncs them finishes the new segment's sync but not A's before the power fails, so A comes
/// back uncut. Had the new batches 2 and 3 gone into A after the cut, the next segment would
/// be named 4, continue old A seamlessly, and recovery would splice the old epoch's 2 and 3
/// onto the new epoch's 4.. : a log no replica ever held, which breaks log matching. Sealed,
/// A's successor is named 2, recovery sees A end at 4 and drops it.
#[test]
fn a_stale_uncut_segment_is_never_spliced_onto_new_batches() {
    let batch = producer_batch(1, 60, 1);
    let mut config = small_config();
    config.segment_bytes_max = 4 * batch.len() as u64;
    let mut log = PartitionLog::new(tp(), config.clone());
    let mut disk = SimDisk::new();
    for _ in 0..6 {
        log.append_as_leader(&batch, 1).unwrap();
    }
    log.request_sync();
    disk.apply_ops(&mut log);
    disk.complete_syncs(&mut log, disk.syncs_in_flight());
    assert_eq!(log.durable_end_offset(), 6);
    let before = all_batches(&log);

    log.truncate_to(2);
    for _ in 0..6 {
        log.append_as_leader(&producer_batch(1, 60, 2), 2).unwrap();
    }
    log.request_sync();
    disk.apply_ops(&mut log);
    let a = segment_path(0);
    // Finish every sync except the one of segment A, then lose power.
    while disk.syncs_in_flight() > 1 {
        let at = disk.sync_paths().iter().position(|p| *p != a).unwrap();
        disk.complete_sync_at(&mut log, at);
    }
    assert_eq!(log.durable_end_offset(), 2, "A's sync is still out");
    let after_truncation = all_batches(&log);
    disk.crash(None);
    let (recovered, report) = PartitionLog::recover(tp(), config, disk.dir_files(DIR));
    let got = all_batches(&recovered);
    assert!(
        before.starts_with(&got) || after_truncation.starts_with(&got),
        "spliced log: {report:?}"
    );
    assert!(got.len() >= 2, "the durable prefix survives");
}
