//! X (Twitter) Conversion API (platforms.md §9).
//!
//! Facts (platforms.md §9, from X's web-conversions API reference and Stape's
//! twitter-tag):
//! - Request: `POST https://ads-api.x.com/12/measurement/conversions/{pixel_id}` with
//!   `Authorization: Bearer <access_token>` (an Events-Manager token, a secret; OAuth
//!   1.0a user context is not used) and `content-type: application/json`; body
//!   `{"conversions":[…]}`, up to 500 (the policy's `max_batch`). `endpoint` replaces
//!   scheme, host and port.
//! - Per conversion: `event_id` = `params.event_id`, the **one pre-configured X event**
//!   of the destination (the event name is not sent, and the config requires an
//!   `events` filter, SPEC §3); `conversion_time` (ISO-8601 UTC with milliseconds);
//!   `conversion_id` (X's dedup key with the pixel: the `event_id`); `value` (a number,
//!   from a number or a string holding one) and `price_currency` from `custom_data` when
//!   present.
//! - `identifiers`, one object each: `{"twclid"}` (the click id), `{"hashed_email"}`
//!   (variant `email`), `{"hashed_phone_number"}` (variant `phone_e164`), and
//!   `{"ip_address","user_agent"}`, which X accepts only next to another identifier.
//! - [`Adapter::check`]: unsendable without a `twclid`, a hashed email or a hashed phone.
//! - Responses: `200 {"data":{"conversions_processed":N,"debug_id"},"request":{…}}`
//!   (**a 200 can process fewer conversions than were sent**); errors `{"errors":[{"code":
//!   "CAPS_CONSTANT","message"}],"request":{…}}`, and the body may be HTML (404); rate
//!   limit headers `x-rate-limit-limit`, `-remaining`, `-reset` (unix seconds).
//!
//! Classification (row "all", refined):
//! - 2xx with `data.conversions_processed` ≥ the conversions sent → delivered; fewer
//!   (0 included) → a batch of more than one is [`Verdict::Bisect`]ed (X names no
//!   conversion: halves are resent until the unprocessed ones are alone; X dedups the
//!   resent ones on `conversion_id`), a single conversion is rejected; a 2xx without
//!   `conversions_processed` (or not JSON) → retryable, logged once;
//! - 400 → bisected the same way (one bad conversion may fail the request; unverified);
//! - 429 → throttled until `Retry-After`, else until `x-rate-limit-reset` (SPEC §3);
//! - 401 → auth; 408, 5xx and 3xx → retryable; other 4xx (403, an HTML 404) → rejected.
//!
//! Unverified: whether X counts a deduplicated (resent) conversion as processed (if not,
//! a resent duplicate would be dead-lettered though X has it); whether a 400 is for the
//! whole request; the exact email/phone normalization (Stape: trimmed lowercase);
//! whether 403 (`UNAUTHORIZED_CLIENT_APPLICATION`-style) means credentials (rejected
//! here, row "all"); the oldest accepted `conversion_time` (the policy uses 7 days).

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, Verdict,
    batch_body, classify_status_all, clear_value, json_post_bytes, retry_after_hint,
    value_and_currency, with_endpoint, write_json, write_json_hex,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, NormalizedEvent, Variant};

pub struct X;

pub static X_ADS: X = X;

pub const URL: &str = "https://ads-api.x.com/12/measurement/conversions/";

/// Whether a 2xx without `conversions_processed` was logged (once per process).
static LOGGED_UNREADABLE: AtomicBool = AtomicBool::new(false);

/// ISO-8601 UTC with milliseconds (`2026-11-02T11:59:00.000Z`).
fn iso_millis(secs: i64) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&f).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

/// Appends one conversion (keys sorted).
fn write_conversion(out: &mut Vec<u8>, x_event: &str, e: &NormalizedEvent) {
    let mut o = JsonObject::begin(out);
    o.str("conversion_id", &e.event_id);
    o.str("conversion_time", &iso_millis(e.event_time));
    o.str("event_id", x_event);
    let ids = o.key("identifiers");
    ids.push(b'[');
    let mut n = 0;
    let mut sep = |ids: &mut Vec<u8>| {
        if n > 0 {
            ids.push(b',');
        }
        n += 1;
    };
    if let Some(c) = clear_value(e, ClearField::Twclid) {
        sep(ids);
        let mut id = JsonObject::begin(ids);
        id.str("twclid", c);
        id.end();
    }
    if let Some(h) = e.hash_of(Variant::Email) {
        sep(ids);
        let mut id = JsonObject::begin(ids);
        write_json_hex(id.key("hashed_email"), h);
        id.end();
    }
    if let Some(h) = e.hash_of(Variant::PhoneE164) {
        sep(ids);
        let mut id = JsonObject::begin(ids);
        write_json_hex(id.key("hashed_phone_number"), h);
        id.end();
    }
    let ip = clear_value(e, ClearField::ClientIpAddress);
    let ua = clear_value(e, ClearField::ClientUserAgent);
    if ip.is_some() || ua.is_some() {
        sep(ids);
        let mut id = JsonObject::begin(ids);
        if let Some(ip) = ip {
            id.str("ip_address", ip);
        }
        if let Some(ua) = ua {
            id.str("user_agent", ua);
        }
        id.end();
    }
    ids.push(b']');
    let (value, currency) = value_and_currency(e);
    if let Some(c) = &currency {
        o.str("price_currency", c);
    }
    if let Some(v) = &value {
        write_json(o.key("value"), v);
    }
    o.end();
}

/// `x-rate-limit-reset` (unix seconds) as ms from the response's `Date` (else the
/// system clock), capped at one hour.
pub fn rate_limit_reset_hint(resp: &HttpResponse) -> Option<i64> {
    let reset: i64 = resp.header("x-rate-limit-reset")?.trim().parse().ok()?;
    let now_ms = resp
        .header("date")
        .and_then(|d| {
            time::OffsetDateTime::parse(d.trim(), &time::format_description::well_known::Rfc2822)
                .ok()
        })
        .map_or_else(
            || crate::clock::Clock::now_ms(&crate::clock::SystemClock),
            |t| t.unix_timestamp() * 1000,
        );
    Some((reset * 1000 - now_ms).clamp(0, 3_600_000))
}

/// A request X did not (fully) take, for `n` conversions.
fn not_processed(n: usize) -> Verdict {
    if n > 1 {
        Verdict::Bisect
    } else {
        Verdict::Whole(Class::Rejected)
    }
}

impl Adapter for X {
    fn platform(&self) -> Platform {
        Platform::X
    }

    fn check(&self, _dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        if clear_value(e, ClearField::Twclid).is_some()
            || e.hash_of(Variant::Email).is_some()
            || e.hash_of(Variant::PhoneE164).is_some()
        {
            Ok(())
        } else {
            Err(Unsendable(
                "x needs a twclid, a hashed email or a hashed phone (IP address and user agent only count next to one)".into(),
            ))
        }
    }

    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        let token = super::credential(dest, "access_token");
        let pixel = dest.params.get("pixel_id").map_or("", String::as_str);
        let x_event = dest.params.get("event_id").map_or("", String::as_str);
        let body = batch_body(b"{\"conversions\":[", b"]}", events, |body, ev| {
            write_conversion(body, x_event, ev.event);
        });
        let mut url = with_endpoint(URL, dest.endpoint.as_deref());
        url.push_str(&super::percent_encode(pixel));
        json_post_bytes(
            url,
            "application/json",
            vec![("authorization".into(), format!("Bearer {token}"))],
            body,
            vec![token],
        )
    }

    fn classify(&self, _dest: &Destination, n: usize, resp: &HttpResponse) -> Verdict {
        match resp.status {
            200..=299 => {
                let processed = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/data/conversions_processed")
                            .and_then(Value::as_u64)
                    });
                match processed {
                    Some(p) if p >= n as u64 => Verdict::Whole(Class::Delivered),
                    Some(_) => not_processed(n),
                    None => {
                        if !LOGGED_UNREADABLE.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                status = resp.status,
                                "x answered a 2xx without conversions_processed; retrying"
                            );
                        }
                        Verdict::Whole(Class::Retryable)
                    }
                }
            }
            400 => not_processed(n),
            429 => Verdict::Whole(Class::Throttled {
                hold_ms: retry_after_hint(resp).or_else(|| rate_limit_reset_hint(resp)),
            }),
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
            let req = X_ADS.build(&dest, &outs, 0);
            let v: Value = serde_json::from_slice(&req.body).unwrap();
            let got = v["conversions"].as_array().unwrap();
            assert_eq!(got.len(), outs.len());
            for (g, e) in got.iter().zip(&evs) {
                assert_eq!(g["conversion_id"], e.event_id.as_str());
                assert!(g["identifiers"].is_array());
            }
        }
        assert_eq!(iso_millis(1_793_620_740), "2026-11-02T11:59:00.000Z");
    }
}
