//! The `fathom` binary as a user meets it: exit codes, errors on bad input, `check` on
//! hand-made histories.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};

const FATHOM: &str = env!("CARGO_BIN_EXE_fathom");

/// Runs `fathom` with `args` and waits for it.
fn fathom(args: &[&dyn AsRef<OsStr>]) -> Output {
    Command::new(FATHOM).args(args).output().unwrap()
}

/// Asserts that `out` exited with `code` and returns its stdout.
fn exited(out: &Output, code: i32) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stdout}\n{stderr}");
    stdout
}

/// The count `fathom check` prints for anomaly class `name`.
fn class_count(stdout: &str, name: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{stdout}"))
}

/// A scratch directory of this test process for `test`.
fn scratch_dir(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("fathom-cli-{test}-{}", std::process::id()))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Writes `contents` to a file of this test process's own scratch directory.
fn scratch_file(test: &str, name: &str, contents: &str) -> PathBuf {
    let dir = scratch_dir(test);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn check_reports_a_clean_history_as_clean() {
    exited(
        &fathom(&[&"check", &repo("tests/histories/clean.jsonl")]),
        0,
    );
}

#[test]
fn check_finds_lost_and_duplicate_messages_and_exits_1() {
    let out = fathom(&[&"check", &repo("tests/histories/lost-and-duplicate.jsonl")]);
    let stdout = exited(&out, 1);
    assert!(class_count(&stdout, "lost") > 0, "{stdout}");
    assert!(class_count(&stdout, "duplicate") > 0, "{stdout}");
}

/// `fathom check` counts the group classes of a hand-made group history (issue 8).
#[test]
fn check_counts_the_group_classes_of_a_group_history() {
    let out = fathom(&[&"check", &repo("tests/histories/group-anomalies.jsonl")]);
    let stdout = exited(&out, 1);
    assert_eq!(class_count(&stdout, "unprocessed"), 2, "{stdout}");
    assert_eq!(class_count(&stdout, "reprocessed"), 1, "{stdout}");
    assert_eq!(class_count(&stdout, "split_ownership"), 1, "{stdout}");
    assert_eq!(class_count(&stdout, "lost"), 0, "{stdout}");
}

#[test]
fn check_names_the_line_of_a_malformed_history() {
    let bad = scratch_file(
        "history",
        "bad.jsonl",
        "{\"time_ns\":1,\"process\":\"p\",\"type\":\"invoke\",\"f\":\"send\",\"id\":\"a\",\"topic\":\"t\",\"partition\":0}\nnot json\n",
    );
    let out = fathom(&[&"check", &bad]);
    exited(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

#[test]
fn a_bad_scenario_exits_2_naming_field_and_line() {
    let bad = scratch_file(
        "scenario",
        "bad.toml",
        "name = \"bad\"\nduration_s = 1.0\n[cluster]\nbrokers = 3\n[[cluster.topics]]\nname = \"t\"\npartitions = 1\nreplication_factor = 3\n[[producers]]\nname = \"p\"\ntopic = \"t\"\nacks = \"2\"\n",
    );
    let out = fathom(&[&"run", &bad]);
    exited(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("producers[0].acks") && err.contains(":12:"),
        "{err}"
    );
}

#[test]
fn run_writes_history_and_summary_and_passes_quickstart() {
    let dir = scratch_dir("run");
    let quickstart = repo("scenarios/quickstart.toml");
    exited(
        &fathom(&[&"run", &quickstart, &"--seed", &"3", &"--out", &dir]),
        0,
    );
    let summary = json(&dir.join("summary.json"));
    for key in [
        "scenario",
        "seed",
        "trace_hash",
        "sent",
        "acked",
        "read",
        "anomalies",
        "latency_ms",
    ] {
        assert!(summary.get(key).is_some(), "summary.json lacks `{key}`");
    }
    assert_eq!(summary["anomalies"]["replica_divergence"], 0);
    assert!(summary["latency_ms"]["produce"]["p99"].as_f64().unwrap() > 0.0);
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(history.lines().count() > 100);
}

/// The acks=1 leader-crash scenario with `lost = 0`: some seeds of a handful violate it, so a
/// checker that never fires fails the tests that explore it.
fn strict_acks1_scenario(test: &str) -> PathBuf {
    let src = std::fs::read_to_string(repo("scenarios/leader-crash-acks-1.toml")).unwrap();
    assert!(
        src.contains("[expect]"),
        "the scenario has bounds to add to"
    );
    let strict = src.replace("[expect]", "[expect]\nlost = 0");
    scratch_file(test, "acks1-strict.toml", &strict)
}

#[test]
fn explore_lists_violating_seeds_with_a_replay_command() {
    let path = strict_acks1_scenario("explore");
    let out = fathom(&[&"explore", &path, &"--seeds", &"1..9", &"--jobs", &"2"]);
    let stdout = exited(&out, 1);
    assert!(
        stdout.contains("lost") && stdout.contains("--seed"),
        "{stdout}"
    );
}

#[test]
fn explore_stops_after_n_violating_seeds() {
    let path = strict_acks1_scenario("explore-stop");
    let args: [&dyn AsRef<OsStr>; 8] = [
        &"explore",
        &path,
        &"--seeds",
        &"1..60",
        &"--jobs",
        &"1",
        &"--stop-after",
        &"1",
    ];
    let stdout = exited(&fathom(&args), 1);
    assert_eq!(stdout.matches("replay:").count(), 1, "{stdout}");
    assert!(stdout.contains("stopped early"), "{stdout}");
}

#[test]
fn explore_lists_a_seed_over_its_wall_time_and_goes_on() {
    let quickstart = repo("scenarios/quickstart.toml");
    let args: [&dyn AsRef<OsStr>; 8] = [
        &"explore",
        &quickstart,
        &"--seeds",
        &"1..3",
        &"--jobs",
        &"1",
        &"--seed-timeout-s",
        &"0.01",
    ];
    let stdout = exited(&fathom(&args), 1);
    for seed in [1, 2] {
        assert!(
            stdout.contains(&format!("seed {seed}: over the wall-time limit")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("--seed {seed}\n")), "{stdout}");
    }
    assert!(stdout.contains("2 over the wall-time limit"), "{stdout}");
}

/// Shrinking end to end: the acks=1 leader-crash scenario bounded by `lost = 0`, with three
/// faults and a disk fault model (a capacity it never reaches) added that have nothing to do
/// with the loss. Its seed 1 loses writes; `fathom shrink` must cut the schedule to a smaller
/// one that still loses them, switch the disk model off, and the written file must replay that.
#[test]
fn shrink_cuts_a_losing_schedule_to_the_faults_that_matter() {
    let src = std::fs::read_to_string(repo("scenarios/leader-crash-acks-1.toml")).unwrap();
    let noise = r#"[[faults]]
at_s = 1.0
kind = "latency"
between = [["broker-1"], ["clients"]]
latency_ms = [1, 30]
until_s = 2.5

[[faults]]
at_s = 2.0
kind = "hold"
between = [["c-0"], ["brokers"]]
release_after_s = 0.5

[[faults]]
at_s = 11.0
kind = "loss"
between = [["clients"], ["brokers"]]
rate = 0.001
until_s = 12.0

[disk]
capacity_bytes = 1000000000

[expect]
lost = 0"#;
    let path = scratch_file("shrink", "noisy.toml", &src.replace("[expect]", noise));
    let dir = path.parent().unwrap().join("run");
    // Seed 1 must lose writes.
    exited(
        &fathom(&[&"run", &path, &"--seed", &"1", &"--out", &dir]),
        1,
    );

    let stdout = exited(&fathom(&[&"shrink", &dir]), 0);
    assert!(stdout.contains("still violates `lost`"), "{stdout}");
    let shrunk = std::fs::read_to_string(dir.join("shrunk.toml")).unwrap();
    let faults = shrunk.matches("[[faults]]").count();
    assert!((1..=2).contains(&faults), "{faults} faults left:\n{shrunk}");
    assert!(
        stdout.contains("disk fault models capacity_bytes to none"),
        "{stdout}"
    );
    for noise in [
        "kind = \"latency\"",
        "kind = \"hold\"",
        "kind = \"loss\"",
        "capacity_bytes",
    ] {
        assert!(!shrunk.contains(noise), "{noise} kept:\n{shrunk}");
    }

    let replay_dir = path.parent().unwrap().join("replay");
    let replay = fathom(&[&"run", &dir.join("shrunk.toml"), &"--out", &replay_dir]);
    let stdout = exited(&replay, 1);
    assert!(stdout.contains("lost: "), "{stdout}");
}

#[test]
fn shrink_refuses_a_run_that_violates_nothing() {
    let dir = scratch_dir("shrink-clean");
    let quickstart = repo("scenarios/quickstart.toml");
    exited(
        &fathom(&[&"run", &quickstart, &"--seed", &"1", &"--out", &dir]),
        0,
    );
    let out = fathom(&[&"shrink", &dir]);
    exited(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("violates no bound at seed 1"), "{err}");
    assert!(!dir.join("shrunk.toml").exists());
}

#[test]
fn run_writes_a_report_and_trace_tells_a_retried_message_s_life() {
    let dir = scratch_dir("trace");
    let scenario = repo("scenarios/packet-loss.toml");
    exited(
        &fathom(&[&"run", &scenario, &"--seed", &"1", &"--out", &dir]),
        0,
    );
    for file in [
        "report.md",
        "throughput.svg",
        "lag.svg",
        "latency-produce.svg",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("## Anomalies") && report.contains("![throughput.svg]"));
    // A message whose batch took more than one attempt, from the journal.
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let retried: serde_json::Value = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|a| a["attempt"] == 2)
        .expect("packet loss makes some batch retry");
    let id = retried["ids"][0].as_str().unwrap();
    let text = exited(&fathom(&[&"trace", &dir, &id]), 0);
    assert!(text.contains(&format!("message {id}")), "{text}");
    assert!(text.contains("send invoked"), "{text}");
    assert!(text.contains("attempt 1 to broker-"), "{text}");
    assert!(text.contains("attempt 2 to broker-"), "{text}");
    assert!(text.contains("fate: "), "{text}");

    exited(&fathom(&[&"trace", &dir, &"no-such-message"]), 2);
}

#[test]
fn a_bad_experiment_file_exits_2_with_the_reason() {
    let bad = scratch_file(
        "bad-experiment",
        "x.toml",
        "id = \"x\"\nclaim = \"P1\"\ntitle = \"t\"\nquestion = \"q\"\n\
         scenario = \"../../scenarios/quickstart.toml\"\nseeds = [1]\ncolumns = [\"acks_per_minute\"]\n\
         [[axes]]\nname = \"a\"\nparams = [\"producers[0].linger_ms\"]\nvalues = [0, 5]\n",
    );
    let out = fathom(&[&"experiment", &bad]);
    exited(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("acks_per_minute"), "{err}");
}

/// `fathom explore --result` writes the result as JSON; returns the exit code and stdout.
fn explore_to_file(scenario: &PathBuf, extra: &[&str], result: &PathBuf) -> (i32, String) {
    let out = Command::new(FATHOM)
        .arg("explore")
        .arg(scenario)
        .args(["--seeds", "1..7", "--jobs", "2", "--result"])
        .arg(result)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout)
}

fn merge(files: &[&PathBuf], result: Option<&PathBuf>) -> Output {
    let mut command = Command::new(FATHOM);
    command.arg("explore-merge").args(files);
    if let Some(r) = result {
        command.arg("--result").arg(r);
    }
    command.output().unwrap()
}

fn json(path: &PathBuf) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Issue 11 §4: two shards of a seed range, run separately and merged, give the result of one
/// unsharded exploration (its violating seeds with replay commands, its anomaly totals); a
/// merge of overlapping shards is refused and one of an incomplete set names what is missing.
#[test]
fn explore_shards_merge_into_the_unsharded_result() {
    let scenario = strict_acks1_scenario("explore-shard");
    let dir = scenario.parent().unwrap().to_path_buf();
    let (whole, shard0, shard1, merged) = (
        dir.join("whole.json"),
        dir.join("shard-0.json"),
        dir.join("shard-1.json"),
        dir.join("merged.json"),
    );
    let (code, stdout) = explore_to_file(&scenario, &[], &whole);
    assert_eq!(code, 1, "some seed of 1..7 loses writes: {stdout}");
    for (shard, file) in [("0/2", &shard0), ("1/2", &shard1)] {
        let (code, stdout) = explore_to_file(&scenario, &["--shard", shard], file);
        assert!(code == 0 || code == 1, "{stdout}");
    }
    assert_eq!(json(&shard0)["seeds_run"], 3, "seeds 2, 4, 6");
    let out = merge(&[&shard1, &shard0], Some(&merged));
    exited(&out, 1);
    assert_eq!(json(&merged), json(&whole));
    let whole_json = json(&whole);
    let violating = whole_json["violating"].as_array().unwrap();
    assert!(!violating.is_empty());
    assert!(violating[0]["replay"].as_str().unwrap().contains("--seed"));
    assert!(violating[0]["bounds"][0] == "lost", "{whole_json}");

    let overlap = merge(&[&shard0, &shard0], None);
    exited(&overlap, 2);
    assert!(String::from_utf8_lossy(&overlap.stderr).contains("overlap"));
    let partial = merge(&[&shard1], None);
    let stdout = exited(&partial, 2);
    assert!(
        stdout.contains("incomplete: shards 0/2 missing"),
        "{stdout}"
    );
}

#[test]
fn a_bad_shard_exits_2_with_the_reason() {
    let quickstart = repo("scenarios/quickstart.toml");
    let out = fathom(&[
        &"explore",
        &quickstart,
        &"--seeds",
        &"1..3",
        &"--shard",
        &"2/2",
    ]);
    exited(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--shard") && stderr.contains("below 2"),
        "{stderr}"
    );
}

/// `fathom bench-sim` of the quickstart's seed 2 (exploring the quickstart if `extra` asks for
/// an exploration) with the options `extra`.
fn bench_quickstart(extra: &[&str]) -> Output {
    let quickstart = repo("scenarios/quickstart.toml");
    Command::new(FATHOM)
        .args(["bench-sim", "--seed", "2", "--scenario"])
        .arg(&quickstart)
        .arg("--explore-scenario")
        .arg(&quickstart)
        .args(extra)
        .output()
        .unwrap()
}

/// `fathom bench-sim` runs and prints its columns; the figures themselves are never asserted
/// (a benchmark, not a timed test).
#[test]
fn bench_sim_prints_speed_columns_and_seeds_per_hour() {
    let out = bench_quickstart(&["--explore-seeds", "2", "--jobs", "1"]);
    let stdout = exited(&out, 0);
    for column in [
        "simulated_s",
        "cpu_s",
        "sim_per_cpu",
        "events_per_cpu_s",
        "wall_s",
        "seeds per hour",
    ] {
        assert!(stdout.contains(column), "no {column}: {stdout}");
    }
    let row = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("quickstart"))
        .unwrap();
    assert!(row.ends_with("PASS"), "{row}");
}

/// `--also BINARY` runs another build with the same options and merges its figures: given this
/// same binary, every run and exploration comes twice, each marked with its harness, and
/// `--json` prints them in a form the other side parses back.
#[test]
fn bench_sim_also_merges_the_other_builds_figures() {
    let out = bench_quickstart(&[
        "--explore-seeds",
        "1",
        "--jobs",
        "1",
        "--also",
        FATHOM,
        "--json",
    ]);
    let stdout = exited(&out, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let runs = report["runs"].as_array().unwrap();
    let explored = report["explored"].as_array().unwrap();
    assert_eq!((runs.len(), explored.len()), (2, 2), "{stdout}");
    for row in runs.iter().chain(explored) {
        assert_eq!(row["scenario"], "quickstart", "{row}");
        assert!(
            row["harness"].as_str().is_some_and(|h| !h.is_empty()),
            "{row}"
        );
    }
    // The other build got every option: the same build with the same options runs the same
    // seeds, so everything but the timings agrees.
    for key in ["harness", "seed", "simulated_s", "events", "passed"] {
        assert_eq!(runs[0][key], runs[1][key], "{key}: {stdout}");
    }
    assert_eq!(runs[0]["seed"], 2, "{stdout}");
    for key in ["harness", "seeds", "jobs", "findings"] {
        assert_eq!(explored[0][key], explored[1][key], "{key}: {stdout}");
    }
    assert_eq!(explored[0]["seeds"], 1, "{stdout}");
    assert_eq!(explored[0]["jobs"], 1, "{stdout}");
}

/// Without `--json` the merged figures are one table, a harness column first.
#[test]
fn bench_sim_also_prints_one_table_with_a_harness_column() {
    let stdout = exited(&bench_quickstart(&["--also", FATHOM]), 0);
    assert!(stdout.starts_with("harness "), "{stdout}");
    assert_eq!(stdout.matches("harness ").count(), 1, "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("quickstart"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    let harness = |row: &str| row.split_whitespace().next().map(str::to_owned);
    assert_eq!(harness(rows[0]), harness(rows[1]), "{stdout}");
}

#[test]
fn bench_sim_also_with_a_missing_binary_exits_2() {
    let out = bench_quickstart(&["--also", "/nonexistent/fathom"]);
    let stdout = exited(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--also /nonexistent/fathom"), "{stderr}");
    // This build's own figures are printed all the same.
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("quickstart")),
        "{stdout}"
    );
}
