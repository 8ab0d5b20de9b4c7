//! `reports/README.md` and `reports/claims.json`: every claim of the source text with its
//! experiments, finding and verdict, read back from each experiment's `results.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::verdict::{Coverage, Judgement, KeyNumber, Verdict};
use super::ExperimentError;

/// Every claim of `claims.md`, with a short name of our own.
pub const CLAIMS: &[(&str, &str)] = &[
    ("P1", "long-lived connections"),
    ("P2", "TLS and its cost"),
    ("P3", "network latency and bandwidth"),
    ("P4", "send modes"),
    ("P5", "batching"),
    ("P6", "retries and the send journal"),
    ("P7", "several producers"),
    ("B1", "single-node limits: page cache, fsync, disk, NIC"),
    ("B2", "partitions, replicas and brokers"),
    ("C1", "push, pull and long polling"),
    ("C2", "consumer groups and rebalances"),
    ("C3", "partition skew vs message-level consumption"),
    ("C4", "offset commits"),
    ("E1", "end-to-end latency as a sum of parts"),
];

#[derive(Debug, Clone, Serialize)]
pub struct ClaimEntry {
    pub id: String,
    pub name: String,
    /// `confirmed`, `partial`, `refuted`, `qualified`, `inconclusive` or `untested`.
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The main experiment's folder under `reports/`; empty when untested.
    pub experiment: String,
    /// Further experiments on the same claim.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    pub finding: String,
    pub numbers: BTreeMap<String, KeyNumber>,
    /// What the experiments test of the claim, and what none of them tests.
    pub coverage: Coverage,
    /// Rules whose outcome follows from the model's own inputs, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub follows_from_model: Vec<String>,
}

/// The part of `results.json` the index reads.
#[derive(Deserialize)]
struct ResultsHead {
    id: String,
    claim: String,
    judgement: Judgement,
}

/// Reads `reports/*/results.json` and writes the index files.
pub fn write(reports: &Path) -> Result<Vec<ClaimEntry>, ExperimentError> {
    let io = |source| ExperimentError::Io {
        path: reports.to_path_buf(),
        source,
    };
    let mut by_claim: BTreeMap<String, Vec<ResultsHead>> = BTreeMap::new();
    let mut dirs: Vec<_> = std::fs::read_dir(reports)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("results.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let path = dir.join("results.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ExperimentError::Io {
            path: path.clone(),
            source,
        })?;
        let head: ResultsHead =
            serde_json::from_str(&text).map_err(|e| ExperimentError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
        by_claim.entry(head.claim.clone()).or_default().push(head);
    }
    let mut entries = Vec::new();
    for (id, name) in CLAIMS {
        let entry = match by_claim.get(*id) {
            Some(experiments) if !experiments.is_empty() => combine(id, name, experiments),
            _ => ClaimEntry {
                id: id.to_string(),
                name: name.to_string(),
                verdict: "untested".into(),
                condition: None,
                experiment: String::new(),
                also: Vec::new(),
                finding: "Not yet tested: the consumer-side experiments need consumer groups, \
                          rebalances and shared consumption, which come with a later issue."
                    .into(),
                numbers: BTreeMap::new(),
                coverage: Coverage::default(),
                follows_from_model: Vec::new(),
            },
        };
        entries.push(entry);
    }
    let mut json = serde_json::to_string_pretty(&entries).expect("claims serialize");
    json.push('\n');
    std::fs::write(reports.join("claims.json"), json).map_err(io)?;
    std::fs::write(reports.join("README.md"), readme(&entries)).map_err(io)?;
    Ok(entries)
}

/// One claim's entry from its experiments (in folder order). The verdict is the experiments'
/// if they agree; an inconclusive one makes the claim inconclusive; a refutation or a
/// qualification next to a confirmation makes it qualified, with every condition kept; a
/// partial next to a confirmation makes it partial.
fn combine(id: &str, name: &str, experiments: &[ResultsHead]) -> ClaimEntry {
    let mut conditions = Vec::new();
    let mut findings = Vec::new();
    let mut numbers = BTreeMap::new();
    let mut follows = Vec::new();
    let mut coverage = Coverage::default();
    for x in experiments {
        let j = &x.judgement;
        if let Some(c) = &j.condition {
            conditions.push(c.clone());
        }
        if j.verdict == Verdict::Refuted {
            conditions.push(format!("{} refutes part of it", x.id));
        }
        findings.push(j.finding.clone());
        for (k, v) in &j.numbers {
            let key = if experiments.len() > 1 {
                format!("{}: {k}", x.id)
            } else {
                k.clone()
            };
            numbers.insert(key, *v);
        }
        for r in &j.rules {
            if let Some(why) = &r.follows_from_model {
                follows.push(format!("{} ({}): {why}", r.name, x.id));
            }
        }
        coverage.tests.extend(j.coverage.tests.iter().cloned());
        coverage
            .untested
            .extend(j.coverage.untested.iter().cloned());
    }
    let verdicts: Vec<Verdict> = experiments.iter().map(|x| x.judgement.verdict).collect();
    let any = |v: Verdict| verdicts.contains(&v);
    let verdict = if verdicts.iter().all(|v| *v == verdicts[0]) {
        verdicts[0]
    } else if any(Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else if any(Verdict::Refuted) || any(Verdict::Qualified) {
        Verdict::Qualified
    } else {
        Verdict::Partial
    };
    conditions.dedup();
    ClaimEntry {
        id: id.to_string(),
        name: name.to_string(),
        condition: (!conditions.is_empty() && verdict != Verdict::Confirmed)
            .then(|| conditions.join("; ")),
        verdict: verdict.name().to_string(),
        experiment: experiments[0].id.clone(),
        also: experiments[1..].iter().map(|x| x.id.clone()).collect(),
        finding: findings.join(" "),
        numbers,
        coverage,
        follows_from_model: follows,
    }
}

fn readme(entries: &[ClaimEntry]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Reports: the source text's claims, measured\n\n\
         Each numbered claim of the source text (a course chapter on where a message-queue cluster \
         loses performance and data) is put to the test by an experiment: a scenario \
         swept over one or two parameters and several seeds, run in deterministic simulation \
         with the resource model (`scenarios/experiments/`). Every figure is simulated time, so \
         `fathom report` regenerates this folder byte for byte. `claims.json` holds this table \
         as data.\n"
    );
    let _ = writeln!(s, "| Claim | Topic | Verdict | Experiment | Finding |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for e in entries {
        let verdict = match &e.condition {
            Some(c) => format!("**{}** ({c})", e.verdict),
            None => format!("**{}**", e.verdict),
        };
        let experiment = if e.experiment.is_empty() {
            "-".to_string()
        } else {
            let mut links = vec![format!("[{0}]({0}/README.md)", e.experiment)];
            links.extend(e.also.iter().map(|a| format!("[{a}]({a}/README.md)")));
            links.join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            e.id,
            e.name,
            verdict,
            experiment,
            e.finding.replace('\n', " ").replace('|', "\\|")
        );
    }
    let _ = writeln!(s, "\n## Key numbers\n");
    for e in entries.iter().filter(|e| !e.numbers.is_empty()) {
        let nums: Vec<String> = e
            .numbers
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        let _ = writeln!(s, "- **{}**: {}", e.id, nums.join("; "));
    }
    let _ = writeln!(s, "\n## Coverage: what is tested of each claim\n");
    for e in entries.iter().filter(|e| !e.coverage.tests.is_empty()) {
        let _ = writeln!(s, "- **{}** tests {}.", e.id, e.coverage.tests.join("; "));
        if !e.coverage.untested.is_empty() {
            let _ = writeln!(s, "  Not tested: {}.", e.coverage.untested.join("; "));
        }
        for f in &e.follows_from_model {
            let _ = writeln!(s, "  Follows from the model's inputs: {f}");
        }
    }
    s
}
