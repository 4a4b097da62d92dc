//! Meta Conversions API (platforms.md §1).
//!
//! - Request: `POST https://graph.facebook.com/v24.0/{pixel_id}/events?access_token=…`
//!   (v24.0 as Stape's facebook-tag; `endpoint` replaces scheme, host and port), JSON
//!   `{"data":[…]}`, up to 1,000 events. The token rides in the query string, so it is
//!   listed in [`HttpRequest::secrets`] and must be redacted from every URL shown.
//! - Per event: `event_name` (canonical names are Meta's standard events, so no default
//!   map; `event_map` overrides), `event_time` in **unix seconds**, `event_id` (Meta's
//!   dedup key together with `event_name`), `action_source` (required by Meta; `website`
//!   when the event has none), `event_source_url`, `custom_data` as given.
//! - `user_data`: `em` (variant `email`), `ph` (`phone_digits`: digits with country
//!   code, no `+`), `fn`, `ln`, `ct`, `st`, `zp`, `country`, `ge`, `db`, `external_id`
//!   as one-element arrays of lowercase-hex SHA-256; `client_ip_address`,
//!   `client_user_agent`, `fbc`, `fbp` unhashed.
//! - [`Adapter::check`]: Meta matches users on identifiers; an event is sendable when it
//!   has at least one of `em`, `ph`, `external_id`, `fbc`, `fbp`, or both
//!   `client_ip_address` and `client_user_agent`. Names, location, gender and birth date
//!   alone only support a match, so such an event is unsendable (it would be accepted
//!   and never attributed). Meta's own extra rule that website events carry
//!   `client_user_agent` is not enforced here (not in platforms.md).
//! - Classification (status first, then `error.code` refines): 2xx with
//!   `events_received` ≥ the events sent → delivered (a 2xx without it, or with an
//!   `error`, is retryable: never lose an event to a guess; Meta dedups on resend);
//!   429 → throttled; 401 → auth; 400/403 with code 4, 17, 32, 341, 613, 80004 →
//!   throttled (Meta throttles with HTTP **400**, not 429); 4xx with code 190 or 102 →
//!   auth; 4xx/5xx with code 1 or 2 → retryable; 408, 5xx and 3xx → retryable; any
//!   other 4xx rejects the whole batch without naming rows, so a batch of more than one
//!   event is bisected and a single event is rejected.
//! - Test sends ([`Adapter::mark_test`]): the destination's `test_event_code` param as
//!   the top-level `test_event_code` of the body; Meta shows such events in Events
//!   Manager's Test events and does not count them. Live requests never carry it.

use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, UserSrc, Verdict,
    batch_body, clear_value, custom_data_raw, event_name_for, json_post_bytes, retry_after_hint,
    with_endpoint, write_user_fields,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, Variant};

pub struct Meta;

pub static META: Meta = Meta;

pub const API_VERSION: &str = "v24.0";

/// Meta `user_data` keys of the hashed identifiers, by variant (platforms.md,
/// "Identifier variants").
pub const HASHED_FIELDS: [(&str, Variant); 11] = [
    ("em", Variant::Email),
    ("ph", Variant::PhoneDigits),
    ("fn", Variant::FirstName),
    ("ln", Variant::LastName),
    ("ct", Variant::City),
    ("st", Variant::State),
    ("zp", Variant::Zip),
    ("country", Variant::Country),
    ("ge", Variant::Gender),
    ("db", Variant::DateOfBirth),
    ("external_id", Variant::ExternalId),
];

/// Sent unhashed.
pub const CLEAR_FIELDS: [ClearField; 4] = [
    ClearField::ClientIpAddress,
    ClearField::ClientUserAgent,
    ClearField::Fbc,
    ClearField::Fbp,
];

/// Graph error codes meaning throttling (on 400/403).
pub const THROTTLE_CODES: [i64; 6] = [4, 17, 32, 341, 613, 80004];
/// Graph error codes meaning the token is bad (on any 4xx).
pub const AUTH_CODES: [i64; 2] = [190, 102];
/// Graph error codes meaning "transient, retry" (on 4xx or 5xx).
pub const TRANSIENT_CODES: [i64; 2] = [1, 2];

/// Every `user_data` member ([`HASHED_FIELDS`] and [`CLEAR_FIELDS`]), sorted by key: the
/// order the body has always had (it was serialized from a `BTreeMap`).
const USER_FIELDS: [(&str, UserSrc); 15] = [
    (
        "client_ip_address",
        UserSrc::Clear(ClearField::ClientIpAddress),
    ),
    (
        "client_user_agent",
        UserSrc::Clear(ClearField::ClientUserAgent),
    ),
    ("country", UserSrc::HashedArray(Variant::Country)),
    ("ct", UserSrc::HashedArray(Variant::City)),
    ("db", UserSrc::HashedArray(Variant::DateOfBirth)),
    ("em", UserSrc::HashedArray(Variant::Email)),
    ("external_id", UserSrc::HashedArray(Variant::ExternalId)),
    ("fbc", UserSrc::Clear(ClearField::Fbc)),
    ("fbp", UserSrc::Clear(ClearField::Fbp)),
    ("fn", UserSrc::HashedArray(Variant::FirstName)),
    ("ge", UserSrc::HashedArray(Variant::Gender)),
    ("ln", UserSrc::HashedArray(Variant::LastName)),
    ("ph", UserSrc::HashedArray(Variant::PhoneDigits)),
    ("st", UserSrc::HashedArray(Variant::State)),
    ("zp", UserSrc::HashedArray(Variant::Zip)),
];

/// Appends one event of `data` (keys sorted, as they have always been sent).
fn write_event(out: &mut Vec<u8>, dest: &Destination, ev: &OutEvent<'_>) {
    let e = ev.event;
    let mut o = JsonObject::begin(out);
    o.str(
        "action_source",
        e.action_source.as_deref().unwrap_or("website"),
    );
    if let Some(cd) = custom_data_raw(e) {
        o.raw("custom_data", cd.get());
    }
    o.str("event_id", &e.event_id);
    o.str("event_name", event_name_for(dest, &[], &e.event_name));
    if let Some(u) = &e.event_source_url {
        o.str("event_source_url", u);
    }
    o.i64("event_time", e.event_time);
    let mut user = JsonObject::begin(o.key("user_data"));
    write_user_fields(&mut user, &USER_FIELDS, e);
    user.end();
    o.end();
}

/// The Graph `error.code` of a response body, if any.
pub fn graph_error_code(body: &[u8]) -> Option<i64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.get("code")?.as_i64()
}

impl Adapter for Meta {
    /// `test_event_code` from the destination's params, at the top level of the body.
    fn test_mode(&self, dest: &Destination) -> super::TestMode {
        super::test_event_code_mode(dest)
    }

    fn mark_test(&self, dest: &Destination, req: &mut HttpRequest) {
        super::mark_test_event_code(dest, req);
    }

    fn request_id(&self, resp: &HttpResponse) -> Option<String> {
        super::body_request_id(&resp.body, "fbtrace_id")
    }

    fn platform(&self) -> Platform {
        Platform::Meta
    }

    fn check(&self, _dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        let matchable = [Variant::Email, Variant::PhoneDigits, Variant::ExternalId]
            .iter()
            .any(|v| e.hash_of(*v).is_some())
            || clear_value(e, ClearField::Fbc).is_some()
            || clear_value(e, ClearField::Fbp).is_some()
            || (clear_value(e, ClearField::ClientIpAddress).is_some()
                && clear_value(e, ClearField::ClientUserAgent).is_some());
        if matchable {
            Ok(())
        } else {
            Err(Unsendable(
                "meta needs one of email, phone, external_id, fbc, fbp, or client_ip_address with client_user_agent".into(),
            ))
        }
    }

    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        let pixel = dest.params.get("pixel_id").map_or("", String::as_str);
        let token = super::credential(dest, "access_token");
        let base = with_endpoint(
            &format!("https://graph.facebook.com/{API_VERSION}/{pixel}/events"),
            dest.endpoint.as_deref(),
        );
        let url = format!("{base}?access_token={}", super::percent_encode(&token));
        let body = batch_body(b"{\"data\":[", b"]}", events, |body, ev| {
            write_event(body, dest, ev);
        });
        json_post_bytes(url, "application/json", vec![], body, vec![token])
    }

    fn classify(&self, _dest: &Destination, n: usize, resp: &HttpResponse) -> Verdict {
        let code = graph_error_code(&resp.body);
        let status = resp.status;
        let class = match status {
            200..=299 => {
                let received = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v.get("events_received").and_then(Value::as_u64));
                match (code, received) {
                    (None, Some(r)) if r as usize >= n => Class::Delivered,
                    (Some(c), _) if THROTTLE_CODES.contains(&c) => Class::Throttled {
                        hold_ms: retry_after_hint(resp),
                    },
                    (Some(c), _) if AUTH_CODES.contains(&c) => Class::Auth,
                    _ => Class::Retryable,
                }
            }
            429 => Class::Throttled {
                hold_ms: retry_after_hint(resp),
            },
            401 => Class::Auth,
            400 | 403 if code.is_some_and(|c| THROTTLE_CODES.contains(&c)) => Class::Throttled {
                hold_ms: retry_after_hint(resp),
            },
            400..=499 if code.is_some_and(|c| AUTH_CODES.contains(&c)) => Class::Auth,
            400..=499 if code.is_some_and(|c| TRANSIENT_CODES.contains(&c)) => Class::Retryable,
            408 => Class::Retryable,
            400..=499 => {
                if n > 1 {
                    return Verdict::Bisect;
                }
                Class::Rejected
            }
            _ => Class::Retryable,
        };
        Verdict::Whole(class)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Map, Value, json};

    use super::*;
    use crate::platforms::testkit::{dests, events, outs};
    use crate::platforms::{custom_data_json, hex_hash, map_event_name};

    /// How bodies were built before they were written straight into bytes.
    fn event_json_ref(dest: &Destination, ev: &OutEvent<'_>) -> Value {
        let e = ev.event;
        let mut user = Map::new();
        for (key, variant) in HASHED_FIELDS {
            if let Some(h) = e.hash_of(variant) {
                user.insert(key.into(), json!([hex_hash(h)]));
            }
        }
        for f in CLEAR_FIELDS {
            if let Some((_, v)) = e.clear.iter().find(|(k, _)| *k == f) {
                user.insert(f.name().into(), json!(v));
            }
        }
        let mut out = Map::new();
        out.insert(
            "event_name".into(),
            json!(map_event_name(dest, &BTreeMap::new(), &e.event_name)),
        );
        out.insert("event_time".into(), json!(e.event_time));
        out.insert("event_id".into(), json!(e.event_id));
        out.insert(
            "action_source".into(),
            json!(e.action_source.as_deref().unwrap_or("website")),
        );
        if let Some(u) = &e.event_source_url {
            out.insert("event_source_url".into(), json!(u));
        }
        out.insert("user_data".into(), Value::Object(user));
        if let Some(cd) = custom_data_json(e) {
            out.insert("custom_data".into(), cd);
        }
        Value::Object(out)
    }

    #[test]
    fn user_fields_sorted_and_complete() {
        let keys: Vec<&str> = USER_FIELDS.iter().map(|(k, _)| *k).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(keys, sorted);
        let mut want: Vec<&str> = HASHED_FIELDS.iter().map(|(k, _)| *k).collect();
        want.extend(CLEAR_FIELDS.iter().map(|f| f.name()));
        want.sort_unstable();
        assert_eq!(keys, want);
        for (k, src) in USER_FIELDS {
            match src {
                UserSrc::HashedArray(v) => assert!(HASHED_FIELDS.contains(&(k, v))),
                UserSrc::Clear(f) => assert_eq!(f.name(), k),
                UserSrc::Hashed(_) => panic!("Meta sends hashes as arrays"),
            }
        }
    }

    #[test]
    fn body_bytes_equal_the_value_built_ones() {
        for dest in dests() {
            let evs = events();
            let outs = outs(&evs);
            for n in [1, 2, outs.len()] {
                let req = META.build(&dest, &outs[..n], 0);
                let data: Vec<Value> = outs[..n]
                    .iter()
                    .map(|ev| event_json_ref(&dest, ev))
                    .collect();
                let want = serde_json::to_vec(&json!({ "data": data })).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&req.body),
                    String::from_utf8_lossy(&want)
                );
            }
        }
    }
}
