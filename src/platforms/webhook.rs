//! Generic webhook destination, per Standard Webhooks v1.0.0 (platforms.md §11 and
//! "Webhook destination").
//!
//! - One event per request (max batch 1), `POST` to the destination's `endpoint`, which
//!   is the whole URL.
//! - Body: the event as accepted, plus `merchant_id` and `destination_id`
//!   ([`webhook_event_json`]; the DLQ shows events in this same shape). In `user_data`
//!   every identifier appears only hashed, as `<variant>_sha256` (lowercase hex, one key
//!   per variant intake kept); IP, user agent and click ids appear as given; plaintext
//!   identifiers never appear. A destination `event_map` entry renames `event_name` (and
//!   so `webhook-id`); without one the accepted name is sent.
//! - Headers: `webhook-id` = `<event_name>:<event_id>` (stable across retries and
//!   replays: the receiver's idempotency key), `webhook-timestamp` = send time in unix
//!   seconds, `webhook-signature` = `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
//!   keyed with the base64-decoded bytes after `whsec_` of credential `signing_secret`.
//! - Classification (the webhook row, on top of row "all"): 2xx delivered; 429, 502,
//!   504 throttled (honouring `Retry-After`); 401, 403 auth; 3xx retryable (never
//!   followed); 410 gone (`endpoint_gone`: the destination pauses); 408 and other 5xx
//!   retryable; other 4xx rejected.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, Verdict,
    custom_data_json, custom_data_raw, event_name_for, hex_hash, retry_after_hint, write_json_hex,
    write_json_str,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, Variant};

pub struct Webhook;

pub static WEBHOOK: Webhook = Webhook;

/// The event as the webhook body (and the DLQ) shows it: accepted fields, hashed
/// identifiers as `<variant>_sha256`, clear fields as given, `custom_data` as given,
/// plus `merchant_id` and `destination_id`. Never contains plaintext identifiers.
pub fn webhook_event_json(ev: &OutEvent, destination_id: &str) -> Value {
    let e = ev.event;
    let mut user = Map::new();
    for (variant, hash) in &e.hashed {
        user.insert(
            format!("{}_sha256", variant.name()),
            Value::String(hex_hash(hash)),
        );
    }
    for (field, value) in &e.clear {
        user.insert(field.name().to_string(), Value::String(value.clone()));
    }
    let mut out = Map::new();
    out.insert("event_id".into(), json!(e.event_id));
    out.insert("event_name".into(), json!(e.event_name));
    out.insert("event_time".into(), json!(e.event_time));
    if let Some(a) = &e.action_source {
        out.insert("action_source".into(), json!(a));
    }
    if let Some(u) = &e.event_source_url {
        out.insert("event_source_url".into(), json!(u));
    }
    out.insert("user_data".into(), Value::Object(user));
    if let Some(cd) = custom_data_json(e) {
        out.insert("custom_data".into(), cd);
    }
    out.insert("merchant_id".into(), json!(ev.merchant_id));
    out.insert("destination_id".into(), json!(destination_id));
    Value::Object(out)
}

/// A `user_data` member of the webhook body: `<variant>_sha256` or a clear field.
enum UserMember<'e> {
    Hashed(Variant, &'e [u8; 32]),
    Clear(ClearField, &'e str),
}

impl UserMember<'_> {
    /// The key, in two parts (`<variant>` and `_sha256`, or the field name and "").
    fn key(&self) -> (&'static str, &'static str) {
        match self {
            UserMember::Hashed(v, _) => (v.name(), "_sha256"),
            UserMember::Clear(f, _) => (f.name(), ""),
        }
    }

    fn key_cmp(&self, other: &Self) -> std::cmp::Ordering {
        let ((a1, a2), (b1, b2)) = (self.key(), other.key());
        a1.bytes()
            .chain(a2.bytes())
            .cmp(b1.bytes().chain(b2.bytes()))
    }
}

/// Appends the webhook body: [`webhook_event_json`] with `event_name` = `name`, written
/// straight into bytes, with the same keys in the same (sorted) order.
fn write_webhook_body(out: &mut Vec<u8>, ev: &OutEvent<'_>, destination_id: &str, name: &str) {
    let e = ev.event;
    let mut o = JsonObject::begin(out);
    if let Some(a) = &e.action_source {
        o.str("action_source", a);
    }
    if let Some(cd) = custom_data_raw(e) {
        o.raw("custom_data", cd.get());
    }
    o.str("destination_id", destination_id);
    o.str("event_id", &e.event_id);
    o.str("event_name", name);
    if let Some(u) = &e.event_source_url {
        o.str("event_source_url", u);
    }
    o.i64("event_time", e.event_time);
    o.str("merchant_id", ev.merchant_id);
    // Sorted by key; of equal keys the last one given wins, as in a map.
    let mut members: Vec<UserMember<'_>> = e
        .hashed
        .iter()
        .map(|(v, h)| UserMember::Hashed(*v, h))
        .chain(
            e.clear
                .iter()
                .map(|(f, v)| UserMember::Clear(*f, v.as_str())),
        )
        .collect();
    members.sort_by(UserMember::key_cmp);
    let mut user = JsonObject::begin(o.key("user_data"));
    for (i, m) in members.iter().enumerate() {
        if members
            .get(i + 1)
            .is_some_and(|next| next.key_cmp(m).is_eq())
        {
            continue;
        }
        let (k1, k2) = m.key();
        let buf = user.key_parts(&[k1, k2]);
        match m {
            UserMember::Hashed(_, h) => write_json_hex(buf, h),
            UserMember::Clear(_, v) => write_json_str(buf, v),
        }
    }
    user.end();
    o.end();
}

/// The HMAC key of a `whsec_<base64>` secret (None when absent or malformed).
pub fn signing_key(dest: &Destination) -> Option<Vec<u8>> {
    let s = dest.credentials.get("signing_secret")?.expose();
    let b64 = s.strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(sig)
    )
}

impl Adapter for Webhook {
    fn platform(&self) -> Platform {
        Platform::Webhook
    }

    /// Every event can be sent; only a missing endpoint or signing secret (which config
    /// validation already refuses) makes it unsendable.
    fn check(&self, dest: &Destination, _ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        if dest.endpoint.is_none() {
            return Err(Unsendable("webhook destination has no endpoint".into()));
        }
        if signing_key(dest).is_none() {
            return Err(Unsendable(
                "webhook signing_secret is missing or not whsec_<base64>".into(),
            ));
        }
        Ok(())
    }

    /// One event per request: a batch of more is a caller bug (max batch is 1); only the
    /// first event is built.
    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], now_ms: i64) -> HttpRequest {
        debug_assert_eq!(events.len(), 1, "webhook sends one event per request");
        let ev = &events[0];
        let e = ev.event;
        let name = event_name_for(dest, &[], &e.event_name);
        let mut body = Vec::with_capacity(
            320 + dest.id.len()
                + ev.merchant_id.len()
                + e.event_id.len()
                + name.len()
                + e.action_source.as_ref().map_or(0, String::len)
                + e.event_source_url.as_ref().map_or(0, String::len)
                + e.hashed.len() * 96
                + e.clear.iter().map(|(_, v)| v.len() + 24).sum::<usize>()
                + e.custom_data.len(),
        );
        write_webhook_body(&mut body, ev, &dest.id, name);
        let id = format!("{name}:{}", e.event_id);
        let ts = now_ms.div_euclid(1000);
        let key = signing_key(dest).unwrap_or_default();
        let signature = sign(&key, &id, ts, &body);
        HttpRequest {
            method: "POST",
            url: dest.endpoint.clone().unwrap_or_default(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("webhook-id".into(), id),
                ("webhook-timestamp".into(), ts.to_string()),
                ("webhook-signature".into(), signature),
            ],
            body,
            secrets: dest
                .credentials
                .get("signing_secret")
                .map(|s| vec![s.expose().to_string()])
                .unwrap_or_default(),
        }
    }

    fn classify(&self, _dest: &Destination, _n: usize, resp: &HttpResponse) -> Verdict {
        Verdict::Whole(classify_webhook(resp))
    }
}

fn classify_webhook(resp: &HttpResponse) -> Class {
    match resp.status {
        200..=299 => Class::Delivered,
        429 | 502 | 504 => Class::Throttled {
            hold_ms: retry_after_hint(resp),
        },
        401 | 403 => Class::Auth,
        410 => Class::Gone("endpoint_gone"),
        300..=399 | 408 | 500..=599 => Class::Retryable,
        400..=499 => Class::Rejected,
        _ => Class::Retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::testkit::{dests, events};

    #[test]
    fn body_bytes_equal_webhook_event_json() {
        for dest in dests() {
            for e in events() {
                let ev = OutEvent {
                    event: &e,
                    merchant_id: "glass\"house",
                    accepted_ms: 0,
                };
                let req = WEBHOOK.build(&dest, &[ev], 1_793_620_800_123);
                let mut want = webhook_event_json(&ev, &dest.id);
                let name = dest
                    .event_map
                    .get(&e.event_name)
                    .cloned()
                    .unwrap_or_else(|| e.event_name.clone());
                want["event_name"] = Value::String(name.clone());
                let want = serde_json::to_vec(&want).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&req.body),
                    String::from_utf8_lossy(&want)
                );
                let id = format!("{name}:{}", e.event_id);
                assert_eq!(req.headers[1], ("webhook-id".to_string(), id.clone()));
                let key = signing_key(&dest).unwrap();
                assert_eq!(req.headers[3].1, sign(&key, &id, 1_793_620_800, &want));
            }
        }
    }

    #[test]
    fn duplicate_identifiers_keep_the_last() {
        let mut e = events().remove(1);
        e.hashed.push((Variant::Email, [0xab; 32]));
        let ev = OutEvent {
            event: &e,
            merchant_id: "m",
            accepted_ms: 0,
        };
        let dest = &dests()[0];
        let req = WEBHOOK.build(dest, &[ev], 0);
        let mut want = webhook_event_json(&ev, &dest.id);
        want["event_name"] = Value::String(e.event_name.clone());
        assert_eq!(req.body, serde_json::to_vec(&want).unwrap());
        let got: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(got["user_data"]["email_sha256"], hex_hash(&[0xab; 32]));
        assert_eq!(got["user_data"]["client_ip_address"], "198.51.100.1");
    }
}
