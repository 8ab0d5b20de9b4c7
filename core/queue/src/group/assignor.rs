//! Partition assignors: who in a group reads which partition.
//!
//! An assignor is a pure function of the group's members (their subscriptions and what each
//! owns now) and the partitions that exist. It runs wherever the protocol says: in the group
//! leader for Kafka's classic protocol, in the coordinator for the broker-side protocol, in
//! every member for the client-side periodic rebalance. Members and partitions are ordered
//! (`BTreeMap`, `BTreeSet`), so every place that runs it computes the same answer.
//!
//! - [`Assignor::Range`]: Kafka's `RangeAssignor`. Per topic, partitions in order are cut into
//!   contiguous ranges, one per subscribed member in member order; the first
//!   `partitions % members` members get one more.
//! - [`Assignor::RoundRobin`]: Kafka's `RoundRobinAssignor`. Every partition of every topic,
//!   in order, goes to the next subscribed member in turn.
//! - [`Assignor::Sticky`]: Kafka's `StickyAssignor` / `CooperativeStickyAssignor` (KIP-54,
//!   KIP-341, KIP-429): as balanced as round robin (member loads differ by at most one among
//!   members with the same subscription), moving as few owned partitions as it can. Under the
//!   cooperative protocol [`cooperative`] then withholds every partition that is moving away
//!   from a member that still owns it, to be assigned in a follow-up rebalance once revoked.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::TopicPartition;

/// A member's id within its group.
pub type MemberId = String;

/// Who reads what.
pub type Assignment = BTreeMap<MemberId, BTreeSet<TopicPartition>>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignor {
    Range,
    RoundRobin,
    #[default]
    Sticky,
}

/// What an assignor knows of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSubscription {
    pub topics: BTreeSet<String>,
    /// The partitions the member holds now (only the sticky assignor looks).
    pub owned: BTreeSet<TopicPartition>,
}

impl Assignor {
    /// Assigns every partition of every subscribed topic (`topics`: name → partition count) to
    /// exactly one member subscribed to its topic. Partitions of a topic nobody subscribes to
    /// stay unassigned. Every member appears in the result, perhaps with nothing.
    pub fn assign(
        self,
        members: &BTreeMap<MemberId, MemberSubscription>,
        topics: &BTreeMap<String, u32>,
    ) -> Assignment {
        let mut out: Assignment = members
            .keys()
            .map(|m| (m.clone(), BTreeSet::new()))
            .collect();
        match self {
            Assignor::Range => range(members, topics, &mut out),
            Assignor::RoundRobin => round_robin(members, topics, &mut out),
            Assignor::Sticky => sticky(members, topics, &mut out),
        }
        out
    }
}

fn subscribers<'a>(
    members: &'a BTreeMap<MemberId, MemberSubscription>,
    topic: &'a str,
) -> impl Iterator<Item = &'a MemberId> + 'a {
    members
        .iter()
        .filter(move |(_, s)| s.topics.contains(topic))
        .map(|(m, _)| m)
}

/// Every existing partition of a subscribed topic, in order.
fn all_partitions(
    members: &BTreeMap<MemberId, MemberSubscription>,
    topics: &BTreeMap<String, u32>,
) -> Vec<TopicPartition> {
    topics
        .iter()
        .filter(|(t, _)| subscribers(members, t).next().is_some())
        .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect()
}

fn range(
    members: &BTreeMap<MemberId, MemberSubscription>,
    topics: &BTreeMap<String, u32>,
    out: &mut Assignment,
) {
    for (topic, &count) in topics {
        let subs: Vec<&MemberId> = subscribers(members, topic).collect();
        if subs.is_empty() {
            continue;
        }
        let n = subs.len() as u32;
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subs.into_iter().enumerate() {
            let take = each + u32::from((i as u32) < extra);
            let set = out.entry(m.clone()).or_default();
            set.extend((next..next + take).map(|p| TopicPartition::new(topic.clone(), p)));
            next += take;
        }
    }
}

fn round_robin(
    members: &BTreeMap<MemberId, MemberSubscription>,
    topics: &BTreeMap<String, u32>,
    out: &mut Assignment,
) {
    let order: Vec<&MemberId> = members.keys().collect();
    let mut turn = 0usize;
    for tp in all_partitions(members, topics) {
        // The next member in the circle that subscribes to this topic.
        for step in 0..order.len() {
            let m = order[(turn + step) % order.len()];
            if members[m].topics.contains(&tp.topic) {
                out.entry(m.clone()).or_default().insert(tp);
                turn = (turn + step + 1) % order.len();
                break;
            }
        }
    }
}

/// Balanced and sticky: keep what each member owns while it may, give the rest to the least
/// loaded eligible member, then move partitions from the most to the least loaded eligible
/// member until no move narrows the gap.
fn sticky(
    members: &BTreeMap<MemberId, MemberSubscription>,
    topics: &BTreeMap<String, u32>,
    out: &mut Assignment,
) {
    let partitions = all_partitions(members, topics);
    let eligible = |m: &MemberId, tp: &TopicPartition| members[m].topics.contains(&tp.topic);
    // The most a member should hold: an even share of what it can read, rounded up.
    let quota = |m: &MemberId| -> usize {
        let readable = partitions.iter().filter(|tp| eligible(m, tp)).count();
        let sharing = members
            .keys()
            .filter(|o| {
                partitions
                    .iter()
                    .any(|tp| eligible(m, tp) && eligible(o, tp))
            })
            .count()
            .max(1);
        readable.div_ceil(sharing)
    };
    keep_owned(members, &partitions, &eligible, &quota, out);
    place_unowned(&partitions, members, &eligible, out);
    rebalance(members, &eligible, out);
}

/// Each member keeps the owned partitions that still exist, that it still subscribes to and
/// that no earlier member (in member order) claimed, up to its quota.
fn keep_owned(
    members: &BTreeMap<MemberId, MemberSubscription>,
    partitions: &[TopicPartition],
    eligible: &impl Fn(&MemberId, &TopicPartition) -> bool,
    quota: &impl Fn(&MemberId) -> usize,
    out: &mut Assignment,
) {
    let exists: BTreeSet<&TopicPartition> = partitions.iter().collect();
    let mut claimed = BTreeSet::new();
    for (m, sub) in members {
        let limit = quota(m);
        let set = out.entry(m.clone()).or_default();
        for tp in &sub.owned {
            if set.len() >= limit {
                break;
            }
            if exists.contains(tp) && eligible(m, tp) && claimed.insert(tp.clone()) {
                set.insert(tp.clone());
            }
        }
    }
}

fn place_unowned(
    partitions: &[TopicPartition],
    members: &BTreeMap<MemberId, MemberSubscription>,
    eligible: &impl Fn(&MemberId, &TopicPartition) -> bool,
    out: &mut Assignment,
) {
    let taken: BTreeSet<TopicPartition> = out.values().flatten().cloned().collect();
    for tp in partitions.iter().filter(|tp| !taken.contains(*tp)) {
        let least = members
            .keys()
            .filter(|m| eligible(m, tp))
            .min_by_key(|m| (out.get(*m).map_or(0, BTreeSet::len), (*m).clone()));
        if let Some(m) = least {
            out.entry(m.clone()).or_default().insert(tp.clone());
        }
    }
}

/// Moves one partition at a time from a most loaded member to a least loaded eligible one
/// while the two differ by more than one. Each move lowers the sum of squared loads, so this
/// ends; the bound on rounds is a guard, not a tuning knob.
fn rebalance(
    members: &BTreeMap<MemberId, MemberSubscription>,
    eligible: &impl Fn(&MemberId, &TopicPartition) -> bool,
    out: &mut Assignment,
) {
    let total: usize = out.values().map(BTreeSet::len).sum();
    for _ in 0..=total.saturating_mul(members.len()) {
        let Some((from, tp, to)) = best_move(eligible, out) else {
            return;
        };
        if let Some(set) = out.get_mut(&from) {
            set.remove(&tp);
        }
        out.entry(to).or_default().insert(tp);
    }
}

/// The move from the most loaded member (its highest partition that someone lighter by two or
/// more can read) to the lightest such member, if any.
fn best_move(
    eligible: &impl Fn(&MemberId, &TopicPartition) -> bool,
    out: &Assignment,
) -> Option<(MemberId, TopicPartition, MemberId)> {
    let mut by_load: Vec<(&MemberId, usize)> = out.iter().map(|(m, s)| (m, s.len())).collect();
    by_load.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for &(from, load) in &by_load {
        for tp in out[from].iter().rev() {
            let to = by_load
                .iter()
                .filter(|(m, l)| *m != from && l + 1 < load && eligible(m, tp))
                .min_by_key(|(m, l)| (*l, (*m).clone()));
            if let Some((to, _)) = to {
                return Some((from.clone(), tp.clone(), (*to).clone()));
            }
        }
    }
    None
}

/// KIP-429's rule for one cooperative rebalance: from the `target` assignment, withhold every
/// partition that another member still owns (it must revoke it first). Returns the assignment
/// to hand out now and whether a follow-up rebalance is needed to place what was withheld.
pub fn cooperative(
    members: &BTreeMap<MemberId, MemberSubscription>,
    target: &Assignment,
) -> (Assignment, bool) {
    let owner: BTreeMap<&TopicPartition, &MemberId> = members
        .iter()
        .flat_map(|(m, s)| s.owned.iter().map(move |tp| (tp, m)))
        .collect();
    let mut withheld = false;
    let now = target
        .iter()
        .map(|(m, set)| {
            let keep: BTreeSet<TopicPartition> = set
                .iter()
                .filter(|tp| match owner.get(tp) {
                    Some(o) if *o != m => {
                        withheld = true;
                        false
                    }
                    _ => true,
                })
                .cloned()
                .collect();
            (m.clone(), keep)
        })
        .collect();
    (now, withheld)
}
