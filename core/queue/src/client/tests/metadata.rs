//! Metadata refresh: rotation through brokers on failure, and the rate limit.

use crate::time::MillisRange;
use bytes::Bytes;

use super::harness::*;
use crate::client::{Producer, ProducerConfig};
use crate::protocol::{Message, Request};
use crate::rng::Rng;

fn net() -> Net<Producer> {
    let config = ProducerConfig {
        linger_ms: 0,
        request_timeout_ms: 200,
        metadata_refresh_backoff_ms: 50,
        retries_max: u32::MAX,
        retry_backoff_ms: MillisRange {
            min_ms: 100,
            max_ms: 1_000,
        },
        delivery_timeout_ms: 120_000,
        ..ProducerConfig::default()
    };
    let cluster = FakeCluster::new(&[1, 2, 3], &[(tp("t", 0), 2)], &[1]);
    Net::new(
        Producer::new(config, bootstrap(&[1, 2, 3]), Rng::new(3)),
        cluster,
    )
}

fn metadata_requests(net: &Net<Producer>) -> Vec<(crate::time::Instant, u32)> {
    net.requests()
        .into_iter()
        .filter(|r| r.2 == Request::Metadata)
        .map(|r| (r.0, r.1))
        .collect()
}

fn send(net: &mut Net<Producer>) {
    net.input(|p, now| p.send(now, tp("t", 0), "x".into(), Bytes::from_static(b"v")))
        .unwrap();
}

#[test]
fn failed_refresh_rotates_through_brokers_in_id_order_with_backoff() {
    let mut net = net();
    let mut failures = 0;
    net.set_fate(move |_, t| match &t.msg {
        Message::Request {
            request: Request::Metadata,
            ..
        } if failures < 3 => {
            failures += 1;
            Fate::Disconnect
        }
        _ => Fate::Deliver,
    });
    send(&mut net);
    net.run_for(ms(5_000));

    let m = metadata_requests(&net);
    assert_eq!(m.len(), 4, "three failures, then an answer: {m:?}");
    for w in m.windows(2) {
        assert_eq!(w[1].1, w[0].1 % 3 + 1, "the next broker by id: {m:?}");
        assert!(w[1].0 - w[0].0 >= ms(50), "backed off: {m:?}");
    }
    assert!(
        m[3].0 - m[2].0 > m[1].0 - m[0].0,
        "the backoff grows with consecutive failures: {m:?}"
    );
    assert_eq!(net.events.len(), 1, "then the record went through");
}

#[test]
fn at_most_one_refresh_in_flight() {
    let mut net = net();
    net.set_fate(|_, t| match &t.msg {
        Message::Request {
            request: Request::Metadata,
            ..
        } => Fate::Drop,
        _ => Fate::Deliver,
    });
    send(&mut net);
    net.run_for(ms(1_000));

    let m = metadata_requests(&net);
    assert!(m.len() >= 3, "kept trying: {m:?}");
    for w in m.windows(2) {
        assert!(
            w[1].0 - w[0].0 >= ms(200),
            "the next waits for the previous to time out: {m:?}"
        );
    }
}
