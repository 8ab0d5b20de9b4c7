//! Consumer behaviour: starting from the committed offset, long polling (claim C1), what a fetch
//! response contributes, back-pressure, commits to the coordinator (claim C4), and visible
//! position resets.

use bytes::Bytes;

use super::harness::*;
use crate::client::{coordinator_partition, Consumer, ConsumerConfig, ConsumerEvent};
use crate::ids::{TopicPartition, OFFSETS_TOPIC};
use crate::protocol::{ErrorCode, FetchOk, Message, Request, Response};
use crate::rng::Rng;
use crate::time::Instant;

const GROUP: &str = "g";

fn config() -> ConsumerConfig {
    ConsumerConfig {
        group: GROUP.into(),
        max_wait_ms: 500,
        request_timeout_ms: 1_000,
        retry_backoff_ms: 100,
        metadata_refresh_backoff_ms: 50,
        ..ConsumerConfig::default()
    }
}

fn net_with(config: ConsumerConfig, offsets_leaders: &[u32]) -> Net<Consumer> {
    let cluster = FakeCluster::new(
        &[1, 2, 3],
        &[(tp("t", 0), 2), (tp("t", 1), 3)],
        offsets_leaders,
    );
    Net::new(
        Consumer::new(config, bootstrap(&[1, 2, 3]), Rng::new(1)),
        cluster,
    )
}

fn net() -> Net<Consumer> {
    net_with(config(), &[1])
}

fn assign(net: &mut Net<Consumer>, partitions: &[TopicPartition]) {
    net.input(|c, now| c.assign(now, partitions.to_vec()));
}

fn offsets_received(net: &Net<Consumer>, partition: &TopicPartition) -> Vec<u64> {
    net.events
        .iter()
        .filter_map(|e| match e {
            ConsumerEvent::Records {
                partition: p,
                records,
            } if p == partition => Some(records.iter().map(|r| r.offset)),
            _ => None,
        })
        .flatten()
        .collect()
}

fn fetches(net: &Net<Consumer>) -> Vec<(Instant, u32, u64)> {
    net.requests()
        .into_iter()
        .filter_map(|(at, to, r)| match r {
            Request::Fetch { offset, .. } => Some((at, to, offset)),
            _ => None,
        })
        .collect()
}

#[test]
fn resumes_from_the_committed_offset() {
    let mut net = net();
    let p = tp("t", 0);
    net.cluster.append_records(&p, &["0", "1", "2"]);
    net.cluster.append_records(&p, &["3", "4", "5", "6"]);
    net.cluster.committed.insert((GROUP.into(), p.clone()), 4);
    assign(&mut net, std::slice::from_ref(&p));
    net.run_for(ms(200));

    let requests = net.requests();
    let offset_fetch = requests
        .iter()
        .find(|r| matches!(r.2, Request::OffsetFetch { .. }))
        .expect("asked for the committed offset");
    assert_eq!(offset_fetch.1, 1, "at the coordinator");
    assert_eq!(
        net.events[0],
        ConsumerEvent::Assigned {
            partition: p.clone(),
            position: 4
        }
    );
    assert_eq!(
        fetches(&net)[0],
        (fetches(&net)[0].0, 2, 4),
        "fetch from the leader at 4"
    );
    assert_eq!(offsets_received(&net, &p), vec![4, 5, 6]);
    assert_eq!(net.client.position(&p), Some(7));
}

#[test]
fn without_a_commit_starts_at_zero() {
    let mut net = net();
    let p = tp("t", 1);
    net.cluster.append_records(&p, &["0", "1"]);
    assign(&mut net, std::slice::from_ref(&p));
    net.run_for(ms(200));
    assert_eq!(offsets_received(&net, &p), vec![0, 1]);
}

#[test]
fn long_poll_reissues_fetches_and_picks_up_new_data() {
    let mut net = net();
    let p = tp("t", 0);
    assign(&mut net, std::slice::from_ref(&p));
    net.run_for(ms(2_200));
    let empty_polls = fetches(&net);
    assert!(
        (4..=5).contains(&empty_polls.len()),
        "one fetch per max_wait_ms while idle: {empty_polls:?}"
    );
    for w in empty_polls.windows(2) {
        assert_eq!(
            w[1].0 - w[0].0,
            ms(502),
            "re-issued as soon as the empty answer came"
        );
        assert_eq!(w[1].2, 0);
    }
    net.cluster.append_records(&p, &["a"]);
    net.run_for(ms(1_000));
    assert_eq!(offsets_received(&net, &p), vec![0]);
    assert_eq!(
        fetches(&net).last().unwrap().2,
        1,
        "polling on from the new position"
    );
}

#[test]
fn control_batches_and_records_below_the_position_are_skipped() {
    let mut net = net();
    let p = tp("t", 0);
    net.cluster.append_records(&p, &["0", "1", "2"]);
    net.cluster.append_control(&p);
    net.cluster.append_records(&p, &["4", "5"]);
    net.cluster.append_control(&p);
    net.cluster.committed.insert((GROUP.into(), p.clone()), 1);
    assign(&mut net, std::slice::from_ref(&p));
    net.run_for(ms(200));

    assert_eq!(offsets_received(&net, &p), vec![1, 2, 4, 5]);
    assert_eq!(
        net.client.position(&p),
        Some(7),
        "past the trailing control batch"
    );
    assert_eq!(fetches(&net).last().unwrap().2, 7);
}

#[test]
fn corrupt_batch_is_discarded_and_refetched() {
    let mut net = net();
    let p = tp("t", 0);
    net.cluster.append_records(&p, &["0", "1"]);
    let mut corrupt = net.cluster.logs[&p][0].to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    let mut fetched = 0;
    net.set_fate(move |_, t| match &t.msg {
        Message::Request { request, .. } if is_fetch(request) => {
            fetched += 1;
            if fetched == 1 {
                Fate::Reply(Response::Fetch(Ok(FetchOk {
                    high_watermark: 2,
                    batches: vec![Bytes::from(corrupt.clone())],
                })))
            } else {
                Fate::Deliver
            }
        }
        _ => Fate::Deliver,
    });
    assign(&mut net, std::slice::from_ref(&p));
    net.run_for(ms(500));

    let f = fetches(&net);
    assert_eq!((f[0].2, f[1].2), (0, 0), "refetched at the same offset");
    assert!(f[1].0 >= f[0].0 + ms(100), "after the retry backoff");
    assert_eq!(
        offsets_received(&net, &p),
        vec![0, 1],
        "only the good copy was delivered"
    );
    let keys: Vec<Bytes> = net
        .events
        .iter()
        .filter_map(|e| match e {
            ConsumerEvent::Records { records, .. } => Some(records.iter().map(|r| r.key.clone())),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(keys, vec![Bytes::from("0"), Bytes::from("1")]);
}

#[test]
fn commit_goes_to_the_leader_of_the_groups_offsets_partition() {
    let offsets_leaders = [1, 2, 3];
    let coordinator = coordinator_partition(GROUP, 3);
    let coordinator_leader = offsets_leaders[coordinator as usize];
    let mut net = net_with(config(), &offsets_leaders);
    let p = tp("t", 0);
    assign(&mut net, std::slice::from_ref(&p));
    net.run_for(ms(100));
    net.input(|c, now| c.commit(now, p.clone(), 42));
    net.run_for(ms(100));

    let commit = net
        .requests()
        .into_iter()
        .find(|r| matches!(r.2, Request::OffsetCommit { .. }))
        .expect("a commit was sent");
    assert_eq!(commit.1, coordinator_leader);
    assert_eq!(
        net.cluster.committed.get(&(GROUP.to_string(), p.clone())),
        Some(&42)
    );
    assert!(net.events.contains(&ConsumerEvent::Committed {
        partition: p,
        offset: 42,
        result: Ok(())
    }));
    assert_eq!(
        net.client.coordinator().unwrap().0,
        tp(OFFSETS_TOPIC, coordinator)
    );
}

#[test]
fn coordinator_partition_is_crc32c_of_the_group() {
    // Pinned values: a change would move every group's commits.
    assert_eq!(coordinator_partition("g", 1), 0);
    let spread: std::collections::BTreeSet<u32> = (0..64)
        .map(|i| coordinator_partition(&format!("group-{i}"), 8))
        .collect();
    assert_eq!(spread.len(), 8, "groups spread over the offsets partitions");
    assert_eq!(
        coordinator_partition("fathom", 50),
        crc32c::crc32c(b"fathom") % 50
    );
}

#[test]
fn commit_follows_not_leader_and_retries_are_bounded() {
    let config = ConsumerConfig {
        commit_retries_max: 2,
        ..config()
    };
    let mut net = net_with(config, &[1]);
    let p = tp("t", 0);
    net.input(|c, now| c.commit(now, p.clone(), 5));
    net.run_for(ms(100));
    assert!(net.events.contains(&ConsumerEvent::Committed {
        partition: p.clone(),
        offset: 5,
        result: Ok(())
    }));

    // The coordinator moves; the consumer's cache is stale, the old leader knows the new one.
    let coordinator = tp(OFFSETS_TOPIC, 0);
    net.cluster.leaders.insert(coordinator.clone(), Some(2));
    net.input(|c, now| c.commit(now, p.clone(), 6));
    net.run_for(ms(500));
    let targets: Vec<u32> = net
        .requests()
        .iter()
        .filter(|r| matches!(r.2, Request::OffsetCommit { offset: 6, .. }))
        .map(|r| r.1)
        .collect();
    assert_eq!(targets, vec![1, 2], "redirected by the hint");
    assert_eq!(net.cluster.committed[&(GROUP.to_string(), p.clone())], 6);

    net.events.clear();
    net.set_fate(|_, t| match &t.msg {
        Message::Request {
            request: Request::OffsetCommit { .. },
            ..
        } => Fate::Reply(Response::OffsetCommit(Err(ErrorCode::StorageError))),
        _ => Fate::Deliver,
    });
    net.input(|c, now| c.commit(now, p.clone(), 7));
    net.run_for(ms(2_000));
    let commits = net
        .requests()
        .iter()
        .filter(|r| matches!(r.2, Request::OffsetCommit { offset: 7, .. }))
        .count();
    assert_eq!(commits, 3, "one attempt and two retries");
    match &net.events[..] {
        [ConsumerEvent::Committed {
            offset: 7,
            result: Err(e),
            ..
        }] => assert!(e.contains("storage"), "{e}"),
        other => panic!("expected one failed commit, got {other:?}"),
    }
}

#[test]
fn offset_out_of_range_lists_offsets_and_reports_the_reset() {
    let mut net = net();
    let p = tp("t", 0);
    net.cluster.append_records(&p, &["0", "1", "2"]);
    net.cluster.committed.insert((GROUP.into(), p.clone()), 50);
    assign(&mut net, std::slice::from_ref(&p));
    net.run_for(ms(100));

    let requests: Vec<Request> = net.requests().into_iter().map(|r| r.2).collect();
    let fetch_at_50 = requests
        .iter()
        .position(|r| matches!(r, Request::Fetch { offset: 50, .. }))
        .unwrap();
    assert!(matches!(
        requests[fetch_at_50 + 1],
        Request::ListOffsets { .. }
    ));
    assert!(matches!(
        requests[fetch_at_50 + 2],
        Request::Fetch { offset: 3, .. }
    ));
    assert!(net.events.contains(&ConsumerEvent::PositionReset {
        partition: p.clone(),
        from: 50,
        to: 3
    }));
    net.cluster.append_records(&p, &["3"]);
    net.run_for(ms(1_000));
    assert_eq!(offsets_received(&net, &p), vec![3]);
}

#[test]
fn reset_is_reported_between_the_records_before_and_after_it() {
    let mut net = net();
    net.drain_events = false;
    let p = tp("t", 0);
    net.cluster.append_records(&p, &["0", "1"]);
    assign(&mut net, std::slice::from_ref(&p));
    net.run_for(ms(100));
    // The log is truncated below the consumer's position (as after an unclean election).
    net.cluster.logs.insert(p.clone(), Vec::new());
    net.cluster.append_records(&p, &["0'"]);
    net.run_for(ms(1_000));
    net.cluster.append_records(&p, &["1'"]);
    net.run_for(ms(1_000));
    net.take_events();

    let kinds: Vec<String> = net
        .events
        .iter()
        .map(|e| match e {
            ConsumerEvent::Assigned { .. } => "assigned".to_string(),
            ConsumerEvent::Records { records, .. } => format!(
                "records {:?}",
                records.iter().map(|r| r.offset).collect::<Vec<_>>()
            ),
            ConsumerEvent::PositionReset { from, to, .. } => format!("reset {from}->{to}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["assigned", "records [0, 1]", "reset 2->1", "records [1]"]
    );
}

#[test]
fn buffered_records_max_pauses_fetching_until_the_app_takes_them() {
    let config = ConsumerConfig {
        buffered_records_max: 3,
        ..config()
    };
    let mut net = net_with(config, &[1]);
    net.drain_events = false;
    let p = tp("t", 0);
    for i in 0..6 {
        net.cluster.append_records(&p, &[&i.to_string()]);
    }
    assign(&mut net, std::slice::from_ref(&p));
    net.cluster.append_records(&p, &["6"]);
    net.run_for(ms(2_000));
    // max_bytes admits all batches in one answer; then the buffer (6 > 3) stops fetching.
    assert_eq!(fetches(&net).len(), 1, "paused while the buffer is full");
    net.take_events();
    net.input(|_, _| ());
    net.run_for(ms(100));
    assert_eq!(
        fetches(&net).len(),
        2,
        "resumed once the records were taken"
    );
    assert_eq!(fetches(&net)[1].2, 7);
}

#[test]
fn not_leader_on_fetch_refreshes_metadata_and_moves_on() {
    let mut net = net();
    let p = tp("t", 0);
    net.cluster.append_records(&p, &["0"]);
    assign(&mut net, std::slice::from_ref(&p));
    net.run_for(ms(100));
    net.cluster.leaders.insert(p.clone(), Some(3));
    net.cluster.append_records(&p, &["1"]);
    net.run_for(ms(2_000));

    let targets: Vec<u32> = fetches(&net).iter().map(|f| f.1).collect();
    assert_eq!(targets.first(), Some(&2));
    assert_eq!(targets.last(), Some(&3), "fetching from the new leader");
    assert_eq!(offsets_received(&net, &p), vec![0, 1]);
}

#[test]
fn list_offsets_reports_the_partitions_offsets() {
    let mut net = net();
    let p = tp("t", 1);
    net.cluster.append_records(&p, &["0", "1", "2"]);
    net.input(|c, now| c.list_offsets(now, p.clone()));
    net.run_for(ms(200));
    assert_eq!(
        net.events,
        vec![ConsumerEvent::Offsets {
            partition: p,
            log_start: 0,
            high_watermark: 3
        }]
    );
}

/// Claim C1, the naive polling loop: a pull fetch asks the broker not to hold it, and after an
/// empty answer the next fetch waits `poll_interval_ms`; each empty answer is counted, and
/// data is picked up at the next poll.
#[test]
fn pull_fetches_again_after_its_poll_interval_and_counts_empty_answers() {
    let pull = ConsumerConfig {
        delivery: crate::client::Delivery::Pull {
            poll_interval_ms: 100,
        },
        ..config()
    };
    let mut net = net_with(pull, &[1]);
    let p = tp("t", 0);
    assign(&mut net, std::slice::from_ref(&p));
    net.run_for(ms(1_000));
    let polls = fetches(&net);
    assert!((8..=10).contains(&polls.len()), "{polls:?}");
    for w in polls.windows(2) {
        assert_eq!(
            w[1].0 - w[0].0,
            ms(102),
            "answer at once, then the interval"
        );
    }
    let no_wait = net
        .requests()
        .iter()
        .all(|(_, _, r)| !matches!(r, Request::Fetch { max_wait_ms, .. } if *max_wait_ms != 0));
    assert!(no_wait, "a pull fetch is never held by the broker");
    let stats = net.client.delivery_stats();
    assert_eq!(stats.empty_fetches, stats.fetches);
    assert_eq!(stats.fetches as usize, polls.len());
    net.cluster.append_records(&p, &["a"]);
    net.run_for(ms(200));
    assert_eq!(offsets_received(&net, &p), vec![0]);
    let stats = net.client.delivery_stats();
    assert_eq!(stats.empty_fetches + 1, stats.fetches, "{stats:?}");
}
