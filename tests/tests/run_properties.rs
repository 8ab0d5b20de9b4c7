//! The properties the simulator judges on every run whatever a scenario's `[expect]` says:
//! liveness after the final heal (`unavailable`).

use fathom_sim::run;
use fathom_sim::scenario::Scenario;
use fathom_sim::violation::Violation;

/// Three brokers, one partition replicated three ways; every broker loses power just before the
/// final heal, so the heal restarts them all and the partition needs an election first.
fn power_loss_before_heal(liveness: &str) -> Scenario {
    let text = format!(
        r#"
name = "power-loss-before-heal"
duration_s = 3.0
settle_s = 2.0
{liveness}

[cluster]
brokers = 3

[[cluster.topics]]
name = "orders"
partitions = 1
replication_factor = 3

[[producers]]
name = "p"
topic = "orders"
acks = "all"
rate_per_s = 100.0
messages = 200

[[faults]]
at_s = 2.9
kind = "power_loss"

[expect]
lost = 0
"#
    );
    Scenario::from_toml_str(&text, "power-loss-before-heal").expect("parses")
}

/// Reference: issue 10 §3, liveness. An election takes at least an election timeout (150 ms
/// and up), so a 20 ms bound cannot hold; the default of 10 s must.
#[test]
fn a_partition_without_a_leader_in_time_is_unavailable() {
    let tight = run::run(&power_loss_before_heal("liveness_s = 0.02"), 1).unwrap();
    let unavailable: Vec<&Violation> = tight
        .violations
        .iter()
        .filter(|v| v.key() == "unavailable")
        .collect();
    assert!(
        matches!(unavailable.as_slice(), [Violation::Unavailable { partitions, .. }] if partitions == &["orders-0"]),
        "{:?}",
        tight.violations
    );

    let default = run::run(&power_loss_before_heal(""), 1).unwrap();
    assert!(default.violations.is_empty(), "{:?}", default.violations);
}
