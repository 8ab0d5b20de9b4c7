//! `fathom run --harness madsim` in the normal (turmoil) build is refused with the command that
//! builds the madsim harness; the madsim build's own tests are in `madsim_processes.rs`.
#![cfg(not(madsim))]

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_madsim_flag_points_to_the_madsim_build() {
    let scenario =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/quickstart.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_fathom"))
        .arg("run")
        .arg(scenario)
        .args(["--harness", "madsim"])
        .output()
        .expect("fathom runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cfg madsim"), "{stderr}");
    assert!(stderr.contains("target/madsim"), "{stderr}");
}
