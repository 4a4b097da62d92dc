//! Klaviyo Create Event (platforms.md §3).
//!
//! - One event per request (the single-event API; the bulk-job API is not used):
//!   `POST https://a.klaviyo.com/api/events` with `Authorization: Klaviyo-API-Key
//!   <api_key>` (a secret), `revision: 2026-07-15` (the spec default) and `content-type:
//!   application/vnd.api+json`.
//! - JSON:API body `{"data":{"type":"event","attributes":{…}}}`: `metric.data.attributes.
//!   name` = the event name (Klaviyo uses the name as the metric name; `event_map`
//!   overrides), `properties` = `custom_data` (required by Klaviyo, so `{}` when
//!   absent), `time` = ISO-8601 UTC from `event_time` (Klaviyo truncates to the second),
//!   `unique_id` = `event_id` (Klaviyo's dedup key: for the same profile and metric only
//!   the first is kept), `value` / `value_currency` from `custom_data.value` (a number,
//!   or a numeric string) / `custom_data.currency` when present.
//! - Profile: Klaviyo takes PII in **plaintext** (no hashing), so the profile is
//!   identified by the event's plaintext `email` and/or E.164 `phone_number` (intake
//!   keeps them sealed only for workspaces with a Klaviyo destination).
//!   **Decision:** an event without plaintext email or phone is unsendable. Intake keeps
//!   `external_id` only hashed, and sending that hash as Klaviyo's `external_id` would
//!   create profiles under an id the merchant never uses (or conflict with the real
//!   ones), so `external_id` is not sent at all.
//! - Classification: any 2xx (Klaviyo answers 202, "validated and queued") delivered;
//!   429 throttled with `Retry-After`; 401, 403 auth; 408, 5xx, 3xx retryable; 400 and
//!   other 4xx (JSON:API `errors[]`) rejected.

use serde_json::{Map, Value, json};

use super::{
    Adapter, Class, HttpRequest, HttpResponse, OutEvent, Unsendable, Verdict, classify_status_all,
    custom_data_json, json_post, map_event_name, with_endpoint,
};
use crate::config::{Destination, Platform};
use crate::ingest::event::{NormalizedEvent, PlainField};

pub struct Klaviyo;

pub static KLAVIYO: Klaviyo = Klaviyo;

pub const URL: &str = "https://a.klaviyo.com/api/events";
pub const REVISION: &str = "2026-07-15";
pub const CONTENT_TYPE: &str = "application/vnd.api+json";

fn plain(e: &NormalizedEvent, f: PlainField) -> Option<&str> {
    e.plaintext
        .iter()
        .find(|(k, v)| *k == f && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

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

fn event_json(dest: &Destination, ev: &OutEvent<'_>) -> Value {
    let e = ev.event;
    let props = custom_data_json(e).unwrap_or_else(|| json!({}));
    let mut attrs = Map::new();
    attrs.insert("properties".into(), props.clone());
    attrs.insert("time".into(), json!(iso_seconds(e.event_time)));
    match props.get("value") {
        Some(Value::Number(n)) => {
            attrs.insert("value".into(), Value::Number(n.clone()));
        }
        Some(Value::String(s)) => {
            if let Some(n) = s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                attrs.insert("value".into(), Value::Number(n));
            }
        }
        _ => {}
    }
    if let Some(Value::String(c)) = props.get("currency") {
        attrs.insert("value_currency".into(), json!(c));
    }
    attrs.insert("unique_id".into(), json!(e.event_id));
    attrs.insert(
        "metric".into(),
        json!({"data": {"type": "metric", "attributes": {
            "name": map_event_name(dest, &Default::default(), &e.event_name)
        }}}),
    );
    let mut profile = Map::new();
    if let Some(email) = plain(e, PlainField::Email) {
        profile.insert("email".into(), json!(email));
    }
    if let Some(phone) = plain(e, PlainField::PhoneE164) {
        profile.insert("phone_number".into(), json!(phone));
    }
    attrs.insert(
        "profile".into(),
        json!({"data": {"type": "profile", "attributes": profile}}),
    );
    json!({"data": {"type": "event", "attributes": attrs}})
}

impl Adapter for Klaviyo {
    fn platform(&self) -> Platform {
        Platform::Klaviyo
    }

    fn check(&self, _dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        if plain(e, PlainField::Email).is_some() || plain(e, PlainField::PhoneE164).is_some() {
            Ok(())
        } else {
            Err(Unsendable(
                "klaviyo needs a plaintext email or phone (hashes cannot identify a Klaviyo profile)"
                    .into(),
            ))
        }
    }

    /// One event per request: a batch of more is a caller bug (max batch is 1); only the
    /// first event is built.
    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        debug_assert_eq!(events.len(), 1, "klaviyo sends one event per request");
        let key = dest
            .credentials
            .get("api_key")
            .map(|s| s.expose().to_string())
            .unwrap_or_default();
        json_post(
            with_endpoint(URL, dest.endpoint.as_deref()),
            CONTENT_TYPE,
            vec![
                ("accept".into(), CONTENT_TYPE.into()),
                ("authorization".into(), format!("Klaviyo-API-Key {key}")),
                ("revision".into(), REVISION.into()),
            ],
            &event_json(dest, &events[0]),
            vec![key],
        )
    }

    fn classify(&self, _dest: &Destination, _n: usize, resp: &HttpResponse) -> Verdict {
        Verdict::Whole(match resp.status {
            403 => Class::Auth,
            _ => classify_status_all(resp),
        })
    }
}
