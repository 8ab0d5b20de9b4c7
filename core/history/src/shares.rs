//! The share-group part of the checker (issue 9): from `acquire` and `acknowledge` events stamped
//! with a share group, the two share classes ([`Anomaly::Unconsumed`],
//! [`Anomaly::RedeliveredAccepted`]) and the counts claim C3 is about ([`ShareStats`]): order is
//! not promised, so out-of-order deliveries are a cost to report, not an anomaly.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::checker::CheckReport;
use super::{AckVerdict, Anomaly, Event, EventType, Op};

/// The id a member gives the copy of a record it sends to its dead-letter topic: the record's
/// id with this suffix. The copy is an ordinary send (read back by the final read).
pub const DEAD_LETTER_SUFFIX: &str = "@dlq";

/// What one share group's members were given and what they did with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareStats {
    /// Records acquired, redeliveries included.
    pub delivered: u64,
    /// Acquisitions of a record beyond its first.
    pub redeliveries: u64,
    /// Messages accepted (confirmed).
    pub accepted: u64,
    /// Messages rejected (confirmed): archived, and dead-lettered where the group has a
    /// dead-letter topic.
    pub rejected: u64,
    /// Rejected messages whose copy to the dead-letter topic was acknowledged first.
    #[serde(default)]
    pub dead_lettered: u64,
    /// Acknowledgements whose outcome the member could not learn.
    pub unknown_acks: u64,
    /// Accepts and rejects the share-partition leader refused (the lock had expired, a
    /// failover had released the record, or the member did not hold it): work of the member's
    /// that the group did not keep; the record is delivered again if it is not done.
    #[serde(default)]
    pub refused_acks: u64,
    /// Deliveries of a record below one already delivered from its partition to the group:
    /// the order a share group gives up (claim C3).
    pub out_of_order: u64,
    /// First deliveries (a record's first acquisition in the history; redeliveries are not
    /// counted) of a record below one already first delivered from its partition with the same
    /// [ordering key](ordering_key): the order a `key_shared` group keeps and a `share` group
    /// gives up. Counted for every share group; a scenario bounds it with `[expect]`.
    #[serde(default)]
    pub out_of_order_per_key: u64,
}

/// The ordering key of a message id: the id up to its first `/`, all of it without one. The
/// same rule as the broker's (`fathom_queue::share::ordering_key`), on the ids the workload
/// uses as record keys.
pub fn ordering_key(id: &str) -> &str {
    id.split_once('/').map_or(id, |(key, _)| key)
}

/// A record's place: (topic, partition, offset). Redeliveries are judged per place, not per
/// id: a producer's retry can store one message at two offsets, each a record of its own.
type Place<'a> = (&'a str, u32, u64);

#[derive(Default)]
struct GroupFacts<'a> {
    topics: BTreeSet<&'a str>,
    /// Per record, the earliest time each of its acquisitions can have happened: when the
    /// fetch that acquired it was sent.
    acquired: BTreeMap<Place<'a>, Vec<u64>>,
    /// Per record, the time its first acceptance was confirmed, and its id.
    accepted_at: BTreeMap<Place<'a>, (u64, &'a str)>,
    /// Ids whose rejection was confirmed.
    rejected: BTreeSet<&'a str>,
    /// Ids accepted or rejected, confirmed or of unknown outcome.
    done: BTreeSet<&'a str>,
    /// Accepts and rejects invoked and not (yet) completed, per (process, id): a process that
    /// crashed with one in flight left its outcome unknown.
    open: BTreeSet<(&'a str, &'a str)>,
    /// Per partition, the highest offset delivered so far.
    highest: BTreeMap<(&'a str, u32), u64>,
    /// Per partition and ordering key, the highest offset first delivered so far.
    highest_per_key: BTreeMap<(&'a str, u32, &'a str), u64>,
    stats: ShareStats,
}

/// Judges the share classes when the history has share-group events; fills `report.shares`.
pub(crate) fn check_shares(events: &[Event], report: &mut CheckReport) {
    let groups = gather(events);
    if groups.is_empty() {
        return;
    }
    report.anomalies.judge_shares();
    let acked = acked_sends(events);
    for (name, mut g) in groups {
        g.stats.dead_lettered = g
            .rejected
            .iter()
            .filter(|id| acked.contains_key(format!("{id}{DEAD_LETTER_SUFFIX}").as_str()))
            .count() as u64;
        check_redelivered(name, &g, report);
        check_unconsumed(name, &g, &acked, report);
        report.shares.insert(name.to_string(), g.stats);
    }
}

fn gather(events: &[Event]) -> BTreeMap<&str, GroupFacts<'_>> {
    let mut groups: BTreeMap<&str, GroupFacts<'_>> = BTreeMap::new();
    for event in events {
        let Some(stamp) = &event.group else { continue };
        match &event.op {
            Op::Acquire {
                topic,
                partition,
                records,
                requested_ns,
            } if event.kind == EventType::Ok => {
                let g = groups.entry(&stamp.group).or_default();
                g.topics.insert(topic);
                // The leader handed the records out after the fetch was sent, however late
                // the member took them (histories without the field: when it took them).
                let earliest = requested_ns.unwrap_or(event.time_ns);
                for (offset, id) in records {
                    acquired(g, (topic, *partition, *offset), id, earliest);
                }
            }
            Op::Acknowledge {
                topic,
                partition,
                ack,
                records,
                ..
            } => {
                let g = groups.entry(&stamp.group).or_default();
                acknowledged(g, event, (topic, *partition), *ack, records);
            }
            _ => {}
        }
    }
    for g in groups.values_mut() {
        for (_, id) in std::mem::take(&mut g.open) {
            g.stats.unknown_acks += 1;
            g.done.insert(id);
        }
    }
    groups
}

fn acquired<'a>(g: &mut GroupFacts<'a>, place: Place<'a>, id: &'a str, t: u64) {
    let (topic, partition, offset) = place;
    let tp = (topic, partition);
    g.stats.delivered += 1;
    let times = g.acquired.entry(place).or_default();
    if !times.is_empty() {
        g.stats.redeliveries += 1;
    } else {
        let top = g
            .highest_per_key
            .entry((topic, partition, ordering_key(id)))
            .or_insert(offset);
        if offset < *top {
            g.stats.out_of_order_per_key += 1;
        }
        *top = (*top).max(offset);
    }
    times.push(t);
    let highest = g.highest.entry(tp).or_insert(offset);
    if offset < *highest {
        g.stats.out_of_order += 1;
    }
    *highest = (*highest).max(offset);
}

fn acknowledged<'a>(
    g: &mut GroupFacts<'a>,
    event: &'a Event,
    (topic, partition): (&'a str, u32),
    ack: AckVerdict,
    records: &'a [(u64, String)],
) {
    let settles = matches!(ack, AckVerdict::Accept | AckVerdict::Reject);
    for (offset, id) in records {
        let key = (event.process.as_str(), id.as_str());
        match event.kind {
            EventType::Invoke if settles => {
                g.open.insert(key);
                continue;
            }
            _ => {
                g.open.remove(&key);
            }
        }
        match event.kind {
            EventType::Ok if settles => {
                g.done.insert(id);
                match ack {
                    AckVerdict::Accept => {
                        g.stats.accepted += 1;
                        let place = (topic, partition, *offset);
                        g.accepted_at.entry(place).or_insert((event.time_ns, id));
                    }
                    _ => {
                        g.stats.rejected += 1;
                        g.rejected.insert(id);
                    }
                }
            }
            EventType::Fail if settles => g.stats.refused_acks += 1,
            EventType::Info => {
                g.stats.unknown_acks += 1;
                if settles {
                    g.done.insert(id);
                }
            }
            _ => {}
        }
    }
}

fn check_redelivered(name: &str, g: &GroupFacts<'_>, report: &mut CheckReport) {
    for (place, &(accepted, id)) in &g.accepted_at {
        let times = g.acquired.get(place).into_iter().flatten();
        if let Some(t) = times.filter(|&&t| t > accepted).min() {
            let (topic, partition, offset) = place;
            report.anomalies[Anomaly::RedeliveredAccepted] += 1;
            report.example(Anomaly::RedeliveredAccepted, || {
                format!(
                    "{id} at {topic}-{partition}@{offset} accepted by {name} at {accepted}ns, \
                     acquired again by a fetch sent at {t}ns"
                )
            });
        }
    }
}

fn check_unconsumed(
    name: &str,
    g: &GroupFacts<'_>,
    acked: &BTreeMap<&str, &str>,
    report: &mut CheckReport,
) {
    for (id, topic) in acked {
        if g.topics.contains(topic) && !g.done.contains(id) {
            report.anomalies[Anomaly::Unconsumed] += 1;
            report.example(Anomaly::Unconsumed, || {
                format!("{id} acked on {topic}, never accepted nor rejected by {name}")
            });
        }
    }
}

/// Every id acknowledged `ok`, with its topic.
fn acked_sends(events: &[Event]) -> BTreeMap<&str, &str> {
    let mut acked = BTreeMap::new();
    for event in events {
        if let (Op::Send { id, topic, .. }, EventType::Ok) = (&event.op, event.kind) {
            acked.insert(id.as_str(), topic.as_str());
        }
    }
    acked
}
