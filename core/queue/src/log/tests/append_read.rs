//! Appending and reading: offsets, epochs, segment rolls and the bounds of `read`.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;
use crate::log::batch::BatchError;
use crate::log::LogError;

/// Sizes of the files the `Append` ops wrote, by path.
fn appended_files(ops: &[StorageOp]) -> BTreeMap<String, Vec<usize>> {
    let mut files: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for op in ops {
        if let StorageOp::Append { path, bytes } = op {
            files.entry(path.clone()).or_default().push(bytes.len());
        }
    }
    files
}

#[test]
fn leader_append_stamps_consecutive_offsets_and_the_epoch() {
    let mut log = PartitionLog::new(tp(), small_config());
    assert!(log.is_empty());
    assert_eq!((log.end_offset(), log.last_epoch()), (0, 0));
    assert_eq!(
        log.append_as_leader(&producer_batch(3, 5, 1), 2),
        Ok((0, 3))
    );
    assert_eq!(
        log.append_as_leader(&producer_batch(1, 5, 2), 4),
        Ok((3, 4))
    );
    assert_eq!((log.end_offset(), log.last_epoch()), (4, 4));
    let stored = all_batches(&log);
    let h = batch::validate(&stored[1]).unwrap();
    assert_eq!((h.base_offset, h.leader_epoch), (3, 4));
    let ops = drain(&mut log);
    assert_eq!(
        ops,
        vec![StorageOp::Append {
            path: segment_path(0),
            bytes: [stored[0].clone(), stored[1].clone()].concat().into()
        }],
        "one write of the two batches back to back, exactly the stored bytes; nothing else"
    );
}

/// Batches go to the disk in one write only while nothing else comes between them: an op on
/// another file or a sync keeps its place.
#[test]
fn appends_share_a_write_only_with_the_append_just_before_them() {
    let mut log = PartitionLog::new(tp(), small_config());
    log.append_as_leader(&producer_batch(1, 5, 1), 1).unwrap();
    log.append_as_leader(&producer_batch(1, 5, 2), 1).unwrap();
    assert!(log.request_sync());
    log.append_as_leader(&producer_batch(1, 5, 3), 1).unwrap();
    let stored = all_batches(&log);
    let ops = drain(&mut log);
    let kinds: Vec<_> = ops
        .iter()
        .map(|op| match op {
            StorageOp::Append { bytes, .. } => format!("append {}", bytes.len()),
            StorageOp::Sync { .. } => "sync".to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    let two = stored[0].len() + stored[1].len();
    let expected = [
        format!("append {two}"),
        "sync".into(),
        format!("append {}", stored[2].len()),
    ];
    assert_eq!(kinds, expected);
}

/// Undrained appends across several segment rolls: each write holds the batches of one segment,
/// in order, and goes to that segment's file; no write runs on past a roll. Where each batch
/// belongs comes from a second log drained after every append, where every batch is its own
/// write.
#[test]
fn a_run_of_appends_is_one_write_per_segment_and_never_spans_a_roll() {
    let batches: Vec<Bytes> = (0..60)
        .map(|i| producer_batch(i % 4 + 1, 10 + (i * 7) % 40, i as u8))
        .collect();
    let mut drained = PartitionLog::new(tp(), small_config());
    let mut file_of = Vec::new();
    for b in &batches {
        drained.append_as_leader(b, 1).unwrap();
        let files = appended_files(&drain(&mut drained));
        assert_eq!(files.len(), 1, "drained after each append, one write");
        file_of.extend(files.into_keys());
    }
    let mut log = PartitionLog::new(tp(), small_config());
    for b in &batches {
        log.append_as_leader(b, 1).unwrap();
    }
    let stored = all_batches(&log);
    let ops = drain(&mut log);
    let mut next = 0;
    for op in &ops {
        let StorageOp::Append { path, bytes } = op else {
            panic!("only writes were asked for: {op:?}");
        };
        let mut written = 0;
        while written < bytes.len() {
            let b = &stored[next];
            assert_eq!(&bytes[written..written + b.len()], &b[..], "batch {next}");
            assert_eq!(*path, file_of[next], "batch {next} written to its segment");
            written += b.len();
            next += 1;
        }
    }
    assert_eq!(next, stored.len(), "every batch was written");
    let mut segments = file_of.clone();
    segments.dedup();
    assert_eq!(ops.len(), segments.len(), "one write per segment");
    assert!(
        segments.len() >= 5,
        "small segments: {} files",
        segments.len()
    );
}

#[test]
fn new_log_writes_nothing_until_the_first_append() {
    let mut log = PartitionLog::new(tp(), small_config());
    assert!(!log.request_sync());
    assert_eq!(log.poll_op(), None);
}

#[test]
fn every_offset_reads_from_the_batch_holding_it_across_segments() {
    let mut log = PartitionLog::new(tp(), small_config());
    append_n(&mut log, 60, 1);
    let files = appended_files(&drain(&mut log));
    assert!(files.len() >= 5, "small segments: {} files", files.len());
    let ends = batch_ends(&log);
    let end = log.end_offset();
    assert_eq!(*ends.last().unwrap(), end);
    for from in 0..end {
        let got = log.read(from, end, usize::MAX);
        let first = batch::parse(&got[0]).unwrap();
        assert!(
            first.base_offset <= from && from < first.end_offset(),
            "read({from}) starts with {first:?}"
        );
        let got_ends: Vec<u64> = got
            .iter()
            .map(|b| batch::parse(b).unwrap().end_offset())
            .collect();
        let expected: Vec<u64> = ends.iter().copied().filter(|&e| e > from).collect();
        assert_eq!(
            got_ends, expected,
            "read({from}) returns the rest of the log"
        );
    }
    assert!(log.read(end, u64::MAX, usize::MAX).is_empty());
}

#[test]
fn read_stops_at_up_to_end_and_max_bytes_but_returns_at_least_one_batch() {
    let mut log = PartitionLog::new(tp(), small_config());
    append_n(&mut log, 40, 1);
    let ends = batch_ends(&log);
    let end = log.end_offset();
    for from in (0..end).step_by(3) {
        for up_to_end in (from..=end + 2).step_by(2) {
            let got = log.read(from, up_to_end, usize::MAX);
            let expected = ends.iter().filter(|&&e| e > from && e <= up_to_end).count();
            assert_eq!(got.len(), expected, "read({from}, {up_to_end})");
        }
        for max_bytes in [0, 1, 100, 250, 700] {
            let got = log.read(from, end, max_bytes);
            let total: usize = got.iter().map(Bytes::len).sum();
            assert!(!got.is_empty(), "a reader always gets a batch");
            assert!(
                got.len() == 1 || total <= max_bytes,
                "{total} > {max_bytes}"
            );
            let all = log.read(from, end, usize::MAX);
            if let Some(next) = all.get(got.len()) {
                assert!(
                    total + next.len() > max_bytes,
                    "read({from}, max {max_bytes}) stopped early"
                );
            }
        }
    }
}

#[test]
fn read_includes_a_batch_that_fills_max_bytes_exactly() {
    let mut log = PartitionLog::new(tp(), small_config());
    append_n(&mut log, 20, 1);
    let all = all_batches(&log);
    for from_batch in [0, 3, 9] {
        let from = batch::parse(&all[from_batch]).unwrap().base_offset;
        for k in 1..=6 {
            let exact: usize = all[from_batch..from_batch + k].iter().map(Bytes::len).sum();
            assert_eq!(
                log.read(from, u64::MAX, exact).len(),
                k,
                "{k} batches in {exact}"
            );
            assert_eq!(log.read(from, u64::MAX, exact - 1).len(), k.max(2) - 1);
        }
    }
}

#[test]
fn segments_roll_before_exceeding_their_size_and_never_split_a_batch() {
    let mut config = small_config();
    config.segment_bytes_max = 300;
    let mut log = PartitionLog::new(tp(), config);
    let mut sizes = vec![];
    let mut ops = vec![];
    for value_len in [10, 40, 100, 500, 20, 20, 900, 5] {
        let b = producer_batch(2, value_len, 1);
        sizes.push(b.len());
        log.append_as_leader(&b, 1).unwrap();
        // Drained after each, so that each write is one batch.
        ops.extend(drain(&mut log));
    }
    let files = appended_files(&ops);
    let mut seen: Vec<usize> = vec![];
    for (path, batch_sizes) in &files {
        let total: usize = batch_sizes.iter().sum();
        assert!(
            total <= 300 || batch_sizes.len() == 1,
            "{path} holds {batch_sizes:?}"
        );
        seen.extend(batch_sizes.iter().copied());
    }
    assert_eq!(seen, sizes, "every batch whole, in order");
    assert!(
        files.values().any(|s| s == &[sizes[3]]),
        "a big batch alone"
    );
}

#[test]
fn each_segment_is_named_after_its_first_offset() {
    let mut log = PartitionLog::new(tp(), small_config());
    append_n(&mut log, 30, 1);
    let mut first_base: BTreeMap<String, u64> = BTreeMap::new();
    for op in drain(&mut log) {
        if let StorageOp::Append { path, bytes } = op {
            let base = batch::parse(&bytes).unwrap().base_offset;
            first_base.entry(path).or_insert(base);
        }
    }
    assert!(first_base.len() > 2);
    for (path, base) in first_base {
        assert_eq!(path, segment_path(base));
    }
}

#[test]
fn oversized_and_malformed_batches_are_refused_without_changing_the_log() {
    let mut config = small_config();
    config.batch_bytes_max = 200;
    let mut log = PartitionLog::new(tp(), config);
    let big = producer_batch(1, 300, 1);
    assert_eq!(
        log.append_as_leader(&big, 1),
        Err(LogError::BatchTooLarge {
            len: big.len(),
            max: 200
        })
    );
    let mut bad = producer_batch(1, 10, 1).to_vec();
    bad[70] ^= 1;
    assert_eq!(
        log.append_as_leader(&bad, 1),
        Err(LogError::Batch(BatchError::CrcMismatch))
    );
    assert!(log.is_empty());
    assert_eq!(log.poll_op(), None);
}

#[test]
fn replicated_batches_must_continue_the_log_and_not_regress_the_epoch() {
    let mut log = PartitionLog::new(tp(), small_config());
    log.append_as_leader(&producer_batch(2, 5, 1), 3).unwrap();
    let gap = batch::stamp(&producer_batch(1, 5, 1), 5, 3);
    assert_eq!(
        log.append_replicated(gap),
        Err(LogError::NotContiguous {
            expected: 2,
            got: 5
        })
    );
    let old = batch::stamp(&producer_batch(1, 5, 1), 2, 2);
    assert_eq!(
        log.append_replicated(old),
        Err(LogError::EpochRegressed { last: 3, got: 2 })
    );
    let ok = batch::stamp(&producer_batch(1, 5, 1), 2, 3);
    assert_eq!(log.append_replicated(ok.clone()), Ok(()));
    assert_eq!(all_batches(&log)[1], ok, "stored as received");
    assert_eq!(log.end_offset(), 3);
}

#[test]
#[should_panic(expected = "below the log's last epoch")]
#[cfg(debug_assertions)]
fn a_deposed_leader_appending_is_a_bug() {
    let mut log = PartitionLog::new(tp(), small_config());
    log.append_as_leader(&producer_batch(1, 5, 1), 3).unwrap();
    let _ = log.append_as_leader(&producer_batch(1, 5, 1), 2);
}

#[test]
fn epoch_queries_find_batch_ends_and_epoch_boundaries() {
    let mut log = PartitionLog::new(tp(), small_config());
    // Epoch 1: [0, 2) [2, 5); epoch 3: [5, 6) [6, 10); epoch 4: [10, 12).
    for (records, epoch) in [(2, 1), (3, 1), (1, 3), (4, 3), (2, 4)] {
        log.append_as_leader(&producer_batch(records, 30, 1), epoch)
            .unwrap();
    }
    let at_end: Vec<Option<u64>> = (0..=13).map(|e| log.epoch_at_end(e)).collect();
    let n = None;
    assert_eq!(
        at_end,
        [
            Some(0),
            n,
            Some(1),
            n,
            n,
            Some(1),
            Some(3),
            n,
            n,
            n,
            Some(3),
            n,
            Some(4),
            n
        ]
    );
    let boundaries: Vec<u64> = (0..=13)
        .map(|o| log.batch_boundary_at_or_below(o))
        .collect();
    assert_eq!(boundaries, [0, 0, 2, 2, 2, 5, 6, 6, 6, 6, 10, 10, 12, 12]);
    assert_eq!(log.last_offset_of_epoch(0), None);
    assert_eq!(log.last_offset_of_epoch(1), Some((5, 1)));
    assert_eq!(log.last_offset_of_epoch(2), Some((5, 1)));
    assert_eq!(log.last_offset_of_epoch(3), Some((10, 3)));
    assert_eq!(log.last_offset_of_epoch(9), Some((12, 4)));
    assert_eq!(
        PartitionLog::new(tp(), small_config()).last_offset_of_epoch(5),
        None
    );
}

/// A log recovered from a segment whose name puts it near the end of the offset space (a
/// damaged or hostile file name) refuses a batch that would run past `u64::MAX` with an error,
/// and stays as it was; it used to panic adding the batch's end.
#[test]
fn append_past_the_offset_space_is_refused() {
    let base = u64::MAX - 10;
    let stamped = batch::stamp(&producer_batch(1, 4, 1), base, 1);
    let name = crate::log::segment::file_name(base);
    let (mut log, report) = PartitionLog::recover(tp(), small_config(), vec![(name, stamped)]);
    assert_eq!(report.first_error, None);
    assert_eq!(log.end_offset(), base + 1);

    let result = log.append_as_leader(&producer_batch(20, 4, 2), 1);
    assert_eq!(
        result,
        Err(LogError::Batch(BatchError::OffsetOverflow {
            base_offset: base + 1,
            record_count: 20,
        }))
    );
    assert_eq!(log.end_offset(), base + 1);
    assert!(drain(&mut log).is_empty(), "nothing written");
    assert_eq!(
        log.append_as_leader(&producer_batch(9, 4, 3), 1),
        Ok((base + 1, u64::MAX))
    );
}
