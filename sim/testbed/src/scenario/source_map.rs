//! Maps between places in a scenario's TOML text and the dotted paths of the values there.
//!
//! toml's serde errors carry a byte span but not the path of the field they are about, and the
//! semantic checks know the path of a field but not where it sits in the text. Reading the
//! document a second time with `toml_edit`, whose parsed documents keep the span of every key
//! and value (its public `span()` API, the same parser toml uses), bridges both ways and keeps
//! span types out of the public scenario types.

use std::collections::BTreeMap;
use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// Byte ranges of every key and value of a document, by dotted path such as `producers[0].acks`.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Default)]
struct Entry {
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

impl SourceMap {
    /// Maps `text`; a text that is not valid TOML gives an empty map.
    pub(crate) fn parse(text: &str) -> SourceMap {
        let mut map = SourceMap::default();
        if let Ok(document) = ImDocument::parse(text) {
            map.record_table("", None, document.as_table());
        }
        map
    }

    fn record(&mut self, path: &str, key: Option<Range<usize>>, value: Option<Range<usize>>) {
        let entry = self.entries.entry(path.to_string()).or_default();
        if entry.key.is_none() {
            entry.key = key;
        }
        if entry.value.is_none() {
            entry.value = value;
        }
    }

    fn record_table(&mut self, path: &str, key: Option<Range<usize>>, table: &Table) {
        self.record(path, key, table.span());
        for (name, item) in table.iter() {
            let key = table.key(name).and_then(|k| k.span());
            self.record_item(&child(path, name), key, item);
        }
    }

    fn record_item(&mut self, path: &str, key: Option<Range<usize>>, item: &Item) {
        match item {
            Item::None => {}
            Item::Value(value) => self.record_value(path, key, value),
            Item::Table(table) => self.record_table(path, key, table),
            Item::ArrayOfTables(tables) => {
                self.record(path, key, tables.span());
                for (index, table) in tables.iter().enumerate() {
                    self.record_table(&format!("{path}[{index}]"), None, table);
                }
            }
        }
    }

    fn record_value(&mut self, path: &str, key: Option<Range<usize>>, value: &Value) {
        self.record(path, key, value.span());
        match value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.record_value(&format!("{path}[{index}]"), None, item);
                }
            }
            Value::InlineTable(table) => {
                for (name, item) in table.iter() {
                    let key = table.key(name).and_then(|k| k.span());
                    self.record_value(&child(path, name), key, item);
                }
            }
            _ => {}
        }
    }

    /// True when the text was not valid TOML.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where to point for `path`: its value, else its key, else the nearest ancestor that appears
    /// in the text (a defaulted field points at the table it was left out of).
    pub(crate) fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut current = path;
        loop {
            if let Some(entry) = self.entries.get(current) {
                if let Some(span) = entry.value.clone().or_else(|| entry.key.clone()) {
                    return Some(span);
                }
            }
            current = parent_path(current)?;
        }
    }

    /// The path whose value (or, for a table toml knows no span of, key) spans exactly `span`:
    /// how serde errors about a whole table, such as a missing field, are located. `None` for
    /// the document itself.
    pub(crate) fn path_spanning(&self, span: &Range<usize>) -> Option<&str> {
        let is_span = |r: &Option<Range<usize>>| r.as_ref() == Some(span);
        self.entries
            .iter()
            .filter(|(path, e)| !path.is_empty() && (is_span(&e.value) || is_span(&e.key)))
            .max_by_key(|(path, _)| path.len())
            .map(|(path, _)| path.as_str())
    }

    /// The innermost path whose key or value contains byte `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> Option<&str> {
        let contains = |r: &Range<usize>| r.start <= offset && (offset < r.end || r.is_empty());
        self.entries
            .iter()
            .filter(|(path, _)| !path.is_empty())
            .flat_map(|(path, e)| {
                [&e.key, &e.value]
                    .into_iter()
                    .flatten()
                    .map(move |r| (path, r))
            })
            .filter(|(_, r)| contains(r))
            .min_by_key(|(path, r)| (r.len(), std::cmp::Reverse(path.len())))
            .map(|(path, _)| path.as_str())
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → `` (the document), `` → none.
pub(crate) fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = if path.ends_with(']') {
        path.rfind('[')
    } else {
        path.rfind('.')
    };
    Some(cut.map_or("", |i| &path[..i]))
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// Best-effort dotted path of the key on line `line` (1-based) of a text that is not valid TOML,
/// from the table headers above it. Used only when the document cannot be parsed at all.
pub(crate) fn path_near_line(text: &str, line: usize) -> String {
    let mut table = String::new();
    let mut array_counts: BTreeMap<String, usize> = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        let is_error_line = index + 1 == line;
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|rest| rest.split("]]").next())
        {
            let name = name.trim().to_string();
            let count = array_counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{count}]");
            *count += 1;
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
        } else if is_error_line {
            let key = trimmed.split('=').next().unwrap_or("").trim();
            let bare = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if bare {
                return if table.is_empty() {
                    key.to_string()
                } else {
                    format!("{table}.{key}")
                };
            }
        }
        if is_error_line {
            break;
        }
    }
    table
}

/// `path.name`, or `name` at the top.
fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"name = "x"
[cluster.log]
fsync = "never"
[[producers]]
name = "p"
retry = [1,
  2]
[[producers]]
name = "q"
a.b = 3
inl = { x = 1, y = [ { z = 1 } ] }
"#;

    fn line_of(map: &SourceMap, path: &str) -> usize {
        line_column(DOC, map.span_of(path).unwrap().start).0
    }

    #[test]
    fn every_value_gets_a_line() {
        let map = SourceMap::parse(DOC);
        assert_eq!(line_of(&map, "name"), 1);
        assert_eq!(line_of(&map, "cluster.log.fsync"), 3);
        assert_eq!(line_of(&map, "producers[0]"), 4);
        assert_eq!(line_of(&map, "producers[0].retry[1]"), 7);
        assert_eq!(line_of(&map, "producers[1].name"), 9);
        assert_eq!(line_of(&map, "producers[1].a.b"), 10);
        assert_eq!(line_of(&map, "producers[1].inl.y[0].z"), 11);
        // Absent fields point at their table.
        assert_eq!(line_of(&map, "producers[1].topic"), 8);
    }

    #[test]
    fn offsets_map_back_to_paths() {
        let map = SourceMap::parse(DOC);
        let at = |needle: &str| map.path_at(DOC.find(needle).unwrap()).map(str::to_string);
        assert_eq!(at("\"never\"").as_deref(), Some("cluster.log.fsync"));
        assert_eq!(at("fsync").as_deref(), Some("cluster.log.fsync"));
        assert_eq!(at("2]").as_deref(), Some("producers[0].retry[1]"));
        assert_eq!(at("z = 1").as_deref(), Some("producers[1].inl.y[0].z"));
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("a\nbé = 1", 0), (1, 1));
        assert_eq!(line_column("a\nbé = 1", 2), (2, 1));
        assert_eq!(line_column("a\nbé = 1", 5), (2, 3));
        assert_eq!(line_column("a", 99), (1, 2));
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("a.b[2]"), Some("a.b"));
        assert_eq!(parent_path("a.b"), Some("a"));
        assert_eq!(parent_path("a"), Some(""));
        assert_eq!(parent_path(""), None);
    }

    #[test]
    fn path_near_line_follows_headers() {
        let text = "x = 1\n[[p]]\na = 1\n[[p]]\nb = =\n";
        assert_eq!(path_near_line(text, 5), "p[1].b");
        assert_eq!(path_near_line(text, 1), "x");
    }
}
