//! Same seed, same binary, **separate processes**: the same history bytes and trace hash.
//!
//! An in-process comparison cannot see an order that is fixed within a process but differs
//! between processes, such as turmoil's `read_dir`, which comes from a `HashSet` with a
//! per-process random state. With read faults on, the order of reads decides which file draws a
//! fault, so these tests turn every disk fault on and run each seed in two processes.

use std::path::{Path, PathBuf};
use std::process::Command;

const FATHOM: &str = env!("CARGO_BIN_EXE_fathom");

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Runs `scenario` with `seed` in a new process and returns its history bytes and trace hash.
fn run_in_process(scenario: &Path, seed: u64, out: &Path) -> (Vec<u8>, String) {
    let status = Command::new(FATHOM)
        .arg("run")
        .arg(scenario)
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(out)
        .output()
        .expect("fathom runs");
    assert!(
        status.status.code().is_some_and(|c| c <= 1),
        "fathom run failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let history = std::fs::read(out.join("history.jsonl")).expect("history written");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary written"))
            .expect("summary parses");
    let hash = summary["trace_hash"]
        .as_str()
        .expect("trace hash")
        .to_string();
    (history, hash)
}

fn assert_replays_across_processes(scenario: &str, seeds: &[u64]) {
    // One directory per test: the tests of this file run at once in one process.
    let path = repo(scenario);
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scenario");
    let dir =
        std::env::temp_dir().join(format!("fathom-determinism-{stem}-{}", std::process::id()));
    for &seed in seeds {
        let a = run_in_process(&path, seed, &dir.join(format!("{seed}-a")));
        let b = run_in_process(&path, seed, &dir.join(format!("{seed}-b")));
        assert_eq!(a.1, b.1, "{scenario} seed {seed}: trace hashes differ");
        assert!(a.0 == b.0, "{scenario} seed {seed}: histories differ");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_disk_fault_replays_in_another_process() {
    assert_replays_across_processes("tests/fixtures/disk-all-faults.toml", &[1, 2, 3]);
}

#[test]
fn torn_writes_and_eio_replay_in_another_process() {
    assert_replays_across_processes("scenarios/disk-io-errors.toml", &[1]);
}
