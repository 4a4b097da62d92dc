//! Google Ads `UploadClickConversions`, REST (platforms.md §4).
//!
//! Facts (platforms.md §4: Google's RPC reference, Stape's offline-conversion tag,
//! Segment's enhanced-conversions destination):
//! - Request: `POST https://googleads.googleapis.com/v22/customers/{customer_id}:uploadClickConversions`
//!   with `authorization: Bearer <access token>`, `developer-token`, and
//!   `login-customer-id` when the destination sets that param (a manager account);
//!   `customer_id` and `login_customer_id` are sent as digits (dashes dropped). Tokens
//!   come from `credentials.access_token` or, with `client_id`/`client_secret`/
//!   `refresh_token`, from the OAuth refresh of [`super::oauth`] (the delivery engine
//!   hands this adapter the current token as `access_token`). `endpoint` replaces scheme,
//!   host and port (and of the token URL too, unless the param `token_url` is set).
//! - Body: `{"conversions":[…],"partialFailure":true}` (partial failure is required and
//!   always on), at most 2,000 conversions (the policy's `max_batch`).
//! - Per conversion: `conversionAction` = `customers/{customer_id}/conversionActions/{conversion_action_id}`
//!   (one fixed conversion per destination: hence the required `events` filter; event
//!   names are not sent and `event_map` does not apply), `conversionDateTime` =
//!   `yyyy-mm-dd hh:mm:ss+00:00` (UTC, zone required), `orderId` = the `event_id`
//!   (Google's dedup field), one click id (`gclid`, else `gbraid`, else `wbraid`: Google
//!   accepts only one), `userIdentifiers` `[{"hashedEmail"}, {"hashedPhoneNumber"}]`
//!   from variants `email_google` (gmail dots dropped) and `phone_e164`, and
//!   `conversionValue` / `currencyCode` from `custom_data.value` (a number or a string
//!   holding one) / `.currency`.
//! - [`Adapter::check`]: unsendable without a click id, hashed email or hashed phone.
//! - Answers: `200 {"results":[…],"partialFailureError"?,"jobId"}`; a failed row is an
//!   empty object in `results` and is named in `partialFailureError.details[].errors[]`
//!   by `location.fieldPathElements[{"fieldName":"conversions","index":i}]` with an
//!   `errorCode` such as `{"conversionUploadError":"UNPARSEABLE_GCLID"}`. Request-level
//!   errors: `{"error":{"code","message","status","details":[{"errors":[{"errorCode",
//!   "message","details":{"quotaErrorDetails":{"retryDelay":"30s"}}}]}]}}`.
//!
//! Classification (row "all", refined):
//! - 2xx with a top-level `error` object → retryable (not Google's shape; never counted
//!   delivered). 2xx without `partialFailureError` → delivered. With it → [`Verdict::PerRow`]: rows
//!   not named → delivered; named rows by their error code: `databaseError`,
//!   `internalError` → retryable; `quotaError` → throttled (retried with backoff);
//!   `authenticationError`/`authorizationError` → auth (retried); `conversionUploadError`
//!   `TOO_RECENT_CONVERSION_ACTION`, `TOO_RECENT_EVENT` (Google asks to retry later) →
//!   retryable; `CLICK_CONVERSION_ALREADY_EXISTS`, `ORDER_ID_ALREADY_IN_USE`,
//!   `DUPLICATE_ORDER_ID` (the conversion is already in: a resend after a crash) →
//!   delivered; a row without an `errorCode` → retryable; any other code → rejected (a
//!   row named several times takes the worst class). An empty `results[i]` not named
//!   → retryable. A `partialFailureError` naming no row of the request → retryable
//!   whole (never lose events to a guess).
//! - Errors: `authenticationError` in any status, status `UNAUTHENTICATED`, or 401 →
//!   auth; 403 with `authorizationError`/`authenticationError` (e.g.
//!   `USER_PERMISSION_DENIED`, `DEVELOPER_TOKEN_NOT_APPROVED`) → auth, other 403 →
//!   rejected; `quotaError` (`RESOURCE_TEMPORARILY_EXHAUSTED`, `RESOURCE_EXHAUSTED`) or
//!   429 → throttled, holding the scope for `retryDelay` (else `Retry-After`, else the
//!   default); `internalError`, `databaseError`, statuses `UNAVAILABLE`, `INTERNAL`,
//!   `DEADLINE_EXCEEDED`, 408, 5xx, 3xx → retryable; a 400 that is not Google's JSON →
//!   retryable (a proxy's answer); other 4xx → rejected.
//! - Test sends ([`Adapter::mark_test`]): `validateOnly: true` at the top level of the
//!   body; Google validates the upload (errors come back as usual) and stores nothing.
//!   Unverified: the exact success body of a validate-only upload (taken as a 2xx
//!   without `partialFailureError`, hence delivered, whatever `results` holds).
//!
//! Unverified: the API version (v22, as Stape's tag uses; Google sunsets versions about
//! yearly: change [`API_VERSION`]); whether `orderId` deduplicates click conversions;
//! that the duplicate codes above mean "already in"; the 90-day age limit (the default
//! policy's). Rate limit: the default policy paces 100 conversions/s per `customer_id`
//! (not a published number).

use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, Verdict,
    batch_body, classify_status_all, clear_value, json_post_bytes, percent_encode,
    retry_after_hint, value_and_currency, with_endpoint, write_json, write_json_hex,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, NormalizedEvent, Variant};

pub struct GoogleAds;

pub static GOOGLE_ADS: GoogleAds = GoogleAds;

pub const API_VERSION: &str = "v22";
pub const HOST: &str = "https://googleads.googleapis.com";

/// Digits only (Google shows customer ids as `123-456-7890`).
pub fn customer_digits(id: &str) -> String {
    id.chars().filter(|c| !matches!(c, '-' | ' ')).collect()
}

/// The one click id sent: gclid, else gbraid, else wbraid.
fn click_id(e: &NormalizedEvent) -> Option<(&'static str, &str)> {
    [
        (ClearField::Gclid, "gclid"),
        (ClearField::Gbraid, "gbraid"),
        (ClearField::Wbraid, "wbraid"),
    ]
    .into_iter()
    .find_map(|(f, k)| clear_value(e, f).map(|v| (k, v)))
}

/// `yyyy-mm-dd hh:mm:ss+00:00`.
pub fn date_time(secs: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]+00:00");
    t.format(&f).unwrap_or_default()
}

fn write_conversion(out: &mut Vec<u8>, action: &str, e: &NormalizedEvent) {
    let mut o = JsonObject::begin(out);
    o.str("conversionAction", action);
    o.str("conversionDateTime", &date_time(e.event_time));
    let (value, currency) = value_and_currency(e);
    if let Some(v) = &value {
        write_json(o.key("conversionValue"), v);
    }
    if let Some(c) = &currency {
        o.str("currencyCode", c);
    }
    let click = click_id(e);
    for k in ["gbraid", "gclid"] {
        if let Some((ck, v)) = click
            && ck == k
        {
            o.str(k, v);
        }
    }
    o.str("orderId", &e.event_id);
    let email = e.hash_of(Variant::EmailGoogle);
    let phone = e.hash_of(Variant::PhoneE164);
    if email.is_some() || phone.is_some() {
        let buf = o.key("userIdentifiers");
        buf.push(b'[');
        let mut first = true;
        for (k, h) in [("hashedEmail", email), ("hashedPhoneNumber", phone)] {
            if let Some(h) = h {
                if !first {
                    buf.push(b',');
                }
                first = false;
                let mut u = JsonObject::begin(buf);
                write_json_hex(u.key(k), h);
                u.end();
            }
        }
        buf.push(b']');
    }
    if let Some(("wbraid", v)) = click {
        o.str("wbraid", v);
    }
    o.end();
}

/// `errorCode` objects of a Google Ads failure (`details[].errors[]`), with each error.
fn errors(failure: Option<&Value>) -> Vec<&Value> {
    failure
        .and_then(|f| f.get("details"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("errors").and_then(Value::as_array))
        .flatten()
        .collect()
}

/// The error code's kind and value, e.g. (`quotaError`, `RESOURCE_EXHAUSTED`).
fn code_of(err: &Value) -> Option<(&str, &str)> {
    let obj = err.get("errorCode")?.as_object()?;
    obj.iter()
        .next()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
}

/// The class of one conversion's error.
fn row_class(err: &Value) -> Class {
    match code_of(err) {
        None => Class::Retryable,
        Some(("databaseError" | "internalError", _)) => Class::Retryable,
        Some(("quotaError", _)) => Class::Throttled { hold_ms: None },
        Some(("authenticationError" | "authorizationError", _)) => Class::Auth,
        Some(("conversionUploadError", "TOO_RECENT_CONVERSION_ACTION" | "TOO_RECENT_EVENT")) => {
            Class::Retryable
        }
        Some((
            "conversionUploadError",
            "CLICK_CONVERSION_ALREADY_EXISTS" | "ORDER_ID_ALREADY_IN_USE" | "DUPLICATE_ORDER_ID",
        )) => Class::Delivered,
        Some(_) => Class::Rejected,
    }
}

/// Which class wins when a row is named more than once.
fn rank(c: &Class) -> u8 {
    match c {
        Class::Delivered => 0,
        Class::Retryable => 1,
        Class::Throttled { .. } => 2,
        Class::Auth => 3,
        Class::Gone(_) => 4,
        Class::Rejected => 5,
    }
}

/// The row an error names: `location.fieldPathElements[{fieldName: "conversions", index}]`.
fn row_of(err: &Value) -> Option<usize> {
    err.pointer("/location/fieldPathElements")?
        .as_array()?
        .iter()
        .find(|p| p.get("fieldName").and_then(Value::as_str) == Some("conversions"))?
        .get("index")
        .and_then(|i| {
            i.as_u64()
                .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
        })
        .map(|i| i as usize)
}

fn per_row(n: usize, body: &Value, pfe: &Value) -> Verdict {
    let mut classes: Vec<Option<Class>> = vec![None; n];
    for err in errors(Some(pfe)) {
        if let Some(i) = row_of(err).filter(|i| *i < n) {
            let c = row_class(err);
            if classes[i].as_ref().is_none_or(|old| rank(&c) > rank(old)) {
                classes[i] = Some(c);
            }
        }
    }
    // Failed rows are empty objects in `results`: one not named is retried.
    if let Some(results) = body.get("results").and_then(Value::as_array)
        && results.len() == n
    {
        for (i, r) in results.iter().enumerate() {
            if classes[i].is_none() && r.as_object().is_some_and(serde_json::Map::is_empty) {
                classes[i] = Some(Class::Retryable);
            }
        }
    }
    if classes.iter().all(Option::is_none) {
        return Verdict::Whole(Class::Retryable);
    }
    Verdict::PerRow(
        classes
            .into_iter()
            .map(|c| c.unwrap_or(Class::Delivered))
            .collect(),
    )
}

/// `retryDelay` (`"30s"`, `"1.5s"`) of a quota error, in ms, capped at one hour.
fn retry_delay_ms(errs: &[&Value]) -> Option<i64> {
    errs.iter().find_map(|e| {
        let d = e
            .pointer("/details/quotaErrorDetails/retryDelay")?
            .as_str()?;
        let secs: f64 = d.trim().strip_suffix('s')?.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| ((secs * 1000.0) as i64).min(3_600_000))
    })
}

impl Adapter for GoogleAds {
    /// `validateOnly: true`: Google validates the upload and stores nothing.
    fn test_mode(&self, _dest: &Destination) -> super::TestMode {
        super::TestMode::Marked("validateOnly")
    }

    fn mark_test(&self, _dest: &Destination, req: &mut HttpRequest) {
        super::insert_top_level(&mut req.body, "validateOnly", b"true");
    }

    fn platform(&self) -> Platform {
        Platform::GoogleAds
    }

    fn check(&self, _dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        if click_id(e).is_some()
            || e.hash_of(Variant::EmailGoogle).is_some()
            || e.hash_of(Variant::PhoneE164).is_some()
        {
            Ok(())
        } else {
            Err(Unsendable(
                "google_ads needs one of gclid, gbraid, wbraid, email or phone".into(),
            ))
        }
    }

    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        let (token, dev) = (
            super::credential(dest, "access_token"),
            super::credential(dest, "developer_token"),
        );
        let cid = customer_digits(dest.params.get("customer_id").map_or("", String::as_str));
        let action_id = dest
            .params
            .get("conversion_action_id")
            .map_or("", String::as_str);
        let action = format!("customers/{cid}/conversionActions/{}", action_id.trim());
        let body = batch_body(
            b"{\"conversions\":[",
            b"],\"partialFailure\":true}",
            events,
            |body, ev| write_conversion(body, &action, ev.event),
        );
        let url = with_endpoint(
            &format!(
                "{HOST}/{API_VERSION}/customers/{}:uploadClickConversions",
                percent_encode(&cid)
            ),
            dest.endpoint.as_deref(),
        );
        let mut headers = vec![
            ("authorization".to_string(), format!("Bearer {token}")),
            ("developer-token".to_string(), dev.clone()),
        ];
        if let Some(login) = dest.params.get("login_customer_id") {
            headers.push(("login-customer-id".into(), customer_digits(login)));
        }
        json_post_bytes(url, "application/json", headers, body, vec![token, dev])
    }

    fn classify(&self, _dest: &Destination, n: usize, resp: &HttpResponse) -> Verdict {
        let base = classify_status_all(resp);
        let v: Option<Value> = serde_json::from_slice(&resp.body).ok();
        // An `error` object inside a 2xx is not Google's shape (its errors come with
        // their HTTP status); whoever sent it, nothing says the rows were taken: retried,
        // never counted delivered.
        if base == Class::Delivered
            && v.as_ref()
                .and_then(|v| v.get("error"))
                .is_some_and(|e| !e.is_null())
        {
            return Verdict::Whole(Class::Retryable);
        }
        if base == Class::Delivered {
            return match v.as_ref().and_then(|v| {
                v.get("partialFailureError")
                    .filter(|p| !p.is_null())
                    .map(|p| (v, p))
            }) {
                Some((body, pfe)) => per_row(n, body, pfe),
                None => Verdict::Whole(Class::Delivered),
            };
        }
        let err = v.as_ref().and_then(|v| v.get("error"));
        let errs = errors(err);
        let kinds: Vec<&str> = errs
            .iter()
            .filter_map(|e| code_of(e).map(|c| c.0))
            .collect();
        let has = |k: &str| kinds.contains(&k);
        let status = err
            .and_then(|e| e.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let auth = has("authenticationError")
            || status == "UNAUTHENTICATED"
            || (resp.status == 403 && has("authorizationError"));
        let transient = has("internalError")
            || has("databaseError")
            || matches!(status, "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED")
            // A 400 without Google's error object: a proxy's answer.
            || (resp.status == 400 && err.is_none());
        let class = if auth {
            Class::Auth
        } else if has("quotaError") || resp.status == 429 {
            Class::Throttled {
                hold_ms: retry_delay_ms(&errs).or_else(|| retry_after_hint(resp)),
            }
        } else if transient {
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
                .insert("customer_id".into(), "123-456-7890".into());
            dest.params
                .insert("conversion_action_id".into(), "55".into());
            let evs = events();
            let outs = outs(&evs);
            let req = GOOGLE_ADS.build(&dest, &outs, 0);
            let v: Value = serde_json::from_slice(&req.body).unwrap();
            let got = v["conversions"].as_array().unwrap();
            assert_eq!(got.len(), outs.len());
            assert_eq!(v["partialFailure"], true);
            for (g, e) in got.iter().zip(&evs) {
                assert_eq!(g["orderId"], e.event_id.as_str());
                assert_eq!(
                    g["conversionAction"],
                    "customers/1234567890/conversionActions/55"
                );
            }
        }
    }

    #[test]
    fn date_times_are_zoned() {
        assert_eq!(date_time(1_793_620_740), "2026-11-02 11:59:00+00:00");
    }

    #[test]
    fn retry_delays() {
        let e = serde_json::json!({"details": {"quotaErrorDetails": {"retryDelay": "1.5s"}}});
        assert_eq!(retry_delay_ms(&[&e]), Some(1500));
        let e = serde_json::json!({"details": {"quotaErrorDetails": {"retryDelay": "86400s"}}});
        assert_eq!(retry_delay_ms(&[&e]), Some(3_600_000));
    }
}
