//! Verdicts: what an experiment's claim predicts, in measured terms, declared in the experiment
//! file and checked when the file loads.
//!
//! ```toml
//! [verdict.values]
//! keep = { metric = "acked_per_s", at = { connection = "long-lived" } }
//! per = { metric = "acked_per_s", at = { connection = "per send" } }
//! lost = { metric = "lost" }                     # no `at`: every run of every point
//!
//! [[verdict.rules]]
//! name = "long-lived connections are faster"
//! check = "keep > 1.2 * per"
//!
//! [verdict]
//! finding = "... {keep} vs {per} sends/s over {seeds} seeds, {scenario:producers[0].rate_per_s} offered ..."
//! ```
//!
//! A value is a metric at one point (every axis named) summarised over seeds: the median for a
//! measurement, the worst seed for a safety count ([`Judged::WorstSeed`]; a median there would
//! hide a loss on one seed, so it is refused). Rules compare values; `outcomes` map rules that
//! hold (or, with a leading `!`, fail) to a verdict, first match wins; without outcomes the
//! claim is confirmed when every rule holds and refuted otherwise. The finding's numbers are
//! placeholders filled from the results, its setup facts placeholders filled from the scenario.
//! A confirmation of an experiment whose [`Coverage`] leaves part of the claim untested is
//! [`Verdict::Partial`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::format::num;
use super::metric::{Judged, Metric};
use super::runner::Results;
use super::{stats, Experiment};
use crate::metrics::round3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Confirmed,
    /// Confirmed for the parts of the claim the experiment tests; others are untested
    /// ([`Judgement::coverage`]).
    Partial,
    Refuted,
    /// True only under a condition, given in [`Judgement::condition`].
    Qualified,
    /// The experiment could not decide (e.g. the results lack a point the rule names).
    Inconclusive,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Partial => "partial",
            Verdict::Refuted => "refuted",
            Verdict::Qualified => "qualified",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The `[verdict]` section of an experiment file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictSpec {
    /// Named values read from the results.
    #[serde(default)]
    pub values: BTreeMap<String, ValueSpec>,
    pub rules: Vec<Rule>,
    /// Verdicts other than "confirmed if every rule holds", first match wins.
    #[serde(default)]
    pub outcomes: Vec<Outcome>,
    /// What was found, with `{value}`, `{seeds}` and `{scenario:dotted.path}` placeholders.
    pub finding: String,
}

/// Which parts of the claim an experiment tests and which it leaves untested.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    pub tests: Vec<String>,
    #[serde(default)]
    pub untested: Vec<String>,
}

/// A value: a metric at a point (`metric`, `at`, `stat`), or a `ratio`, `difference` or `sum`
/// of two measured values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSpec {
    pub metric: Option<Metric>,
    /// Axis name → label, naming every axis; empty: every run of every point.
    #[serde(default)]
    pub at: BTreeMap<String, String>,
    pub stat: Option<Stat>,
    pub ratio: Option<[String; 2]>,
    pub difference: Option<[String; 2]>,
    pub sum: Option<[String; 2]>,
}

/// How a derived value combines its two operands.
type Combine = fn(f64, f64) -> f64;

impl ValueSpec {
    /// The two operands and the operation of a derived value.
    fn derived(&self) -> Option<(&[String; 2], Combine)> {
        fn ratio(a: f64, b: f64) -> f64 {
            if b == 0.0 {
                f64::NAN
            } else {
                a / b
            }
        }
        let forms: [(&Option<[String; 2]>, Combine); 3] = [
            (&self.ratio, ratio),
            (&self.difference, |a, b| a - b),
            (&self.sum, |a, b| a + b),
        ];
        forms
            .into_iter()
            .find_map(|(pair, f)| pair.as_ref().map(|p| (p, f)))
    }

    fn derived_forms(&self) -> usize {
        [&self.ratio, &self.difference, &self.sum]
            .iter()
            .filter(|f| f.is_some())
            .count()
    }
}

/// How a value summarises the seeds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    Median,
    /// The worst seed.
    Max,
    Min,
    /// How many seeds of one point measured more than this (`stat = { seeds_over = 10.0 }`):
    /// a finding's "in 9 of the 20 seeds" comes from the results, not from the text. A seed
    /// that lacks the metric is not counted, as with every statistic here.
    SeedsOver(f64),
}

impl Stat {
    /// The statistic's part of a key number's name. The threshold is printed exactly (not
    /// rounded as [`num`] does), so two thresholds never share a name.
    fn describe(self) -> String {
        match self {
            Stat::Median => "median".into(),
            Stat::Max => "worst seed".into(),
            Stat::Min => "best seed".into(),
            Stat::SeedsOver(x) => format!("seeds over {x}"),
        }
    }

    /// The statistic is a count of seeds, printed whole.
    fn is_count(self) -> bool {
        matches!(self, Stat::SeedsOver(_))
    }

    /// Summarises `xs`, sorted ascending and not empty.
    fn of(self, xs: &[f64]) -> f64 {
        match self {
            Stat::Median => round3(stats::median(xs)),
            Stat::Max => xs[xs.len() - 1],
            Stat::Min => xs[0],
            Stat::SeedsOver(t) => xs.iter().filter(|&&x| x > t).count() as f64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub check: Check,
    /// Set when the outcome follows from the model's own inputs rather than from an emergent
    /// behaviour: why. The report says so next to the verdict.
    pub follows_from_model: Option<String>,
}

/// `left op [times *] right [+ plus]`, e.g. `keep > 1.2 * per`, `lost == 0`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Check {
    pub text: String,
    left: String,
    op: Op,
    times: f64,
    right: Term,
    plus: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    Equal,
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Value(String),
    Number(f64),
}

impl TryFrom<String> for Check {
    type Error = String;

    fn try_from(text: String) -> Result<Check, String> {
        let bad = || {
            format!(
                "check {text:?}: expected `value OP [number *] value-or-number [+ number]` \
                 with OP one of > >= < <= =="
            )
        };
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let [left, op, rest @ ..] = tokens.as_slice() else {
            return Err(bad());
        };
        let op = match *op {
            ">" => Op::Greater,
            ">=" => Op::GreaterEqual,
            "<" => Op::Less,
            "<=" => Op::LessEqual,
            "==" => Op::Equal,
            _ => return Err(bad()),
        };
        let number = |s: &str| s.parse::<f64>().map_err(|_| bad());
        let term = |s: &str| match s.parse::<f64>() {
            Ok(x) => Term::Number(x),
            Err(_) => Term::Value(s.to_string()),
        };
        let (times, right, plus) = match rest {
            [r] => (1.0, term(r), 0.0),
            [k, "*", r] => (number(k)?, term(r), 0.0),
            [r, sign @ ("+" | "-"), c] => (1.0, term(r), signed(sign, number(c)?)),
            [k, "*", r, sign @ ("+" | "-"), c] => (number(k)?, term(r), signed(sign, number(c)?)),
            _ => return Err(bad()),
        };
        if left.parse::<f64>().is_ok() {
            return Err(bad());
        }
        Ok(Check {
            left: left.to_string(),
            op,
            times,
            right,
            plus,
            text,
        })
    }
}

fn signed(sign: &str, x: f64) -> f64 {
    if sign == "-" {
        -x
    } else {
        x
    }
}

impl Check {
    fn names(&self) -> Vec<&str> {
        let mut names = vec![self.left.as_str()];
        if let Term::Value(v) = &self.right {
            names.push(v);
        }
        names
    }

    /// Whether the check holds; a value that could not be computed makes it fail.
    fn holds(&self, values: &BTreeMap<String, f64>) -> bool {
        let get = |name: &str| values.get(name).copied().unwrap_or(f64::NAN);
        let left = get(&self.left);
        let right = match &self.right {
            Term::Value(v) => get(v),
            Term::Number(x) => *x,
        } * self.times
            + self.plus;
        match self.op {
            Op::Greater => left > right,
            Op::GreaterEqual => left >= right,
            Op::Less => left < right,
            Op::LessEqual => left <= right,
            Op::Equal => left == right,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Rule names that must hold; `!name`: must not hold.
    pub when: Vec<String>,
    /// For `qualified`: the condition under which the claim holds.
    pub condition: Option<String>,
}

/// A number a verdict rests on: a measurement, or a count of seeds, which is whole and prints
/// so (`9`, not `9.00`; in JSON an integer, which is how it reads back as a count).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyNumber {
    Count(u64),
    Value(f64),
}

impl KeyNumber {
    pub fn value(self) -> f64 {
        match self {
            KeyNumber::Count(n) => n as f64,
            KeyNumber::Value(x) => x,
        }
    }
}

impl std::fmt::Display for KeyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyNumber::Count(n) => write!(f, "{n}"),
            KeyNumber::Value(x) => f.write_str(&num(*x)),
        }
    }
}

/// An experiment's verdict on its claim, with what it rests on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    pub finding: String,
    /// The measured values the verdict rests on, described by metric, statistic and point.
    pub numbers: BTreeMap<String, KeyNumber>,
    pub rules: Vec<RuleResult>,
    pub coverage: Coverage,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleResult {
    pub name: String,
    pub check: String,
    pub holds: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follows_from_model: Option<String>,
}

impl Judgement {
    pub fn verdict_text(&self) -> String {
        match &self.condition {
            Some(c) if matches!(self.verdict, Verdict::Qualified | Verdict::Partial) => {
                format!("{} ({c})", self.verdict.name())
            }
            _ => self.verdict.name().to_string(),
        }
    }
}

impl VerdictSpec {
    /// Everything a rule names exists: values, metrics, axes and labels, rules, placeholders.
    pub fn check(&self, e: &Experiment) -> Result<(), String> {
        for (name, v) in &self.values {
            self.check_value(e, name, v)
                .map_err(|m| format!("verdict value {name:?}: {m}"))?;
        }
        if self.rules.is_empty() {
            return Err("verdict: at least one rule".into());
        }
        for r in &self.rules {
            for n in r.check.names() {
                if !self.values.contains_key(n) {
                    return Err(format!("verdict rule {:?}: no value {n:?}", r.name));
                }
            }
        }
        for o in &self.outcomes {
            for w in &o.when {
                let name = w.strip_prefix('!').unwrap_or(w);
                if !self.rules.iter().any(|r| r.name == name) {
                    return Err(format!("verdict outcome: no rule {name:?}"));
                }
            }
            match (o.verdict, &o.condition) {
                (Verdict::Qualified, None) => {
                    return Err("verdict outcome: a qualified verdict states its condition".into())
                }
                (Verdict::Partial | Verdict::Inconclusive, _) => {
                    return Err(
                        "verdict outcome: partial and inconclusive are not chosen by \
                                rules (coverage and missing points decide them)"
                            .into(),
                    )
                }
                _ => {}
            }
        }
        for p in placeholders(&self.finding) {
            self.placeholder(e, p)
                .map_err(|m| format!("verdict finding {{{p}}}: {m}"))?;
        }
        Ok(())
    }

    fn check_value(&self, e: &Experiment, name: &str, v: &ValueSpec) -> Result<(), String> {
        match (v.metric, v.derived()) {
            (Some(metric), None) if v.derived_forms() == 0 => {
                if !v.at.is_empty() {
                    check_point(e, &v.at)?;
                }
                if let Some(Stat::SeedsOver(t)) = v.stat {
                    check_seeds_over(e, v, t)?;
                }
                // Only the worst seed, or the number of seeds with any at all, hides no
                // seed's loss: a median would, and so would a count over a threshold above 0.
                let worst_or_any = matches!(v.stat, None | Some(Stat::Max))
                    || v.stat == Some(Stat::SeedsOver(0.0));
                if metric.judged() == Judged::WorstSeed && !worst_or_any {
                    return Err(format!(
                        "{metric} is a safety count: it is judged on the worst seed (stat = \"max\") \
                         or by the seeds with any (stat = {{ seeds_over = 0.0 }})"
                    ));
                }
                Ok(())
            }
            (None, Some((pair, _))) if v.derived_forms() == 1 => {
                for n in pair {
                    let measured = self.values.get(n).is_some_and(|x| x.metric.is_some());
                    if !measured || n == name {
                        return Err(format!("{n:?} is not a measured value"));
                    }
                }
                if !v.at.is_empty() || v.stat.is_some() {
                    return Err("`at` and `stat` belong to a measured value".into());
                }
                Ok(())
            }
            _ => Err("give `metric` (with `at`), or one of `ratio`, `difference`, `sum`".into()),
        }
    }

    fn placeholder(&self, e: &Experiment, p: &str) -> Result<String, String> {
        if p == "seeds" {
            return Ok(e.seeds.len().to_string());
        }
        if let Some(path) = p.strip_prefix("scenario:") {
            let tree: toml::Table = toml::from_str(&e.base_text).map_err(|x| x.to_string())?;
            return super::get(&tree, path).map(|v| match v {
                toml::Value::Float(x) => num(*x),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        if self.values.contains_key(p) {
            return Ok(String::new());
        }
        Err("not a value, `seeds` or `scenario:PATH`".into())
    }
}

/// `at` names every axis, each with one of its labels.
/// A count of seeds over `t` needs a finite threshold and one point: over every point it
/// would count runs of different settings as if they were seeds of one.
fn check_seeds_over(e: &Experiment, v: &ValueSpec, t: f64) -> Result<(), String> {
    if !t.is_finite() {
        return Err(format!("seeds_over {t} is not a finite number"));
    }
    if v.at.is_empty() && !e.axes.is_empty() {
        return Err("seeds_over counts the seeds of one point: give its `at`".into());
    }
    Ok(())
}

fn check_point(e: &Experiment, at: &BTreeMap<String, String>) -> Result<(), String> {
    for (axis, label) in at {
        let Some(a) = e.axes.iter().find(|a| &a.name == axis) else {
            return Err(format!("no axis {axis:?}"));
        };
        if !(0..a.values.len()).any(|i| a.label(i) == *label) {
            return Err(format!("axis {axis:?} has no label {label:?}"));
        }
    }
    for a in &e.axes {
        if !at.contains_key(&a.name) {
            return Err(format!("`at` names no label of axis {:?}", a.name));
        }
    }
    Ok(())
}

/// The `{...}` placeholders of a template, in order.
fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
}

/// The experiment's verdict on its claim from its results.
pub fn judge(e: &Experiment, r: &Results) -> Judgement {
    let spec = &e.verdict;
    let mut values = BTreeMap::new();
    let mut numbers = BTreeMap::new();
    let mut missing = Vec::new();
    for (name, v) in spec.values.iter().filter(|(_, v)| v.metric.is_some()) {
        match measure(r, v) {
            Some((key, x)) => {
                numbers.insert(key, x);
                values.insert(name.clone(), x.value());
            }
            None => missing.push(name.clone()),
        }
    }
    for (name, v) in &spec.values {
        let Some(([a, b], f)) = v.derived() else {
            continue;
        };
        if let (Some(a), Some(b)) = (values.get(a), values.get(b)) {
            let x = round3(f(*a, *b));
            values.insert(name.clone(), x);
        }
    }
    let coverage = e.coverage.clone();
    if !missing.is_empty() {
        return Judgement {
            verdict: Verdict::Inconclusive,
            condition: None,
            finding: format!(
                "the results lack the values {}: a point or a metric is missing",
                missing.join(", ")
            ),
            numbers,
            rules: Vec::new(),
            coverage,
        };
    }
    let rules: Vec<RuleResult> = spec
        .rules
        .iter()
        .map(|rule| RuleResult {
            name: rule.name.clone(),
            check: rule.check.text.clone(),
            holds: rule.check.holds(&values),
            follows_from_model: rule.follows_from_model.clone(),
        })
        .collect();
    let holds = |name: &str| rules.iter().any(|r| r.name == name && r.holds);
    let (mut verdict, mut condition) = if spec.outcomes.is_empty() {
        let all = rules.iter().all(|r| r.holds);
        (
            if all {
                Verdict::Confirmed
            } else {
                Verdict::Refuted
            },
            None,
        )
    } else {
        spec.outcomes
            .iter()
            .find(|o| {
                o.when.iter().all(|w| match w.strip_prefix('!') {
                    Some(name) => !holds(name),
                    None => holds(w),
                })
            })
            .map(|o| (o.verdict, o.condition.clone()))
            .unwrap_or((Verdict::Refuted, None))
    };
    // Partial coverage is never a full confirmation, and a condition names what is untested.
    if !coverage.untested.is_empty() && verdict != Verdict::Refuted {
        let untested = format!("untested: {}", coverage.untested.join("; "));
        if verdict == Verdict::Confirmed {
            verdict = Verdict::Partial;
        }
        condition = Some(match condition {
            Some(c) => format!("{c}; {untested}"),
            None => untested,
        });
    }
    Judgement {
        verdict,
        condition,
        finding: fill(e, &values),
        numbers,
        rules,
        coverage,
    }
}

/// A measured value and its description: `metric, statistic, at labels`.
fn measure(r: &Results, v: &ValueSpec) -> Option<(String, KeyNumber)> {
    let metric = v.metric?;
    let stat = v.stat.unwrap_or(match metric.judged() {
        Judged::Median => Stat::Median,
        Judged::WorstSeed => Stat::Max,
    });
    let points: Vec<_> = if v.at.is_empty() {
        r.points.iter().collect()
    } else {
        let at = v.at.iter().map(|(a, l)| (a.as_str(), l.as_str()));
        vec![r.at(at)?]
    };
    let mut xs: Vec<f64> = points
        .iter()
        .flat_map(|p| p.seeds.iter())
        .filter_map(|s| s.numbers.get(&metric).copied())
        .collect();
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let x = stat.of(&xs);
    let place = if v.at.is_empty() {
        "every run".to_string()
    } else {
        let labels: Vec<String> = v.at.iter().map(|(a, l)| format!("{a} = {l}")).collect();
        labels.join(", ")
    };
    let x = if stat.is_count() {
        KeyNumber::Count(x as u64)
    } else {
        KeyNumber::Value(x)
    };
    Some((format!("{metric}, {}, {place}", stat.describe()), x))
}

/// The finding with its placeholders filled.
fn fill(e: &Experiment, values: &BTreeMap<String, f64>) -> String {
    let template = &e.verdict.finding;
    let mut out = String::new();
    let mut rest = template.as_str();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        let p = &rest[open + 1..open + close];
        let count = |v: &ValueSpec| v.stat.is_some_and(Stat::is_count);
        let text = match values.get(p) {
            Some(x) if e.verdict.values.get(p).is_some_and(count) => format!("{x:.0}"),
            Some(x) => num(*x),
            None => e.verdict.placeholder(e, p).unwrap_or_default(),
        };
        out.push_str(&text);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_parse_every_form() {
        let c = Check::try_from("keep > 1.2 * per".to_string()).unwrap();
        assert_eq!((c.op, c.times, c.plus), (Op::Greater, 1.2, 0.0));
        assert_eq!(c.names(), vec!["keep", "per"]);
        let c = Check::try_from("wait20 > wait0 + 5".to_string()).unwrap();
        assert_eq!((c.times, c.plus), (1.0, 5.0));
        let c = Check::try_from("lost == 0".to_string()).unwrap();
        assert_eq!(c.right, Term::Number(0.0));
        let c = Check::try_from("a <= 0.5 * b - 2".to_string()).unwrap();
        assert_eq!((c.times, c.plus), (0.5, -2.0));
        for bad in ["a", "a >", "a => b", "1 > a", "a > b * 2", "a > x * b"] {
            assert!(Check::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_check_compares_scaled_values() {
        let values: BTreeMap<String, f64> = [("a".to_string(), 13.0), ("b".to_string(), 10.0)]
            .into_iter()
            .collect();
        let holds = |s: &str| Check::try_from(s.to_string()).unwrap().holds(&values);
        assert!(holds("a > 1.2 * b"));
        assert!(!holds("a > 1.4 * b"));
        assert!(holds("a < b + 3.5"));
        assert!(!holds("a == 0"));
    }

    #[test]
    fn a_value_counts_the_seeds_over_a_threshold() {
        let v: ValueSpec =
            toml::from_str("metric = \"drain_s\"\nstat = { seeds_over = 10.0 }").unwrap();
        let stat = v.stat.unwrap();
        assert_eq!(stat, Stat::SeedsOver(10.0));
        assert_eq!(
            stat.of(&[1.9, 2.0, 10.0, 22.1, 22.2]),
            2.0,
            "10 is not over 10"
        );
        assert_eq!(stat.describe(), "seeds over 10");
        assert_eq!(Stat::SeedsOver(10.25).describe(), "seeds over 10.25");
        assert_eq!(Stat::Median.of(&[1.0, 2.0, 22.0]), 2.0);
    }

    #[test]
    fn placeholders_are_found_in_order() {
        assert_eq!(
            placeholders("x {a} y {scenario:p[0].q} {seeds}"),
            vec!["a", "scenario:p[0].q", "seeds"]
        );
    }
}
