//! Consumer groups through the real path (issue 8): several [`Consumer`]s subscribed to one
//! group, each owning a [`GroupMember`](crate::group::member::GroupMember), against three real
//! brokers of [`crate::testkit`] whose coordinator runs in the leader of the offsets partition
//! and persists every generation there before answering.
//!
//! Each member's application is the test's: it processes records as they arrive, commits after
//! processing, and on a revocation lets its partitions go only once those commits are
//! acknowledged (Kafka's `commitSync` in `onPartitionsRevoked`). A *paused* member receives
//! nothing and runs no timers, as a process stuck in a GC pause: when it wakes it is a zombie.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::harness::{bootstrap, tp};
use crate::broker::{BrokerLimits, ConnId};
use crate::client::{Consumer, ConsumerConfig, ConsumerEvent, Transmit};
use crate::config::TopicConfig;
use crate::group::classic::RebalanceKind;
use crate::group::member::{MemberConfig, MemberProtocol};
use crate::ids::{NodeId, TopicPartition, OFFSETS_TOPIC};
use crate::protocol::{Acks, Message, Request};
use crate::rng::Rng;
use crate::testkit::{broker_cluster, cluster_config, BrokerNode, Cluster};
use crate::time::Instant;

const SECOND: Duration = Duration::from_secs(1);
const TOPIC: &str = "t";
const GROUP: &str = "g";
const PARTITIONS: u32 = 4;
/// Connections per member: its lanes to one broker live in this range.
const CONNS_PER_MEMBER: ConnId = 16;
const PRODUCE_CONN: ConnId = 100_000;
const STEPS_PER_INSTANT_MAX: u32 = 1_000_000;

struct Member {
    consumer: Consumer,
    /// The application commits after processing by itself; off, the test commits.
    auto_commit: bool,
    paused: bool,
    /// Was paused once: after waking it is a zombie until it learns so, and may still think it
    /// owns what the group gave another (its commits are what the fence stops).
    zombie: bool,
    /// Frames that arrived while paused, handed over on waking.
    inbox: VecDeque<(NodeId, Message)>,
    connected: BTreeSet<(NodeId, u16)>,
    /// The next offset after the last processed record, per partition.
    processed: BTreeMap<TopicPartition, u64>,
    /// Commits asked for and not yet answered, per partition.
    committing: BTreeMap<TopicPartition, u32>,
    /// Partitions of a revocation waiting for their commits.
    revoking: Option<BTreeSet<TopicPartition>>,
    /// Every record processed: (time, partition, offset, id).
    reads: Vec<(Instant, TopicPartition, u64, String)>,
    commit_results: Vec<(TopicPartition, u64, Result<(), String>)>,
}

struct GroupNet {
    cluster: Cluster<BrokerNode>,
    members: Vec<Member>,
    next_id: u32,
}

fn member_config(protocol: MemberProtocol) -> MemberConfig {
    MemberConfig {
        protocol,
        topics: [TOPIC.to_string()].into(),
        session_timeout_ms: 1_000,
        heartbeat_interval_ms: 100,
        max_poll_interval_ms: 5_000,
        retry_backoff_ms: 50,
        ..MemberConfig::default()
    }
}

fn consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        group: GROUP.into(),
        max_wait_ms: 100,
        request_timeout_ms: 1_000,
        retry_backoff_ms: 50,
        metadata_refresh_backoff_ms: 50,
        ..ConsumerConfig::default()
    }
}

impl GroupNet {
    fn new(seed: u64) -> GroupNet {
        let topics = vec![TopicConfig {
            name: TOPIC.into(),
            partitions: PARTITIONS,
            replication_factor: 3,
        }];
        let mut cluster = broker_cluster(seed, cluster_config(3, topics), BrokerLimits::default());
        for p in 0..PARTITIONS {
            cluster.await_ready_leader_of(&tp(TOPIC, p), 5 * SECOND);
        }
        cluster.await_ready_leader_of(&tp(OFFSETS_TOPIC, 0), 5 * SECOND);
        GroupNet {
            cluster,
            members: Vec::new(),
            next_id: 0,
        }
    }

    fn now(&self) -> Instant {
        self.cluster.now()
    }

    /// Starts a member; its index.
    fn join(&mut self, protocol: MemberProtocol) -> usize {
        let seed = 1_000 + u64::from(self.next_id);
        let mut consumer = Consumer::new(consumer_config(), bootstrap(&[1, 2, 3]), Rng::new(seed));
        let name = format!("c{}", self.next_id);
        self.next_id += 1;
        consumer.subscribe(self.now(), member_config(protocol), &name);
        self.members.push(Member {
            consumer,
            auto_commit: true,
            paused: false,
            zombie: false,
            inbox: VecDeque::new(),
            connected: BTreeSet::new(),
            processed: BTreeMap::new(),
            committing: BTreeMap::new(),
            revoking: None,
            reads: Vec::new(),
            commit_results: Vec::new(),
        });
        self.pump();
        self.members.len() - 1
    }

    fn conn(member: usize, lane: u16) -> ConnId {
        1 + member as ConnId * CONNS_PER_MEMBER + ConnId::from(lane)
    }

    /// Carries transmits and answers until nothing moves, running each application.
    fn pump(&mut self) {
        loop {
            let mut sent = Vec::new();
            for (i, m) in self.members.iter_mut().enumerate() {
                if m.paused {
                    continue;
                }
                while let Some(t) = m.consumer.poll_transmit() {
                    sent.push((i, t));
                }
            }
            for (i, t) in &sent {
                self.carry(*i, t.clone());
            }
            self.deliver();
            let mut acted = false;
            for m in self.members.iter_mut().filter(|m| !m.paused) {
                acted |= m.run_application(self.cluster.now());
            }
            if sent.is_empty() && !acted {
                return;
            }
        }
    }

    fn carry(&mut self, i: usize, t: Transmit) {
        let now = self.now();
        if !self.cluster.is_up(t.to) {
            let m = &mut self.members[i];
            m.connected.retain(|&(b, _)| b != t.to);
            m.consumer.handle_disconnected(now, t.to);
            return;
        }
        let conn = Self::conn(i, t.lane);
        if self.members[i].connected.insert((t.to, t.lane)) {
            self.cluster.client_hello(t.to, conn);
        }
        self.cluster.client_send(t.to, conn, t.msg);
    }

    /// Hands every member what the brokers sent it (a paused member's waits in its inbox).
    fn deliver(&mut self) {
        let now = self.now();
        for id in self.cluster.ids().to_vec() {
            if !self.cluster.is_up(id) {
                continue;
            }
            let (frames, closed) = self.cluster.take_client_outputs(id);
            for (conn, msg) in frames {
                if conn >= PRODUCE_CONN || !matches!(msg, Message::Response { .. }) {
                    continue;
                }
                let m = &mut self.members[((conn - 1) / CONNS_PER_MEMBER) as usize];
                match m.paused {
                    true => m.inbox.push_back((id, msg)),
                    false => m.consumer.handle_message(now, id, msg),
                }
            }
            for conn in closed.into_iter().filter(|c| *c < PRODUCE_CONN) {
                let m = &mut self.members[((conn - 1) / CONNS_PER_MEMBER) as usize];
                m.connected.retain(|&(b, _)| b != id);
                m.consumer.handle_disconnected(now, id);
            }
        }
    }

    fn step(&mut self, limit: Instant) -> bool {
        self.pump();
        let timer = self
            .members
            .iter()
            .filter(|m| !m.paused)
            .filter_map(|m| m.consumer.poll_timeout())
            .min();
        let event = self.cluster.next_event_time();
        let Some(next) = [timer, event].into_iter().flatten().min() else {
            return false;
        };
        if next > limit {
            self.cluster.run_until(limit);
            return false;
        }
        if event == Some(next) {
            self.cluster.step();
        } else {
            self.cluster.run_until(next);
            for m in self.members.iter_mut().filter(|m| !m.paused) {
                if m.consumer.poll_timeout().is_some_and(|t| t <= next) {
                    m.consumer.handle_timeout(next);
                }
            }
        }
        self.deliver();
        self.pump();
        true
    }

    /// Runs until `done` holds or `max` passes, checking `invariant` after every step.
    fn run_until(&mut self, max: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let limit = self.now() + max;
        let (mut spins, mut last) = (0, self.now());
        loop {
            if done(self) {
                return true;
            }
            if !self.step(limit) {
                return done(self);
            }
            self.assert_one_owner_per_partition();
            if self.now() == last {
                spins += 1;
                assert!(spins < STEPS_PER_INSTANT_MAX, "livelock at {last:?}");
            } else {
                (spins, last) = (0, self.now());
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// The group's safety property: no partition is held by two members that were never
    /// paused.
    fn assert_one_owner_per_partition(&self) {
        let mut seen = BTreeMap::new();
        for (i, m) in self.members.iter().enumerate().filter(|(_, m)| !m.zombie) {
            for p in m
                .consumer
                .member()
                .map(|g| g.owned().clone())
                .unwrap_or_default()
            {
                if let Some(other) = seen.insert(p.clone(), i) {
                    panic!("{p} held by members {other} and {i} at {:?}", self.now());
                }
            }
        }
    }

    fn crash_broker(&mut self, id: NodeId) {
        self.cluster.crash(id);
        let now = self.now();
        for m in self.members.iter_mut().filter(|m| !m.paused) {
            m.connected.retain(|&(b, _)| b != id);
            m.consumer.handle_disconnected(now, id);
        }
        self.pump();
    }

    fn pause(&mut self, i: usize) {
        self.members[i].paused = true;
        self.members[i].zombie = true;
    }

    /// The member runs again: `first` is what its application does before anything else
    /// reaches it (a handler finishing the work it was stuck in), then it reads what arrived.
    fn wake(&mut self, i: usize, first: impl FnOnce(&mut Member, Instant)) {
        let now = self.now();
        let m = &mut self.members[i];
        m.paused = false;
        first(m, now);
        for (from, msg) in std::mem::take(&mut m.inbox) {
            m.consumer.handle_message(now, from, msg);
        }
        m.consumer.handle_timeout(now);
        self.pump();
    }

    /// Produces `n` records named `{prefix}{k}` round-robin over the partitions, through each
    /// partition's leader, and waits for them to commit.
    fn produce(&mut self, prefix: &str, n: u32) {
        for k in 0..n {
            let p = tp(TOPIC, k % PARTITIONS);
            let leader = self.cluster.ready_leader_of(&p).expect("a leader");
            self.cluster.client_hello(leader, PRODUCE_CONN);
            let request = Request::Produce {
                partition: p.clone(),
                acks: Acks::Leader,
                timeout_ms: 1_000,
                batch: crate::testkit::record_batch(&format!("{prefix}{k}")),
            };
            let msg = Message::Request {
                correlation_id: u64::from(k),
                request,
            };
            self.cluster.client_send(leader, PRODUCE_CONN, msg);
        }
        self.deliver();
        let ends: Vec<(TopicPartition, u64)> = (0..PARTITIONS)
            .map(|p| {
                let p = tp(TOPIC, p);
                let leader = self.cluster.ready_leader_of(&p).expect("a leader");
                let end = self.cluster.broker(leader).replica(&p).expect("hosted");
                (p, end.log().end_offset())
            })
            .collect();
        let committed = |net: &GroupNet| {
            ends.iter().all(|(p, end)| {
                net.cluster
                    .ready_leader_of(p)
                    .and_then(|l| net.cluster.broker(l).replica(p))
                    .is_some_and(|r| r.high_watermark() >= *end)
            })
        };
        assert!(self.run_until(5 * SECOND, committed));
    }

    /// Every data record's id processed by any member, with how often.
    fn processed_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for m in &self.members {
            for (_, _, _, id) in &m.reads {
                *counts.entry(id.clone()).or_default() += 1;
            }
        }
        counts
    }

    fn all_processed(&self, ids: &[String]) -> bool {
        let counts = self.processed_counts();
        ids.iter().all(|id| counts.contains_key(id))
    }

    fn owned(&self, i: usize) -> BTreeSet<TopicPartition> {
        self.members[i]
            .consumer
            .member()
            .map(|g| g.owned().clone())
            .unwrap_or_default()
    }

    fn committed(&self, p: &TopicPartition) -> Option<u64> {
        let offsets = tp(OFFSETS_TOPIC, 0);
        let leader = self.cluster.ready_leader_of(&offsets)?;
        self.cluster.broker(leader).committed_offset(GROUP, p)
    }
}

impl Member {
    /// One turn of the application; whether it did anything.
    fn run_application(&mut self, now: Instant) -> bool {
        let mut acted = false;
        while let Some(e) = self.consumer.poll(now) {
            acted = true;
            match e {
                ConsumerEvent::Records { partition, records } => {
                    for r in &records {
                        let id = String::from_utf8_lossy(&r.key).into_owned();
                        self.reads.push((now, partition.clone(), r.offset, id));
                    }
                    let Some(last) = records.last() else { continue };
                    self.processed.insert(partition.clone(), last.offset + 1);
                    if self.auto_commit {
                        self.commit(now, &partition);
                    }
                }
                ConsumerEvent::Revoked { partitions, .. } => {
                    for p in &partitions {
                        if self.auto_commit && self.processed.contains_key(p) {
                            self.commit(now, p);
                        }
                    }
                    self.revoking = Some(partitions);
                }
                ConsumerEvent::Committed {
                    partition,
                    offset,
                    result,
                } => {
                    if let Some(n) = self.committing.get_mut(&partition) {
                        *n -= 1;
                        if *n == 0 {
                            self.committing.remove(&partition);
                        }
                    }
                    self.commit_results.push((partition, offset, result));
                }
                _ => {}
            }
        }
        let released = self
            .revoking
            .as_ref()
            .is_some_and(|ps| ps.iter().all(|p| !self.committing.contains_key(p)));
        if released {
            self.revoking = None;
            self.consumer.revoked(now);
            acted = true;
        }
        acted
    }

    fn commit(&mut self, now: Instant, p: &TopicPartition) {
        let Some(&offset) = self.processed.get(p) else {
            return;
        };
        *self.committing.entry(p.clone()).or_default() += 1;
        self.consumer.commit(now, p.clone(), offset);
    }
}

fn ids(prefix: &str, n: u32) -> Vec<String> {
    (0..n).map(|k| format!("{prefix}{k}")).collect()
}

const PROTOCOLS: [MemberProtocol; 3] = [
    MemberProtocol::Classic(RebalanceKind::Eager),
    MemberProtocol::Classic(RebalanceKind::Cooperative),
    MemberProtocol::Consumer,
];

/// Two members of a group split the partitions between them, two each, and together read
/// every record exactly once (commit after processing, no rebalance after the first).
#[test]
fn two_members_share_the_partitions_and_read_each_record_once() {
    for protocol in PROTOCOLS {
        let mut net = GroupNet::new(11);
        let (a, b) = (net.join(protocol), net.join(protocol));
        let balanced = |n: &GroupNet| n.owned(a).len() == 2 && n.owned(b).len() == 2;
        assert!(
            net.run_until(20 * SECOND, balanced),
            "{protocol:?}: two each"
        );
        net.produce("x", 40);
        let want = ids("x", 40);
        assert!(
            net.run_until(20 * SECOND, |n| n.all_processed(&want)),
            "{protocol:?}: all read"
        );
        assert!(balanced(&net), "{protocol:?}: no rebalance since");
        for i in [a, b] {
            let owned = net.owned(i);
            let reads = &net.members[i].reads;
            assert!(
                reads.iter().all(|(_, p, _, _)| owned.contains(p)),
                "{protocol:?}"
            );
        }
        assert!(
            net.processed_counts().values().all(|&n| n == 1),
            "{protocol:?}"
        );
    }
}

/// A member that leaves cleanly (after committing) hands its partitions to the other, which
/// starts them at the committed offsets: nothing is skipped, nothing is read twice.
#[test]
fn a_member_that_leaves_hands_its_partitions_over_at_the_committed_offset() {
    for protocol in PROTOCOLS {
        let mut net = GroupNet::new(12);
        let (a, b) = (net.join(protocol), net.join(protocol));
        net.produce("x", 40);
        let first = ids("x", 40);
        assert!(net.run_until(20 * SECOND, |n| n.all_processed(&first)));
        assert!(net.run_until(5 * SECOND, |n| n.members[b].committing.is_empty()));
        let now = net.now();
        net.members[b].consumer.close(now);
        net.pump();
        let all: BTreeSet<TopicPartition> = (0..PARTITIONS).map(|p| tp(TOPIC, p)).collect();
        assert!(
            net.run_until(20 * SECOND, |n| n.owned(a) == all),
            "{protocol:?}: the survivor holds every partition"
        );
        net.produce("y", 40);
        let second = ids("y", 40);
        assert!(net.run_until(20 * SECOND, |n| n.all_processed(&second)));
        let counts = net.processed_counts();
        assert!(counts.values().all(|&n| n == 1), "{protocol:?}: {counts:?}");
        assert!(net.members[b]
            .reads
            .iter()
            .all(|(_, _, _, id)| id.starts_with('x')));
    }
}

/// A zombie: a member paused past its session timeout holds processed but uncommitted
/// records; the group gives its partitions to the other member, which reads on from the last
/// commit and commits further. When the zombie wakes and commits, the coordinator refuses the
/// commit (its member is gone) and the new owner's offset stands.
#[test]
fn a_paused_members_late_commit_is_refused_and_does_not_overwrite_the_new_owner() {
    for protocol in PROTOCOLS {
        let mut net = GroupNet::new(13);
        let (a, z) = (net.join(protocol), net.join(protocol));
        let balanced = |n: &GroupNet| n.owned(a).len() == 2 && n.owned(z).len() == 2;
        assert!(
            net.run_until(20 * SECOND, balanced),
            "{protocol:?}: two each"
        );
        net.produce("x", 20);
        let first = ids("x", 20);
        assert!(net.run_until(20 * SECOND, |n| n.all_processed(&first)));
        assert!(net.run_until(5 * SECOND, |n| n.members[z].committing.is_empty()));
        // The zombie processes more records but is paused before it commits them.
        net.members[z].auto_commit = false;
        net.produce("y", 20);
        let zombie_parts = net.owned(z);
        assert!(net.run_until(10 * SECOND, |n| {
            let read = &n.members[z].reads;
            zombie_parts.iter().all(|p| {
                read.iter()
                    .any(|(_, q, _, id)| q == p && id.starts_with('y'))
            })
        }));
        net.pause(z);
        let all: BTreeSet<TopicPartition> = (0..PARTITIONS).map(|p| tp(TOPIC, p)).collect();
        assert!(
            net.run_until(20 * SECOND, |n| n.owned(a) == all),
            "{protocol:?}: the live member takes over"
        );
        net.produce("w", 20);
        let later: Vec<String> = ids("y", 20).into_iter().chain(ids("w", 20)).collect();
        let a_read = |n: &GroupNet| {
            let read: BTreeSet<&str> = n.members[a]
                .reads
                .iter()
                .map(|(_, _, _, id)| id.as_str())
                .collect();
            let zp = &zombie_parts;
            let mine = |id: &String| {
                let k: u32 = id[1..].parse().expect("numbered");
                zp.contains(&tp(TOPIC, k % PARTITIONS))
            };
            later
                .iter()
                .filter(|id| mine(id))
                .all(|id| read.contains(id.as_str()))
        };
        assert!(net.run_until(20 * SECOND, a_read), "{protocol:?}: re-read");
        assert!(net.run_until(5 * SECOND, |n| n.members[a].committing.is_empty()));
        let owner_offsets: BTreeMap<TopicPartition, Option<u64>> = zombie_parts
            .iter()
            .map(|p| (p.clone(), net.committed(p)))
            .collect();

        let stale: Vec<TopicPartition> = zombie_parts.iter().cloned().collect();
        let fence = net.members[z]
            .consumer
            .member()
            .and_then(|g| g.commit_fence());
        assert!(
            fence.is_some(),
            "{protocol:?}: the zombie still believes it is a member"
        );
        net.wake(z, |m, now| {
            for p in &stale {
                m.commit(now, p);
            }
        });
        assert!(net.run_until(5 * SECOND, |n| n.members[z].committing.is_empty()));
        let refused = net.members[z]
            .commit_results
            .iter()
            .filter(|(p, _, r)| stale.contains(p) && r.is_err())
            .count();
        assert_eq!(
            refused,
            stale.len(),
            "{protocol:?}: every late commit refused"
        );
        for p in &stale {
            assert_eq!(net.committed(p), owner_offsets[p], "{protocol:?}: {p} kept");
        }
    }
}

/// The coordinator (the leader of the offsets partition) crashes in the middle of a
/// rebalance: a new leader rebuilds the group from its persisted snapshots, and the group ends
/// in one generation that both members share, with every partition owned by exactly one.
#[test]
fn a_coordinator_failover_mid_rebalance_ends_in_one_consistent_generation() {
    for protocol in PROTOCOLS {
        let mut net = GroupNet::new(14);
        let a = net.join(protocol);
        net.produce("x", 20);
        assert!(net.run_until(20 * SECOND, |n| n.owned(a).len() == PARTITIONS as usize));
        let offsets = tp(OFFSETS_TOPIC, 0);
        let coordinator = net
            .cluster
            .ready_leader_of(&offsets)
            .expect("a coordinator");
        let b = net.join(protocol);
        net.run_for(Duration::from_millis(30));
        net.crash_broker(coordinator);
        net.produce("y", 20);
        let settled = |n: &GroupNet| {
            let (ga, gb) = (
                n.members[a].consumer.member(),
                n.members[b].consumer.member(),
            );
            let (oa, ob) = (n.owned(a), n.owned(b));
            ga.map(|g| g.generation()) == gb.map(|g| g.generation())
                && oa.len() + ob.len() == PARTITIONS as usize
                && oa.len() == 2
        };
        assert!(net.run_until(30 * SECOND, settled), "{protocol:?}: settles");
        let want: Vec<String> = ids("x", 20).into_iter().chain(ids("y", 20)).collect();
        assert!(
            net.run_until(20 * SECOND, |n| n.all_processed(&want)),
            "{protocol:?}"
        );
        net.cluster.restart(coordinator);
        net.run_for(3 * SECOND);
        assert!(settled(&net), "{protocol:?}: still one generation");
    }
}
