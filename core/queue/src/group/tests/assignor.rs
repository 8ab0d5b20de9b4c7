//! The assignors' contracts: every partition of a subscribed topic goes to exactly one
//! subscriber, loads are balanced, and the sticky assignor moves as little as it can.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::group::assignor::{cooperative, Assignment, Assignor, MemberSubscription};
use crate::ids::TopicPartition;

fn tp(t: &str, p: u32) -> TopicPartition {
    TopicPartition::new(t, p)
}

fn group(names: &[&str], topics: &[&str]) -> BTreeMap<String, MemberSubscription> {
    names
        .iter()
        .map(|n| {
            let sub = MemberSubscription {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                owned: BTreeSet::new(),
            };
            (n.to_string(), sub)
        })
        .collect()
}

fn topics(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
    list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

fn loads(a: &Assignment) -> Vec<usize> {
    a.values().map(BTreeSet::len).collect()
}

/// Hands each member what `a` gave it, as the next rebalance's "owned".
fn owning(
    mut members: BTreeMap<String, MemberSubscription>,
    a: &Assignment,
) -> BTreeMap<String, MemberSubscription> {
    for (m, sub) in members.iter_mut() {
        sub.owned = a.get(m).cloned().unwrap_or_default();
    }
    members
}

fn moved(before: &Assignment, after: &Assignment) -> usize {
    after
        .iter()
        .map(|(m, set)| {
            let old = before.get(m).cloned().unwrap_or_default();
            set.difference(&old).count()
        })
        .sum()
}

#[test]
fn range_gives_contiguous_ranges_with_the_remainder_to_the_first_members() {
    let a = Assignor::Range.assign(&group(&["a", "b", "c", "d"], &["t"]), &topics(&[("t", 6)]));
    assert_eq!(a["a"], [tp("t", 0), tp("t", 1)].into());
    assert_eq!(a["b"], [tp("t", 2), tp("t", 3)].into());
    assert_eq!(a["c"], [tp("t", 4)].into());
    assert_eq!(a["d"], [tp("t", 5)].into());
}

#[test]
fn range_skews_across_topics_and_round_robin_does_not() {
    // Range cuts each topic separately, so the first member gets the extra partition of every
    // topic: the known imbalance of Kafka's RangeAssignor.
    let g = group(&["a", "b"], &["t", "u"]);
    let t = topics(&[("t", 3), ("u", 3)]);
    assert_eq!(loads(&Assignor::Range.assign(&g, &t)), vec![4, 2]);
    assert_eq!(loads(&Assignor::RoundRobin.assign(&g, &t)), vec![3, 3]);
}

#[test]
fn sticky_keeps_every_partition_of_the_survivors_when_a_member_leaves() {
    let t = topics(&[("t", 6)]);
    let first = Assignor::Sticky.assign(&group(&["a", "b", "c"], &["t"]), &t);
    let survivors = owning(group(&["a", "c"], &["t"]), &first);
    let second = Assignor::Sticky.assign(&survivors, &t);
    assert!(second["a"].is_superset(&first["a"]));
    assert!(second["c"].is_superset(&first["c"]));
    assert_eq!(loads(&second), vec![3, 3]);
}

#[test]
fn sticky_moves_only_the_new_members_share_when_one_joins() {
    let t = topics(&[("t", 12)]);
    let first = Assignor::Sticky.assign(&group(&["a", "b", "c"], &["t"]), &t);
    let grown = owning(group(&["a", "b", "c", "d"], &["t"]), &first);
    let second = Assignor::Sticky.assign(&grown, &t);
    assert_eq!(loads(&second), vec![3, 3, 3, 3]);
    assert_eq!(moved(&first, &second), 3, "only d's three partitions move");
}

#[test]
fn cooperative_withholds_moving_partitions_until_their_owner_revokes_them() {
    let t = topics(&[("t", 4)]);
    let first = Assignor::Sticky.assign(&group(&["a", "b"], &["t"]), &t);
    let grown = owning(group(&["a", "b", "c"], &["t"]), &first);
    let target = Assignor::Sticky.assign(&grown, &t);
    let (now, follow_up) = cooperative(&grown, &target);
    assert!(follow_up, "c's partition is still owned by a or b");
    assert!(now["c"].is_empty());
    assert_eq!(now["a"], target["a"]);
    assert_eq!(now["b"], target["b"]);
    // Owners revoke what they were not given back; the follow-up rebalance places it.
    let revoked = owning(grown, &now);
    let again = Assignor::Sticky.assign(&revoked, &t);
    let (then, more) = cooperative(&revoked, &again);
    assert!(!more);
    assert_eq!(then, target);
}

fn arb_group(
) -> impl Strategy<Value = (BTreeMap<String, MemberSubscription>, BTreeMap<String, u32>)> {
    let topic_counts = prop::collection::vec(0u32..8, 1..4);
    (topic_counts, 1usize..6)
        .prop_flat_map(|(counts, members)| {
            let names: Vec<String> = (0..counts.len()).map(|i| format!("t{i}")).collect();
            let subs = prop::collection::vec(
                prop::sample::subsequence(names.clone(), 1..=names.len()),
                members,
            );
            (Just(names), Just(counts), subs)
        })
        .prop_map(|(names, counts, subs)| {
            let topics = names.iter().cloned().zip(counts).collect();
            let members = subs
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let sub = MemberSubscription {
                        topics: s.into_iter().collect(),
                        owned: BTreeSet::new(),
                    };
                    (format!("m{i}"), sub)
                })
                .collect();
            (members, topics)
        })
}

fn assert_exact_cover(
    members: &BTreeMap<String, MemberSubscription>,
    topics: &BTreeMap<String, u32>,
    a: &Assignment,
) {
    let mut seen = BTreeSet::new();
    for (m, set) in a {
        for p in set {
            assert!(
                members[m].topics.contains(&p.topic),
                "{m} got {p} unsubscribed"
            );
            assert!(p.partition < topics[&p.topic], "{p} does not exist");
            assert!(seen.insert(p.clone()), "{p} assigned twice");
        }
    }
    for (t, &n) in topics {
        if members.values().any(|s| s.topics.contains(t)) {
            assert_eq!(
                (0..n).filter(|&p| seen.contains(&tp(t, p))).count() as u32,
                n
            );
        }
    }
}

proptest! {
    #[test]
    fn every_assignor_covers_each_partition_exactly_once((members, topics) in arb_group()) {
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            let a = assignor.assign(&members, &topics);
            assert_exact_cover(&members, &topics, &a);
        }
    }

    #[test]
    fn sticky_is_balanced_within_one_when_subscriptions_are_equal(
        n in 1usize..7, parts in 0u32..30, survivors in 1usize..7,
    ) {
        let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let t = topics(&[("t", parts)]);
        let first = Assignor::Sticky.assign(&group(&refs, &["t"]), &t);
        // Then some members leave (sticky input: what each survivor owned).
        let keep = &refs[..survivors.min(n)];
        let second = Assignor::Sticky.assign(&owning(group(keep, &["t"]), &first), &t);
        for a in [&first, &second] {
            let l = loads(a);
            let (lo, hi) = (l.iter().min().copied().unwrap_or(0), l.iter().max().copied().unwrap_or(0));
            prop_assert!(hi - lo <= 1, "loads {l:?}");
        }
    }
}
