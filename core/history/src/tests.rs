//! Tests of the history format and the checker. Each anomaly class has a
//! history that triggers it and, where a near miss is plausible, one that must
//! not.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Builds a history one event at a time, 1µs apart.
#[derive(Default)]
struct History {
    events: Vec<Event>,
}

impl History {
    fn push(&mut self, process: &str, kind: EventType, op: Op) -> &mut Self {
        let time_ns = (self.events.len() as u64 + 1) * 1_000;
        self.events.push(Event::new(time_ns, process, kind, op));
        self
    }

    fn send(&mut self, kind: EventType, process: &str, id: &str, tp: (&str, u32)) -> &mut Self {
        let error = match kind {
            EventType::Fail | EventType::Info => Some("timeout".to_string()),
            _ => None,
        };
        self.push(process, kind, send_op(id, tp, None, error))
    }

    fn invoke(&mut self, process: &str, id: &str, tp: (&str, u32)) -> &mut Self {
        self.send(EventType::Invoke, process, id, tp)
    }

    fn ok(&mut self, process: &str, id: &str, tp: (&str, u32), offset: u64) -> &mut Self {
        self.push(process, EventType::Ok, send_op(id, tp, Some(offset), None))
    }

    /// An invoke immediately followed by its `ok`.
    fn acked(&mut self, process: &str, id: &str, tp: (&str, u32), offset: u64) -> &mut Self {
        self.invoke(process, id, tp).ok(process, id, tp, offset)
    }

    fn poll(&mut self, process: &str, tp: (&str, u32), records: &[(u64, &str)]) -> &mut Self {
        let op = Op::Poll {
            topic: tp.0.to_string(),
            partition: tp.1,
            records: records
                .iter()
                .map(|&(offset, id)| (offset, id.to_string()))
                .collect(),
        };
        self.push(process, EventType::Ok, op)
    }

    fn assign(&mut self, process: &str, tps: &[(&str, u32)]) -> &mut Self {
        let partitions = tps.iter().map(|&(t, p)| (t.to_string(), p)).collect();
        self.push(process, EventType::Ok, Op::Assign { partitions })
    }

    fn check(&self) -> CheckReport {
        check(&self.events)
    }
}

fn send_op(id: &str, tp: (&str, u32), offset: Option<u64>, error: Option<String>) -> Op {
    Op::Send {
        id: id.to_string(),
        topic: tp.0.to_string(),
        partition: tp.1,
        offset,
        error,
    }
}

const T0: (&str, u32) = ("orders", 0);
const T1: (&str, u32) = ("orders", 1);

/// Asserts that exactly the named classes are non-zero, with those counts.
fn assert_anomalies(report: &CheckReport, expected: &[(&str, u64)]) {
    let expected: BTreeMap<&str, u64> = expected.iter().copied().collect();
    for (class, count) in report.anomalies.iter() {
        let want = expected.get(class.name()).copied().unwrap_or(0);
        assert_eq!(count, want, "{class}: report {report:#?}");
    }
    for class in expected.keys() {
        assert!(
            report.anomalies.get(class).is_some(),
            "unknown class {class}"
        );
    }
}

/// (sent, acked, read, unknown, failed)
fn totals(report: &CheckReport) -> (u64, u64, u64, u64, u64) {
    (
        report.sent,
        report.acked,
        report.read,
        report.unknown,
        report.failed,
    )
}

// ---- format ----

fn sample_events() -> Vec<Event> {
    vec![
        Event::new(1, "p0", EventType::Invoke, send_op("p0-0", T0, None, None)),
        Event::new(2, "p0", EventType::Ok, send_op("p0-0", T0, Some(7), None)),
        Event::new(
            3,
            "p0",
            EventType::Info,
            send_op("p0-1", T1, None, Some("acks=0".into())),
        ),
        Event::new(
            4,
            "c0",
            EventType::Ok,
            Op::Poll {
                topic: "orders".into(),
                partition: 0,
                records: vec![(7, "p0-0".into()), (9, "p \"quoted\" ü".into())],
            },
        ),
        Event::new(
            5,
            "c0",
            EventType::Ok,
            Op::Assign {
                partitions: vec![("orders".into(), 0), ("orders".into(), 1)],
            },
        ),
        Event::new(
            6,
            "c0",
            EventType::Fail,
            Op::Commit {
                topic: "orders".into(),
                partition: 1,
                offset: 10,
                error: Some("rebalance".into()),
            },
        ),
        Event::new(
            7,
            "c0",
            EventType::Ok,
            Op::Commit {
                topic: "orders".into(),
                partition: 1,
                offset: 10,
                error: None,
            },
        ),
    ]
}

#[test]
fn lines_round_trip() {
    for event in sample_events() {
        let line = to_json_line(&event);
        assert!(!line.contains('\n'), "{line}");
        let parsed = parse_line(&line).expect("parses").expect("known f");
        assert_eq!(parsed, event, "{line}");
        let mut written = Vec::new();
        write_json_line(&event, &mut written).expect("a Vec takes every byte");
        assert_eq!(
            written,
            line.as_bytes(),
            "written as it is made, the same line"
        );
    }
}

#[test]
fn lines_have_the_documented_fields_in_a_fixed_order() {
    let events = sample_events();
    assert_eq!(
        to_json_line(&events[1]),
        r#"{"time_ns":2,"process":"p0","type":"ok","f":"send","id":"p0-0","topic":"orders","partition":0,"offset":7}"#
    );
    assert_eq!(
        to_json_line(&events[2]),
        r#"{"time_ns":3,"process":"p0","type":"info","f":"send","id":"p0-1","topic":"orders","partition":1,"error":"acks=0"}"#
    );
    assert_eq!(
        to_json_line(&events[4]),
        r#"{"time_ns":5,"process":"c0","type":"ok","f":"assign","partitions":[["orders",0],["orders",1]]}"#
    );
    assert_eq!(
        to_json_line(&events[6]),
        r#"{"time_ns":7,"process":"c0","type":"ok","f":"commit","topic":"orders","partition":1,"offset":10}"#
    );
    let other = Event::new(8, "n", EventType::Info, Op::Other { f: "kill".into() });
    assert_eq!(
        to_json_line(&other),
        r#"{"time_ns":8,"process":"n","type":"info","f":"kill"}"#
    );
}

#[test]
fn writer_output_reads_back_and_is_deterministic() {
    let events = sample_events();
    let mut first = HistoryWriter::in_memory();
    let mut second = HistoryWriter::new(Vec::new());
    for event in &events {
        first.write(event).expect("write to memory");
        second.write(event).expect("write to memory");
    }
    assert_eq!(first.lines_written(), events.len() as u64);
    assert_eq!(first.as_bytes(), second.into_inner().as_slice());
    let text = String::from_utf8(first.into_inner()).expect("utf-8");
    assert_eq!(text.lines().count(), events.len());
    assert!(text.ends_with('\n'));
    assert_eq!(read_jsonl(&text).expect("reads"), events);
}

#[test]
fn unknown_operations_and_fields_are_skipped() {
    let line = r#"{"time_ns":1,"process":"nemesis","type":"info","f":"partition","nodes":[1,2]}"#;
    assert_eq!(parse_line(line).expect("tolerated"), None);
    // An unknown f need not even have the usual header fields.
    assert_eq!(
        parse_line(r#"{"f":"clock-skew"}"#).expect("tolerated"),
        None
    );

    let extra = r#"{"time_ns":1,"process":"p0","type":"ok","f":"send","id":"a","topic":"t","partition":2,"offset":3,"latency_ns":17,"acks":"all"}"#;
    let event = parse_line(extra).expect("parses").expect("known f");
    assert_eq!(event.op, send_op("a", ("t", 2), Some(3), None));

    let text = format!("{line}\n\n{extra}\n");
    assert_eq!(read_jsonl(&text).expect("reads").len(), 1);
}

#[test]
fn malformed_lines_name_their_line_number() {
    let good = r#"{"time_ns":1,"process":"p0","type":"invoke","f":"send","id":"a","topic":"t","partition":0}"#;
    let cases = [
        (
            r#"{"time_ns":2,"process":"p0","type":"invoke","f":"send","topic":"t","partition":0}"#,
            "line 3: missing field `id`",
        ),
        (
            r#"{"time_ns":2,"process":"p0","type":"ok","f":"send","id":"a","topic":"t","partition":0}"#,
            "line 3: missing field `offset`",
        ),
        (
            r#"{"time_ns":2,"process":"p0","type":"done","f":"send","id":"a","topic":"t","partition":0}"#,
            "line 3: unknown variant `done`",
        ),
        (
            r#"{"time_ns":"soon","process":"c0","type":"ok","f":"poll","topic":"t","partition":0,"records":[]}"#,
            "line 3: invalid type: string \"soon\"",
        ),
        (
            r#"{"time_ns":2,"process":"c0","type":"ok","f":"poll","topic":"t","partition":0}"#,
            "line 3: missing field `records`",
        ),
        (
            r#"{"time_ns":2,"process""#,
            "line 3: invalid JSON at column",
        ),
        (r#"[1,2]"#, "line 3: not a JSON object"),
        (r#"{"time_ns":2}"#, "line 3: missing field `f`"),
    ];
    for (bad, expected) in cases {
        let text = format!("{good}\n{good}\n{bad}\n{good}\n");
        let error = read_jsonl(&text).expect_err(bad);
        assert_eq!(error.line(), Some(3));
        let message = error.to_string();
        assert!(message.starts_with(expected), "{message:?} for {bad}");
    }
}

#[test]
fn invokes_may_leave_out_lists_only_ok_events_need() {
    let line =
        r#"{"time_ns":2,"process":"c0","type":"invoke","f":"poll","topic":"t","partition":0}"#;
    let event = parse_line(line).expect("parses").expect("known f");
    assert_eq!(
        event.op,
        Op::Poll {
            topic: "t".into(),
            partition: 0,
            records: Vec::new()
        }
    );
}

// ---- the checker, class by class ----

#[test]
fn clean_history_reports_nothing() {
    let mut h = History::default();
    h.acked("p0", "a", T0, 0)
        .acked("p0", "b", T0, 1)
        .acked("p0", "c", T1, 0)
        .invoke("p0", "d", T0)
        .send(EventType::Info, "p0", "d", T0)
        .invoke("p0", "e", T0)
        .send(EventType::Fail, "p0", "e", T0)
        // offset 2 is a control batch: no record there, so jumping it is fine.
        .acked("p0", "f", T0, 3)
        .assign("c0", &[T0, T1])
        .poll("c0", T0, &[(0, "a")])
        .poll("c0", T1, &[(0, "c")])
        .poll("c0", T0, &[])
        .poll("c0", T0, &[(1, "b"), (3, "f")])
        .assign("final-read", &[T0, T1])
        .poll("final-read", T0, &[(0, "a"), (1, "b"), (3, "f")])
        .poll("final-read", T1, &[(0, "c")]);
    let report = h.check();
    assert_anomalies(&report, &[]);
    assert!(report.is_clean());
    assert!(report.examples.is_empty(), "{:?}", report.examples);
    assert_eq!(totals(&report), (6, 4, 4, 1, 1));
}

#[test]
fn lost_counts_acked_ids_never_read() {
    let mut h = History::default();
    h.acked("p0", "a", T0, 0)
        .acked("p0", "b", T0, 1)
        .acked("p0", "c", T1, 0)
        .poll("final-read", T0, &[(0, "a")]);
    let report = h.check();
    assert_anomalies(&report, &[("lost", 2)]);
    assert_eq!(
        report.examples["lost"],
        vec![
            "b acked at orders-0@1 never read",
            "c acked at orders-1@0 never read"
        ]
    );
}

/// Examples come in id order whatever the order of the history (the maps by id are hashed),
/// so the same anomalies list the same examples.
#[test]
fn examples_are_listed_in_id_order() {
    let mut h = History::default();
    let ids: Vec<String> = (0..40).rev().map(|i| format!("m{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let lost = format!("lost-{id}");
        h.acked("p0", &lost, T0, i as u64);
        // Read at two places, each by a consumer's first poll (no skip, no rewind).
        let i = i as u32;
        h.poll(&format!("a{i}"), ("orders", 10 + i), &[(0, id)]);
        h.poll(&format!("b{i}"), ("orders", 100 + i), &[(0, id)]);
    }
    let report = h.check();
    assert_anomalies(&report, &[("lost", 40), ("duplicate", 40)]);
    let first = |prefix: &str| -> Vec<String> {
        let n = crate::checker::EXAMPLES_PER_CLASS;
        (0..n).map(|i| format!("{prefix}m{i:02}")).collect()
    };
    for (class, prefix) in [("lost", "lost-"), ("duplicate", "")] {
        let named: Vec<&str> = report.examples[class]
            .iter()
            .filter_map(|e| e.split(' ').next())
            .collect();
        assert_eq!(named, first(prefix), "{class}");
    }
}

/// Failed sends read anyway and ids a group processed twice also list their examples in id
/// order.
#[test]
fn aborted_and_reprocessed_examples_are_listed_in_id_order() {
    let mut h = History::default();
    for i in (0..40u32).rev() {
        let (failed, twice) = (format!("f{i:02}"), format!("r{i:02}"));
        h.invoke("p0", &failed, T0)
            .send(EventType::Fail, "p0", &failed, T0);
        h.poll(&format!("a{i}"), ("orders", 10 + i), &[(0, &failed)]);
        for _ in 0..2 {
            let op = Op::Process {
                topic: "orders".into(),
                partition: 0,
                records: vec![(u64::from(i), twice.clone())],
            };
            h.events
                .push(Event::new(1, "c0", EventType::Ok, op).in_group("g", Some(1)));
        }
    }
    let report = h.check();
    let named = |class: &str| -> Vec<String> {
        let examples = report.examples.get(class).cloned().unwrap_or_default();
        examples
            .iter()
            .filter_map(|e| e.split(' ').next().map(String::from))
            .collect()
    };
    let first = |prefix: &str| -> Vec<String> {
        let n = crate::checker::EXAMPLES_PER_CLASS;
        (0..n).map(|i| format!("{prefix}{i:02}")).collect()
    };
    assert_eq!(named("aborted_read"), first("f"));
    assert_eq!(named("reprocessed"), first("r"));
}

/// Two ids acknowledged at one offset: the greater id stands for the offset when a group's
/// commit passes it, so `unprocessed` does not depend on the order a map yields the ids in.
#[test]
fn an_offset_acked_for_two_ids_is_judged_by_the_greater() {
    let mut h = History::default();
    for i in 0..20u64 {
        h.acked("p0", &format!("a{i:02}"), T0, i);
        h.acked("p1", &format!("b{i:02}"), T0, i);
        let op = Op::Process {
            topic: "orders".into(),
            partition: 0,
            records: vec![(i, format!("a{i:02}"))],
        };
        h.events
            .push(Event::new(1, "c0", EventType::Ok, op).in_group("g", Some(1)));
    }
    let commit = Op::Commit {
        topic: "orders".into(),
        partition: 0,
        offset: 20,
        error: None,
    };
    h.events
        .push(Event::new(2, "c0", EventType::Ok, commit).in_group("g", Some(1)));
    let report = h.check();
    assert_eq!(
        report.anomalies[Anomaly::Unprocessed],
        20,
        "every b id, never processed"
    );
}

#[test]
fn unacknowledged_sends_never_read_are_not_lost() {
    let mut h = History::default();
    h.invoke("p0", "info", T0)
        .send(EventType::Info, "p0", "info", T0)
        .invoke("p0", "failed", T0)
        .send(EventType::Fail, "p0", "failed", T0)
        .invoke("p0", "pending", T0);
    let report = h.check();
    assert_anomalies(&report, &[]);
    assert_eq!((report.sent, report.unknown, report.failed), (3, 1, 1));
}

#[test]
fn duplicate_counts_ids_read_at_two_offsets() {
    let mut h = History::default();
    h.acked("p0", "a", T0, 0)
        .poll("c0", T0, &[(0, "a"), (1, "a")])
        .poll("c1", T1, &[(0, "a")]);
    let report = h.check();
    // One id, three places.
    assert_anomalies(&report, &[("duplicate", 1)]);
    assert_eq!(
        report.examples["duplicate"],
        vec!["a read at orders-0@0, orders-0@1, orders-1@0"]
    );
}

#[test]
fn rereading_the_same_offset_is_not_a_duplicate() {
    let mut h = History::default();
    h.acked("p0", "a", T0, 0)
        .assign("c0", &[T0])
        .poll("c0", T0, &[(0, "a")])
        .assign("c0", &[T0])
        .poll("c0", T0, &[(0, "a")])
        .poll("c1", T0, &[(0, "a")]);
    assert_anomalies(&h.check(), &[]);
}

#[test]
fn inconsistent_offsets_counts_offsets_with_two_ids() {
    let mut h = History::default();
    h.acked("p0", "a", T0, 0)
        .acked("p0", "b", T0, 1)
        .acked("p0", "c", T0, 1) // the ack says b's offset
        .poll("c0", T0, &[(0, "a"), (1, "b")])
        .poll("c1", T0, &[(0, "x")]); // a read says a's offset
    let report = h.check();
    assert_anomalies(
        &report,
        &[
            ("inconsistent_offsets", 2),
            ("lost", 1),
            ("nonmonotonic_send", 1),
        ],
    );
    assert_eq!(
        report.examples["inconsistent_offsets"],
        vec!["orders-0@0 holds a, x", "orders-0@1 holds b, c"]
    );
}

#[test]
fn the_same_offset_on_another_partition_is_consistent() {
    let mut h = History::default();
    h.acked("p0", "a", T0, 0)
        .acked("p0", "b", T1, 0)
        .acked("p0", "c", ("payments", 0), 0)
        .poll("c0", T0, &[(0, "a")])
        .poll("c0", T1, &[(0, "b")])
        .poll("c0", ("payments", 0), &[(0, "c")]);
    assert_anomalies(&h.check(), &[]);
}

#[test]
fn aborted_read_counts_reads_of_failed_sends() {
    let mut h = History::default();
    h.invoke("p0", "a", T0)
        .send(EventType::Fail, "p0", "a", T0)
        .poll("c0", T0, &[(0, "a")])
        .poll("final-read", T0, &[(0, "a")]);
    let report = h.check();
    assert_anomalies(&report, &[("aborted_read", 1)]);
    assert_eq!(
        report.examples["aborted_read"],
        vec!["a failed (timeout) but read at orders-0@0"]
    );
}

#[test]
fn reading_a_send_of_unknown_outcome_is_not_aborted() {
    let mut h = History::default();
    h.invoke("p0", "a", T0)
        .send(EventType::Info, "p0", "a", T0)
        .poll("c0", T0, &[(0, "a")]);
    assert_anomalies(&h.check(), &[]);
}

#[test]
fn unknown_in_log_counts_unknown_sends_whose_record_was_read() {
    let mut h = History::default();
    h.invoke("p0", "read", T0)
        .send(EventType::Info, "p0", "read", T0)
        .invoke("p0", "unread", T0)
        .send(EventType::Info, "p0", "unread", T0)
        // Unknown on one attempt, acknowledged later: a definite answer after all.
        .invoke("p0", "retried", T0)
        .send(EventType::Info, "p0", "retried", T0)
        .ok("p0", "retried", T0, 1)
        .poll("c0", T0, &[(0, "read"), (1, "retried")]);
    let report = h.check();
    assert_eq!((report.unknown, report.unknown_in_log), (3, 1));
    assert_anomalies(&report, &[]);
}

#[test]
fn nonmonotonic_send_counts_pairs_in_invoke_order() {
    let mut h = History::default();
    h.acked("p0", "a", T0, 0)
        .acked("p0", "b", T0, 5)
        .acked("p0", "c", T0, 3) // drops: 1
        .acked("p0", "d", T0, 3) // equal: 2
        .acked("p0", "e", T0, 9)
        .poll("c0", T0, &[(0, "a"), (3, "c"), (5, "b"), (9, "e")]);
    let report = h.check();
    // d is lost and shares offset 3 with c.
    assert_anomalies(
        &report,
        &[
            ("nonmonotonic_send", 2),
            ("lost", 1),
            ("inconsistent_offsets", 1),
        ],
    );
    assert_eq!(
        report.examples["nonmonotonic_send"][0],
        "p0 on orders-0: b acked at 5 then c acked at 3"
    );
}

#[test]
fn nonmonotonic_send_follows_invoke_order_not_completion_order() {
    let mut h = History::default();
    // a is invoked first but gets the later offset.
    h.invoke("p0", "a", T0)
        .invoke("p0", "b", T0)
        .ok("p0", "b", T0, 0)
        .ok("p0", "a", T0, 1)
        .poll("c0", T0, &[(0, "b"), (1, "a")]);
    assert_anomalies(&h.check(), &[("nonmonotonic_send", 1)]);

    // Completing out of order while offsets follow invoke order is fine.
    let mut h = History::default();
    h.invoke("p0", "a", T0)
        .invoke("p0", "b", T0)
        .ok("p0", "b", T0, 1)
        .ok("p0", "a", T0, 0)
        .poll("c0", T0, &[(0, "a"), (1, "b")]);
    assert_anomalies(&h.check(), &[]);
}

#[test]
fn sends_of_different_producers_or_partitions_are_independent() {
    let mut h = History::default();
    h.acked("p0", "a", T0, 1)
        .acked("p1", "b", T0, 0)
        .acked("p0", "c", T1, 0)
        .acked("p0", "d", T0, 2)
        .poll("c0", T0, &[(0, "b"), (1, "a"), (2, "d")])
        .poll("c0", T1, &[(0, "c")]);
    assert_anomalies(&h.check(), &[]);
}

#[test]
fn poll_skip_counts_jumps_over_known_records() {
    let mut h = History::default();
    h.acked("p0", "k", T0, 12)
        .assign("c0", &[T0])
        .poll("c0", T0, &[(9, "i"), (10, "j")])
        .poll("c0", T0, &[(14, "l")])
        .poll(
            "final-read",
            T0,
            &[(9, "i"), (10, "j"), (12, "k"), (14, "l")],
        );
    let report = h.check();
    assert_anomalies(&report, &[("poll_skip", 1)]);
    assert_eq!(
        report.examples["poll_skip"],
        vec!["c0 on orders-0 at 5000ns: went from 10 to 14, skipping orders-0@12"]
    );
}

#[test]
fn a_record_known_only_from_another_read_counts_for_a_skip() {
    let mut h = History::default();
    h.poll("c0", T0, &[(10, "j")])
        .poll("c0", T0, &[(14, "l")])
        .poll("c1", T0, &[(12, "k")]);
    assert_anomalies(&h.check(), &[("poll_skip", 1)]);
}

#[test]
fn jumping_offsets_that_hold_no_known_record_is_not_a_skip() {
    let mut h = History::default();
    // 11..=13 may be control batches or unacknowledged, unread records.
    h.invoke("p0", "k", T0)
        .send(EventType::Info, "p0", "k", T0)
        .poll("c0", T0, &[(10, "j")])
        .poll("c0", T0, &[(14, "l")])
        .poll("c0", T0, &[(15, "m"), (20, "n")]);
    assert_anomalies(&h.check(), &[]);
}

#[test]
fn empty_polls_keep_the_position() {
    let mut h = History::default();
    h.poll("c0", T0, &[(10, "j")])
        .poll("c0", T0, &[])
        .poll("c0", T0, &[(14, "l")])
        .poll("c1", T0, &[(12, "k")]);
    assert_anomalies(&h.check(), &[("poll_skip", 1)]);
}

#[test]
fn assign_resets_poll_positions() {
    let mut h = History::default();
    h.poll("c0", T0, &[(10, "j")])
        .poll("c0", T1, &[(5, "e")])
        .assign("c0", &[T0, T1])
        .poll("c0", T0, &[(14, "l")]) // no skip: the position reset
        .poll("c0", T1, &[(2, "b")]) // no rewind: the position reset
        .poll("c1", T0, &[(12, "k")])
        .poll("c1", T1, &[(2, "b"), (3, "c"), (5, "e")]);
    assert_anomalies(&h.check(), &[]);
}

#[test]
fn another_process_assigning_does_not_reset_positions() {
    let mut h = History::default();
    h.poll("c0", T0, &[(10, "j")])
        .assign("c1", &[T0])
        .poll("c0", T0, &[(14, "l")])
        .poll("c1", T0, &[(12, "k")]);
    assert_anomalies(&h.check(), &[("poll_skip", 1)]);
}

#[test]
fn a_skip_inside_one_poll_counts() {
    let mut h = History::default();
    h.acked("p0", "k", T0, 12)
        .poll("c0", T0, &[(10, "j"), (14, "l")])
        .poll("final-read", T0, &[(10, "j"), (12, "k"), (14, "l")]);
    assert_anomalies(&h.check(), &[("poll_skip", 1)]);
}

#[test]
fn nonmonotonic_poll_counts_polls_that_go_back() {
    let mut h = History::default();
    h.poll("c0", T0, &[(1, "a"), (2, "b")])
        .poll("c0", T0, &[(2, "b"), (3, "c")]) // starts at the last offset read
        .poll("c0", T0, &[(4, "d"), (4, "d")]) // does not rise within
        .poll("c0", T0, &[(5, "e"), (6, "f"), (3, "c")]) // falls within
        .poll("c0", T0, &[(1, "a"), (0, "z")]) // goes back and falls: counted once
        .poll("c0", T1, &[(0, "x")]); // another partition is separate
    let report = h.check();
    assert_anomalies(&report, &[("nonmonotonic_poll", 4)]);
    assert_eq!(
        report.examples["nonmonotonic_poll"][0],
        "c0 on orders-0 at 2000ns: poll starts at 2 after reading up to 2"
    );
}

#[test]
fn a_rewind_after_assign_is_not_nonmonotonic() {
    let mut h = History::default();
    h.poll("c0", T0, &[(1, "a"), (2, "b")])
        .assign("c0", &[T0])
        .poll("c0", T0, &[(1, "a"), (2, "b"), (3, "c")])
        .poll("c1", T0, &[(1, "a")]);
    assert_anomalies(&h.check(), &[]);
}

#[test]
fn check_leaves_replica_divergence_to_the_caller() {
    let mut h = History::default();
    h.acked("p0", "a", T0, 0).poll("c0", T0, &[(0, "a")]);
    let mut report = h.check();
    assert_eq!(report.anomalies[Anomaly::ReplicaDivergence], 0);

    let log = |ids: &[&str]| -> Vec<(u64, String)> {
        ids.iter()
            .enumerate()
            .map(|(offset, id)| (offset as u64, id.to_string()))
            .collect()
    };
    let mut replicas = BTreeMap::new();
    replicas.insert(
        ("orders".to_string(), 0),
        vec![
            (1, log(&["a", "b"])),
            (2, log(&["a", "b"])),
            (3, log(&["a", "b"])),
        ],
    );
    replicas.insert(
        ("orders".to_string(), 1),
        vec![
            (1, log(&["a", "b"])),
            (2, log(&["a", "c"])),
            (3, log(&["a"])),
        ],
    );
    replicas.insert(
        ("orders".to_string(), 2),
        vec![(2, log(&["a"])), (3, log(&["a", "b"]))],
    );
    replicas.insert(("orders".to_string(), 3), vec![(1, log(&["a"]))]);
    let (count, examples) = check_replicas(&replicas);
    assert_eq!(count, 2);
    assert_eq!(
        examples,
        vec![
            "orders-1: record 1 is b@1 on node 1 but c@1 on node 2 (2 vs 2 committed records)",
            "orders-2: record 1 is nothing on node 2 but b@1 on node 3 (1 vs 2 committed records)",
        ]
    );

    report.set_replica_divergence(count, examples);
    assert_anomalies(&report, &[("replica_divergence", 2)]);
    assert_eq!(report.examples["replica_divergence"].len(), 2);
    report.set_replica_divergence(0, Vec::new());
    assert!(report.is_clean());
    assert!(!report.examples.contains_key("replica_divergence"));
}

#[test]
fn examples_are_capped_at_five() {
    let mut h = History::default();
    for index in 0..8 {
        h.acked("p0", &format!("m{index}"), T0, index);
    }
    let report = h.check();
    assert_anomalies(&report, &[("lost", 8)]);
    assert_eq!(report.examples["lost"].len(), 5);
}

#[test]
fn anomalies_iterate_in_fixed_order_and_look_up_by_name() {
    let anomalies: Anomalies = Anomaly::ALL.into_iter().zip(1..=11).collect();
    let listed: Vec<(&str, u64)> = anomalies.iter().map(|(a, n)| (a.name(), n)).collect();
    let names = [
        "lost",
        "duplicate",
        "inconsistent_offsets",
        "aborted_read",
        "nonmonotonic_send",
        "poll_skip",
        "nonmonotonic_poll",
        "unprocessed",
        "reprocessed",
        "split_ownership",
        "replica_divergence",
    ];
    let expected: Vec<(&str, u64)> = names.into_iter().zip(1..=11).collect();
    assert_eq!(listed, expected);
    for (name, count) in expected {
        assert_eq!(anomalies.get(name), Some(count));
        assert_eq!(name.parse::<Anomaly>().map(Anomaly::name), Ok(name));
    }
    assert_eq!(anomalies.get("lost_and_found"), None);
    assert!("lost_and_found".parse::<Anomaly>().is_err());
    assert_eq!(anomalies.total(), 66);
}

/// Without group consumption the group classes are not judged: absent, not a silent zero.
#[test]
fn group_classes_are_absent_from_a_history_without_groups() {
    let anomalies: Anomalies = Anomaly::ALL
        .into_iter()
        .filter(|a| !a.is_group_class() && !a.is_share_class())
        .map(|a| (a, 1))
        .collect();
    assert!(!anomalies.groups_judged());
    assert_eq!(anomalies.iter().count(), 8);
    assert_eq!(anomalies.get("unprocessed"), None);
    let json = serde_json::to_string(&anomalies).unwrap();
    assert!(!json.contains("unprocessed"));
    assert_eq!(serde_json::from_str::<Anomalies>(&json).unwrap(), anomalies);
    let partial = json.replace('}', r#","reprocessed":0}"#);
    assert!(
        serde_json::from_str::<Anomalies>(&partial).is_err(),
        "all or none"
    );
}

#[test]
fn anomalies_serialize_as_an_object_in_the_fixed_order_and_read_back() {
    let anomalies: Anomalies = Anomaly::ALL.into_iter().zip(1..=11).collect();
    let json = serde_json::to_string(&anomalies).unwrap();
    assert_eq!(
        json,
        r#"{"lost":1,"duplicate":2,"inconsistent_offsets":3,"aborted_read":4,"nonmonotonic_send":5,"poll_skip":6,"nonmonotonic_poll":7,"unprocessed":8,"reprocessed":9,"split_ownership":10,"replica_divergence":11}"#
    );
    assert_eq!(serde_json::from_str::<Anomalies>(&json).unwrap(), anomalies);
    let missing = r#"{"lost":1}"#;
    assert!(serde_json::from_str::<Anomalies>(missing).is_err());
}

#[test]
fn report_serializes_with_the_documented_names() {
    let mut h = History::default();
    h.acked("p0", "a", T0, 0);
    let json = serde_json::to_value(h.check()).expect("serializes");
    assert_eq!(json["anomalies"]["lost"], 1);
    assert_eq!(json["anomalies"]["replica_divergence"], 0);
    assert_eq!(
        json["examples"]["lost"][0],
        "a acked at orders-0@0 never read"
    );
    for total in ["sent", "acked", "read", "unknown", "failed"] {
        assert!(json[total].is_u64(), "{total} in {json}");
    }
}

// ---- the example files under tests/histories ----

fn check_file(text: &str) -> CheckReport {
    check(&read_jsonl(text).expect("example history parses"))
}

#[test]
fn example_clean_history() {
    let report = check_file(include_str!("../../../tests/histories/clean.jsonl"));
    assert_anomalies(&report, &[]);
    assert_eq!(totals(&report), (6, 5, 5, 1, 0));
}

#[test]
fn example_lost_and_duplicate_history() {
    let report = check_file(include_str!(
        "../../../tests/histories/lost-and-duplicate.jsonl"
    ));
    assert_anomalies(
        &report,
        &[
            ("lost", 1),
            ("duplicate", 1),
            ("inconsistent_offsets", 1),
            ("poll_skip", 2),
        ],
    );
    assert_eq!(totals(&report), (4, 4, 3, 0, 0));
}

#[test]
fn example_poll_anomalies_history() {
    let report = check_file(include_str!(
        "../../../tests/histories/poll-anomalies.jsonl"
    ));
    assert_anomalies(
        &report,
        &[
            ("aborted_read", 1),
            ("nonmonotonic_send", 1),
            ("nonmonotonic_poll", 1),
        ],
    );
    assert_eq!(totals(&report), (4, 3, 4, 0, 1));
}

/// The group classes on a hand-made history (issue 8): `c0` commits 5 but processed only up
/// to offset 2, so `p0-3` and `p0-4` are unprocessed below the final commit (6); `c2` processes
/// `p0-0` again (reprocessed) while `c0` is still processing the partition in an older
/// generation (split ownership); `c1`, the last owner, overlaps nobody.
#[test]
fn example_group_anomalies_history() {
    let report = check_file(include_str!(
        "../../../tests/histories/group-anomalies.jsonl"
    ));
    assert_anomalies(
        &report,
        &[
            ("unprocessed", 2),
            ("reprocessed", 1),
            ("split_ownership", 1),
        ],
    );
    assert!(report.anomalies.groups_judged());
    assert_eq!(totals(&report), (6, 6, 6, 0, 0));
    let unprocessed = &report.examples["unprocessed"];
    assert!(unprocessed[0].starts_with("p0-3 "), "{unprocessed:?}");
    assert!(unprocessed[1].starts_with("p0-4 "), "{unprocessed:?}");
}

/// A group history's lines read back as written: `group` and `generation` on the stamped
/// operations, `revoke` and `process` as their own operations; an old reader's fields are
/// unchanged for unstamped lines.
#[test]
fn group_lines_round_trip() {
    let text = include_str!("../../../tests/histories/group-anomalies.jsonl");
    let events = read_jsonl(text).expect("parses");
    let written: Vec<String> = events.iter().map(to_json_line).collect();
    let original: Vec<&str> = text.lines().collect();
    assert_eq!(written, original);
    assert!(events.iter().any(|e| matches!(e.op, Op::Revoke { .. })));
    assert!(events.iter().any(|e| matches!(e.op, Op::Process { .. })));
}

// ---- random clean histories ----

/// How one send ends in a generated history.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Acked, after `gap` offsets that hold no record (control batches).
    Acked { gap: u64 },
    /// Unknown outcome; never read.
    Unknown,
    /// Definitely not written.
    Failed,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => (0..3u64).prop_map(|gap| Outcome::Acked { gap }),
        1 => Just(Outcome::Unknown),
        1 => Just(Outcome::Failed),
    ]
}

/// A plan for a clean history: sends (partition index, outcome); the chunk
/// sizes the consumer and the final read poll with (0 = an empty poll); and
/// what fraction of each partition the consumer reads before the final read.
#[derive(Debug, Clone)]
struct Plan {
    partitions: u32,
    sends: Vec<(u32, Outcome)>,
    consumer_chunks: Vec<usize>,
    final_chunks: Vec<usize>,
    consumer_share_pct: usize,
}

fn plan() -> impl Strategy<Value = Plan> {
    (1..=3u32).prop_flat_map(|partitions| {
        (
            prop::collection::vec((0..partitions, outcome()), 1..60),
            prop::collection::vec(0..6usize, 1..20),
            prop::collection::vec(1..8usize, 1..10),
            0..=100usize,
        )
            .prop_map(move |(sends, consumer_chunks, final_chunks, share)| Plan {
                partitions,
                sends,
                consumer_chunks,
                final_chunks,
                consumer_share_pct: share,
            })
    })
}

/// Each partition's acked records, in offset order.
type Logs = Vec<Vec<(u64, String)>>;

fn build(plan: &Plan) -> (History, Logs) {
    let mut h = History::default();
    let mut logs: Logs = vec![Vec::new(); plan.partitions as usize];
    let mut next_offsets = vec![0u64; plan.partitions as usize];
    for (index, &(partition, outcome)) in plan.sends.iter().enumerate() {
        let id = format!("p0-{index}");
        let tp = ("t", partition);
        let slot = partition as usize;
        h.invoke("p0", &id, tp);
        match outcome {
            Outcome::Acked { gap } => {
                let offset = next_offsets[slot] + gap;
                next_offsets[slot] = offset + 1;
                logs[slot].push((offset, id.clone()));
                h.ok("p0", &id, tp, offset);
            }
            Outcome::Unknown => {
                // It may have taken an offset that nobody ever reads.
                next_offsets[slot] += 1;
                h.send(EventType::Info, "p0", &id, tp);
            }
            Outcome::Failed => {
                h.send(EventType::Fail, "p0", &id, tp);
            }
        }
    }
    let all: Vec<(&str, u32)> = (0..plan.partitions).map(|p| ("t", p)).collect();
    let consumer_ends: Vec<usize> = logs
        .iter()
        .map(|log| log.len() * plan.consumer_share_pct / 100)
        .collect();
    read_in_chunks(
        &mut h,
        "c0",
        &all,
        &logs,
        &consumer_ends,
        &plan.consumer_chunks,
    );
    let final_ends: Vec<usize> = logs.iter().map(Vec::len).collect();
    read_in_chunks(
        &mut h,
        "final-read",
        &all,
        &logs,
        &final_ends,
        &plan.final_chunks,
    );
    (h, logs)
}

/// Poll each partition's log up to `ends`, round-robin over partitions, with
/// chunk sizes cycling through `chunks`.
fn read_in_chunks(
    h: &mut History,
    process: &str,
    tps: &[(&str, u32)],
    logs: &Logs,
    ends: &[usize],
    chunks: &[usize],
) {
    h.assign(process, tps);
    let mut positions = vec![0usize; logs.len()];
    // Whether the last poll of each partition was empty: never two in a row,
    // so that every partition makes progress.
    let mut was_empty = vec![false; logs.len()];
    let mut chunk_sizes = chunks.iter().cycle();
    while positions.iter().zip(ends).any(|(at, end)| at < end) {
        for (slot, &tp) in tps.iter().enumerate() {
            let mut size = chunk_sizes.next().copied().unwrap_or(1);
            if was_empty[slot] {
                size = size.max(1);
            }
            was_empty[slot] = size == 0;
            let from = positions[slot];
            let to = (from + size).min(ends[slot]);
            let records: Vec<(u64, &str)> = logs[slot][from..to]
                .iter()
                .map(|(offset, id)| (*offset, id.as_str()))
                .collect();
            h.poll(process, tp, &records);
            positions[slot] = to;
        }
    }
}

/// Remove `id` from every poll, as if no reader had ever seen it.
fn drop_reads_of(events: &mut [Event], id: &str) {
    for event in events {
        if let Op::Poll { records, .. } = &mut event.op {
            records.retain(|(_, read)| read != id);
        }
    }
}

/// Whether `process` read, on `tp`, records both before and after `offset`:
/// only then does dropping the record at `offset` show up as a skip.
fn read_around(events: &[Event], process: &str, tp: (&str, u32), offset: u64) -> bool {
    let offsets: Vec<u64> = events
        .iter()
        .filter(|event| event.process == process)
        .filter_map(|event| match &event.op {
            Op::Poll {
                topic,
                partition,
                records,
            } if (topic.as_str(), *partition) == tp => Some(records),
            _ => None,
        })
        .flatten()
        .map(|(read, _)| *read)
        .collect();
    offsets.contains(&offset)
        && offsets.iter().any(|&read| read < offset)
        && offsets.iter().any(|&read| read > offset)
}

proptest! {
    #[test]
    fn generated_clean_histories_are_clean(plan in plan(), pick in any::<prop::sample::Index>()) {
        let (h, logs) = build(&plan);
        let report = h.check();
        prop_assert!(report.is_clean(), "{:#?}", report);
        let acked: Vec<(u32, u64, &str)> = logs
            .iter()
            .enumerate()
            .flat_map(|(slot, log)| {
                log.iter().map(move |(offset, id)| (slot as u32, *offset, id.as_str()))
            })
            .collect();
        prop_assert_eq!(report.acked, acked.len() as u64);
        prop_assert_eq!(report.read, acked.len() as u64);
        prop_assert_eq!(report.sent, plan.sends.len() as u64);

        // The history round-trips through the file format unchanged.
        let mut writer = HistoryWriter::in_memory();
        for event in &h.events {
            writer.write(event).expect("write to memory");
        }
        let text = String::from_utf8(writer.into_inner()).expect("utf-8");
        prop_assert_eq!(&read_jsonl(&text).expect("reads back"), &h.events);

        // Losing one acked record: exactly one lost id, and a skip for each
        // reader that read on both sides of it.
        if acked.is_empty() {
            return Ok(());
        }
        let (partition, offset, id) = acked[pick.index(acked.len())];
        let mut events = h.events.clone();
        let skips = ["c0", "final-read"]
            .into_iter()
            .filter(|process| read_around(&events, process, ("t", partition), offset))
            .count() as u64;
        drop_reads_of(&mut events, id);
        let report = check(&events);
        let expected: Anomalies = [(Anomaly::Lost, 1), (Anomaly::PollSkip, skips)].into_iter().collect();
        prop_assert_eq!(&report.anomalies, &expected);
        prop_assert_eq!(report.read, acked.len() as u64 - 1);
    }
}

#[test]
fn a_large_clean_history_reports_nothing() {
    // 100k sends over 4 partitions, each read twice: a smoke test that the
    // checker does not go quadratic (it would take minutes if it did).
    let mut h = History::default();
    let partitions = 4u32;
    let mut polls: Vec<Vec<(u64, String)>> = vec![Vec::new(); partitions as usize];
    for index in 0..100_000u64 {
        let partition = (index % u64::from(partitions)) as u32;
        let offset = index / u64::from(partitions);
        let id = format!("p0-{index}");
        h.acked("p0", &id, ("t", partition), offset);
        polls[partition as usize].push((offset, id));
    }
    for process in ["c0", "final-read"] {
        for (partition, log) in polls.iter().enumerate() {
            for chunk in log.chunks(100) {
                let records: Vec<(u64, &str)> =
                    chunk.iter().map(|(o, id)| (*o, id.as_str())).collect();
                h.poll(process, ("t", partition as u32), &records);
            }
        }
    }
    let report = h.check();
    assert!(report.is_clean());
    assert_eq!(report.read, 100_000);
}

fn share_event(t: u64, process: &str, kind: EventType, op: Op) -> Event {
    Event::new(t, process, kind, op).in_group("s1", None)
}

fn acquire(t: u64, process: &str, records: &[(u64, &str)]) -> Event {
    let records = records.iter().map(|(o, id)| (*o, id.to_string())).collect();
    let op = Op::Acquire {
        topic: "t".into(),
        partition: 0,
        records,
        requested_ns: None,
    };
    share_event(t, process, EventType::Ok, op)
}

fn ack(
    t: u64,
    process: &str,
    kind: EventType,
    verdict: AckVerdict,
    records: &[(u64, &str)],
) -> Event {
    let records = records.iter().map(|(o, id)| (*o, id.to_string())).collect();
    let op = Op::Acknowledge {
        topic: "t".into(),
        partition: 0,
        ack: verdict,
        records,
        error: None,
    };
    share_event(t, process, kind, op)
}

/// The share classes and counts: a redelivery after a confirmed accept is an anomaly, one after
/// an expired lock is not; a message never settled is unconsumed unless its acknowledgement's
/// outcome is unknown; deliveries below the partition's highest are out of order.
#[test]
fn share_groups_are_judged_from_acquisitions_and_acknowledgements() {
    let mut events = Vec::new();
    for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        events.push(Event::new(
            i as u64,
            "p0",
            EventType::Invoke,
            send_op(id, ("t", 0), None, None),
        ));
        events.push(Event::new(
            i as u64,
            "p0",
            EventType::Ok,
            send_op(id, ("t", 0), Some(i as u64), None),
        ));
    }
    events.extend([
        acquire(10, "s0", &[(0, "a"), (1, "b")]),
        acquire(11, "s1", &[(2, "c"), (3, "d")]),
        ack(12, "s0", EventType::Ok, AckVerdict::Accept, &[(0, "a")]),
        // b's lock expired: s0's late accept is refused; its redelivery to s1 is fine, and
        // out of order.
        ack(13, "s0", EventType::Fail, AckVerdict::Accept, &[(1, "b")]),
        acquire(20, "s1", &[(1, "b")]),
        ack(21, "s1", EventType::Ok, AckVerdict::Reject, &[(1, "b")]),
        ack(22, "s1", EventType::Info, AckVerdict::Accept, &[(2, "c")]),
        // a comes back after its confirmed acceptance: the share state forgot it.
        acquire(30, "s1", &[(0, "a")]),
        ack(31, "s1", EventType::Ok, AckVerdict::Release, &[(3, "d")]),
        // s0 crashed with its accept of e in flight: e may be settled, so not unconsumed.
        acquire(32, "s0", &[(4, "e")]),
        ack(33, "s0", EventType::Invoke, AckVerdict::Accept, &[(4, "e")]),
    ]);
    let report = check(&events);
    assert!(report.anomalies.is_judged(Anomaly::Unconsumed));
    assert_eq!(
        report.anomalies[Anomaly::RedeliveredAccepted],
        1,
        "{:?}",
        report.examples
    );
    // d was released and never settled.
    assert_eq!(
        report.anomalies[Anomaly::Unconsumed],
        1,
        "{:?}",
        report.examples
    );
    let stats = &report.shares["s1"];
    assert_eq!(
        (
            stats.delivered,
            stats.redeliveries,
            stats.accepted,
            stats.rejected,
            stats.unknown_acks,
            stats.refused_acks,
            stats.out_of_order
        ),
        (7, 2, 1, 1, 2, 1, 2)
    );
    let without = check(&events[..10]);
    assert!(!without.anomalies.is_judged(Anomaly::Unconsumed));
    assert!(without.shares.is_empty());
}

/// A member that stopped (a pause, a busy handler) takes its fetch's records only after it
/// resumes, maybe after another member accepted them: the leader handed them out when the
/// fetch was sent, before the accept, so that is no redelivery. A fetch sent after the accept
/// was confirmed that brings the record back is one (swarm-share seed 184 before the field).
#[test]
fn a_redelivery_is_judged_from_when_the_fetch_was_sent() {
    let acquire_sent = |t: u64, sent: u64, process: &str| {
        let op = Op::Acquire {
            topic: "t".into(),
            partition: 0,
            records: vec![(0, "a".to_string())],
            requested_ns: Some(sent),
        };
        share_event(t, process, EventType::Ok, op)
    };
    let mut events = vec![
        Event::new(
            0,
            "p0",
            EventType::Invoke,
            send_op("a", ("t", 0), None, None),
        ),
        Event::new(
            1,
            "p0",
            EventType::Ok,
            send_op("a", ("t", 0), Some(0), None),
        ),
        // s0 fetched at 2 and stopped; its lock expired, s1 took a and accepted it by 12.
        acquire_sent(10, 9, "s1"),
        ack(12, "s1", EventType::Ok, AckVerdict::Accept, &[(0, "a")]),
        acquire_sent(30, 2, "s0"),
    ];
    assert_eq!(check(&events).anomalies[Anomaly::RedeliveredAccepted], 0);
    events.push(acquire_sent(40, 35, "s0"));
    let report = check(&events);
    assert_eq!(report.anomalies[Anomaly::RedeliveredAccepted], 1);
    assert!(
        report.examples["redelivered_accepted"][0].contains("fetch sent at 35ns"),
        "{:?}",
        report.examples
    );
}

/// Issue 9, `key_shared`: a first delivery below one already first delivered with its ordering
/// key (the id up to its first `/`) is out of order per key; a redelivery and a record of
/// another key are not.
#[test]
fn out_of_order_per_key_counts_first_deliveries_behind_their_keys_highest() {
    let events = [
        acquire(10, "s0", &[(0, "k1/p-0"), (2, "k1/p-2")]),
        // k2's 1 after k1's 2: another key, in order for its own.
        acquire(11, "s1", &[(1, "k2/p-1")]),
        // 0 again: a redelivery, not counted.
        acquire(12, "s1", &[(0, "k1/p-0")]),
        acquire(13, "s1", &[(3, "k1/p-3")]),
        // k2's 4 after k2's 5: counted.
        acquire(14, "s0", &[(5, "k2/p-5")]),
        acquire(15, "s0", &[(4, "k2/p-4")]),
    ];
    let report = check(&events);
    let stats = &report.shares["s1"];
    assert_eq!((stats.out_of_order, stats.out_of_order_per_key), (3, 1));
    assert_eq!(crate::shares::ordering_key("k1/p-0"), "k1");
    assert_eq!(crate::shares::ordering_key("p-0"), "p-0");
}
