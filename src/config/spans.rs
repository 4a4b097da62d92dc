//! Where each key sits in the file: an index from key paths
//! (`destinations[2].policy.auto_pause.threshold`) to byte spans, built from a
//! `toml_edit` document, used to give every error a line number without ever
//! quoting the line's text.

use std::ops::Range;

use toml_edit::{Array, InlineTable, Item, Table, Value};

struct Entry {
    path: String,
    /// The key (or, for an array element or a `[[table]]`, its header / value).
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

pub struct SpanIndex {
    entries: Vec<Entry>,
    line_starts: Vec<usize>,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

impl SpanIndex {
    pub fn build(text: &str, root: &Table) -> SpanIndex {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut idx = SpanIndex {
            entries: Vec::new(),
            line_starts,
        };
        idx.walk_table(root, "");
        idx
    }

    /// 1-based line of a byte offset.
    pub fn line_of_offset(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    fn walk_table(&mut self, table: &Table, prefix: &str) {
        for (k, item) in table {
            let key_span = table.get_key_value(k).and_then(|(key, _)| key.span());
            let path = join(prefix, k);
            self.walk_item(item, path, key_span);
        }
    }

    fn walk_item(&mut self, item: &Item, path: String, key_span: Option<Range<usize>>) {
        match item {
            Item::None => {}
            Item::Value(v) => self.walk_value(v, path, key_span),
            Item::Table(t) => {
                self.entries.push(Entry {
                    path: path.clone(),
                    key: key_span.or_else(|| t.span()),
                    value: t.span(),
                });
                self.walk_table(t, &path);
            }
            Item::ArrayOfTables(a) => {
                self.entries.push(Entry {
                    path: path.clone(),
                    key: key_span,
                    value: a.span(),
                });
                for (i, t) in a.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.entries.push(Entry {
                        path: p.clone(),
                        key: t.span(),
                        value: t.span(),
                    });
                    self.walk_table(t, &p);
                }
            }
        }
    }

    fn walk_value(&mut self, v: &Value, path: String, key_span: Option<Range<usize>>) {
        self.entries.push(Entry {
            path: path.clone(),
            key: key_span,
            value: v.span(),
        });
        match v {
            Value::InlineTable(t) => self.walk_inline(t, &path),
            Value::Array(a) => self.walk_array(a, &path),
            _ => {}
        }
    }

    fn walk_inline(&mut self, t: &InlineTable, prefix: &str) {
        for (k, v) in t {
            let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
            self.walk_value(v, join(prefix, k), key_span);
        }
    }

    fn walk_array(&mut self, a: &Array, prefix: &str) {
        for (i, v) in a.iter().enumerate() {
            self.walk_value(v, format!("{prefix}[{i}]"), None);
        }
    }

    /// Line of the key at `path`, else of its nearest ancestor that is in the file
    /// (a missing key reports the line of the table that should hold it).
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == p) {
                let span = e.key.as_ref().or(e.value.as_ref())?;
                return Some(self.line_of_offset(span.start));
            }
            p = parent(p)?;
        }
    }

    /// The key path whose key contains `offset`, else the innermost value that does.
    pub fn path_at(&self, offset: usize) -> Option<&str> {
        if let Some(e) = self
            .entries
            .iter()
            .filter(|e| e.key.as_ref().is_some_and(|k| k.contains(&offset)))
            .max_by_key(|e| e.path.len())
        {
            return Some(&e.path);
        }
        self.entries
            .iter()
            .filter(|e| e.value.as_ref().is_some_and(|v| v.contains(&offset)))
            .min_by_key(|e| {
                e.value
                    .as_ref()
                    .map_or(usize::MAX, std::iter::ExactSizeIterator::len)
            })
            .map(|e| e.path.as_str())
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → None.
pub fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(text: &str) -> SpanIndex {
        let doc = toml_edit::Document::parse(text).expect("valid toml");
        SpanIndex::build(text, doc.as_table())
    }

    #[test]
    fn maps_paths_to_lines() {
        let text = "[server]\nlisten = \"x\"\n\n[[destinations]]\nid = \"a\"\n\n[[destinations]]\nid = \"b\"\npolicy = { retry = { base = \"1s\" } }\nevents = [\"A\", \"B\"]\n";
        let idx = index(text);
        assert_eq!(idx.line_of("server"), Some(1));
        assert_eq!(idx.line_of("server.listen"), Some(2));
        assert_eq!(idx.line_of("server.missing"), Some(1));
        assert_eq!(idx.line_of("destinations[0]"), Some(4));
        assert_eq!(idx.line_of("destinations[1].id"), Some(8));
        assert_eq!(idx.line_of("destinations[1].policy.retry.base"), Some(9));
        assert_eq!(idx.line_of("destinations[1].events[1]"), Some(10));
        assert_eq!(idx.line_of("destinations[1].credentials.x"), Some(7));
        assert_eq!(idx.line_of("nowhere.at.all"), None);
    }

    #[test]
    fn finds_path_of_offset() {
        let text = "[storage]\npath = \"p\"\n";
        let idx = index(text);
        let at = text.find("path").expect("present");
        assert_eq!(idx.path_at(at), Some("storage.path"));
        let v = text.find("\"p\"").expect("present");
        assert_eq!(idx.path_at(v), Some("storage.path"));
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a"), None);
    }
}
