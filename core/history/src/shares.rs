//! The share-group part of the checker (issue 9): from `acquire` and `acknowledge` events stamped
//! with a share group, the two share classes ([`Anomaly::Unconsumed`],
//! [`Anomaly::RedeliveredAccepted`]) and the counts claim C3 is about ([`ShareStats`]): order is
//! not promised, so out-of-order deliveries are a cost to report, not an anomaly.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::checker::CheckReport;
use super::{AckVerdict, Anomaly, Event, EventType, Op};

/// What one share group's members were given and what they did with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareStats {
    /// Records acquired, redeliveries included.
    pub delivered: u64,
    /// Acquisitions of a message beyond its first.
    pub redeliveries: u64,
    /// Messages accepted (confirmed).
    pub accepted: u64,
    /// Messages rejected (confirmed): archived, and dead-lettered where the group has a
    /// dead-letter topic.
    pub rejected: u64,
    /// Acknowledgements whose outcome the member could not learn.
    pub unknown_acks: u64,
    /// Deliveries of a record below one already delivered from its partition to the group:
    /// the order a share group gives up (claim C3).
    pub out_of_order: u64,
}

#[derive(Default)]
struct GroupFacts<'a> {
    topics: BTreeSet<&'a str>,
    /// Per id, the times it was acquired.
    acquired: BTreeMap<&'a str, Vec<u64>>,
    /// Per id, the time its first acceptance was confirmed.
    accepted_at: BTreeMap<&'a str, u64>,
    /// Ids accepted or rejected, confirmed or of unknown outcome.
    done: BTreeSet<&'a str>,
    /// Accepts and rejects invoked and not (yet) completed, per (process, id): a process that
    /// crashed with one in flight left its outcome unknown.
    open: BTreeSet<(&'a str, &'a str)>,
    /// Per partition, the highest offset delivered so far.
    highest: BTreeMap<(&'a str, u32), u64>,
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
    for (name, g) in groups {
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
            } if event.kind == EventType::Ok => {
                let g = groups.entry(&stamp.group).or_default();
                g.topics.insert(topic);
                for (offset, id) in records {
                    acquired(g, (topic, *partition), *offset, id, event.time_ns);
                }
            }
            Op::Acknowledge { ack, records, .. } => {
                let g = groups.entry(&stamp.group).or_default();
                acknowledged(g, event, *ack, records);
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

fn acquired<'a>(g: &mut GroupFacts<'a>, tp: (&'a str, u32), offset: u64, id: &'a str, t: u64) {
    g.stats.delivered += 1;
    let times = g.acquired.entry(id).or_default();
    if !times.is_empty() {
        g.stats.redeliveries += 1;
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
    ack: AckVerdict,
    records: &'a [(u64, String)],
) {
    let settles = matches!(ack, AckVerdict::Accept | AckVerdict::Reject);
    for (_, id) in records {
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
                        g.accepted_at.entry(id).or_insert(event.time_ns);
                    }
                    _ => g.stats.rejected += 1,
                }
            }
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
    for (id, &accepted) in &g.accepted_at {
        let again = g
            .acquired
            .get(id)
            .into_iter()
            .flatten()
            .filter(|&&t| t > accepted);
        if let Some(t) = again.min() {
            report.anomalies[Anomaly::RedeliveredAccepted] += 1;
            report.example(Anomaly::RedeliveredAccepted, || {
                format!("{id} accepted by {name} at {accepted}ns, acquired again at {t}ns")
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
