//! The liveness bound: after the final heal, every data partition gets a leader and is delivered
//! to a reader within the scenario's `liveness_s`.
//!
//! It is judged from what the run already has, so that it adds nothing to the history: the
//! brokers' own view of who leads (sampled by the run loop on every step after the heal) and the
//! final read, the one reader every scenario runs after the heal. A partition is unavailable
//! when no running broker led it by `heal + liveness_s`, or when the final read's last record
//! of it came later than `liveness_s` after the read started, or never came.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fathom_history::{Event, EventType, Op};
use fathom_queue::ids::{NodeId, TopicPartition};
use fathom_workload::clients::FINAL_READ_PROCESS;

use crate::view::ClusterView;

/// Whether every partition found a leader in time after the heal.
pub struct LeaderDeadline {
    partitions: Vec<TopicPartition>,
    /// `heal + liveness`; `None` until the heal.
    deadline: Option<Duration>,
    /// Partitions still without a leader at the deadline; `None` while undecided.
    leaderless: Option<Vec<TopicPartition>>,
}

impl LeaderDeadline {
    pub fn new(partitions: Vec<TopicPartition>) -> LeaderDeadline {
        LeaderDeadline {
            partitions,
            deadline: None,
            leaderless: None,
        }
    }

    /// The final heal happened at `now`.
    pub fn healed(&mut self, now: Duration, liveness: Duration) {
        self.deadline = Some(now + liveness);
    }

    /// Called on every step after the heal until decided: passes as soon as every partition
    /// has a leader on a running broker; fails with the leaderless ones at the deadline.
    pub fn sample(
        &mut self,
        now: Duration,
        view: &ClusterView,
        mut running: impl FnMut(NodeId) -> bool,
    ) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if self.leaderless.is_some() {
            return;
        }
        let leaderless: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|tp| {
                let leaders = view.leading.get(*tp);
                !leaders.is_some_and(|ids| ids.iter().any(|&id| running(id)))
            })
            .cloned()
            .collect();
        if leaderless.is_empty() || now >= deadline {
            self.leaderless = Some(leaderless);
        }
    }

    /// Partitions without a leader at the deadline; a run that ended before the deadline is
    /// judged by its last sample.
    pub fn leaderless(&self) -> Vec<TopicPartition> {
        self.leaderless
            .clone()
            .unwrap_or_else(|| self.partitions.clone())
    }
}

/// Partitions the final read did not deliver within `liveness` of `read_start`: read to
/// their end too late, or never (`incomplete`).
pub fn undelivered(
    events: &[Event],
    read_start: Duration,
    liveness: Duration,
    incomplete: &[String],
) -> BTreeSet<String> {
    let deadline_ns = (read_start + liveness).as_nanos() as u64;
    let mut last_read: BTreeMap<String, u64> = BTreeMap::new();
    for e in events {
        if e.process != FINAL_READ_PROCESS || e.kind != EventType::Ok {
            continue;
        }
        if let Op::Poll {
            topic,
            partition,
            records,
        } = &e.op
        {
            if !records.is_empty() {
                let tp = TopicPartition::new(topic.clone(), *partition).to_string();
                last_read.insert(tp, e.time_ns);
            }
        }
    }
    let late = last_read
        .into_iter()
        .filter(|&(_, at)| at > deadline_ns)
        .map(|(tp, _)| tp);
    late.chain(incomplete.iter().cloned()).collect()
}
