//! Verdicts: each claim's rule, applied to its experiment's medians.
//!
//! A rule states what the claim predicts in terms of the measured numbers, checks it, and says
//! in a sentence what was found, with the numbers it rests on. The rules are code so that a
//! verdict changes only when the numbers do; the finding text is generated from the numbers.

use std::collections::BTreeMap;

use serde::Serialize;

use super::render::num;
use super::runner::Results;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Confirmed,
    Refuted,
    /// True only under a condition, given in [`Judgement::condition`].
    Qualified,
    /// The experiment could not decide (e.g. a run produced no data).
    Inconclusive,
}

#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    pub finding: String,
    /// The numbers the verdict rests on, by name.
    pub numbers: BTreeMap<String, f64>,
}

impl Judgement {
    pub fn verdict_text(&self) -> String {
        match (&self.verdict, &self.condition) {
            (Verdict::Qualified, Some(c)) => format!("qualified ({c})"),
            (v, _) => serde_json::to_value(v)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        }
    }
}

/// Collects the key numbers while a rule reads them.
struct Notes(BTreeMap<String, f64>);

impl Notes {
    fn new() -> Notes {
        Notes(BTreeMap::new())
    }

    fn take(&mut self, r: &Results, key: &str, labels: &[(&str, &str)], metric: &str) -> f64 {
        let v = r.median(labels, metric);
        self.0.insert(key.to_string(), v);
        v
    }

    fn judge(self, verdict: Verdict, condition: Option<&str>, finding: String) -> Judgement {
        Judgement {
            verdict,
            condition: condition.map(str::to_string),
            finding,
            numbers: self.0,
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// The verdict on `results.claim`.
pub fn judge(r: &Results) -> Judgement {
    match r.claim.as_str() {
        "P1" => p1(r),
        other => Notes::new().judge(
            Verdict::Inconclusive,
            None,
            format!("no rule for claim {other} yet"),
        ),
    }
}

/// P1: long-lived connections beat a connection per send.
fn p1(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let mut all_faster = true;
    let mut parts = Vec::new();
    for l in ["1", "5", "20"] {
        let keep = n.take(
            r,
            &format!("long-lived acks/s at {l} ms"),
            &[("connection", "long-lived"), ("one-way latency (ms)", l)],
            "acked_per_s",
        );
        let per = n.take(
            r,
            &format!("per-send acks/s at {l} ms"),
            &[("connection", "per send"), ("one-way latency (ms)", l)],
            "acked_per_s",
        );
        all_faster &= keep > per * 1.2;
        parts.push(format!("{}× at {l} ms", num(ratio(keep, per))));
    }
    let finding = format!(
        "A sync producer on one long-lived connection completes {} the sends per second of one \
         that connects for every send; the connect's extra round trip roughly halves a sync \
         producer's rate at every distance.",
        parts.join(", ")
    );
    let verdict = if all_faster {
        Verdict::Confirmed
    } else {
        Verdict::Refuted
    };
    n.judge(verdict, None, finding)
}
