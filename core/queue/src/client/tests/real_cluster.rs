//! The clients against the real brokers of [`crate::testkit`]: what a producer is told and what a
//! consumer reads come from the broker's own produce, fetch, offsets and idempotence code, over
//! replication and in-memory disks, not from [`FakeCluster`]'s imitation of them. The fake stays
//! for what a real broker cannot be made to do on cue (see `harness.rs`).
//!
//! [`FakeCluster`]: super::harness::FakeCluster

use crate::time::MillisRange;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;

use super::harness::{bootstrap, tp, Client};
use crate::broker::{BrokerLimits, ConnId};
use crate::client::{
    Consumer, ConsumerConfig, ConsumerEvent, Producer, ProducerConfig, ProducerEvent, Transmit,
};
use crate::config::TopicConfig;
use crate::ids::{NodeId, TopicPartition, OFFSETS_TOPIC};
use crate::protocol::{Acks, Message};
use crate::rng::Rng;
use crate::testkit::{broker_cluster, cluster_config, BrokerNode, Cluster};
use crate::time::Instant;

const SECOND: Duration = Duration::from_secs(1);
const TOPIC: &str = "t";

/// Steps at one instant before the test calls it a livelock (as the cluster's own bound).
const STEPS_PER_INSTANT_MAX: u32 = 1_000_000;

/// One client and three real brokers on one virtual clock. Frames between them arrive at the
/// instant they are sent; a client transmit to a broker that is down, and a broker's close of
/// a client connection, reach the client as a disconnect.
struct RealNet<C: Client> {
    cluster: Cluster<BrokerNode>,
    client: C,
    events: Vec<C::Event>,
    /// Client connections (broker, lane) that said Hello to a broker's current incarnation.
    connected: BTreeSet<(NodeId, u16)>,
    disconnects: VecDeque<NodeId>,
    /// The application takes no events (a stalled consumer) while set.
    paused: bool,
}

/// The connection a client lane uses on a broker; client connections must stay below 1 << 32.
fn conn_of(lane: u16) -> ConnId {
    1 + lane as ConnId
}

impl<C: Client> RealNet<C> {
    /// Three brokers hosting `partitions` partitions of [`TOPIC`], each on all three, with ready
    /// leaders for every partition and the offsets topic.
    fn new(seed: u64, partitions: u32, client: C) -> RealNet<C> {
        let topics = vec![TopicConfig {
            name: TOPIC.into(),
            partitions,
            replication_factor: 3,
        }];
        let mut cluster = broker_cluster(seed, cluster_config(3, topics), BrokerLimits::default());
        for p in 0..partitions {
            cluster.await_ready_leader_of(&tp(TOPIC, p), 5 * SECOND);
        }
        cluster.await_ready_leader_of(&tp(OFFSETS_TOPIC, 0), 5 * SECOND);
        RealNet {
            cluster,
            client,
            events: Vec::new(),
            connected: BTreeSet::new(),
            disconnects: VecDeque::new(),
            paused: false,
        }
    }

    fn now(&self) -> Instant {
        self.cluster.now()
    }

    /// Gives the client an input at the current time, then carries its outputs.
    fn input<R>(&mut self, f: impl FnOnce(&mut C, Instant) -> R) -> R {
        let now = self.now();
        let r = f(&mut self.client, now);
        self.pump();
        r
    }

    fn pump(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            self.carry(t);
        }
        while !self.paused {
            let Some(e) = self.client.poll_event() else {
                break;
            };
            self.events.push(e);
        }
    }

    fn carry(&mut self, t: Transmit) {
        if !self.cluster.is_up(t.to) {
            self.disconnects.push_back(t.to);
            return;
        }
        let conn = conn_of(t.lane);
        if self.connected.insert((t.to, t.lane)) {
            self.cluster.client_hello(t.to, conn);
        }
        self.cluster.client_send(t.to, conn, t.msg);
        self.deliver_from(t.to);
    }

    /// Hands the client what broker `id` sent it.
    fn deliver_from(&mut self, id: NodeId) {
        let (frames, closed) = self.cluster.take_client_outputs(id);
        let now = self.now();
        for (_, msg) in frames {
            if matches!(msg, Message::Response { .. } | Message::Push(_)) {
                self.client.handle_message(now, id, msg);
            }
        }
        if !closed.is_empty() {
            self.connected.retain(|&(b, _)| b != id);
            self.client.handle_disconnected(now, id);
        }
    }

    /// Handles the earliest of: a pending disconnect, a cluster event, the client's timer.
    /// False when nothing happens before `limit`.
    fn step(&mut self, limit: Instant) -> bool {
        self.pump();
        if let Some(b) = self.disconnects.pop_front() {
            self.connected.retain(|&(id, _)| id != b);
            self.client.handle_disconnected(self.now(), b);
            self.pump();
            return true;
        }
        let timer = self.client.poll_timeout();
        let event = self.cluster.next_event_time();
        let next = match (timer, event) {
            (Some(t), Some(e)) => t.min(e),
            (t, e) => match t.or(e) {
                Some(n) => n,
                None => return false,
            },
        };
        if next > limit {
            self.cluster.run_until(limit);
            return false;
        }
        if event == Some(next) {
            self.cluster.step();
            for id in self.cluster.ids().to_vec() {
                if self.cluster.is_up(id) {
                    self.deliver_from(id);
                }
            }
        } else {
            self.cluster.run_until(next);
            self.client.handle_timeout(next);
        }
        self.pump();
        true
    }

    /// Runs until `done` holds or `max` passes; whether it held.
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
            if self.now() == last {
                spins += 1;
                assert!(spins < STEPS_PER_INSTANT_MAX, "livelock at {last:?}");
            } else {
                (spins, last) = (0, self.now());
            }
        }
    }

    /// Crashes broker `id`: its connections to the client close.
    fn crash(&mut self, id: NodeId) {
        self.cluster.crash(id);
        self.connected.retain(|&(b, _)| b != id);
        self.client.handle_disconnected(self.now(), id);
        self.pump();
    }
}

fn producer_config(enable_idempotence: bool) -> ProducerConfig {
    ProducerConfig {
        acks: Acks::All,
        linger_ms: 0,
        retries_max: 50,
        retry_backoff_ms: MillisRange {
            min_ms: 10,
            max_ms: 100,
        },
        request_timeout_ms: 1_000,
        delivery_timeout_ms: 20_000,
        metadata_refresh_backoff_ms: 50,
        in_flight_max: NonZeroUsize::new(5).expect("not zero"),
        enable_idempotence,
        ..ProducerConfig::default()
    }
}

fn consumer_config(group: &str) -> ConsumerConfig {
    ConsumerConfig {
        group: group.into(),
        max_wait_ms: 200,
        request_timeout_ms: 1_000,
        retry_backoff_ms: 50,
        metadata_refresh_backoff_ms: 50,
        ..ConsumerConfig::default()
    }
}

fn producer_net(seed: u64, partitions: u32, config: ProducerConfig) -> RealNet<Producer> {
    let producer = Producer::new(config, bootstrap(&[1, 2, 3]), Rng::new(seed));
    RealNet::new(seed, partitions, producer)
}

/// Every record's fate so far, by id.
fn fates(net: &RealNet<Producer>) -> BTreeMap<String, (TopicPartition, Result<u64, String>)> {
    net.events
        .iter()
        .filter_map(|e| match e {
            ProducerEvent::Delivered {
                id,
                partition,
                result,
            } => Some((
                id.clone(),
                (partition.clone(), result.clone().map_err(|f| f.to_string())),
            )),
            _ => None,
        })
        .collect()
}

fn send(net: &mut RealNet<Producer>, partition: u32, id: &str) {
    net.input(|p, now| {
        p.send(
            now,
            tp(TOPIC, partition),
            id.into(),
            Bytes::from_static(b"v"),
        )
    })
    .expect("room in the buffer");
}

/// Ids in the committed log of `partition` on its leader, in offset order.
fn committed_ids(net: &RealNet<Producer>, partition: u32) -> Vec<(u64, String)> {
    let p = tp(TOPIC, partition);
    let leader = net.cluster.ready_leader_of(&p).expect("a ready leader");
    let replica = net.cluster.broker(leader).replica(&p).expect("hosted");
    let batches = replica.log().read(0, replica.high_watermark(), usize::MAX);
    crate::testkit::keys_of(&batches)
}

/// `acks=all` against real brokers: every record is acknowledged once, with the offset the
/// leader's committed log holds it at, and records of one partition keep send order.
#[test]
fn acknowledged_offsets_are_where_the_brokers_committed_the_records() {
    let mut net = producer_net(1, 2, producer_config(false));
    let ids: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        send(&mut net, (i % 2) as u32, id);
    }
    assert!(net.run_until(10 * SECOND, |n| fates(n).len() == ids.len()));
    let fates = fates(&net);
    for partition in 0..2 {
        let log: Vec<(u64, String)> = committed_ids(&net, partition)
            .into_iter()
            .filter(|(_, id)| id.starts_with('r'))
            .collect();
        let acked: Vec<(u64, String)> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == partition as usize)
            .map(|(_, id)| {
                let (p, result) = &fates[id];
                assert_eq!(*p, tp(TOPIC, partition));
                (result.clone().expect("acknowledged"), id.clone())
            })
            .collect();
        assert_eq!(acked, log, "partition {partition}");
    }
}

/// Idempotence end to end (claim P4) through the broker's real duplicate table: the leader
/// crashes with batches in flight, the producer retries them to the next leader, and every
/// record is in the committed log exactly once, in send order, at its acknowledged offset.
#[test]
fn idempotent_retries_across_a_leader_crash_land_exactly_once() {
    let mut net = producer_net(7, 1, producer_config(true));
    let p = tp(TOPIC, 0);
    for i in 0..10 {
        send(&mut net, 0, &format!("a{i}"));
    }
    assert!(net.run_until(5 * SECOND, |n| fates(n).len() == 10));
    let leader = net.cluster.ready_leader_of(&p).expect("a leader");
    for i in 0..10 {
        send(&mut net, 0, &format!("b{i}"));
    }
    assert!(net.client.in_flight() > 0, "batches in flight at the crash");
    net.crash(leader);
    assert!(net.run_until(15 * SECOND, |n| fates(n).len() == 20));
    net.cluster.restart(leader);
    net.run_until(2 * SECOND, |_| false);

    let log = committed_ids(&net, 0);
    let ids: Vec<&str> = log.iter().map(|(_, id)| id.as_str()).collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("a{i}"))
        .chain((0..10).map(|i| format!("b{i}")))
        .collect();
    let data: Vec<&str> = ids.iter().copied().filter(|id| !id.is_empty()).collect();
    assert_eq!(data, expected, "each record once, in send order");
    for (offset, id) in log.iter().filter(|(_, id)| !id.is_empty()) {
        assert_eq!(fates(&net)[id].1, Ok(*offset), "{id}");
    }
}

fn consumer_net(seed: u64, group: &str) -> RealNet<Consumer> {
    let consumer = Consumer::new(
        consumer_config(group),
        bootstrap(&[1, 2, 3]),
        Rng::new(seed),
    );
    RealNet::new(seed, 1, consumer)
}

/// The test's own connection for producing, apart from the consumer's lanes.
const PRODUCE_CONN: ConnId = 1_000;

/// Produces `ids` to partition 0 straight through its leader and waits for them to commit.
fn produce_through_leader<C: Client>(net: &mut RealNet<C>, ids: &[&str]) {
    let p = tp(TOPIC, 0);
    let leader = net.cluster.ready_leader_of(&p).expect("a leader");
    net.cluster.client_hello(leader, PRODUCE_CONN);
    for id in ids {
        let request = crate::protocol::Request::Produce {
            partition: p.clone(),
            acks: Acks::Leader,
            timeout_ms: 1_000,
            batch: crate::testkit::record_batch(id),
        };
        net.cluster.client_send(
            leader,
            PRODUCE_CONN,
            Message::Request {
                correlation_id: 0,
                request,
            },
        );
    }
    let _ = net.cluster.take_client_outputs(leader);
    let end = net
        .cluster
        .broker(leader)
        .replica(&p)
        .expect("hosted")
        .log()
        .end_offset();
    assert!(net.cluster.run_until_cond(5 * SECOND, |c| c
        .broker(leader)
        .replica(&p)
        .is_some_and(|r| r.high_watermark() >= end)));
}

fn records_read(net: &RealNet<Consumer>) -> Vec<(u64, String)> {
    net.events
        .iter()
        .filter_map(|e| match e {
            ConsumerEvent::Records { records, .. } => Some(
                records
                    .iter()
                    .map(|r| (r.offset, String::from_utf8_lossy(&r.key).into_owned())),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The consumer reads what the real broker committed, in offset order and without the leaders'
/// control batches; a commit goes through the real offsets partition, and a new consumer of the
/// group resumes after it (claim C4).
#[test]
fn a_new_consumer_of_the_group_resumes_after_the_committed_offset() {
    let mut net = consumer_net(3, "g");
    produce_through_leader(&mut net, &["x0", "x1", "x2", "x3"]);
    let p = tp(TOPIC, 0);
    net.input(|c, now| c.assign(now, vec![p.clone()]));
    assert!(net.run_until(5 * SECOND, |n| records_read(n).len() == 4));
    let read = records_read(&net);
    let ids: Vec<&str> = read.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["x0", "x1", "x2", "x3"]);
    assert!(read.windows(2).all(|w| w[0].0 < w[1].0), "offset order");

    let resume_at = read[2].0;
    net.input(|c, now| c.commit(now, p.clone(), resume_at));
    let committed = |n: &RealNet<Consumer>| {
        n.events
            .iter()
            .any(|e| matches!(e, ConsumerEvent::Committed { result: Ok(()), .. }))
    };
    assert!(net.run_until(5 * SECOND, committed));

    let mut next = Consumer::new(consumer_config("g"), bootstrap(&[1, 2, 3]), Rng::new(4));
    std::mem::swap(&mut net.client, &mut next);
    net.events.clear();
    net.connected.clear();
    net.input(|c, now| c.assign(now, vec![p.clone()]));
    assert!(net.run_until(5 * SECOND, |n| records_read(n).len() == 2));
    let ids: Vec<String> = records_read(&net).into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, ["x2", "x3"]);
}

// --- push delivery (claim C1) ----------------------------------------------------------------

fn push_net(seed: u64, credits: u32, receive_buffer_bytes_max: u64) -> RealNet<Consumer> {
    let config = ConsumerConfig {
        delivery: crate::client::Delivery::Push { credits },
        receive_buffer_bytes_max,
        ..consumer_config("push")
    };
    let consumer = Consumer::new(config, bootstrap(&[1, 2, 3]), Rng::new(seed));
    RealNet::new(seed, 1, consumer)
}

fn ids(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn produce_ids(net: &mut RealNet<Consumer>, ids: &[String]) {
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    produce_through_leader(net, &refs);
}

/// Every record read, once each and in offset order, and nothing else.
fn assert_read_exactly(net: &RealNet<Consumer>, expected: &[String]) {
    let read = records_read(net);
    assert!(
        read.windows(2).all(|w| w[0].0 < w[1].0),
        "offset order: {read:?}"
    );
    let got: Vec<&str> = read.iter().map(|(_, id)| id.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(got, want);
}

/// Claim C1: a push consumer sends one subscribe and no fetch; the leader pushes what it
/// commits, before and after the subscription.
#[test]
fn push_delivers_committed_batches_without_fetching() {
    let mut net = push_net(11, 0, 1 << 20);
    let before = ids(3, "a");
    produce_ids(&mut net, &before);
    let p = tp(TOPIC, 0);
    net.input(|c, now| c.assign(now, vec![p.clone()]));
    assert!(net.run_until(5 * SECOND, |n| records_read(n).len() == 3));
    let after = ids(4, "b");
    produce_ids(&mut net, &after);
    assert!(net.run_until(5 * SECOND, |n| records_read(n).len() == 7));
    let all: Vec<String> = before.into_iter().chain(after).collect();
    assert_read_exactly(&net, &all);
    let stats = net.client.delivery_stats();
    assert_eq!(stats.fetches, 0, "push never fetches");
    assert!(stats.pushes >= 2, "{stats:?}");
    assert_eq!(stats.overflows, 0);
}

/// Claim C1, flow control: with a window of 4 records a stalled application holds at most 4
/// pushed records; once it takes them, the credits it returns bring the rest, in order.
#[test]
fn push_credits_bound_what_a_stalled_consumer_buffers() {
    let mut net = push_net(12, 4, 1 << 20);
    let p = tp(TOPIC, 0);
    net.paused = true;
    net.input(|c, now| c.assign(now, vec![p.clone()]));
    net.run_until(SECOND, |_| false);
    let sent = ids(20, "m");
    produce_ids(&mut net, &sent);
    net.run_until(2 * SECOND, |_| false);
    let stats = net.client.delivery_stats();
    // Each produce is its own one-record batch ("mN" and "v"), so the window is exact.
    let record_bytes = 3 + 1;
    assert!(stats.buffer_bytes_peak <= 4 * record_bytes, "{stats:?}");
    assert!(stats.buffer_bytes_peak > 0, "{stats:?}");
    net.paused = false;
    assert!(net.run_until(5 * SECOND, |n| records_read(n).len() == 20));
    assert_read_exactly(&net, &sent);
    assert_eq!(net.client.delivery_stats().overflows, 0);
}

/// Claim C1, "push floods slow consumers": without credits a stalled application's receive
/// buffer overflows; the consumer drops the subscription (counted) and renews it from the
/// position after what it buffered, so once the application catches up it has read every
/// record exactly once.
#[test]
fn unbounded_push_overflows_a_stalled_consumer_without_loss() {
    let mut net = push_net(13, 0, 20);
    let p = tp(TOPIC, 0);
    net.paused = true;
    net.input(|c, now| c.assign(now, vec![p.clone()]));
    net.run_until(SECOND, |_| false);
    let sent = ids(30, "m");
    produce_ids(&mut net, &sent);
    net.run_until(2 * SECOND, |_| false);
    let stats = net.client.delivery_stats();
    assert!(stats.overflows > 0, "{stats:?}");
    assert!(stats.push_discarded_bytes > 0, "{stats:?}");
    // Bounded by the limit plus one batch (one record of at most 4 bytes here).
    assert!(stats.buffer_bytes_peak <= 20 + 4, "{stats:?}");
    net.paused = false;
    assert!(net.run_until(10 * SECOND, |n| records_read(n).len() == 30));
    assert_read_exactly(&net, &sent);
}

/// A leader crash ends the subscription with the connection; the consumer subscribes at the
/// new leader from its own position: nothing lost, skipped or read twice.
#[test]
fn a_leader_crash_moves_the_push_subscription_without_loss_or_skip() {
    let mut net = push_net(14, 100, 1 << 20);
    let p = tp(TOPIC, 0);
    net.input(|c, now| c.assign(now, vec![p.clone()]));
    let first = ids(5, "a");
    produce_ids(&mut net, &first);
    assert!(net.run_until(5 * SECOND, |n| records_read(n).len() == 5));
    let leader = net.cluster.ready_leader_of(&p).expect("a leader");
    net.crash(leader);
    net.cluster.await_ready_leader_of(&p, 10 * SECOND);
    let second = ids(5, "b");
    produce_ids(&mut net, &second);
    assert!(net.run_until(10 * SECOND, |n| records_read(n).len() == 10));
    let all: Vec<String> = first.into_iter().chain(second).collect();
    assert_read_exactly(&net, &all);
    assert!(net.client.delivery_stats().subscriptions_ended >= 1);
}

fn share_net(seed: u64, member: &str) -> RealNet<crate::client::ShareConsumer> {
    let config = crate::client::ShareConsumerConfig {
        group: "s".into(),
        member: member.into(),
        topic: TOPIC.into(),
        settings: crate::share::ShareSettings {
            acquisition_lock_ms: 1_000,
            ..Default::default()
        },
        mode: crate::share::ShareMode::Shared,
        max_records: 3,
        max_wait_ms: 500,
        max_bytes: 1 << 20,
        request_timeout_ms: 2_000,
        retry_backoff_ms: 100,
        metadata_refresh_backoff_ms: 100,
        held_records_max: 10,
    };
    let consumer = crate::client::ShareConsumer::new(config, bootstrap(&[1, 2, 3]), Rng::new(seed));
    RealNet::new(seed, 1, consumer)
}

/// Every share delivery so far: `(offset, key, delivery_count)`.
fn shared(net: &RealNet<crate::client::ShareConsumer>) -> Vec<(u64, String, u16)> {
    use crate::client::ShareConsumerEvent;
    let mut out = Vec::new();
    for e in &net.events {
        if let ShareConsumerEvent::Records { records, .. } = e {
            for r in records {
                let key = String::from_utf8_lossy(&r.record.key).into_owned();
                out.push((r.record.offset, key, r.delivery_count));
            }
        }
    }
    out
}

/// A share member gets each record of the real broker with its delivery count, skipping the
/// share-state control batches its own fetches wrote; a released record comes back as attempt
/// 2, an accepted one never.
#[test]
fn a_share_member_acquires_acknowledges_and_gets_released_records_again() {
    use crate::client::ShareConsumerEvent;
    use crate::share::AckKind;
    let mut net = share_net(5, "m1");
    produce_through_leader(&mut net, &["a", "b", "c", "d"]);
    assert!(net.run_until(5 * SECOND, |n| shared(n).len() >= 4));
    let first = shared(&net);
    let keys: Vec<&str> = first.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c", "d"]);
    assert!(first.iter().all(|(_, _, n)| *n == 1));
    let p = tp(TOPIC, 0);
    let released = first[1].0;
    net.input(|c, _| {
        for (offset, _, _) in &first {
            let kind = if *offset == released {
                AckKind::Release
            } else {
                AckKind::Accept
            };
            c.acknowledge(&p, *offset, kind);
        }
    });
    let acked = |n: &RealNet<crate::client::ShareConsumer>| {
        n.events.iter().any(|e| matches!(e, ShareConsumerEvent::Acknowledged { acks, refused, .. } if acks.len() == 4 && refused.is_empty()))
    };
    assert!(net.run_until(5 * SECOND, acked));
    assert!(net.run_until(5 * SECOND, |n| shared(n).len() >= 5));
    assert_eq!(shared(&net)[4], (released, "b".to_string(), 2));
    // Unacknowledged, it comes back again after each lock; accepted, never.
    assert!(net.run_until(5 * SECOND, |n| shared(n).len() >= 6));
    assert_eq!(shared(&net)[5], (released, "b".to_string(), 3));
    net.input(|c, _| c.acknowledge(&p, released, AckKind::Accept));
    net.run_until(5 * SECOND, |_| false);
    assert_eq!(shared(&net).len(), 6);
}
