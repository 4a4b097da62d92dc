//! Snapchat Conversions API v3 (platforms.md §7).
//!
//! Facts (platforms.md §7, from Snap's "Using the API" and "Verify setup" pages,
//! Segment's `snap-capi-v3.ts` and RudderStack's Snapchat destination):
//! - Request: `POST https://tr.snapchat.com/v3/{pixel_id}/events?access_token=<token>`
//!   (the token, percent-encoded, is a secret) with `content-type: application/json`;
//!   body `{"data":[…]}`, up to 2,000 events (the policy's `max_batch`). `endpoint`
//!   replaces scheme, host and port.
//! - Per event: `event_name` (Snap's upper-case names; default map of platforms.md
//!   "Event names", completed from Snap's list, see [`DEFAULT_EVENT_MAP`]; an
//!   `event_map` entry overrides), `event_time` in **unix seconds**, `event_id` (Snap's
//!   dedup key), `action_source` (`website`, `app` or `offline` from the event's own,
//!   `website` when it has none), `event_source_url`, `custom_data` with `currency` and
//!   `value` (a number, from a number or a string holding one) when present.
//! - `user_data`: `em` (variant `email`), `ph` (variant `phone_digits`), `external_id` as
//!   one-element arrays of lowercase-hex SHA-256; `client_ip_address`,
//!   `client_user_agent` and `sc_click_id` (the `sccid` click id) as given.
//! - [`Adapter::check`]: unsendable when the name (after `event_map`) is not one of
//!   Snap's event names ([`EVENT_NAMES`]: `Lead`, for one, has no Snap equivalent and
//!   needs an `event_map` entry), or without `em`, `ph`, or both IP address and user
//!   agent (Snap's identity rule; sluice has no `madid`).
//! - Responses: invalid events → `400 {"status":"INVALID","reason"}` (missing field,
//!   `PURCHASE` without price or currency, unhashed PII, too little PII, timestamp out of
//!   range); success `{"status":"VALID"|"SUCCESS","reason"}` (observed only in
//!   third-party logs).
//!
//! Classification (row "all", refined):
//! - 2xx → delivered, unless its JSON `status` says otherwise: `INVALID` is a
//!   validation failure like the 400 below; any other status than `VALID`/`SUCCESS`
//!   → retryable (logged once per status);
//! - 400 (or a 2xx saying `INVALID`) → a batch of more than one event is
//!   [`Verdict::Bisect`]ed (Snap names no row: halves are resent until the bad events
//!   are alone; Snap dedups the resent good ones on `event_id`), a single event is
//!   rejected;
//! - 401 → auth; 429 → throttled (`Retry-After` if any); 408, 5xx and 3xx → retryable;
//!   other 4xx (403, 404, …) → rejected.
//!
//! Unverified: whether one invalid event fails the whole batch (assumed, hence the
//! bisecting); the success body; whether Snap ever puts `INVALID` inside a 2xx; the
//! error body of 401/429/5xx; rate limits (none published: obey 429); the oldest
//! accepted `event_time` (v2 said 37 days; the policy uses 7).

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, UserSrc, Verdict,
    batch_body, classify_status_all, clear_value, event_name_for, json_post_bytes,
    value_and_currency, with_endpoint, write_json, write_user_fields,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, NormalizedEvent, Variant};

pub struct Snapchat;

pub static SNAPCHAT: Snapchat = Snapchat;

pub const URL: &str = "https://tr.snapchat.com/v3/";

/// platforms.md "Event names" (`PURCHASE`, `ADD_CART`, `START_CHECKOUT`, `SIGN_UP`,
/// `PAGE_VIEW`), completed with Snap's names for the other canonical events.
pub const DEFAULT_EVENT_MAP: [(&str, &str); 10] = [
    ("Purchase", "PURCHASE"),
    ("AddToCart", "ADD_CART"),
    ("InitiateCheckout", "START_CHECKOUT"),
    ("CompleteRegistration", "SIGN_UP"),
    ("PageView", "PAGE_VIEW"),
    ("ViewContent", "VIEW_CONTENT"),
    ("Search", "SEARCH"),
    ("AddPaymentInfo", "ADD_BILLING"),
    ("AddToWishlist", "ADD_TO_WISHLIST"),
    ("Subscribe", "SUBSCRIBE"),
];

/// Snap's `event_name`s (Conversions API v3).
pub const EVENT_NAMES: [&str; 30] = [
    "PAGE_VIEW",
    "VIEW_CONTENT",
    "ADD_CART",
    "ADD_TO_WISHLIST",
    "SIGN_UP",
    "SEARCH",
    "PURCHASE",
    "ADD_BILLING",
    "COMPLETE_TUTORIAL",
    "SUBSCRIBE",
    "AD_CLICK",
    "AD_VIEW",
    "START_CHECKOUT",
    "RATE",
    "LIST_VIEW",
    "ADD_TO_CART",
    "LEVEL_COMPLETE",
    "ACHIEVEMENT_UNLOCKED",
    "SPEND_CREDITS",
    "SAVE",
    "SHARE",
    "INVITE",
    "LOGIN",
    "RESERVE",
    "START_TRIAL",
    "CUSTOM_EVENT_1",
    "CUSTOM_EVENT_2",
    "CUSTOM_EVENT_3",
    "CUSTOM_EVENT_4",
    "CUSTOM_EVENT_5",
];

/// Every `user_data` member, sorted by key.
const USER_FIELDS: [(&str, UserSrc); 6] = [
    (
        "client_ip_address",
        UserSrc::Clear(ClearField::ClientIpAddress),
    ),
    (
        "client_user_agent",
        UserSrc::Clear(ClearField::ClientUserAgent),
    ),
    ("em", UserSrc::HashedArray(Variant::Email)),
    ("external_id", UserSrc::HashedArray(Variant::ExternalId)),
    ("ph", UserSrc::HashedArray(Variant::PhoneDigits)),
    ("sc_click_id", UserSrc::Clear(ClearField::Sccid)),
];

/// Unknown 2xx `status`es already logged (each once per process).
static SEEN_STATUSES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Snap's `action_source` for the event's.
pub fn action_source(src: Option<&str>) -> &'static str {
    match src.map(str::trim) {
        Some(s) if s.starts_with("app") => "app",
        Some("offline" | "physical_store" | "phone_call" | "system_generated") => "offline",
        _ => "website",
    }
}

/// Appends one event (keys sorted).
fn write_event(out: &mut Vec<u8>, dest: &Destination, e: &NormalizedEvent) {
    let mut o = JsonObject::begin(out);
    o.str("action_source", action_source(e.action_source.as_deref()));
    let (value, currency) = value_and_currency(e);
    if currency.is_some() || value.is_some() {
        let mut c = JsonObject::begin(o.key("custom_data"));
        if let Some(cur) = &currency {
            c.str("currency", cur);
        }
        if let Some(v) = &value {
            write_json(c.key("value"), v);
        }
        c.end();
    }
    o.str("event_id", &e.event_id);
    o.str(
        "event_name",
        event_name_for(dest, &DEFAULT_EVENT_MAP, &e.event_name),
    );
    if let Some(u) = &e.event_source_url {
        o.str("event_source_url", u);
    }
    o.i64("event_time", e.event_time);
    let mut user = JsonObject::begin(o.key("user_data"));
    write_user_fields(&mut user, &USER_FIELDS, e);
    user.end();
    o.end();
}

/// A validation failure Snap gave for `n` events.
fn invalid(n: usize) -> Verdict {
    if n > 1 {
        Verdict::Bisect
    } else {
        Verdict::Whole(Class::Rejected)
    }
}

impl Adapter for Snapchat {
    fn platform(&self) -> Platform {
        Platform::Snapchat
    }

    fn check(&self, dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        let name = event_name_for(dest, &DEFAULT_EVENT_MAP, &e.event_name);
        if !EVENT_NAMES.contains(&name) {
            return Err(Unsendable(format!(
                "snapchat has no event `{name}`: map `{}` to one of Snap's event names (event_map)",
                e.event_name
            )));
        }
        let ok = e.hash_of(Variant::Email).is_some()
            || e.hash_of(Variant::PhoneDigits).is_some()
            || (clear_value(e, ClearField::ClientIpAddress).is_some()
                && clear_value(e, ClearField::ClientUserAgent).is_some());
        if ok {
            Ok(())
        } else {
            Err(Unsendable(
                "snapchat needs a hashed email or phone, or client_ip_address with client_user_agent".into(),
            ))
        }
    }

    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        let token = super::credential(dest, "access_token");
        let pixel = dest.params.get("pixel_id").map_or("", String::as_str);
        let body = batch_body(b"{\"data\":[", b"]}", events, |body, ev| {
            write_event(body, dest, ev.event);
        });
        let mut url = with_endpoint(URL, dest.endpoint.as_deref());
        url.push_str(&super::percent_encode(pixel));
        url.push_str("/events?access_token=");
        url.push_str(&super::percent_encode(&token));
        json_post_bytes(url, "application/json", vec![], body, vec![token])
    }

    fn classify(&self, _dest: &Destination, n: usize, resp: &HttpResponse) -> Verdict {
        match resp.status {
            200..=299 => {
                let status = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v.get("status").and_then(Value::as_str).map(String::from));
                match status.as_deref() {
                    None | Some("VALID" | "SUCCESS") => Verdict::Whole(Class::Delivered),
                    Some("INVALID") => invalid(n),
                    Some(other) => {
                        if SEEN_STATUSES
                            .lock()
                            .is_ok_and(|mut s| s.insert(other.to_string()))
                        {
                            tracing::warn!(
                                status = other,
                                http = resp.status,
                                "snapchat answered an unknown status; retrying"
                            );
                        }
                        Verdict::Whole(Class::Retryable)
                    }
                }
            }
            400 => invalid(n),
            _ => Verdict::Whole(classify_status_all(resp)),
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
            let req = SNAPCHAT.build(&dest, &outs, 0);
            let v: Value = serde_json::from_slice(&req.body).unwrap();
            let got = v["data"].as_array().unwrap();
            assert_eq!(got.len(), outs.len());
            for (g, e) in got.iter().zip(&evs) {
                assert_eq!(g["event_id"], e.event_id.as_str());
                assert_eq!(g["event_time"], e.event_time);
            }
            assert!(req.url.ends_with("/events?access_token=tok%2Fen%2B1"));
        }
    }
}
