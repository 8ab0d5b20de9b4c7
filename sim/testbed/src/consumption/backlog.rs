//! Backlog per consumer instance over time (claim C3's picture), from the history.
//!
//! **What a consumer's backlog is.** At each sample time `t` (every [`BACKLOG_STEP_NS`]), every
//! message a group has not yet processed at `t` ([`super::processing`]: a `process` line, a
//! confirmed `accept` or `reject`) and that is acknowledged to its producer by `t` or held by a
//! member at `t` is counted once, against whoever has it:
//! - in a consumer group, against the member instance that owns the message's partition at
//!   `t`: from the `assign` that gave it the partition until a `revoke` that took it away or an
//!   `assign` of the partition to another member. A partition nobody owns (before the first
//!   assignment, between a revoke and the next assign) counts against the group's pool,
//!   `unassigned`.
//! - in a share group, against the member instance holding the record at `t`: from its
//!   `acquire` until that member's acknowledgement of it (`accept`, `release` or `reject`)
//!   completes, someone acquires it again, or it is processed. A record no member holds counts
//!   against the group's pool, `available`: stored and acknowledged, waiting for a fetch.
//!
//! So a group's series add up to everything it had waiting at `t`, and a member's series is
//! what waits on that member alone: a consumer group member's partitions' backlog, a share
//! group member's held records. (A share member that crashes holding records keeps them in
//! this count until someone acquires them again: the lock it held is not in the history.)
//!
//! A group is the `group` its events are stamped with; its messages are the acknowledged sends
//! to the topics its members read. Restarted processes (`c-1-r1`) count with their instance.

use std::collections::{BTreeMap, BTreeSet};

use fathom_history::{Event, EventType, Op};
use serde::{Deserialize, Serialize};

use super::{instance_of, processing};

/// Simulated time between two samples.
pub const BACKLOG_STEP_NS: u64 = 500_000_000;
/// Samples per series at most (at 0.5 s, 1000 simulated seconds): later ones are not taken.
pub const BACKLOG_SAMPLES_MAX: usize = 2_000;

/// Whether a group hands out whole partitions or single records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// A consumer group: `assign`, `revoke` and `process` lines.
    Consumer,
    /// A share group: `acquire` and `acknowledge` lines.
    Share,
}

impl GroupKind {
    /// What the group's pool (messages no member has) is called.
    pub fn pool_name(self) -> &'static str {
        match self {
            GroupKind::Consumer => "unassigned",
            GroupKind::Share => "available",
        }
    }
}

/// One group's backlog over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupBacklog {
    pub group: String,
    pub kind: GroupKind,
    /// Simulated seconds between samples: sample `k` is at `k * step_s`.
    pub step_s: f64,
    /// One per member instance in name order, then the pool's when it was ever above zero.
    pub series: Vec<BacklogSeries>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacklogSeries {
    /// The member instance (`c-1`); `None` for the group's pool.
    pub instance: Option<String>,
    /// Messages waiting at each sample.
    pub counts: Vec<u64>,
}

/// A share member holding a record from `from_ns` until `to_ns` (`u64::MAX`: until the end).
struct Hold<'a> {
    process: &'a str,
    from_ns: u64,
    to_ns: u64,
}

/// What the history says of one group.
#[derive(Default)]
struct Facts<'a> {
    share: bool,
    topics: BTreeSet<&'a str>,
    instances: BTreeSet<&'a str>,
    /// Per message id, its first processing by the group.
    processed: BTreeMap<&'a str, u64>,
    /// Per partition, its owner from each time on (consumer groups).
    owners: BTreeMap<(&'a str, u32), Vec<Owner<'a>>>,
    /// Per message id, its holds in time order (share groups).
    holds: BTreeMap<&'a str, Vec<Hold<'a>>>,
    last_ns: u64,
}

/// From this time on, this member instance owns the partition (`None`: nobody does).
type Owner<'a> = (u64, Option<&'a str>);

/// An acknowledged send: when, and to which partition.
type Acked<'a> = (u64, (&'a str, u32));

/// The backlog of every group in `events` (in group-name order), sampled every
/// [`BACKLOG_STEP_NS`] from 0 until the sample at or after the group's last processing or
/// acknowledged send.
pub fn backlog_over_time(events: &[Event]) -> Vec<GroupBacklog> {
    let mut acked: BTreeMap<&str, Acked<'_>> = BTreeMap::new();
    let mut groups: BTreeMap<&str, Facts<'_>> = BTreeMap::new();
    for e in events {
        if let (
            Op::Send {
                id,
                topic,
                partition,
                ..
            },
            EventType::Ok,
        ) = (&e.op, e.kind)
        {
            acked.entry(id).or_insert((e.time_ns, (topic, *partition)));
        }
        if let Some(stamp) = &e.group {
            gather(groups.entry(&stamp.group).or_default(), e);
        }
    }
    groups
        .into_iter()
        .filter(|(_, f)| !f.instances.is_empty())
        .map(|(name, f)| sample(name, &f, &acked))
        .collect()
}

/// Adds one event stamped with the group to its facts.
fn gather<'a>(f: &mut Facts<'a>, e: &'a Event) {
    let instance = instance_of(&e.process);
    if let Some(p) = processing(e) {
        f.last_ns = f.last_ns.max(e.time_ns);
        for (_, id) in p.records {
            f.processed.entry(id).or_insert(e.time_ns);
        }
    }
    match (&e.op, e.kind) {
        (Op::Assign { partitions }, EventType::Ok) => {
            f.instances.insert(instance);
            for (topic, partition) in partitions {
                f.topics.insert(topic);
                let owners = f.owners.entry((topic, *partition)).or_default();
                owners.push((e.time_ns, Some(instance)));
            }
        }
        (Op::Revoke { partitions }, EventType::Ok) => {
            for (topic, partition) in partitions {
                let owners = f.owners.entry((topic, *partition)).or_default();
                // Only its owner's revoke frees it: a late revoke of a partition already
                // assigned to another member changes nothing.
                if owners.last().is_some_and(|(_, o)| *o == Some(instance)) {
                    owners.push((e.time_ns, None));
                }
            }
        }
        (Op::Process { topic, .. }, EventType::Ok) => {
            f.instances.insert(instance);
            f.topics.insert(topic);
        }
        (Op::Acquire { topic, records, .. }, EventType::Ok) => {
            f.share = true;
            f.instances.insert(instance);
            f.topics.insert(topic);
            for (_, id) in records {
                let holds = f.holds.entry(id).or_default();
                if let Some(h) = holds.last_mut() {
                    h.to_ns = h.to_ns.min(e.time_ns);
                }
                holds.push(Hold {
                    process: &e.process,
                    from_ns: e.time_ns,
                    to_ns: u64::MAX,
                });
            }
        }
        // An acknowledgement's outcome (confirmed, failed or unknown) ends its member's hold.
        (Op::Acknowledge { records, .. }, kind) if kind != EventType::Invoke => {
            for (_, id) in records {
                let held = f.holds.get_mut(id.as_str()).and_then(|h| h.last_mut());
                if let Some(h) = held.filter(|h| h.process == e.process) {
                    h.to_ns = h.to_ns.min(e.time_ns);
                }
            }
        }
        _ => {}
    }
}

/// Samples one group's facts into its series.
fn sample(name: &str, f: &Facts<'_>, acked: &BTreeMap<&str, Acked<'_>>) -> GroupBacklog {
    let mine: Vec<(&str, &Acked<'_>)> = acked
        .iter()
        .filter(|(_, (_, (topic, _)))| f.topics.contains(topic))
        .map(|(id, a)| (*id, a))
        .collect();
    let last_ack = mine.iter().map(|(_, (t, _))| *t).max().unwrap_or(0);
    let end_ns = f.last_ns.max(last_ack);
    let samples = (end_ns.div_ceil(BACKLOG_STEP_NS) as usize + 1).min(BACKLOG_SAMPLES_MAX);
    let mut counts: BTreeMap<Option<&str>, Vec<u64>> = f
        .instances
        .iter()
        .map(|i| (Some(*i), vec![0; samples]))
        .chain([(None, vec![0; samples])])
        .collect();
    // Every message the group had: acknowledged, or held before its acknowledgement came.
    let mut ids: BTreeSet<&str> = mine.iter().map(|(id, _)| *id).collect();
    ids.extend(f.holds.keys());
    for id in ids {
        let done_ns = f.processed.get(id).copied().unwrap_or(u64::MAX);
        let acked_at = acked
            .get(id)
            .filter(|(_, (topic, _))| f.topics.contains(topic));
        for (k, t_ns) in (0..samples).map(|k| (k, k as u64 * BACKLOG_STEP_NS)) {
            if t_ns >= done_ns {
                break;
            }
            if let Some(holder) = holder(f, id, acked_at, t_ns) {
                counts.entry(holder).or_default()[k] += 1;
            }
        }
    }
    let pool = counts.remove(&None).filter(|c| c.iter().any(|&n| n > 0));
    let mut series: Vec<BacklogSeries> = counts
        .into_iter()
        .map(|(instance, counts)| BacklogSeries {
            instance: instance.map(str::to_string),
            counts,
        })
        .collect();
    series.extend(pool.map(|counts| BacklogSeries {
        instance: None,
        counts,
    }));
    GroupBacklog {
        group: name.to_string(),
        kind: if f.share {
            GroupKind::Share
        } else {
            GroupKind::Consumer
        },
        step_s: BACKLOG_STEP_NS as f64 / 1e9,
        series,
    }
}

/// Whom unprocessed message `id` counts against at `t_ns`: `Some(Some(instance))` a member,
/// `Some(None)` the pool, `None` nobody (not yet acknowledged nor held).
fn holder<'a>(
    f: &Facts<'a>,
    id: &str,
    acked: Option<&Acked<'a>>,
    t_ns: u64,
) -> Option<Option<&'a str>> {
    let mut holds = f.holds.get(id).into_iter().flatten();
    if let Some(h) = holds.find(|h| h.from_ns <= t_ns && t_ns < h.to_ns) {
        return Some(Some(instance_of(h.process)));
    }
    let &(at_ns, tp) = acked?;
    if at_ns > t_ns {
        return None;
    }
    let owners = f.owners.get(&tp).map(Vec::as_slice).unwrap_or_default();
    let before = owners.partition_point(|(from_ns, _)| *from_ns <= t_ns);
    Some(before.checked_sub(1).and_then(|i| owners[i].1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fathom_history::AckVerdict;

    const MS: u64 = 1_000_000;

    fn sent(t_ms: u64, id: &str, partition: u32) -> Event {
        let op = Op::Send {
            id: id.into(),
            topic: "t".into(),
            partition,
            offset: Some(0),
            error: None,
        };
        Event::new(t_ms * MS, "p-0", EventType::Ok, op)
    }

    fn member(t_ms: u64, who: &str, kind: EventType, op: Op, group: &str) -> Event {
        Event::new(t_ms * MS, who, kind, op).in_group(group, Some(1))
    }

    fn partitions(list: &[u32]) -> Vec<(String, u32)> {
        list.iter().map(|&p| ("t".to_string(), p)).collect()
    }

    fn records(ids: &[&str]) -> Vec<(u64, String)> {
        ids.iter().map(|id| (0, id.to_string())).collect()
    }

    fn series(b: &GroupBacklog) -> Vec<(Option<&str>, &[u64])> {
        b.series
            .iter()
            .map(|s| (s.instance.as_deref(), s.counts.as_slice()))
            .collect()
    }

    #[test]
    fn a_consumer_groups_backlog_is_its_owned_partitions_unprocessed_messages() {
        let ok = EventType::Ok;
        let assign = |t, who, p: &[u32]| {
            let op = Op::Assign {
                partitions: partitions(p),
            };
            member(t, who, ok, op, "g")
        };
        let process = |t, who, partition, ids: &[&str]| {
            let op = Op::Process {
                topic: "t".into(),
                partition,
                records: records(ids),
            };
            member(t, who, ok, op, "g")
        };
        let revoke = |t, who, p: &[u32]| {
            let op = Op::Revoke {
                partitions: partitions(p),
            };
            member(t, who, ok, op, "g")
        };
        let events = vec![
            sent(100, "a", 0),
            sent(200, "b", 1),
            assign(600, "c-0", &[0]),
            assign(600, "c-1", &[1]),
            process(900, "c-1", 1, &["b"]),
            sent(1200, "c", 0),
            process(1600, "c-0", 0, &["a"]),
            revoke(1700, "c-0", &[0]),
            revoke(1800, "c-1", &[0]), // not its partition: changes nothing
            assign(2100, "c-1-r1", &[0]),
            process(2600, "c-1-r1", 0, &["c"]),
        ];
        let b = backlog_over_time(&events);
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].group.as_str(), b[0].kind), ("g", GroupKind::Consumer));
        assert_eq!(b[0].step_s, 0.5);
        // Samples at 0, 0.5, ..., 3.0 s (the first at or after the last processing).
        assert_eq!(
            series(&b[0]),
            [
                (Some("c-0"), &[0, 0, 1, 2, 0, 0, 0][..]),
                (Some("c-1"), &[0, 0, 0, 0, 0, 1, 0][..]),
                (None, &[0, 2, 0, 0, 1, 0, 0][..]),
            ]
        );
    }

    #[test]
    fn a_share_groups_backlog_is_each_members_held_records_and_the_available_rest() {
        let ack = |t, who, kind, verdict, ids: &[&str]| {
            let op = Op::Acknowledge {
                topic: "t".into(),
                partition: 0,
                ack: verdict,
                records: records(ids),
                error: None,
            };
            member(t, who, kind, op, "s")
        };
        let acquire = |t, who, ids: &[&str]| {
            let op = Op::Acquire {
                topic: "t".into(),
                partition: 0,
                records: records(ids),
                requested_ns: None,
            };
            member(t, who, EventType::Ok, op, "s")
        };
        let (invoke, ok) = (EventType::Invoke, EventType::Ok);
        let events = vec![
            acquire(0, "s-0", &["z"]), // held, its send never acknowledged
            sent(100, "x", 0),
            sent(100, "y", 0),
            ack(300, "s-0", ok, AckVerdict::Accept, &["z"]),
            acquire(300, "s-0", &["x", "y"]),
            ack(790, "s-0", invoke, AckVerdict::Release, &["y"]),
            ack(800, "s-0", ok, AckVerdict::Release, &["y"]),
            acquire(1100, "s-1", &["y"]),
            ack(1200, "s-0", invoke, AckVerdict::Accept, &["x"]),
            ack(1300, "s-0", ok, AckVerdict::Accept, &["x"]),
            ack(1900, "s-1", ok, AckVerdict::Accept, &["y"]),
        ];
        let b = backlog_over_time(&events);
        assert_eq!(b[0].kind, GroupKind::Share);
        // At 0 s s-0 already holds z, whose send is never acknowledged; at 1 s y was released
        // and waits, available; at 1.5 s s-1 holds it.
        assert_eq!(
            series(&b[0]),
            [
                (Some("s-0"), &[1, 2, 1, 0, 0][..]),
                (Some("s-1"), &[0, 0, 0, 1, 0][..]),
                (None, &[0, 0, 1, 0, 0][..]),
            ]
        );
    }
}
