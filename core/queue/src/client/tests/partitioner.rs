//! Partitioners of `send_to_topic`: a key always maps to the same partition, whatever the
//! producer's seed; round robin takes partitions in turn; sticky fills one partition's batch
//! before moving on; records wait (bounded) until the topic's partition count is known.

use crate::time::MillisRange;
use std::collections::BTreeSet;

use bytes::Bytes;

use super::harness::*;
use crate::client::partitioner::key_hash_partition;
use crate::client::producer::UNKNOWN_PARTITION;
use crate::client::{Partitioner, Producer, ProducerConfig, ProducerEvent};
use crate::ids::TopicPartition;
use crate::protocol::{Acks, Request};
use crate::rng::Rng;

fn config(partitioner: Partitioner) -> ProducerConfig {
    ProducerConfig {
        acks: Acks::All,
        linger_ms: 0,
        retry_backoff_ms: MillisRange {
            min_ms: 10,
            max_ms: 100,
        },
        request_timeout_ms: 200,
        delivery_timeout_ms: 5_000,
        metadata_refresh_backoff_ms: 50,
        retries_max: u32::MAX,
        partitioner,
        ..ProducerConfig::default()
    }
}

fn net(config: ProducerConfig, seed: u64) -> Net<Producer> {
    let partitions = [(tp("t", 0), 1), (tp("t", 1), 2), (tp("t", 2), 3)];
    let cluster = FakeCluster::new(&[1, 2, 3], &partitions, &[1]);
    Net::new(
        Producer::new(config, bootstrap(&[1, 2, 3]), Rng::new(seed)),
        cluster,
    )
}

fn send(net: &mut Net<Producer>, key: Option<&str>, id: &str) -> Option<TopicPartition> {
    net.input(|p, now| {
        p.send_to_topic(
            now,
            "t",
            key.map(str::as_bytes),
            id.to_string(),
            Bytes::from_static(b"v"),
        )
    })
    .unwrap()
}

/// Learns the partition count with one record, then forgets its event.
fn warm_up(net: &mut Net<Producer>) {
    assert_eq!(
        send(net, Some("warm-up"), "warm-up"),
        None,
        "count not known yet"
    );
    net.run_for(ms(200));
    assert_eq!(net.events.len(), 1);
    net.events.clear();
}

fn delivered(net: &Net<Producer>) -> Vec<(String, TopicPartition, bool)> {
    net.events
        .iter()
        .filter_map(|e| match e {
            ProducerEvent::Delivered {
                id,
                partition,
                result,
            } => Some((id.clone(), partition.clone(), result.is_ok())),
            _ => None,
        })
        .collect()
}

#[test]
fn key_hash_maps_a_key_to_the_same_partition_for_any_seed() {
    let mut seen = Vec::new();
    for seed in [1, 2] {
        let mut net = net(config(Partitioner::KeyHash), seed);
        warm_up(&mut net);
        let placed: Vec<u32> = (0..20)
            .map(|i| {
                let key = format!("customer-{}", i % 5);
                let p = send(&mut net, Some(&key), &format!("r{i}")).unwrap();
                assert_eq!(p.partition, key_hash_partition(key.as_bytes(), 3));
                p.partition
            })
            .collect();
        seen.push(placed);
    }
    assert_eq!(seen[0], seen[1]);
    let used: BTreeSet<u32> = seen[0].iter().copied().collect();
    assert!(used.len() > 1, "five keys spread over several partitions");
    // CRC32C is fixed by its specification: this value holds on every machine and release.
    assert_eq!(
        key_hash_partition(b"123456789", 1 << 31),
        0xE306_9283 % (1 << 31)
    );
}

#[test]
fn round_robin_takes_partitions_in_turn() {
    let mut net = net(config(Partitioner::RoundRobin), 1);
    warm_up(&mut net);
    let placed: Vec<u32> = (0..6)
        .map(|i| {
            send(&mut net, Some("same key"), &format!("r{i}"))
                .unwrap()
                .partition
        })
        .collect();
    assert_eq!(placed, vec![1, 2, 0, 1, 2, 0], "the key is ignored");
}

/// With a linger, records join one partition's open batch; once it is handed out the next
/// records move to another partition.
#[test]
fn sticky_fills_one_batch_then_moves_on() {
    let mut net = net(
        ProducerConfig {
            linger_ms: 50,
            ..config(Partitioner::Sticky)
        },
        1,
    );
    warm_up(&mut net);
    let first: Vec<u32> = (0..5)
        .map(|i| send(&mut net, None, &format!("a{i}")).unwrap().partition)
        .collect();
    assert!(first.iter().all(|p| *p == first[0]), "{first:?}");
    net.run_for(ms(100));
    let second: Vec<u32> = (0..5)
        .map(|i| send(&mut net, None, &format!("b{i}")).unwrap().partition)
        .collect();
    assert!(second.iter().all(|p| *p == second[0]), "{second:?}");
    assert_ne!(first[0], second[0], "moved on after the batch was sent");
    net.run_for(ms(200));
    let produce = net.requests().into_iter().filter(|r| is_produce(&r.2));
    assert_eq!(produce.count(), 3, "warm-up, then one batch each");
    assert!(delivered(&net).iter().all(|d| d.2));
}

/// Records for a topic whose partition count is unknown wait for metadata; if it never names
/// the topic they fail definitely at the delivery timeout.
#[test]
fn records_wait_for_the_partition_count_and_fail_if_it_never_comes() {
    let mut net = net(config(Partitioner::KeyHash), 1);
    assert_eq!(send(&mut net, Some("k"), "x"), None);
    net.input(|p, now| p.send_to_topic(now, "missing", None, "y".into(), Bytes::from_static(b"v")))
        .unwrap();
    net.run_for(ms(6_000));
    let d = delivered(&net);
    assert_eq!(d.len(), 2);
    let p = key_hash_partition(b"k", 3);
    assert_eq!(d[0], ("x".into(), tp("t", p), true));
    assert_eq!(d[1], ("y".into(), tp("missing", UNKNOWN_PARTITION), false));
    let ProducerEvent::Delivered { result, .. } = &net.events[1] else {
        unreachable!()
    };
    assert!(result.as_ref().unwrap_err().definite);
    let metadata = net
        .requests()
        .iter()
        .filter(|r| r.2 == Request::Metadata)
        .count();
    assert!(metadata > 2, "kept asking while waiting: {metadata}");
}
