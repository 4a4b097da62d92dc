//! Reddit Conversions API v2.0 (platforms.md §8).
//!
//! Facts (platforms.md §8, from Segment's and RudderStack's Reddit destinations):
//! - Request: `POST https://ads-api.reddit.com/api/v2.0/conversions/events/{ad_account_id}`
//!   with `Authorization: Bearer <access_token>` (a secret) and `content-type:
//!   application/json`; body `{"events":[…],"test_mode":false}`, up to 1,000 events
//!   (the policy's `max_batch`). `endpoint` replaces scheme, host and port.
//! - Per event: `event_at` (ISO-8601 UTC from `event_time`; Reddit refuses events
//!   168 h old or more, the policy's age limit), `event_type.tracking_type` (default map
//!   of platforms.md "Event names": `Purchase`, `AddToCart`, `Lead`, `ViewContent`,
//!   `Search`, `AddToWishlist` as is, `CompleteRegistration` → `SignUp`, `PageView` →
//!   `PageVisit`; `event_map` overrides; a name that is not one of Reddit's tracking
//!   types is sent as `Custom` with `custom_event_name`), `click_id` (`rdt_cid`),
//!   `event_metadata.conversion_id` (Reddit's dedup key: the `event_id`), and
//!   `event_metadata.currency` / `value_decimal` from `custom_data.currency` / `.value`
//!   (a number, or a string holding one) when present.
//! - `user`: `email` (variant `email_reddit`: lowercase, dots and `+tag` dropped from the
//!   local part), `phone_number` (variant `phone_e164`), `external_id` as lowercase-hex
//!   SHA-256; `ip_address` and `user_agent` as given. Only what the event has is sent.
//! - [`Adapter::check`]: unsendable without one of email, phone, external_id, `rdt_cid`,
//!   or both IP address and user agent (Reddit could not attribute it).
//! - Responses: `200 {"message":"Successfully processed N conversion events."}`; invalid
//!   events fail the **whole** request: `400 {"message":"There were N invalid conversion
//!   events. None were processed.","invalid_events":[{"error_message","event"}]}`, each
//!   `event` echoing an event as sent; `401` is either plain text `Authorization
//!   Required` or `{"success":false,"error":{"reason":"UNAUTHORIZED","explanation"}}`.
//!   RudderStack also checks `invalid_events` on a 2xx.
//!
//! Classification (row "all", refined): 2xx without `invalid_events` → delivered (the
//! success body carries nothing else to check); 2xx or 400 whose `invalid_events` name
//! events of the request → [`Verdict::RowsRejected`] with their indexes (they go to the
//! DLQ, the rest is sent again at once, SPEC §3); 400 whose body is not JSON → retryable
//! (a proxy's answer, not Reddit's: never lose events to a guess); any other 400, and a
//! 2xx naming invalid events none of which can be matched → rejected whole; 401 (both
//! shapes) → auth; 429 → throttled with `Retry-After`; 408, 5xx and 3xx → retryable;
//! other 4xx → rejected.
//!
//! Matching rows: [`Adapter::classify_events`] gets the request's events and looks the
//! echoed `event.event_metadata.conversion_id`s (our `event_id`s) up among them.
//!
//! Unverified: whether Reddit wants `conversion_id`, `ip_address` and `external_id`
//! hashed (Segment hashes all three; `conversion_id` and `ip_address` are sent plain
//! here, `external_id` hashed); Reddit's rate limits (none published: obey 429 and
//! `Retry-After`); whether 403 is ever used for credentials (treated as rejected, row
//! "all"); the v3 endpoint (`/api/v3/pixels/{pixel_id}/conversion_events`, used by
//! Stape) is not used.

use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, Verdict,
    batch_body, classify_status_all, clear_value, event_name_for, json_post_bytes,
    value_and_currency, with_endpoint, write_json, write_json_hex,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, NormalizedEvent, Variant};

pub struct Reddit;

pub static REDDIT: Reddit = Reddit;

pub const URL: &str = "https://ads-api.reddit.com/api/v2.0/conversions/events/";

/// platforms.md "Event names": canonical names that differ from Reddit's.
pub const DEFAULT_EVENT_MAP: [(&str, &str); 2] = [
    ("CompleteRegistration", "SignUp"),
    ("PageView", "PageVisit"),
];

/// Reddit's `tracking_type`s other than `Custom` (platforms.md §8).
pub const TRACKING_TYPES: [&str; 8] = [
    "Purchase",
    "AddToCart",
    "Lead",
    "SignUp",
    "PageVisit",
    "ViewContent",
    "Search",
    "AddToWishlist",
];

/// ISO-8601 UTC, to the second.
fn iso_seconds(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Appends one event (keys sorted).
fn write_event(out: &mut Vec<u8>, dest: &Destination, e: &NormalizedEvent) {
    let mut o = JsonObject::begin(out);
    if let Some(c) = clear_value(e, ClearField::RdtCid) {
        o.str("click_id", c);
    }
    o.str("event_at", &iso_seconds(e.event_time));
    let mut meta = JsonObject::begin(o.key("event_metadata"));
    meta.str("conversion_id", &e.event_id);
    let (value, currency) = value_and_currency(e);
    if let Some(c) = &currency {
        meta.str("currency", c);
    }
    if let Some(v) = &value {
        write_json(meta.key("value_decimal"), v);
    }
    meta.end();
    let name = event_name_for(dest, &DEFAULT_EVENT_MAP, &e.event_name);
    let mut ty = JsonObject::begin(o.key("event_type"));
    if TRACKING_TYPES.contains(&name) {
        ty.str("tracking_type", name);
    } else {
        // `Custom` given by an `event_map` names the event by its canonical name.
        let custom = if name == "Custom" {
            &e.event_name
        } else {
            name
        };
        ty.str("custom_event_name", custom);
        ty.str("tracking_type", "Custom");
    }
    ty.end();
    let mut user = JsonObject::begin(o.key("user"));
    if let Some(h) = e.hash_of(Variant::EmailReddit) {
        write_json_hex(user.key("email"), h);
    }
    if let Some(h) = e.hash_of(Variant::ExternalId) {
        write_json_hex(user.key("external_id"), h);
    }
    if let Some(ip) = clear_value(e, ClearField::ClientIpAddress) {
        user.str("ip_address", ip);
    }
    if let Some(h) = e.hash_of(Variant::PhoneE164) {
        write_json_hex(user.key("phone_number"), h);
    }
    if let Some(ua) = clear_value(e, ClearField::ClientUserAgent) {
        user.str("user_agent", ua);
    }
    user.end();
    o.end();
}

/// The indexes of the rows `invalid` names (by `event_metadata.conversion_id`, which is
/// the event's `event_id`). Sorted, deduped; empty when none can be matched.
fn match_rows(events: &[OutEvent<'_>], invalid: &[Value]) -> Vec<usize> {
    let ids: Vec<&str> = invalid
        .iter()
        .filter_map(|iv| {
            iv.pointer("/event/event_metadata/conversion_id")
                .and_then(Value::as_str)
        })
        .collect();
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| ids.contains(&e.event.event_id.as_str()))
        .map(|(i, _)| i)
        .collect()
}

impl Adapter for Reddit {
    fn platform(&self) -> Platform {
        Platform::Reddit
    }

    fn check(&self, _dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        let ok = [
            Variant::EmailReddit,
            Variant::PhoneE164,
            Variant::ExternalId,
        ]
        .iter()
        .any(|v| e.hash_of(*v).is_some())
            || clear_value(e, ClearField::RdtCid).is_some()
            || (clear_value(e, ClearField::ClientIpAddress).is_some()
                && clear_value(e, ClearField::ClientUserAgent).is_some());
        if ok {
            Ok(())
        } else {
            Err(Unsendable(
                "reddit needs one of email, phone, external_id, rdt_cid, or client_ip_address with client_user_agent".into(),
            ))
        }
    }

    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        let token = super::credential(dest, "access_token");
        let account = dest.params.get("ad_account_id").map_or("", String::as_str);
        let body = batch_body(
            b"{\"events\":[",
            b"],\"test_mode\":false}",
            events,
            |body, ev| write_event(body, dest, ev.event),
        );
        let mut url = with_endpoint(URL, dest.endpoint.as_deref());
        url.push_str(&super::percent_encode(account));
        json_post_bytes(
            url,
            "application/json",
            vec![("authorization".into(), format!("Bearer {token}"))],
            body,
            vec![token],
        )
    }

    fn classify(&self, dest: &Destination, _n: usize, resp: &HttpResponse) -> Verdict {
        self.classify_events(dest, &[], resp)
    }

    fn classify_events(
        &self,
        _dest: &Destination,
        events: &[OutEvent<'_>],
        resp: &HttpResponse,
    ) -> Verdict {
        let base = classify_status_all(resp);
        let named = matches!(base, Class::Delivered) || resp.status == 400;
        if !named {
            return Verdict::Whole(base);
        }
        let Ok(v) = serde_json::from_slice::<Value>(&resp.body) else {
            // A 2xx: Reddit's success carries nothing to check. A 400 that is not
            // Reddit's JSON: retry rather than lose events to a guess.
            return Verdict::Whole(if resp.status == 400 {
                Class::Retryable
            } else {
                base
            });
        };
        match v.get("invalid_events").and_then(Value::as_array) {
            Some(inv) if !inv.is_empty() => {
                let rows = match_rows(events, inv);
                if rows.is_empty() {
                    Verdict::Whole(Class::Rejected)
                } else {
                    Verdict::RowsRejected(rows)
                }
            }
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
            let req = REDDIT.build(&dest, &outs, 0);
            let v: Value = serde_json::from_slice(&req.body).unwrap();
            let got = v["events"].as_array().unwrap();
            assert_eq!(got.len(), outs.len());
            assert_eq!(v["test_mode"], false);
            for (g, e) in got.iter().zip(&evs) {
                assert_eq!(g["event_metadata"]["conversion_id"], e.event_id.as_str());
                assert!(g["event_type"]["tracking_type"].is_string());
            }
        }
    }

    #[test]
    fn unmatched_ids_match_nothing() {
        let e = |id: &str| NormalizedEvent {
            event_id: id.into(),
            event_name: "Purchase".into(),
            event_time: 0,
            action_source: None,
            event_source_url: None,
            hashed: vec![],
            clear: vec![],
            plaintext: vec![],
            custom_data: vec![],
            destinations: vec![],
        };
        let evs = [e("a"), e("b"), e("c")];
        let outs = outs(&evs);
        let inv = |id: &str| serde_json::json!([{"error_message": "x", "event": {"event_metadata": {"conversion_id": id}}}]);
        let one = |id: &str| inv(id).as_array().unwrap().clone();
        assert!(match_rows(&outs, &one("z")).is_empty());
        assert_eq!(match_rows(&outs, &one("b")), vec![1]);
        assert!(match_rows(&outs[..1], &one("b")).is_empty());
    }
}
