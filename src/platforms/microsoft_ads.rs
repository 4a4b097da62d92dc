//! Microsoft Advertising offline conversions: `ApplyOfflineConversions`, Campaign
//! Management v13, REST (platforms.md §10a).
//!
//! Facts (platforms.md §10; Microsoft Learn's OfflineConversion and operation error code
//! pages; RudderStack's Bing Ads offline-conversions tests for the row error codes):
//! - Request: `POST https://campaign.api.bingads.microsoft.com/CampaignManagement/v13/OfflineConversions/Apply`
//!   with `authorization: Bearer <access token>`, `developertoken`, `customerid`
//!   (param `customer_id`) and `customeraccountid` (param `account_id`). Tokens come from
//!   `credentials.access_token` or, with `client_id`/`client_secret`/`refresh_token`,
//!   from the OAuth refresh of [`super::oauth`] (scope `msads.manage`). `endpoint`
//!   replaces scheme, host and port (and of the token URL too, unless the param
//!   `token_url` is set).
//! - Body: `{"OfflineConversions":[…]}`, at most 1,000 (the policy's `max_batch`), each
//!   `{"ConversionCurrencyCode"?,"ConversionName","ConversionTime","ConversionValue"?,
//!   "HashedEmailAddress"?,"HashedPhoneNumber"?,"MicrosoftClickId"?}`:
//!   `ConversionName` = param `conversion_name` (one fixed goal per destination: hence
//!   the required `events` filter; event names are not sent), `ConversionTime` = ISO-8601
//!   UTC to the second, value and currency from `custom_data.value` (a number or a string
//!   holding one) / `.currency`, `MicrosoftClickId` = `msclkid`, hashes from variants
//!   `email` and `phone_e164`.
//! - Dedup: Microsoft ignores a second conversion with the same `MicrosoftClickId` and
//!   `ConversionTime`; there is no field for the `event_id`.
//! - [`Adapter::check`]: unsendable without `msclkid`, hashed email or hashed phone.
//! - Answers: `200 {"PartialErrors":[{"Code","Details","ErrorCode","Index","Message",
//!   "Type"}]}` (empty or null when every row was taken), `Index` the 0-based row;
//!   request-level failures `{"Errors":[{"Code","ErrorCode","Message"}]}` (also read:
//!   `OperationErrors`) with a 4xx.
//!
//! Classification (row "all", refined; codes from the operation error code list):
//! - 2xx: no `PartialErrors` → delivered; else [`Verdict::PerRow`]: rows not named →
//!   delivered; named rows by code: `0 InternalError` → retryable, `117
//!   CallRateExceeded` → throttled (retried), `105 InvalidCredentials`, `106
//!   UserIsNotAuthorized`, `109 AuthenticationTokenExpired` → auth (retried), any other →
//!   rejected (e.g. `OfflineConversionMicrosoftClickIdInvalid`,
//!   `OfflineConversionNameInvalid`). `PartialErrors` naming no row of the request →
//!   retryable whole.
//! - Errors: any of 105, 106, 109 (or 401) → auth; 117 (or 429) → throttled
//!   (`Retry-After` if any, else the default hold; Microsoft asks to wait a minute);
//!   code 0, 408, 5xx, 3xx → retryable; a 400 that is not JSON → retryable; other 4xx →
//!   rejected.
//!
//! Unverified: the REST form of the API and its error statuses (secondary sources);
//! the numeric codes of the offline-conversion row errors (classified by `ErrorCode`
//! and numeric code alike); the 90-day age limit; Microsoft's rate limits (request
//! shaping, none published: the default policy is unpaced and obeys throttling).

use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, Verdict,
    batch_body, classify_status_all, clear_value, json_post_bytes, retry_after_hint,
    value_and_currency, with_endpoint, write_json, write_json_hex,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, NormalizedEvent, Variant};

pub struct MicrosoftAds;

pub static MICROSOFT_ADS: MicrosoftAds = MicrosoftAds;

pub const URL: &str =
    "https://campaign.api.bingads.microsoft.com/CampaignManagement/v13/OfflineConversions/Apply";

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

fn write_conversion(out: &mut Vec<u8>, name: &str, e: &NormalizedEvent) {
    let mut o = JsonObject::begin(out);
    let (value, currency) = value_and_currency(e);
    if let Some(c) = &currency {
        o.str("ConversionCurrencyCode", c);
    }
    o.str("ConversionName", name);
    o.str("ConversionTime", &iso_seconds(e.event_time));
    if let Some(v) = &value {
        write_json(o.key("ConversionValue"), v);
    }
    if let Some(h) = e.hash_of(Variant::Email) {
        write_json_hex(o.key("HashedEmailAddress"), h);
    }
    if let Some(h) = e.hash_of(Variant::PhoneE164) {
        write_json_hex(o.key("HashedPhoneNumber"), h);
    }
    if let Some(c) = clear_value(e, ClearField::Msclkid) {
        o.str("MicrosoftClickId", c);
    }
    o.end();
}

const AUTH_CODES: [i64; 3] = [105, 106, 109];
const AUTH_NAMES: [&str; 3] = [
    "InvalidCredentials",
    "UserIsNotAuthorized",
    "AuthenticationTokenExpired",
];

fn code(err: &Value) -> (Option<i64>, &str) {
    let n = err.get("Code").and_then(|c| {
        c.as_i64()
            .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
    });
    let name = err.get("ErrorCode").and_then(Value::as_str).unwrap_or("");
    (n, name)
}

fn is_auth(err: &Value) -> bool {
    let (n, name) = code(err);
    n.is_some_and(|n| AUTH_CODES.contains(&n)) || AUTH_NAMES.contains(&name)
}

fn is_rate(err: &Value) -> bool {
    let (n, name) = code(err);
    n == Some(117) || name == "CallRateExceeded"
}

fn is_internal(err: &Value) -> bool {
    let (n, name) = code(err);
    n == Some(0) || name == "InternalError"
}

fn row_class(err: &Value) -> Class {
    if is_internal(err) {
        Class::Retryable
    } else if is_rate(err) {
        Class::Throttled { hold_ms: None }
    } else if is_auth(err) {
        Class::Auth
    } else {
        Class::Rejected
    }
}

fn per_row(n: usize, errs: &[Value]) -> Verdict {
    let mut classes = vec![Class::Delivered; n];
    let mut named = false;
    for e in errs {
        let Some(i) = e
            .get("Index")
            .and_then(|i| {
                i.as_u64()
                    .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
            })
            .map(|i| i as usize)
            .filter(|i| *i < n)
        else {
            continue;
        };
        let c = row_class(e);
        // Rejected wins over a retry; a retry over delivered.
        if classes[i] != Class::Rejected {
            classes[i] = c;
        }
        named = true;
    }
    if named {
        Verdict::PerRow(classes)
    } else {
        Verdict::Whole(Class::Retryable)
    }
}

impl Adapter for MicrosoftAds {
    fn platform(&self) -> Platform {
        Platform::MicrosoftAds
    }

    fn check(&self, _dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        if clear_value(e, ClearField::Msclkid).is_some()
            || e.hash_of(Variant::Email).is_some()
            || e.hash_of(Variant::PhoneE164).is_some()
        {
            Ok(())
        } else {
            Err(Unsendable(
                "microsoft_ads needs one of msclkid, email or phone".into(),
            ))
        }
    }

    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        let param = |k: &str| dest.params.get(k).map_or("", String::as_str);
        let (token, dev) = (
            super::credential(dest, "access_token"),
            super::credential(dest, "developer_token"),
        );
        let name = param("conversion_name");
        let body = batch_body(b"{\"OfflineConversions\":[", b"]}", events, |body, ev| {
            write_conversion(body, name, ev.event);
        });
        json_post_bytes(
            with_endpoint(URL, dest.endpoint.as_deref()),
            "application/json",
            vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("developertoken".into(), dev.clone()),
                ("customerid".into(), param("customer_id").to_string()),
                ("customeraccountid".into(), param("account_id").to_string()),
            ],
            body,
            vec![token, dev],
        )
    }

    fn classify(&self, _dest: &Destination, n: usize, resp: &HttpResponse) -> Verdict {
        let base = classify_status_all(resp);
        let v: Option<Value> = serde_json::from_slice(&resp.body).ok();
        if base == Class::Delivered {
            return match v
                .as_ref()
                .and_then(|v| v.get("PartialErrors"))
                .and_then(Value::as_array)
            {
                Some(errs) if !errs.is_empty() => per_row(n, errs),
                _ => Verdict::Whole(Class::Delivered),
            };
        }
        let errs: Vec<&Value> = ["Errors", "OperationErrors"]
            .iter()
            .filter_map(|k| v.as_ref().and_then(|v| v.get(*k)).and_then(Value::as_array))
            .flatten()
            .chain(v.as_ref().filter(|v| v.get("Code").is_some()))
            .collect();
        let class = if errs.iter().any(|e| is_auth(e)) {
            Class::Auth
        } else if errs.iter().any(|e| is_rate(e)) {
            Class::Throttled {
                hold_ms: retry_after_hint(resp),
            }
        } else if (errs.iter().any(|e| is_internal(e)) && base == Class::Rejected)
            || (resp.status == 400 && v.is_none())
        {
            Class::Retryable
        } else {
            base
        };
        Verdict::Whole(class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::testkit::{dests, events, outs};

    #[test]
    fn bodies_are_json_with_every_event() {
        for mut dest in dests() {
            dest.params
                .insert("conversion_name".into(), "Purchase \"offline\"".into());
            let evs = events();
            let outs = outs(&evs);
            let req = MICROSOFT_ADS.build(&dest, &outs, 0);
            let v: Value = serde_json::from_slice(&req.body).unwrap();
            let got = v["OfflineConversions"].as_array().unwrap();
            assert_eq!(got.len(), outs.len());
            for g in got {
                assert_eq!(g["ConversionName"], "Purchase \"offline\"");
                assert!(g["ConversionTime"].is_string());
            }
        }
    }
}
