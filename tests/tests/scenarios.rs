//! Every scenario file, run for a few seeds, must stay within its `[expect]` bounds.
//!
//! This is the suite's main guard against lost writes, inconsistent offsets, aborted reads,
//! poll anomalies and replica divergence under each fault the scenarios inject.

use std::path::PathBuf;

use fathom_sim::run;
use fathom_sim::scenario::Scenario;

/// Seeds per scenario in `cargo test`; `fathom explore` runs hundreds.
const SEEDS: [u64; 3] = [1, 2, 3];

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn assert_bounds_hold(file: &str) {
    let scenario = Scenario::load(&scenarios_dir().join(file)).expect("scenario parses");
    for seed in SEEDS {
        let outcome =
            run::run(&scenario, seed).unwrap_or_else(|e| panic!("{file} seed {seed}: {e}"));
        assert!(
            outcome.violations.is_empty(),
            "{file} seed {seed} violated its bounds: {:?}\nexamples: {:?}\nreplay: cargo run --release -- run scenarios/{file} --seed {seed}",
            outcome.violations,
            outcome.report.examples
        );
        assert!(
            outcome.report.acked > 0,
            "{file} seed {seed}: nothing was acknowledged"
        );
    }
}

#[test]
fn quickstart_stays_within_bounds() {
    assert_bounds_hold("quickstart.toml");
}

#[test]
fn leader_crash_with_acks_all_loses_nothing() {
    assert_bounds_hold("leader-crash-acks-all.toml");
}

#[test]
fn leader_crash_with_acks_1_stays_within_bounds() {
    assert_bounds_hold("leader-crash-acks-1.toml");
}

#[test]
fn partition_and_heal_loses_nothing() {
    assert_bounds_hold("partition-heal.toml");
}

#[test]
fn packet_loss_loses_nothing() {
    assert_bounds_hold("packet-loss.toml");
}

#[test]
fn torn_writes_and_power_loss_lose_nothing() {
    assert_bounds_hold("disk-torn-write.toml");
}

#[test]
fn disk_io_errors_stop_and_restart_brokers_without_loss() {
    assert_bounds_hold("disk-io-errors.toml");
}

#[test]
fn every_scenario_file_is_covered_by_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    files.sort();
    let covered = [
        "disk-io-errors.toml",
        "disk-torn-write.toml",
        "idempotent-producer.toml",
        "leader-crash-acks-1.toml",
        "leader-crash-acks-all.toml",
        "packet-loss.toml",
        "partition-heal.toml",
        "quickstart.toml",
    ];
    assert_eq!(
        files, covered,
        "add a test above for each new scenario file"
    );
}

#[test]
fn idempotent_producer_neither_duplicates_nor_reorders_under_faults() {
    assert_bounds_hold("idempotent-producer.toml");
}
