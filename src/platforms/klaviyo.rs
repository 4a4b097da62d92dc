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

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, Verdict,
    classify_status_all, custom_data_raw, event_name_for, json_post_bytes, value_number,
    with_endpoint, write_json,
};
use crate::config::{Destination, Platform};
use crate::event::{NormalizedEvent, PlainField};

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

/// What the body takes from `custom_data` besides the whole of it: its `value` and
/// `currency` members when it is an object (of repeated keys the last, as in a map).
#[derive(Default)]
struct ValueProbe {
    value: Option<Value>,
    currency: Option<Value>,
}

impl<'de> Deserialize<'de> for ValueProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueProbeVisitor)
    }
}

struct ValueProbeVisitor;

impl<'de> Visitor<'de> for ValueProbeVisitor {
    type Value = ValueProbe;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValueProbe, A::Error> {
        let mut p = ValueProbe::default();
        while let Some(key) = map.next_key::<ProbeKey>()? {
            match key {
                ProbeKey::Value => p.value = Some(map.next_value()?),
                ProbeKey::Currency => p.currency = Some(map.next_value()?),
                ProbeKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(p)
    }
}

enum ProbeKey {
    Value,
    Currency,
    Other,
}

impl<'de> Deserialize<'de> for ProbeKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ProbeKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<ProbeKey, E> {
                Ok(match k {
                    "value" => ProbeKey::Value,
                    "currency" => ProbeKey::Currency,
                    _ => ProbeKey::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Appends `data.attributes.metric`/`profile`-style `{"data":{"attributes":…,"type":…}}`
/// around what `attrs` writes.
fn write_wrapped(out: &mut Vec<u8>, kind: &str, attrs: impl FnOnce(&mut Vec<u8>)) {
    let mut o = JsonObject::begin(out);
    let mut data = JsonObject::begin(o.key("data"));
    attrs(data.key("attributes"));
    data.str("type", kind);
    data.end();
    o.end();
}

/// Appends the request body (keys sorted, as they have always been sent).
fn write_body(out: &mut Vec<u8>, dest: &Destination, ev: &OutEvent<'_>) {
    let e = ev.event;
    let raw = custom_data_raw(e);
    // Anything but an object (or nothing readable) has no `value` or `currency`.
    let probe = raw
        .and_then(|r| serde_json::from_str::<ValueProbe>(r.get()).ok())
        .unwrap_or_default();
    write_wrapped(out, "event", |out| {
        let mut a = JsonObject::begin(out);
        write_wrapped(a.key("metric"), "metric", |out| {
            let mut m = JsonObject::begin(out);
            m.str("name", event_name_for(dest, &[], &e.event_name));
            m.end();
        });
        write_wrapped(a.key("profile"), "profile", |out| {
            let mut p = JsonObject::begin(out);
            if let Some(email) = plain(e, PlainField::Email) {
                p.str("email", email);
            }
            if let Some(phone) = plain(e, PlainField::PhoneE164) {
                p.str("phone_number", phone);
            }
            p.end();
        });
        a.raw("properties", raw.map_or("{}", |r| r.get()));
        a.str("time", &iso_seconds(e.event_time));
        a.str("unique_id", &e.event_id);
        if let Some(n) = probe.value.as_ref().and_then(value_number) {
            write_json(a.key("value"), &n);
        }
        // Not `currency_text`: Klaviyo has always been sent the currency as given
        // (untrimmed, even blank), and changing that would change its requests.
        if let Some(Value::String(c)) = &probe.currency {
            a.str("value_currency", c);
        }
        a.end();
    });
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
        let key = super::credential(dest, "api_key");
        let e = events[0].event;
        let mut body = Vec::with_capacity(
            400 + e.event_id.len()
                + e.event_name.len()
                + e.plaintext.iter().map(|(_, v)| v.len()).sum::<usize>()
                + e.custom_data.len(),
        );
        write_body(&mut body, dest, &events[0]);
        json_post_bytes(
            with_endpoint(URL, dest.endpoint.as_deref()),
            CONTENT_TYPE,
            vec![
                ("accept".into(), CONTENT_TYPE.into()),
                ("authorization".into(), format!("Klaviyo-API-Key {key}")),
                ("revision".into(), REVISION.into()),
            ],
            body,
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

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::platforms::testkit::{dests, events};
    use crate::platforms::{custom_data_json, map_event_name};

    // How bodies were built before they were written straight into bytes.
    fn event_json_ref(dest: &Destination, ev: &OutEvent<'_>) -> Value {
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
                "name": map_event_name(dest, &std::collections::BTreeMap::default(), &e.event_name)
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

    #[test]
    fn body_bytes_equal_the_value_built_ones() {
        for dest in dests() {
            for e in events() {
                let ev = OutEvent {
                    event: &e,
                    merchant_id: "m",
                    accepted_ms: 0,
                };
                let req = KLAVIYO.build(&dest, &[ev], 0);
                let want = serde_json::to_vec(&event_json_ref(&dest, &ev)).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&req.body),
                    String::from_utf8_lossy(&want)
                );
            }
        }
    }

    #[test]
    fn value_probe_takes_the_last_of_repeated_keys() {
        let p: ValueProbe =
            serde_json::from_str(r#"{"value":1,"x":{"value":3},"value":"2","currency":"EUR"}"#)
                .unwrap();
        assert_eq!(p.value, Some(json!("2")));
        assert_eq!(p.currency, Some(json!("EUR")));
        assert!(serde_json::from_str::<ValueProbe>("[1]").is_err());
    }
}
