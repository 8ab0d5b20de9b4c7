//! Maps between places in a scenario's TOML text and the dotted paths of the values there.
//!
//! toml's serde errors carry a byte span but not the path of the field they are about, and the
//! semantic checks know the path of a field but not where it sits in the text. Reading the
//! document a second time into a tree that records the span of every key and value bridges both
//! ways, and keeps `toml::Spanned` out of the public scenario types.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

// The protocol through which toml hands out spans: the one `serde_spanned` (and so
// `toml::Spanned`) uses. A value asks for a struct with this name and these fields; toml answers
// with a three-entry map (start, end, value) when it knows the span, and with the plain value
// when it does not, as for implicit tables like `cluster` under a bare `[cluster.log]` header.
// `toml::Spanned` cannot be used directly because it fails on those span-less tables.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];

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
        if let Ok(root) = toml::from_str::<Located>(text) {
            map.record("", None, &root);
        }
        map
    }

    fn record(&mut self, path: &str, key: Option<Range<usize>>, located: &Located) {
        let entry = self.entries.entry(path.to_string()).or_default();
        if entry.key.is_none() {
            entry.key = key;
        }
        if entry.value.is_none() {
            entry.value.clone_from(&located.span);
        }
        match &located.node {
            Node::Leaf => {}
            Node::Table(children) => {
                for (key, child) in children {
                    let child_path = if path.is_empty() {
                        key.name.clone()
                    } else {
                        format!("{path}.{}", key.name)
                    };
                    self.record(&child_path, key.span.clone(), child);
                }
            }
            Node::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.record(&format!("{path}[{index}]"), None, item);
                }
            }
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

/// A value with its span, when toml knows it.
struct Located {
    span: Option<Range<usize>>,
    node: Node,
}

enum Node {
    Leaf,
    Table(Vec<(Key, Located)>),
    Array(Vec<Located>),
}

struct Key {
    name: String,
    span: Option<Range<usize>>,
}

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Located, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, LocatedVisitor)
    }
}

/// The value inside a span envelope: asking for the envelope again would loop.
struct Bare(Node);

impl<'de> Deserialize<'de> for Bare {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bare, D::Error> {
        deserializer
            .deserialize_any(LocatedVisitor)
            .map(|located| Bare(located.node))
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

fn unspanned(node: Node) -> Located {
    Located { span: None, node }
}

struct LocatedVisitor;

impl<'de> Visitor<'de> for LocatedVisitor {
    type Value = Located;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Located, E> {
        Ok(unspanned(Node::Leaf))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Located, E> {
        Ok(unspanned(Node::Leaf))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Located, E> {
        Ok(unspanned(Node::Leaf))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Located, E> {
        Ok(unspanned(Node::Leaf))
    }
    fn visit_str<E>(self, _: &str) -> Result<Located, E> {
        Ok(unspanned(Node::Leaf))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Located>()? {
            items.push(item);
        }
        Ok(unspanned(Node::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located, A::Error> {
        let Some(first) = map.next_key::<Key>()? else {
            return Ok(unspanned(Node::Table(Vec::new())));
        };
        if first.name == SPANNED_START {
            let start: usize = map.next_value()?;
            expect_key(&mut map, SPANNED_END)?;
            let end: usize = map.next_value()?;
            expect_key(&mut map, SPANNED_VALUE)?;
            let Bare(node) = map.next_value()?;
            return Ok(Located {
                span: Some(start..end),
                node,
            });
        }
        let mut children = vec![(first, map.next_value::<Located>()?)];
        while let Some(key) = map.next_key::<Key>()? {
            children.push((key, map.next_value::<Located>()?));
        }
        Ok(unspanned(Node::Table(children)))
    }
}

fn expect_key<'de, A: MapAccess<'de>>(map: &mut A, name: &str) -> Result<(), A::Error> {
    match map.next_key::<Key>()? {
        Some(key) if key.name == name => Ok(()),
        _ => Err(de::Error::custom("malformed span envelope")),
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML key")
    }

    fn visit_str<E>(self, name: &str) -> Result<Key, E> {
        Ok(Key {
            name: name.to_string(),
            span: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let mut start = None;
        let mut end = None;
        let mut name = None;
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                SPANNED_START => start = Some(map.next_value::<usize>()?),
                SPANNED_END => end = Some(map.next_value::<usize>()?),
                SPANNED_VALUE => name = Some(map.next_value::<String>()?),
                _ => return Err(de::Error::custom("malformed span envelope")),
            }
        }
        let name = name.ok_or_else(|| de::Error::custom("malformed span envelope"))?;
        let span = start.zip(end).map(|(s, e)| s..e);
        Ok(Key { name, span })
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
