//! The published reports regenerate byte for byte: an experiment run again gives the same
//! README, results and charts as those committed under `reports/`, and the claims index built
//! from the committed results is the committed one.

use std::path::{Path, PathBuf};

use fathom_sim::experiment::{claims, index, render, runner, Experiment};

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
    let judgement = claims::judge(&results);
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
        assert_eq!(
            serde_json::to_value(claims::judge(&results)).unwrap(),
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
            ["confirmed", "refuted", "qualified"].contains(&c.verdict.as_str()),
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
