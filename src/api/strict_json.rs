//! JSON parsing that notices duplicate keys. `serde_json::Value` keeps the last of
//! two equal keys silently (`{"events":[a],"events":[b]}` would drop `a`); here the
//! document is parsed into the same `Value`, and every object key that appears twice is
//! reported with its path (`events[3].event_id`), so the caller can refuse the body or
//! the one event it is in.

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
        path: String::new(),
        dups: &dups,
        depth: 0,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(Parsed {
        value,
        duplicates: dups.into_inner(),
    })
}

/// Paths longer than this are cut in reports.
const MAX_PATH: usize = 200;

struct Seed<'a> {
    path: String,
    dups: &'a RefCell<Vec<String>>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Seed<'_> {
    fn child(&self, step: &str) -> Seed<'_> {
        let mut path = self.path.clone();
        if path.len() < MAX_PATH {
            path.push_str(step);
        }
        Seed {
            path,
            dups: self.dups,
            depth: self.depth + 1,
        }
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
        let mut i = 0usize;
        while let Some(v) = seq.next_element_seed(self.child(&format!("[{i}]")))? {
            out.push(v);
            i += 1;
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let step = if self.path.is_empty() {
                key.clone()
            } else {
                format!(".{key}")
            };
            let v = map.next_value_seed(self.child(&step))?;
            if out.contains_key(&key) {
                let mut path = self.path.clone();
                path.push_str(&step);
                self.dups.borrow_mut().push(path);
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
