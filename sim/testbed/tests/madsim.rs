//! The madsim harness (built with `RUSTFLAGS="--cfg madsim --cfg tokio_unstable"` in its own
//! target dir, see `.ci/run`): the same driver, workload and judging as turmoil's, on madsim's
//! event-driven runtime and Fathom's model disk. Every test here drives a whole scenario.
#![cfg(madsim)]

use std::path::PathBuf;

use fathom_history as history;
use fathom_sim::harness::Harness;
use fathom_sim::run::{self, RunError, RunLimits, RunOutcome};
use fathom_sim::scenario::Scenario;

fn load(file: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(file);
    Scenario::load(&path).expect("scenario parses")
}

fn run_madsim(scenario: &Scenario, seed: u64) -> Result<RunOutcome, RunError> {
    run::run_on(Harness::Madsim, scenario, seed, RunLimits::default())
}

fn history_bytes(o: &RunOutcome) -> Vec<u8> {
    let mut out = Vec::new();
    for e in &o.events {
        out.extend_from_slice(history::to_json_line(e).as_bytes());
        out.push(b'\n');
    }
    out
}

/// Runs the scenario's default seed and fails with every violation if a bound does not hold.
fn assert_passes(file: &str) -> RunOutcome {
    let scenario = load(file);
    let outcome = run_madsim(&scenario, scenario.seed).expect("the run completes");
    assert!(
        outcome.violations.is_empty(),
        "{file} under madsim: {:?}",
        outcome.violations
    );
    outcome
}

#[test]
fn quickstart_meets_its_bounds_under_madsim() {
    let o = assert_passes("quickstart.toml");
    assert_eq!(o.summary.acked, 1500);
}

#[test]
fn a_leader_crash_loses_no_acknowledged_write_under_madsim() {
    let o = assert_passes("leader-crash-acks-all.toml");
    let kinds: Vec<String> = o
        .summary
        .faults
        .iter()
        .map(|f| f.kind.to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "crash"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "restart"), "{kinds:?}");
}

#[test]
fn a_partitioned_leader_acknowledges_nothing_it_loses_under_madsim() {
    let o = assert_passes("partition-heal.toml");
    let kinds: Vec<String> = o
        .summary
        .faults
        .iter()
        .map(|f| f.kind.to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "partition"), "{kinds:?}");
}

/// The model disk through the real path: a power loss tears unsynced tails, which recovery
/// must cut off.
#[test]
fn torn_writes_on_the_model_disk_are_cut_off_by_recovery() {
    let o = assert_passes("disk-torn-write.toml");
    assert!(
        o.summary.recoveries.damaged_logs > 0,
        "a crash tore no log: {:?}",
        o.summary.recoveries
    );
}

#[test]
fn storage_errors_stop_and_restart_brokers_under_madsim() {
    let o = assert_passes("disk-io-errors.toml");
    let failures = o.summary.faults.iter();
    let failures = failures.filter(|f| f.kind.to_string() == "storage_failure");
    assert!(failures.count() > 0, "no EIO was drawn");
}

#[test]
fn a_seed_replays_byte_for_byte_in_one_process_and_another_seed_differs() {
    let scenario = load("leader-crash-acks-all.toml");
    let a = run_madsim(&scenario, 11).unwrap();
    let b = run_madsim(&scenario, 11).unwrap();
    assert_eq!(a.summary.trace_hash, b.summary.trace_hash);
    assert!(history_bytes(&a) == history_bytes(&b), "histories differ");
    let c = run_madsim(&scenario, 12).unwrap();
    assert_ne!(a.summary.trace_hash, c.summary.trace_hash);
}

/// Per-link loss, which madsim lacks, comes from the harness's own link table: a lost segment
/// stalls its stream until the idle timeout, and nothing acknowledged is lost.
#[test]
fn per_link_loss_stalls_streams_and_loses_nothing_under_madsim() {
    let o = assert_passes("packet-loss.toml");
    let kinds: Vec<String> = o
        .summary
        .faults
        .iter()
        .map(|f| f.kind.to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "loss"), "{kinds:?}");
}

#[test]
fn the_turmoil_harness_is_refused_in_the_madsim_build() {
    let err = run::run_on(
        Harness::Turmoil,
        &load("quickstart.toml"),
        1,
        RunLimits::default(),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("normal build"), "{err}");
}

/// Every shipped scenario at its own seed, every fault kind included (`swarm.toml` draws them).
#[test]
fn every_shipped_scenario_meets_its_bounds_under_madsim() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 17, "{files:?}");
    for file in files {
        assert_passes(&file);
    }
}

/// madsim's `sleep_until` waits at least 1 ms even for a passed deadline; before the driver set
/// exact deadlines, the leader of this scenario (a sync every 2 ms, each taking 1 ms) re-armed
/// its sync timer on every request and synced 33 times in 6 s: fsync busy 0.0 where turmoil
/// reports 0.5.
#[test]
fn the_resource_model_books_the_same_disk_time_as_under_turmoil() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios/experiments/base/sync-producer.toml");
    let scenario = Scenario::load(&path).expect("scenario parses");
    let o = run_madsim(&scenario, scenario.seed).expect("the run completes");
    assert!(o.violations.is_empty(), "{:?}", o.violations);
    let summary = serde_json::to_value(&o.summary).expect("summary serializes");
    let utilisation = &summary["metrics"]["utilisation"];
    let leader = utilisation["leader"].as_str().expect("a leader");
    let fsync = utilisation["hosts"][leader]["disk_fsync"]["busy"]
        .as_f64()
        .expect("fsync busy");
    // turmoil: 0.5 (see the README's comparison of the harnesses).
    assert!((fsync - 0.5).abs() < 0.025, "leader fsync busy {fsync}");
    let acked = summary["metrics"]["throughput"]["acked_per_s"].as_f64();
    assert!(acked.is_some_and(|a| (a - 500.0).abs() < 25.0), "{acked:?}");
}

/// A saturated base reaches turmoil's throughput: 12,083 acked/s and the leader's fsync 0.806
/// busy under turmoil (the README's comparison). Over madsim's TCP, whose receiving side waits
/// at least a millisecond per payload, it reached 7,485 and 0.499; `madsim_net`'s own pipes
/// deliver every chunk that has arrived.
#[test]
fn a_saturated_base_reaches_turmoils_throughput() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios/experiments/base/send-modes.toml");
    let scenario = Scenario::load(&path).expect("scenario parses");
    let o = run_madsim(&scenario, scenario.seed).expect("the run completes");
    assert!(o.violations.is_empty(), "{:?}", o.violations);
    let summary = serde_json::to_value(&o.summary).expect("summary serializes");
    let acked = summary["metrics"]["throughput"]["acked_per_s"]
        .as_f64()
        .expect("acked per second");
    assert!(
        (acked - 12_083.0).abs() < 0.02 * 12_083.0,
        "acked/s {acked}"
    );
    let utilisation = &summary["metrics"]["utilisation"];
    let leader = utilisation["leader"].as_str().expect("a leader");
    let fsync = utilisation["hosts"][leader]["disk_fsync"]["busy"]
        .as_f64()
        .expect("fsync busy");
    assert!((fsync - 0.806).abs() < 0.03, "leader fsync busy {fsync}");
}

/// madsim answers every clock with simulated time inside a run; the wall-time limit is kept by
/// the thread that started the run, and the run stops at its next look.
#[test]
fn a_run_over_its_wall_time_limit_is_abandoned() {
    let limits = RunLimits {
        wall: Some(std::time::Duration::from_millis(1)),
    };
    let err = run::run_on(Harness::Madsim, &load("partition-heal.toml"), 1, limits)
        .err()
        .expect("abandoned");
    match err {
        RunError::WallTime { limit, simulated } => {
            assert_eq!(limit, std::time::Duration::from_millis(1));
            assert!(
                simulated < std::time::Duration::from_secs(26),
                "{simulated:?}"
            );
        }
        e => panic!("{e}"),
    }
}

/// swarm.toml without its `[swarm]` draws, plus one `kind` window on broker-2 (`extra`: its
/// other fields) from 3 s to 6.5 s, run under madsim at seed 3 within its bounds: the times
/// (ms) a storage error stopped a broker.
fn storage_stops_in_a_window(kind: &str, extra: &str) -> Vec<u64> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/swarm.toml");
    let base = std::fs::read_to_string(path).expect("swarm.toml");
    let (at, end) = (
        base.find("\n[swarm]").expect("[swarm]"),
        base.find("\n[expect]").expect("[expect]"),
    );
    let window = format!(
        "\n[[faults]]\nat_s = 3.0\nkind = \"{kind}\"\ntarget = \"broker-2\"\n{extra}until_s = 6.5\n"
    );
    let text = format!("{}{window}{}", &base[..at], &base[end..]);
    let scenario = Scenario::from_toml_str(&text, &format!("{kind}.toml")).expect("parses");
    let o = run_madsim(&scenario, 3).expect("the run completes");
    assert!(o.violations.is_empty(), "{:?}", o.violations);
    o.summary
        .faults
        .iter()
        .filter(|f| f.kind == fathom_sim::fault_log::AppliedKind::StorageFailure)
        .map(|f| f.at_ms)
        .collect()
}

/// A `disk_full` fault is applied at the driver's disk seam, so madsim's model disk gets it as
/// turmoil's does: broker-2 stops on ENOSPC only while its disk is full, and nothing is lost.
#[test]
fn a_full_disk_stops_its_broker_under_madsim_too() {
    let stops = storage_stops_in_a_window("disk_full", "");
    assert!(stops.len() >= 3, "stopped at {stops:?}");
    assert!(
        stops.iter().all(|t| (3_000..6_500).contains(t)),
        "{stops:?}"
    );
}

/// A `disk_eio` window under madsim: the same seam, so broker-2 stops on EIO only inside it.
#[test]
fn an_eio_window_stops_its_broker_under_madsim_too() {
    let stops = storage_stops_in_a_window("disk_eio", "rate = 0.3\n");
    assert!(stops.len() >= 3, "stopped at {stops:?}");
    assert!(
        stops.iter().all(|t| (3_000..6_500).contains(t)),
        "{stops:?}"
    );
}
