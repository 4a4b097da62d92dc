//! Snapchat Conversions API v3 simulator (platforms.md §7).
//!
//! - `POST /v3/{pixel_id}/events` (and `/v3/{pixel_id}/events/validate`, which records
//!   nothing) with the token in `?access_token=` or `Authorization: Bearer …`; JSON
//!   `{"data":[1..=2000 events]}`.
//! - Success: `200 {"status":"SUCCESS","reason":"SUCCESS"}` (`VALID` from the validate
//!   endpoint).
//! - Validation fails the **whole request** (unverified, see the adapter):
//!   `400 {"status":"INVALID","reason":"events[i]: …"}` for an `event_name` that is not
//!   one of Snap's, an `event_time` that is not an integer of unix seconds, more than 7
//!   days old (unverified) or more than 5 min in the future, no `action_source`, an
//!   `em`/`ph`/`external_id` that is not a list of 64-hex hashes (unhashed PII), too
//!   little PII (none of `em`, `ph`, `madid`, nor both `client_ip_address` and
//!   `client_user_agent`), or a `PURCHASE` without `custom_data.currency` and `value`.
//!   A body without a `data` array of 1 to 2,000 → `400 INVALID` too.
//! - No or empty token, or one other than the expected one → `401 {"status":
//!   "UNAUTHORIZED","reason"}`.
//! - No rate limit by default (none published); when one is configured (per pixel),
//!   going over answers `429` with `Retry-After` (seconds, rounded up).
//! - Faults: `Throttle` → 429 (`Retry-After` only if scripted); `Auth` → 401; `Transient`
//!   → 503; `Invalid` → 400 INVALID; `Code{status, code}` → that status with
//!   `{"status","reason","code"}`, where a 2xx says `INVALID` (an error inside a 2xx,
//!   the reading the adapter must also survive) and others `ERROR`.

use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, Reply, Req, Shared};

pub const PATH_PREFIX: &str = "/v3/";

/// `event_time` must be at most this old (unverified).
pub const MAX_AGE_MS: i64 = 7 * 86_400_000;
const MAX_FUTURE_MS: i64 = 5 * 60_000;

// The platform's event names: one list, the adapter's.
use crate::platforms::snapchat::EVENT_NAMES;

fn status(code: u16, status: &str, reason: &str) -> Reply {
    Reply::json(code, &json!({ "status": status, "reason": reason }))
}

fn unauthorized() -> Reply {
    status(401, "UNAUTHORIZED", "Invalid or expired access token")
}

fn hashes(v: &Value) -> bool {
    v.as_array().is_some_and(|a| {
        !a.is_empty()
            && a.iter().all(|h| {
                h.as_str()
                    .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            })
    })
}

fn non_empty(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// Why an event is invalid, if it is.
fn invalid(e: &Value, now_ms: i64) -> Option<String> {
    let name = e.get("event_name").and_then(Value::as_str).unwrap_or("");
    if !EVENT_NAMES.contains(&name) {
        return Some(format!("event_name {name:?} is not supported"));
    }
    let Some(t) = e.get("event_time").and_then(Value::as_i64) else {
        return Some("event_time must be unix seconds".into());
    };
    if t * 1000 < now_ms - MAX_AGE_MS || t * 1000 > now_ms + MAX_FUTURE_MS {
        return Some("event_time is out of range".into());
    }
    if !non_empty(e.get("action_source")) {
        return Some("missing required field action_source".into());
    }
    let u = e.get("user_data");
    let field = |k: &str| u.and_then(|u| u.get(k));
    for k in ["em", "ph", "external_id"] {
        if field(k).is_some_and(|v| !hashes(v)) {
            return Some(format!("user_data.{k} is not hashed"));
        }
    }
    let identified = field("em").is_some()
        || field("ph").is_some()
        || non_empty(field("madid"))
        || (non_empty(field("client_ip_address")) && non_empty(field("client_user_agent")));
    if !identified {
        return Some("insufficient user data".into());
    }
    if name == "PURCHASE" {
        let cd = e.get("custom_data");
        let has = |k: &str| cd.and_then(|c| c.get(k)).is_some_and(|v| !v.is_null());
        if !has("currency") || !has("value") {
            return Some("PURCHASE requires custom_data.currency and custom_data.value".into());
        }
    }
    None
}

pub(super) struct Snapchat;

impl PlatformSim for Snapchat {
    fn ids(&self) -> Ids {
        Ids::Each {
            list: "data",
            id: &["event_id"],
        }
    }

    fn fault(&self, f: &Fault, now_ms: i64, _seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => {
                status(429, "RATE_LIMITED", "Too many requests").retry_after(*retry_after, now_ms)
            }
            Fault::Auth => unauthorized(),
            Fault::Transient => status(503, "ERROR", "Service unavailable"),
            Fault::Invalid => status(
                400,
                "INVALID",
                "events[0]: missing required field event_name",
            ),
            Fault::Code { status: s, code } => Reply::json(
                *s,
                &json!({
                    "status": if (200..300).contains(s) { "INVALID" } else { "ERROR" },
                    "reason": "Simulated error",
                    "code": code,
                }),
            ),
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        let rest = r.path.strip_prefix(PATH_PREFIX).unwrap_or("");
        let (pixel, validate) = match rest.split_once('/') {
            Some((p, "events")) => (p, false),
            Some((p, "events/validate")) => (p, true),
            _ => ("", false),
        };
        if pixel.is_empty() || r.method != "POST" {
            return status(404, "NOT_FOUND", "Not found");
        }
        let token = r.query_param("access_token").unwrap_or_else(|| {
            r.header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or("")
                .trim()
                .to_string()
        });
        if token.is_empty() || s.credential.as_deref().is_some_and(|c| c != token) {
            return unauthorized();
        }
        let events = match r.body.get("data").and_then(Value::as_array) {
            Some(a) if !a.is_empty() && a.len() <= 2000 => a,
            _ => return status(400, "INVALID", "data must hold 1 to 2000 events"),
        };
        if let Err(wait_ms) = s.admit(pixel, 1, r.now_ms) {
            let secs = (wait_ms + 999) / 1000;
            return status(429, "RATE_LIMITED", "Too many requests")
                .header("retry-after", secs.to_string());
        }
        let reasons: Vec<String> = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| invalid(e, r.now_ms).map(|m| format!("events[{i}]: {m}")))
            .collect();
        if !reasons.is_empty() {
            return status(400, "INVALID", &reasons.join("; "));
        }
        if validate {
            status(200, "VALID", "All events are valid")
        } else {
            status(200, "SUCCESS", "SUCCESS").accepted()
        }
    }
}
