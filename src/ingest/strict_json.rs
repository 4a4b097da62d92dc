//! JSON parsing that notices duplicate keys. `serde_json::Value` keeps the last of
//! two equal keys silently (`{"events":[a],"events":[b]}` would drop `a`); here the
//! document is parsed into the same `Value`, and every object key that appears twice is
//! reported with its path (`events[3].event_id`), so the caller can refuse the body or
//! the one event it is in.
//!
//! The path of a value is a chain of [`Path`] links on the stack, rendered only when a
//! duplicate is found: parsing allocates nothing for paths.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A parsed document and the paths of the keys that appeared more than once.
pub struct Parsed {
    pub value: Value,
    pub duplicates: Vec<String>,
}

/// Parses `bytes`, collecting duplicate keys instead of hiding them.
pub fn parse(bytes: &[u8]) -> Result<Parsed, serde_json::Error> {
    let dups = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Seed {
        path: &Path::ROOT,
        dups: &dups,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(Parsed {
        value,
        duplicates: dups.into_inner(),
    })
}

/// Rendered paths longer than this are cut in reports.
const MAX_PATH: usize = 200;

/// Where a value sits in a document: a key or an index below its parent.
#[derive(Clone, Copy)]
pub struct Path<'p> {
    parent: Option<&'p Path<'p>>,
    step: Step<'p>,
}

#[derive(Clone, Copy)]
enum Step<'p> {
    Root,
    Key(&'p str),
    Index(usize),
}

impl Path<'_> {
    /// The document (or the event) itself: renders as the empty string.
    pub const ROOT: Path<'static> = Path {
        parent: None,
        step: Step::Root,
    };

    /// The value under `key` of the object at `self`.
    pub fn key<'c>(&'c self, key: &'c str) -> Path<'c> {
        Path {
            parent: Some(self),
            step: Step::Key(key),
        }
    }

    /// Element `i` of the array at `self`.
    pub fn index(&self, i: usize) -> Path<'_> {
        Path {
            parent: Some(self),
            step: Step::Index(i),
        }
    }

    /// `events[3].user_data.email`: keys joined by dots, indices in brackets; cut once
    /// it reaches 200 bytes.
    pub fn render(&self) -> String {
        let mut steps = Vec::new();
        let mut at = Some(self);
        while let Some(p) = at {
            steps.push(p.step);
            at = p.parent;
        }
        let mut out = String::new();
        for step in steps.into_iter().rev() {
            if out.len() >= MAX_PATH {
                break;
            }
            match step {
                Step::Root => {}
                Step::Key(k) if out.is_empty() => out.push_str(k),
                Step::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Step::Index(i) => {
                    use std::fmt::Write;
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        out
    }
}

/// Parses one value into a `Value`, reporting duplicate keys below `path` into `dups`.
#[derive(Clone, Copy)]
struct Seed<'s> {
    path: &'s Path<'s>,
    dups: &'s RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let path = self.path.index(out.len());
            let seed = Seed {
                path: &path,
                dups: self.dups,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = self.path.key(&key);
            let v = map.next_value_seed(Seed {
                path: &path,
                dups: self.dups,
            })?;
            if out.contains_key(&key) {
                self.dups.borrow_mut().push(path.render());
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_reported_with_their_paths() {
        let p = parse(br#"{"events":[{"a":1},{"b":2,"b":3}],"events":[]}"#).unwrap();
        assert_eq!(
            p.duplicates,
            vec!["events[1].b".to_string(), "events".into()]
        );
        assert_eq!(
            p.value["events"],
            serde_json::json!([]),
            "the last one is kept"
        );
        let p = parse(br#"{"event_id":"a","event_id":"b","user_data":{"email":"x","email":"y"}}"#)
            .unwrap();
        assert_eq!(
            p.duplicates,
            vec!["event_id".to_string(), "user_data.email".into()]
        );
        let p = parse(br#"{"a":[1,2.5,"s",null,true,{"c":{}}]}"#).unwrap();
        assert!(p.duplicates.is_empty());
        assert_eq!(
            p.value,
            serde_json::from_slice::<Value>(br#"{"a":[1,2.5,"s",null,true,{"c":{}}]}"#).unwrap()
        );
        assert!(parse(b"{\"a\":1} x").is_err(), "trailing bytes");
        assert!(parse(b"{\"a\":").is_err());
    }
}
