//! The classic coordinator's contracts: generations are persisted before anyone sees them,
//! members that go quiet are dropped and fenced, static members come back without a
//! rebalance, and every table is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::group::assignor::{Assignment, Assignor, MemberSubscription};
use crate::group::classic::{
    ClassicCoordinator, GroupLimits, GroupSnapshot, JoinOk, JoinRequest, Output, RebalanceKind,
    Reply,
};
use crate::group::{record, GroupError};
use crate::ids::TopicPartition;
use crate::time::Instant;

const G: &str = "g1";
/// The initial rebalance delay the tests run with.
const DELAY: Duration = Duration::from_millis(50);

fn tp(p: u32) -> TopicPartition {
    TopicPartition::new("orders", p)
}

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

/// A coordinator whose persists commit at once, with the replies collected by request tag.
struct Harness {
    c: ClassicCoordinator<&'static str>,
    replies: BTreeMap<&'static str, Reply>,
    snapshots: Vec<GroupSnapshot>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_limits(GroupLimits {
            initial_rebalance_delay: DELAY,
            ..GroupLimits::default()
        })
    }

    fn with_limits(limits: GroupLimits) -> Harness {
        Harness {
            c: ClassicCoordinator::new(limits),
            replies: BTreeMap::new(),
            snapshots: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.c.poll_output() {
            match o {
                Output::Reply(tag, r) => {
                    self.replies.insert(tag, r);
                }
                Output::Persist { snapshot, replies } => {
                    self.snapshots.push(snapshot);
                    self.replies.extend(replies);
                }
            }
        }
    }

    fn join(&mut self, now: Instant, tag: &'static str, member: &str, instance: Option<&str>) {
        self.join_as(now, tag, member, instance, RebalanceKind::Eager);
    }

    fn join_as(
        &mut self,
        now: Instant,
        tag: &'static str,
        member: &str,
        instance: Option<&str>,
        kind: RebalanceKind,
    ) {
        let req = JoinRequest {
            group: G.to_string(),
            member_id: member.to_string(),
            instance_id: instance.map(str::to_string),
            kind,
            assignor: Assignor::Sticky,
            subscription: MemberSubscription {
                topics: ["orders".to_string()].into(),
                owned: BTreeSet::new(),
            },
            session_timeout_ms: 1000,
            rebalance_timeout_ms: 2000,
        };
        self.c.join(now, req, tag);
        self.drain();
    }

    /// Lets the initial rebalance delay of an empty group pass.
    fn after_delay(&mut self, now: Instant) {
        self.c.handle_timeout(now + DELAY);
        self.drain();
    }

    fn joined(&self, tag: &str) -> JoinOk {
        match self.replies.get(tag) {
            Some(Reply::Join(Ok(ok))) => ok.clone(),
            other => panic!("{tag}: expected a join, got {other:?}"),
        }
    }

    fn sync(
        &mut self,
        now: Instant,
        tag: &'static str,
        member: &str,
        gen: u32,
        a: Option<Assignment>,
    ) {
        self.c.sync(now, G, member, gen, a, tag);
        self.drain();
    }

    fn share(&self, tag: &str) -> Result<BTreeSet<TopicPartition>, GroupError> {
        match self.replies.get(tag) {
            Some(Reply::Sync(r)) => r.clone(),
            other => panic!("{tag}: expected a sync, got {other:?}"),
        }
    }

    /// Runs a full rebalance of `members` (all already joined): the leader assigns with the
    /// sticky assignor and everyone syncs. Returns the generation.
    fn settle(&mut self, now: Instant, members: &[(&'static str, &str)]) -> u32 {
        let (lead_tag, _) = members[0];
        let ok = self.joined(lead_tag);
        let leader_ok = members
            .iter()
            .map(|(t, _)| self.joined(t))
            .find(|o| !o.members.is_empty())
            .expect("the leader's reply lists the members");
        let topics = [("orders".to_string(), 6)].into();
        let a = Assignor::Sticky.assign(&leader_ok.members, &topics);
        for (t, m) in members {
            let sync_tag: &'static str = Box::leak(format!("{t}-sync").into_boxed_str());
            let mine = (*m == ok.leader).then(|| a.clone());
            self.sync(now, sync_tag, m, ok.generation, mine);
        }
        ok.generation
    }
}

#[test]
fn a_generation_is_persisted_before_its_members_hear_of_it() {
    let mut h = Harness::new();
    h.join(at(0), "a", "a", None);
    assert!(
        h.replies.is_empty(),
        "an empty group waits for more members first"
    );
    h.after_delay(at(0));
    let ok = h.joined("a");
    assert_eq!(ok.generation, 1);
    assert_eq!(h.snapshots.last().map(|s| s.generation), Some(1));
    assert_eq!(h.snapshots.last().and_then(|s| s.assignment.clone()), None);
    h.sync(
        at(60),
        "a-sync",
        "a",
        1,
        Some([("a".to_string(), [tp(0)].into())].into()),
    );
    assert_eq!(h.share("a-sync"), Ok([tp(0)].into()));
    let last = h.snapshots.last().expect("assignment persisted");
    assert_eq!(last.assignment.as_ref().map(|a| a["a"].len()), Some(1));
}

#[test]
fn a_new_member_makes_everyone_rejoin_and_bumps_the_generation() {
    let mut h = Harness::new();
    h.join(at(0), "a", "a", None);
    h.after_delay(at(0));
    let g1 = h.settle(at(50), &[("a", "a")]);
    h.join(at(10), "b", "b", None);
    assert!(!h.replies.contains_key("b"), "b waits for a to rejoin");
    assert_eq!(
        h.c.heartbeat(at(20), G, "a", g1),
        Err(GroupError::RebalanceInProgress)
    );
    h.join(at(30), "a2", "a", None);
    let g2 = h.settle(at(30), &[("a2", "a"), ("b", "b")]);
    assert_eq!(g2, g1 + 1);
    let (a, b) = (h.share("a2-sync").unwrap(), h.share("b-sync").unwrap());
    assert_eq!((a.len(), b.len()), (3, 3));
    assert!(a.is_disjoint(&b));
}

#[test]
fn a_member_that_stops_heartbeating_is_dropped_and_its_late_commit_refused() {
    let mut h = Harness::new();
    h.join(at(0), "a", "a", None);
    h.join(at(0), "b", "b", None);
    h.after_delay(at(0));
    let g1 = h.settle(at(50), &[("a", "a"), ("b", "b")]);
    let zombie_share = h.share("b-sync").unwrap();
    let p = zombie_share.iter().next().cloned().unwrap();
    // a keeps heartbeating; b pauses past its 1 s session.
    for t in (300..=1500).step_by(300) {
        let _ = h.c.heartbeat(at(t), G, "a", g1);
        h.c.handle_timeout(at(t));
        h.drain();
    }
    assert_eq!(
        h.c.heartbeat(at(1500), G, "a", g1),
        Err(GroupError::RebalanceInProgress)
    );
    h.join(at(1500), "a2", "a", None);
    let g2 = h.settle(at(1500), &[("a2", "a")]);
    assert_eq!(
        h.share("a2-sync").unwrap().len(),
        6,
        "a owns everything now"
    );
    // The zombie wakes up and commits as if nothing happened.
    assert_eq!(
        h.c.check_commit(G, Some(("b", g1)), &p),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        h.c.heartbeat(at(1600), G, "b", g1),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(h.c.check_commit(G, Some(("a", g2)), &p), Ok(()));
    assert_eq!(
        h.c.check_commit(G, Some(("a", g1)), &p),
        Err(GroupError::IllegalGeneration),
        "a stale generation is fenced even for a live member"
    );
}

#[test]
fn commits_outside_the_members_assignment_or_without_a_member_are_refused() {
    let mut h = Harness::new();
    h.join(at(0), "a", "a", None);
    h.join(at(0), "b", "b", None);
    h.after_delay(at(0));
    let g = h.settle(at(50), &[("a", "a"), ("b", "b")]);
    let theirs = h.share("b-sync").unwrap().into_iter().next().unwrap();
    assert_eq!(
        h.c.check_commit(G, Some(("a", g)), &theirs),
        Err(GroupError::PartitionNotAssigned)
    );
    assert_eq!(
        h.c.check_commit(G, None, &theirs),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(h.c.check_commit("manual", None, &theirs), Ok(()));
}

#[test]
fn a_static_member_that_restarts_within_its_session_keeps_its_partitions_without_a_rebalance() {
    let mut h = Harness::new();
    h.join(at(0), "a", "a-1", Some("host-a"));
    h.join(at(0), "b", "b-1", Some("host-b"));
    h.after_delay(at(0));
    let g = h.settle(at(50), &[("a", "a-1"), ("b", "b-1")]);
    let before = h.share("b-sync").unwrap();
    let persisted = h.snapshots.len();
    // b restarts: a new process, a new member id, the same instance id.
    h.join(at(500), "b2", "b-2", Some("host-b"));
    let ok = h.joined("b2");
    assert_eq!(ok.generation, g, "no new generation");
    assert_eq!(
        h.c.heartbeat(at(600), G, "a-1", g),
        Ok(()),
        "a never rebalances"
    );
    h.sync(at(600), "b2-sync", "b-2", g, None);
    assert_eq!(h.share("b2-sync"), Ok(before.clone()));
    assert_eq!(
        h.snapshots.len(),
        persisted + 1,
        "the new member id is persisted"
    );
    let p = before.into_iter().next().unwrap();
    assert_eq!(
        h.c.check_commit(G, Some(("b-1", g)), &p),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn stragglers_are_dropped_when_the_rebalance_timeout_passes() {
    let mut h = Harness::new();
    h.join(at(0), "a", "a", None);
    h.join(at(0), "b", "b", None);
    h.after_delay(at(0));
    h.settle(at(50), &[("a", "a"), ("b", "b")]);
    h.join(at(100), "a2", "a", None);
    // b keeps its session alive with heartbeats but never rejoins.
    for t in (200..=2200).step_by(200) {
        let _ = h.c.heartbeat(at(t), G, "b", 1);
        h.c.handle_timeout(at(t));
        h.drain();
    }
    let ok = h.joined("a2");
    assert_eq!(ok.generation, 2);
    assert_eq!(ok.members.keys().collect::<Vec<_>>(), vec!["a"]);
}

#[test]
fn a_failover_mid_rebalance_never_reuses_a_generation() {
    let mut h = Harness::new();
    h.join(at(0), "a", "a", None);
    h.join(at(0), "b", "b", None);
    h.after_delay(at(0));
    let g = h.settle(at(50), &[("a", "a"), ("b", "b")]);
    h.join(at(100), "c", "c", None);
    h.join(at(110), "a2", "a", None);
    h.join(at(120), "b2", "b", None);
    // The join phase completed (generation g+1 persisted) but the coordinator dies before the
    // leader's SyncGroup: the new coordinator replays the snapshots.
    let mid = h.snapshots.last().cloned().unwrap();
    assert_eq!((mid.generation, mid.assignment.is_none()), (g + 1, true));
    let mut new = Harness::new();
    new.c.load(at(200), [mid]);
    new.drain();
    // A member that heard of g+1 syncs with it: told to rejoin; the next generation is new.
    new.sync(at(210), "a-sync", "a", g + 1, None);
    assert_eq!(new.share("a-sync"), Err(GroupError::RebalanceInProgress));
    new.join(at(220), "a3", "a", None);
    new.join(at(220), "b3", "b", None);
    new.join(at(220), "c3", "c", None);
    assert_eq!(new.joined("a3").generation, g + 2);
}

#[test]
fn a_stable_group_resumes_after_failover_with_its_assignment() {
    let mut h = Harness::new();
    h.join(at(0), "a", "a", None);
    h.after_delay(at(0));
    let g = h.settle(at(50), &[("a", "a")]);
    let last = h.snapshots.last().cloned().unwrap();
    let mut new = Harness::new();
    new.c.load(at(5000), [last]);
    assert_eq!(new.c.heartbeat(at(5100), G, "a", g), Ok(()));
    assert_eq!(new.c.check_commit(G, Some(("a", g)), &tp(3)), Ok(()));
}

#[test]
fn limits_and_protocol_mismatches_get_their_own_errors() {
    let mut h = Harness::with_limits(GroupLimits {
        groups_max: 1,
        members_per_group_max: 1,
        initial_rebalance_delay: DELAY,
        ..GroupLimits::default()
    });
    h.join(at(0), "a", "a", None);
    h.join(at(0), "b", "b", None);
    assert_eq!(
        h.replies.get("b"),
        Some(&Reply::Join(Err(GroupError::GroupFull)))
    );
    h.join_as(at(0), "x", "a", None, RebalanceKind::Cooperative);
    assert_eq!(
        h.replies.get("x"),
        Some(&Reply::Join(Err(GroupError::InconsistentProtocol)))
    );
    let other = JoinRequest {
        group: "g2".to_string(),
        member_id: "z".to_string(),
        instance_id: None,
        kind: RebalanceKind::Eager,
        assignor: Assignor::Sticky,
        subscription: MemberSubscription::default(),
        session_timeout_ms: 1000,
        rebalance_timeout_ms: 1000,
    };
    h.c.join(at(0), other.clone(), "g2");
    h.drain();
    assert_eq!(
        h.replies.get("g2"),
        Some(&Reply::Join(Err(GroupError::GroupsFull)))
    );
    let mut tiny = Harness::new();
    tiny.c.join(
        at(0),
        JoinRequest {
            session_timeout_ms: 1,
            ..other
        },
        "t",
    );
    tiny.drain();
    assert_eq!(
        tiny.replies.get("t"),
        Some(&Reply::Join(Err(GroupError::InvalidSessionTimeout)))
    );
}

#[test]
fn snapshots_round_trip_as_offsets_records_and_replay_keeps_them_apart_from_commits() {
    let mut h = Harness::new();
    h.join(at(0), "a", "a", Some("host-a"));
    h.after_delay(at(0));
    h.settle(at(50), &[("a", "a")]);
    let s = h.snapshots.last().cloned().unwrap();
    let s = record::Snapshot::Classic(s);
    let batch = record::encode(&s, 7);
    let records = crate::log::batch::records(&batch).unwrap();
    assert_eq!(
        record::decode(&records[0].key, &records[0].value),
        Some(s.clone())
    );
    let mut store = crate::broker::offsets::OffsetStore::default();
    store
        .apply(&[crate::log::batch::stamp(&batch, 0, 1)])
        .unwrap();
    assert_eq!(store.get("a", &tp(0)), None, "a snapshot is no commit");
    assert_eq!(store.group_snapshots().collect::<Vec<_>>(), vec![&s]);
}

/// Kafka's `GroupCoordinator`: a known member whose join answer it never saw joins again with
/// the same subscription; it gets the current generation back and nothing rebalances.
#[test]
fn a_retried_join_of_an_unchanged_member_gets_the_current_generation() {
    let mut h = Harness::new();
    h.join(at(0), "a", "a", None);
    h.join(at(0), "b", "b", None);
    h.after_delay(at(0));
    let g1 = h.settle(at(50), &[("a", "a"), ("b", "b")]);
    let persisted = h.snapshots.len();
    h.join(at(60), "b-again", "b", None);
    let ok = h.joined("b-again");
    assert_eq!(ok.generation, g1);
    assert!(ok.members.is_empty(), "b is not the leader");
    assert_eq!(h.snapshots.len(), persisted, "no new generation");
    assert_eq!(h.c.heartbeat(at(70), G, "a", g1), Ok(()));
}
