//! From a [`Scenario`]'s pieces back to TOML: what `[swarm]` draws and `shrink` cuts are
//! written into the scenario file's own text with toml_edit, so the result is a scenario file
//! like any other (comments kept), and replaying it goes through the same parser and checks.

use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

use super::{Fault, FaultKind, Member, MillisRange, ScenarioError};

/// A scenario file's text, open for edits.
pub struct ScenarioText {
    doc: DocumentMut,
}

impl ScenarioText {
    pub fn parse(text: &str, source_name: &str) -> Result<ScenarioText, ScenarioError> {
        let doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
            let offset = e.span().map_or(0, |s| s.start);
            let (line, column) = super::source_map::line_column(text, offset);
            ScenarioError::Invalid {
                source_name: source_name.to_string(),
                line,
                column,
                field: String::new(),
                message: e.message().to_string(),
            }
        })?;
        Ok(ScenarioText { doc })
    }

    /// Sets `path` (dotted, tables only: `disk.block_size`, `cluster.log.fsync`) to `v`,
    /// creating tables on the way.
    pub fn set(&mut self, path: &str, v: impl Into<toml_edit::Value>) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let Some(last) = parts.pop() else { return };
        let mut table = self.doc.as_table_mut();
        for part in parts {
            let entry = table.entry(part).or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(true);
                Item::Table(t)
            });
            let Some(t) = entry.as_table_mut() else {
                return;
            };
            table = t;
        }
        table.insert(last, value(v));
    }

    /// Sets a key of the `index`th table of the array of tables `array` (`producers`).
    pub fn set_in_array(
        &mut self,
        array: &str,
        index: usize,
        key: &str,
        v: impl Into<toml_edit::Value>,
    ) {
        let tables = self
            .doc
            .get_mut(array)
            .and_then(Item::as_array_of_tables_mut);
        if let Some(t) = tables.and_then(|a| a.get_mut(index)) {
            t.insert(key, value(v));
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.doc.remove(key);
    }

    /// Removes `path` (dotted, tables only, as in [`ScenarioText::set`]) if it is there.
    pub fn remove_path(&mut self, path: &str) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let Some(last) = parts.pop() else { return };
        let mut table = self.doc.as_table_mut();
        for part in parts {
            let Some(t) = table.get_mut(part).and_then(Item::as_table_mut) else {
                return;
            };
            table = t;
        }
        table.remove(last);
    }

    /// Replaces the `[[faults]]` with `faults`.
    pub fn set_faults(&mut self, faults: &[Fault]) {
        self.doc.remove("faults");
        let mut array = ArrayOfTables::new();
        for f in faults {
            array.push(fault_table(f));
        }
        if !faults.is_empty() {
            self.doc.insert("faults", Item::ArrayOfTables(array));
        }
    }

    /// Puts `comment` (lines starting with `#`) at the top of the file.
    pub fn prepend_comment(&mut self, comment: &str) {
        let old = self
            .doc
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .unwrap_or("")
            .to_string();
        self.doc.decor_mut().set_prefix(format!("{comment}{old}"));
    }

    pub fn text(&self) -> String {
        self.doc.to_string()
    }
}

/// One `[[faults]]` table; its end is written in the field the kind takes.
fn fault_table(f: &Fault) -> Table {
    let mut t = Table::new();
    t.insert("at_s", value(f.at_s));
    t.insert("kind", value(f.kind.tag().name()));
    let relative = f.until_s.map(|u| round_us(u - f.at_s));
    let mut end = |key: &str, v: Option<f64>| {
        if let Some(v) = v {
            t.insert(key, value(v));
        }
    };
    match &f.kind {
        FaultKind::Crash { .. } | FaultKind::PowerLoss | FaultKind::ConsumerCrash { .. } => {
            end("restart_after_s", relative)
        }
        FaultKind::Partition { .. } | FaultKind::PartitionOneway { .. } => {
            end("heal_after_s", relative)
        }
        FaultKind::Hold { .. } => end("release_after_s", relative),
        FaultKind::Loss { .. }
        | FaultKind::Latency { .. }
        | FaultKind::Clock { .. }
        | FaultKind::DiskFull { .. }
        | FaultKind::DiskEio { .. } => end("until_s", f.until_s),
        FaultKind::Heal
        | FaultKind::Join { .. }
        | FaultKind::Leave { .. }
        | FaultKind::Pause { .. }
        | FaultKind::RollingRestart { .. } => {}
    }
    match &f.kind {
        FaultKind::Crash { target } | FaultKind::DiskFull { target } => {
            t.insert("target", value(target.to_string()));
        }
        FaultKind::PowerLoss | FaultKind::Heal => {}
        FaultKind::Partition { groups } => {
            let mut a = Array::new();
            for g in groups {
                a.push(members(g));
            }
            t.insert("groups", value(a));
        }
        FaultKind::PartitionOneway { from, to } => {
            t.insert("from", value(members(from)));
            t.insert("to", value(members(to)));
        }
        FaultKind::Hold { between } => {
            t.insert("between", value(pair(between)));
        }
        FaultKind::Loss { between, rate } => {
            t.insert("between", value(pair(between)));
            t.insert("rate", value(*rate));
        }
        FaultKind::Latency {
            between,
            latency_ms,
        } => {
            t.insert("between", value(pair(between)));
            t.insert("latency_ms", value(range(latency_ms)));
        }
        FaultKind::Join { consumer } => {
            t.insert("consumer", value(consumer.as_str()));
        }
        FaultKind::Leave { process } | FaultKind::ConsumerCrash { process } => {
            t.insert("process", value(process.as_str()));
        }
        FaultKind::Pause { process, pause_s } => {
            t.insert("process", value(process.as_str()));
            t.insert("pause_s", value(*pause_s));
        }
        FaultKind::RollingRestart { consumer, gap_s } => {
            t.insert("consumer", value(consumer.as_str()));
            t.insert("gap_s", value(*gap_s));
        }
        FaultKind::DiskEio { target, rate } => {
            t.insert("target", value(target.to_string()));
            t.insert("rate", value(*rate));
        }
        FaultKind::Clock {
            target,
            clock_rate,
            jump_s,
        } => {
            t.insert("target", value(target.to_string()));
            t.insert("clock_rate", value(*clock_rate));
            t.insert("jump_s", value(*jump_s));
        }
    }
    t
}

/// Microsecond precision: enough for any schedule, and it keeps `at + after` from printing
/// float noise.
fn round_us(s: f64) -> f64 {
    (s * 1e6).round() / 1e6
}

fn members(ms: &[Member]) -> Array {
    ms.iter().map(|m| m.to_string()).collect()
}

fn pair(between: &[Vec<Member>; 2]) -> Array {
    let mut a = Array::new();
    a.push(members(&between[0]));
    a.push(members(&between[1]));
    a
}

fn range(r: &MillisRange) -> Array {
    let mut a = Array::new();
    a.push(r.min_ms as i64);
    a.push(r.max_ms as i64);
    a
}
