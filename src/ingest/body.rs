//! Reading a `POST /v1/events` body (SPEC §2): one event object, or
//! `{"events": [ … ]}`, parsed straight into the slots validation checks — a
//! [`RawEvent`] per event, its strings borrowed from the body where they carry no
//! escape — instead of a `serde_json::Value` tree per event that validation then walks
//! and drops (that tree and its allocations were most of the cost of a batch).
//!
//! What the reading keeps is exactly what [`crate::ingest::validate`] needs to answer
//! as it would from the whole value: each known key's value (a string, a number, or
//! "something else"; `null` is absent), the first unknown key in sorted order (top
//! level and in `user_data`), `custom_data` as a [`Canon`] value (it is stored as its
//! compact serialization), and every key given twice, with its path, in the order
//! [`crate::ingest::strict_json`] reports them (a value's inner duplicates before its
//! own key). Values nobody reads (unknown keys, objects where a string belongs) are
//! still read, by the same [`CanonSeed`] as `custom_data`, for their duplicate keys
//! and then dropped.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::canon::{Canon, CanonSeed};
use super::identifiers::IdField;
use super::strict_json::Path;
use crate::event::ClearField;

/// The visitor methods of a seed that answers `$v` for every scalar and `$null` for
/// `null` (its containers it reads itself).
macro_rules! scalars_answer {
    ($v:expr, $null:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($v)
        }

        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($v)
        }

        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($v)
        }

        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($v)
        }

        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($v)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($null)
        }
    };
}

/// Top-level keys, in check order.
pub const TOP_KEYS: [&str; 8] = [
    "event_id",
    "event_name",
    "event_time",
    "action_source",
    "event_source_url",
    "user_data",
    "custom_data",
    "destinations",
];
pub const EVENT_ID: usize = 0;
pub const EVENT_NAME: usize = 1;
pub const EVENT_TIME: usize = 2;
pub const ACTION_SOURCE: usize = 3;
pub const EVENT_SOURCE_URL: usize = 4;
pub const USER_DATA: usize = 5;
pub const CUSTOM_DATA: usize = 6;
pub const DESTINATIONS: usize = 7;

/// `user_data` has this many keys: the identifiers, then the clear fields.
pub const USER_DATA_KEYS: usize = IdField::ALL.len() + ClearField::ALL.len();

/// The slot of a `user_data` key: identifiers in [`IdField::ALL`] order, then clear
/// fields in [`ClearField::ALL`] order — together, SPEC §2's order.
pub fn user_data_slot(key: &str) -> Option<usize> {
    if let Some(f) = IdField::from_key(key) {
        return Some(f as usize);
    }
    let clear = match key {
        "client_ip_address" => ClearField::ClientIpAddress,
        "client_user_agent" => ClearField::ClientUserAgent,
        "fbc" => ClearField::Fbc,
        "fbp" => ClearField::Fbp,
        "ttclid" => ClearField::Ttclid,
        "ttp" => ClearField::Ttp,
        "gclid" => ClearField::Gclid,
        "gbraid" => ClearField::Gbraid,
        "wbraid" => ClearField::Wbraid,
        "li_fat_id" => ClearField::LiFatId,
        "epik" => ClearField::Epik,
        "sccid" => ClearField::Sccid,
        "rdt_cid" => ClearField::RdtCid,
        "twclid" => ClearField::Twclid,
        "msclkid" => ClearField::Msclkid,
        "tblci" => ClearField::Tblci,
        "ob_click_id" => ClearField::ObClickId,
        _ => return None,
    };
    Some(IdField::ALL.len() + clear as usize)
}

/// One known key's value, as far as validation looks into it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Slot<'a> {
    /// Not given, or `null`.
    #[default]
    Absent,
    Str(Cow<'a, str>),
    Num(Number),
    /// `custom_data`'s object, kept whole.
    Json(Canon<'a>),
    /// `destinations`'s array.
    List(Vec<Slot<'a>>),
    /// `user_data`'s object (its values are in [`RawEvent::user_data`]).
    Map,
    /// Anything else: a boolean, or an object or array where neither is read.
    Other,
}

/// One event of a body, read for validation.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent<'a> {
    /// The event is a JSON object (else every other field is empty).
    pub object: bool,
    /// Values of [`TOP_KEYS`], by index.
    pub top: [Slot<'a>; TOP_KEYS.len()],
    /// Values of the `user_data` keys given, with their [`user_data_slot`], in the
    /// order given (each slot once: a key given twice keeps its last value).
    pub user_data: Vec<(u8, Slot<'a>)>,
    /// The first unknown top-level key in sorted (byte) order.
    pub unknown: Option<Cow<'a, str>>,
    /// The first unknown key of `user_data` in sorted order.
    pub unknown_user_data: Option<Cow<'a, str>>,
    /// Keys given more than once, as paths within the event (`user_data.email`), in
    /// the order found.
    pub duplicates: Vec<String>,
}

impl RawEvent<'_> {
    fn empty() -> Self {
        RawEvent {
            object: false,
            top: Default::default(),
            user_data: Vec::new(),
            unknown: None,
            unknown_user_data: None,
            duplicates: Vec::new(),
        }
    }
}

/// Reads a body: its events, or the message of `invalid_json` (the whole request is
/// refused). A key given twice outside the events (two `events`) makes the whole body
/// invalid; one given twice inside an event is that event's [`RawEvent::duplicates`].
pub fn parse_body(bytes: &[u8]) -> Result<Vec<RawEvent<'_>>, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let body = BodySeed
        .deserialize(&mut de)
        .and_then(|b| de.end().map(|()| b))
        .map_err(|e| format!("the body is not valid JSON: {e}"))?;
    match body {
        Body::NotObject => {
            Err("the body must be an event object or {\"events\": [...]}".to_string())
        }
        Body::Single(event) => Ok(vec![*event]),
        Body::Batch {
            events,
            others,
            duplicates,
        } => {
            if let Some(d) = duplicates.first() {
                return Err(format!("the key {d} appears more than once in the body"));
            }
            if others {
                return Err("a batch body is {\"events\": [...]} with no other key".to_string());
            }
            events.ok_or_else(|| "\"events\" must be an array of event objects".to_string())
        }
    }
}

/// Reads one event from its JSON text (what a test send or a test hands over).
pub fn parse_event(bytes: &[u8]) -> Result<RawEvent<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let event = EventSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(event)
}

enum Body<'a> {
    NotObject,
    Single(Box<RawEvent<'a>>),
    Batch {
        /// The events, or `None` when `events` is not an array.
        events: Option<Vec<RawEvent<'a>>>,
        /// Keys beside `events`.
        others: bool,
        /// Keys given twice outside the events.
        duplicates: Vec<String>,
    },
}

/// An object key, borrowed from the body unless it carries an escape.
pub(super) struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Builds one event from the keys of its object (also the top-level object of a body,
/// which is the event unless it holds `events`).
struct Builder<'a> {
    event: RawEvent<'a>,
    dups: RefCell<Vec<String>>,
    /// Known top-level keys seen (bit per [`TOP_KEYS`] index).
    seen: u8,
    /// Known `user_data` keys seen (bit per slot).
    seen_user_data: u32,
    /// Unknown keys seen (for their duplicates; rare).
    unknown_seen: Vec<Cow<'a, str>>,
}

impl<'de> Builder<'de> {
    fn new() -> Self {
        let mut event = RawEvent::empty();
        event.object = true;
        Builder {
            event,
            dups: RefCell::new(Vec::new()),
            seen: 0,
            seen_user_data: 0,
            unknown_seen: Vec::new(),
        }
    }

    fn finish(self) -> RawEvent<'de> {
        let mut event = self.event;
        event.duplicates = self.dups.into_inner();
        event
    }

    /// Reads the value of top-level `key` of the event rooted at `root`.
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: Cow<'de, str>,
        map: &mut A,
        root: &Path,
    ) -> Result<(), A::Error> {
        let path = root.key(&key);
        let dups = &self.dups;
        let Some(slot) = TOP_KEYS.iter().position(|k| *k == key) else {
            let first = &mut self.event.unknown;
            return unknown_key(map, &key, &path, dups, first, &mut self.unknown_seen);
        };
        let value = match slot {
            USER_DATA => map.next_value_seed(UserDataSeed {
                path: &path,
                dups,
                slots: &mut self.event.user_data,
                seen: &mut self.seen_user_data,
                unknown: &mut self.event.unknown_user_data,
            })?,
            CUSTOM_DATA => match map.next_value_seed(CanonSeed { path: &path, dups })? {
                Canon::Null => Slot::Absent,
                v @ Canon::Obj(_) => Slot::Json(v),
                _ => Slot::Other,
            },
            DESTINATIONS => map.next_value_seed(ListSeed { path: &path, dups })?,
            _ => map.next_value_seed(ScalarSeed { path: &path, dups })?,
        };
        if self.seen & (1 << slot) != 0 {
            dups.borrow_mut().push(path.render());
        }
        self.seen |= 1 << slot;
        self.event.top[slot] = value;
        Ok(())
    }
}

/// An unknown key of an object: its value is read for the duplicates inside it, the key
/// is reported if `seen` holds it already, and `first` keeps the first unknown key in
/// sorted (byte) order.
fn unknown_key<'de, A: MapAccess<'de>>(
    map: &mut A,
    key: &Cow<'de, str>,
    path: &Path,
    dups: &RefCell<Vec<String>>,
    first: &mut Option<Cow<'de, str>>,
    seen: &mut Vec<Cow<'de, str>>,
) -> Result<(), A::Error> {
    map.next_value_seed(CanonSeed { path, dups })?;
    if seen.contains(key) {
        dups.borrow_mut().push(path.render());
    }
    if first.as_ref().is_none_or(|u| **key < **u) {
        *first = Some(key.clone());
    }
    seen.push(key.clone());
    Ok(())
}

/// The body: a single event, or `{"events": [...]}`.
struct BodySeed;

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = Body<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed {
    type Value = Body<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object or {\"events\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut b = Builder::new();
        let mut events: Option<Option<Vec<RawEvent<'de>>>> = None;
        let mut others = false;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == "events" {
                let root = Path::ROOT;
                let path = root.key("events");
                let v = map.next_value_seed(EventsSeed {
                    path: &path,
                    dups: &b.dups,
                })?;
                if events.is_some() {
                    b.dups.borrow_mut().push(path.render());
                }
                events = Some(v);
            } else {
                others = true;
                b.field(key, &mut map, &Path::ROOT)?;
            }
        }
        Ok(match events {
            None => Body::Single(Box::new(b.finish())),
            Some(events) => Body::Batch {
                events,
                others,
                duplicates: b.dups.into_inner(),
            },
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let dups = RefCell::new(Vec::new());
        CanonSeed {
            path: &Path::ROOT,
            dups: &dups,
        }
        .visit_seq(seq)?;
        Ok(Body::NotObject)
    }

    scalars_answer!(Body::NotObject, Body::NotObject);
}

/// The value of `events`: the events when it is an array, else `None` (its
/// duplicates, if an object, are the body's).
struct EventsSeed<'s> {
    path: &'s Path<'s>,
    dups: &'s RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for EventsSeed<'_> {
    type Value = Option<Vec<RawEvent<'de>>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_> {
    type Value = Option<Vec<RawEvent<'de>>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(e) = seq.next_element_seed(EventSeed)? {
            out.push(e);
        }
        Ok(Some(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        CanonSeed {
            path: self.path,
            dups: self.dups,
        }
        .visit_map(map)?;
        Ok(None)
    }

    scalars_answer!(None, None);
}

/// One event: an object read by [`Builder`]; anything else is "not an object" (an
/// array's duplicate keys are still the event's).
struct EventSeed;

impl<'de> DeserializeSeed<'de> for EventSeed {
    type Value = RawEvent<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventSeed {
    type Value = RawEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut b = Builder::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            b.field(key, &mut map, &Path::ROOT)?;
        }
        Ok(b.finish())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let dups = RefCell::new(Vec::new());
        CanonSeed {
            path: &Path::ROOT,
            dups: &dups,
        }
        .visit_seq(seq)?;
        let mut e = RawEvent::empty();
        e.duplicates = dups.into_inner();
        Ok(e)
    }

    scalars_answer!(RawEvent::empty(), RawEvent::empty());
}

/// A value validation reads as a string or a number: read as any value (its
/// duplicate keys reported), kept only when it is one.
struct ScalarSeed<'s> {
    path: &'s Path<'s>,
    dups: &'s RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for ScalarSeed<'_> {
    type Value = Slot<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let v = CanonSeed {
            path: self.path,
            dups: self.dups,
        }
        .deserialize(d)?;
        Ok(match v {
            // A non-finite number reads as `null` too: absent.
            Canon::Null => Slot::Absent,
            Canon::Str(s) => Slot::Str(s),
            Canon::Num(n) => Slot::Num(n),
            Canon::Bool(_) | Canon::Arr(_) | Canon::Obj(_) => Slot::Other,
        })
    }
}

/// `destinations`: an array's items as scalars.
struct ListSeed<'s> {
    path: &'s Path<'s>,
    dups: &'s RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Slot<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Slot<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let path = self.path.index(out.len());
            let seed = ScalarSeed {
                path: &path,
                dups: self.dups,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Slot::List(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        CanonSeed {
            path: self.path,
            dups: self.dups,
        }
        .visit_map(map)?;
        Ok(Slot::Other)
    }

    scalars_answer!(Slot::Other, Slot::Absent);
}

/// `user_data`: an object's known keys into their slots ([`Slot::Map`]); anything else
/// read as a scalar.
struct UserDataSeed<'s, 'de> {
    path: &'s Path<'s>,
    dups: &'s RefCell<Vec<String>>,
    slots: &'s mut Vec<(u8, Slot<'de>)>,
    seen: &'s mut u32,
    unknown: &'s mut Option<Cow<'de, str>>,
}

impl<'de> DeserializeSeed<'de> for UserDataSeed<'_, 'de> {
    type Value = Slot<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UserDataSeed<'_, 'de> {
    type Value = Slot<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // A second `user_data` (a duplicate: the event is refused) starts over.
        self.slots.clear();
        *self.seen = 0;
        *self.unknown = None;
        let mut unknown_seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let path = self.path.key(&key);
            let Some(slot) = user_data_slot(&key) else {
                unknown_key(
                    &mut map,
                    &key,
                    &path,
                    self.dups,
                    self.unknown,
                    &mut unknown_seen,
                )?;
                continue;
            };
            let v = map.next_value_seed(ScalarSeed {
                path: &path,
                dups: self.dups,
            })?;
            if *self.seen & (1 << slot) != 0 {
                self.dups.borrow_mut().push(path.render());
                self.slots.retain(|(s, _)| *s as usize != slot);
            }
            *self.seen |= 1 << slot;
            self.slots.push((slot as u8, v));
        }
        Ok(Slot::Map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        CanonSeed {
            path: self.path,
            dups: self.dups,
        }
        .visit_seq(seq)?;
        Ok(Slot::Other)
    }

    scalars_answer!(Slot::Other, Slot::Absent);
}

#[cfg(test)]
mod tests {
    //! The streaming reader against the reading it replaced: the whole body parsed into
    //! a `Value` (duplicates collected by [`crate::ingest::strict_json`]), the body's
    //! shape checked on the `Value`, and each event's slots filled from its map. For
    //! random bodies — known and unknown keys in any order, keys given twice, nulls,
    //! escapes, every JSON type where a string belongs — both give the same answer:
    //! the same body error, or per event the same duplicates, the same echoed
    //! `event_id` and the same validation result.

    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::event::{EventError, NormalizedEvent};
    use crate::ingest::strict_json;
    use crate::ingest::validate::{ValidateCtx, event_id_of, validate};

    /// What a caller sees of one event.
    type Seen = (
        Vec<String>,
        Option<String>,
        Result<NormalizedEvent, EventError>,
    );

    fn observe(events: &[RawEvent]) -> Vec<Seen> {
        let ids = ["meta_a".to_owned(), "klaviyo_a".to_owned()];
        let ctx = ValidateCtx {
            now_secs: 1_800_000_000,
            default_country_code: "1",
            destination_ids: &ids,
            keep_plaintext: true,
        };
        events
            .iter()
            .map(|e| (e.duplicates.clone(), event_id_of(e), validate(e, &ctx)))
            .collect()
    }

    fn canon(v: &Value) -> Canon<'static> {
        match v {
            Value::Null => Canon::Null,
            Value::Bool(b) => Canon::Bool(*b),
            Value::Number(n) => Canon::Num(n.clone()),
            Value::String(s) => Canon::Str(Cow::Owned(s.clone())),
            Value::Array(items) => Canon::Arr(items.iter().map(canon).collect()),
            Value::Object(m) => Canon::Obj(
                m.iter()
                    .map(|(k, v)| (Cow::Owned(k.clone()), canon(v)))
                    .collect(),
            ),
        }
    }

    fn slot(v: &Value) -> Slot<'static> {
        match v {
            Value::Null => Slot::Absent,
            Value::String(s) => Slot::Str(Cow::Owned(s.clone())),
            Value::Number(n) => Slot::Num(n.clone()),
            _ => Slot::Other,
        }
    }

    /// One event from its `Value` (a map iterates in sorted key order).
    fn from_value(v: &Value, duplicates: Vec<String>) -> RawEvent<'static> {
        let mut e = RawEvent::empty();
        e.duplicates = duplicates;
        let Value::Object(m) = v else { return e };
        e.object = true;
        for (k, v) in m {
            let Some(i) = TOP_KEYS.iter().position(|t| t == k) else {
                e.unknown.get_or_insert(Cow::Owned(k.clone()));
                continue;
            };
            e.top[i] = match (i, v) {
                (USER_DATA, Value::Object(ud)) => {
                    for (k, v) in ud {
                        match user_data_slot(k) {
                            Some(j) => e.user_data.push((j as u8, slot(v))),
                            None => {
                                e.unknown_user_data.get_or_insert(Cow::Owned(k.clone()));
                            }
                        }
                    }
                    Slot::Map
                }
                (CUSTOM_DATA, Value::Object(_)) => Slot::Json(canon(v)),
                (DESTINATIONS, Value::Array(items)) => Slot::List(items.iter().map(slot).collect()),
                _ => slot(v),
            };
        }
        e
    }

    /// The reading this module replaced.
    fn reference(bytes: &[u8]) -> Result<Vec<RawEvent<'static>>, String> {
        let parsed =
            strict_json::parse(bytes).map_err(|e| format!("the body is not valid JSON: {e}"))?;
        let v = parsed.value;
        let batch = matches!(&v, Value::Object(m) if m.contains_key("events"));
        let events = match v {
            Value::Object(mut m) if batch => {
                if let Some(d) = parsed.duplicates.iter().find(|d| !d.starts_with("events[")) {
                    return Err(format!("the key {d} appears more than once in the body"));
                }
                if m.len() != 1 {
                    return Err("a batch body is {\"events\": [...]} with no other key".to_string());
                }
                match m.remove("events") {
                    Some(Value::Array(a)) => a,
                    _ => return Err("\"events\" must be an array of event objects".to_string()),
                }
            }
            Value::Object(m) => vec![Value::Object(m)],
            _ => {
                return Err("the body must be an event object or {\"events\": [...]}".to_string());
            }
        };
        let mut dups = vec![Vec::new(); events.len()];
        for d in parsed.duplicates {
            if batch {
                if let Some(rest) = d.strip_prefix("events[")
                    && let Some((i, key)) = rest.split_once(']')
                    && let Ok(i) = i.parse::<usize>()
                    && let Some(slot) = dups.get_mut(i)
                {
                    slot.push(key.trim_start_matches('.').to_string());
                }
            } else {
                dups[0].push(d);
            }
        }
        Ok(events
            .iter()
            .zip(dups)
            .map(|(v, d)| from_value(v, d))
            .collect())
    }

    fn same(text: &str) {
        let got = parse_body(text.as_bytes());
        let want = reference(text.as_bytes());
        match (&got, &want) {
            (Ok(g), Ok(w)) => assert_eq!(observe(g), observe(w), "{text}"),
            _ => assert_eq!(got.err(), want.err(), "{text}"),
        }
    }

    /// An object written as text, so a key can be given twice.
    fn object(pairs: &[(String, String)]) -> String {
        let inner: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
            .collect();
        format!("{{{}}}", inner.join(","))
    }

    fn leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            (-3i64..2_000_000_000).prop_map(|n| n.to_string()),
            Just("1800000000.0".to_string()),
            Just("18446744073709551615".to_string()),
            Just("-0.5".to_string()),
            "[a-zA-Z0-9 @.+é\\-]{0,12}".prop_map(|s| Value::String(s).to_string()),
            // Escapes: the reader's owned strings.
            Just(r#""a\nb""#.to_string()),
            Just(r#""\u00e9v\"t""#.to_string()),
            Just(r#""  ""#.to_string()),
            Just(r#""meta_a""#.to_string()),
            Just(r#""klaviyo_a""#.to_string()),
            Just(r#""A@Example.com""#.to_string()),
            Just(r#""+1 415 555 0100""#.to_string()),
            Just(r#""US""#.to_string()),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((key(), inner), 0..4).prop_map(|p| object(&p)),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("event_id"),
            Just("event_name"),
            Just("event_time"),
            Just("action_source"),
            Just("destinations"),
            Just("email"),
            Just("phone"),
            Just("country"),
            Just("fbp"),
            Just("client_ip_address"),
            Just("zzz"),
            Just("Event_Name"),
            Just("a"),
            Just("events"),
        ]
        .prop_map(str::to_string)
    }

    fn user_data() -> impl Strategy<Value = String> {
        let k = prop_oneof![
            Just("email"),
            Just("phone"),
            Just("country"),
            Just("zip"),
            Just("fbp"),
            Just("client_user_agent"),
            Just("emial"),
            Just("b"),
        ];
        prop_oneof![
            4 => proptest::collection::vec((k.prop_map(str::to_string), leaf()), 0..5)
                .prop_map(|p| object(&p)),
            1 => value(),
        ]
    }

    fn event() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            3 => (Just("event_id".to_string()), prop_oneof![4 => "\"[a-z0-9-]{1,8}\"", 1 => leaf()]),
            3 => (Just("event_name".to_string()), prop_oneof![4 => Just("\"Purchase\"".to_string()), 1 => leaf()]),
            3 => (Just("event_time".to_string()), prop_oneof![4 => Just("1799999990".to_string()), 1 => leaf()]),
            1 => (Just("action_source".to_string()), leaf()),
            1 => (Just("event_source_url".to_string()), leaf()),
            2 => (Just("user_data".to_string()), user_data()),
            1 => (Just("custom_data".to_string()), value()),
            1 => (Just("destinations".to_string()), prop_oneof![
                proptest::collection::vec(leaf(), 0..3).prop_map(|v| format!("[{}]", v.join(","))),
                leaf(),
            ]),
            1 => (key(), value()),
        ];
        prop_oneof![
            8 => proptest::collection::vec(field, 0..9).prop_map(|p| object(&p)),
            1 => value(),
        ]
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(512),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn single_events_read_as_from_the_whole_value(e in event()) {
            same(&e);
        }

        #[test]
        fn batches_read_as_from_the_whole_value(
            events in proptest::collection::vec(event(), 0..5),
            extra in proptest::option::of((key(), value())),
            twice in any::<bool>(),
        ) {
            let mut pairs = vec![("events".to_string(), format!("[{}]", events.join(",")))];
            if twice {
                pairs.push(pairs[0].clone());
            }
            pairs.extend(extra);
            same(&object(&pairs));
        }
    }

    #[test]
    fn bodies_of_every_shape() {
        for text in [
            "",
            "[]",
            "5",
            "\"x\"",
            "null",
            "{",
            "{} x",
            r#"{"events": 5}"#,
            r#"{"events": null}"#,
            r#"{"events": {"a": 1, "a": 2}}"#,
            r#"{"events": [], "events": []}"#,
            r#"{"events": [], "x": {"a": 1, "a": 2}}"#,
            r#"{"events": [{"event_id": "a", "event_id": "b"}, [ {"c": 1, "c": 2} ], 7]}"#,
            r#"{"event_id": "a", "user_data": {"email": "x", "email": "y"}, "user_data": 1}"#,
            r#"{"zzz": 1, "zzz": {"q": [1, {"r": 1, "r": 2}]}}"#,
        ] {
            same(text);
        }
        let e = &parse_body(br#"{"events": [{"event_id": "a\"b", "event_name": "P"}]}"#)
            .expect("body")[0];
        assert_eq!(e.top[EVENT_ID], Slot::Str(Cow::Owned("a\"b".into())));
        assert!(matches!(&e.top[EVENT_NAME], Slot::Str(Cow::Borrowed("P"))));
    }
}
