//! Same seed, same binary: the same history byte for byte and the same trace hash. A different
//! seed gives a different run.

use std::path::PathBuf;

use fathom_history as history;
use fathom_sim::run::{self, RunOutcome};
use fathom_sim::scenario::Scenario;

fn load(file: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file);
    Scenario::load(&path).expect("scenario parses")
}

fn history_bytes(o: &RunOutcome) -> Vec<u8> {
    let mut out = Vec::new();
    for e in &o.events {
        out.extend_from_slice(history::to_json_line(e).as_bytes());
        out.push(b'\n');
    }
    out
}

fn assert_replays(file: &str, seed: u64) {
    let scenario = load(file);
    let a = run::run(&scenario, seed).unwrap();
    let b = run::run(&scenario, seed).unwrap();
    assert_eq!(
        a.summary.trace_hash, b.summary.trace_hash,
        "{file} seed {seed}"
    );
    assert!(
        history_bytes(&a) == history_bytes(&b),
        "{file} seed {seed}: histories differ"
    );
    assert_eq!(
        serde_json::to_string(&a.summary).unwrap(),
        serde_json::to_string(&b.summary).unwrap()
    );
    let c = run::run(&scenario, seed + 1).unwrap();
    assert_ne!(
        a.summary.trace_hash,
        c.summary.trace_hash,
        "{file}: seeds {seed} and {} gave the same trace",
        seed + 1
    );
}

#[test]
fn quickstart_replays_byte_for_byte() {
    assert_replays("quickstart.toml", 7);
}

#[test]
fn leader_crash_replays_byte_for_byte() {
    assert_replays("leader-crash-acks-all.toml", 11);
}

#[test]
fn torn_write_crash_replays_byte_for_byte() {
    assert_replays("disk-torn-write.toml", 5);
}
