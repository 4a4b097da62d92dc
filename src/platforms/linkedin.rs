//! LinkedIn Conversions API (platforms.md §5).
//!
//! Facts (platforms.md §5, from Stape's and Segment's LinkedIn tags and RudderStack's
//! LinkedIn destination):
//! - Request: `POST https://api.linkedin.com/rest/conversionEvents` with
//!   `Authorization: Bearer <access_token>` (a secret), `LinkedIn-Version: 202603`
//!   (a `params.linkedin_version` of `YYYYMM` overrides it), `X-Restli-Protocol-Version:
//!   2.0.0`, and, since every request is a batch, `X-RestLi-Method: BATCH_CREATE` with
//!   body `{"elements":[…]}` of up to 5,000 elements (the policy's `max_batch`).
//!   `endpoint` replaces scheme, host and port.
//! - Per element: `conversion` = `urn:lla:llaPartnerConversion:{conversion_rule_id}`:
//!   LinkedIn has **one fixed conversion rule** per destination, so the event name is
//!   not sent and the config requires an `events` filter (SPEC §3);
//!   `conversionHappenedAt` in **epoch milliseconds** (LinkedIn refuses events more
//!   than 90 days old, the policy's age limit); `eventId` (LinkedIn's dedup key: the
//!   `event_id`); `conversionValue{currencyCode, amount}` (amount a decimal **string**)
//!   when `custom_data` has both `currency` and a numeric `value` (a number or a string
//!   holding one).
//! - `user.userIds`: `SHA256_EMAIL` (variant `email`: trimmed, lowercase, SHA-256 hex)
//!   and `LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID` (the `li_fat_id` click id, as given).
//!   `userInfo` (plaintext names) is not sent (platforms.md "Identifier variants").
//! - [`Adapter::check`]: unsendable without a hashed email or a `li_fat_id`: LinkedIn
//!   requires at least one `userIds` entry.
//! - Responses: a batch → `200 {"elements":[{"status":201},…]}`; errors
//!   `{"status","serviceErrorCode","code","message"}`, e.g. `401 / 65600 /
//!   INVALID_ACCESS_TOKEN`, `401 / 65601 / REVOKED_ACCESS_TOKEN`; a per-element
//!   validation failure fails the **whole batch** with `422` and a message of lines
//!   `Index: <n>, ERROR :: /<path> :: <text>`; `426` = the `LinkedIn-Version` is sunset.
//!
//! Classification (row "all", refined):
//! - 2xx → delivered, unless the body lists `elements` whose own `status` is not 2xx:
//!   then [`Verdict::PerRow`] (each element: 2xx delivered, 429 throttled, 401 auth,
//!   408/5xx retryable, other 4xx rejected, missing retryable);
//! - 422 whose message names rows (`Index: n`) → [`Verdict::RowsRejected`] with those
//!   indexes (they go to the DLQ, the rest is sent again at once, SPEC §3); a 422 naming
//!   no row → rejected whole;
//! - 426 → gone (`api_version_retired`: the destination pauses, SPEC §3);
//! - 401 (65600, 65601, …) → auth; 429 → throttled (`Retry-After` if any); 408, 5xx and
//!   3xx → retryable; other 4xx (400, 403, 404, …) → rejected.
//!
//! Unverified: the element statuses inside a batch `200` other than 201 (RudderStack
//! only shows 201s); whether 403 (e.g. a token without `rw_conversions`) should count as
//! credentials (treated as rejected, row "all"); LinkedIn's per-minute limits (only a
//! Salesforce connector doc gives 600/min and 300,000/day: the defaults); which
//! `LinkedIn-Version`s are live (202603 is the one platforms.md names).

use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, Verdict,
    batch_body, classify_status_all, clear_value, currency_text, custom_data_json, json_post_bytes,
    value_text, with_endpoint, write_json_hex,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, NormalizedEvent, Variant};

pub struct Linkedin;

pub static LINKEDIN: Linkedin = Linkedin;

pub const URL: &str = "https://api.linkedin.com/rest/conversionEvents";

/// The `LinkedIn-Version` sent unless `params.linkedin_version` says otherwise.
pub const VERSION: &str = "202603";

/// `custom_data.currency` and `.value` as LinkedIn's `conversionValue` wants them:
/// the currency trimmed, the amount as a decimal string. None unless both exist.
/// Not `value_and_currency`: LinkedIn takes the amount as a string, as written
/// (`value_text`), and neither part without the other.
fn conversion_value(e: &NormalizedEvent) -> Option<(String, String)> {
    let Some(Value::Object(cd)) = custom_data_json(e) else {
        return None;
    };
    let currency = currency_text(cd.get("currency")?)?;
    let amount = value_text(cd.get("value")?)?;
    Some((currency.to_string(), amount))
}

/// Appends one element (keys sorted).
fn write_element(out: &mut Vec<u8>, rule: &str, e: &NormalizedEvent) {
    let mut o = JsonObject::begin(out);
    o.str(
        "conversion",
        &format!("urn:lla:llaPartnerConversion:{rule}"),
    );
    o.i64("conversionHappenedAt", e.event_time.saturating_mul(1000));
    if let Some((currency, amount)) = conversion_value(e) {
        let mut v = JsonObject::begin(o.key("conversionValue"));
        v.str("amount", &amount);
        v.str("currencyCode", &currency);
        v.end();
    }
    o.str("eventId", &e.event_id);
    let mut user = JsonObject::begin(o.key("user"));
    let ids = user.key("userIds");
    ids.push(b'[');
    let mut first = true;
    if let Some(h) = e.hash_of(Variant::Email) {
        let mut id = JsonObject::begin(ids);
        id.str("idType", "SHA256_EMAIL");
        write_json_hex(id.key("idValue"), h);
        id.end();
        first = false;
    }
    if let Some(c) = clear_value(e, ClearField::LiFatId) {
        if !first {
            ids.push(b',');
        }
        let mut id = JsonObject::begin(ids);
        id.str("idType", "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID");
        id.str("idValue", c);
        id.end();
    }
    ids.push(b']');
    user.end();
    o.end();
}

/// The rows a 422 names: every `Index: <n>` of its `message`, sorted and deduped.
pub fn indexes_named(message: &str) -> Vec<usize> {
    let mut rows: Vec<usize> = message
        .match_indices("Index:")
        .filter_map(|(at, m)| {
            let rest = message[at + m.len()..].trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// One batch element's `status`, classified like an HTTP status (row "all").
fn element_class(status: Option<i64>) -> Class {
    match status {
        Some(200..=299) => Class::Delivered,
        Some(429) => Class::Throttled { hold_ms: None },
        Some(401) => Class::Auth,
        Some(408) => Class::Retryable,
        Some(400..=499) => Class::Rejected,
        _ => Class::Retryable,
    }
}

impl Adapter for Linkedin {
    fn platform(&self) -> Platform {
        Platform::Linkedin
    }

    fn check(&self, _dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        if e.hash_of(Variant::Email).is_some() || clear_value(e, ClearField::LiFatId).is_some() {
            Ok(())
        } else {
            Err(Unsendable(
                "linkedin needs a hashed email or a li_fat_id (LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID)".into(),
            ))
        }
    }

    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        let token = super::credential(dest, "access_token");
        let rule = dest
            .params
            .get("conversion_rule_id")
            .map_or("", String::as_str);
        let version = dest
            .params
            .get("linkedin_version")
            .map_or(VERSION, String::as_str);
        let body = batch_body(b"{\"elements\":[", b"]}", events, |body, ev| {
            write_element(body, rule, ev.event);
        });
        json_post_bytes(
            with_endpoint(URL, dest.endpoint.as_deref()),
            "application/json",
            vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("linkedin-version".into(), version.to_string()),
                ("x-restli-protocol-version".into(), "2.0.0".into()),
                ("x-restli-method".into(), "BATCH_CREATE".into()),
            ],
            body,
            vec![token],
        )
    }

    fn classify(&self, _dest: &Destination, n: usize, resp: &HttpResponse) -> Verdict {
        let base = classify_status_all(resp);
        match resp.status {
            200..=299 => {
                let elements = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v.get("elements").and_then(Value::as_array).cloned());
                let Some(elements) = elements else {
                    return Verdict::Whole(base);
                };
                let classes: Vec<Class> = (0..n)
                    .map(|i| {
                        element_class(
                            elements
                                .get(i)
                                .and_then(|e| e.get("status"))
                                .and_then(Value::as_i64),
                        )
                    })
                    .collect();
                if classes.iter().all(|c| *c == Class::Delivered) {
                    Verdict::Whole(Class::Delivered)
                } else {
                    Verdict::PerRow(classes)
                }
            }
            422 => {
                let msg = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
                    .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).into_owned());
                let rows: Vec<usize> = indexes_named(&msg).into_iter().filter(|r| *r < n).collect();
                if rows.is_empty() {
                    Verdict::Whole(Class::Rejected)
                } else {
                    Verdict::RowsRejected(rows)
                }
            }
            426 => Verdict::Whole(Class::Gone("api_version_retired")),
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
            let req = LINKEDIN.build(&dest, &outs, 0);
            let v: Value = serde_json::from_slice(&req.body).unwrap();
            let got = v["elements"].as_array().unwrap();
            assert_eq!(got.len(), outs.len());
            for (g, e) in got.iter().zip(&evs) {
                assert_eq!(g["eventId"], e.event_id.as_str());
                assert_eq!(g["conversionHappenedAt"], e.event_time * 1000);
                assert!(g["user"]["userIds"].is_array());
            }
        }
    }

    #[test]
    fn index_lines_name_rows() {
        assert_eq!(
            indexes_named(
                "Index: 3, ERROR :: /a :: x\nIndex: 0, ERROR :: /b :: y\nIndex: 3, ERROR :: /c :: z\n"
            ),
            vec![0, 3]
        );
        assert!(indexes_named("ERROR :: /a :: x").is_empty());
        assert!(indexes_named("Index: x").is_empty());
    }
}
