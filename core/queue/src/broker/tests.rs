//! Broker tests over the in-memory harness ([`crate::testkit`]): three (or four) brokers on a
//! virtual clock, each with an in-memory disk, talking over a seeded network; the test plays
//! the clients by handing frames to a broker and reading what it sends back.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::config::TopicConfig;
use crate::log::batch;
use crate::protocol::{Acks, ErrorCode, Message, Peer, Request, Response, PROTOCOL_VERSION};
use crate::testkit::{
    broker_cluster, cluster_config, keys_of, record_batch, BrokerNode, Cluster, SyncMode,
};

const SECOND: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn orders() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

fn offsets_partition() -> TopicPartition {
    TopicPartition::new(OFFSETS_TOPIC, 0)
}

fn brokers(n: u32, seed: u64) -> Cluster<BrokerNode> {
    broker_cluster(seed, orders_config(n), BrokerLimits::default())
}

/// Brokers `1..=n` hosting `orders` with one partition and three replicas.
fn orders_config(n: u32) -> ClusterConfig {
    cluster_config(
        n,
        vec![TopicConfig {
            name: "orders".into(),
            partitions: 1,
            replication_factor: 3,
        }],
    )
}

/// What the brokers sent the test's clients.
#[derive(Default)]
struct Inbox {
    frames: Vec<(NodeId, ConnId, Message)>,
    closed: Vec<(NodeId, ConnId)>,
}

impl Inbox {
    fn collect(&mut self, c: &mut Cluster<BrokerNode>) {
        for id in c.ids().to_vec() {
            let (frames, closed) = c.take_client_outputs(id);
            self.frames
                .extend(frames.into_iter().map(|(conn, m)| (id, conn, m)));
            self.closed
                .extend(closed.into_iter().map(|conn| (id, conn)));
        }
    }

    /// Removes and returns the response to `correlation_id` on `conn` of `broker`, if any.
    fn response(&mut self, broker: NodeId, conn: ConnId, correlation_id: u64) -> Option<Response> {
        let at = self.frames.iter().position(|(b, cn, m)| {
            (*b, *cn) == (broker, conn)
                && matches!(m, Message::Response { correlation_id: id, .. } if *id == correlation_id)
        })?;
        match self.frames.remove(at).2 {
            Message::Response { response, .. } => Some(response),
            _ => unreachable!(),
        }
    }

    fn frames_on(&self, broker: NodeId, conn: ConnId) -> Vec<&Message> {
        self.frames
            .iter()
            .filter(|(b, cn, _)| (*b, *cn) == (broker, conn))
            .map(|(_, _, m)| m)
            .collect()
    }
}

/// A connected client: Hello, then the HelloOk is checked and dropped.
fn connect(c: &mut Cluster<BrokerNode>, inbox: &mut Inbox, broker: NodeId, conn: ConnId) {
    c.client_hello(broker, conn);
    inbox.collect(c);
    let at = inbox
        .frames
        .iter()
        .position(|(b, cn, _)| (*b, *cn) == (broker, conn))
        .expect("an answer to Hello");
    let (_, _, m) = inbox.frames.remove(at);
    assert_eq!(
        m,
        Message::HelloOk {
            version: PROTOCOL_VERSION,
            broker
        }
    );
}

fn request(
    c: &mut Cluster<BrokerNode>,
    broker: NodeId,
    conn: ConnId,
    correlation_id: u64,
    request: Request,
) {
    c.client_send(
        broker,
        conn,
        Message::Request {
            correlation_id,
            request,
        },
    );
}

fn produce(batch: Bytes, acks: Acks) -> Request {
    Request::Produce {
        partition: orders(),
        acks,
        timeout_ms: 30_000,
        batch,
    }
}

fn fetch(offset: u64, max_wait_ms: u32) -> Request {
    Request::Fetch {
        partition: orders(),
        offset,
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
    }
}

/// Steps until the response arrives or `max` passes.
fn await_response(
    c: &mut Cluster<BrokerNode>,
    inbox: &mut Inbox,
    broker: NodeId,
    conn: ConnId,
    correlation_id: u64,
    max: Duration,
) -> Option<Response> {
    let deadline = c.now() + max;
    loop {
        inbox.collect(c);
        if let Some(r) = inbox.response(broker, conn, correlation_id) {
            return Some(r);
        }
        if c.now() >= deadline || c.next_event_time().is_none_or(|t| t > deadline) {
            c.run_until(deadline);
            inbox.collect(c);
            return inbox.response(broker, conn, correlation_id);
        }
        c.step();
    }
}

fn hw(c: &Cluster<BrokerNode>, broker: NodeId) -> u64 {
    c.broker(broker)
        .replica(&orders())
        .unwrap()
        .high_watermark()
}

/// A three-broker cluster with a ready leader of `orders-0`, and that leader.
fn ready_cluster(seed: u64) -> (Cluster<BrokerNode>, NodeId) {
    ready(brokers(3, seed))
}

/// `c` once `orders/0` and the offsets partition have ready leaders; with the former's.
fn ready(mut c: Cluster<BrokerNode>) -> (Cluster<BrokerNode>, NodeId) {
    let leader = c.await_ready_leader_of(&orders(), 5 * SECOND);
    c.await_ready_leader_of(&offsets_partition(), 5 * SECOND);
    c.run_for(ms(200));
    (c, leader)
}

/// `acks=all` is answered only once the batch is committed: with the followers' fsyncs held
/// back the produce waits (Redpanda's `EveryBatch` model), and one completed follower fsync
/// releases it with the batch's offset.
#[test]
fn acks_all_produce_is_answered_only_after_commit() {
    let (mut c, leader) = ready_cluster(1);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    let followers: Vec<NodeId> = (1..=3).filter(|&b| b != leader).collect();
    for &f in &followers {
        c.set_sync_mode(f, SyncMode::Hold);
    }
    let base = hw(&c, leader);
    request(&mut c, leader, 1, 7, produce(record_batch("a"), Acks::All));

    assert_eq!(
        await_response(&mut c, &mut inbox, leader, 1, 7, ms(300)),
        None
    );
    assert_eq!(hw(&c, leader), base, "not committed, so not answered");

    c.release_syncs(followers[0]);
    let response = await_response(&mut c, &mut inbox, leader, 1, 7, SECOND);
    assert_eq!(
        response,
        Some(Response::Produce(Ok(ProduceOk { base_offset: base })))
    );
    assert!(hw(&c, leader) > base, "answered after the commit");
}

/// `acks=1` is answered as soon as the leader appended the batch, before it commits.
#[test]
fn acks_leader_produce_is_answered_on_append() {
    let (mut c, leader) = ready_cluster(2);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    for f in (1..=3).filter(|&b| b != leader) {
        c.set_sync_mode(f, SyncMode::Hold);
    }
    let base = hw(&c, leader);
    request(
        &mut c,
        leader,
        1,
        7,
        produce(record_batch("a"), Acks::Leader),
    );
    inbox.collect(&mut c);
    assert_eq!(
        inbox.response(leader, 1, 7),
        Some(Response::Produce(Ok(ProduceOk { base_offset: base }))),
        "answered within the request's own input"
    );
    assert_eq!(hw(&c, leader), base, "before the batch committed");
}

/// `acks=0` gets no response at all, yet the batch is written and commits; nor does a refused
/// one.
#[test]
fn acks_none_produce_gets_no_response() {
    let (mut c, leader) = ready_cluster(3);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    let base = hw(&c, leader);
    request(&mut c, leader, 1, 7, produce(record_batch("a"), Acks::None));
    c.run_for(SECOND);
    inbox.collect(&mut c);
    assert!(inbox.frames_on(leader, 1).is_empty(), "{:?}", inbox.frames);

    request(
        &mut c,
        leader,
        1,
        8,
        Request::ListOffsets {
            partition: orders(),
        },
    );
    inbox.collect(&mut c);
    assert_eq!(
        inbox.response(leader, 1, 8),
        Some(Response::ListOffsets(Ok(ListOffsetsOk {
            log_start: 0,
            high_watermark: base + 1
        })))
    );

    // Not even a refusal: a follower drops an `acks=0` produce silently.
    let follower = (1..=3).find(|&b| b != leader).unwrap();
    connect(&mut c, &mut inbox, follower, 2);
    request(
        &mut c,
        follower,
        2,
        9,
        produce(record_batch("b"), Acks::None),
    );
    c.run_for(ms(100));
    inbox.collect(&mut c);
    assert!(
        inbox.frames_on(follower, 2).is_empty(),
        "{:?}",
        inbox.frames
    );
}

/// A produce sent to a follower is refused with the leader's id, so the client can go there.
#[test]
fn produce_to_a_follower_names_the_leader() {
    let (mut c, leader) = ready_cluster(4);
    let mut inbox = Inbox::default();
    let follower = (1..=3).find(|&b| b != leader).unwrap();
    connect(&mut c, &mut inbox, follower, 1);
    request(
        &mut c,
        follower,
        1,
        7,
        produce(record_batch("a"), Acks::All),
    );
    inbox.collect(&mut c);
    assert_eq!(
        inbox.response(follower, 1, 7),
        Some(Response::Produce(Err(ErrorCode::NotLeader {
            leader: Some(leader)
        })))
    );
}

/// A broker that does not host a partition learns its leader from gossip, and says so in
/// metadata and in its refusals.
#[test]
fn leader_gossip_reaches_brokers_outside_the_replica_set() {
    let mut c = brokers(4, 5);
    let leader = c.await_ready_leader_of(&orders(), 5 * SECOND);
    c.run_for(SECOND);
    let outsider = (1..=4)
        .find(|&b| c.broker(b).replica(&orders()).is_none())
        .expect("with four brokers one does not host orders-0");
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, outsider, 1);
    request(&mut c, outsider, 1, 1, Request::Metadata);
    request(
        &mut c,
        outsider,
        1,
        2,
        produce(record_batch("a"), Acks::All),
    );
    inbox.collect(&mut c);
    let Some(Response::Metadata { partitions, .. }) = inbox.response(outsider, 1, 1) else {
        panic!("no metadata: {:?}", inbox.frames);
    };
    let m = partitions.iter().find(|p| p.partition == orders()).unwrap();
    assert_eq!(m.leader, Some(leader));
    assert_eq!(
        m.leader_epoch,
        c.broker(leader).replica(&orders()).unwrap().term()
    );
    assert_eq!(
        inbox.response(outsider, 1, 2),
        Some(Response::Produce(Err(ErrorCode::NotLeader {
            leader: Some(leader)
        })))
    );
}

/// Long poll: a fetch at the end of the committed log with `min_bytes = 1` waits, and is
/// answered with the batch once a produce commits it.
#[test]
fn fetch_long_polls_until_a_batch_commits() {
    let (mut c, leader) = ready_cluster(6);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    connect(&mut c, &mut inbox, leader, 2);
    let at = hw(&c, leader);
    request(&mut c, leader, 1, 1, fetch(at, 10_000));
    assert_eq!(
        await_response(&mut c, &mut inbox, leader, 1, 1, SECOND),
        None
    );

    request(&mut c, leader, 2, 1, produce(record_batch("x"), Acks::All));
    let fetched = await_response(&mut c, &mut inbox, leader, 1, 1, SECOND);
    let Some(Response::Fetch(Ok(ok))) = fetched else {
        panic!("fetch not answered: {fetched:?}");
    };
    assert_eq!(keys_of(&ok.batches), vec![(at, "x".to_string())]);
    assert_eq!(ok.high_watermark, at + 1);
    assert!(hw(&c, leader) > at, "the fetch saw only committed data");
}

/// BUGGIFY's held fetch: with `replication.buggify` on, some long-poll fetches whose records
/// are already committed are answered only at their deadline, with those records; with it off,
/// every such fetch is answered at once.
#[test]
fn buggify_holds_some_answerable_fetches_to_their_deadline() {
    for buggify in [false, true] {
        let mut config = cluster_config(
            3,
            vec![TopicConfig {
                name: "orders".into(),
                partitions: 1,
                replication_factor: 3,
            }],
        );
        config.replication.buggify = buggify;
        let mut c = broker_cluster(21, config, BrokerLimits::default());
        let leader = c.await_ready_leader_of(&orders(), 5 * SECOND);
        c.run_for(ms(200));
        let mut inbox = Inbox::default();
        connect(&mut c, &mut inbox, leader, 1);
        let at = hw(&c, leader);
        request(&mut c, leader, 1, 1, produce(record_batch("x"), Acks::All));
        assert!(await_response(&mut c, &mut inbox, leader, 1, 1, SECOND).is_some());
        let (mut at_once, mut held) = (0, 0);
        for correlation_id in 2..42 {
            request(&mut c, leader, 1, correlation_id, fetch(at, 300));
            inbox.collect(&mut c);
            if inbox.response(leader, 1, correlation_id).is_some() {
                at_once += 1;
                continue;
            }
            let sent = c.now();
            let answer = await_response(&mut c, &mut inbox, leader, 1, correlation_id, SECOND);
            let Some(Response::Fetch(Ok(ok))) = answer else {
                panic!("held fetch not answered: {answer:?}");
            };
            assert!(c.now() - sent >= ms(300), "held to its deadline");
            assert_eq!(keys_of(&ok.batches), vec![(at, "x".to_string())]);
            held += 1;
        }
        match buggify {
            false => assert_eq!(held, 0),
            true => assert!(held > 0 && at_once > held, "{held} held, {at_once} at once"),
        }
    }
}

/// A fetch past the end of the leader's log means the consumer saw records this log does not
/// have: `OffsetOutOfRange`, at once.
#[test]
fn fetch_past_the_log_end_is_out_of_range() {
    let (mut c, leader) = ready_cluster(7);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    let end = c
        .broker(leader)
        .replica(&orders())
        .unwrap()
        .log()
        .end_offset();
    request(&mut c, leader, 1, 1, fetch(end + 5, 10_000));
    inbox.collect(&mut c);
    assert_eq!(
        inbox.response(leader, 1, 1),
        Some(Response::Fetch(Err(ErrorCode::OffsetOutOfRange)))
    );
}

/// Offset commits go through the replicated offsets partition: a committed offset is returned by
/// OffsetFetch, and still is after every broker crashed and restarted, rebuilt by replaying the
/// offsets partition.
#[test]
fn committed_offsets_survive_a_restart_of_every_broker() {
    let (mut c, _) = ready_cluster(8);
    let mut inbox = Inbox::default();
    let coordinator = c.await_ready_leader_of(&offsets_partition(), SECOND);
    connect(&mut c, &mut inbox, coordinator, 1);
    let commit = Request::OffsetCommit {
        group: "g".into(),
        partition: orders(),
        offset: 42,
    };
    request(&mut c, coordinator, 1, 1, commit);
    assert_eq!(
        await_response(&mut c, &mut inbox, coordinator, 1, 1, SECOND),
        Some(Response::OffsetCommit(Ok(())))
    );
    let offset_fetch = Request::OffsetFetch {
        group: "g".into(),
        partition: orders(),
    };
    request(&mut c, coordinator, 1, 2, offset_fetch.clone());
    inbox.collect(&mut c);
    assert_eq!(
        inbox.response(coordinator, 1, 2),
        Some(Response::OffsetFetch(Ok(Some(42))))
    );

    for b in 1..=3 {
        c.crash(b);
    }
    for b in 1..=3 {
        c.restart(b);
    }
    let coordinator = c.await_ready_leader_of(&offsets_partition(), 5 * SECOND);
    connect(&mut c, &mut inbox, coordinator, 2);
    let mut answer = None;
    for correlation_id in 1..100 {
        request(&mut c, coordinator, 2, correlation_id, offset_fetch.clone());
        inbox.collect(&mut c);
        answer = inbox.response(coordinator, 2, correlation_id);
        if answer != Some(Response::OffsetFetch(Err(ErrorCode::LeaderNotReady))) {
            break;
        }
        c.run_for(ms(10));
    }
    assert_eq!(answer, Some(Response::OffsetFetch(Ok(Some(42)))));
    request(
        &mut c,
        coordinator,
        2,
        1000,
        Request::OffsetFetch {
            group: "other".into(),
            partition: orders(),
        },
    );
    inbox.collect(&mut c);
    assert_eq!(
        inbox.response(coordinator, 2, 1000),
        Some(Response::OffsetFetch(Ok(None)))
    );
}

/// The first frame on a connection must be Hello: a request before it gets a `ProtocolError`
/// and the connection is closed.
#[test]
fn request_before_hello_is_a_protocol_error() {
    let (mut c, leader) = ready_cluster(9);
    let mut inbox = Inbox::default();
    request(&mut c, leader, 1, 1, Request::Metadata);
    inbox.collect(&mut c);
    let frames = inbox.frames_on(leader, 1);
    assert!(
        matches!(frames[..], [Message::ProtocolError { .. }]),
        "{frames:?}"
    );
    assert_eq!(inbox.closed, vec![(leader, 1)]);
}

/// A Hello with another protocol version is refused the same way.
#[test]
fn hello_with_another_version_is_a_protocol_error() {
    let (mut c, leader) = ready_cluster(10);
    let mut inbox = Inbox::default();
    c.client_send(
        leader,
        1,
        Message::Hello {
            version: PROTOCOL_VERSION + 1,
            peer: Peer::Client("old".into()),
        },
    );
    inbox.collect(&mut c);
    let frames = inbox.frames_on(leader, 1);
    assert!(
        matches!(frames[..], [Message::ProtocolError { .. }]),
        "{frames:?}"
    );
    assert_eq!(inbox.closed, vec![(leader, 1)]);
    request(&mut c, leader, 1, 1, Request::Metadata);
    inbox.collect(&mut c);
    assert!(
        matches!(
            inbox.frames_on(leader, 1)[1..],
            [Message::ProtocolError { .. }]
        ),
        "the refused Hello did not open the connection"
    );
}

/// A leader that loses its quorum steps down and answers everyone waiting on it: a produce
/// whose batch may or may not commit under the next leader gets `LeaderChanged`, a long poll
/// `NotLeader`.
#[test]
fn waiters_of_a_leader_that_steps_down_are_answered() {
    let (mut c, leader) = ready_cluster(11);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    let at = hw(&c, leader);
    request(&mut c, leader, 1, 1, fetch(at, 30_000));
    c.isolate(leader);
    request(
        &mut c,
        leader,
        1,
        2,
        produce(record_batch("lost"), Acks::All),
    );
    let produced = await_response(&mut c, &mut inbox, leader, 1, 2, 2 * SECOND);
    assert_eq!(
        produced,
        Some(Response::Produce(Err(ErrorCode::LeaderChanged)))
    );
    assert!(!c.broker(leader).replica(&orders()).unwrap().is_leader());
    let fetched = await_response(&mut c, &mut inbox, leader, 1, 1, ms(1));
    assert!(
        matches!(
            fetched,
            Some(Response::Fetch(Err(ErrorCode::NotLeader { .. })))
        ),
        "{fetched:?}"
    );
}

/// A stamped batch from the log reads back as what was produced (guards `keys_of` itself).
#[test]
fn produced_batch_is_stored_as_sent() {
    let b = record_batch("k");
    let stamped = batch::stamp(&b, 5, 2);
    assert_eq!(keys_of(&[stamped]), vec![(5, "k".to_string())]);
}

/// End to end under faults: every `acks=all` produce that a broker answered `Ok` is, at the
/// offset the answer named, in the committed log the cluster converges on, through message
/// loss, partitions, slow fsyncs and crashes of any broker.
///
/// Reference: Raft thesis §3.6.3 (state machine safety), as a client sees it: an answer `Ok`
/// is a promise that the batch is committed.
#[test]
fn acknowledged_produces_survive_faults() {
    use crate::testkit::NetFaults;
    use std::collections::BTreeSet;

    let mut acked_total = 0;
    for seed in 0..20u64 {
        let mut c = brokers(3, seed);
        c.faults = NetFaults {
            drop_probability: 0.05,
            delay_min: Duration::ZERO,
            delay_max: ms(10),
        };
        let mut inbox = Inbox::default();
        // Connections opened, by (broker, incarnation): a restarted broker forgets them.
        let mut connected: BTreeSet<(NodeId, u64)> = BTreeSet::new();
        let mut sent: Vec<(NodeId, ConnId, u64, String)> = Vec::new();
        let mut acked: Vec<(u64, String)> = Vec::new();
        let end = c.now() + 15 * SECOND;
        let mut next = c.now();
        let mut n = 0u64;
        while c.now() < end {
            if c.now() >= next {
                next = c.now() + ms(c.rng().range_u64(10, 200));
                let target = c.rng().range_u64(1, 3) as NodeId;
                match c.rng().range_u64(0, 19) {
                    0 => c.isolate(target),
                    1 => c.heal(),
                    2 if c.is_up(target) => c.crash(target),
                    3 if !c.is_up(target) => c.restart(target),
                    4 => {
                        let d = ms(c.rng().range_u64(0, 30));
                        c.set_sync_mode(target, SyncMode::Delay(d));
                    }
                    _ => {}
                }
                if let Some(leader) = c.ready_leader_of(&orders()) {
                    let conn = 100 + c.incarnation(leader);
                    if connected.insert((leader, c.incarnation(leader))) {
                        connect(&mut c, &mut inbox, leader, conn);
                    }
                    let key = format!("s{seed}-{n}");
                    n += 1;
                    request(
                        &mut c,
                        leader,
                        conn,
                        n,
                        produce(record_batch(&key), Acks::All),
                    );
                    sent.push((leader, conn, n, key));
                }
            }
            // With every broker down nothing is pending: move the clock on to the next action.
            if c.next_event_time().is_some_and(|t| t <= next) {
                c.step();
            } else {
                c.run_until(next);
            }
            inbox.collect(&mut c);
            sent.retain(|(b, conn, id, key)| match inbox.response(*b, *conn, *id) {
                Some(Response::Produce(Ok(ok))) => {
                    acked.push((ok.base_offset, key.clone()));
                    false
                }
                Some(_) => false,
                None => true,
            });
        }
        c.heal();
        c.faults.drop_probability = 0.0;
        for b in 1..=3 {
            if !c.is_up(b) {
                c.restart(b);
            }
            c.set_sync_mode(b, SyncMode::Immediate);
        }
        let leader = c.await_ready_leader_of(&orders(), 10 * SECOND);
        c.run_for(SECOND);
        let r = c.broker(leader).replica(&orders()).unwrap();
        let log = keys_of(&r.log().read(0, r.high_watermark(), usize::MAX));
        for a in &acked {
            assert!(
                log.contains(a),
                "seed {seed}: acknowledged {a:?} is not in the committed log"
            );
        }
        acked_total += acked.len();
    }
    assert!(
        acked_total > 500,
        "only {acked_total} produces were acknowledged"
    );
}

/// Clients write neither the offsets topic (only offset commits do) nor control batches (only
/// leaders do): either would let a client forge offsets or hide records from consumers.
#[test]
fn clients_cannot_write_the_offsets_topic_or_control_batches() {
    let (mut c, leader) = ready_cluster(21);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    request(
        &mut c,
        leader,
        1,
        1,
        Request::Produce {
            partition: offsets_partition(),
            acks: Acks::All,
            timeout_ms: 1_000,
            batch: record_batch("forged"),
        },
    );
    request(
        &mut c,
        leader,
        1,
        2,
        produce(batch::build_control(1), Acks::All),
    );
    inbox.collect(&mut c);
    assert_eq!(
        inbox.response(leader, 1, 1),
        Some(Response::Produce(Err(ErrorCode::UnknownPartition)))
    );
    assert_eq!(
        inbox.response(leader, 1, 2),
        Some(Response::Produce(Err(ErrorCode::CorruptBatch)))
    );
}

/// Replication traffic is accepted only from the broker it claims to come from: a client that
/// sends it is cut off, and the partition's term does not move.
#[test]
fn replication_messages_from_a_client_are_refused() {
    let (mut c, leader) = ready_cluster(22);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    let term = c.broker(leader).replica(&orders()).unwrap().term();
    let other = (1..=3).find(|&b| b != leader).unwrap();
    c.client_send(
        leader,
        1,
        Message::Raft(crate::replication::RaftEnvelope {
            partition: orders(),
            from: other,
            to: leader,
            msg: crate::replication::RaftMessage::Vote {
                term: term + 10,
                pre_vote: false,
                last_end: u64::MAX,
                last_epoch: u64::MAX,
            },
        }),
    );
    inbox.collect(&mut c);
    assert!(
        matches!(
            inbox.frames_on(leader, 1)[..],
            [Message::ProtocolError { .. }]
        ),
        "{:?}",
        inbox.frames_on(leader, 1)
    );
    assert_eq!(inbox.closed, vec![(leader, 1)]);
    assert_eq!(c.broker(leader).replica(&orders()).unwrap().term(), term);
}

/// A one-record batch of idempotent producer `pid` at `epoch` with sequence `seq`.
fn idempotent_batch(key: &str, pid: u64, epoch: u16, seq: u32) -> Bytes {
    batch::set_producer(&record_batch(key), pid, epoch, seq)
}

/// Moves leadership of `orders-0` away from `leader` (isolated until another broker leads,
/// then healed); returns the new leader.
fn change_leader(c: &mut Cluster<BrokerNode>, leader: NodeId) -> NodeId {
    c.isolate(leader);
    assert!(c.run_until_cond(5 * SECOND, |c| c
        .ready_leader_of(&orders())
        .is_some_and(|l| l != leader)));
    let new_leader = c.ready_leader_of(&orders()).unwrap();
    c.heal();
    c.run_for(SECOND);
    assert_eq!(c.ready_leader_of(&orders()), Some(new_leader));
    new_leader
}

/// Claim P4 across a leader change: a retry of a batch the old leader committed reaches the new
/// leader, which rebuilt the producer's sequences from its own log: it answers with the original
/// offset and appends nothing. A batch that skips a sequence number is refused with
/// `OutOfOrderSequence`, and one from an older epoch with `ProducerFenced`.
#[test]
fn duplicate_after_a_leader_change_gets_the_original_offset() {
    let (mut c, leader) = ready_cluster(31);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    let first = idempotent_batch("a", 77, 0, 0);
    request(&mut c, leader, 1, 1, produce(first.clone(), Acks::All));
    let Some(Response::Produce(Ok(ProduceOk { base_offset }))) =
        await_response(&mut c, &mut inbox, leader, 1, 1, SECOND)
    else {
        panic!("not produced: {:?}", inbox.frames);
    };

    let new_leader = change_leader(&mut c, leader);
    connect(&mut c, &mut inbox, new_leader, 2);
    request(&mut c, new_leader, 2, 1, produce(first, Acks::All));
    assert_eq!(
        await_response(&mut c, &mut inbox, new_leader, 2, 1, SECOND),
        Some(Response::Produce(Ok(ProduceOk { base_offset })))
    );
    let r = c.broker(new_leader).replica(&orders()).unwrap();
    let keys = keys_of(&r.log().read(0, r.log().end_offset(), usize::MAX));
    assert_eq!(
        keys,
        vec![(base_offset, "a".to_string())],
        "not appended again"
    );

    let gap = idempotent_batch("c", 77, 0, 2);
    request(&mut c, new_leader, 2, 2, produce(gap, Acks::All));
    assert_eq!(
        await_response(&mut c, &mut inbox, new_leader, 2, 2, SECOND),
        Some(Response::Produce(Err(ErrorCode::OutOfOrderSequence)))
    );
    let next_epoch = idempotent_batch("d", 77, 1, 0);
    request(&mut c, new_leader, 2, 3, produce(next_epoch, Acks::All));
    assert!(matches!(
        await_response(&mut c, &mut inbox, new_leader, 2, 3, SECOND),
        Some(Response::Produce(Ok(_)))
    ));
    let old_epoch = idempotent_batch("b", 77, 0, 1);
    request(&mut c, new_leader, 2, 4, produce(old_epoch, Acks::All));
    assert_eq!(
        await_response(&mut c, &mut inbox, new_leader, 2, 4, SECOND),
        Some(Response::Produce(Err(ErrorCode::ProducerFenced)))
    );
}

/// A batch an isolated leader appended but never committed is truncated away when the new
/// leader's log wins. It is not in the log, so its retry is appended, not taken for a duplicate
/// of what the old leader had.
#[test]
fn retry_of_a_batch_truncated_away_is_appended() {
    let (mut c, leader) = ready_cluster(32);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    let lost = idempotent_batch("lost", 78, 0, 0);
    c.isolate(leader);
    request(&mut c, leader, 1, 1, produce(lost.clone(), Acks::All));
    assert_eq!(
        await_response(&mut c, &mut inbox, leader, 1, 1, 2 * SECOND),
        Some(Response::Produce(Err(ErrorCode::LeaderChanged)))
    );
    assert!(c.run_until_cond(5 * SECOND, |c| c
        .ready_leader_of(&orders())
        .is_some_and(|l| l != leader)));
    let new_leader = c.ready_leader_of(&orders()).unwrap();
    c.heal();
    c.run_for(SECOND);
    let old = c.broker(leader).replica(&orders()).unwrap();
    let old_keys = keys_of(&old.log().read(0, old.log().end_offset(), usize::MAX));
    assert!(old_keys.is_empty(), "truncated away: {old_keys:?}");

    connect(&mut c, &mut inbox, new_leader, 2);
    request(&mut c, new_leader, 2, 1, produce(lost, Acks::All));
    let Some(Response::Produce(Ok(ProduceOk { base_offset }))) =
        await_response(&mut c, &mut inbox, new_leader, 2, 1, SECOND)
    else {
        panic!("not produced: {:?}", inbox.frames);
    };
    let r = c.broker(new_leader).replica(&orders()).unwrap();
    let keys = keys_of(&r.log().read(0, r.high_watermark(), usize::MAX));
    assert_eq!(keys, vec![(base_offset, "lost".to_string())]);
}

/// `InitProducerId` is answered only once the broker's new incarnation is durable, and a
/// restarted broker hands out ids it never handed out before.
#[test]
fn producer_ids_wait_for_the_incarnation_sync_and_differ_after_a_restart() {
    let (mut c, leader) = ready_cluster(33);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    c.set_sync_mode(leader, SyncMode::Hold);
    request(&mut c, leader, 1, 1, Request::InitProducerId);
    assert_eq!(
        await_response(&mut c, &mut inbox, leader, 1, 1, ms(300)),
        None,
        "not before the sync"
    );
    c.set_sync_mode(leader, SyncMode::Immediate);
    c.release_syncs(leader);
    let Some(Response::InitProducerId(Ok(first))) =
        await_response(&mut c, &mut inbox, leader, 1, 1, SECOND)
    else {
        panic!("no id: {:?}", inbox.frames);
    };
    request(&mut c, leader, 1, 2, Request::InitProducerId);
    inbox.collect(&mut c);
    let Some(Response::InitProducerId(Ok(second))) = inbox.response(leader, 1, 2) else {
        panic!("no second id: {:?}", inbox.frames);
    };
    assert_ne!(first.producer_id, second.producer_id);
    assert_eq!(first.producer_epoch, 0);

    c.crash(leader);
    c.restart(leader);
    c.run_for(ms(100));
    connect(&mut c, &mut inbox, leader, 2);
    request(&mut c, leader, 2, 1, Request::InitProducerId);
    let Some(Response::InitProducerId(Ok(third))) =
        await_response(&mut c, &mut inbox, leader, 2, 1, SECOND)
    else {
        panic!("no id after the restart: {:?}", inbox.frames);
    };
    assert!(
        third.producer_id > second.producer_id,
        "a later incarnation"
    );
}

/// A compressed batch is checked (decompressed) on append but stored and served as sent, and a
/// consumer decodes it; one whose block is damaged under a valid checksum is refused.
#[test]
fn compressed_batch_is_stored_as_sent_and_a_corrupt_one_refused() {
    let (mut c, leader) = ready_cluster(34);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    let records: Vec<batch::NewRecord> = (0..10)
        .map(|i| batch::NewRecord {
            timestamp_ns: i,
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from(vec![b'z'; 300]),
        })
        .collect();
    let compressed = batch::build_with(&records, batch::Compression::Lz4);
    assert!(batch::parse(&compressed).unwrap().is_compressed());
    let at = hw(&c, leader);
    request(&mut c, leader, 1, 1, produce(compressed.clone(), Acks::All));
    assert!(matches!(
        await_response(&mut c, &mut inbox, leader, 1, 1, SECOND),
        Some(Response::Produce(Ok(_)))
    ));
    request(&mut c, leader, 1, 2, fetch(at, 0));
    inbox.collect(&mut c);
    let Some(Response::Fetch(Ok(ok))) = inbox.response(leader, 1, 2) else {
        panic!("no fetch answer: {:?}", inbox.frames);
    };
    assert_eq!(ok.batches.len(), 1);
    assert_eq!(ok.batches[0].len(), compressed.len(), "stored compressed");
    let keys: Vec<String> = keys_of(&ok.batches).into_iter().map(|(_, k)| k).collect();
    assert_eq!(keys, (0..10).map(|i| format!("k{i}")).collect::<Vec<_>>());

    // The block claims more bytes than it holds.
    let mut bad = compressed.to_vec();
    let at = batch::HEADER_BYTES + 3;
    bad[at] = bad[at].wrapping_add(10);
    let resealed = batch::stamp(&bad, 0, 0);
    request(&mut c, leader, 1, 3, produce(resealed, Acks::All));
    inbox.collect(&mut c);
    assert_eq!(
        inbox.response(leader, 1, 3),
        Some(Response::Produce(Err(ErrorCode::CorruptBatch)))
    );
}

/// Read visibility: a fetch never returns records above the high watermark while the leader's
/// log end is above it (the `acks=1` records its followers have not made durable yet) — not when
/// answered at once, not from below the high watermark, and not when a long poll expires.
#[test]
fn fetch_never_returns_records_above_the_high_watermark() {
    let (mut c, leader) = ready_cluster(11);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    let base = hw(&c, leader);
    request(
        &mut c,
        leader,
        1,
        1,
        produce(record_batch("committed"), Acks::All),
    );
    assert!(await_response(&mut c, &mut inbox, leader, 1, 1, SECOND).is_some());
    let committed = hw(&c, leader);
    assert_eq!(committed, base + 1);

    for f in (1..=3).filter(|&b| b != leader) {
        c.set_sync_mode(f, SyncMode::Hold);
    }
    request(
        &mut c,
        leader,
        1,
        2,
        produce(record_batch("pending"), Acks::Leader),
    );
    assert!(await_response(&mut c, &mut inbox, leader, 1, 2, SECOND).is_some());
    let log_end = c
        .broker(leader)
        .replica(&orders())
        .unwrap()
        .log()
        .end_offset();
    assert_eq!((hw(&c, leader), log_end), (committed, committed + 1));

    request(&mut c, leader, 1, 3, fetch(base, 0));
    let Some(Response::Fetch(Ok(ok))) = await_response(&mut c, &mut inbox, leader, 1, 3, SECOND)
    else {
        panic!("fetch from below the high watermark not answered");
    };
    assert_eq!(keys_of(&ok.batches), vec![(base, "committed".to_string())]);
    assert_eq!(ok.high_watermark, committed);

    // At the high watermark the long poll waits, and its expiry answers with nothing.
    request(&mut c, leader, 1, 4, fetch(committed, 200));
    let Some(Response::Fetch(Ok(ok))) = await_response(&mut c, &mut inbox, leader, 1, 4, SECOND)
    else {
        panic!("long poll not answered at its deadline");
    };
    assert!(
        ok.batches.is_empty(),
        "uncommitted records returned: {ok:?}"
    );
    assert_eq!(ok.high_watermark, committed);
    assert_eq!(hw(&c, leader), committed, "still not committed");
}

/// A fetch asking for every byte a u32 can name is served like any other (its `max_bytes` is
/// capped at `FETCH_BYTES_MAX`, under the frame limit by a compile-time assertion).
#[test]
fn a_fetch_asking_for_u32_max_bytes_is_served() {
    let (mut c, leader) = ready_cluster(12);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    let base = hw(&c, leader);
    request(&mut c, leader, 1, 1, produce(record_batch("a"), Acks::All));
    assert!(await_response(&mut c, &mut inbox, leader, 1, 1, SECOND).is_some());
    let huge = Request::Fetch {
        partition: orders(),
        offset: base,
        max_wait_ms: 0,
        min_bytes: u32::MAX,
        max_bytes: u32::MAX,
    };
    request(&mut c, leader, 1, 2, huge);
    let Some(Response::Fetch(Ok(ok))) = await_response(&mut c, &mut inbox, leader, 1, 2, SECOND)
    else {
        panic!("fetch not answered");
    };
    assert_eq!(keys_of(&ok.batches), vec![(base, "a".to_string())]);
}

/// Two leaders in one term (§3.6.3 broken by a voter that forgot its vote) is counted by the
/// broker, not fatal: the leader's broker keeps answering produces.
#[test]
fn a_second_leader_in_a_term_is_counted_and_the_broker_keeps_serving() {
    let (mut c, leader) = ready_cluster(13);
    let other = (1..=3).find(|&b| b != leader).unwrap();
    let term = c.broker(leader).replica(&orders()).unwrap().term();
    let rogue = RaftEnvelope {
        partition: orders(),
        from: other,
        to: leader,
        msg: crate::replication::RaftMessage::Append {
            term,
            prev_end: 0,
            prev_epoch: 0,
            batches: Vec::new(),
            commit: 0,
        },
    };
    c.inject(leader, other, Message::Raft(rogue));
    assert_eq!(c.broker(leader).leader_conflicts(), 1);
    let mut inbox = Inbox::default();
    connect(&mut c, &mut inbox, leader, 1);
    request(&mut c, leader, 1, 1, produce(record_batch("a"), Acks::All));
    let response = await_response(&mut c, &mut inbox, leader, 1, 1, SECOND);
    assert!(
        matches!(response, Some(Response::Produce(Ok(_)))),
        "{response:?}"
    );
}

mod share;
