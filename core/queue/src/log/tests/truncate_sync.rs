//! Truncation and the durable end: what `truncate_to` removes, and that a sync can never make
//! durable more than what is still in the log.

use super::disk::SimDisk;
use super::*;
use crate::log::SYNCS_IN_FLIGHT_MAX;

/// Segment paths named in `Append` ops, in order of first use.
fn appended_paths(ops: &[StorageOp]) -> Vec<String> {
    let mut paths: Vec<String> = vec![];
    for op in ops {
        if let StorageOp::Append { path, .. } = op {
            if paths.last() != Some(path) {
                paths.push(path.clone());
            }
        }
    }
    paths
}

fn base_of(path: &str) -> u64 {
    crate::log::segment::parse_file_name(&path[DIR.len() + 1..]).unwrap()
}

#[test]
fn truncation_across_segments_cuts_one_and_removes_the_later_ones() {
    let mut log = PartitionLog::new(tp(), small_config());
    append_n(&mut log, 30, 1);
    append_n(&mut log, 10, 2);
    let paths = appended_paths(&drain(&mut log));
    assert!(paths.len() >= 5);
    let before = all_batches(&log);
    let ends = batch_ends(&log);
    // Cut after the first batch of the first segment (past the first) that holds several.
    let (at, cut) = (1..paths.len() - 1)
        .find_map(|i| {
            let (base, next) = (base_of(&paths[i]), base_of(&paths[i + 1]));
            let first_end = *ends.iter().find(|&&e| e > base)?;
            (first_end < next).then_some((i, first_end))
        })
        .expect("a middle segment holds two batches");
    let cut_segment = &paths[at];
    let seg_base = base_of(cut_segment);
    let kept_in_segment: u64 = before
        .iter()
        .filter(|b| {
            let h = batch::parse(b).unwrap();
            h.base_offset >= seg_base && h.end_offset() <= cut
        })
        .map(|b| b.len() as u64)
        .sum();

    log.truncate_to(cut);
    let mut expected: Vec<StorageOp> = paths[at + 1..]
        .iter()
        .map(|p| StorageOp::Remove { path: p.clone() })
        .collect();
    expected.push(StorageOp::Truncate {
        path: cut_segment.clone(),
        len: kept_in_segment,
    });
    assert_eq!(drain(&mut log), expected);
    assert_eq!(log.end_offset(), cut);
    assert_eq!(log.last_epoch(), 1);
    assert_eq!(log.last_offset_of_epoch(2), Some((cut, 1)));
    let after = all_batches(&log);
    assert_eq!(after[..], before[..after.len()]);
    assert_eq!(batch_ends(&log).last(), Some(&cut));
    assert_eq!(log.epoch_at_end(cut), Some(1));
    assert_eq!(log.epoch_at_end(*ends.last().unwrap()), None);
    assert!(log.read(cut, u64::MAX, usize::MAX).is_empty());

    // The cut segment is sealed: new batches go to a segment named after the cut.
    log.append_as_leader(&producer_batch(1, 5, 9), 3).unwrap();
    assert_eq!(appended_paths(&drain(&mut log)), vec![segment_path(cut)]);
    assert_eq!(log.read(cut, u64::MAX, usize::MAX).len(), 1);
}

#[test]
fn truncation_at_a_segment_base_removes_without_cutting() {
    let mut log = PartitionLog::new(tp(), small_config());
    append_n(&mut log, 20, 1);
    log.request_sync();
    let paths = appended_paths(&drain(&mut log));
    for _ in 0..paths.len() {
        log.handle_synced(1);
    }
    assert_eq!(log.durable_end_offset(), log.end_offset());
    let cut = base_of(&paths[2]);
    log.truncate_to(cut);
    assert_eq!(log.durable_end_offset(), cut);
    let ops = drain(&mut log);
    assert_eq!(
        ops,
        paths[2..]
            .iter()
            .map(|p| StorageOp::Remove { path: p.clone() })
            .collect::<Vec<_>>()
    );
    assert_eq!(log.end_offset(), cut);
    assert!(log.request_sync(), "the removals want a directory sync");
    assert_eq!(
        drain(&mut log),
        vec![StorageOp::Sync {
            path: paths[1].clone(),
            token: log_token(2)
        }]
    );
    log.append_as_leader(&producer_batch(1, 0, 1), 1).unwrap();
    assert_eq!(
        appended_paths(&drain(&mut log)),
        vec![segment_path(cut)],
        "the uncut last segment is sealed too"
    );
}

#[test]
fn truncation_to_zero_empties_the_log() {
    let mut log = PartitionLog::new(tp(), small_config());
    append_n(&mut log, 10, 4);
    log.truncate_to(0);
    assert!(log.is_empty());
    assert_eq!((log.end_offset(), log.last_epoch()), (0, 0));
    assert!(all_batches(&log).is_empty());
    assert!(drain(&mut log)
        .iter()
        .all(|op| matches!(op, StorageOp::Append { .. } | StorageOp::Remove { .. })));
    assert_eq!(
        log.append_as_leader(&producer_batch(1, 1, 1), 1),
        Ok((0, 1))
    );
}

/// A cut inside a batch is a replication bug: a debug build stops on it, a release build
/// refuses it and keeps the log whole.
#[test]
#[cfg_attr(debug_assertions, should_panic(expected = "not a batch boundary"))]
fn truncation_inside_a_batch_is_refused() {
    let mut log = PartitionLog::new(tp(), small_config());
    log.append_as_leader(&producer_batch(3, 1, 1), 1).unwrap();
    log.truncate_to(2);
    assert_eq!(log.end_offset(), 3);
}

#[test]
fn durable_end_follows_completed_syncs() {
    let mut log = PartitionLog::new(tp(), small_config());
    let mut disk = SimDisk::new();
    append_n(&mut log, 3, 1);
    assert_eq!(log.durable_end_offset(), 0);
    assert!(log.request_sync());
    assert!(!log.request_sync(), "already covered by the sync in flight");
    disk.apply_ops(&mut log);
    let synced_end = log.end_offset();
    append_n(&mut log, 1, 1);
    disk.complete_syncs(&mut log, disk.syncs_in_flight());
    assert_eq!(
        log.durable_end_offset(),
        synced_end,
        "not the batch after the sync"
    );
    assert!(log.request_sync());
    disk.apply_ops(&mut log);
    disk.complete_syncs(&mut log, 1);
    assert_eq!(log.durable_end_offset(), log.end_offset());
    assert!(!log.request_sync());
}

/// A token covering several files counts only when all of them, and every earlier token, are
/// done: an earlier token may be what covers a file this one did not need to sync.
#[test]
fn a_token_counts_once_all_its_syncs_and_all_earlier_tokens_complete() {
    let mut log = PartitionLog::new(tp(), small_config());
    append_n(&mut log, 3, 1);
    log.request_sync();
    let first_end = log.end_offset();
    append_n(&mut log, 12, 1);
    log.request_sync();
    let syncs: Vec<(String, u64)> = drain(&mut log)
        .into_iter()
        .filter_map(|op| match op {
            StorageOp::Sync { path, token } => Some((path, token.seq)),
            _ => None,
        })
        .collect();
    let count = |token: u64| syncs.iter().filter(|(_, t)| *t == token).count();
    assert!(count(2) >= 2, "the second token spans segments: {syncs:?}");
    for _ in 0..count(2) {
        log.handle_synced(2);
        assert_eq!(log.durable_end_offset(), 0, "token 1 is still in flight");
    }
    for i in 0..count(1) {
        assert_eq!(log.durable_end_offset(), 0, "token 1 has a sync left");
        log.handle_synced(1);
        if i == 0 && count(1) > 1 {
            assert_eq!(log.durable_end_offset(), 0);
        }
    }
    assert!(first_end < log.end_offset());
    assert_eq!(log.durable_end_offset(), log.end_offset());
    log.handle_synced(1);
    log.handle_synced(77);
    assert_eq!(
        log.durable_end_offset(),
        log.end_offset(),
        "stray reports change nothing"
    );
}

/// Replication truncates a follower's unsynced tail and writes the leader's batches there; the
/// sync issued for the old tail must not vouch for the new one.
#[test]
fn a_sync_issued_before_a_truncation_does_not_raise_durable_past_the_cut() {
    let mut log = PartitionLog::new(tp(), small_config());
    let mut disk = SimDisk::new();
    append_n(&mut log, 4, 1);
    let cut = log.end_offset();
    append_n(&mut log, 4, 1);
    assert!(log.request_sync());
    disk.apply_ops(&mut log);
    log.truncate_to(cut);
    assert_eq!(log.durable_end_offset(), 0);
    append_n(&mut log, 6, 2);
    disk.apply_ops(&mut log);
    disk.complete_syncs(&mut log, disk.syncs_in_flight());
    assert_eq!(log.durable_end_offset(), cut, "only what survived the cut");
    assert!(log.request_sync());
    disk.apply_ops(&mut log);
    disk.complete_syncs(&mut log, disk.syncs_in_flight());
    assert_eq!(log.durable_end_offset(), log.end_offset());
}

#[test]
fn truncation_lowers_the_durable_end() {
    let mut log = PartitionLog::new(tp(), small_config());
    let mut disk = SimDisk::new();
    append_n(&mut log, 8, 1);
    log.request_sync();
    disk.apply_ops(&mut log);
    disk.complete_syncs(&mut log, disk.syncs_in_flight());
    let cut = batch_ends(&log)[3];
    log.truncate_to(cut);
    assert_eq!(log.durable_end_offset(), cut);
}

#[test]
fn syncs_beyond_the_in_flight_limit_wait_and_then_go_out_as_one() {
    let mut config = small_config();
    config.segment_bytes_max = 1 << 20;
    let mut log = PartitionLog::new(tp(), config);
    let mut disk = SimDisk::new();
    for _ in 0..SYNCS_IN_FLIGHT_MAX {
        append_n(&mut log, 1, 1);
        assert!(log.request_sync());
    }
    disk.apply_ops(&mut log);
    let issued = disk.syncs_in_flight();
    for _ in 0..3 {
        append_n(&mut log, 1, 1);
        assert!(log.request_sync(), "deferred, not refused");
    }
    disk.apply_ops(&mut log);
    assert_eq!(disk.syncs_in_flight(), issued, "nothing beyond the limit");
    disk.complete_syncs(&mut log, 1);
    assert_eq!(
        disk.syncs_in_flight(),
        issued,
        "one done, one new for the deferred tail"
    );
    disk.complete_syncs(&mut log, disk.syncs_in_flight());
    assert_eq!(log.durable_end_offset(), log.end_offset());
}

#[test]
fn recovery_sync_leaves_the_durable_end_in_place() {
    let mut log = PartitionLog::new(tp(), small_config());
    let mut disk = SimDisk::new();
    append_n(&mut log, 8, 1);
    disk.apply_ops(&mut log);
    let path = disk.files.keys().next_back().unwrap().clone();
    disk.file_mut(&path).pop();
    let (mut recovered, _) = PartitionLog::recover(tp(), small_config(), disk.dir_files(DIR));
    let end = recovered.end_offset();
    assert_eq!(recovered.durable_end_offset(), end);
    disk.apply_ops(&mut recovered);
    assert_eq!(disk.syncs_in_flight(), 1);
    disk.complete_syncs(&mut recovered, 1);
    assert_eq!(recovered.durable_end_offset(), end);
    assert!(!recovered.request_sync(), "nothing left to sync");
}
