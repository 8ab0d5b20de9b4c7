//! `--harness madsim` in the normal (turmoil) build is refused, on every command that runs the
//! simulator, with the command that builds the madsim harness; the madsim build's own tests are
//! in `madsim_processes.rs`.
#![cfg(not(madsim))]

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_madsim_flag_points_to_the_madsim_build() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scenario = repo.join("scenarios/quickstart.toml");
    let experiment = repo.join("scenarios/experiments/c3-share.toml");
    let commands: [(&str, Vec<&std::ffi::OsStr>); 4] = [
        ("run", vec![scenario.as_os_str()]),
        (
            "explore",
            vec![scenario.as_os_str(), "--seeds".as_ref(), "1..2".as_ref()],
        ),
        ("experiment", vec![experiment.as_os_str()]),
        ("bench-sim", vec![]),
    ];
    for (command, args) in commands {
        let output = Command::new(env!("CARGO_BIN_EXE_fathom"))
            .arg(command)
            .args(args)
            .args(["--harness", "madsim"])
            .output()
            .expect("fathom runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("--cfg madsim"), "{command}: {stderr}");
        assert!(stderr.contains("target/madsim"), "{command}: {stderr}");
    }
}
