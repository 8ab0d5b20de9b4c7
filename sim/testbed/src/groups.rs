//! Consumer-group figures (issue 8 §5, claim C2), taken from the history alone: how often each
//! group rebalanced, how long each of its partitions went without a live owner, and how long
//! the whole group stood still.
//!
//! Ownership is what the members wrote: an `assign` line gives a member partitions (assign
//! lines add; a member keeps what it had), a `revoke` line takes them back, and a member's
//! ownership ends with its process's last line (a crashed process writes nothing more). A
//! partition is *paused* while no live member owns it. A manual consumer (no group protocol)
//! writes unstamped `assign` lines; its partitions are counted under its `group` too, so a
//! restart of a directly assigned consumer is measured the same way.
//!
//! Limits of the reading, said once here: a member paused inside its handler (a GC stall)
//! still owns its partitions in the history until it writes its revocation, so such a stall
//! counts as owned time; and ownership lasts until a process's last line, so a crash is dated
//! at the member's last recorded operation (at most one poll or heartbeat-driven line early).

use std::collections::BTreeMap;

use fathom_history::{Event, EventType, Op};
use serde::Serialize;

use crate::messages::{Messages, ProcessIx};
use crate::scenario::Scenario;
use crate::summary::{end_to_end_sent_in, Percentiles};
use fathom_workload::clients::FINAL_READ_PROCESS;
use fathom_workload::spec::ConsumerProtocol;

/// What one group went through, over the workload phase after its start-up join.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GroupFigures {
    /// Rebalances after the start-up join: each generation (classic) or member epoch (KIP-848)
    /// first written after the group's first one; under RocketMQ 4's client-side protocol,
    /// where no generation exists, each member's own reassignment (an `assign` or `revoke`
    /// line after its first `assign`). The classic coordinator waits for members before its
    /// first generation (`group.initial.rebalance.delay.ms`); the others do not, so members
    /// that start a moment apart count there too.
    pub rebalances: u64,
    /// Per partition (`topic/partition`): simulated ms without a live owner, from the
    /// partition's first assignment to the end of the workload phase.
    pub paused_ms: BTreeMap<String, f64>,
    /// The sum of `paused_ms` over the partitions.
    pub paused_ms_total: f64,
    /// Simulated ms in which no partition of the group had a live owner, from the moment every
    /// partition had been assigned once to the end of the workload phase.
    pub stop_the_world_ms: f64,
    /// At the end of the workload phase, over the partitions the group owned: acknowledged
    /// records at or past the group's last committed offset (what a restart would read again,
    /// or for the first time).
    pub commit_lag: u64,
    /// When each counted rebalance was first seen, simulated seconds (chart markers).
    pub rebalance_at_s: Vec<f64>,
    /// When every partition had been assigned once (the start-up join's end), simulated
    /// seconds.
    pub started_s: f64,
    /// Send-to-first-delivery latency of the messages sent from `started_s` to the end of the
    /// workload phase, each at its first delivery to a member of this group: what the
    /// membership events cost the group's readers, without the start-up.
    pub end_to_end_ms: Percentiles,
}

/// A half-open span of simulated nanoseconds.
type Span = (u64, u64);

/// Per group, its figures; groups are consumer groups with `assign` lines in the history.
pub fn group_figures(
    scenario: &Scenario,
    events: &[Event],
    messages: &Messages<'_>,
) -> BTreeMap<String, GroupFigures> {
    let end = (scenario.duration_s * 1e9) as u64;
    figures_of(events, messages, end, &manual_groups(scenario))
}

/// [`group_figures`] over a workload phase ending at `end` ns, with the manual consumers'
/// names and groups.
fn figures_of(
    events: &[Event],
    messages: &Messages<'_>,
    end: u64,
    manual: &[(String, String)],
) -> BTreeMap<String, GroupFigures> {
    let mut lines = Lines::default();
    for e in events {
        lines.add(e, manual, end);
    }
    let mut figures = BTreeMap::new();
    for (name, g) in &lines.groups {
        let mut f = g.figures(&lines, end);
        let started = (f.started_s * 1e9).round() as u64;
        let members: Vec<bool> = (messages.processes().iter())
            .map(|p| g.changes.contains_key(p))
            .collect();
        let member = |p: ProcessIx| members[p];
        f.end_to_end_ms = end_to_end_sent_in(messages, started, end, member);
        figures.insert(name.to_string(), f);
    }
    figures
}

/// The group a manual consumer's processes count under, by the consumer's name.
fn manual_groups(scenario: &Scenario) -> Vec<(String, String)> {
    scenario
        .consumers
        .iter()
        .filter(|c| c.protocol == ConsumerProtocol::Manual)
        .map(|c| (c.name.clone(), c.group.clone()))
        .collect()
}

/// Whether `process` is an instance of consumer `name`: `{name}-{i}`, or `{name}-{i}-r{k}`
/// after `k` restarts (so that consumer `c` does not claim `c-slow-0`).
fn is_instance_of(process: &str, name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = process.strip_prefix(name).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    match rest.split_once("-r") {
        Some((instance, restarts)) => digits(instance) && digits(restarts),
        None => digits(rest),
    }
}

/// One ownership change of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Gain,
    Loss,
}

/// What a pass over the history keeps.
#[derive(Default)]
struct Lines<'a> {
    groups: BTreeMap<&'a str, GroupLines<'a>>,
    /// Each process's last line, the end of its ownership.
    last_line: BTreeMap<&'a str, u64>,
    /// Per partition (`topic/partition`), one past the highest acknowledged offset.
    acked_end: BTreeMap<String, u64>,
}

/// One group's `assign` and `revoke` lines.
#[derive(Default)]
struct GroupLines<'a> {
    /// Per member process, its changes in time order: (time, change, partition).
    changes: BTreeMap<&'a str, Vec<(u64, Change, String)>>,
    /// Each generation and when it was first written.
    generations: BTreeMap<u32, u64>,
    /// Reassignments of members without generations (client-side rebalance): their times.
    member_rebalances: Vec<u64>,
    /// Per partition, the last offset a commit of the group was acknowledged for.
    committed: BTreeMap<String, u64>,
}

impl<'a> Lines<'a> {
    /// Takes one line; only a process's last line counts past `end`, the end of the workload
    /// phase.
    fn add(&mut self, e: &'a Event, manual: &'a [(String, String)], end: u64) {
        if e.process == FINAL_READ_PROCESS {
            return;
        }
        self.last_line.insert(&e.process, e.time_ns);
        if e.time_ns >= end {
            return;
        }
        let Some((group, generation)) = group_of(e, manual) else {
            if let (
                Op::Send {
                    topic,
                    partition,
                    offset: Some(offset),
                    ..
                },
                EventType::Ok,
            ) = (&e.op, e.kind)
            {
                let end = self
                    .acked_end
                    .entry(format!("{topic}/{partition}"))
                    .or_default();
                *end = (*end).max(offset.saturating_add(1));
            }
            return;
        };
        let (change, partitions) = match (&e.op, e.kind) {
            (Op::Assign { partitions }, EventType::Ok) => (Change::Gain, partitions),
            (Op::Revoke { partitions }, EventType::Ok) => (Change::Loss, partitions),
            (
                Op::Commit {
                    topic,
                    partition,
                    offset,
                    ..
                },
                EventType::Ok,
            ) => {
                let g = self.groups.entry(group).or_default();
                g.committed.insert(format!("{topic}/{partition}"), *offset);
                return;
            }
            _ => return,
        };
        let g = self.groups.entry(group).or_default();
        let member = g.changes.entry(&e.process).or_default();
        let had_gained = member.iter().any(|(_, c, _)| *c == Change::Gain);
        member.extend(
            partitions
                .iter()
                .map(|(topic, p)| (e.time_ns, change, format!("{topic}/{p}"))),
        );
        match generation {
            Some(gen) if gen > 0 => {
                g.generations.entry(gen).or_insert(e.time_ns);
            }
            // A group member without generations: RocketMQ 4's members rebalance alone.
            Some(_) if had_gained => g.member_rebalances.push(e.time_ns),
            _ => {}
        }
    }
}

/// The group a consumer's line belongs to, with its generation: its stamp, or for a manual
/// consumer's process the consumer's `group`. `None` for every other line (sends included).
fn group_of<'a>(e: &'a Event, manual: &'a [(String, String)]) -> Option<(&'a str, Option<u32>)> {
    match &e.group {
        Some(stamp) => Some((stamp.group.as_str(), stamp.generation)),
        None => manual
            .iter()
            .find(|(name, _)| is_instance_of(&e.process, name))
            .map(|(_, group)| (group.as_str(), None)),
    }
}

impl GroupLines<'_> {
    fn figures(&self, lines: &Lines<'_>, end: u64) -> GroupFigures {
        // Members stop when the workload phase ends, each after its own last poll: the group's
        // window closes with the last of them, so that the stop itself is no pause.
        let last_member_line = self
            .changes
            .keys()
            .filter_map(|p| lines.last_line.get(p).copied())
            .max()
            .unwrap_or(end);
        let end = end.min(last_member_line);
        let owned = self.owned_spans(&lines.last_line);
        let first_owned: BTreeMap<&str, u64> = owned
            .iter()
            .filter_map(|(p, spans)| Some((p.as_str(), spans.first()?.0)))
            .collect();
        let paused_ms: BTreeMap<String, f64> = owned
            .iter()
            .map(|(p, spans)| {
                let from = first_owned.get(p.as_str()).copied().unwrap_or(end);
                (p.clone(), ms(uncovered(spans, (from, end))))
            })
            .collect();
        let all_assigned = first_owned.values().copied().max().unwrap_or(end);
        let any_owned = union(owned.values().flatten().copied().collect());
        let rebalances = self.rebalance_times();
        GroupFigures {
            rebalances: rebalances.len() as u64,
            paused_ms_total: crate::metrics::round3(paused_ms.values().sum()),
            paused_ms,
            stop_the_world_ms: ms(uncovered(&any_owned, (all_assigned, end))),
            commit_lag: self.commit_lag(owned.keys(), &lines.acked_end),
            rebalance_at_s: rebalances.iter().map(|&t| t as f64 / 1e9).collect(),
            started_s: all_assigned as f64 / 1e9,
            end_to_end_ms: Percentiles::default(),
        }
    }

    fn commit_lag<'p>(
        &self,
        partitions: impl Iterator<Item = &'p String>,
        acked_end: &BTreeMap<String, u64>,
    ) -> u64 {
        partitions
            .map(|p| {
                let acked = acked_end.get(p).copied().unwrap_or(0);
                let committed = self.committed.get(p).copied().unwrap_or(0);
                acked.saturating_sub(committed)
            })
            .sum()
    }

    /// The counted rebalances' times: every generation after the first, and every member-level
    /// reassignment.
    fn rebalance_times(&self) -> Vec<u64> {
        let mut times: Vec<u64> = self.generations.values().skip(1).copied().collect();
        times.extend(&self.member_rebalances);
        times.sort_unstable();
        times
    }

    /// Per partition, the merged spans in which some live member owned it.
    fn owned_spans(&self, last_line: &BTreeMap<&str, u64>) -> BTreeMap<String, Vec<Span>> {
        let mut spans: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        for (process, changes) in &self.changes {
            let died = last_line.get(process).copied().unwrap_or(0);
            let mut since: BTreeMap<&str, u64> = BTreeMap::new();
            for (t, change, p) in changes {
                match change {
                    Change::Gain => {
                        since.entry(p).or_insert(*t);
                    }
                    Change::Loss => {
                        if let Some(from) = since.remove(p.as_str()) {
                            spans.entry(p.clone()).or_default().push((from, *t));
                        }
                    }
                }
            }
            for (p, from) in since {
                spans.entry(p.to_string()).or_default().push((from, died));
            }
        }
        spans.into_iter().map(|(p, s)| (p, union(s))).collect()
    }
}

/// Sorted, disjoint spans covering the same time as `spans`.
fn union(mut spans: Vec<Span>) -> Vec<Span> {
    spans.retain(|(a, b)| b > a);
    spans.sort_unstable();
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Nanoseconds of `window` that the sorted, disjoint `spans` leave uncovered.
fn uncovered(spans: &[Span], window: Span) -> u64 {
    let (from, to) = window;
    if to <= from {
        return 0;
    }
    let covered: u64 = spans
        .iter()
        .map(|&(a, b)| b.min(to).saturating_sub(a.max(from)))
        .sum();
    (to - from).saturating_sub(covered)
}

fn ms(ns: u64) -> f64 {
    crate::metrics::round3(ns as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    //! Hand-made histories with known ownership; every figure is worked out in the comments.
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn parts(ps: &[u32]) -> Vec<(String, u32)> {
        ps.iter().map(|&p| ("t".to_string(), p)).collect()
    }

    fn assign(t: u64, who: &str, ps: &[u32], gen: Option<u32>) -> Event {
        let op = Op::Assign {
            partitions: parts(ps),
        };
        let e = Event::new(t, who, EventType::Ok, op);
        match gen {
            Some(g) => e.in_group("g1", Some(g)),
            None => e,
        }
    }

    fn revoke(t: u64, who: &str, ps: &[u32], gen: u32) -> Event {
        let op = Op::Revoke {
            partitions: parts(ps),
        };
        Event::new(t, who, EventType::Ok, op).in_group("g1", Some(gen))
    }

    fn poll(t: u64, who: &str, p: u32) -> Event {
        let op = Op::Poll {
            topic: "t".into(),
            partition: p,
            records: vec![(0, "x".into())],
        };
        Event::new(t, who, EventType::Ok, op)
    }

    fn figures(events: &[Event], end: u64, manual: &[(String, String)]) -> GroupFigures {
        let messages = Messages::index(events);
        let all = figures_of(events, &messages, end, manual);
        assert_eq!(all.len(), 1, "one group expected: {all:?}");
        all.into_values().next().unwrap_or_default()
    }

    /// An eager rebalance (claim C2): both members revoke everything, then one takes both
    /// partitions. t/0 is ownerless 3.0–3.5 s, t/1 3.2–3.5 s; both at once 3.2–3.5 s.
    #[test]
    fn an_eager_rebalance_pauses_every_partition_and_the_whole_group() {
        let ack = Op::Send {
            id: "m".into(),
            topic: "t".into(),
            partition: 0,
            offset: Some(9),
            error: None,
        };
        let commit = Op::Commit {
            topic: "t".into(),
            partition: 0,
            offset: 4,
            error: None,
        };
        let send = |id: &str| Op::Send {
            id: id.into(),
            topic: "t".into(),
            partition: 1,
            offset: None,
            error: None,
        };
        let delivered = Op::Poll {
            topic: "t".into(),
            partition: 1,
            records: vec![(0, "early".into()), (1, "late".into())],
        };
        let events = vec![
            Event::new(S / 2, "p-0", EventType::Invoke, send("early")),
            assign(S, "a", &[0], Some(1)),
            assign(S, "b", &[1], Some(1)),
            Event::new(2 * S, "p-0", EventType::Ok, ack),
            Event::new(2 * S + 500 * MS, "a", EventType::Ok, commit).in_group("g1", Some(1)),
            revoke(3 * S, "a", &[0], 1),
            revoke(3 * S + 200 * MS, "b", &[1], 1),
            assign(3 * S + 500 * MS, "a", &[0, 1], Some(2)),
            Event::new(5 * S, "p-0", EventType::Invoke, send("late")),
            Event::new(5 * S + 250 * MS, "a", EventType::Ok, delivered),
            poll(10 * S, "a", 0),
        ];
        let g = figures(&events, 10 * S, &[]);
        // Only "late" was sent after the start-up join (1 s): "early" waited for it.
        assert_eq!(g.started_s, 1.0);
        assert_eq!(g.end_to_end_ms.count, 1);
        // The histogram keeps 3 significant digits: 250 ms reads back within 0.1%.
        assert!(
            (g.end_to_end_ms.p99 - 250.0).abs() <= 0.25,
            "{:?}",
            g.end_to_end_ms
        );
        assert_eq!(g.rebalances, 1);
        assert_eq!(g.rebalance_at_s, vec![3.5]);
        assert_eq!(g.paused_ms.get("t/0"), Some(&500.0));
        assert_eq!(g.paused_ms.get("t/1"), Some(&300.0));
        assert_eq!(g.paused_ms_total, 800.0);
        assert_eq!(g.stop_the_world_ms, 300.0);
        // Offsets 0..=9 acknowledged on t/0, committed up to 4: 6 past the commit.
        assert_eq!(g.commit_lag, 6);
    }

    /// A crashed member writes nothing more: its partition is ownerless from its last line
    /// (4 s) until the next owner's assignment (6 s), while the other partition is not.
    #[test]
    fn a_crashed_members_partitions_pause_until_they_are_reassigned() {
        let events = vec![
            assign(S, "a", &[0], Some(1)),
            assign(S, "b", &[1], Some(1)),
            poll(4 * S, "a", 0),
            assign(6 * S, "b", &[0], Some(2)),
            poll(12 * S, "b", 1),
        ];
        let g = figures(&events, 10 * S, &[]);
        assert_eq!(g.paused_ms.get("t/0"), Some(&2000.0));
        assert_eq!(g.paused_ms.get("t/1"), Some(&0.0));
        assert_eq!(g.stop_the_world_ms, 0.0);
        assert_eq!(g.rebalances, 1);
    }

    /// RocketMQ 4 members have no generation: each member's own reassignment after its first
    /// assignment is a rebalance (a's revoke), b's first assignment is not.
    #[test]
    fn client_side_rebalances_are_counted_per_member() {
        let events = vec![
            assign(S, "a", &[0, 1], Some(0)),
            revoke(5 * S, "a", &[1], 0),
            assign(5 * S + 500 * MS, "b", &[1], Some(0)),
            poll(10 * S, "a", 0),
            poll(10 * S, "b", 1),
        ];
        let g = figures(&events, 10 * S, &[]);
        assert_eq!(g.rebalances, 1);
        assert_eq!(g.paused_ms.get("t/1"), Some(&500.0));
        assert_eq!(g.paused_ms.get("t/0"), Some(&0.0));
    }

    /// A manual consumer's restart (a new process, no group) pauses its partitions from the
    /// old process's last line to the new one's assignment; nothing rebalances, and neither the
    /// final read nor another consumer whose name starts alike (`c-slow`) counts as an owner.
    #[test]
    fn a_manual_consumers_restart_is_a_pause_without_a_rebalance() {
        let manual = [("c".to_string(), "g1".to_string())];
        let events = vec![
            assign(S, "c-0", &[0, 1], None),
            poll(3 * S, "c-0", 0),
            assign(3 * S + 100 * MS, "c-0-r1", &[0, 1], None),
            assign(4 * S, FINAL_READ_PROCESS, &[0, 1], None),
            assign(4 * S, "c-slow-0", &[0, 1], None),
            poll(10 * S, "c-0-r1", 0),
        ];
        let g = figures(&events, 10 * S, &manual);
        assert_eq!(g.rebalances, 0);
        assert_eq!(g.paused_ms_total, 200.0);
        assert_eq!(g.stop_the_world_ms, 100.0);
    }

    /// The group's window closes with its last member's last line, so that members stopping
    /// one after another at the end of the workload is no pause.
    #[test]
    fn members_stopping_at_the_end_are_not_a_pause() {
        let events = vec![
            assign(S, "a", &[0], Some(1)),
            assign(S, "b", &[1], Some(1)),
            poll(10 * S - 20 * MS, "a", 0),
            poll(10 * S - 10 * MS, "b", 1),
        ];
        let g = figures(&events, 10 * S, &[]);
        assert_eq!(g.paused_ms.get("t/0"), Some(&10.0));
        assert_eq!(g.paused_ms.get("t/1"), Some(&0.0));
        assert_eq!(g.rebalances, 0);
    }

    /// A group's end-to-end latency counts each message at its first delivery to one of the
    /// group's own members: another group reading it earlier does not hide the group's wait.
    #[test]
    fn a_groups_latency_is_its_own_members_first_delivery() {
        let send = |t: u64, kind: EventType| {
            let op = Op::Send {
                id: "x".into(),
                topic: "t".into(),
                partition: 0,
                offset: (kind == EventType::Ok).then_some(0),
                error: None,
            };
            Event::new(t, "p-0", kind, op)
        };
        let other = Op::Assign {
            partitions: parts(&[0]),
        };
        let events = vec![
            assign(S, "a", &[0], Some(1)),
            Event::new(S, "b", EventType::Ok, other).in_group("g2", Some(1)),
            send(2 * S, EventType::Invoke),
            send(2 * S + MS / 2, EventType::Ok),
            poll(2 * S + MS, "b", 0),
            poll(2 * S + 2 * MS, "a", 0),
        ];
        let messages = Messages::index(&events);
        let all = figures_of(&events, &messages, 10 * S, &[]);
        let p50 = |g: &str| {
            all.get(g)
                .map(|f| (f.end_to_end_ms.count, f.end_to_end_ms.p50))
        };
        // Under 2.048 ms the histogram is exact.
        assert_eq!(p50("g1"), Some((1, 2.0)));
        assert_eq!(p50("g2"), Some((1, 1.0)));
    }
}
