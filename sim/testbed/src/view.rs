//! What every broker host shares with the run loop and the fault schedule: the leaders each
//! broker has seen, storage failures, the final snapshots and the performance probes.
//!
//! Its own module so that [`crate::run`] (which fills it) and [`crate::faults`] (which reads
//! the leaders to resolve `leader:` targets) both depend on it, not on each other.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use fathom_queue::ids::{NodeId, TopicPartition};

use crate::metrics::Probes;
use crate::summary::Recoveries;

/// What every broker host shares with the run loop.
#[derive(Default)]
pub struct ClusterView {
    /// The newest leader known for each partition: `(epoch, broker)`.
    pub leaders: BTreeMap<TopicPartition, (u64, NodeId)>,
    /// Times an entry of `leaders` changed.
    pub leader_updates: u64,
    /// The brokers that, when each last looked, led the partition. A crashed broker stays in
    /// until its next incarnation looks, so readers filter by running hosts.
    pub leading: BTreeMap<TopicPartition, BTreeSet<NodeId>>,
    /// Times a broker saw another leader in its own term (`Broker::leader_conflicts`), summed
    /// over every broker and incarnation.
    pub leader_conflicts: u64,
    /// Per partition and epoch, the first broker seen leading it: the simulator's own check of
    /// election safety, which sees a second leader even if no broker ever meets both.
    pub epoch_leaders: BTreeMap<TopicPartition, BTreeMap<u64, NodeId>>,
    /// The `(partition, epoch)` pairs that two brokers led.
    pub epochs_with_two_leaders: BTreeSet<(TopicPartition, u64)>,
    /// What log recovery found damaged, over every broker start.
    pub recoveries: Recoveries,
    /// Each broker host's clock, which `clock` faults skew; kept across restarts.
    pub clocks: BTreeMap<NodeId, fathom_driver::Skew>,
    /// Brokers that stopped on a storage failure and want a restart.
    pub fatal: BTreeSet<NodeId>,
    /// Brokers whose disk is full (a `disk_full` fault): their appends fail with ENOSPC.
    pub full_disks: BTreeSet<NodeId>,
    /// Brokers whose disk fails operations with EIO (a `disk_eio` fault), with the failing
    /// share and the draws' generator (kept here, so a restarted broker draws on).
    pub eio_disks: BTreeMap<NodeId, crate::disk_faults::EioWindow>,
    /// Set by the run loop to ask every broker for its committed logs.
    pub snapshot_wanted: bool,
    /// Per partition and broker: `(high watermark, log end, records as (offset, id))`.
    pub snapshots: BTreeMap<TopicPartition, BTreeMap<NodeId, ReplicaSnapshot>>,
    /// Timings for the performance metrics.
    pub probes: Probes,
}

/// One replica's committed log, taken after the final read.
pub struct ReplicaSnapshot {
    pub high_watermark: u64,
    pub log_end: u64,
    pub records: Vec<(u64, String)>,
}

impl ClusterView {
    /// Records that `broker` leads `tp` in `epoch`; a second broker in one epoch is a conflict.
    pub fn record_epoch_leader(&mut self, tp: &TopicPartition, epoch: u64, broker: NodeId) -> bool {
        let first = *self
            .epoch_leaders
            .entry(tp.clone())
            .or_default()
            .entry(epoch)
            .or_insert(broker);
        let conflict = first != broker;
        if conflict {
            self.epochs_with_two_leaders.insert((tp.clone(), epoch));
        }
        conflict
    }
}

/// The view, shared by every broker host of one run.
pub type SharedView = Rc<RefCell<ClusterView>>;
