//! The send journal (claim P6): every produce attempt is reported when it resolves, with where
//! and when it went and what came back, and the records' `Delivered` events still come exactly
//! once, after the batch's last attempt.

use crate::time::MillisRange;
use bytes::Bytes;

use super::harness::*;
use crate::client::{Producer, ProducerConfig, ProducerEvent};
use crate::protocol::{Acks, ErrorCode, Message, Response};
use crate::rng::Rng;
use crate::time::Instant;

fn config() -> ProducerConfig {
    ProducerConfig {
        acks: Acks::All,
        linger_ms: 0,
        retries_max: 5,
        retry_backoff_ms: MillisRange {
            min_ms: 10,
            max_ms: 100,
        },
        request_timeout_ms: 200,
        delivery_timeout_ms: 5_000,
        metadata_refresh_backoff_ms: 50,
        attempt_events: true,
        ..ProducerConfig::default()
    }
}

#[test]
fn retried_batch_journals_each_attempt_then_delivers_once() {
    let cluster = FakeCluster::new(&[1, 2, 3], &[(tp("t", 0), 2)], &[1]);
    let producer = Producer::new(config(), bootstrap(&[1, 2, 3]), Rng::new(3));
    let mut net = Net::new(producer, cluster);
    let mut produces = 0;
    net.set_fate(move |_, t| match &t.msg {
        Message::Request { request, .. } if is_produce(request) => {
            produces += 1;
            match produces {
                1 => Fate::Reply(Response::Produce(Err(ErrorCode::Busy))),
                2 => Fate::Drop,
                _ => Fate::Deliver,
            }
        }
        _ => Fate::Deliver,
    });
    for id in ["a", "b"] {
        net.input(|p, now| p.send(now, tp("t", 0), id.to_string(), Bytes::from_static(b"v")))
            .unwrap();
    }
    net.run_for(ms(3_000));

    let sent: Vec<(Instant, u32)> = net
        .requests()
        .into_iter()
        .filter(|r| is_produce(&r.2))
        .map(|r| (r.0, r.1))
        .collect();
    assert_eq!(sent.len(), 3);
    let attempts: Vec<(u32, u32, Instant, Result<u64, String>)> = net
        .events
        .iter()
        .filter_map(|e| match e {
            ProducerEvent::Attempt {
                partition,
                ids,
                attempt,
                broker,
                sent_at,
                outcome,
            } => {
                assert_eq!(partition, &tp("t", 0));
                assert_eq!(ids, &["a", "b"], "the whole batch, one event per attempt");
                Some((*attempt, *broker, *sent_at, outcome.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, 2, sent[0].0, Err(ErrorCode::Busy.to_string())),
            (
                2,
                2,
                sent[1].0,
                Err("no response before the request timeout".into())
            ),
            (3, 2, sent[2].0, Ok(0)),
        ]
    );
    let kinds: Vec<&str> = net
        .events
        .iter()
        .map(|e| match e {
            ProducerEvent::Attempt { .. } => "attempt",
            ProducerEvent::Delivered { .. } => "delivered",
        })
        .collect();
    assert_eq!(
        kinds,
        ["attempt", "attempt", "attempt", "delivered", "delivered"],
        "each record delivered once, after the last attempt"
    );
}

/// Off by default: only `Delivered` events, as before the journal existed.
#[test]
fn journal_is_off_by_default() {
    assert!(!ProducerConfig::default().attempt_events);
}
