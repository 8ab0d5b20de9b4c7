//! The idempotent producer (claim P4): a retry of a batch the leader already has is answered
//! with the original offset and not appended again; several batches in flight land in send
//! order even when the first attempt of the first one is lost; a batch that fails for good
//! bumps the partition's epoch instead of wedging it.

use crate::time::MillisRange;
use bytes::Bytes;
use std::num::NonZeroUsize;

use super::harness::*;
use crate::client::{Producer, ProducerConfig, ProducerEvent, SendFailure};
use crate::log::batch;
use crate::protocol::{Acks, ErrorCode, Message, Request, Response};
use crate::rng::Rng;

fn config(enable_idempotence: bool) -> ProducerConfig {
    ProducerConfig {
        acks: Acks::All,
        linger_ms: 0,
        retries_max: 10,
        retry_backoff_ms: MillisRange {
            min_ms: 10,
            max_ms: 100,
        },
        request_timeout_ms: 200,
        delivery_timeout_ms: 5_000,
        metadata_refresh_backoff_ms: 50,
        in_flight_max: NonZeroUsize::new(5).expect("not zero"),
        enable_idempotence,
        ..ProducerConfig::default()
    }
}

fn net(config: ProducerConfig) -> Net<Producer> {
    let cluster = FakeCluster::new(&[1, 2, 3], &[(tp("t", 0), 2)], &[1]);
    Net::new(
        Producer::new(config, bootstrap(&[1, 2, 3]), Rng::new(1)),
        cluster,
    )
}

fn send(net: &mut Net<Producer>, id: &str) {
    net.input(|p, now| p.send(now, tp("t", 0), id.to_string(), Bytes::from_static(b"v")))
        .unwrap();
}

type Outcomes = Vec<(String, Result<u64, SendFailure>)>;

fn results(net: &Net<Producer>) -> Outcomes {
    net.events
        .iter()
        .filter_map(|e| match e {
            ProducerEvent::Delivered { id, result, .. } => Some((id.clone(), result.clone())),
            _ => None,
        })
        .collect()
}

/// The keys of the records in the partition's log, in offset order.
fn log_keys(net: &Net<Producer>) -> Vec<String> {
    net.cluster
        .read_all(&tp("t", 0))
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.key).into_owned())
        .collect()
}

/// The keys in a produce request's batch.
fn keys_in(request: &Request) -> Vec<String> {
    match request {
        Request::Produce { batch: b, .. } => batch::records(b)
            .unwrap()
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r.key).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// Sends one record and waits for it, so that the producer has its id and the partition's
/// leader and the script's sends go out at once. Takes offset 0 and, with idempotence,
/// sequence 0.
fn warm_up(net: &mut Net<Producer>) {
    send(net, "warm-up");
    net.run_for(ms(100));
    assert_eq!(results(net), vec![("warm-up".into(), Ok(0))]);
    net.events.clear();
}

#[test]
fn idempotence_requires_acks_all_and_at_most_five_in_flight() {
    assert!(config(true).validate().is_ok());
    let too_many = ProducerConfig {
        in_flight_max: NonZeroUsize::new(6).expect("not zero"),
        ..config(true)
    };
    assert_eq!(too_many.validate().unwrap_err().field, "in_flight_max");
    assert!(ProducerConfig {
        in_flight_max: NonZeroUsize::new(6).expect("not zero"),
        ..config(false)
    }
    .validate()
    .is_ok());
    let acks_one = ProducerConfig {
        acks: Acks::Leader,
        ..config(true)
    };
    assert!(acks_one.validate().is_err());
}

/// The first attempt is appended but its answer comes after the request timeout, so the
/// producer retries the same bytes: the leader recognises them and answers with the first
/// attempt's offset. Without idempotence the same script appends the record twice (see
/// `request_timeout_retries_and_the_late_response_is_ignored`).
#[test]
fn retry_of_an_appended_batch_is_deduplicated_with_the_original_offset() {
    let mut net = net(config(true));
    net.cluster.append_records(&tp("t", 0), &["old"]);
    let mut produces = 0;
    net.set_fate(move |_, t| match &t.msg {
        Message::Request { request, .. } if is_produce(request) => {
            produces += 1;
            if produces == 1 {
                Fate::Delay(ms(1_000))
            } else {
                Fate::Deliver
            }
        }
        _ => Fate::Deliver,
    });
    send(&mut net, "x");
    net.run_for(ms(3_000));

    let produce: Vec<_> = net
        .requests()
        .into_iter()
        .filter(|r| is_produce(&r.2))
        .collect();
    assert_eq!(produce.len(), 2, "one retry");
    assert_eq!(
        produce[0].2, produce[1].2,
        "the retry carries the same bytes"
    );
    assert_eq!(results(&net), vec![("x".into(), Ok(1))]);
    assert_eq!(log_keys(&net), vec!["old", "x"], "appended once");
    let h = batch::parse(&net.cluster.logs[&tp("t", 0)][1]).unwrap();
    assert!(h.has_producer());
    assert_eq!((h.producer_epoch, h.base_sequence), (0, 0));
}

/// Three batches in flight; the first attempt of the first is lost. The other two reach the
/// leader first. Without idempotence they are appended ahead of the first batch's retry
/// (reordering, the `nonmonotonic_send` anomaly); with it the leader refuses them with
/// `OutOfOrderSequence`, and the producer retries them after the first: the log holds the
/// records in send order.
#[test]
fn lost_first_attempt_reorders_without_idempotence_and_not_with_it() {
    fn run(enable_idempotence: bool) -> (Vec<String>, Outcomes) {
        let mut net = net(config(enable_idempotence));
        warm_up(&mut net);
        let mut produces = 0;
        net.set_fate(move |_, t| match &t.msg {
            Message::Request { request, .. } if is_produce(request) => {
                produces += 1;
                if produces == 1 {
                    Fate::Drop
                } else {
                    Fate::Deliver
                }
            }
            _ => Fate::Deliver,
        });
        for id in ["r0", "r1", "r2"] {
            send(&mut net, id);
        }
        let in_flight = net.client.in_flight();
        assert_eq!(in_flight, 3, "three batches in flight at once");
        net.run_for(ms(3_000));
        (log_keys(&net), results(&net))
    }

    let (log, results) = run(false);
    assert_eq!(
        log,
        vec!["warm-up", "r1", "r2", "r0"],
        "reordered by the retry"
    );
    assert!(results.iter().all(|(_, r)| r.is_ok()));

    let (log, results) = run(true);
    assert_eq!(log, vec!["warm-up", "r0", "r1", "r2"], "send order kept");
    let offsets: Outcomes = vec![
        ("r0".into(), Ok(1)),
        ("r1".into(), Ok(2)),
        ("r2".into(), Ok(3)),
    ];
    let mut sorted = results.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        sorted, offsets,
        "each delivered once, at its place in send order"
    );
}

/// A batch whose every attempt is lost fails at its delivery timeout, leaving a hole in the
/// partition's sequence numbers. The batch sent behind it can then never be appended under this
/// epoch and fails too (definitely: every attempt was refused). The producer bumps the epoch,
/// and the next batch starts the new epoch at sequence 0 and is delivered: nothing wedges.
#[test]
fn batch_failing_for_good_bumps_the_epoch_and_later_sends_go_through() {
    let mut net = net(ProducerConfig {
        delivery_timeout_ms: 1_000,
        ..config(true)
    });
    warm_up(&mut net);
    net.set_fate(|_, t| match &t.msg {
        Message::Request { request, .. } if keys_in(request) == ["doomed"] => Fate::Drop,
        _ => Fate::Deliver,
    });
    send(&mut net, "doomed");
    send(&mut net, "behind");
    net.run_for(ms(2_000));
    let identity = net.client.partition_identity(&tp("t", 0)).unwrap();
    assert_eq!(identity.producer_epoch, 1, "bumped once");
    send(&mut net, "later");
    net.run_for(ms(1_000));

    let results = results(&net);
    assert_eq!(results.len(), 3, "{results:?}");
    let doomed = &results.iter().find(|r| r.0 == "doomed").unwrap().1;
    assert!(
        !doomed.as_ref().unwrap_err().definite,
        "attempts were lost: unknown"
    );
    let behind = &results.iter().find(|r| r.0 == "behind").unwrap().1;
    let behind = behind.as_ref().unwrap_err();
    assert!(behind.definite, "every attempt was refused: {behind}");
    assert_eq!(results.iter().find(|r| r.0 == "later").unwrap().1, Ok(1));
    assert_eq!(log_keys(&net), vec!["warm-up", "later"]);
    let h = batch::parse(&net.cluster.logs[&tp("t", 0)][1]).unwrap();
    assert_eq!((h.producer_epoch, h.base_sequence), (1, 0));
}

/// The producer id comes from whichever broker answers: a failed request moves on to the next
/// broker, and nothing is produced before an id is granted.
#[test]
fn producer_id_request_moves_on_after_a_failure() {
    let mut net = net(config(true));
    let mut inits = 0;
    net.set_fate(move |_, t| match &t.msg {
        Message::Request {
            request: Request::InitProducerId,
            ..
        } => {
            inits += 1;
            if inits == 1 {
                Fate::Reply(Response::InitProducerId(Err(ErrorCode::Busy)))
            } else {
                Fate::Deliver
            }
        }
        _ => Fate::Deliver,
    });
    send(&mut net, "x");
    net.run_for(ms(1_000));
    let inits: Vec<u32> = net
        .requests()
        .into_iter()
        .filter(|r| r.2 == Request::InitProducerId)
        .map(|r| r.1)
        .collect();
    assert_eq!(inits.len(), 2);
    assert_ne!(inits[0], inits[1], "asked another broker");
    assert_eq!(net.client.producer_id(), Some(1001));
    assert_eq!(results(&net), vec![("x".into(), Ok(0))]);
}

/// The first of five batches is appended but answered late; the four behind it are acked at
/// once. New batches are not stamped until the first is resolved, since five more appends
/// would push it out of the leader's window and its retry would get `DuplicateSequence` (an
/// unknown outcome) instead of its offset.
#[test]
fn new_batches_wait_while_a_retry_could_fall_out_of_the_leaders_window() {
    let mut net = net(config(true));
    warm_up(&mut net);
    let mut produces = 0;
    net.set_fate(move |_, t| match &t.msg {
        Message::Request { request, .. } if is_produce(request) => {
            produces += 1;
            if produces == 1 {
                Fate::Delay(ms(1_000))
            } else {
                Fate::Deliver
            }
        }
        _ => Fate::Deliver,
    });
    for i in 0..5 {
        send(&mut net, &format!("a{i}"));
    }
    net.run_for(ms(20));
    for i in 0..5 {
        send(&mut net, &format!("b{i}"));
    }
    net.run_for(ms(3_000));
    let results = results(&net);
    assert_eq!(results.len(), 10);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    assert_eq!(results.iter().find(|r| r.0 == "a0").unwrap().1, Ok(1));
    let log = log_keys(&net);
    assert_eq!(log.len(), 11, "nothing appended twice: {log:?}");
}
