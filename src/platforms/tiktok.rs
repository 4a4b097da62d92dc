//! TikTok Events API 2.0, v1.3 (platforms.md §2).
//!
//! - Request: `POST https://business-api.tiktok.com/open_api/v1.3/event/track/` with
//!   header `Access-Token: <access_token>` (a secret) and `content-type:
//!   application/json`; body `{"event_source":"web","event_source_id":<pixel_code>,
//!   "data":[…]}`, up to 1,000 events.
//! - Per event: `event` (default map `Purchase` → `CompletePayment`, `Lead` →
//!   `SubmitForm`, others as is; `event_map` overrides), `event_time` in **unix
//!   seconds**, `event_id` (TikTok's dedup key), `page.url` from `event_source_url`,
//!   `properties` = `custom_data` (or `{}`).
//! - `user`: `email` (variant `email`), `phone` (variant `phone_e164`: TikTok hashes
//!   phones as `+` and digits), `external_id` as arrays of lowercase-hex SHA-256;
//!   `first_name`, `last_name`, `zip_code` as single hashes (platforms.md lists TikTok
//!   among their users); `ttclid`, `ttp`, `ip`, `user_agent` in the clear. TikTok's
//!   plaintext city/state/country are not sent (platforms.md).
//! - [`Adapter::check`]: an event with no user signal at all (no hashed email, phone or
//!   external id, no ttclid/ttp, no IP or user agent) is unsendable: TikTok would take it
//!   and never match it.
//! - Classification: status first (row "all": 429 throttled, 401 auth, 408/5xx/3xx
//!   retryable, other 4xx rejected). **Errors come inside HTTP 200**: `code` 0 or 20001
//!   delivered; 40100 throttled; 40104/40105 auth (unverified); 40001/40002 rejected;
//!   any other non-zero code retryable, each unknown code logged once. A 2xx whose body
//!   is not the expected JSON is retryable (never lose an event to a guess; TikTok
//!   dedups resends on `event_id`).
//! - Test sends ([`Adapter::mark_test`]): the destination's `test_event_code` param as
//!   the top-level `test_event_code` of the body (TikTok's Events Manager test events);
//!   live requests never carry it.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, UserSrc, Verdict,
    classify_status_all, clear_value, custom_data_raw, event_name_for, json_post_bytes,
    retry_after_hint, size_hint, with_endpoint, write_json_str, write_user_fields,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, Variant};

pub struct Tiktok;

pub static TIKTOK: Tiktok = Tiktok;

pub const URL: &str = "https://business-api.tiktok.com/open_api/v1.3/event/track/";

/// platforms.md "Event names": TikTok's default map (names not listed pass as is).
pub const DEFAULT_EVENT_MAP: [(&str, &str); 5] = [
    ("Purchase", "CompletePayment"),
    ("InitiateCheckout", "InitiateCheckout"),
    ("AddToCart", "AddToCart"),
    ("Lead", "SubmitForm"),
    ("CompleteRegistration", "CompleteRegistration"),
];

/// `user` keys sent in the clear.
const CLEAR_FIELDS: [(&str, ClearField); 4] = [
    ("ttclid", ClearField::Ttclid),
    ("ttp", ClearField::Ttp),
    ("ip", ClearField::ClientIpAddress),
    ("user_agent", ClearField::ClientUserAgent),
];

/// Unknown `code`s already logged (each is logged once per process).
static SEEN_CODES: Mutex<BTreeSet<i64>> = Mutex::new(BTreeSet::new());

/// Every `user` member, sorted by key: the order the body has always had (it was
/// serialized from a `BTreeMap`).
const USER_FIELDS: [(&str, UserSrc); 10] = [
    ("email", UserSrc::HashedArray(Variant::Email)),
    ("external_id", UserSrc::HashedArray(Variant::ExternalId)),
    ("first_name", UserSrc::Hashed(Variant::FirstName)),
    ("ip", UserSrc::Clear(ClearField::ClientIpAddress)),
    ("last_name", UserSrc::Hashed(Variant::LastName)),
    ("phone", UserSrc::HashedArray(Variant::PhoneE164)),
    ("ttclid", UserSrc::Clear(ClearField::Ttclid)),
    ("ttp", UserSrc::Clear(ClearField::Ttp)),
    ("user_agent", UserSrc::Clear(ClearField::ClientUserAgent)),
    ("zip_code", UserSrc::Hashed(Variant::Zip)),
];

/// Appends one event of `data` (keys sorted, as they have always been sent).
fn write_event(out: &mut Vec<u8>, dest: &Destination, ev: &OutEvent<'_>) {
    let e = ev.event;
    let mut o = JsonObject::begin(out);
    o.str(
        "event",
        event_name_for(dest, &DEFAULT_EVENT_MAP, &e.event_name),
    );
    o.str("event_id", &e.event_id);
    o.i64("event_time", e.event_time);
    if let Some(u) = &e.event_source_url {
        let mut page = JsonObject::begin(o.key("page"));
        page.str("url", u);
        page.end();
    }
    o.raw("properties", custom_data_raw(e).map_or("{}", |cd| cd.get()));
    let mut user = JsonObject::begin(o.key("user"));
    write_user_fields(&mut user, &USER_FIELDS, e);
    user.end();
    o.end();
}

impl Adapter for Tiktok {
    /// `test_event_code` from the destination's params, at the top level of the body.
    fn test_mode(&self, dest: &Destination) -> super::TestMode {
        super::test_event_code_mode(dest)
    }

    fn mark_test(&self, dest: &Destination, req: &mut HttpRequest) {
        super::mark_test_event_code(dest, req);
    }

    fn request_id(&self, resp: &HttpResponse) -> Option<String> {
        super::body_request_id(&resp.body, "request_id")
    }

    fn platform(&self) -> Platform {
        Platform::Tiktok
    }

    fn check(&self, _dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        let any = [Variant::Email, Variant::PhoneE164, Variant::ExternalId]
            .iter()
            .any(|v| e.hash_of(*v).is_some())
            || CLEAR_FIELDS
                .iter()
                .any(|(_, f)| clear_value(e, *f).is_some());
        if any {
            Ok(())
        } else {
            Err(Unsendable(
                "tiktok needs one of email, phone, external_id, ttclid, ttp, client_ip_address, client_user_agent".into(),
            ))
        }
    }

    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        let token = super::credential(dest, "access_token");
        let pixel = dest.params.get("pixel_code").map_or("", String::as_str);
        let mut body = Vec::with_capacity(
            64 + pixel.len() + events.iter().map(|ev| size_hint(ev.event)).sum::<usize>(),
        );
        body.extend_from_slice(b"{\"data\":[");
        for (i, ev) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            write_event(&mut body, dest, ev);
        }
        body.extend_from_slice(b"],\"event_source\":\"web\",\"event_source_id\":");
        write_json_str(&mut body, pixel);
        body.push(b'}');
        json_post_bytes(
            with_endpoint(URL, dest.endpoint.as_deref()),
            "application/json",
            vec![("access-token".into(), token.clone())],
            body,
            vec![token],
        )
    }

    fn classify(&self, _dest: &Destination, _n: usize, resp: &HttpResponse) -> Verdict {
        let class = match classify_status_all(resp) {
            Class::Delivered => {
                let code = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v.get("code").and_then(Value::as_i64));
                match code {
                    Some(0 | 20001) => Class::Delivered,
                    Some(40100) => Class::Throttled {
                        hold_ms: retry_after_hint(resp),
                    },
                    Some(40104 | 40105) => Class::Auth,
                    Some(40001 | 40002) => Class::Rejected,
                    Some(c) => {
                        if SEEN_CODES.lock().is_ok_and(|mut s| s.insert(c)) {
                            tracing::warn!(
                                code = c,
                                status = resp.status,
                                "tiktok answered an unknown error code; retrying"
                            );
                        }
                        Class::Retryable
                    }
                    None => Class::Retryable,
                }
            }
            other => other,
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

    // How bodies were built before they were written straight into bytes.
    fn default_map() -> BTreeMap<&'static str, &'static str> {
        DEFAULT_EVENT_MAP.into_iter().collect()
    }

    fn event_json_ref(
        dest: &Destination,
        ev: &OutEvent<'_>,
        defaults: &BTreeMap<&str, &str>,
    ) -> Value {
        let e = ev.event;
        let mut user = Map::new();
        for (key, variant) in [
            ("email", Variant::Email),
            ("phone", Variant::PhoneE164),
            ("external_id", Variant::ExternalId),
        ] {
            if let Some(h) = e.hash_of(variant) {
                user.insert(key.into(), json!([hex_hash(h)]));
            }
        }
        for (key, variant) in [
            ("first_name", Variant::FirstName),
            ("last_name", Variant::LastName),
            ("zip_code", Variant::Zip),
        ] {
            if let Some(h) = e.hash_of(variant) {
                user.insert(key.into(), json!(hex_hash(h)));
            }
        }
        for (key, field) in CLEAR_FIELDS {
            if let Some((_, v)) = e.clear.iter().find(|(k, _)| *k == field) {
                user.insert(key.into(), json!(v));
            }
        }
        let mut out = Map::new();
        out.insert(
            "event".into(),
            json!(map_event_name(dest, defaults, &e.event_name)),
        );
        out.insert("event_time".into(), json!(e.event_time));
        out.insert("event_id".into(), json!(e.event_id));
        out.insert("user".into(), Value::Object(user));
        if let Some(u) = &e.event_source_url {
            out.insert("page".into(), json!({ "url": u }));
        }
        out.insert(
            "properties".into(),
            custom_data_json(e).unwrap_or_else(|| json!({})),
        );
        Value::Object(out)
    }

    #[test]
    fn user_fields_sorted() {
        let keys: Vec<&str> = USER_FIELDS.iter().map(|(k, _)| *k).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(keys, sorted);
        for (k, f) in CLEAR_FIELDS {
            assert!(
                USER_FIELDS
                    .iter()
                    .any(|(uk, s)| *uk == k && matches!(s, UserSrc::Clear(x) if *x == f))
            );
        }
    }

    #[test]
    fn body_bytes_equal_the_value_built_ones() {
        let defaults = default_map();
        for dest in dests() {
            let evs = events();
            let outs = outs(&evs);
            for n in [1, 2, outs.len()] {
                let req = TIKTOK.build(&dest, &outs[..n], 0);
                let data: Vec<Value> = outs[..n]
                    .iter()
                    .map(|ev| event_json_ref(&dest, ev, &defaults))
                    .collect();
                let pixel = dest.params.get("pixel_code").cloned().unwrap_or_default();
                let want = serde_json::to_vec(&json!({
                    "event_source": "web",
                    "event_source_id": pixel,
                    "data": data,
                }))
                .unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&req.body),
                    String::from_utf8_lossy(&want)
                );
            }
        }
    }
}
