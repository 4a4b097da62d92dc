//! Reading an event's fields the way every adapter needs them: user fields by source
//! (hash variant or clear value), value and currency, clear values, a size hint.

use super::{JsonObject, custom_data_json, write_json_hex, write_json_hex_array};
use crate::event::{ClearField, NormalizedEvent, Variant};

/// Where a platform's user field comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSrc {
    /// `["<hex>"]`: the hash of this variant, as a one-element array.
    HashedArray(Variant),
    /// `"<hex>"`.
    Hashed(Variant),
    /// The value as given.
    Clear(ClearField),
}

/// Writes the user fields an event has, in the order of `fields` (each adapter keeps its
/// table sorted by key: the order its bodies have always had).
pub fn write_user_fields(
    user: &mut JsonObject<'_>,
    fields: &[(&str, UserSrc)],
    e: &NormalizedEvent,
) {
    for (key, src) in fields {
        match *src {
            UserSrc::HashedArray(v) => {
                if let Some(h) = e.hash_of(v) {
                    write_json_hex_array(user.key(key), h);
                }
            }
            UserSrc::Hashed(v) => {
                if let Some(h) = e.hash_of(v) {
                    write_json_hex(user.key(key), h);
                }
            }
            UserSrc::Clear(f) => {
                if let Some((_, v)) = e.clear.iter().find(|(k, _)| *k == f) {
                    user.str(key, v);
                }
            }
        }
    }
}

/// A generous guess at an event's serialized size, to size a body once.
pub fn size_hint(e: &NormalizedEvent) -> usize {
    320 + e.event_id.len()
        + e.event_name.len()
        + e.event_source_url.as_ref().map_or(0, String::len)
        + e.hashed.len() * 80
        + e.clear.iter().map(|(_, v)| v.len() + 24).sum::<usize>()
        + e.custom_data.len()
}

/// The event's `custom_data.value` (as [`value_number`] reads it) and
/// `custom_data.currency` (as [`currency_text`] reads it), when `custom_data` is an
/// object: for adapters that send them as a number and a string (Google Ads, Microsoft
/// Ads, Reddit, Snapchat, X, Taboola, Outbrain, Criteo).
pub fn value_and_currency(e: &NormalizedEvent) -> (Option<serde_json::Number>, Option<String>) {
    let Some(serde_json::Value::Object(cd)) = custom_data_json(e) else {
        return (None, None);
    };
    let value = cd.get("value").and_then(value_number);
    let currency = cd
        .get("currency")
        .and_then(currency_text)
        .map(str::to_string);
    (value, currency)
}

/// A `custom_data.value` string's number: finite, written with surrounding blanks or
/// not.
fn finite_in(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A `custom_data.value` as a number: a number as given, or a string holding a finite
/// one.
pub fn value_number(v: &serde_json::Value) -> Option<serde_json::Number> {
    match v {
        serde_json::Value::Number(n) => Some(n.clone()),
        serde_json::Value::String(s) => finite_in(s).and_then(serde_json::Number::from_f64),
        _ => None,
    }
}

/// A `custom_data.value` as text, for platforms that take the value as a string
/// (LinkedIn, Pinterest): the same values as [`value_number`] takes, but as written — a
/// number's JSON text, a string trimmed (so `"7.10"` stays `7.10`, where the number
/// would be `7.1`).
pub fn value_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => finite_in(s).map(|_| s.trim().to_string()),
        _ => None,
    }
}

/// A `custom_data.currency`: a non-blank string, trimmed.
pub fn currency_text(v: &serde_json::Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|c| !c.is_empty())
}

/// A clear field's value when present and non-empty.
pub fn clear_value(e: &NormalizedEvent, f: ClearField) -> Option<&str> {
    e.clear
        .iter()
        .find(|(k, v)| *k == f && !v.is_empty())
        .map(|(_, v)| v.as_str())
}
