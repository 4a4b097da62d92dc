//! Pinterest Conversions API v5 (platforms.md §6).
//!
//! Facts (platforms.md §6, from Pinterest's `api-description` OpenAPI and Segment's
//! Pinterest destination):
//! - Request: `POST https://api.pinterest.com/v5/ad_accounts/{ad_account_id}/events`
//!   with `Authorization: Bearer <access_token>` (a secret) and `content-type:
//!   application/json`; body `{"data":[…]}`, 1 to 1,000 events (the policy's
//!   `max_batch`). `endpoint` replaces scheme, host and port.
//! - Per event: `event_name` (default map of platforms.md "Event names": `Purchase` →
//!   `checkout`, `AddToCart` → `add_to_cart`, `PageView` → `page_visit`, `Lead` →
//!   `lead`, `CompleteRegistration` → `signup`, every other name `custom`; an
//!   `event_map` entry overrides and must name one of Pinterest's events, see
//!   [`EVENT_NAMES`]), `action_source` (`web`, `app_android`, `app_ios`, `offline`: the
//!   event's own when it is one of these, `offline` for `physical_store`, `phone_call`
//!   and `offline`-like sources, else `web`), `event_time` in **unix seconds**,
//!   `event_id` (Pinterest's dedup key), `event_source_url`, `custom_data` with
//!   `currency`, `value` (a **string**) and `order_id` when `custom_data` has them.
//! - `user_data`: `em`, `ph` (variant `phone_digits`), `external_id`, `fn`, `ln`, `ct`,
//!   `st`, `zp`, `country`, `ge`, `db` as one-element arrays of lowercase-hex SHA-256;
//!   `client_ip_address`, `client_user_agent` and `click_id` (the `_epik` value) as
//!   given.
//! - [`Adapter::check`]: unsendable without a hashed email or both IP address and user
//!   agent (Pinterest requires `em`, `hashed_maids`, or both; sluice has no MAIDs), or
//!   when the `event_map` names an event Pinterest does not have.
//! - Responses: `200 {"num_events_received","num_events_processed","events":[{"status":
//!   "processed"|"failed","error_message","warning_message"}]}` with `events` in request
//!   order (**a 200 can carry failed events**); `422 {"code","message":"Not all events
//!   were successfully processed","details"}`; errors `{"code","message"}`: `400` code
//!   4196, `401` code 2, `403` code 29, `429` code 8, `503` code 4197.
//!
//! Classification (row "all", refined):
//! - 2xx with an `events` list → each row by its `status`: `processed` delivered,
//!   `failed` rejected (its `error_message` is a validation failure), anything else or a
//!   missing row retryable ([`Verdict::PerRow`]); all processed → delivered whole;
//! - 2xx without `events`: delivered when `num_events_processed` equals the events sent,
//!   else retryable (never lose an event to a guess; Pinterest dedups on `event_id`);
//!   a 2xx that is not JSON → retryable;
//! - 422 with an `events` list → [`Verdict::PerRow`] as above; without one, a batch of
//!   more than one event → [`Verdict::Bisect`] (halves are resent until the failing
//!   events are alone), a single event → rejected;
//! - 401 (code 2) and 403 code 29 (the token may not act for this ad account: a
//!   credentials problem, SPEC §3 "403 where the platform means credentials") → auth;
//!   429 (code 8) → throttled (`Retry-After` if any); 408, 5xx (503 code 4197) and 3xx
//!   → retryable; other 4xx (400 code 4196, 403 with another code, 404) → rejected.
//!
//! Unverified: the `details` shape of a 422 and whether Pinterest answers a partly failed
//! batch with that 422 or with a 200 carrying `failed` events (both are handled, the
//! simulator gives a 200 when some events were processed and a 422 when none were);
//! that 403 code 29 only ever means credentials; rate-limit header names; the oldest
//! accepted `event_time` (the policy uses 7 days).

use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, UserSrc, Verdict,
    batch_body, classify_status_all, clear_value, currency_text, custom_data_json, json_post_bytes,
    value_text, with_endpoint, write_user_fields,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, NormalizedEvent, Variant};

pub struct Pinterest;

pub static PINTEREST: Pinterest = Pinterest;

pub const URL: &str = "https://api.pinterest.com/v5/ad_accounts/";

/// platforms.md "Event names": Pinterest's default map; every other canonical name is
/// sent as `custom`.
pub const DEFAULT_EVENT_MAP: [(&str, &str); 5] = [
    ("Purchase", "checkout"),
    ("AddToCart", "add_to_cart"),
    ("PageView", "page_visit"),
    ("Lead", "lead"),
    ("CompleteRegistration", "signup"),
];

/// Pinterest's `event_name`s (openapi.json `ConversionEvents`).
pub const EVENT_NAMES: [&str; 9] = [
    "add_to_cart",
    "checkout",
    "custom",
    "lead",
    "page_visit",
    "search",
    "signup",
    "view_category",
    "watch_video",
];

/// Every `user_data` member, sorted by key.
const USER_FIELDS: [(&str, UserSrc); 14] = [
    ("click_id", UserSrc::Clear(ClearField::Epik)),
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
    ("fn", UserSrc::HashedArray(Variant::FirstName)),
    ("ge", UserSrc::HashedArray(Variant::Gender)),
    ("ln", UserSrc::HashedArray(Variant::LastName)),
    ("ph", UserSrc::HashedArray(Variant::PhoneDigits)),
    ("st", UserSrc::HashedArray(Variant::State)),
    ("zp", UserSrc::HashedArray(Variant::Zip)),
];

/// The Pinterest event name: the `event_map` as given, else the default map, else
/// `custom`.
pub fn event_name<'a>(dest: &'a Destination, name: &str) -> &'a str {
    if let Some(n) = dest.event_map.get(name) {
        return n;
    }
    DEFAULT_EVENT_MAP
        .iter()
        .find(|(k, _)| *k == name)
        .map_or("custom", |(_, v)| v)
}

/// Pinterest's `action_source` for the event's.
pub fn action_source(src: Option<&str>) -> &'static str {
    match src.map(str::trim) {
        Some("app_android") => "app_android",
        Some("app_ios") => "app_ios",
        Some("offline" | "physical_store" | "phone_call" | "system_generated") => "offline",
        _ => "web",
    }
}

/// Appends one event (keys sorted).
fn write_event(out: &mut Vec<u8>, dest: &Destination, e: &NormalizedEvent) {
    let mut o = JsonObject::begin(out);
    o.str("action_source", action_source(e.action_source.as_deref()));
    if let Some(Value::Object(cd)) = custom_data_json(e) {
        // Not `value_and_currency`: that would read `custom_data` a second time (for
        // `order_id`), and Pinterest takes the value as a string, as written.
        let currency = cd.get("currency").and_then(currency_text);
        let order = cd.get("order_id").and_then(Value::as_str);
        let value = cd.get("value").and_then(value_text);
        if currency.is_some() || order.is_some() || value.is_some() {
            let mut c = JsonObject::begin(o.key("custom_data"));
            if let Some(cur) = currency {
                c.str("currency", cur);
            }
            if let Some(oid) = order {
                c.str("order_id", oid);
            }
            if let Some(v) = &value {
                c.str("value", v);
            }
            c.end();
        }
    }
    o.str("event_id", &e.event_id);
    o.str("event_name", event_name(dest, &e.event_name));
    if let Some(u) = &e.event_source_url {
        o.str("event_source_url", u);
    }
    o.i64("event_time", e.event_time);
    let mut user = JsonObject::begin(o.key("user_data"));
    write_user_fields(&mut user, &USER_FIELDS, e);
    user.end();
    o.end();
}

/// One `events[i]` of Pinterest's answer.
fn row_class(row: Option<&Value>) -> Class {
    match row.and_then(|r| r.get("status")).and_then(Value::as_str) {
        Some("processed") => Class::Delivered,
        Some("failed") => Class::Rejected,
        _ => Class::Retryable,
    }
}

/// `events[]` of a body as one class per event sent; None when there is no list.
fn per_row(v: &Value, n: usize) -> Option<Verdict> {
    let rows = v.get("events").and_then(Value::as_array)?;
    let classes: Vec<Class> = (0..n).map(|i| row_class(rows.get(i))).collect();
    Some(if classes.iter().all(|c| *c == Class::Delivered) {
        Verdict::Whole(Class::Delivered)
    } else {
        Verdict::PerRow(classes)
    })
}

impl Adapter for Pinterest {
    fn platform(&self) -> Platform {
        Platform::Pinterest
    }

    fn check(&self, dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        let name = event_name(dest, &e.event_name);
        if !EVENT_NAMES.contains(&name) {
            return Err(Unsendable(format!(
                "pinterest has no event `{name}` (event_map of `{}`)",
                e.event_name
            )));
        }
        let ok = e.hash_of(Variant::Email).is_some()
            || (clear_value(e, ClearField::ClientIpAddress).is_some()
                && clear_value(e, ClearField::ClientUserAgent).is_some());
        if ok {
            Ok(())
        } else {
            Err(Unsendable(
                "pinterest needs a hashed email, or client_ip_address with client_user_agent"
                    .into(),
            ))
        }
    }

    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        let token = super::credential(dest, "access_token");
        let account = dest.params.get("ad_account_id").map_or("", String::as_str);
        let body = batch_body(b"{\"data\":[", b"]}", events, |body, ev| {
            write_event(body, dest, ev.event);
        });
        let mut url = with_endpoint(URL, dest.endpoint.as_deref());
        url.push_str(&super::percent_encode(account));
        url.push_str("/events");
        json_post_bytes(
            url,
            "application/json",
            vec![("authorization".into(), format!("Bearer {token}"))],
            body,
            vec![token],
        )
    }

    fn classify(&self, _dest: &Destination, n: usize, resp: &HttpResponse) -> Verdict {
        let base = classify_status_all(resp);
        let json = serde_json::from_slice::<Value>(&resp.body).ok();
        let code = json
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(Value::as_i64);
        match resp.status {
            200..=299 => {
                let Some(v) = json else {
                    return Verdict::Whole(Class::Retryable);
                };
                if let Some(verdict) = per_row(&v, n) {
                    return verdict;
                }
                let processed = v.get("num_events_processed").and_then(Value::as_u64);
                if processed.is_some_and(|p| p >= n as u64) {
                    Verdict::Whole(Class::Delivered)
                } else {
                    Verdict::Whole(Class::Retryable)
                }
            }
            422 => {
                if let Some(verdict) = json.as_ref().and_then(|v| per_row(v, n)) {
                    verdict
                } else if n > 1 {
                    Verdict::Bisect
                } else {
                    Verdict::Whole(Class::Rejected)
                }
            }
            403 if code == Some(29) => Verdict::Whole(Class::Auth),
            _ => Verdict::Whole(base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::testkit::{dests, events, outs};

    #[test]
    fn bodies_are_json_with_every_event() {
        for dest in dests() {
            let evs = events();
            let outs = outs(&evs);
            let req = PINTEREST.build(&dest, &outs, 0);
            let v: Value = serde_json::from_slice(&req.body).unwrap();
            let got = v["data"].as_array().unwrap();
            assert_eq!(got.len(), outs.len());
            for (g, e) in got.iter().zip(&evs) {
                assert_eq!(g["event_id"], e.event_id.as_str());
                assert_eq!(g["event_time"], e.event_time);
                assert!(g["user_data"].is_object());
            }
        }
    }

    #[test]
    fn action_sources() {
        assert_eq!(action_source(None), "web");
        assert_eq!(action_source(Some("website")), "web");
        assert_eq!(action_source(Some("app_ios")), "app_ios");
        assert_eq!(action_source(Some("physical_store")), "offline");
    }
}
