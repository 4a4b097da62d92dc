//! Criteo OneTag server-to-server events ("Events API", S2S v0).
//!
//! platforms.md has no Criteo section: these facts were gathered for this adapter.
//! Sources: Criteo's "Server To Server - Website Events" guide
//! (<https://guides.criteotilt.com/onetag/s2s/>), Criteo's mobile endpoint specification
//! (<https://developers.criteo.com/mobile-integrations/docs/mobile-endpoint-specification>:
//! the event endpoint "might respond with an HTTP 307 redirect" to a regional one; public
//! connector code says the same of `widget.criteo.com`), Commanders Act's Criteo Events destination
//! (<https://doc.commandersact.com/features/destinations/destinations-catalog/criteo/criteo-events>:
//! field names), walkerOS's Criteo server destination
//! (<https://www.walkeros.io/docs/destinations/server/criteo>: endpoint, event names,
//! "authentication is in-payload"), and public connector code (response shape). No
//! conversion endpoint on `api.criteo.com` was found: the Marketing Solutions API has
//! audiences, not events.
//!
//! - **Endpoint:** `POST https://widget.criteo.com/m/event?version=s2s_v0`, JSON. It may
//!   answer **307** to a regional host (`widget.eu.criteo.com`, `widget.us.criteo.com`,
//!   `widget.as.criteo.com`); sluice never follows redirects, so a 307 is retried and an
//!   operator who sees them sets `endpoint` to the regional host (`endpoint` replaces
//!   scheme, host and port).
//! - **Auth and credentials:** none: the partner id in the body says whose events they
//!   are. The destination has no `credentials` (config rejects any).
//! - **Required params:** `account_id` (the Criteo partner/account id). Optional
//!   `site_type` (`d` desktop, `m` mobile web, `t` tablet; default `d`).
//! - **Body (one user, one event):** `{"account","events":[{"currency"?,"event","id"?,
//!   "item"?,"timestamp"}],"id":{"email":{"sha256"}},"ip"?,"site_type","useragent"?}`:
//!   `timestamp` ISO-8601 UTC; for `trackTransaction` `id` is the transaction id (the
//!   `event_id`); `item` comes from `custom_data.contents` (`[{id, price, quantity}]`
//!   for transaction, basket, cart and checkout events, the first id for `viewItem`, the
//!   ids for `viewList`); `currency` from `custom_data.currency`.
//! - **Batch limit:** 1: a request carries one user's events, and sluice sends one event
//!   per request.
//! - **Pacing:** no rate limit published: unpaced by default (scope `destination`).
//! - **Age limit:** unverified. Criteo's guide asks for events "in real-time or
//!   near-real-time"; a connector claims ≤ 15 minutes (no primary source). Default 7
//!   days, like the other unverified platforms: operators who want Criteo's real-time
//!   rule lower `age_limit`.
//! - **Event names:** default map `Purchase` → `trackTransaction`, `AddToCart` →
//!   `addToCart`, `InitiateCheckout` → `beginCheckout`, `AddPaymentInfo` →
//!   `addPaymentInfo`, `ViewContent` → `viewItem`, `Search` → `viewList`, `PageView` →
//!   `viewPage`; `event_map` overrides. Other canonical names (`Lead`,
//!   `CompleteRegistration`, `Subscribe`, `AddToWishlist`) have no OneTag event: unsendable
//!   unless `event_map` names one.
//! - **Identifiers:** `id.email.sha256`: variant `email` (trim, lowercase, SHA-256,
//!   lowercase hex). Criteo also takes `md5` and `sha256_md5` email hashes, the GUM id
//!   (`id.mapping_key` = caller id + `id.mapped_user_id`, from a browser-side cookie sync)
//!   and `retailer_visitor_id`: intake keeps none of those, so they are not sent. `ip`
//!   and `useragent` are sent as given. [`Adapter::check`]: unsendable without an email
//!   hash or with a name that maps to no Criteo event.
//!
//! Classification (row "all", refined):
//! - **⚠ 2xx is not success:** Criteo answers HTTP 200 with `{"errors":[…],
//!   "warnings":[…]}`; a non-empty `errors` means the event was refused. Known validation
//!   errors (`AccountMissing`, `UserIdentifierMissing`, `EventsMissing`) → rejected (to
//!   the DLQ); any other error → retryable, each unknown one logged once. `warnings` alone
//!   → delivered. A 2xx whose body is not that JSON (empty, a pixel) → delivered.
//! - 429 → throttled with `Retry-After`; 401 → auth (never expected); 408, 5xx and 3xx
//!   (the regional 307) → retryable; other 4xx → rejected.
//!
//! Unverified: the response shape and error names (from public connector code, not from
//! Criteo), the body `version` field (not sent; the URL carries `version=s2s_v0`),
//! `useragent` vs `user_agent` (two third parties say `useragent`), rate limits, the age
//! limit, and whether the transaction `id` deduplicates.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

use super::{
    Adapter, Class, HttpRequest, HttpResponse, JsonObject, OutEvent, Unsendable, Verdict,
    classify_status_all, clear_value, custom_data_json, event_name_for, json_post_bytes, size_hint,
    value_and_currency, with_endpoint, write_json, write_json_hex,
};
use crate::config::{Destination, Platform};
use crate::event::{ClearField, NormalizedEvent, Variant};

pub struct Criteo;

pub static CRITEO: Criteo = Criteo;

pub const URL: &str = "https://widget.criteo.com/m/event?version=s2s_v0";

/// platforms.md "Event names" for Criteo (written by this adapter's work).
pub const DEFAULT_EVENT_MAP: [(&str, &str); 7] = [
    ("Purchase", "trackTransaction"),
    ("AddToCart", "addToCart"),
    ("InitiateCheckout", "beginCheckout"),
    ("AddPaymentInfo", "addPaymentInfo"),
    ("ViewContent", "viewItem"),
    ("Search", "viewList"),
    ("PageView", "viewPage"),
];

/// Criteo's OneTag events.
pub const EVENTS: [&str; 11] = [
    "viewHome",
    "viewPage",
    "viewItem",
    "viewList",
    "viewSearch",
    "addToCart",
    "viewBasket",
    "beginCheckout",
    "addPaymentInfo",
    "trackTransaction",
    "login",
];

/// `errors` entries that mean the event itself is invalid (rejected, not retried).
pub const KNOWN_INVALID: [&str; 3] = ["AccountMissing", "UserIdentifierMissing", "EventsMissing"];

/// Unknown error names already logged (each is logged once per process).
static SEEN_ERRORS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The Criteo event for a canonical name: the `event_map` (any name it gives), then the
/// default map. None: no OneTag event.
fn criteo_event<'a>(dest: &'a Destination, name: &'a str) -> Option<&'a str> {
    let mapped = event_name_for(dest, &DEFAULT_EVENT_MAP, name);
    (dest.event_map.contains_key(name) || EVENTS.contains(&mapped)).then_some(mapped)
}

fn iso_seconds(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Writes `"item":…` from `custom_data.contents` for the events that carry items.
fn write_items(ev: &mut JsonObject<'_>, event: &str, e: &NormalizedEvent) {
    let Some(Value::Object(cd)) = custom_data_json(e) else {
        return;
    };
    let Some(contents) = cd.get("contents").and_then(Value::as_array) else {
        return;
    };
    let id_of = |c: &Value| match c.get("id") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let ids: Vec<String> = contents.iter().filter_map(id_of).collect();
    match event {
        "viewItem" => {
            if let Some(first) = ids.first() {
                ev.str("item", first);
            }
        }
        "viewList" if !ids.is_empty() => write_json(ev.key("item"), &ids),
        "trackTransaction" | "addToCart" | "viewBasket" | "beginCheckout" => {
            let items: Vec<Value> = contents
                .iter()
                .filter_map(|c| {
                    let id = id_of(c)?;
                    let mut m = serde_json::Map::new();
                    m.insert("id".into(), Value::String(id));
                    if let Some(p) = c.get("item_price").or_else(|| c.get("price"))
                        && p.is_number()
                    {
                        m.insert("price".into(), p.clone());
                    }
                    if let Some(q) = c.get("quantity")
                        && q.is_number()
                    {
                        m.insert("quantity".into(), q.clone());
                    }
                    Some(Value::Object(m))
                })
                .collect();
            if !items.is_empty() {
                write_json(ev.key("item"), &items);
            }
        }
        _ => {}
    }
}

fn write_body(out: &mut Vec<u8>, dest: &Destination, e: &NormalizedEvent) {
    let account = dest.params.get("account_id").map_or("", String::as_str);
    let event = criteo_event(dest, &e.event_name).unwrap_or(&e.event_name);
    let mut o = JsonObject::begin(out);
    o.str("account", account);
    {
        let list = o.key("events");
        list.push(b'[');
        let mut ev = JsonObject::begin(list);
        if let (_, Some(c)) = value_and_currency(e) {
            ev.str("currency", &c);
        }
        ev.str("event", event);
        if event == "trackTransaction" {
            ev.str("id", &e.event_id);
        }
        write_items(&mut ev, event, e);
        ev.str("timestamp", &iso_seconds(e.event_time));
        ev.end();
        list.push(b']');
    }
    let mut id = JsonObject::begin(o.key("id"));
    if let Some(h) = e.hash_of(Variant::Email) {
        let mut email = JsonObject::begin(id.key("email"));
        write_json_hex(email.key("sha256"), h);
        email.end();
    }
    id.end();
    if let Some(ip) = clear_value(e, ClearField::ClientIpAddress) {
        o.str("ip", ip);
    }
    let site = dest
        .params
        .get("site_type")
        .map(String::as_str)
        .filter(|s| matches!(*s, "d" | "m" | "t"))
        .unwrap_or("d");
    o.str("site_type", site);
    if let Some(ua) = clear_value(e, ClearField::ClientUserAgent) {
        o.str("useragent", ua);
    }
    o.end();
}

/// The names in `errors` (strings, or objects' `code`/`name`/`type`).
fn error_names(v: &Value) -> Vec<String> {
    v.get("errors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => ["code", "name", "type"]
                        .iter()
                        .find_map(|k| other.get(*k).and_then(Value::as_str))
                        .map_or_else(|| other.to_string(), str::to_string),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Adapter for Criteo {
    fn platform(&self) -> Platform {
        Platform::Criteo
    }

    fn check(&self, dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable> {
        let e = ev.event;
        if criteo_event(dest, &e.event_name).is_none() {
            return Err(Unsendable(format!(
                "criteo has no OneTag event for `{}` (map it with event_map)",
                e.event_name
            )));
        }
        if e.hash_of(Variant::Email).is_none() {
            return Err(Unsendable(
                "criteo needs an email (the only Criteo user identifier intake keeps)".into(),
            ));
        }
        Ok(())
    }

    /// One event per request (the policy's `max_batch` is 1): only the first is sent.
    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], _now_ms: i64) -> HttpRequest {
        debug_assert!(events.len() <= 1, "criteo sends one event per request");
        let mut body = Vec::new();
        if let Some(ev) = events.first() {
            body.reserve(size_hint(ev.event));
            write_body(&mut body, dest, ev.event);
        }
        json_post_bytes(
            with_endpoint(URL, dest.endpoint.as_deref()),
            "application/json",
            Vec::new(),
            body,
            Vec::new(),
        )
    }

    fn classify(&self, _dest: &Destination, _n: usize, resp: &HttpResponse) -> Verdict {
        let base = classify_status_all(resp);
        if base != Class::Delivered {
            return Verdict::Whole(base);
        }
        let Ok(v) = serde_json::from_slice::<Value>(&resp.body) else {
            return Verdict::Whole(Class::Delivered);
        };
        let errors = error_names(&v);
        if errors.is_empty() {
            return Verdict::Whole(Class::Delivered);
        }
        let unknown: Vec<&String> = errors
            .iter()
            .filter(|e| !KNOWN_INVALID.contains(&e.as_str()))
            .collect();
        if unknown.is_empty() {
            return Verdict::Whole(Class::Rejected);
        }
        for u in unknown {
            if SEEN_ERRORS.lock().is_ok_and(|mut s| s.insert(u.clone())) {
                tracing::warn!(
                    error = %u,
                    status = resp.status,
                    "criteo answered an unknown error; retrying"
                );
            }
        }
        Verdict::Whole(Class::Retryable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::testkit::{dests, events};

    #[test]
    fn one_body_per_event() {
        for dest in dests() {
            for e in events() {
                let out = OutEvent {
                    event: &e,
                    merchant_id: "m",
                    accepted_ms: 0,
                };
                let req = CRITEO.build(&dest, &[out], 0);
                let v: Value = serde_json::from_slice(&req.body).unwrap();
                assert!(v["events"][0]["event"].is_string());
                assert_eq!(v["site_type"], "d");
            }
        }
    }

    #[test]
    fn errors_inside_200() {
        let r = |body: &str| HttpResponse {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let d = &dests()[0];
        let c = |b: &str| CRITEO.classify(d, 1, &r(b));
        assert_eq!(
            c(r#"{"errors":[],"warnings":["x"]}"#),
            Verdict::Whole(Class::Delivered)
        );
        assert_eq!(c(""), Verdict::Whole(Class::Delivered));
        assert_eq!(
            c(r#"{"errors":["UserIdentifierMissing"]}"#),
            Verdict::Whole(Class::Rejected)
        );
        assert_eq!(
            c(r#"{"errors":[{"code":"AccountMissing"}]}"#),
            Verdict::Whole(Class::Rejected)
        );
        assert_eq!(
            c(r#"{"errors":["UserIdentifierMissing","Boom"]}"#),
            Verdict::Whole(Class::Retryable)
        );
    }
}
