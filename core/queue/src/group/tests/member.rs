//! Members and a coordinator together, in simulated time with instant delivery: what each
//! protocol does to a group when a member joins, leaves, restarts or stops polling. The
//! applications revoke at once (commit, then `revoked`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::group::assignor::Assignor;
use crate::group::classic::{GroupLimits, RebalanceKind};
use crate::group::coordinator::{GroupCoordinator, Output};
use crate::group::member::{GroupMember, MemberConfig, MemberEvent, MemberProtocol};
use crate::ids::TopicPartition;
use crate::time::Instant;

const TICK_MS: u64 = 10;

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

struct Group {
    coordinator: GroupCoordinator<usize>,
    members: Vec<Option<GroupMember>>,
    /// Every event each member saw, in order.
    seen: Vec<Vec<MemberEvent>>,
    /// Members whose application has stopped polling (stuck in processing).
    stuck: BTreeSet<usize>,
    now: u64,
    periodic: bool,
    /// The most partitions read by two members at once, at any tick.
    max_doubly_owned: usize,
}

fn config(protocol: MemberProtocol, instance: Option<String>) -> MemberConfig {
    MemberConfig {
        group: "g1".to_string(),
        protocol,
        assignor: Assignor::Sticky,
        instance_id: instance,
        topics: ["orders".to_string()].into(),
        session_timeout_ms: 1000,
        heartbeat_interval_ms: 100,
        max_poll_interval_ms: 2000,
        retry_backoff_ms: 50,
    }
}

impl Group {
    fn new() -> Group {
        let limits = GroupLimits {
            initial_rebalance_delay: Duration::from_millis(100),
            ..GroupLimits::default()
        };
        Group {
            coordinator: GroupCoordinator::new(limits, [("orders".to_string(), 6)].into()),
            members: Vec::new(),
            seen: Vec::new(),
            stuck: BTreeSet::new(),
            now: 0,
            periodic: false,
            max_doubly_owned: 0,
        }
    }

    fn add(&mut self, protocol: MemberProtocol, instance: Option<&str>) -> usize {
        self.periodic |= matches!(protocol, MemberProtocol::ClientPeriodic { .. });
        let i = self.members.len();
        let mut m = GroupMember::new(
            config(protocol, instance.map(str::to_string)),
            &format!("c{i}"),
            at(self.now),
        );
        m.set_topic_partitions([("orders".to_string(), 6)].into());
        self.members.push(Some(m));
        self.seen.push(Vec::new());
        i
    }

    /// The process dies: no leave, its session has to expire.
    fn crash(&mut self, i: usize) {
        self.members[i] = None;
    }

    fn close(&mut self, i: usize) {
        if let Some(m) = self.members[i].as_mut() {
            m.close();
        }
    }

    fn run_for(&mut self, ms: u64) {
        for _ in 0..ms / TICK_MS {
            self.now += TICK_MS;
            self.step();
            // Live members never read one partition at once, whatever the coordinated
            // protocol; client-side rebalancing is the exception on purpose.
            if !self.periodic {
                self.assert_exclusive();
            }
            self.max_doubly_owned = self.max_doubly_owned.max(self.doubly_owned());
        }
    }

    fn step(&mut self) {
        let now = at(self.now);
        self.coordinator.handle_timeout(now);
        self.deliver(now);
        for i in 0..self.members.len() {
            let Some(m) = self.members[i].as_mut() else {
                continue;
            };
            if !self.stuck.contains(&i) {
                m.polled(now);
            }
            m.handle_timeout(now);
            while let Some(e) = m.poll_event() {
                if matches!(e, MemberEvent::Revoke { .. }) {
                    m.revoked(now);
                }
                self.seen[i].push(e);
            }
            if let Some(req) = m.poll_request(now) {
                self.coordinator.handle_request(now, req, i);
                self.deliver(now);
            }
        }
    }

    fn deliver(&mut self, now: Instant) {
        while let Some(o) = self.coordinator.poll_output() {
            let replies = match o {
                Output::Reply(r, a) => vec![(r, a)],
                Output::Persist { replies, .. } => replies,
            };
            for (i, a) in replies {
                if let Some(m) = self.members.get_mut(i).and_then(Option::as_mut) {
                    m.handle_response(now, a);
                }
            }
        }
    }

    fn owned(&self, i: usize) -> BTreeSet<TopicPartition> {
        self.members[i]
            .as_ref()
            .map(|m| m.owned().clone())
            .unwrap_or_default()
    }

    fn loads(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].is_some())
            .map(|i| self.owned(i).len())
            .collect()
    }

    fn revoked_count(&self, i: usize) -> usize {
        self.seen[i]
            .iter()
            .map(|e| match e {
                MemberEvent::Revoke { partitions } => partitions.len(),
                _ => 0,
            })
            .sum()
    }

    /// Partitions two live members read at once, now.
    fn doubly_owned(&self) -> usize {
        let mut seen = BTreeSet::new();
        let mut twice = 0;
        for i in 0..self.members.len() {
            for p in self.owned(i) {
                if !seen.insert(p) {
                    twice += 1;
                }
            }
        }
        twice
    }

    fn assert_exclusive(&self) {
        let mut seen = BTreeMap::new();
        for i in 0..self.members.len() {
            for p in self.owned(i) {
                if let Some(j) = seen.insert(p.clone(), i) {
                    panic!("{p} owned by {j} and {i}");
                }
            }
        }
    }
}

const PROTOCOLS: [MemberProtocol; 3] = [
    MemberProtocol::Classic(RebalanceKind::Eager),
    MemberProtocol::Classic(RebalanceKind::Cooperative),
    MemberProtocol::Consumer,
];

#[test]
fn every_protocol_spreads_six_partitions_over_three_members() {
    for protocol in PROTOCOLS {
        let mut g = Group::new();
        for _ in 0..3 {
            g.add(protocol, None);
        }
        g.run_for(2000);
        assert_eq!(g.loads(), vec![2, 2, 2], "{protocol:?}");
        g.assert_exclusive();
    }
}

#[test]
fn a_joiner_stops_everyone_under_eager_and_only_the_movers_otherwise() {
    for protocol in PROTOCOLS {
        let mut g = Group::new();
        g.add(protocol, None);
        g.add(protocol, None);
        g.run_for(2000);
        let before: Vec<usize> = (0..2).map(|i| g.revoked_count(i)).collect();
        g.add(protocol, None);
        g.run_for(3000);
        assert_eq!(g.loads(), vec![2, 2, 2], "{protocol:?}");
        let revoked: usize = (0..2).map(|i| g.revoked_count(i) - before[i]).sum();
        match protocol {
            // Both old members gave up all three of theirs.
            MemberProtocol::Classic(RebalanceKind::Eager) => assert_eq!(revoked, 6),
            // Only the two partitions that moved to the joiner.
            _ => assert_eq!(revoked, 2, "{protocol:?}"),
        }
    }
}

#[test]
fn a_crashed_members_partitions_move_after_its_session_expires() {
    for protocol in PROTOCOLS {
        let mut g = Group::new();
        for _ in 0..3 {
            g.add(protocol, None);
        }
        g.run_for(2000);
        g.crash(2);
        g.run_for(500);
        assert_eq!(
            g.loads(),
            vec![2, 2],
            "{protocol:?}: not before the session ends"
        );
        g.run_for(3000);
        assert_eq!(g.loads(), vec![3, 3], "{protocol:?}");
        g.assert_exclusive();
    }
}

#[test]
fn a_clean_leave_moves_partitions_at_once() {
    let mut g = Group::new();
    for _ in 0..2 {
        g.add(MemberProtocol::Consumer, None);
    }
    g.run_for(2000);
    g.close(1);
    g.run_for(300);
    assert_eq!(g.owned(0).len(), 6, "well before a session timeout");
}

#[test]
fn a_static_member_restarting_within_its_session_takes_back_its_partitions_silently() {
    for protocol in PROTOCOLS {
        let mut g = Group::new();
        g.add(protocol, Some("host-0"));
        g.add(protocol, Some("host-1"));
        g.run_for(2000);
        let mine = g.owned(1);
        let before = g.revoked_count(0);
        g.close(1);
        g.run_for(20);
        g.crash(1);
        let back = g.add(protocol, Some("host-1"));
        g.run_for(2000);
        assert_eq!(g.owned(back), mine, "{protocol:?}");
        assert_eq!(
            g.revoked_count(0),
            before,
            "{protocol:?}: member 0 never noticed"
        );
    }
}

#[test]
fn a_member_that_stops_polling_leaves_and_loses_its_partitions() {
    let mut g = Group::new();
    g.add(MemberProtocol::Classic(RebalanceKind::Cooperative), None);
    g.add(MemberProtocol::Classic(RebalanceKind::Cooperative), None);
    g.run_for(2000);
    g.stuck.insert(1);
    g.run_for(4000);
    assert!(g.owned(1).is_empty());
    assert!(g.seen[1]
        .iter()
        .any(|e| matches!(e, MemberEvent::Lost { partitions } if partitions.len() == 3)));
    assert_eq!(g.owned(0).len(), 6);
    // It polls again and rejoins as a new member.
    g.stuck.clear();
    g.run_for(3000);
    assert_eq!(g.loads(), vec![3, 3]);
}

#[test]
fn client_side_rebalancing_converges_but_members_briefly_disagree() {
    let periodic = MemberProtocol::ClientPeriodic {
        rebalance_interval_ms: 1000,
    };
    let mut g = Group::new();
    g.add(periodic, None);
    g.add(periodic, None);
    g.run_for(3000);
    assert_eq!(g.loads(), vec![3, 3]);
    // A third member: each recomputes on its own clock, from the list it last saw.
    g.add(periodic, None);
    g.run_for(3000);
    assert_eq!(g.loads(), vec![2, 2, 2]);
    assert!(
        g.max_doubly_owned > 0,
        "the joiner takes its share before the others let go"
    );
    let fence = g.members[0].as_ref().and_then(GroupMember::commit_fence);
    assert_eq!(fence, None, "RocketMQ 4 does not fence commits");
}
