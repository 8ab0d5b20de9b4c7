//! The key durability property, under random appends, truncations, syncs and crashes:
//! nothing the log reported durable is lost, and a crash never produces a log the partition
//! did not hold (such as old bytes that a truncation removed followed by new ones).

use proptest::prelude::*;

use super::disk::SimDisk;
use super::*;
use crate::rng::Rng;

#[derive(Debug, Clone)]
enum Step {
    Append { records: usize, value_len: usize },
    /// The next appends come from a new leader.
    NewEpoch,
    /// Cut the log at the batch boundary at or below `back` offsets before its end, as
    /// replication does on a follower whose tail diverged.
    Truncate { back: u64 },
    RequestSync,
    /// The driver finishes the oldest `n` syncs it started.
    CompleteSyncs { n: usize },
    /// Power loss; with `writeback`, some unsynced writes reached the disk anyway.
    Crash { writeback: Option<u64> },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (1usize..5, 0usize..120).prop_map(|(records, value_len)| Step::Append { records, value_len }),
        1 => Just(Step::NewEpoch),
        2 => (0u64..12).prop_map(|back| Step::Truncate { back }),
        4 => Just(Step::RequestSync),
        4 => (1usize..4).prop_map(|n| Step::CompleteSyncs { n }),
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
            log: PartitionLog::new(DIR.into(), small_config()),
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
        let (log, report) =
            PartitionLog::recover(DIR.into(), small_config(), self.disk.dir_files(DIR));
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
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

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
