//! Recovery: a clean directory comes back unchanged; a torn, corrupt, out-of-order or
//! epoch-regressing batch ends the log there.

use super::disk::SimDisk;
use super::*;
use crate::log::RecoveryReport;

/// A log of `n` batches over several segments, written to a disk.
fn written(n: usize) -> (PartitionLog, SimDisk) {
    let mut log = PartitionLog::new(tp(), small_config());
    let mut disk = SimDisk::new();
    append_n(&mut log, n, 1);
    append_n(&mut log, n, 2);
    disk.apply_ops(&mut log);
    (log, disk)
}

/// Like `written`, with small batches appended until the last segment holds at least two.
fn written_with_two_batches_last(n: usize) -> (PartitionLog, SimDisk) {
    let (mut log, mut disk) = written(n);
    loop {
        log.append_as_leader(&producer_batch(1, 0, 3), 2).unwrap();
        let ops = drain(&mut log);
        let path = ops[0].path().to_string();
        for op in ops {
            disk.apply(op);
        }
        if disk.file(&path).len() > all_batches(&log).last().unwrap().len() {
            return (log, disk);
        }
    }
}

fn recover(disk: &SimDisk) -> (PartitionLog, RecoveryReport) {
    PartitionLog::recover(tp(), small_config(), disk.dir_files(DIR))
}

/// Segment paths on disk, in offset order.
fn segment_paths(disk: &SimDisk) -> Vec<String> {
    disk.files
        .keys()
        .filter(|p| p.starts_with(&format!("{DIR}/")) && p.ends_with(".log"))
        .cloned()
        .collect()
}

#[test]
fn recovery_from_applied_ops_rebuilds_the_same_log() {
    let (log, mut disk) = written(25);
    disk.put(&format!("{DIR}/meta"), b"hard state");
    disk.put("other-0/00000000000000000000.log", b"not ours");
    let (recovered, report) = recover(&disk);
    assert_eq!(report.first_error, None);
    assert_eq!(report.segments, segment_paths(&disk).len());
    assert_eq!(report.batches, 50);
    assert_eq!(report.end_offset, log.end_offset());
    assert_eq!(report.ignored_files, vec!["meta".to_string()]);
    assert_eq!(
        (report.truncated_bytes, report.removed_segments.len()),
        (0, 0)
    );
    assert_eq!(all_batches(&recovered), all_batches(&log));
    assert_eq!(recovered.end_offset(), log.end_offset());
    assert_eq!(recovered.durable_end_offset(), recovered.end_offset());
    assert_eq!(recovered.last_epoch(), 2);
    for o in 0..=log.end_offset() + 1 {
        assert_eq!(
            recovered.epoch_at_end(o),
            log.epoch_at_end(o),
            "epoch_at_end({o})"
        );
        assert_eq!(recovered.read(o, u64::MAX, 300), log.read(o, u64::MAX, 300));
    }
    assert_eq!(
        recovered.last_offset_of_epoch(1),
        log.last_offset_of_epoch(1)
    );
    let mut recovered = recovered;
    assert_eq!(recovered.poll_op(), None, "a clean recovery writes nothing");
}

#[test]
fn recovered_log_keeps_appending_into_its_last_segment() {
    let (_, mut disk) = written(5);
    let (mut log, _) = recover(&disk);
    let last = segment_paths(&disk).pop().unwrap();
    log.append_as_leader(&producer_batch(1, 1, 9), 3).unwrap();
    let ops = drain(&mut log);
    assert!(matches!(&ops[..], [StorageOp::Append { path, .. }] if *path == last));
    for op in ops {
        disk.apply(op);
    }
    let (again, report) = recover(&disk);
    assert_eq!(report.first_error, None);
    assert_eq!(all_batches(&again), all_batches(&log));
}

/// A crash tears the last write: every cut inside the last batch loses exactly that batch.
#[test]
fn torn_last_batch_is_cut_back_to_the_previous_boundary() {
    let (log, disk) = written_with_two_batches_last(12);
    let last_path = segment_paths(&disk).pop().unwrap();
    let last = all_batches(&log).pop().unwrap();
    let whole_len = disk.file(&last_path).len();
    let batch_start = whole_len - last.len();
    assert!(
        batch_start > 0,
        "the last segment holds more than the torn batch"
    );
    let previous_end = batch::parse(&last).unwrap().base_offset;
    for cut in batch_start..whole_len {
        let mut torn = disk.clone();
        torn.file_mut(&last_path).truncate(cut);
        let (mut recovered, report) = recover(&torn);
        assert_eq!(recovered.end_offset(), previous_end, "cut at {cut}");
        assert_eq!(recovered.durable_end_offset(), previous_end);
        let ops = drain(&mut recovered);
        if cut == batch_start {
            assert_eq!(report.first_error, None, "a cut at a boundary is no tear");
            assert!(ops.is_empty());
            continue;
        }
        assert_eq!(report.truncated_bytes, (cut - batch_start) as u64);
        assert!(!report.corrupt, "cut at {cut}: a tear is no corruption");
        assert!(report.first_error.unwrap().contains("incomplete"));
        assert!(report.removed_segments.is_empty());
        assert_eq!(
            ops,
            vec![
                StorageOp::Truncate {
                    path: last_path.clone(),
                    len: batch_start as u64
                },
                StorageOp::Sync {
                    path: last_path.clone(),
                    token: log_token(1)
                },
            ],
            "cut at {cut}: the cut is made durable"
        );
    }
}

#[test]
fn recovery_after_a_cut_appends_to_a_new_segment_and_recovers_again() {
    let (log, disk) = written_with_two_batches_last(12);
    let last_path = segment_paths(&disk).pop().unwrap();
    let mut disk = disk;
    let len = disk.file(&last_path).len();
    disk.file_mut(&last_path).truncate(len - 3);
    let (mut recovered, _) = recover(&disk);
    disk.apply_ops(&mut recovered);
    recovered
        .append_as_leader(&producer_batch(2, 3, 7), 5)
        .unwrap();
    let ops = drain(&mut recovered);
    let new_path = segment_path(recovered.end_offset() - 2);
    assert!(
        matches!(&ops[..], [StorageOp::Append { path, .. }] if *path == new_path),
        "a cut segment is sealed: {ops:?}"
    );
    for op in ops {
        disk.apply(op);
    }
    let (again, report) = recover(&disk);
    assert_eq!(report.first_error, None);
    assert_eq!(all_batches(&again), all_batches(&recovered));
    let mut expected = all_batches(&log);
    expected.pop();
    assert_eq!(all_batches(&again)[..expected.len()], expected[..]);
}

/// A flipped bit in an old segment loses everything after it: later batches cannot be
/// trusted to continue the same history.
#[test]
fn corruption_in_a_middle_segment_drops_everything_after_that_batch() {
    let (log, mut disk) = written(25);
    let paths = segment_paths(&disk);
    // A middle segment with at least two batches; corrupt a record of its second batch.
    let (victim_at, first_len) = (1..paths.len() - 1)
        .find_map(|i| {
            let file = disk.file(&paths[i]);
            let first_len = batch::parse(file).unwrap().total_bytes();
            (first_len < file.len()).then_some((i, first_len))
        })
        .expect("some middle segment holds two batches");
    let victim = paths[victim_at].clone();
    disk.file_mut(&victim)[first_len + batch::HEADER_BYTES + 3] ^= 0x10;
    let (mut recovered, report) = recover(&disk);

    let survivors = all_batches(&recovered);
    let original = all_batches(&log);
    assert_eq!(
        survivors[..],
        original[..survivors.len()],
        "a prefix survives"
    );
    let last_survivor = survivors.last().unwrap();
    assert_eq!(
        Some(last_survivor),
        disk.dir_files(DIR)
            .iter()
            .find(|(name, _)| victim.ends_with(name.as_str()))
            .map(|(_, b)| b.slice(..first_len))
            .as_ref(),
        "the victim's first batch is the last survivor"
    );
    assert!(report.first_error.unwrap().contains("checksum"));
    assert!(report.corrupt, "a flipped bit mid-log is corruption");
    let later: Vec<String> = paths[victim_at + 1..]
        .iter()
        .map(|p| p[DIR.len() + 1..].to_string())
        .collect();
    assert!(!later.is_empty());
    assert_eq!(report.removed_segments, later);
    assert_eq!(report.segments, victim_at + 1);

    let mut expected = vec![StorageOp::Truncate {
        path: victim.clone(),
        len: first_len as u64,
    }];
    expected.extend(
        paths[victim_at + 1..]
            .iter()
            .map(|p| StorageOp::Remove { path: p.clone() }),
    );
    expected.push(StorageOp::Sync {
        path: victim.clone(),
        token: log_token(1),
    });
    assert_eq!(drain(&mut recovered), expected);
    let total: u64 = paths.iter().map(|p| disk.file(p).len() as u64).sum();
    let kept: u64 = survivors.iter().map(|b| b.len() as u64).sum();
    assert_eq!(report.truncated_bytes, total - kept);
}

#[test]
fn a_missing_middle_segment_ends_the_log_before_the_gap() {
    let (log, mut disk) = written(25);
    let paths = segment_paths(&disk);
    let gap_start = crate::log::segment::parse_file_name(&paths[2][DIR.len() + 1..]).unwrap();
    disk.apply(StorageOp::Remove {
        path: paths[2].clone(),
    });
    let (recovered, report) = recover(&disk);
    assert_eq!(recovered.end_offset(), gap_start);
    assert_eq!(
        all_batches(&recovered)[..],
        all_batches(&log)[..all_batches(&recovered).len()]
    );
    assert_eq!(report.removed_segments.len(), paths.len() - 3);
    assert!(report
        .first_error
        .unwrap()
        .contains("segment starts at offset"));
}

#[test]
fn a_batch_with_a_lower_epoch_or_a_wrong_offset_ends_the_log() {
    let first = batch::stamp(&producer_batch(2, 5, 1), 0, 4);
    for (second, why) in [
        (
            batch::stamp(&producer_batch(1, 5, 2), 2, 3),
            "leader epoch 3 follows epoch 4",
        ),
        (
            batch::stamp(&producer_batch(1, 5, 2), 3, 4),
            "starts at offset 3, expected 2",
        ),
        (
            batch::stamp(&producer_batch(1, 5, 2), 1, 4),
            "starts at offset 1, expected 2",
        ),
    ] {
        let mut disk = SimDisk::new();
        disk.put(&segment_path(0), &[&first[..], &second[..]].concat());
        let (mut recovered, report) = recover(&disk);
        assert_eq!(recovered.end_offset(), 2, "{why}");
        assert!(
            report.first_error.as_deref().unwrap().contains(why),
            "{report:?}"
        );
        assert_eq!(
            drain(&mut recovered)[0],
            StorageOp::Truncate {
                path: segment_path(0),
                len: first.len() as u64
            }
        );
    }
}

#[test]
fn a_segment_whose_name_disagrees_with_its_first_batch_is_removed() {
    let mut disk = SimDisk::new();
    disk.put(
        &segment_path(0),
        &batch::stamp(&producer_batch(2, 5, 1), 0, 1),
    );
    disk.put(
        &segment_path(2),
        &batch::stamp(&producer_batch(2, 5, 1), 5, 1),
    );
    let (mut recovered, report) = recover(&disk);
    assert_eq!(recovered.end_offset(), 2);
    assert_eq!(
        report.removed_segments,
        vec!["00000000000000000002.log".to_string()]
    );
    assert_eq!(
        drain(&mut recovered),
        vec![
            StorageOp::Remove {
                path: segment_path(2)
            },
            StorageOp::Sync {
                path: segment_path(0),
                token: log_token(1)
            },
        ]
    );
}

/// Some file systems extend a file with zeros when a crash interrupts an append.
/// A whole last batch that fails its checksum was written in full, so it may have been
/// synced and acknowledged: corruption, not a tear.
#[test]
fn a_flipped_bit_in_a_whole_last_batch_is_corruption() {
    let (_, mut disk) = written(6);
    let last = segment_paths(&disk).pop().unwrap();
    let len = disk.file(&last).len();
    disk.file_mut(&last)[len - 2] ^= 0x01;
    let (_, report) = recover(&disk);
    assert!(report.first_error.unwrap().contains("checksum"));
    assert!(report.corrupt);
}

/// A leader's control batch (one empty record) ends in zeros of its own, the key's and the
/// value's lengths: a flipped bit in it is corruption, not a tear, although its last byte is
/// zero. Before the torn-tail check counted the zeros, such a flip after a power loss let a
/// replica cut acknowledged records and vote as if it never held them (swarm seed 729).
#[test]
fn a_flipped_bit_in_a_control_batch_is_corruption() {
    let control = batch::stamp(&batch::build_control(1_000_000), 0, 1);
    assert_eq!(
        control.last(),
        Some(&0),
        "an empty record ends in zero lengths"
    );
    let data = batch::stamp(&producer_batch(2, 5, 1), 1, 1);
    let mut file = control.to_vec();
    file.extend_from_slice(&data);
    file[30] ^= 0x10;
    let mut disk = SimDisk::new();
    disk.put(&segment_path(0), &file);
    let (recovered, report) = recover(&disk);
    assert_eq!(recovered.end_offset(), 0);
    assert!(report.first_error.unwrap().contains("checksum"));
    assert!(report.corrupt);
}

/// A torn length is zero, whole, or keeps its high bytes; a non-zero length too short for a
/// header is a flipped bit.
#[test]
fn a_length_too_short_for_a_header_is_corruption() {
    let (_, mut disk) = written(6);
    let last = segment_paths(&disk).pop().unwrap();
    disk.file_mut(&last)[8..12].copy_from_slice(&20u32.to_be_bytes());
    let (_, report) = recover(&disk);
    assert!(report
        .first_error
        .unwrap()
        .contains("shorter than its header"));
    assert!(report.corrupt);
}

/// Each unsynced write keeps a prefix of its blocks or nothing, independently: a batch whose
/// end was lost reads back zero-filled when a later write survived, and a write lost whole
/// leaves a hole of zeros before later data. Both are tears, not corruption.
#[test]
fn holes_and_zero_filled_batch_ends_before_later_data_are_tears() {
    let (_, disk) = written(6);
    let last = segment_paths(&disk).pop().unwrap();
    let file = disk.file(&last).to_vec();
    let first_len = batch::parse(&file).unwrap().total_bytes();
    assert!(first_len < file.len(), "the last segment holds two batches");

    // The batch's last 32 bytes lost: a block boundary that close to its end.
    let mut end_lost = disk.clone();
    end_lost.file_mut(&last)[first_len - 32..first_len].fill(0);
    let (_, report) = recover(&end_lost);
    assert!(report.first_error.is_some());
    assert!(!report.corrupt, "a batch cut short and zero-filled is torn");

    let mut hole = disk.clone();
    hole.file_mut(&last)[..first_len].fill(0);
    let (_, report) = recover(&hole);
    assert!(report.first_error.is_some());
    assert!(
        !report.corrupt,
        "a write lost whole is a hole, not corruption"
    );
}

#[test]
fn a_zero_filled_tail_is_cut() {
    let (log, mut disk) = written(6);
    let last = segment_paths(&disk).pop().unwrap();
    let len = disk.file(&last).len();
    disk.file_mut(&last).extend_from_slice(&[0u8; 100]);
    let (recovered, report) = recover(&disk);
    assert_eq!(recovered.end_offset(), log.end_offset());
    assert_eq!(report.truncated_bytes, 100);
    assert!(!report.corrupt, "zeros are what a lost block reads back as");
    let mut recovered = recovered;
    assert_eq!(
        drain(&mut recovered)[0],
        StorageOp::Truncate {
            path: last,
            len: len as u64
        }
    );
}

#[test]
fn an_empty_directory_recovers_an_empty_log() {
    let (mut log, report) = PartitionLog::recover(tp(), small_config(), vec![]);
    assert!(log.is_empty());
    assert_eq!(report, RecoveryReport::default());
    assert_eq!(log.poll_op(), None);
    assert_eq!(
        log.append_as_leader(&producer_batch(1, 1, 1), 1),
        Ok((0, 1))
    );
}

#[test]
fn a_first_segment_with_a_bad_first_batch_leaves_an_empty_log() {
    let mut disk = SimDisk::new();
    let mut b = batch::stamp(&producer_batch(2, 5, 1), 0, 1).to_vec();
    b[30] ^= 1;
    disk.put(&segment_path(0), &b);
    let (mut recovered, report) = recover(&disk);
    assert!(recovered.is_empty());
    assert_eq!(report.removed_segments.len(), 1);
    assert_eq!(
        drain(&mut recovered),
        vec![StorageOp::Remove {
            path: segment_path(0)
        }],
        "no file is left to sync"
    );
    assert_eq!(
        recovered.append_as_leader(&producer_batch(1, 1, 1), 1),
        Ok((0, 1))
    );
}

/// A roll whose first append never reached the disk leaves an empty file behind.
#[test]
fn an_empty_last_segment_is_kept_and_appended_to() {
    let (log, mut disk) = written(5);
    let empty = segment_path(log.end_offset());
    disk.put(&empty, &[]);
    let (mut recovered, report) = recover(&disk);
    assert_eq!(report.first_error, None);
    assert_eq!(report.segments, segment_paths(&disk).len());
    assert_eq!(recovered.end_offset(), log.end_offset());
    assert_eq!(recovered.poll_op(), None);
    recovered
        .append_as_leader(&producer_batch(1, 1, 1), 3)
        .unwrap();
    assert_eq!(recovered.poll_op().unwrap().path(), empty);
}
