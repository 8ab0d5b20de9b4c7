//! A producer's `hot_key_share` (claim C3's hot-key variant): that share of its messages goes to
//! partition 0, the rest where the partitioner says, and a share of 0 changes nothing at all.

use std::collections::BTreeMap;

use fathom_history::{EventType, Op};
use fathom_sim::run::{self, RunOutcome};
use fathom_sim::scenario::Scenario;
use fathom_workload::spec::HOT_KEY_PARTITION;

/// 200 acks=all messages round robin over 4 partitions, with `hot_key` added to the producer.
fn run_with(hot_key: &str) -> RunOutcome {
    let text = format!(
        r#"
name = "hot-key"
duration_s = 3.0
settle_s = 2.0

[cluster]
brokers = 3

[[cluster.topics]]
name = "orders"
partitions = 4
replication_factor = 3

[[producers]]
name = "p"
topic = "orders"
acks = "all"
rate_per_s = 100.0
messages = 200
{hot_key}

[expect]
lost = 0
"#
    );
    let scenario = Scenario::from_toml_str(&text, "hot-key").expect("parses");
    run::run(&scenario, 1).expect("runs")
}

/// Acknowledged sends per partition.
fn acked_per_partition(o: &RunOutcome) -> BTreeMap<u32, u64> {
    let mut per = BTreeMap::new();
    for e in &o.events {
        if let (Op::Send { partition, .. }, EventType::Ok) = (&e.op, e.kind) {
            *per.entry(*partition).or_default() += 1;
        }
    }
    per
}

#[test]
fn half_the_messages_go_to_the_hot_partition_and_the_rest_round_robin() {
    let hot = run_with("hot_key_share = 0.5");
    assert!(hot.violations.is_empty(), "{:?}", hot.violations);
    let per = acked_per_partition(&hot);
    assert_eq!(per.values().sum::<u64>(), 200, "{per:?}");
    // 100 hot, and the other 100 round robin: 25 each, partition 0 included.
    assert_eq!(per[&HOT_KEY_PARTITION], 125, "{per:?}");
    for p in 1..4 {
        assert_eq!(per[&p], 25, "{per:?}");
    }
}

#[test]
fn a_hot_key_share_of_zero_leaves_the_run_as_it_was() {
    let without = run_with("");
    let zero = run_with("hot_key_share = 0.0");
    assert_eq!(without.summary.trace_hash, zero.summary.trace_hash);
    let per = acked_per_partition(&zero);
    assert!(per.values().all(|&n| n == 50), "{per:?}");
}
