//! Producer behaviour: leader discovery, batching, redirects, retries and the definiteness of
//! failures (claim P6: every message's fate is reported, and reported truthfully), buffering
//! limits, fire-and-forget (claim P4), and seeded determinism.

use crate::time::MillisRange;
use bytes::Bytes;
use std::num::{NonZeroU32, NonZeroUsize};

use super::harness::*;
use crate::client::producer::ACKS_NONE_ERROR;
use crate::client::{Producer, ProducerConfig, ProducerEvent, SendError, SendFailure};
use crate::log::batch;
use crate::protocol::{Acks, ErrorCode, Request, Response};
use crate::rng::Rng;

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
        ..ProducerConfig::default()
    }
}

fn net(config: ProducerConfig, seed: u64) -> Net<Producer> {
    let cluster = FakeCluster::new(&[1, 2, 3], &[(tp("t", 0), 2), (tp("t", 1), 3)], &[1]);
    let producer = Producer::new(config, bootstrap(&[1, 2, 3]), Rng::new(seed));
    Net::new(producer, cluster)
}

fn send(net: &mut Net<Producer>, partition: u32, id: &str) -> Result<(), SendError> {
    net.input(|p, now| {
        p.send(
            now,
            tp("t", partition),
            id.to_string(),
            Bytes::from_static(b"v"),
        )
    })
}

fn results(net: &Net<Producer>) -> Vec<(String, Result<u64, SendFailure>)> {
    net.events
        .iter()
        .filter_map(|e| match e {
            ProducerEvent::Delivered { id, result, .. } => Some((id.clone(), result.clone())),
            _ => None,
        })
        .collect()
}

fn produce_requests(net: &Net<Producer>) -> Vec<(crate::time::Instant, u32, Bytes)> {
    net.requests()
        .into_iter()
        .filter_map(|(at, to, r)| match r {
            Request::Produce { batch, .. } => Some((at, to, batch)),
            _ => None,
        })
        .collect()
}

fn record_count(batch: &[u8]) -> u32 {
    batch::validate(batch).unwrap().record_count
}

#[test]
fn leader_is_discovered_then_each_record_gets_its_own_offset() {
    let mut net = net(config(), 1);
    net.cluster
        .append_records(&tp("t", 0), &["old-0", "old-1", "old-2"]);
    for id in ["a", "b", "c"] {
        send(&mut net, 0, id).unwrap();
    }
    net.run_for(ms(1_000));

    let requests = net.requests();
    assert!(
        matches!(requests[0].2, Request::Metadata),
        "metadata first: {requests:?}"
    );
    let produce = produce_requests(&net);
    assert_eq!(
        produce.len(),
        1,
        "the three sends waited for the leader together"
    );
    assert_eq!(produce[0].1, 2, "sent to the partition's leader");
    assert_eq!(
        results(&net),
        vec![
            ("a".into(), Ok(3)),
            ("b".into(), Ok(4)),
            ("c".into(), Ok(5))
        ]
    );
    let keys: Vec<Bytes> = net
        .cluster
        .read_all(&tp("t", 0))
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(
        &keys[3..],
        &[Bytes::from("a"), Bytes::from("b"), Bytes::from("c")]
    );
    assert_eq!((net.client.in_flight(), net.client.queued_bytes()), (0, 0));
}

#[test]
fn linger_gathers_several_sends_into_one_request() {
    let mut net = net(
        ProducerConfig {
            linger_ms: 50,
            ..config()
        },
        1,
    );
    send(&mut net, 0, "warm-up").unwrap();
    net.run_for(ms(500));
    let start = net.now;
    for i in 0..5 {
        send(&mut net, 0, &format!("r{i}")).unwrap();
        net.run_for(ms(10));
    }
    net.run_for(ms(500));

    let produce = produce_requests(&net);
    assert_eq!(produce.len(), 2, "warm-up, then one batch: {produce:?}");
    assert_eq!(record_count(&produce[1].2), 5);
    assert_eq!(
        produce[1].0,
        start + ms(50),
        "sent when the first record's linger ran out"
    );
    let offsets: Vec<_> = results(&net).into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn full_in_flight_window_grows_the_open_batch() {
    let config = ProducerConfig {
        in_flight_max: NonZeroUsize::new(1).expect("not zero"),
        ..config()
    };
    let mut net = net(config, 1);
    net.latency = ms(20);
    send(&mut net, 0, "first").unwrap();
    net.run_until_pred(at_ms(1_000), |n| !produce_requests(n).is_empty());
    for i in 0..4 {
        send(&mut net, 0, &format!("later{i}")).unwrap();
    }
    assert_eq!(produce_requests(&net).len(), 1, "the window of one is full");
    net.run_for(ms(1_000));

    let counts: Vec<u32> = produce_requests(&net)
        .iter()
        .map(|p| record_count(&p.2))
        .collect();
    assert_eq!(
        counts,
        vec![1, 4],
        "records sent while the window was full went as one batch"
    );
    assert_eq!(results(&net).len(), 5);
}

#[test]
fn not_leader_hint_redirects_to_the_named_broker() {
    let mut net = net(config(), 1);
    send(&mut net, 0, "warm-up").unwrap();
    net.run_for(ms(500));
    let metadata_before = net
        .requests()
        .iter()
        .filter(|r| r.2 == Request::Metadata)
        .count();
    // Leadership moves to broker 3; the producer's cache still says 2, and 2 knows the new one.
    net.cluster.leaders.insert(tp("t", 0), Some(3));
    send(&mut net, 0, "x").unwrap();
    net.run_for(ms(500));

    let targets: Vec<u32> = produce_requests(&net)[1..].iter().map(|p| p.1).collect();
    assert_eq!(targets, vec![2, 3], "retried at the hinted leader");
    let metadata_after = net
        .requests()
        .iter()
        .filter(|r| r.2 == Request::Metadata)
        .count();
    assert_eq!(
        metadata_before, metadata_after,
        "the hint needs no metadata request"
    );
    assert_eq!(results(&net)[1], ("x".into(), Ok(1)));
}

#[test]
fn request_timeout_retries_and_the_late_response_is_ignored() {
    let mut net = net(config(), 1);
    let mut produces = 0;
    net.set_fate(move |_, t| match &t.msg {
        crate::protocol::Message::Request { request, .. } if is_produce(request) => {
            produces += 1;
            // The broker appends the first attempt but answers long after the client gave up.
            if produces == 1 {
                Fate::Delay(ms(1_000))
            } else {
                Fate::Deliver
            }
        }
        _ => Fate::Deliver,
    });
    send(&mut net, 0, "x").unwrap();
    net.run_for(ms(3_000));

    let produce = produce_requests(&net);
    assert_eq!(produce.len(), 2);
    assert_eq!(
        produce[0].2, produce[1].2,
        "a retry re-sends the same batch bytes"
    );
    assert!(
        produce[1].0 >= produce[0].0 + ms(200),
        "retried after the request timeout"
    );
    assert_eq!(
        results(&net),
        vec![("x".into(), Ok(1))],
        "delivered once, with the retry's offset; the late answer (offset 0) is ignored"
    );
    assert_eq!(
        net.cluster.read_all(&tp("t", 0)).len(),
        2,
        "at-least-once: appended twice"
    );
}

#[test]
fn retries_exhausted_after_a_timeout_is_not_definite() {
    let mut net = net(
        ProducerConfig {
            retries_max: 2,
            ..config()
        },
        1,
    );
    let mut produces = 0;
    net.set_fate(move |_, t| match &t.msg {
        crate::protocol::Message::Request { request, .. } if is_produce(request) => {
            produces += 1;
            if produces == 1 {
                Fate::Drop
            } else {
                Fate::Reply(Response::Produce(Err(ErrorCode::NotLeader {
                    leader: Some(2),
                })))
            }
        }
        _ => Fate::Deliver,
    });
    send(&mut net, 0, "x").unwrap();
    net.run_for(ms(5_000));

    assert_eq!(
        produce_requests(&net).len(),
        3,
        "one attempt and two retries"
    );
    let results = results(&net);
    assert_eq!(results.len(), 1);
    let failure = results[0].1.clone().unwrap_err();
    assert!(
        !failure.definite,
        "the dropped first attempt may have been appended: {failure}"
    );
}

#[test]
fn retries_exhausted_after_only_not_leader_is_definite() {
    let mut net = net(
        ProducerConfig {
            retries_max: 2,
            ..config()
        },
        1,
    );
    net.set_fate(|_, t| match &t.msg {
        crate::protocol::Message::Request { request, .. } if is_produce(request) => {
            Fate::Reply(Response::Produce(Err(ErrorCode::NotLeader {
                leader: None,
            })))
        }
        _ => Fate::Deliver,
    });
    send(&mut net, 0, "x").unwrap();
    net.run_for(ms(5_000));

    assert_eq!(produce_requests(&net).len(), 3);
    let results = results(&net);
    assert_eq!(results.len(), 1);
    let failure = results[0].1.clone().unwrap_err();
    assert!(failure.definite, "no attempt was appended: {failure}");
    assert!(failure.error.contains("retries exhausted"), "{failure}");
}

#[test]
fn leader_changed_makes_the_outcome_unknown() {
    let mut net = net(
        ProducerConfig {
            retries_max: 0,
            ..config()
        },
        1,
    );
    net.set_fate(|_, t| match &t.msg {
        crate::protocol::Message::Request { request, .. } if is_produce(request) => {
            Fate::Reply(Response::Produce(Err(ErrorCode::LeaderChanged)))
        }
        _ => Fate::Deliver,
    });
    send(&mut net, 0, "x").unwrap();
    net.run_for(ms(1_000));
    let failure = results(&net)[0].1.clone().unwrap_err();
    assert!(!failure.definite);
}

#[test]
fn non_retriable_error_fails_the_batch_at_once() {
    let mut net = net(config(), 1);
    net.set_fate(|_, t| match &t.msg {
        crate::protocol::Message::Request { request, .. } if is_produce(request) => {
            Fate::Reply(Response::Produce(Err(ErrorCode::BatchTooLarge)))
        }
        _ => Fate::Deliver,
    });
    send(&mut net, 0, "x").unwrap();
    net.run_for(ms(1_000));
    assert_eq!(produce_requests(&net).len(), 1, "no retry");
    assert!(results(&net)[0].1.clone().unwrap_err().definite);
}

#[test]
fn disconnect_with_the_request_in_flight_is_unknown_outcome() {
    let mut net = net(
        ProducerConfig {
            retries_max: 0,
            ..config()
        },
        1,
    );
    net.set_fate(|_, t| match &t.msg {
        crate::protocol::Message::Request { request, .. } if is_produce(request) => {
            Fate::Disconnect
        }
        _ => Fate::Deliver,
    });
    send(&mut net, 0, "x").unwrap();
    net.run_for(ms(1_000));
    let failure = results(&net)[0].1.clone().unwrap_err();
    assert!(
        !failure.definite,
        "lost with the request in flight: outcome unknown"
    );
}

#[test]
fn unknown_leader_expires_queued_records_definitely() {
    let config = ProducerConfig {
        delivery_timeout_ms: 1_000,
        ..config()
    };
    let mut net = net(config, 1);
    net.cluster.leaders.insert(tp("t", 0), None);
    send(&mut net, 0, "x").unwrap();
    net.run_for(ms(2_000));

    assert!(produce_requests(&net).is_empty());
    let results = results(&net);
    assert_eq!(results.len(), 1);
    let failure = results[0].1.clone().unwrap_err();
    assert!(failure.definite, "never sent: {failure}");
    let metadata = net
        .requests()
        .iter()
        .filter(|r| r.2 == Request::Metadata)
        .count();
    assert!(
        (2..=21).contains(&metadata),
        "refreshed while waiting, at most one per 50 ms: {metadata}"
    );
}

#[test]
fn send_beyond_buffer_bytes_max_is_refused() {
    let one = batch::record_encoded_len(&batch::NewRecord {
        timestamp_ns: 0,
        key: Bytes::from("r0"),
        value: Bytes::from("v"),
    });
    let mut net = net(
        ProducerConfig {
            buffer_bytes_max: 3 * one,
            ..config()
        },
        1,
    );
    for i in 0..3 {
        send(&mut net, 0, &format!("r{i}")).unwrap();
    }
    assert_eq!(net.client.queued_bytes(), 3 * one);
    assert_eq!(send(&mut net, 0, "r3"), Err(SendError::BufferFull));
    net.run_for(ms(500));
    assert_eq!(net.client.queued_bytes(), 0, "delivery frees the buffer");
    send(&mut net, 0, "r4").unwrap();
    net.run_for(ms(500));
    let ids: Vec<String> = results(&net).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        vec!["r0", "r1", "r2", "r4"],
        "the refused record is never reported"
    );
}

#[test]
fn acks_none_reports_unknown_outcome_when_handed_out() {
    let mut net = net(
        ProducerConfig {
            acks: Acks::None,
            ..config()
        },
        1,
    );
    send(&mut net, 0, "warm-up").unwrap();
    net.run_for(ms(500));
    net.events.clear();
    send(&mut net, 0, "x").unwrap();

    // No time has passed: the record went out in the input's drain and was reported at once.
    assert_eq!(produce_requests(&net).last().unwrap().0, net.now);
    let results = results(&net);
    assert_eq!(results.len(), 1);
    let failure = results[0].1.clone().unwrap_err();
    assert_eq!(
        failure,
        SendFailure {
            definite: false,
            error: ACKS_NONE_ERROR.into()
        }
    );
    assert_eq!((net.client.in_flight(), net.client.queued_bytes()), (0, 0));
    net.run_for(ms(500));
    assert_eq!(
        net.cluster.read_all(&tp("t", 0)).len(),
        2,
        "the broker did append both"
    );
}

/// Two producers with the same seed, fed the same inputs, send the same bytes at the same
/// times, retry backoff jitter included; another seed changes the timings.
#[test]
fn jitter_is_deterministic_for_a_seed() {
    fn run(seed: u64) -> Vec<(crate::time::Instant, crate::client::Transmit)> {
        let mut net = net(
            ProducerConfig {
                retries_max: 10,
                retry_backoff_ms: MillisRange {
                    min_ms: 50,
                    max_ms: 1_000,
                },
                ..config()
            },
            seed,
        );
        let mut produces = 0;
        net.set_fate(move |_, t| match &t.msg {
            crate::protocol::Message::Request { request, .. } if is_produce(request) => {
                produces += 1;
                if produces <= 6 {
                    Fate::Reply(Response::Produce(Err(ErrorCode::Busy)))
                } else {
                    Fate::Deliver
                }
            }
            _ => Fate::Deliver,
        });
        for i in 0..3 {
            send(&mut net, i % 2, &format!("r{i}")).unwrap();
        }
        net.run_for(ms(10_000));
        assert_eq!(net.events.len(), 3);
        net.sent
    }
    let a = run(7);
    assert_eq!(a, run(7));
    let times = |s: &[(crate::time::Instant, crate::client::Transmit)]| {
        s.iter().map(|(at, _)| *at).collect::<Vec<_>>()
    };
    assert_ne!(
        times(&a),
        times(&run(8)),
        "the backoff is jittered by the seed"
    );
}

/// A batch closes at `batch_records_max` records and goes out without waiting for its linger.
#[test]
fn batch_closes_at_batch_records_max() {
    let mut net = net(
        ProducerConfig {
            linger_ms: 1_000,
            batch_records_max: NonZeroU32::new(3).expect("not zero"),
            ..config()
        },
        1,
    );
    send(&mut net, 0, "warm-up").unwrap();
    net.run_for(ms(2_000));
    let start = net.now;
    for i in 0..7 {
        send(&mut net, 0, &format!("r{i}")).unwrap();
    }
    net.run_for(ms(100));
    let counts: Vec<(crate::time::Instant, u32)> = produce_requests(&net)[1..]
        .iter()
        .map(|p| (p.0, record_count(&p.2)))
        .collect();
    assert_eq!(counts, vec![(start, 3), (start, 3)], "the seventh lingers");
    net.run_for(ms(1_000));
    assert_eq!(results(&net).len(), 8);
}

/// With LZ4 the producer sends compressed batches of repetitive records, the log stores them as
/// sent, and every record still gets its own offset.
#[test]
fn compressed_batches_are_sent_and_read_back() {
    let mut net = net(
        ProducerConfig {
            linger_ms: 10,
            compression: batch::Compression::Lz4,
            ..config()
        },
        1,
    );
    for i in 0..20 {
        net.input(|p, now| {
            p.send(
                now,
                tp("t", 0),
                format!("r{i}"),
                Bytes::from(vec![b'x'; 200]),
            )
        })
        .unwrap();
    }
    net.run_for(ms(1_000));
    let produce = produce_requests(&net);
    assert_eq!(produce.len(), 1);
    let sent = &produce[0].2;
    let h = batch::validate(sent).unwrap();
    assert!(h.is_compressed());
    assert!(sent.len() < 20 * 200 / 4, "{} bytes", sent.len());
    let stored = &net.cluster.logs[&tp("t", 0)][0];
    assert_eq!(&stored[batch::HEADER_BYTES..], &sent[batch::HEADER_BYTES..]);
    let offsets: Vec<u64> = results(&net).into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(offsets, (0..20).collect::<Vec<u64>>());
    assert_eq!(net.cluster.read_all(&tp("t", 0)).len(), 20);
}
