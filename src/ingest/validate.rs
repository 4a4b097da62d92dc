//! Per-event validation (SPEC §2): one event as [`crate::ingest::body`] read it in, a
//! [`NormalizedEvent`] or the first [`EventError`] out, in a fixed check order:
//! 1. not an object → `invalid_field`;
//! 2. unknown keys, top level then `user_data` → `unknown_field`;
//! 3. missing `event_id`, `event_name`, `event_time` (in that order) → `missing_field`;
//! 4. each field's validity, in the order `event_id`, `event_name`, `event_time`,
//!    `action_source`, `event_source_url`, `user_data` (keys in SPEC order),
//!    `custom_data`, `destinations`.
//!
//! A `null` is treated as absent. Messages name the field and never carry a `user_data`
//! value (it may be PII).

use serde_json::Value;

use super::body::{
    ACTION_SOURCE, CUSTOM_DATA, DESTINATIONS, EVENT_ID, EVENT_NAME, EVENT_SOURCE_URL, EVENT_TIME,
    RawEvent, Slot, TOP_KEYS, USER_DATA, USER_DATA_KEYS, parse_event,
};
use super::identifiers::{IdField, normalize_with};
use crate::event::{ClearField, EventError, NormalizedEvent, PlainField, Variant};

/// Largest `custom_data` accepted, serialized compactly (16 KiB).
pub const CUSTOM_DATA_MAX_BYTES: usize = 16 * 1024;
/// How far in the future an `event_time` may lie (clock skew allowance).
pub const EVENT_TIME_MAX_AHEAD_SECS: i64 = 300;
/// Length bounds, in Unicode scalar values.
pub const EVENT_ID_MAX_CHARS: usize = 128;
pub const EVENT_NAME_MAX_CHARS: usize = 64;

pub const MISSING_FIELD: &str = "missing_field";
pub const INVALID_FIELD: &str = "invalid_field";
pub const UNKNOWN_FIELD: &str = "unknown_field";
pub const EVENT_TIME_IN_FUTURE: &str = "event_time_in_future";
pub const UNKNOWN_DESTINATION: &str = "unknown_destination";

/// What validation needs to know about the workspace and the moment.
#[derive(Debug, Clone, Copy)]
pub struct ValidateCtx<'a> {
    /// Unix seconds now.
    pub now_secs: i64,
    /// `ingest.default_country_code`, prepended to national phone numbers.
    pub default_country_code: &'a str,
    /// This workspace's destination ids.
    pub destination_ids: &'a [String],
    /// Keep plaintext email/phone (a destination of the workspace needs them).
    pub keep_plaintext: bool,
}

/// The event's `event_id` when it is a string (for the `rejected` list).
/// At most its first [`ECHO_MAX_CHARS`] characters: a rejection never echoes a
/// megabyte back.
pub fn event_id_of(e: &RawEvent) -> Option<String> {
    match &e.top[EVENT_ID] {
        Slot::Str(s) => Some(match s.char_indices().nth(ECHO_MAX_CHARS) {
            Some((cut, _)) => format!("{}…", &s[..cut]),
            None => s.to_string(),
        }),
        _ => None,
    }
}

/// How much of a rejected event's id is echoed back.
pub const ECHO_MAX_CHARS: usize = 128;

/// Validates one event given as a JSON value (a test send; tests): the same checks as
/// an event of a request body, read from the value's text. A key the value holds twice
/// cannot occur (a `Value` keeps one).
pub fn validate_event(v: &Value, ctx: &ValidateCtx) -> Result<NormalizedEvent, EventError> {
    let text = serde_json::to_vec(v).map_err(|_| invalid("the event cannot be serialized"))?;
    let raw = parse_event(&text).map_err(|_| invalid("the event cannot be read"))?;
    validate(&raw, ctx)
}

/// Validates one event of a body and normalizes it: identifiers hashed in every
/// variant. (Keys given twice are the caller's to refuse first.)
pub fn validate(e: &RawEvent, ctx: &ValidateCtx) -> Result<NormalizedEvent, EventError> {
    // (1) shape.
    if !e.object {
        return Err(invalid("the event is not a JSON object"));
    }

    // (2) unknown keys: top level, then user_data, the first in sorted key order (what
    // a `serde_json::Map` without `preserve_order` iterates in, which this contract was
    // first written against).
    if let Some(key) = &e.unknown {
        return Err(EventError::new(
            UNKNOWN_FIELD,
            format!("unknown field {}", shown_key("", key)),
        ));
    }
    if let (Slot::Map, Some(key)) = (&e.top[USER_DATA], &e.unknown_user_data) {
        return Err(EventError::new(
            UNKNOWN_FIELD,
            format!("unknown field {}", shown_key("user_data.", key)),
        ));
    }

    // (3) required fields.
    for slot in [EVENT_ID, EVENT_NAME, EVENT_TIME] {
        if e.top[slot] == Slot::Absent {
            return Err(EventError::new(
                MISSING_FIELD,
                format!("missing required field {}", TOP_KEYS[slot]),
            ));
        }
    }

    // (4) each field, in order.
    let top = &e.top;
    let event_id = bounded_string(&top[EVENT_ID], "event_id", EVENT_ID_MAX_CHARS)?;
    let event_name = bounded_string(&top[EVENT_NAME], "event_name", EVENT_NAME_MAX_CHARS)?;
    let event_time = event_time(&top[EVENT_TIME], ctx.now_secs)?;
    let action_source = optional_string(&top[ACTION_SOURCE], "action_source")?;
    let event_source_url = optional_string(&top[EVENT_SOURCE_URL], "event_source_url")?;

    let mut hashed = Vec::new();
    let mut clear = Vec::new();
    let mut plaintext = Vec::new();
    match &top[USER_DATA] {
        Slot::Absent => {}
        Slot::Map => {
            let mut slots = [&Slot::Absent; USER_DATA_KEYS];
            for (i, v) in &e.user_data {
                slots[usize::from(*i)] = v;
            }
            user_data_fields(&slots, ctx, &mut hashed, &mut clear, &mut plaintext)?;
        }
        _ => return Err(invalid("user_data must be an object")),
    }

    let custom_data = match &top[CUSTOM_DATA] {
        Slot::Absent => Vec::new(),
        Slot::Json(v) => {
            let bytes =
                serde_json::to_vec(v).map_err(|_| invalid("custom_data cannot be serialized"))?;
            if bytes.len() > CUSTOM_DATA_MAX_BYTES {
                return Err(invalid(format!(
                    "custom_data is {} bytes serialized, more than {CUSTOM_DATA_MAX_BYTES}",
                    bytes.len()
                )));
            }
            bytes
        }
        _ => return Err(invalid("custom_data must be an object")),
    };

    let destinations = destinations(&top[DESTINATIONS], ctx.destination_ids)?;

    Ok(NormalizedEvent {
        event_id,
        event_name,
        event_time,
        action_source,
        event_source_url,
        hashed,
        clear,
        plaintext,
        custom_data,
        destinations,
    })
}

fn invalid(message: impl Into<String>) -> EventError {
    EventError::new(INVALID_FIELD, message)
}

/// A key as shown in a message: quoted, escaped and cut to 64 characters, since it is
/// the client's text.
fn shown_key(prefix: &str, key: &str) -> String {
    const MAX: usize = 64;
    match key.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", format!("{prefix}{}", &key[..cut])),
        None => format!("{:?}", format!("{prefix}{key}")),
    }
}

/// A required string of 1..=`max` Unicode scalar values.
fn bounded_string(v: &Slot, name: &str, max: usize) -> Result<String, EventError> {
    let Slot::Str(s) = v else {
        return Err(invalid(format!("{name} must be a string")));
    };
    // Bytes bound scalar values from above: count only when the byte length exceeds max.
    if s.is_empty() || (s.len() > max && s.chars().count() > max) {
        return Err(invalid(format!(
            "{name} must be 1 to {max} characters long"
        )));
    }
    if s.trim().is_empty() {
        return Err(invalid(format!("{name} must not be blank")));
    }
    // Ids and names travel in headers, log lines and platform payloads: no control
    // characters (a NUL, a newline) in them.
    if s.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{name} must not contain control characters (such as a newline or NUL)"
        )));
    }
    Ok(s.to_string())
}

fn optional_string(v: &Slot, name: &str) -> Result<Option<String>, EventError> {
    match v {
        Slot::Absent => Ok(None),
        Slot::Str(s) => Ok(Some(s.to_string())),
        _ => Err(invalid(format!("{name} must be a string"))),
    }
}

fn event_time(v: &Slot, now_secs: i64) -> Result<i64, EventError> {
    const NOT_SECONDS: &str = "event_time must be a non-negative integer (unix seconds)";
    let Slot::Num(n) = v else {
        return Err(invalid(NOT_SECONDS));
    };
    let latest = now_secs.saturating_add(EVENT_TIME_MAX_AHEAD_SECS);
    let future = |t: Option<i64>| {
        // A time in ms, µs or ns reads as far in the future: say what it looks like.
        let unit = t.and_then(|t| {
            [
                (1_000, "milliseconds"),
                (1_000_000, "microseconds"),
                (1_000_000_000, "nanoseconds"),
            ]
            .into_iter()
            // Plausible as unix seconds once divided: not too far ahead, after 2001.
            .find(|(per, _)| (1_000_000_000..=latest).contains(&(t / per)))
            .map(|(_, unit)| unit)
        });
        let hint = unit.map_or_else(String::new, |u| {
            format!(": {} looks like {u}: send unix seconds", t.unwrap_or(0))
        });
        EventError::new(
            EVENT_TIME_IN_FUTURE,
            format!("event_time is more than {EVENT_TIME_MAX_AHEAD_SECS} s in the future{hint}"),
        )
    };
    match (n.as_i64(), n.as_u64()) {
        (Some(t), _) if t < 0 => Err(invalid(NOT_SECONDS)),
        (Some(t), _) if t > latest => Err(future(Some(t))),
        (Some(t), _) => Ok(t),
        // An integer beyond i64 is far in the future.
        (None, Some(_)) => Err(future(None)),
        (None, None) => Err(invalid(NOT_SECONDS)),
    }
}

/// The longest `user_data` value taken, in characters: no identifier is longer (an
/// email is at most 254; a user agent, the longest clear field, rarely passes 512).
pub const USER_DATA_MAX_CHARS: usize = 1024;

/// `user_data.<key>` of at most [`USER_DATA_MAX_CHARS`] characters (the name is built
/// only for the error).
fn too_long(key: &str, s: &str) -> Result<(), EventError> {
    if s.len() > USER_DATA_MAX_CHARS && s.chars().count() > USER_DATA_MAX_CHARS {
        return Err(invalid(format!(
            "user_data.{key} must be at most {USER_DATA_MAX_CHARS} characters"
        )));
    }
    Ok(())
}

/// Validates the slotted `user_data` values in SPEC order, hashing identifiers and
/// keeping clear fields as given. Outputs come out sorted, since both slot orders
/// follow the `Variant` and `ClearField` orders.
fn user_data_fields(
    slots: &[&Slot; USER_DATA_KEYS],
    ctx: &ValidateCtx,
    hashed: &mut Vec<(Variant, [u8; 32])>,
    clear: &mut Vec<(ClearField, String)>,
    plaintext: &mut Vec<(PlainField, String)>,
) -> Result<(), EventError> {
    let (ids, clears) = slots.split_at(IdField::ALL.len());
    let country = match ids[IdField::Country as usize] {
        Slot::Str(s) => Some(&**s),
        _ => None,
    };
    let given = |v: &&&Slot| ***v != Slot::Absent;
    // Size the outputs once: one allocation each at most.
    hashed.reserve(
        IdField::ALL
            .iter()
            .zip(ids)
            .filter(|(_, v)| given(v))
            .map(|(f, _)| f.variants().len())
            .sum(),
    );
    clear.reserve(clears.iter().filter(given).count());
    let mut scratch = String::with_capacity(128);
    for (&field, value) in IdField::ALL.iter().zip(ids) {
        let raw = match value {
            Slot::Absent => continue,
            Slot::Str(raw) => raw,
            _ => {
                return Err(invalid(format!(
                    "user_data.{} must be a string",
                    field.key()
                )));
            }
        };
        too_long(field.key(), raw)?;
        let result = normalize_with(
            field,
            raw,
            ctx.default_country_code,
            country,
            &mut scratch,
            |variant, normalized, sha256| {
                hashed.push((variant, sha256));
                let plain = match variant {
                    Variant::Email => PlainField::Email,
                    Variant::PhoneE164 => PlainField::PhoneE164,
                    _ => return,
                };
                if let (true, Some(n)) = (ctx.keep_plaintext, normalized) {
                    plaintext.push((plain, n.to_owned()));
                }
            },
        );
        if let Err(reason) = result {
            return Err(invalid(format!("user_data.{} {reason}", field.key())));
        }
    }
    for (&field, value) in ClearField::ALL.iter().zip(clears) {
        match value {
            Slot::Absent => {}
            Slot::Str(s) if !s.trim().is_empty() => {
                too_long(field.name(), s)?;
                clear.push((field, s.to_string()));
            }
            Slot::Str(_) => {
                return Err(invalid(format!("user_data.{} is empty", field.name())));
            }
            _ => {
                return Err(invalid(format!(
                    "user_data.{} must be a string",
                    field.name()
                )));
            }
        }
    }
    debug_assert!(hashed.is_sorted_by_key(|(v, _)| *v));
    debug_assert!(clear.is_sorted_by_key(|(f, _)| *f));
    Ok(())
}

/// `destinations`: a non-empty array of this workspace's destination ids; given order,
/// duplicates dropped.
fn destinations(v: &Slot, known: &[String]) -> Result<Vec<String>, EventError> {
    let items = match v {
        Slot::Absent => return Ok(Vec::new()),
        Slot::List(items) if !items.is_empty() => items,
        Slot::List(_) => {
            return Err(invalid(
                "destinations must not be empty (leave it out to route to all)",
            ));
        }
        _ => return Err(invalid("destinations must be an array of strings")),
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Slot::Str(id) = item else {
            return Err(invalid(format!("destinations[{i}] must be a string")));
        };
        if !known.iter().any(|k| **k == **id) {
            return Err(EventError::new(
                UNKNOWN_DESTINATION,
                format!(
                    "destinations[{i}] {} is not a destination of this workspace",
                    shown_key("", id)
                ),
            ));
        }
        if !out.iter().any(|o| **o == **id) {
            out.push(id.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::body::user_data_slot;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn ids() -> Vec<String> {
        vec!["meta_a".to_owned(), "klaviyo_a".to_owned()]
    }

    fn ctx(ids: &[String], keep_plaintext: bool) -> ValidateCtx<'_> {
        ValidateCtx {
            now_secs: NOW,
            default_country_code: "1",
            destination_ids: ids,
            keep_plaintext,
        }
    }

    fn base() -> Value {
        json!({"event_id": "e1", "event_name": "Purchase", "event_time": NOW - 10})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = base();
        v[key] = value;
        v
    }

    fn user(key: &str, value: Value) -> Value {
        with("user_data", json!({ key: value }))
    }

    fn check(v: &Value) -> Result<NormalizedEvent, EventError> {
        let ids = ids();
        validate_event(v, &ctx(&ids, false))
    }

    fn code(v: &Value) -> &'static str {
        match check(v) {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn minimal_event() {
        let e = check(&base()).expect("valid");
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.event_name, "Purchase");
        assert_eq!(e.event_time, NOW - 10);
        assert_eq!(e.action_source, None);
        assert!(e.hashed.is_empty() && e.clear.is_empty() && e.plaintext.is_empty());
        assert!(e.custom_data.is_empty() && e.destinations.is_empty());
    }

    #[test]
    fn full_event() {
        let v = json!({
            "event_id": "e1", "event_name": "Purchase", "event_time": NOW,
            "action_source": "website", "event_source_url": "https://shop.example/x",
            "user_data": {
                "zip": "94107-1234", "email": " Test@Example.com ", "fbc": "fb.1.2.abc",
                "client_ip_address": "203.0.113.9", "phone": "650-555-1234", "country": "US",
            },
            "custom_data": {"value": 12.5, "currency": "USD"},
            "destinations": ["klaviyo_a", "meta_a", "klaviyo_a"],
        });
        let e = check(&v).expect("valid");
        assert_eq!(e.action_source.as_deref(), Some("website"));
        assert_eq!(
            e.event_source_url.as_deref(),
            Some("https://shop.example/x")
        );
        let variants: Vec<_> = e.hashed.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            variants,
            [
                Variant::Email,
                Variant::EmailGoogle,
                Variant::EmailReddit,
                Variant::PhoneDigits,
                Variant::PhoneE164,
                Variant::Zip,
                Variant::Country,
            ]
        );
        assert_eq!(
            hex::encode(e.hash_of(Variant::Email).expect("email")),
            "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
        );
        assert_eq!(
            hex::encode(e.hash_of(Variant::Zip).expect("zip")),
            "c884a209ebe08750a7d13db63bd02233b375bd79786cbe329ab11586cc35dead"
        );
        assert_eq!(
            e.clear,
            [
                (ClearField::ClientIpAddress, "203.0.113.9".to_owned()),
                (ClearField::Fbc, "fb.1.2.abc".to_owned()),
            ]
        );
        assert!(e.plaintext.is_empty());
        assert_eq!(e.custom_data, br#"{"currency":"USD","value":12.5}"#);
        assert_eq!(e.destinations, ["klaviyo_a", "meta_a"]);
    }

    #[test]
    fn plaintext_only_with_keep_plaintext_and_not_for_hashes() {
        let v = with(
            "user_data",
            json!({"email": " Test@Example.com ", "phone": "650-555-1234", "first_name": "Al"}),
        );
        let ids = ids();
        let kept = validate_event(&v, &ctx(&ids, true)).expect("valid");
        assert_eq!(
            kept.plaintext,
            [
                (PlainField::Email, "test@example.com".to_owned()),
                (PlainField::PhoneE164, "+16505551234".to_owned()),
            ]
        );
        let dropped = validate_event(&v, &ctx(&ids, false)).expect("valid");
        assert!(dropped.plaintext.is_empty());
        assert_eq!(kept.hashed, dropped.hashed);

        let h = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";
        let hashed = with("user_data", json!({"email": h, "phone": h}));
        let e = validate_event(&hashed, &ctx(&ids, true)).expect("valid");
        assert!(e.plaintext.is_empty());
        assert_eq!(e.hashed.len(), 5);
    }

    #[test]
    fn not_an_object() {
        for v in [json!([]), json!("e"), json!(1), json!(null)] {
            assert_eq!(code(&v), INVALID_FIELD);
        }
    }

    #[test]
    fn unknown_fields() {
        let e = check(&with("extra", json!(1))).expect_err("unknown");
        assert_eq!(e.code, UNKNOWN_FIELD);
        assert!(e.message.contains("\"extra\""), "{}", e.message);
        let e = check(&user("emial", json!("a@b.c"))).expect_err("unknown");
        assert_eq!(e.code, UNKNOWN_FIELD);
        assert!(e.message.contains("\"user_data.emial\""), "{}", e.message);
        // custom_data contents are free-form.
        assert_eq!(
            code(&with("custom_data", json!({"anything": {"x": 1}}))),
            "ok"
        );
        // A null unknown key is still unknown.
        assert_eq!(code(&with("extra", Value::Null)), UNKNOWN_FIELD);
        // Keys are case-sensitive.
        assert_eq!(code(&with("Event_Name", json!("x"))), UNKNOWN_FIELD);
        // A long key is cut in the message.
        let long = "k".repeat(500);
        let e = check(&with(&long, json!(1))).expect_err("unknown");
        assert!(e.message.len() < 100, "{}", e.message);
    }

    #[test]
    fn check_order() {
        // unknown key beats missing field
        assert_eq!(code(&json!({"event_id": "e", "bogus": 1})), UNKNOWN_FIELD);
        // unknown user_data key beats missing field and invalid top-level values
        let v = json!({"event_id": 5, "user_data": {"bogus": "x"}});
        assert_eq!(code(&v), UNKNOWN_FIELD);
        // top-level unknown beats user_data unknown
        let v = json!({"user_data": {"bogus_ud": "x"}, "zzz": 1});
        let e = check(&v).expect_err("unknown");
        assert!(e.message.contains("zzz"), "{}", e.message);
        // missing beats invalid, and is reported in the order id, name, time
        let e = check(&json!({"event_id": 5, "event_time": "x"})).expect_err("missing");
        assert_eq!(
            (e.code, e.message.contains("event_name")),
            (MISSING_FIELD, true)
        );
        let e = check(&json!({})).expect_err("missing");
        assert!(e.message.contains("event_id"), "{}", e.message);
        let e = check(&json!({"event_id": "e", "event_name": "n"})).expect_err("missing");
        assert!(e.message.contains("event_time"), "{}", e.message);
        // validity in field order: event_id before event_time before destinations
        let mut v = with("event_id", json!(""));
        v["event_time"] = json!(NOW + 10_000);
        v["destinations"] = json!(["nope"]);
        let e = check(&v).expect_err("invalid");
        assert!(e.code == INVALID_FIELD && e.message.contains("event_id"));
        v["event_id"] = json!("ok");
        assert_eq!(code(&v), EVENT_TIME_IN_FUTURE);
        v["event_time"] = json!(NOW);
        assert_eq!(code(&v), UNKNOWN_DESTINATION);
        // user_data keys in SPEC order, not document or alphabetical order
        let v = with(
            "user_data",
            json!({"zip": 5, "country": "USA", "date_of_birth": "x", "email": 1}),
        );
        let e = check(&v).expect_err("invalid");
        assert!(e.message.contains("user_data.email"), "{}", e.message);
        let v = with("user_data", json!({"gender": "x", "country": "USA"}));
        let e = check(&v).expect_err("invalid");
        assert!(e.message.contains("user_data.country"), "{}", e.message);
        // user_data before custom_data before destinations
        let mut v = user("gender", json!("x"));
        v["custom_data"] = json!(1);
        v["destinations"] = json!([]);
        assert!(check(&v).expect_err("e").message.contains("gender"));
        v["user_data"] = json!({});
        assert!(check(&v).expect_err("e").message.contains("custom_data"));
        v["custom_data"] = json!({});
        assert!(check(&v).expect_err("e").message.contains("destinations"));
    }

    #[test]
    fn nulls_are_absent() {
        let mut v = base();
        for k in [
            "action_source",
            "event_source_url",
            "user_data",
            "custom_data",
        ] {
            v[k] = Value::Null;
        }
        v["destinations"] = Value::Null;
        let e = check(&v).expect("valid");
        assert_eq!(e.action_source, None);
        let e = check(&user("email", Value::Null)).expect("valid");
        assert!(e.hashed.is_empty());
        // A null required field is missing.
        assert_eq!(code(&with("event_id", Value::Null)), MISSING_FIELD);
    }

    #[test]
    fn string_lengths_in_scalar_values() {
        assert_eq!(code(&with("event_id", json!("é".repeat(128)))), "ok");
        assert_eq!(
            code(&with("event_id", json!("é".repeat(129)))),
            INVALID_FIELD
        );
        assert_eq!(code(&with("event_id", json!("a".repeat(128)))), "ok");
        assert_eq!(
            code(&with("event_id", json!("a".repeat(129)))),
            INVALID_FIELD
        );
        assert_eq!(code(&with("event_id", json!("😀".repeat(128)))), "ok");
        assert_eq!(code(&with("event_id", json!(""))), INVALID_FIELD);
        assert_eq!(code(&with("event_name", json!("é".repeat(64)))), "ok");
        assert_eq!(
            code(&with("event_name", json!("é".repeat(65)))),
            INVALID_FIELD
        );
        assert_eq!(code(&with("event_name", json!(""))), INVALID_FIELD);
        assert_eq!(code(&with("event_id", json!(12))), INVALID_FIELD);
        assert_eq!(code(&with("event_name", json!(["x"]))), INVALID_FIELD);
    }

    #[test]
    fn event_time_rules() {
        assert_eq!(code(&with("event_time", json!(NOW + 300))), "ok");
        assert_eq!(
            code(&with("event_time", json!(NOW + 301))),
            EVENT_TIME_IN_FUTURE
        );
        assert_eq!(
            code(&with("event_time", json!(u64::MAX))),
            EVENT_TIME_IN_FUTURE
        );
        assert_eq!(code(&with("event_time", json!(0))), "ok");
        assert_eq!(code(&with("event_time", json!(-1))), INVALID_FIELD);
        assert_eq!(code(&with("event_time", json!(1.0))), INVALID_FIELD);
        assert_eq!(code(&with("event_time", json!(1.5))), INVALID_FIELD);
        assert_eq!(
            code(&with("event_time", json!("1800000000"))),
            INVALID_FIELD
        );
        assert_eq!(code(&with("event_time", json!(true))), INVALID_FIELD);
    }

    #[test]
    fn optional_strings_must_be_strings() {
        assert_eq!(code(&with("action_source", json!(1))), INVALID_FIELD);
        assert_eq!(code(&with("event_source_url", json!({}))), INVALID_FIELD);
        assert_eq!(code(&with("user_data", json!("x"))), INVALID_FIELD);
        assert_eq!(code(&with("user_data", json!([]))), INVALID_FIELD);
        assert_eq!(code(&user("fbp", json!(1))), INVALID_FIELD);
        assert_eq!(code(&user("fbp", json!(" "))), INVALID_FIELD);
        assert_eq!(
            code(&user("phone", json!(6_505_551_234_u64))),
            INVALID_FIELD
        );
    }

    /// `custom_data` whose compact serialization is exactly `n` bytes.
    fn custom_of_size(n: usize) -> Value {
        // {"k":"…"} is 8 bytes of framing around the string.
        json!({"k": "x".repeat(n - 8)})
    }

    #[test]
    fn custom_data_size_bound() {
        let exact = custom_of_size(CUSTOM_DATA_MAX_BYTES);
        assert_eq!(
            serde_json::to_vec(&exact).map(|b| b.len()).ok(),
            Some(16384)
        );
        let e = check(&with("custom_data", exact)).expect("16384 bytes is fine");
        assert_eq!(e.custom_data.len(), 16384);
        let over = custom_of_size(CUSTOM_DATA_MAX_BYTES + 1);
        let e = check(&with("custom_data", over)).expect_err("16385 bytes");
        assert_eq!(e.code, INVALID_FIELD);
        assert!(e.message.contains("16385"), "{}", e.message);
        assert_eq!(code(&with("custom_data", json!([1]))), INVALID_FIELD);
        assert_eq!(code(&with("custom_data", json!("{}"))), INVALID_FIELD);
        assert_eq!(
            check(&with("custom_data", json!({})))
                .map(|e| e.custom_data)
                .ok(),
            Some(b"{}".to_vec())
        );
    }

    #[test]
    fn destinations_rules() {
        assert_eq!(code(&with("destinations", json!(["meta_a"]))), "ok");
        assert_eq!(
            code(&with("destinations", json!(["meta_b"]))),
            UNKNOWN_DESTINATION
        );
        assert_eq!(
            code(&with("destinations", json!(["meta_a", "x"]))),
            UNKNOWN_DESTINATION
        );
        assert_eq!(code(&with("destinations", json!([]))), INVALID_FIELD);
        assert_eq!(code(&with("destinations", json!("meta_a"))), INVALID_FIELD);
        assert_eq!(
            code(&with("destinations", json!(["meta_a", 1]))),
            INVALID_FIELD
        );
    }

    #[test]
    fn invalid_identifiers() {
        assert_eq!(
            code(&user("date_of_birth", json!("1990-02-30"))),
            INVALID_FIELD
        );
        assert_eq!(
            code(&user("date_of_birth", json!("02/14/1990"))),
            INVALID_FIELD
        );
        assert_eq!(code(&user("country", json!("USA"))), INVALID_FIELD);
        assert_eq!(code(&user("gender", json!("other"))), INVALID_FIELD);
        assert_eq!(code(&user("phone", json!("n/a"))), INVALID_FIELD);
        assert_eq!(code(&user("email", json!("  "))), INVALID_FIELD);
    }

    #[test]
    fn messages_never_contain_user_data_values() {
        const SECRET: &str = "ZqSecret";
        let mut cases: Vec<Value> = ["email", "phone", "country", "gender", "date_of_birth"]
            .iter()
            .map(|k| user(k, json!(SECRET)))
            .collect();
        // Non-string values of every user_data key.
        for k in IdField::ALL
            .map(IdField::key)
            .into_iter()
            .chain(ClearField::ALL.map(ClearField::name))
        {
            cases.push(user(k, json!({ SECRET: SECRET })));
            cases.push(user(k, json!([SECRET])));
        }
        for v in cases {
            let e = check(&v).expect_err("invalid");
            assert_eq!(e.code, INVALID_FIELD);
            assert!(!e.message.contains(SECRET), "{}", e.message);
            assert!(e.message.contains("user_data."), "{}", e.message);
        }
    }

    #[test]
    fn user_data_slots_follow_spec_and_enum_order() {
        for (i, f) in IdField::ALL.into_iter().enumerate() {
            assert_eq!(user_data_slot(f.key()), Some(i), "{f:?}");
        }
        for (i, f) in ClearField::ALL.into_iter().enumerate() {
            assert_eq!(
                user_data_slot(f.name()),
                Some(IdField::ALL.len() + i),
                "{f:?}"
            );
        }
        assert_eq!(user_data_slot("event_id"), None);
    }

    #[test]
    fn event_id_of_reads_strings_only() {
        let id = |text: &str| event_id_of(&parse_event(text.as_bytes()).expect("json"));
        assert_eq!(id(r#"{"event_id": "e9"}"#), Some("e9".to_owned()));
        assert_eq!(id(r#"{"event_id": "a\nb"}"#), Some("a\nb".to_owned()));
        assert_eq!(id(r#"{"event_id": 9}"#), None);
        assert_eq!(id("{}"), None);
        assert_eq!(id(r#"["event_id"]"#), None);
        let long = format!(r#"{{"event_id": "{}"}}"#, "é".repeat(200));
        assert_eq!(id(&long), Some(format!("{}…", "é".repeat(ECHO_MAX_CHARS))));
    }
}
