//! The published reports regenerate byte for byte: an experiment run again gives the same
//! README, results and charts as those committed under `reports/`, and the claims index built
//! from the committed results is the committed one.

use std::path::{Path, PathBuf};

use fathom_sim::experiment::verdict::{self, Verdict};
use fathom_sim::experiment::{index, render, runner, Experiment};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_same_files(expected: &Path, actual: &Path) {
    let list = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let names = list(expected);
    assert_eq!(
        names,
        list(actual),
        "the regenerated files are not the committed ones"
    );
    assert!(!names.is_empty(), "{} is empty", expected.display());
    for name in names {
        let want = std::fs::read(expected.join(&name)).unwrap();
        let got = std::fs::read(actual.join(&name))
            .unwrap_or_else(|e| panic!("{:?} was not regenerated: {e}", name));
        assert!(
            want == got,
            "{:?} differs from the committed {}; regenerate with `fathom report` and look at why",
            name,
            expected.join(&name).display()
        );
    }
}

#[test]
fn an_experiment_regenerates_its_report_byte_for_byte() {
    let e = Experiment::load(&repo("scenarios/experiments/e1-breakdown.toml")).unwrap();
    let results = runner::run_all(&e, 2, &|| {}).unwrap();
    let judgement = verdict::judge(&e, &results);
    let out = scratch("e1-breakdown");
    render::write(&out, &e, &results, &judgement).unwrap();
    assert_same_files(&repo("reports/e1-breakdown"), &out);
}

#[test]
fn the_claims_index_regenerates_from_the_committed_results() {
    let out = scratch("index");
    for entry in std::fs::read_dir(repo("reports")).unwrap() {
        let dir = entry.unwrap().path();
        let results = dir.join("results.json");
        if results.is_file() {
            let to = out.join(dir.file_name().unwrap());
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(&results, to.join("results.json")).unwrap();
        }
    }
    let entries = index::write(&out).unwrap();
    // Each committed verdict is what today's rule says about the committed numbers.
    for entry in std::fs::read_dir(repo("reports")).unwrap() {
        let path = entry.unwrap().path().join("results.json");
        if !path.is_file() {
            continue;
        }
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let results: runner::Results = serde_json::from_value(file.clone()).unwrap();
        let e =
            Experiment::load(&repo(&format!("scenarios/experiments/{}.toml", results.id))).unwrap();
        assert_eq!(
            serde_json::to_value(verdict::judge(&e, &results)).unwrap(),
            file["judgement"],
            "{}: the verdict rule changed; regenerate with `fathom report`",
            path.display()
        );
    }
    for file in ["README.md", "claims.json"] {
        assert_eq!(
            std::fs::read_to_string(repo("reports").join(file)).unwrap(),
            std::fs::read_to_string(out.join(file)).unwrap(),
            "reports/{file} is stale"
        );
    }
    // Every claim the issue names carries a verdict backed by numbers.
    for id in ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "B1", "B2", "E1"] {
        let c = entries.iter().find(|c| c.id == id).unwrap();
        assert!(
            ["confirmed", "partial", "refuted", "qualified"].contains(&c.verdict.as_str()),
            "{id}: {}",
            c.verdict
        );
        assert!(!c.numbers.is_empty(), "{id} has no numbers");
        assert!(repo("reports")
            .join(&c.experiment)
            .join("README.md")
            .is_file());
    }
}

#[test]
fn every_experiment_loads_and_has_a_committed_report() {
    let files = fathom_sim::experiment::files_in(&repo("scenarios/experiments")).unwrap();
    assert!(files.len() >= 10);
    for f in files {
        let e = Experiment::load(&f).unwrap_or_else(|err| panic!("{err}"));
        assert!(
            index::CLAIMS.iter().any(|(id, _)| *id == e.claim),
            "{}: unknown claim {}",
            f.display(),
            e.claim
        );
        let committed = repo("reports").join(&e.id).join("results.json");
        assert!(
            committed.is_file(),
            "{} has no report; run `fathom report`",
            e.id
        );
    }
}

/// Writes a copy of e1-breakdown with `from` replaced by `to` next to its base scenario, and
/// loads it.
fn load_edited(test: &str, from: &str, to: &str) -> Result<Experiment, String> {
    let text = std::fs::read_to_string(repo("scenarios/experiments/e1-breakdown.toml")).unwrap();
    assert!(text.contains(from), "e1-breakdown.toml has no {from:?}");
    let dir = scratch(test);
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::copy(
        repo("scenarios/experiments/base/e2e.toml"),
        dir.join("base/e2e.toml"),
    )
    .unwrap();
    let path = dir.join("e1-breakdown.toml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    Experiment::load(&path).map_err(|e| e.to_string())
}

#[test]
fn a_verdict_naming_a_missing_metric_label_axis_or_value_fails_at_load() {
    load_edited("unchanged", "", "").expect("the unedited copy loads");
    let cases = [
        (
            "metric = \"e1_client_wait_ms\"",
            "metric = \"e1_client_wiat_ms\"",
            "unknown metric \"e1_client_wiat_ms\"",
        ),
        (
            "wait20 = { metric = \"e1_client_wait_ms\", at = { \"linger (ms)\" = \"20\"",
            "wait20 = { metric = \"e1_client_wait_ms\", at = { \"linger (ms)\" = \"25\"",
            "has no label \"25\"",
        ),
        (
            "at = { \"linger (ms)\" = \"0\", ",
            "at = { \"linger\" = \"0\", ",
            "no axis \"linger\"",
        ),
        (
            "check = \"wait20 > wait0 + 5\"",
            "check = \"wait20 > wiat0 + 5\"",
            "no value \"wiat0\"",
        ),
        ("{append} ms", "{apend} ms", "{apend}"),
        (
            "columns = [\"e2e_p50_ms\"",
            "columns = [\"e2e_p5O_ms\"",
            "unknown metric",
        ),
        (
            "gap = { metric = \"e1_parts_gap_ms\" }",
            "gap = { metric = \"e1_parts_gap_ms\", stat = \"median\" }",
            "judged on the worst seed",
        ),
        (
            "gap = { metric = \"e1_parts_gap_ms\" }",
            "gap = { metric = \"e1_parts_gap_ms\", stat = { seeds_over = 1.0 }, at = { \"linger (ms)\" = \"0\", \"one-way latency (ms)\" = \"1\" } }",
            "or by the seeds with any (stat = { seeds_over = 0.0 })",
        ),
        (
            "gap = { metric = \"e1_parts_gap_ms\" }",
            "gap = { metric = \"e1_parts_gap_ms\", stat = { seeds_over = 0.0 } }",
            "seeds_over counts the seeds of one point: give its `at`",
        ),
        (
            "wait20 = { metric = \"e1_client_wait_ms\", ",
            "wait20 = { metric = \"e1_client_wait_ms\", stat = { seeds_over = inf }, ",
            "seeds_over inf is not a finite number",
        ),
        (
            "y_label = \"ms\"",
            "y_label = \"ms\"\nbounds = [{ label = \"b\", y = 1.0, slope = 2.0 }]",
            "give exactly one of y, slope, inverse",
        ),
        (
            "y_label = \"ms\"",
            "y_label = \"ms\"\nbounds = [{ label = \"b\", inverse = 2.0 }]",
            "only a sweep has a numeric x axis",
        ),
    ];
    for (from, to, error) in cases {
        let err = load_edited("edited", from, to).expect_err(to);
        assert!(err.contains(error), "{to}: {err}");
    }
}

#[test]
fn a_fault_experiment_needs_twenty_seeds() {
    let faults = "\nfaults = [{ at_s = 1.0, kind = \"crash\", target = \"broker-1\", restart_after_s = 1.0 }]\n";
    let err = load_edited(
        "faults",
        "values = [[1, 1], [5, 5]]\nlabels = [\"1\", \"5\"]",
        &format!(
            "values = [[1, 1], [5, 5]]\nlabels = [\"1\", \"5\"]\nextra = [{{}}, {{{}}}]",
            faults.trim().replace('\n', "")
        ),
    )
    .expect_err("3 seeds with a fault");
    assert!(err.contains("at least 20 seeds"), "{err}");
}

#[test]
fn results_that_lack_a_point_a_rule_names_are_inconclusive() {
    let e = Experiment::load(&repo("scenarios/experiments/e1-breakdown.toml")).unwrap();
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("reports/e1-breakdown/results.json")).unwrap(),
    )
    .unwrap();
    let mut results: runner::Results = serde_json::from_value(file).unwrap();
    assert_ne!(verdict::judge(&e, &results).verdict, Verdict::Inconclusive);
    results
        .points
        .retain(|p| p.label("one-way latency (ms)") != "5");
    let j = verdict::judge(&e, &results);
    assert_eq!(j.verdict, Verdict::Inconclusive);
    assert!(j.finding.contains("net5"), "{}", j.finding);
}
