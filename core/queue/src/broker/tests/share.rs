//! The broker as share-partition leader (acquisition, acknowledgement, their survival of a
//! failover) and the bound on push subscriptions, through the request path.

use super::*;
use crate::config::ShareFailover;
use crate::share::{AckKind, ShareError, ShareMode, ShareSettings};

const GROUP: &str = "s1";

fn settings() -> ShareSettings {
    ShareSettings {
        acquisition_lock_ms: 2_000,
        ..ShareSettings::default()
    }
}

fn share_fetch(member: &str, max_records: u32, max_wait_ms: u32) -> Request {
    share_fetch_in(ShareMode::Shared, member, max_records, max_wait_ms)
}

fn share_fetch_in(mode: ShareMode, member: &str, max_records: u32, max_wait_ms: u32) -> Request {
    Request::ShareFetch {
        group: GROUP.into(),
        member: member.into(),
        partition: orders(),
        max_records,
        max_wait_ms,
        max_bytes: 1 << 20,
        settings: settings(),
        mode,
    }
}

fn share_ack(member: &str, acks: Vec<(u64, AckKind)>) -> Request {
    Request::ShareAcknowledge {
        group: GROUP.into(),
        member: member.into(),
        partition: orders(),
        acks,
    }
}

/// Offsets and delivery counts a share fetch acquired; panics on anything else.
fn acquired(r: Option<Response>) -> Vec<(u64, u16)> {
    match r {
        Some(Response::ShareFetch(Ok(ok))) => {
            let keys = keys_of(&ok.batches);
            for a in &ok.acquired {
                assert!(
                    keys.iter().any(|(o, _)| *o == a.offset),
                    "batches hold {}",
                    a.offset
                );
            }
            ok.acquired
                .iter()
                .map(|a| (a.offset, a.delivery_count))
                .collect()
        }
        other => panic!("expected a share fetch answer, got {other:?}"),
    }
}

#[derive(Default)]
struct Client {
    inbox: Inbox,
    next_id: u64,
    connected: std::collections::BTreeSet<NodeId>,
}

impl Client {
    fn call(
        &mut self,
        c: &mut Cluster<BrokerNode>,
        broker: NodeId,
        req: Request,
    ) -> Option<Response> {
        self.next_id += 1;
        let conn = 900 + broker as u64;
        if self.connected.insert(broker) {
            connect(c, &mut self.inbox, broker, conn);
        }
        request(c, broker, conn, self.next_id, req);
        await_response(c, &mut self.inbox, broker, conn, self.next_id, 5 * SECOND)
    }
}

fn produce_keys(c: &mut Cluster<BrokerNode>, client: &mut Client, leader: NodeId, n: usize) {
    for i in 0..n {
        let r = client.call(
            c,
            leader,
            produce(record_batch(&format!("k{i}")), Acks::All),
        );
        assert!(matches!(r, Some(Response::Produce(Ok(_)))), "{r:?}");
    }
}

#[test]
fn members_get_disjoint_records_and_acknowledgements_are_checked() {
    let (mut c, leader) = ready_cluster(11);
    let mut client = Client::default();
    produce_keys(&mut c, &mut client, leader, 4);
    let first = acquired(client.call(&mut c, leader, share_fetch("m1", 2, 0)));
    let second = acquired(client.call(&mut c, leader, share_fetch("m2", 10, 0)));
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 2);
    assert!(first.iter().all(|a| !second.contains(a)));
    assert!(first.iter().chain(&second).all(|&(_, count)| count == 1));

    let (o1, o2) = (first[0].0, second[0].0);
    let r = client.call(
        &mut c,
        leader,
        share_ack("m1", vec![(o1, AckKind::Accept), (o2, AckKind::Accept)]),
    );
    match r {
        Some(Response::ShareAcknowledge(Ok(ok))) => {
            assert_eq!(ok.refused, vec![(o2, ShareError::NotAcquired)])
        }
        other => panic!("{other:?}"),
    }
    // m2's locks run out; its acknowledgement then changes nothing and says why.
    c.run_for(3 * SECOND);
    let r = client.call(&mut c, leader, share_ack("m2", vec![(o2, AckKind::Accept)]));
    assert!(
        matches!(r, Some(Response::ShareAcknowledge(Ok(ref ok))) if ok.refused == vec![(o2, ShareError::LockExpired)]),
        "{r:?}"
    );
    let again = acquired(client.call(&mut c, leader, share_fetch("m3", 10, 0)));
    let mut expected: Vec<(u64, u16)> = second.iter().map(|&(o, n)| (o, n + 1)).collect();
    expected.push((first[1].0, 2));
    expected.sort();
    assert_eq!(
        again, expected,
        "expired locks come back with a higher count; accepted ones never"
    );
}

#[test]
fn a_held_share_fetch_answers_when_a_record_commits() {
    let (mut c, leader) = ready_cluster(12);
    let mut client = Client::default();
    connect(&mut c, &mut client.inbox, leader, 77);
    request(&mut c, leader, 77, 1, share_fetch("m1", 10, 5_000));
    c.run_for(ms(300));
    client.inbox.collect(&mut c);
    assert!(
        client.inbox.response(leader, 77, 1).is_none(),
        "held while empty"
    );
    request(
        &mut c,
        leader,
        77,
        2,
        produce(record_batch("late"), Acks::All),
    );
    let got = acquired(await_response(
        &mut c,
        &mut client.inbox,
        leader,
        77,
        1,
        2 * SECOND,
    ));
    assert_eq!(got.len(), 1);
}

/// A cluster whose leader of `orders/0` handed six records to `m1`, which accepted the first
/// three, and then crashed: the cluster, the client, the new leader and the six records.
fn fail_over_holding_three(
    seed: u64,
    failover: ShareFailover,
) -> (Cluster<BrokerNode>, Client, NodeId, Vec<(u64, u16)>) {
    let mut config = orders_config(3);
    config.share.failover = failover;
    let (mut c, leader) = ready(broker_cluster(seed, config, BrokerLimits::default()));
    let mut client = Client::default();
    produce_keys(&mut c, &mut client, leader, 6);
    let held = acquired(client.call(&mut c, leader, share_fetch("m1", 6, 0)));
    assert_eq!(held.len(), 6);
    let accepted: Vec<(u64, AckKind)> = held[..3]
        .iter()
        .map(|&(o, _)| (o, AckKind::Accept))
        .collect();
    let r = client.call(&mut c, leader, share_ack("m1", accepted));
    assert!(
        matches!(r, Some(Response::ShareAcknowledge(Ok(ref ok))) if ok.refused.is_empty()),
        "{r:?}"
    );

    c.crash(leader);
    let next = c.await_ready_leader_of(&orders(), 10 * SECOND);
    assert_ne!(next, leader);
    (c, client, next, held)
}

#[test]
fn a_new_leader_neither_redelivers_accepted_records_nor_forgets_acquired_ones() {
    let (mut c, mut client, next, held) = fail_over_holding_three(13, ShareFailover::KeepLocks);
    // Right after the failover: the three unacknowledged records are still m1's.
    let nothing = acquired(client.call(&mut c, next, share_fetch("m2", 10, 0)));
    assert!(nothing.is_empty(), "{nothing:?}");
    // After the lock: only those three come back, never the accepted ones.
    c.run_for(3 * SECOND);
    let back = acquired(client.call(&mut c, next, share_fetch("m2", 10, 0)));
    let expected: Vec<(u64, u16)> = held[3..].iter().map(|&(o, n)| (o, n + 1)).collect();
    assert_eq!(back, expected);
}

/// KIP-932's failover ([`ShareFailover::Release`]): the new leader hands out at once what the
/// old one had handed out and not seen acknowledged, never what it had seen accepted, counting
/// the lost acquisition as no attempt (KIP-932's new leader never learns of it); the old
/// holder's late acknowledgement is refused and changes nothing.
#[test]
fn a_releasing_new_leader_hands_out_an_earlier_leaders_acquisitions_at_once() {
    let (mut c, mut client, next, held) = fail_over_holding_three(13, ShareFailover::Release);
    let late: Vec<(u64, AckKind)> = held[3..]
        .iter()
        .map(|&(o, _)| (o, AckKind::Accept))
        .collect();
    let r = client.call(&mut c, next, share_ack("m1", late.clone()));
    let refused: Vec<(u64, ShareError)> = late
        .iter()
        .map(|&(o, _)| (o, ShareError::LockExpired))
        .collect();
    assert!(
        matches!(r, Some(Response::ShareAcknowledge(Ok(ref ok))) if ok.refused == refused),
        "{r:?}"
    );
    let back = acquired(client.call(&mut c, next, share_fetch("m2", 10, 0)));
    assert_eq!(back, held[3..]);
    // The new leader's own acquisitions survive a rebuild in its term (as after a failed
    // proposal): only an earlier term's are released.
    c.with_node(next, |b, _| b.0.forget_shares(&orders()));
    let nothing = acquired(client.call(&mut c, next, share_fetch("m3", 10, 0)));
    assert!(nothing.is_empty(), "{nothing:?}");
}

fn keyed(member: &str, max_records: u32) -> Request {
    share_fetch_in(ShareMode::KeyShared, member, max_records, 0)
}

/// Key_Shared records `a/1 a/2 b/1 a/3 b/2` on a leader that handed `a/1` to `m1`, deferred
/// `a/2` and `a/3` behind it and saw `m2` accept both `b`s, then crashed: the cluster, the
/// client, the new leader, `a/1` as acquired and the `b` offsets.
fn keyed_failover(
    seed: u64,
    failover: ShareFailover,
) -> (Cluster<BrokerNode>, Client, NodeId, (u64, u16), Vec<u64>) {
    let mut config = orders_config(3);
    config.share.failover = failover;
    let (mut c, leader) = ready(broker_cluster(seed, config, BrokerLimits::default()));
    let mut client = Client::default();
    for key in ["a/1", "a/2", "b/1", "a/3", "b/2"] {
        let r = client.call(&mut c, leader, produce(record_batch(key), Acks::All));
        assert!(matches!(r, Some(Response::Produce(Ok(_)))), "{r:?}");
    }
    let first = acquired(client.call(&mut c, leader, keyed("m1", 1)));
    assert_eq!(first.len(), 1, "a/1");
    let others = acquired(client.call(&mut c, leader, keyed("m2", 10)));
    assert_eq!(
        others.len(),
        2,
        "only b's records: a's wait behind a/1 {others:?}"
    );
    let b: Vec<u64> = others.iter().map(|&(o, _)| o).collect();
    let r = client.call(
        &mut c,
        leader,
        share_ack("m2", b.iter().map(|&o| (o, AckKind::Accept)).collect()),
    );
    assert!(
        matches!(r, Some(Response::ShareAcknowledge(Ok(_)))),
        "{r:?}"
    );
    c.crash(leader);
    let next = c.await_ready_leader_of(&orders(), 10 * SECOND);
    assert_ne!(next, leader);
    (c, client, next, first[0], b)
}

/// `a`'s records back in offset order, `a/1` first with `count`, and no `b`.
fn assert_key_a_in_order(back: &[(u64, u16)], a1: (u64, u16), count: u16, b: &[u64]) {
    let offsets: Vec<u64> = back.iter().map(|&(o, _)| o).collect();
    assert_eq!(back.len(), 3, "a/1 again, then a/2 and a/3: {back:?}");
    assert_eq!(back[0], (a1.0, count));
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    assert!(offsets.iter().all(|o| !b.contains(o)));
}

/// Key_Shared across a failover: the records a fetch deferred for their held key are in the
/// log (`Change::Defer`), so the new leader neither forgets them (they would count as done and
/// be lost) nor hands a key's later records out before its held one.
#[test]
fn a_new_leader_keeps_deferred_key_shared_records_and_their_order() {
    let (mut c, mut client, next, a1, b) = keyed_failover(15, ShareFailover::KeepLocks);
    let nothing = acquired(client.call(&mut c, next, keyed("m2", 10)));
    assert!(
        nothing.is_empty(),
        "a/1 is still m1's, a/2 and a/3 wait: {nothing:?}"
    );
    c.run_for(3 * SECOND);
    let back = acquired(client.call(&mut c, next, keyed("m2", 10)));
    assert_key_a_in_order(&back, a1, 2, &b);
}

/// The same under [`ShareFailover::Release`]: `a/1` is free at once, its lost acquisition not
/// counted, and the deferred `a/2` and `a/3` follow it in order.
#[test]
fn a_releasing_new_leader_keeps_deferred_key_shared_records_in_order() {
    let (mut c, mut client, next, a1, b) = keyed_failover(15, ShareFailover::Release);
    let back = acquired(client.call(&mut c, next, keyed("m2", 10)));
    assert_key_a_in_order(&back, a1, 1, &b);
}

#[test]
fn a_fetch_naming_the_other_mode_is_refused() {
    let (mut c, leader) = ready_cluster(16);
    let mut client = Client::default();
    produce_keys(&mut c, &mut client, leader, 2);
    let keyed = share_fetch_in(ShareMode::KeyShared, "m1", 1, 0);
    assert_eq!(acquired(client.call(&mut c, leader, keyed)).len(), 1);
    let r = client.call(&mut c, leader, share_fetch("m2", 10, 0));
    assert_eq!(
        r,
        Some(Response::ShareFetch(Err(ErrorCode::Share(
            ShareError::ModeMismatch
        ))))
    );
}

#[test]
fn bad_share_settings_are_refused_as_a_whole() {
    let (mut c, leader) = ready_cluster(14);
    let mut client = Client::default();
    let mut bad = share_fetch("m1", 10, 0);
    if let Request::ShareFetch { settings, .. } = &mut bad {
        settings.delivery_attempts_max = 0;
    }
    let r = client.call(&mut c, leader, bad);
    assert_eq!(
        r,
        Some(Response::ShareFetch(Err(ErrorCode::Share(
            ShareError::InvalidSettings
        ))))
    );
    let r = client.call(&mut c, leader, share_ack("", vec![(0, AckKind::Accept)]));
    assert_eq!(
        r,
        Some(Response::ShareAcknowledge(Err(ErrorCode::Share(
            ShareError::InvalidName
        ))))
    );
}

/// Issue 9 (push): a broker at its subscription limit refuses one more through the request
/// path, with the limit in the error, and still takes the replacement of an existing one.
#[test]
fn a_subscription_beyond_the_brokers_limit_is_refused() {
    let config = crate::testkit::cluster_config(
        3,
        vec![TopicConfig {
            name: "orders".into(),
            partitions: 1,
            replication_factor: 3,
        }],
    );
    let limits = BrokerLimits {
        push_subscriptions_max: 1,
        ..BrokerLimits::default()
    };
    let mut c = crate::testkit::broker_cluster(15, config, limits);
    let leader = c.await_ready_leader_of(&orders(), 5 * SECOND);
    c.run_for(ms(200));
    let mut client = Client::default();
    let subscribe = |id: u64| Request::Subscribe {
        subscription: crate::protocol::SubscriptionKey {
            partition: orders(),
            id,
        },
        offset: 0,
        credits: 10,
        max_bytes: 1 << 20,
    };
    let first = client.call(&mut c, leader, subscribe(1));
    assert_eq!(first, Some(Response::Subscribe(Ok(()))));
    // The same connection and partition: a replacement, within the limit.
    let again = client.call(&mut c, leader, subscribe(2));
    assert_eq!(again, Some(Response::Subscribe(Ok(()))));
    // Another connection: one subscription more than the broker holds.
    connect(&mut c, &mut client.inbox, leader, 55);
    request(&mut c, leader, 55, 9, subscribe(3));
    let refused = await_response(&mut c, &mut client.inbox, leader, 55, 9, SECOND);
    assert_eq!(
        refused,
        Some(Response::Subscribe(Err(ErrorCode::SubscriptionsFull {
            limit: 1
        })))
    );
    assert_eq!(c.broker(leader).push_subscriptions().0, 1);
}
