//! `custom_data` as read from a body and as stored: any JSON value, its strings borrowed
//! from the body where they carry no escape, written compactly with every object's keys
//! in sorted (byte) order and a key given twice keeping its last value — byte for byte
//! what a `serde_json::Value` (built without `preserve_order`) serializes to, which is
//! the form stored events have always carried, without a `BTreeMap` node and a `String`
//! per key and value on the way.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Number;

use super::body::KeySeed;
use super::strict_json::Path;

/// One JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Canon<'a> {
    Null,
    Bool(bool),
    Num(Number),
    Str(Cow<'a, str>),
    Arr(Vec<Canon<'a>>),
    /// Entries in the order given (a key may appear twice; the last one counts).
    Obj(Vec<(Cow<'a, str>, Canon<'a>)>),
}

impl Serialize for Canon<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Canon::Null => s.serialize_unit(),
            Canon::Bool(b) => s.serialize_bool(*b),
            Canon::Num(n) => n.serialize(s),
            Canon::Str(v) => s.serialize_str(v),
            Canon::Arr(items) => s.collect_seq(items),
            Canon::Obj(entries) => {
                let mut sorted: Vec<&(Cow<str>, Canon)> = entries.iter().collect();
                // Stable: of equal keys, the last given stays last.
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                let mut m = s.serialize_map(None)?;
                for (i, (k, v)) in sorted.iter().enumerate() {
                    if sorted.get(i + 1).is_some_and(|next| next.0 == *k) {
                        continue;
                    }
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

/// Objects with more keys than this look duplicates up in a set, not a scan.
const SCAN_KEYS: usize = 16;

/// Reads one value, reporting keys given twice below `path` into `dups` (in the order
/// [`crate::ingest::strict_json`] reports them).
pub struct CanonSeed<'s> {
    pub path: &'s Path<'s>,
    pub dups: &'s RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for CanonSeed<'_> {
    type Value = Canon<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CanonSeed<'_> {
    type Value = Canon<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Canon::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Canon::Num(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Canon::Num(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(v).map_or(Canon::Null, Canon::Num))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Canon::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Canon::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Canon::Str(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Canon::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Canon::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let path = self.path.index(out.len());
            let seed = CanonSeed {
                path: &path,
                dups: self.dups,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Canon::Arr(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<(Cow<'de, str>, Canon<'de>)> = Vec::new();
        let mut keys: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let path = self.path.key(&key);
            let v = map.next_value_seed(CanonSeed {
                path: &path,
                dups: self.dups,
            })?;
            let seen = match &mut keys {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let seen = out.iter().any(|(k, _)| *k == key);
                    if out.len() >= SCAN_KEYS {
                        let mut set: HashSet<Cow<'de, str>> =
                            out.iter().map(|(k, _)| k.clone()).collect();
                        set.insert(key.clone());
                        keys = Some(set);
                    }
                    seen
                }
            };
            if seen {
                self.dups.borrow_mut().push(path.render());
            }
            out.push((key, v));
        }
        Ok(Canon::Obj(out))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use proptest::prelude::*;
    use serde::de::DeserializeSeed;
    use serde_json::Value;

    use super::*;
    use crate::ingest::strict_json;

    fn read(text: &str) -> (Canon<'_>, Vec<String>) {
        let dups = RefCell::new(Vec::new());
        let mut de = serde_json::Deserializer::from_str(text);
        let v = CanonSeed {
            path: &Path::ROOT,
            dups: &dups,
        }
        .deserialize(&mut de)
        .expect("json");
        (v, dups.into_inner())
    }

    /// Text of an object whose keys may repeat, from random entries.
    fn text(v: &Value, twice: &[(String, Value)]) -> String {
        let mut s = v.to_string();
        if let (Some(body), false) = (s.strip_suffix('}'), twice.is_empty()) {
            let extra: Vec<String> = twice
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                .collect();
            let sep = if body.len() > 1 { "," } else { "" };
            s = format!("{body}{sep}{}}}", extra.join(","));
        }
        s
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 24, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]{0,2}|é|\\n", inner, 0..24)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Written back, a value is what `Value` writes — keys sorted, the last of a
        /// repeated key kept — and its duplicates are those `strict_json` reports, in
        /// its order.
        #[test]
        fn writes_what_a_value_writes_and_reports_its_duplicates(
            v in any_json(),
            twice in proptest::collection::vec(("[a-c]{0,2}", any_json()), 0..20),
        ) {
            let t = text(&v, &twice);
            let (c, dups) = read(&t);
            let want = strict_json::parse(t.as_bytes()).expect("json");
            prop_assert_eq!(serde_json::to_vec(&c).unwrap(), serde_json::to_vec(&want.value).unwrap());
            prop_assert_eq!(dups, want.duplicates);
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let (c, dups) = read(r#"{"b": "x", "a": "y\"", "b": [1, 2.5, null, true]}"#);
        assert_eq!(dups, ["b"]);
        let Canon::Obj(entries) = &c else {
            panic!("object")
        };
        assert!(matches!(&entries[0].1, Canon::Str(Cow::Borrowed("x"))));
        assert!(matches!(&entries[1].1, Canon::Str(Cow::Owned(_))));
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"a":"y\"","b":[1,2.5,null,true]}"#
        );
    }
}
