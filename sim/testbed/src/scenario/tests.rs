use std::path::PathBuf;

use fathom_history::{Anomaly, CheckReport};
use fathom_queue::config::FsyncPolicy;

use super::*;

/// A valid scenario; tests append lines to it, which land in the `[[producers]]` table unless
/// they open another one. Line numbers below count from here.
const BASE: &str = r#"name = "t"
duration_s = 10.0
[cluster]
brokers = 3
[[cluster.topics]]
name = "orders"
partitions = 3
replication_factor = 3
[[producers]]
name = "p"
topic = "orders"
"#;

/// Line of the first line appended to [`BASE`].
const APPENDED_LINE: usize = 12;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::from_toml_str(text, "bad.toml")
}

/// Parses `text`, expects it to fail, and returns (field, line, column, message, display).
fn failure(text: &str) -> (String, usize, usize, String, String) {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => {
            let display = e.to_string();
            match e {
                ScenarioError::Invalid {
                    field,
                    line,
                    column,
                    message,
                    ..
                } => (field, line, column, message, display),
                other => panic!("unexpected error {other:?}"),
            }
        }
    }
}

/// Asserts that `text` fails on `field` at `line`, with a message containing `needle`, and that
/// the displayed error carries all three.
fn assert_fails(text: &str, field: &str, line: usize, needle: &str) {
    let (f, l, _, message, display) = failure(text);
    assert_eq!((f.as_str(), l), (field, line), "{display}");
    assert!(message.contains(needle), "{display}");
    assert!(
        display.starts_with(&format!("bad.toml:{line}:")) && display.contains(field),
        "{display}"
    );
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

#[test]
fn every_scenario_file_parses_and_validates() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).expect("scenarios/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        scenario.cluster_config().validate().unwrap();
        assert!(
            !scenario.description.trim().is_empty(),
            "{}: needs a description",
            path.display()
        );
        let stem = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(scenario.name, stem, "{}: name matches file", path.display());
        // Issue 11's benchmark scenario is 60 s + 10 s by its definition; its test runs one seed.
        let long_by_definition = stem == "standard";
        assert!(
            long_by_definition || (scenario.duration_s <= 20.0 && scenario.settle_s <= 15.0),
            "{stem}: keep runs short"
        );
        names.push(stem.to_string());
    }
    names.sort();
    for required in [
        "disk-torn-write",
        "leader-crash-acks-1",
        "leader-crash-acks-all",
        "packet-loss",
        "partition-heal",
        "quickstart",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "missing {required}.toml"
        );
    }
}

#[test]
fn quickstart_builds_the_cluster_config() {
    let s = Scenario::load(&scenarios_dir().join("quickstart.toml")).unwrap();
    let config = s.cluster_config();
    let addrs: Vec<&str> = config.brokers.iter().map(|b| b.addr.as_str()).collect();
    assert_eq!(addrs, ["broker-1:9092", "broker-2:9092", "broker-3:9092"]);
    assert_eq!(config.broker_ids(), [1, 2, 3]);
    assert_eq!(config.topics[0].name, "orders");
    assert_eq!(config.log.fsync, FsyncPolicy::EveryBatch);
    assert_eq!(s.producers[0].client.acks, Acks::All);
    assert_eq!(s.producers[0].mode, ProducerMode::Async);
    assert_eq!(s.client_processes(), ["p-0", "c-0"]);
    assert_eq!(s.broker_hosts(), ["broker-1", "broker-2", "broker-3"]);
    assert!(s.faults.is_empty());
    // Every class a run without consumer groups can judge.
    let judged = Anomaly::ALL
        .iter()
        .filter(|a| !a.is_group_class() && !a.is_share_class())
        .count();
    assert_eq!(s.expect.bounds().len(), judged);
}

#[test]
fn defaults_fill_optional_fields() {
    let s = parse(BASE).unwrap();
    assert_eq!((s.seed, s.settle_s, s.tick_ms), (1, 5.0, 1));
    assert_eq!(s.network, NetworkSpec::default());
    assert_eq!(s.disk.torn_write_block_size(), None);
    let p = &s.producers[0];
    assert_eq!(p.client.acks, Acks::All);
    assert_eq!(
        p.client.retry_backoff_ms,
        MillisRange {
            min_ms: 50,
            max_ms: 500
        }
    );
    assert_eq!(s.cluster.offsets_partitions, 1);
    assert_eq!(s.expect, Expect::default());
}

#[test]
fn acks_accepts_strings_and_integers() {
    for (value, acks) in [
        (r#""0""#, Acks::None),
        ("0", Acks::None),
        (r#""1""#, Acks::Leader),
        ("1", Acks::Leader),
        (r#""all""#, Acks::All),
        ("-1", Acks::All),
    ] {
        let s = parse(&with(&format!("acks = {value}\n"))).unwrap();
        assert_eq!(s.producers[0].client.acks, acks, "acks = {value}");
    }
}

#[test]
fn unknown_field_names_field_and_line() {
    assert_fails(
        &with("ackz = \"all\"\n"),
        "producers[0].ackz",
        APPENDED_LINE,
        "unknown field `ackz`",
    );
    // A consumer table is read three times (workload, consumer, share settings): a key that
    // none of them reads is still unknown, and a client setting is still located.
    let consumer = "[[consumers]]\nname = \"c\"\ntopic = \"orders\"\ngroup = \"g\"\n";
    assert_fails(
        &with(&format!("{consumer}max_wiat_ms = 10\n")),
        "consumers[0].max_wiat_ms",
        APPENDED_LINE + 4,
        "unknown field `max_wiat_ms`",
    );
    assert_fails(
        &with(&format!("{consumer}max_wait_ms = \"long\"\n")),
        "consumers[0].max_wait_ms",
        APPENDED_LINE + 4,
        "invalid type",
    );
    // In a nested core type too.
    assert_fails(
        &with("[cluster.log]\nfsync_every = 3\n"),
        "cluster.log.fsync_every",
        APPENDED_LINE + 1,
        "unknown field",
    );
}

#[test]
fn wrong_type_names_field_and_line() {
    assert_fails(
        &with("rate_per_s = \"fast\"\n"),
        "producers[0].rate_per_s",
        APPENDED_LINE,
        "invalid type",
    );
}

#[test]
fn bad_acks_value_is_reported_like_the_docs_say() {
    let (_, _, _, _, display) = failure(&with("acks = \"2\"\n"));
    assert_eq!(
        display,
        r#"bad.toml:12:8: producers[0].acks: expected one of "0", "1", "all", got "2""#
    );
    assert_fails(
        &with("acks = 2\n"),
        "producers[0].acks",
        APPENDED_LINE,
        "got 2",
    );
}

#[test]
fn bad_enum_value_names_field_and_line() {
    assert_fails(
        &with("mode = \"syncc\"\n"),
        "producers[0].mode",
        APPENDED_LINE,
        "unknown variant `syncc`",
    );
    assert_fails(
        &with("[cluster.log]\nfsync = \"sometimes\"\n"),
        "cluster.log.fsync",
        APPENDED_LINE + 1,
        "unknown variant `sometimes`",
    );
}

#[test]
fn clock_faults_parse_and_bad_ones_name_field_and_line() {
    let ok = parse(&with(
        "[[faults]]\nat_s = 1.0\nkind = \"clock\"\ntarget = \"broker-1\"\nclock_rate = 2.5\njump_s = 3.0\nuntil_s = 4.0\n",
    ))
    .unwrap();
    assert_eq!(
        ok.faults[0].kind,
        FaultKind::Clock {
            target: Target::Broker(1),
            clock_rate: 2.5,
            jump_s: 3.0
        }
    );
    let fault = "[[faults]]\nat_s = 1.0\nkind = \"clock\"\ntarget = \"broker-1\"\n";
    assert_fails(
        &with(&format!("{fault}clock_rate = 50.0\n")),
        "faults[0].clock_rate",
        APPENDED_LINE + 4,
        "within [0.1, 10]",
    );
    assert_fails(
        &with(&format!("{fault}jump_s = -1.0\n")),
        "faults[0].jump_s",
        APPENDED_LINE + 4,
        "clocks only leap forward",
    );
    assert_fails(
        &with(fault),
        "faults[0].clock_rate",
        APPENDED_LINE,
        "needs clock_rate other than 1",
    );
}

#[test]
fn fsync_us_with_a_resource_model_is_refused() {
    assert_fails(
        &with("[disk]\nfsync_us = 5000\n[resources]\n"),
        "disk.fsync_us",
        APPENDED_LINE + 1,
        "only without [resources]",
    );
}

#[test]
fn fsync_us_fixes_the_mean_and_its_absence_draws_it() {
    let fixed = parse(&with("[disk]\nfsync_us = 5000\n")).unwrap();
    assert_eq!(
        fixed.disk.unmetered_fsync(),
        FsyncMean::Fixed(Duration::from_millis(5))
    );
    let drawn = parse(BASE).unwrap();
    assert_eq!(
        drawn.disk.unmetered_fsync(),
        FsyncMean::Drawn {
            min: Duration::from_micros(FSYNC_US_DRAWN.0),
            max: Duration::from_micros(FSYNC_US_DRAWN.1),
        }
    );
}

#[test]
fn undeclared_topic_names_field_and_line() {
    let text = BASE.replace("topic = \"orders\"", "topic = \"ordrs\"");
    assert_fails(&text, "producers[0].topic", 11, "\"ordrs\" is not declared");
}

#[test]
fn bad_fault_target_names_field_and_line() {
    let fault = "[[faults]]\nat_s = 1.0\nkind = \"crash\"\ntarget = \"broker-7\"\n";
    assert_fails(
        &with(fault),
        "faults[0].target",
        APPENDED_LINE + 3,
        "no broker-7",
    );
    let fault = "[[faults]]\nat_s = 1.0\nkind = \"crash\"\ntarget = \"leader:orders\"\n";
    assert_fails(
        &with(fault),
        "faults[0].target",
        APPENDED_LINE + 3,
        "leader:<topic>/<partition>",
    );
    let fault = "[[faults]]\nat_s = 1.0\nkind = \"crash\"\ntarget = \"leader:orders/3\"\n";
    assert_fails(
        &with(fault),
        "faults[0].target",
        APPENDED_LINE + 3,
        "partition 3 is out of range",
    );
    let fault = "[[faults]]\nat_s = 1.0\nkind = \"partition\"\ngroups = [[\"broker-1\"], [\"p-0\", \"q-0\"]]\n";
    assert_fails(
        &with(fault),
        "faults[0].groups[1][1]",
        APPENDED_LINE + 3,
        "no client process is named \"q-0\"",
    );
}

#[test]
fn latency_min_above_max_names_field_and_line() {
    assert_fails(
        &with("[network]\nlatency_ms = [10, 5]\n"),
        "network.latency_ms",
        APPENDED_LINE + 1,
        "min (10) is above max (5)",
    );
    assert_fails(
        &with("retry_backoff_ms = [1, 2, 3]\n"),
        "producers[0].retry_backoff_ms",
        APPENDED_LINE,
        "expected [min, max]",
    );
}

#[test]
fn semantic_errors_name_field_and_line() {
    assert_fails(
        &BASE.replace("duration_s = 10.0", "duration_s = -1.0"),
        "duration_s",
        2,
        "above 0",
    );
    assert_fails(
        &with("rate_per_s = 0.0\n"),
        "producers[0].rate_per_s",
        APPENDED_LINE,
        "must be above 0",
    );
    assert_fails(
        &with("hot_key_share = 1.5\n"),
        "producers[0].hot_key_share",
        APPENDED_LINE,
        "must be within 0 ..= 1, got 1.5",
    );
    assert_fails(
        &with("hot_key_share = nan\n"),
        "producers[0].hot_key_share",
        APPENDED_LINE,
        "must be within 0 ..= 1",
    );
    assert_fails(
        &with("ordering_keys = 10001\n"),
        "producers[0].ordering_keys",
        APPENDED_LINE,
        "must be within 0 ..= 10000 (0: no ordering keys), got 10001",
    );
    assert_fails(
        &with("[[faults]]\nat_s = 11.0\nkind = \"heal\"\n"),
        "faults[0].at_s",
        APPENDED_LINE + 1,
        "outside the workload phase",
    );
    assert_fails(
        &with("[[faults]]\nat_s = 1.0\nkind = \"crash\"\ntarget = \"random\"\nrate = 0.1\n"),
        "faults[0].rate",
        APPENDED_LINE + 4,
        "not used by kind = \"crash\"",
    );
    assert_fails(
        &with(
            "[[consumers]]\nname = \"c\"\ntopic = \"orders\"\ngroup = \"g\"\npartitions = [0, 3]\n",
        ),
        "consumers[0].partitions[1]",
        APPENDED_LINE + 4,
        "partition 3 is out of range",
    );
    assert_fails(
        &with("[[producers]]\nname = \"p\"\ntopic = \"orders\"\n"),
        "producers[1].name",
        APPENDED_LINE + 1,
        "\"p-0\" is also used by producers[0]",
    );
    assert_fails(
        &BASE.replace("replication_factor = 3", "replication_factor = 4"),
        "cluster.topics[0].replication_factor",
        8,
        "replication_factor must be between 1 and the number of brokers",
    );
}

#[test]
fn missing_fields_point_at_their_table() {
    assert_fails(
        &BASE.replace("brokers = 3\n", ""),
        "cluster.brokers",
        3,
        "missing field `brokers`",
    );
    // A table that only exists through a `[cluster.log]` header has no span of its own.
    assert_fails(
        "name = \"t\"\nduration_s = 1.0\n[cluster.log]\nfsync = \"never\"\n",
        "cluster.brokers",
        3,
        "missing field `brokers`",
    );
    assert_fails(
        "duration_s = 1.0\n[cluster]\nbrokers = 1\n",
        "name",
        1,
        "missing field `name`",
    );
    // Required but defaulted by serde: caught by validation, pointed at the table header.
    assert_fails(
        &BASE.replace("topic = \"orders\"\n", ""),
        "producers[0].topic",
        9,
        "missing",
    );
    assert_fails(
        &with(
            "[[faults]]\nat_s = 1.0\nkind = \"loss\"\nbetween = [[\"brokers\"], [\"clients\"]]\n",
        ),
        "faults[0].rate",
        APPENDED_LINE,
        "needs rate",
    );
}

#[test]
fn invalid_toml_still_gets_a_line_and_a_guess_at_the_field() {
    let (field, line, _, _, display) = failure(&with("acks = \n"));
    assert_eq!(
        (field.as_str(), line),
        ("producers[0].acks", APPENDED_LINE),
        "{display}"
    );
}

#[test]
fn faults_are_typed_with_absolute_end_times() {
    let text = with(
        r#"[[consumers]]
name = "c"
topic = "orders"
group = "g"
restart_at_s = [3.0]
[[faults]]
at_s = 2.0
kind = "partition"
groups = [["leader:orders/0"], ["brokers", "c-0-r1"]]
heal_after_s = 3.0
[[faults]]
at_s = 1.0
kind = "latency"
between = [["brokers"], ["clients"]]
latency_ms = [50, 100]
until_s = 4.5
[[faults]]
at_s = 5.0
kind = "power_loss"
"#,
    );
    let s = parse(&text).unwrap();
    assert_eq!(s.faults.len(), 3);
    assert_eq!(s.faults[0].until_s, Some(5.0));
    assert_eq!(
        s.faults[0].kind,
        FaultKind::Partition {
            groups: vec![
                vec![Member::Broker(Target::LeaderOf {
                    topic: "orders".into(),
                    partition: 0
                })],
                vec![Member::AllBrokers, Member::Client("c-0-r1".into())],
            ]
        }
    );
    assert_eq!(s.faults[1].until_s, Some(4.5));
    assert_eq!(s.faults[1].kind.tag(), FaultTag::Latency);
    assert_eq!(
        s.faults[2],
        Fault {
            at_s: 5.0,
            until_s: None,
            kind: FaultKind::PowerLoss
        }
    );
    assert_eq!(s.client_processes(), ["p-0", "c-0", "c-0-r1"]);
}

#[test]
fn targets_and_members_round_trip_through_text() {
    for text in ["broker-2", "leader:orders/0", "leader:a/b/7", "random"] {
        assert_eq!(text.parse::<Target>().unwrap().to_string(), text);
    }
    for text in ["broker-2", "brokers", "clients", "p-0", "leader:t/1"] {
        assert_eq!(text.parse::<Member>().unwrap().to_string(), text);
    }
    assert!("broker-x".parse::<Target>().is_err());
    assert!("leader:/0".parse::<Target>().is_err());
    assert!("p 0".parse::<Member>().is_err());
}

#[test]
fn consumer_instances_split_partitions_round_robin() {
    let c = ConsumerSpec {
        name: "c".into(),
        instances: std::num::NonZeroU32::new(2).expect("not zero"),
        ..ConsumerSpec::default()
    };
    assert_eq!(c.assignment(0, 5), [0, 2, 4]);
    assert_eq!(c.assignment(1, 5), [1, 3]);
    let listed = ConsumerSpec {
        partitions: PartitionSelection::List(vec![4, 1, 2]),
        ..c.clone()
    };
    assert_eq!(listed.assignment(0, 5), [4, 2]);
    assert_eq!(listed.assignment(1, 5), [1]);
    let restarting = ConsumerSpec {
        restart_at_s: vec![1.0, 2.0],
        ..c
    };
    assert_eq!(restarting.incarnation_names(1), ["c-1", "c-1-r1", "c-1-r2"]);
}

#[test]
fn expect_reports_violations() {
    let expect = Expect {
        anomalies: [(Anomaly::Lost, 0), (Anomaly::Duplicate, 2)].into(),
        unknown_in_log: Some(1),
        acked_min: Some(100),
        read_min: Some(10),
        push_overflows_min: None,
        rejected_min: None,
        out_of_order_per_key: None,
        key_shared_groups: Default::default(),
    };
    let report = |counts: &[(Anomaly, u64)], acked, unknown_in_log| CheckReport {
        anomalies: counts.iter().copied().collect(),
        acked,
        read: 10,
        unknown_in_log,
        ..CheckReport::default()
    };
    let ok = report(&[(Anomaly::Duplicate, 2), (Anomaly::PollSkip, 9)], 100, 1);
    assert!(expect.violations(&ok).is_empty());

    let bad = report(&[(Anomaly::Lost, 1), (Anomaly::Duplicate, 3)], 99, 2);
    let v: Vec<String> = expect
        .violations(&bad)
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(v.len(), 4, "{v:?}");
    assert!(v[0].starts_with("lost: 1 found, at most 0"), "{v:?}");
    assert!(v[1].starts_with("duplicate: 3 found, at most 2"), "{v:?}");
    assert!(v[2].starts_with("unknown_in_log: 2 sends"), "{v:?}");
    assert!(v[3].starts_with("acked: 99"), "{v:?}");
    let keys: Vec<&str> = expect.violations(&bad).iter().map(|v| v.key()).collect();
    assert_eq!(keys, ["lost", "duplicate", "unknown_in_log", "acked_min"]);
}

/// Every anomaly class is a key of `[expect]`; any other key is an error that names it and
/// lists the keys there are.
#[test]
fn expect_keys_are_the_anomaly_classes() {
    for class in Anomaly::ALL {
        let text = with(&format!("[expect]\n{class} = 3\nacked_min = 1\n"));
        let s = parse(&text).unwrap();
        assert_eq!(s.expect.bound(class), Some(3));
        assert_eq!(s.expect.acked_min, Some(1));
    }
    assert_fails(
        &with("[expect]\nlots = 0\n"),
        "expect.lots",
        APPENDED_LINE + 1,
        "unknown field `lots`, expected one of `lost`",
    );
    assert_fails(
        &with("[expect]\nlost = 0\nlost = 1\n"),
        "expect.lost",
        APPENDED_LINE + 2,
        "duplicate key",
    );
}

/// The producer options added for the idempotent producer and its batching: defaults keep the
/// old behaviour, every value parses, and combinations the producer cannot run are refused.
#[test]
fn producer_options_parse_with_old_defaults_and_are_checked() {
    let s = parse(BASE).unwrap();
    let p = &s.producers[0];
    assert!(!p.client.enable_idempotence);
    assert_eq!(p.partitioner, Partitioner::RoundRobin);
    assert_eq!(p.client.compression, Compression::None);
    assert_eq!(p.client.connections_per_broker.get(), 1);
    assert_eq!(
        p.client.batch_records_max,
        fathom_queue::client::producer::BATCH_RECORDS_MAX_DEFAULT
    );

    for (value, partitioner) in [
        ("round_robin", Partitioner::RoundRobin),
        ("random", Partitioner::Random),
        ("key_hash", Partitioner::KeyHash),
        ("sticky", Partitioner::Sticky),
    ] {
        let s = parse(&with(&format!("partitioner = \"{value}\"\n"))).unwrap();
        assert_eq!(s.producers[0].partitioner, partitioner);
    }
    let s = parse(&with(
        "idempotence = true\nbatch_records_max = 10\ncompression = \"lz4\"\n\
         connections_per_broker = 2\n",
    ))
    .unwrap();
    let p = &s.producers[0];
    assert!(p.client.enable_idempotence);
    assert_eq!(p.client.batch_records_max.get(), 10);
    assert_eq!(p.client.compression, Compression::Lz4);
    assert_eq!(p.client.connections_per_broker.get(), 2);

    assert_fails(
        &with("acks = \"1\"\nidempotence = true\n"),
        "producers[0].idempotence",
        APPENDED_LINE + 1,
        "needs acks = \"all\"",
    );
    assert_fails(
        &with("idempotence = true\nin_flight_max = 6\n"),
        "producers[0].in_flight_max",
        APPENDED_LINE + 1,
        "above 5",
    );
    // Limits that cannot be zero are refused by their types, located like any other error.
    for field in [
        "batch_records_max",
        "in_flight_max",
        "connections_per_broker",
        "instances",
        "messages",
        "message_bytes",
    ] {
        assert_fails(
            &with(&format!("{field} = 0\n")),
            &format!("producers[0].{field}"),
            APPENDED_LINE,
            "expected a nonzero",
        );
    }
    assert_fails(
        &with("compression = \"zstd\"\n"),
        "producers[0].compression",
        APPENDED_LINE,
        "unknown variant `zstd`",
    );
}

/// A fault kind's name is serde's spelling of it, both ways.
#[test]
fn fault_tag_names_are_serdes_names() {
    #[derive(Deserialize)]
    struct Doc {
        kind: FaultTag,
    }
    for tag in FaultTag::ALL {
        let doc: Doc = toml::from_str(&format!("kind = \"{tag}\"")).unwrap();
        assert_eq!(doc.kind, tag);
        assert_eq!(serde_json::to_string(&tag).unwrap(), format!("\"{tag}\""));
    }
}

/// The README's client defaults tables are the code's: every default written there, set
/// explicitly in a table, reads the same as leaving the field out (a table shrunk below
/// `rows_min` rows fails too, so the check cannot pass by finding no table).
#[test]
fn readme_client_defaults_are_the_defaults() {
    let readme = include_str!("../../../../README.md");
    let consumer_base =
        format!("{BASE}[[consumers]]\nname = \"c\"\ntopic = \"orders\"\ngroup = \"g\"\n");
    for (header, base, rows_min) in [
        ("| producer field |", BASE.to_string(), 20),
        ("| consumer field |", consumer_base, 9),
    ] {
        let implicit = parse(&base).unwrap();
        let rows = readme_table(readme, header);
        assert!(rows.len() >= rows_min, "{header}: {} rows", rows.len());
        for (field, default) in rows {
            let Some(value) = toml_value(&default) else {
                continue;
            };
            let explicit = parse(&format!("{base}{field} = {value}\n"))
                .unwrap_or_else(|e| panic!("README default {field} = {value}: {e}"));
            assert_eq!(
                (&explicit.producers, &explicit.consumers),
                (&implicit.producers, &implicit.consumers),
                "README says {field} defaults to {default}"
            );
        }
    }
}

/// (field, default cell) of each row of the README table that starts with `header`.
fn readme_table(readme: &str, header: &str) -> Vec<(String, String)> {
    readme
        .lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let field = cells[0].trim_start_matches("| ").trim_matches('`');
            (field.to_string(), cells[1].to_string())
        })
        .collect()
}

/// The TOML value a README default cell names (its first word: `` `sync` ``, `[50, 500]`, `16384
/// (16 KiB)`), or None for "none" (an absent optional field).
fn toml_value(cell: &str) -> Option<String> {
    if cell == "none" {
        return None;
    }
    if let Some(quoted) = cell.strip_prefix('`') {
        let name = &quoted[..quoted.find('`').unwrap()];
        return Some(if name.starts_with('"') {
            name.to_string()
        } else {
            format!("\"{name}\"")
        });
    }
    if cell.starts_with('[') {
        return Some(cell[..=cell.find(']').unwrap()].to_string());
    }
    Some(cell.split_whitespace().next().unwrap().to_string())
}

/// A `[[consumers]]` table after [`BASE`]; the line after it is `CONSUMER_LINE`.
fn consumer_with(extra: &str) -> String {
    format!("{BASE}[[consumers]]\nname = \"c\"\ntopic = \"orders\"\ngroup = \"g\"\n{extra}")
}
const CONSUMER_LINE: usize = 16;

/// Issue 8: group fields in the wrong combination or out of range are refused with the field,
/// its line and the allowed values.
#[test]
fn bad_group_consumer_fields_name_field_line_and_allowed_values() {
    assert_fails(
        &consumer_with("protocol = \"rocket\"\n"),
        "consumers[0].protocol",
        CONSUMER_LINE,
        "expected one of `manual`, `eager`, `cooperative`, `static`, `broker`, `client_periodic`",
    );
    assert_fails(
        &consumer_with("protocol = \"eager\"\ninstance_id = \"a\"\n"),
        "consumers[0].instance_id",
        CONSUMER_LINE + 1,
        "instance_id needs protocol = \"static\" or \"broker\" (this consumer's is \"eager\")",
    );
    assert_fails(
        &consumer_with("protocol = \"cooperative\"\npartitions = [0]\n"),
        "consumers[0].partitions",
        CONSUMER_LINE + 1,
        "allowed: \"all\"",
    );
    assert_fails(
        &consumer_with("protocol = \"broker\"\nsession_timeout_ms = 10\n"),
        "consumers[0].session_timeout_ms",
        CONSUMER_LINE + 1,
        "must be from 100 to 1800000",
    );
    assert_fails(
        &consumer_with(
            "protocol = \"eager\"\nsession_timeout_ms = 1000\nheartbeat_interval_ms = 1000\n",
        ),
        "consumers[0].heartbeat_interval_ms",
        CONSUMER_LINE + 2,
        "below session_timeout_ms (1000)",
    );
    assert_fails(
        &consumer_with("commit = \"sometimes\"\n"),
        "consumers[0].commit",
        CONSUMER_LINE,
        "expected one of `after_process`, `before_process`, `never`, `auto`",
    );
    assert_fails(
        &consumer_with("instance_process_ms = [1, 2]\n"),
        "consumers[0].instance_process_ms",
        CONSUMER_LINE,
        "one per instance",
    );
}

/// Group fields are off by default: a table without them is a manual consumer, as before.
#[test]
fn a_consumer_without_group_fields_is_manual() {
    let s = parse(&consumer_with("")).unwrap();
    assert_eq!(s.consumers[0].member_config(0), None);
    let s = parse(&consumer_with("protocol = \"static\"\n")).unwrap();
    let member = s.consumers[0].member_config(1).expect("a group member");
    assert_eq!(member.instance_id.as_deref(), Some("c-1"));
}

/// Issue 8: membership faults name a group consumer and one of its instances; a manual
/// consumer has no membership to disturb.
#[test]
fn bad_membership_faults_name_field_line_and_allowed_values() {
    let manual = consumer_with("");
    assert_fails(
        &format!(
            "{manual}[[faults]]\nat_s = 1.0\nkind = \"pause\"\nprocess = \"c-0\"\npause_s = 2.0\n"
        ),
        "faults[0].process",
        CONSUMER_LINE + 3,
        "membership faults need a group protocol or kind = \"share\", and consumers[0] has protocol = \"manual\"",
    );
    let group = consumer_with("protocol = \"eager\"\n");
    assert_fails(
        &format!("{group}[[faults]]\nat_s = 1.0\nkind = \"leave\"\nprocess = \"c-4\"\n"),
        "faults[0].process",
        CONSUMER_LINE + 4,
        "consumer \"c\" has instances c-0 ..= c-0",
    );
    assert_fails(
        &format!("{group}[[faults]]\nat_s = 1.0\nkind = \"join\"\nconsumer = \"d\"\n"),
        "faults[0].consumer",
        CONSUMER_LINE + 4,
        "no [[consumers]] named \"d\" (consumers: \"c\")",
    );
    assert_fails(
        &format!("{group}[[faults]]\nat_s = 1.0\nkind = \"crash\"\ntarget = \"coordinator:h\"\n"),
        "faults[0].target",
        CONSUMER_LINE + 4,
        "no consumer group \"h\" (groups: \"g\")",
    );
    assert_fails(
        &format!(
            "{group}[[faults]]\nat_s = 1.0\nkind = \"pause\"\nprocess = \"c-0\"\ngap_s = 2.0\n"
        ),
        "faults[0].gap_s",
        CONSUMER_LINE + 5,
        "not used by kind = \"pause\" (it takes at_s, kind, process, pause_s)",
    );
}

/// Membership faults become each instance's actions, in time order; a join adds an instance.
#[test]
fn membership_faults_become_per_instance_actions() {
    let group = consumer_with("protocol = \"eager\"\ninstances = 2\n");
    let s = parse(&format!(
        "{group}[[faults]]\nat_s = 5.0\nkind = \"rolling_restart\"\nconsumer = \"c\"\ngap_s = 2.0\n\
         [[faults]]\nat_s = 1.0\nkind = \"join\"\nconsumer = \"c\"\n\
         [[faults]]\nat_s = 2.0\nkind = \"consumer_crash\"\nprocess = \"c-1\"\nrestart_after_s = 1.5\n"
    ))
    .unwrap();
    let plan = s.membership_plan(0);
    let secs = Duration::from_secs_f64;
    assert_eq!(plan.joins, [secs(1.0)]);
    assert_eq!(plan.actions[&0], [(secs(5.0), MemberAction::Restart)]);
    let crash = MemberAction::Crash {
        restart_after: Some(secs(1.5)),
    };
    assert_eq!(
        plan.actions[&1],
        [(secs(2.0), crash), (secs(7.0), MemberAction::Restart)]
    );
}

/// Issue 9: delivery settings out of range are refused with the field, its line and the range;
/// a valid push table configures the consumer's push model.
#[test]
fn bad_delivery_fields_name_field_line_and_range() {
    assert_fails(
        &consumer_with("delivery = \"firehose\"\n"),
        "consumers[0].delivery",
        CONSUMER_LINE,
        "expected one of `pull`, `long_poll`, `push`",
    );
    assert_fails(
        &consumer_with("delivery = \"pull\"\npoll_interval_ms = 0\n"),
        "consumers[0].poll_interval_ms",
        CONSUMER_LINE + 1,
        "must be from 1 to 60000",
    );
    assert_fails(
        &consumer_with("delivery = \"push\"\npush_credits = 2000000\n"),
        "consumers[0].push_credits",
        CONSUMER_LINE + 1,
        "must be at most 1000000 records",
    );
    assert_fails(
        &consumer_with("receive_buffer_bytes_max = 0\n"),
        "consumers[0].receive_buffer_bytes_max",
        CONSUMER_LINE,
        "must be from 1 to 1073741824 bytes",
    );
    let s = parse(&consumer_with("delivery = \"push\"\npush_credits = 0\n")).unwrap();
    assert_eq!(
        s.consumers[0].consumer_config().delivery,
        fathom_queue::client::Delivery::Push { credits: 0 }
    );
}

/// Issue 9: `push_overflows_min` is judged on the run's delivery metrics: a slow consumer that
/// was never flooded violates it, named in the violation.
#[test]
fn push_overflows_min_is_judged_on_the_delivery_metrics() {
    let s = parse(&with("[expect]\npush_overflows_min = 1\n")).unwrap();
    let mut delivery = crate::metrics::DeliveryMetrics::default();
    let violations = s.expect.delivery_violations(&delivery);
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].key(), "push_overflows_min");
    delivery.push_overflows = 3;
    assert!(s.expect.delivery_violations(&delivery).is_empty());
}

/// Issue 9: a share group's settings are refused out of the broker's ranges, at their line; the
/// share-only fields are refused on a stream consumer, and a share group chooses no partitions.
#[test]
fn share_fields_are_checked_where_they_are_written() {
    assert_fails(
        &consumer_with("kind = \"share\"\nacquisition_lock_ms = 10\n"),
        "consumers[0].acquisition_lock_ms",
        CONSUMER_LINE + 1,
        "must be in 100..=3600000",
    );
    assert_fails(
        &consumer_with("kind = \"share\"\ndelivery_attempts_max = 0\n"),
        "consumers[0].delivery_attempts_max",
        CONSUMER_LINE + 1,
        "must be in 1..=100",
    );
    assert_fails(
        &consumer_with("poison_ids = [\"p-0-1\"]\n"),
        "consumers[0].poison_ids",
        CONSUMER_LINE,
        "needs kind = \"share\"",
    );
    assert_fails(
        &consumer_with("kind = \"share\"\nprotocol = \"eager\"\n"),
        "consumers[0].protocol",
        CONSUMER_LINE + 1,
        "leave `protocol` out",
    );
    assert_fails(
        &consumer_with("kind = \"share\"\ndead_letter_topic = \"nowhere\"\n"),
        "consumers[0].dead_letter_topic",
        CONSUMER_LINE + 1,
        "topic \"nowhere\" is not declared",
    );
    assert_fails(
        &consumer_with("kind = \"share\"\ndead_letter_topic = \"orders\"\n"),
        "consumers[0].dead_letter_topic",
        CONSUMER_LINE + 1,
        "must differ from the topic the group reads",
    );
    let s = parse(&consumer_with("kind = \"share\"\nrecord_locks_max = 50\n")).unwrap();
    assert_eq!(
        s.consumers[0].share_config("s-0").settings.record_locks_max,
        50
    );
}

/// Issue 9: `rejected_min` is judged on the share groups' rejections.
#[test]
fn rejected_min_is_judged_on_the_share_groups() {
    let s = parse(&with("[expect]\nrejected_min = 2\n")).unwrap();
    let mut report = fathom_history::CheckReport::default();
    let keys = |r: &fathom_history::CheckReport| -> Vec<&'static str> {
        s.expect.violations(r).iter().map(|v| v.key()).collect()
    };
    assert_eq!(keys(&report), ["rejected_min"]);
    let stats = fathom_history::ShareStats {
        rejected: 2,
        ..Default::default()
    };
    report.shares.insert("s1".into(), stats);
    assert!(keys(&report).is_empty());
}

/// Issue 9, `key_shared`: the kind reaches the member's configuration as Key_Shared mode, and
/// `out_of_order_per_key` bounds the share groups' per-key out-of-order first deliveries; the
/// bound without a share group to judge is refused at load time.
#[test]
fn key_shared_kind_and_the_out_of_order_per_key_bound() {
    let s = parse(&consumer_with(
        "kind = \"key_shared\"\n[expect]\nout_of_order_per_key = 0\n",
    ))
    .unwrap();
    assert_eq!(
        s.consumers[0].share_config("c-0").mode,
        fathom_queue::share::ShareMode::KeyShared
    );
    let mut report = fathom_history::CheckReport::default();
    let stats = fathom_history::ShareStats {
        out_of_order_per_key: 1,
        ..Default::default()
    };
    report.shares.insert("g".into(), stats);
    let keys: Vec<&str> = s
        .expect
        .violations(&report)
        .iter()
        .map(|v| v.key())
        .collect();
    assert_eq!(keys, ["out_of_order_per_key"]);
    // A plain share group gives key order up: its count is reported, not judged.
    let mut plain = fathom_history::CheckReport::default();
    let stats = fathom_history::ShareStats {
        out_of_order_per_key: 5,
        ..Default::default()
    };
    plain.shares.insert("plain".into(), stats);
    assert!(s.expect.violations(&plain).is_empty());
    let err = parse(&with("[expect]\nout_of_order_per_key = 0\n")).unwrap_err();
    assert!(
        err.to_string().contains("expect.out_of_order_per_key"),
        "{err}"
    );
    let share_only = consumer_with("kind = \"share\"\n[expect]\nout_of_order_per_key = 0\n");
    let err = parse(&share_only).unwrap_err();
    assert!(err.to_string().contains("kind = \"key_shared\""), "{err}");
}

/// Whole partitions per instance cannot feed more instances than partitions, but a share
/// group's members all read every partition: more members than partitions is its use.
#[test]
fn only_a_stream_consumer_needs_a_partition_per_instance() {
    let consumer = |kind: &str| {
        with(&format!(
            "[[consumers]]\nname = \"c\"\ntopic = \"orders\"\ngroup = \"g\"\nkind = \"{kind}\"\ninstances = 4\n"
        ))
    };
    assert_fails(
        &consumer("stream"),
        "consumers[0].instances",
        APPENDED_LINE + 5,
        "4 instances for 3 selected partitions",
    );
    for kind in ["share", "key_shared"] {
        let s = parse(&consumer(kind)).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(s.consumers[0].instances.get(), 4);
    }
}
