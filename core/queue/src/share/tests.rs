use std::time::Duration;

use super::*;
use crate::log::batch;

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

fn settings(lock_ms: u32, attempts: u16, window: u32) -> ShareSettings {
    ShareSettings {
        acquisition_lock_ms: lock_ms,
        delivery_attempts_max: attempts,
        record_locks_max: window,
        dead_letter_deliveries: 0,
    }
}

fn offsets(a: &Acquisition) -> Vec<(u64, u16)> {
    a.acquired
        .iter()
        .map(|r| (r.offset, r.delivery_count))
        .collect()
}

#[test]
fn members_acquire_disjoint_records_in_offset_order() {
    let s = settings(1_000, 5, 200);
    let mut p = SharePartition::default();
    let a = p.acquire(at(0), "m1", 3, &s, 0..10);
    assert_eq!(offsets(&a), vec![(0, 1), (1, 1), (2, 1)]);
    let b = p.acquire(at(0), "m2", 3, &s, 0..10);
    assert_eq!(offsets(&b), vec![(3, 1), (4, 1), (5, 1)]);
    assert_eq!((p.start(), p.end(), p.acquired()), (0, 6, 6));
}

#[test]
fn accepted_records_are_never_delivered_again() {
    let s = settings(1_000, 5, 200);
    let mut p = SharePartition::default();
    p.acquire(at(0), "m1", 2, &s, 0..2);
    let (change, refused) =
        p.acknowledge(at(1), "m1", &[(0, AckKind::Accept), (1, AckKind::Accept)]);
    assert!(change.is_some() && refused.is_empty());
    assert_eq!((p.start(), p.in_flight()), (2, 0));
    // Even long after every lock would have expired.
    p.expire(at(10_000));
    assert!(p
        .acquire(at(10_000), "m2", 10, &s, 0..2)
        .acquired
        .is_empty());
}

#[test]
fn released_and_expired_records_are_redelivered_with_a_higher_count() {
    let s = settings(1_000, 5, 200);
    let mut p = SharePartition::default();
    p.acquire(at(0), "m1", 2, &s, 0..2);
    p.acknowledge(at(1), "m1", &[(0, AckKind::Release)]);
    assert_eq!(p.expire(at(999)), 0);
    assert_eq!(p.expire(at(1_000)), 1);
    let again = p.acquire(at(1_000), "m2", 5, &s, 0..2);
    assert_eq!(offsets(&again), vec![(0, 2), (1, 2)]);
}

#[test]
fn an_acknowledgement_the_member_cannot_make_changes_nothing() {
    let s = settings(1_000, 5, 200);
    let mut p = SharePartition::default();
    p.acquire(at(0), "m1", 2, &s, 0..2);
    let before = p.clone();
    let (change, refused) =
        p.acknowledge(at(5), "m2", &[(0, AckKind::Accept), (7, AckKind::Accept)]);
    assert_eq!(change, None);
    assert_eq!(
        refused,
        vec![(0, ShareError::NotAcquired), (7, ShareError::NotAcquired)]
    );
    // The holder's lock ran out: its late acknowledgement is told so, before and after expiry.
    let (_, late) = p.acknowledge(at(1_000), "m1", &[(1, AckKind::Accept)]);
    assert_eq!(late, vec![(1, ShareError::LockExpired)]);
    p.expire(at(1_000));
    let (_, late) = p.acknowledge(at(1_001), "m1", &[(1, AckKind::Accept)]);
    assert_eq!(late, vec![(1, ShareError::LockExpired)]);
    assert_eq!(before.in_flight(), p.in_flight());
}

#[test]
fn a_record_out_of_attempts_is_archived_instead_of_delivered() {
    let s = settings(1_000, 2, 200);
    let mut p = SharePartition::default();
    for (i, expected) in [1u16, 2].into_iter().enumerate() {
        let a = p.acquire(at(0), "m1", 1, &s, 0..1);
        assert_eq!(offsets(&a), vec![(0, expected)], "attempt {i}");
        p.acknowledge(at(0), "m1", &[(0, AckKind::Release)]);
    }
    let third = p.acquire(at(0), "m1", 1, &s, 0..2);
    assert_eq!(third.archived, vec![0]);
    assert_eq!(
        offsets(&third),
        vec![(1, 1)],
        "the archive made room for a new record"
    );
    assert!(matches!(third.changes[0], Change::Archive { .. }));
}

/// With dead-letter deliveries, a record whose attempts are used (here its last lock expired)
/// is delivered again with a count past the attempts, and archived only after those.
#[test]
fn a_record_out_of_attempts_gets_its_dead_letter_deliveries_then_is_archived() {
    let s = ShareSettings {
        dead_letter_deliveries: 1,
        ..settings(1_000, 2, 200)
    };
    let mut p = SharePartition::default();
    // Each lock (1 s) expires: the member never answers.
    for (i, expected) in [1u16, 2].into_iter().enumerate() {
        let now = i as u64 * 1_500;
        let a = p.acquire(at(now), "m1", 1, &s, 0..1);
        assert_eq!(offsets(&a), vec![(0, expected)], "attempt {i}");
        assert!(!s.is_dead_letter_delivery(expected));
        assert_eq!(p.expire(at(now + 1_200)), 1);
    }
    let dead = p.acquire(at(3_000), "m2", 1, &s, 0..1);
    assert_eq!(offsets(&dead), vec![(0, 3)]);
    assert!(dead.archived.is_empty());
    assert!(s.is_dead_letter_delivery(3));
    assert_eq!(p.expire(at(4_500)), 1);
    let last = p.acquire(at(4_500), "m2", 1, &s, 0..1);
    assert_eq!(last.archived, vec![0], "past its dead-letter deliveries");
    assert!(last.acquired.is_empty());
}

#[test]
fn the_window_bounds_new_records_but_not_redeliveries() {
    let s = settings(1_000, 5, 3);
    let mut p = SharePartition::default();
    assert_eq!(p.acquire(at(0), "m1", 10, &s, 0..10).acquired.len(), 3);
    assert!(p.acquire(at(0), "m2", 10, &s, 0..10).acquired.is_empty());
    assert!(!p.has_available(&s, true));
    p.acknowledge(at(1), "m1", &[(1, AckKind::Release), (2, AckKind::Accept)]);
    let next = p.acquire(at(1), "m2", 10, &s, 0..10);
    assert_eq!(offsets(&next), vec![(1, 2), (3, 1)]);
}

#[test]
fn a_replay_of_the_changes_rebuilds_the_state() {
    let s = settings(1_000, 5, 200);
    let mut leader = SharePartition::default();
    let mut changes = Vec::new();
    changes.extend(leader.acquire(at(0), "m1", 4, &s, 0..6).changes);
    changes.extend(
        leader
            .acknowledge(at(1), "m1", &[(0, AckKind::Accept), (2, AckKind::Release)])
            .0,
    );
    changes.extend(leader.acquire(at(2), "m2", 2, &s, 0..6).changes);
    let mut replayed = SharePartition::default();
    for c in &changes {
        replayed.apply(at(50), c);
    }
    assert_eq!(
        (replayed.start(), replayed.end()),
        (leader.start(), leader.end())
    );
    assert_eq!(replayed.in_flight(), leader.in_flight());
    assert_eq!(replayed.acquired(), leader.acquired());
    // The replayed locks run from the replay: later, never earlier, than the leader's.
    assert_eq!(replayed.next_deadline(), Some(at(1_050)));
    // Nothing acknowledged comes back, and acquired records stay held until their lock ends.
    assert!(replayed
        .acquire(at(60), "m3", 10, &s, 0..5)
        .acquired
        .is_empty());
}

#[test]
fn changes_survive_the_control_batch_and_other_control_records_are_skipped() {
    let changes = vec![
        Change::Acquire {
            member: "m1".into(),
            offsets: vec![4, 5],
            lock_ms: 30_000,
            keys: None,
        },
        Change::Defer {
            records: vec![(6, 17)],
        },
        Change::Acquire {
            member: "m2".into(),
            offsets: vec![7],
            lock_ms: 30_000,
            keys: Some(vec![18]),
        },
        Change::Acknowledge {
            offsets: vec![(4, AckKind::Reject)],
        },
    ];
    let stored = batch::stamp(&record::encode("g", &changes, 9), 10, 1);
    let decoded = record::decode(&stored);
    assert_eq!(
        decoded,
        changes
            .into_iter()
            .map(|c| ("g".to_string(), c))
            .collect::<Vec<_>>()
    );
    let term_start = batch::stamp(&batch::build_control(1), 3, 1);
    assert!(record::decode(&term_start).is_empty());
}

#[test]
fn settings_out_of_range_are_refused() {
    assert_eq!(ShareSettings::default().check(), Ok(()));
    for bad in [
        settings(0, 5, 200),
        settings(1_000, 0, 200),
        settings(1_000, 5, 0),
        ShareSettings {
            dead_letter_deliveries: 11,
            ..ShareSettings::default()
        },
    ] {
        assert_eq!(bad.check(), Err(ShareError::InvalidSettings));
    }
    assert_eq!(check_name(""), Err(ShareError::InvalidName));
    assert_eq!(check_name("a\0b"), Err(ShareError::InvalidName));
}

/// Records `(offset, ordering key)`; the keys are small numbers standing in for hashes.
fn keyed(records: &[(u64, u32)]) -> Vec<(u64, u32)> {
    records.to_vec()
}

/// Key_Shared (Pulsar; PIP-379): while m1 holds key 1, m2 gets only key 2's records and key 1's
/// later records are deferred, not lost; once m1 is done they go, in offset order. Fails if the
/// key rule is removed (m2 would get 1 and 2 of key 1 at once).
#[test]
fn key_shared_hands_a_key_to_one_member_at_a_time_in_offset_order() {
    let s = settings(1_000, 5, 200);
    let log = keyed(&[(0, 1), (1, 1), (2, 2), (3, 1), (4, 2)]);
    let mut p = SharePartition::default();
    assert_eq!(p.check_mode(ShareMode::KeyShared), Ok(()));
    let a = p.acquire_keyed(at(0), "m1", 1, &s, log.clone());
    assert_eq!(offsets(&a), vec![(0, 1)]);
    let b = p.acquire_keyed(at(0), "m2", 10, &s, log.clone());
    assert_eq!(offsets(&b), vec![(2, 1), (4, 1)]);
    assert!(b.changes.contains(&Change::Defer {
        records: vec![(1, 1), (3, 1)]
    }));
    assert_eq!(
        (p.end(), p.in_flight()),
        (5, 5),
        "deferred records are in flight"
    );
    // m1 still holds key 1: nobody, not even m1, gets its later records.
    assert!(p
        .acquire_keyed(at(1), "m2", 10, &s, log.clone())
        .acquired
        .is_empty());
    p.acknowledge(at(2), "m1", &[(0, AckKind::Accept)]);
    let c = p.acquire_keyed(at(2), "m2", 10, &s, log);
    assert_eq!(offsets(&c), vec![(1, 1), (3, 1)]);
}

/// A released record of a key goes first: later records of its key come after it.
#[test]
fn key_shared_redelivers_a_released_record_before_its_keys_later_ones() {
    let s = settings(1_000, 5, 200);
    let log = keyed(&[(0, 1), (1, 1), (2, 1)]);
    let mut p = SharePartition::default();
    let a = p.acquire_keyed(at(0), "m1", 1, &s, log.clone());
    assert_eq!(offsets(&a), vec![(0, 1)]);
    p.acknowledge(at(1), "m1", &[(0, AckKind::Release)]);
    let b = p.acquire_keyed(at(1), "m2", 2, &s, log);
    assert_eq!(offsets(&b), vec![(0, 2), (1, 1)]);
}

/// The deferred records and the keys of acquired ones are persisted: a replay on a new leader
/// keeps them in flight (not done, not lost) and keeps their key held.
#[test]
fn a_replay_keeps_deferred_records_and_held_keys() {
    let s = settings(1_000, 5, 200);
    let log = keyed(&[(0, 1), (1, 1), (2, 2)]);
    let mut leader = SharePartition::default();
    let mut changes = Vec::new();
    changes.extend(
        leader
            .acquire_keyed(at(0), "m1", 1, &s, log.clone())
            .changes,
    );
    changes.extend(
        leader
            .acquire_keyed(at(0), "m2", 10, &s, log.clone())
            .changes,
    );
    let mut replayed = SharePartition::default();
    for c in &changes {
        replayed.apply(at(50), c);
    }
    assert_eq!(replayed.in_flight(), 3);
    assert_eq!(
        replayed.check_mode(ShareMode::Shared),
        Err(ShareError::ModeMismatch)
    );
    assert!(replayed
        .acquire_keyed(at(60), "m3", 10, &s, log.clone())
        .acquired
        .is_empty());
    replayed.expire(at(1_050));
    let back = replayed.acquire_keyed(at(1_050), "m3", 10, &s, log);
    assert_eq!(
        offsets(&back),
        vec![(0, 2), (1, 1), (2, 2)],
        "in offset order"
    );
}

#[test]
fn the_ordering_key_is_the_key_up_to_its_first_slash() {
    assert_eq!(ordering_key(b"k3/p-0-17"), b"k3");
    assert_eq!(ordering_key(b"p-0-17"), b"p-0-17");
    assert_eq!(ordering_key_hash(b"k3/a"), ordering_key_hash(b"k3/b/c"));
    assert_ne!(ordering_key_hash(b"k3/a"), ordering_key_hash(b"k4/a"));
}

#[test]
fn the_state_costs_bytes_per_record_in_flight_and_none_once_done() {
    let s = settings(1_000, 5, 200);
    let mut p = SharePartition::default();
    let empty = p.state_bytes();
    p.acquire(at(0), "member-1", 4, &s, 0..10);
    let four = p.state_bytes();
    p.acquire(at(0), "member-1", 4, &s, 0..10);
    let eight = p.state_bytes();
    assert!(four > empty, "{four} > {empty}");
    assert_eq!(
        eight - four,
        four - empty,
        "the same cost per record in flight"
    );
    let per_record = (four - empty) / 4;
    assert!(
        per_record > "member-1".len() as u64,
        "the entry and the holder's name"
    );
    let accept: Vec<(u64, AckKind)> = (0..8).map(|o| (o, AckKind::Accept)).collect();
    p.acknowledge(at(1), "member-1", &accept);
    assert_eq!(p.state_bytes(), empty, "accepted records cost nothing");
}
