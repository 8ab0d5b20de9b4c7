//! Several connections per broker: the producer spreads partitions over lanes, each partition
//! always on the same lane so its requests stay in order, and losing one lane's connection
//! touches only the requests in flight on it.

use crate::time::MillisRange;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::harness::*;
use crate::client::{Producer, ProducerConfig, ProducerEvent};
use crate::ids::TopicPartition;
use crate::protocol::{Acks, Message, Request};
use crate::rng::Rng;
use std::num::NonZeroU16;

fn net(connections_per_broker: u16) -> Net<Producer> {
    let partitions: Vec<(TopicPartition, u32)> = (0..4).map(|p| (tp("t", p), 2)).collect();
    let cluster = FakeCluster::new(&[1, 2, 3], &partitions, &[1]);
    let config = ProducerConfig {
        acks: Acks::All,
        linger_ms: 0,
        request_timeout_ms: 200,
        retry_backoff_ms: MillisRange {
            min_ms: 10,
            max_ms: 100,
        },
        metadata_refresh_backoff_ms: 50,
        retries_max: u32::MAX,
        delivery_timeout_ms: 120_000,
        connections_per_broker: NonZeroU16::new(connections_per_broker).expect("not zero"),
        attempt_events: true,
        ..ProducerConfig::default()
    };
    Net::new(
        Producer::new(config, bootstrap(&[1, 2, 3]), Rng::new(1)),
        cluster,
    )
}

fn send_round(net: &mut Net<Producer>, round: u32) {
    for p in 0..4 {
        net.input(|c, now| {
            c.send(
                now,
                tp("t", p),
                format!("r{round}-{p}"),
                Bytes::from_static(b"v"),
            )
        })
        .unwrap();
    }
}

/// `(partition, lane)` of every produce request.
fn produce_lanes(net: &Net<Producer>) -> Vec<(u32, u16)> {
    net.sent
        .iter()
        .filter_map(|(_, t)| match &t.msg {
            Message::Request {
                request: Request::Produce { partition, .. },
                ..
            } => Some((partition.partition, t.lane)),
            _ => None,
        })
        .collect()
}

#[test]
fn partitions_spread_over_two_lanes_and_keep_theirs() {
    let mut net = net(2);
    for round in 0..3 {
        send_round(&mut net, round);
        net.run_for(ms(100));
    }
    let lanes = produce_lanes(&net);
    assert_eq!(lanes.len(), 12);
    let mut by_partition: BTreeMap<u32, BTreeSet<u16>> = BTreeMap::new();
    for (p, lane) in &lanes {
        by_partition.entry(*p).or_default().insert(*lane);
    }
    assert!(
        by_partition.values().all(|l| l.len() == 1),
        "one lane per partition: {by_partition:?}"
    );
    let used: BTreeSet<u16> = lanes.iter().map(|(_, l)| *l).collect();
    assert_eq!(used, BTreeSet::from([0, 1]), "both lanes carry produces");
    let other: BTreeSet<u16> = net
        .sent
        .iter()
        .filter(|(_, t)| !matches!(&t.msg, Message::Request { request, .. } if is_produce(request)))
        .map(|(_, t)| t.lane)
        .collect();
    assert_eq!(other, BTreeSet::from([0]), "metadata on lane 0");

    let single = {
        let mut net = super::lanes::net(1);
        send_round(&mut net, 0);
        net.run_for(ms(100));
        produce_lanes(&net)
    };
    assert!(
        single.iter().all(|(_, l)| *l == 0),
        "one connection by default"
    );
}

/// A lost lane fails (as unknown, then retries) only the requests in flight on it.
#[test]
fn losing_one_lane_retries_only_its_requests() {
    let mut net = net(2);
    send_round(&mut net, 0);
    net.run_for(ms(100));
    net.events.clear();
    net.set_fate(|_, t| match &t.msg {
        Message::Request { request, .. } if is_produce(request) => Fate::Drop,
        _ => Fate::Deliver,
    });
    send_round(&mut net, 1);
    let lane_of: BTreeMap<u32, u16> = (0..4)
        .map(|p| (p, net.client.lane_of(&tp("t", p))))
        .collect();
    net.input(|c, now| c.handle_lane_disconnected(now, 2, 1));
    let failed: BTreeSet<u32> = net
        .events
        .iter()
        .filter_map(|e| match e {
            ProducerEvent::Attempt {
                partition, outcome, ..
            } => {
                assert_eq!(
                    outcome.as_ref().unwrap_err(),
                    "connection lost with the request in flight"
                );
                Some(partition.partition)
            }
            _ => None,
        })
        .collect();
    let on_lane_1: BTreeSet<u32> = lane_of
        .iter()
        .filter(|(_, l)| **l == 1)
        .map(|(p, _)| *p)
        .collect();
    assert!(!on_lane_1.is_empty());
    assert_eq!(failed, on_lane_1);
    assert_eq!(net.client.in_flight(), 4 - on_lane_1.len());
}
