//! The madsim build of `fathom` (`RUSTFLAGS="--cfg madsim --cfg tokio_unstable"`, its own target
//! dir): one seed run in two **separate processes** gives the same history bytes, and the flag
//! for the other harness is refused with the command that builds it.
#![cfg(madsim)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FATHOM: &str = env!("CARGO_BIN_EXE_fathom");

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn fathom_run(scenario: &Path, seed: u64, harness: &str, out: &Path) -> Output {
    Command::new(FATHOM)
        .arg("run")
        .arg(scenario)
        .args(["--seed", &seed.to_string(), "--harness", harness, "--out"])
        .arg(out)
        .output()
        .expect("fathom runs")
}

#[test]
fn a_seed_replays_byte_for_byte_across_processes_under_madsim() {
    let dir = std::env::temp_dir().join(format!("fathom-madsim-det-{}", std::process::id()));
    // A crash and every disk fault: the model disk's draws must replay too.
    for scenario in [
        "scenarios/leader-crash-acks-all.toml",
        "scenarios/disk-torn-write.toml",
    ] {
        let path = repo(scenario);
        let mut histories = Vec::new();
        for run in ["a", "b"] {
            let out = dir.join(format!("{}-{run}", histories.len()));
            let output = fathom_run(&path, 3, "madsim", &out);
            assert!(
                output.status.code().is_some_and(|c| c <= 1),
                "{scenario}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            histories.push(std::fs::read(out.join("history.jsonl")).expect("history"));
            let _ = std::fs::remove_dir_all(&out);
        }
        assert!(!histories[0].is_empty());
        assert!(histories[0] == histories[1], "{scenario}: histories differ");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_turmoil_flag_points_to_the_normal_build() {
    let out = std::env::temp_dir().join(format!("fathom-madsim-flag-{}", std::process::id()));
    let output = fathom_run(&repo("scenarios/quickstart.toml"), 1, "turmoil", &out);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("normal build"), "{stderr}");
}
