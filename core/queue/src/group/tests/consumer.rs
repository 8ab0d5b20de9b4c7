//! The broker-side protocol's contracts (KIP-848): members reconcile one at a time with no
//! group-wide barrier, a partition never has two owners, members that stay keep fetching
//! through a rebalance, and commits are fenced by member epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use crate::group::assignor::Assignor;
use crate::group::classic::GroupLimits;
use crate::group::consumer::{
    ConsumerCoordinator, ConsumerGroupSnapshot, Heartbeat, HeartbeatOk, Output, JOIN_EPOCH,
};
use crate::group::GroupError;
use crate::ids::TopicPartition;
use crate::time::Instant;

const G: &str = "g1";

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

/// A coordinator whose persists commit at once, and members that do what they are told, the
/// way a real client does: a partition taken away is let go (fetching stopped, offsets
/// committed) before the next heartbeat, which reports it gone.
struct Harness {
    c: ConsumerCoordinator<()>,
    /// Each member's epoch and what its last reply gave it.
    members: BTreeMap<String, (u32, BTreeSet<TopicPartition>)>,
    /// What each member is still fetching: its last assignment plus, until its next heartbeat,
    /// what that reply took away.
    holding: BTreeMap<String, BTreeSet<TopicPartition>>,
    snapshots: Vec<ConsumerGroupSnapshot>,
}

impl Harness {
    fn new() -> Harness {
        let topics = [("orders".to_string(), 6)].into();
        Harness {
            c: ConsumerCoordinator::new(GroupLimits::default(), topics),
            members: BTreeMap::new(),
            holding: BTreeMap::new(),
            snapshots: Vec::new(),
        }
    }

    fn beat(&mut self, now: Instant, member: &str) -> Result<HeartbeatOk, GroupError> {
        let (epoch, assigned) = self.members.get(member).cloned().unwrap_or_default();
        // Let go of what the last reply took away, then report what is left.
        self.holding.insert(member.to_string(), assigned.clone());
        self.beat_as(now, member, epoch, assigned, None)
    }

    fn beat_as(
        &mut self,
        now: Instant,
        member: &str,
        epoch: u32,
        owned: BTreeSet<TopicPartition>,
        instance: Option<&str>,
    ) -> Result<HeartbeatOk, GroupError> {
        let hb = Heartbeat {
            group: G.to_string(),
            member_id: member.to_string(),
            member_epoch: epoch,
            instance_id: instance.map(str::to_string),
            assignor: Assignor::Sticky,
            topics: ["orders".to_string()].into(),
            owned,
            session_timeout_ms: 1000,
            rebalance_timeout_ms: 2000,
        };
        self.c.heartbeat(now, hb, ());
        let mut result = Err(GroupError::NotCoordinator);
        while let Some(o) = self.c.poll_output() {
            match o {
                Output::Reply((), r) => result = r,
                Output::Persist { snapshot, replies } => {
                    self.snapshots.push(snapshot);
                    for ((), r) in replies {
                        result = r;
                    }
                }
            }
        }
        if let Ok(ok) = &result {
            self.members
                .insert(member.to_string(), (ok.member_epoch, ok.assignment.clone()));
            let holding = self.holding.entry(member.to_string()).or_default();
            holding.extend(ok.assignment.iter().cloned());
        }
        result
    }

    fn join(&mut self, now: Instant, member: &str) -> HeartbeatOk {
        self.members.remove(member);
        self.holding.remove(member);
        self.beat_as(now, member, JOIN_EPOCH, BTreeSet::new(), None)
            .expect("join")
    }

    fn held(&self, member: &str) -> BTreeSet<TopicPartition> {
        self.members
            .get(member)
            .map(|m| m.1.clone())
            .unwrap_or_default()
    }

    fn drain(&mut self) {
        while let Some(o) = self.c.poll_output() {
            if let Output::Persist { snapshot, .. } = o {
                self.snapshots.push(snapshot);
            }
        }
    }
}

#[test]
fn a_joiner_gets_its_share_only_after_the_owner_lets_go_and_the_owner_never_stops() {
    let mut h = Harness::new();
    assert_eq!(h.join(at(0), "a").assignment.len(), 6);
    assert!(
        h.join(at(10), "b").assignment.is_empty(),
        "a still holds everything"
    );
    let a_before = h.held("a");
    // a's next heartbeat takes three partitions back; a keeps fetching the other three.
    let a = h.beat(at(20), "a").unwrap();
    assert_eq!(a.assignment.len(), 3);
    assert!(a.assignment.is_subset(&a_before));
    assert!(
        h.beat(at(30), "b").unwrap().assignment.is_empty(),
        "not free until a reports"
    );
    // a reports it let them go (it owns only its three now): b may take them.
    h.beat(at(40), "a").unwrap();
    let b = h.beat(at(50), "b").unwrap();
    assert_eq!(b.assignment.len(), 3);
    assert!(b.assignment.is_disjoint(&h.held("a")));
    assert_eq!(
        h.members["a"].0, h.members["b"].0,
        "both reached the group's epoch"
    );
}

#[test]
fn a_zombie_is_dropped_at_its_session_timeout_and_its_commit_refused() {
    let mut h = Harness::new();
    h.join(at(0), "a");
    h.join(at(0), "b");
    for t in [100, 200, 300, 400] {
        for m in ["a", "b"] {
            h.beat(at(t), m).unwrap();
        }
    }
    let (b_epoch, b_held) = h.members["b"].clone();
    let p = b_held.iter().next().cloned().unwrap();
    // b pauses past its session; a carries on.
    for t in (500..=1600).step_by(100) {
        h.beat(at(t), "a").unwrap();
        h.c.handle_timeout(at(t));
        h.drain();
    }
    assert_eq!(h.held("a").len(), 6);
    assert_eq!(
        h.c.check_commit(G, Some(("b", b_epoch)), &p),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(h.beat(at(1700), "b"), Err(GroupError::UnknownMemberId));
    let a_epoch = h.members["a"].0;
    assert_eq!(h.c.check_commit(G, Some(("a", a_epoch)), &p), Ok(()));
    assert_eq!(
        h.c.check_commit(G, Some(("a", a_epoch - 1)), &p),
        Err(GroupError::IllegalGeneration)
    );
}

#[test]
fn a_member_that_keeps_a_revoked_partition_past_its_rebalance_timeout_is_dropped() {
    let mut h = Harness::new();
    h.join(at(0), "a");
    let all = h.held("a");
    h.join(at(10), "b");
    // a heartbeats but keeps reporting all six as owned: it never lets go.
    for t in (100..=2500).step_by(100) {
        let _ = h.beat_as(at(t), "a", h.members["a"].0, all.clone(), None);
        let _ = h.beat(at(t), "b");
        h.c.handle_timeout(at(t));
        h.drain();
    }
    assert_eq!(h.beat(at(2600), "a"), Err(GroupError::UnknownMemberId));
    assert_eq!(h.held("b").len(), 6);
}

#[test]
fn a_static_member_back_under_a_new_id_keeps_its_partitions_and_epoch() {
    let mut h = Harness::new();
    let a = h
        .beat_as(at(0), "a-1", JOIN_EPOCH, BTreeSet::new(), Some("host-a"))
        .unwrap();
    let again = h
        .beat_as(at(500), "a-2", JOIN_EPOCH, BTreeSet::new(), Some("host-a"))
        .unwrap();
    assert_eq!(
        (again.member_epoch, &again.assignment),
        (a.member_epoch, &a.assignment)
    );
    assert_eq!(h.beat(at(600), "a-1"), Err(GroupError::UnknownMemberId));
}

#[test]
fn a_new_coordinator_resumes_from_the_last_snapshot() {
    let mut h = Harness::new();
    h.join(at(0), "a");
    h.join(at(0), "b");
    for t in [100, 200] {
        h.beat(at(t), "a").unwrap();
        h.beat(at(t), "b").unwrap();
    }
    let topics = [("orders".to_string(), 6)].into();
    let mut new = ConsumerCoordinator::<()>::new(GroupLimits::default(), topics);
    new.load(at(300), h.snapshots.last().cloned());
    for m in ["a", "b"] {
        let (epoch, held) = h.members[m].clone();
        assert_eq!(new.member_state(G, m), Some((epoch, held.clone())));
        let p = held.iter().next().cloned().unwrap();
        assert_eq!(new.check_commit(G, Some((m, epoch)), &p), Ok(()));
    }
}

#[derive(Debug, Clone)]
enum Step {
    Join(usize),
    Beat(usize),
    Leave(usize),
    Tick(u64),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..4).prop_map(Step::Join),
        (0usize..4).prop_map(Step::Beat),
        (0usize..4).prop_map(Step::Beat),
        (0usize..4).prop_map(Step::Beat),
        (0usize..4).prop_map(Step::Leave),
        (1u64..700).prop_map(Step::Tick),
    ]
}

proptest! {
    /// KIP-848's safety property: at no time do two members hold one partition, counting what
    /// a member was told to give up and has not yet reported gone.
    #[test]
    fn no_partition_ever_has_two_owners(steps in prop::collection::vec(arb_step(), 1..80)) {
        let mut h = Harness::new();
        let mut now = 0;
        for step in steps {
            match step {
                Step::Join(i) => { let _ = h.join(at(now), &format!("m{i}")); }
                Step::Beat(i) => {
                    let id = format!("m{i}");
                    if h.members.contains_key(&id) && h.beat(at(now), &id).is_err() {
                        h.members.remove(&id);
                        h.holding.remove(&id);
                    }
                }
                Step::Leave(i) => {
                    let id = format!("m{i}");
                    h.holding.remove(&id);
                    if h.members.remove(&id).is_some() {
                        let _ = h.c.leave(at(now), G, &id);
                        h.drain();
                    }
                }
                Step::Tick(ms) => {
                    now += ms;
                    h.c.handle_timeout(at(now));
                    h.drain();
                    // A dropped member is a zombie: it is fenced by epoch, not by ownership.
                    h.members.retain(|id, _| h.c.member_state(G, id).is_some());
                    let live = &h.members;
                    h.holding.retain(|id, _| live.contains_key(id));
                }
            }
            let mut seen = BTreeSet::new();
            for held in h.holding.values() {
                for p in held {
                    prop_assert!(seen.insert(p.clone()), "{p} held twice: {:?}", h.holding);
                }
            }
        }
    }
}
