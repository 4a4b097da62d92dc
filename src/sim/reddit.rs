//! Reddit Conversions API v2.0 simulator (platforms.md §8).
//!
//! - `POST /api/v2.0/conversions/events/{ad_account_id}` with `Authorization: Bearer …`,
//!   JSON `{"test_mode"?,"events":[1..=1000 events]}`.
//! - Success: `200 {"message":"Successfully processed N conversion events."}`.
//! - No or empty bearer token → `401` plain text `Authorization Required`; a token other
//!   than the expected one → `401 {"success":false,"error":{"reason":"UNAUTHORIZED",
//!   "explanation"}}` (platforms.md lists both shapes).
//! - Validation is **all-or-nothing**, like Reddit's: an event without a known
//!   `event_type.tracking_type`, a `Custom` one without `custom_event_name` or with
//!   `custom_event_name` "Invalid", an `event_at` that is not ISO-8601, 168 h old or
//!   more, or more than 5 min in the future, or an event with no user identifier (none of
//!   `user.email`, `phone_number`, `external_id`, `uuid`, `idfa`, `aaid`, both
//!   `ip_address` and `user_agent`, nor `click_id`) makes the whole request fail with
//!   `400 {"message":"There were N invalid conversion events. None were processed.",
//!   "invalid_events":[{"error_message","event"}]}`, echoing each bad event as sent.
//!   A body without an `events` array of 1 to 1,000 events → `400 {"message"}`.
//! - No rate limit by default (none published); when one is configured (per ad
//!   account), going over answers `429` with `Retry-After` (seconds, rounded up).
//! - Faults: `Throttle` → 429 (`Retry-After` only if scripted); `Auth` → 401 JSON shape;
//!   `Transient` → 503; `Invalid` → 400 `{"message"}` without `invalid_events`;
//!   `Code{status, code}` → that status with `{"message","code"}`.

use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, Reply, Req, Shared};

pub const PATH_PREFIX: &str = "/api/v2.0/conversions/events/";

/// `event_at` must be less than this old.
pub const MAX_AGE_MS: i64 = 168 * 3_600_000;
/// … and at most this far in the future.
pub const MAX_FUTURE_MS: i64 = 5 * 60_000;

const TRACKING_TYPES: [&str; 9] = [
    "Purchase",
    "AddToCart",
    "Lead",
    "SignUp",
    "PageVisit",
    "ViewContent",
    "Search",
    "AddToWishlist",
    "Custom",
];

fn message(status: u16, msg: &str) -> Reply {
    Reply::json(status, &json!({ "message": msg }))
}

fn unauthorized() -> Reply {
    Reply::json(
        401,
        &json!({"success": false, "error": {
            "reason": "UNAUTHORIZED",
            "explanation": "Authorization token is invalid or has expired."
        }}),
    )
}

fn non_empty(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// Why an event is invalid, if it is.
fn invalid(e: &Value, now_ms: i64) -> Option<&'static str> {
    let ty = e.get("event_type");
    let tracking = ty
        .and_then(|t| t.get("tracking_type"))
        .and_then(Value::as_str);
    match tracking {
        None => return Some("event_type.tracking_type is required"),
        Some(t) if !TRACKING_TYPES.contains(&t) => {
            return Some("event_type.tracking_type is not a valid tracking type");
        }
        Some("Custom") => {
            match ty
                .and_then(|t| t.get("custom_event_name"))
                .and_then(Value::as_str)
            {
                None | Some("") => {
                    return Some("event_type.custom_event_name is required for Custom events");
                }
                Some("Invalid") => return Some("event_type.custom_event_name is invalid"),
                _ => {}
            }
        }
        _ => {}
    }
    let at = e.get("event_at").and_then(Value::as_str).and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    let Some(at) = at else {
        return Some("event_at must be an ISO-8601 timestamp");
    };
    let at_ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
    if at_ms <= now_ms - MAX_AGE_MS {
        return Some("event_at timestamp must be less than 168h0m0s old");
    }
    if at_ms > now_ms + MAX_FUTURE_MS {
        return Some("event_at timestamp must not be more than 5m0s in the future");
    }
    let u = e.get("user");
    let field = |k: &str| non_empty(u.and_then(|u| u.get(k)));
    let identified = [
        "email",
        "phone_number",
        "external_id",
        "uuid",
        "idfa",
        "aaid",
    ]
    .iter()
    .any(|k| field(k))
        || (field("ip_address") && field("user_agent"))
        || non_empty(e.get("click_id"));
    if !identified {
        return Some("user must carry at least one identifier or a click_id");
    }
    None
}

pub(super) struct Reddit;

impl PlatformSim for Reddit {
    fn ids(&self) -> Ids {
        Ids::Each {
            list: "events",
            id: &["event_metadata", "conversion_id"],
        }
    }

    fn fault(&self, f: &Fault, now_ms: i64, _seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => {
                message(429, "Too Many Requests").retry_after(*retry_after, now_ms)
            }
            Fault::Auth => unauthorized(),
            Fault::Transient => message(503, "Service Unavailable"),
            Fault::Invalid => message(400, "invalid request"),
            Fault::Code { status, code } => Reply::json(
                *status,
                &json!({"message": "Simulated error", "code": code}),
            ),
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        let account = match r.path.strip_prefix(PATH_PREFIX) {
            Some(a) if r.method == "POST" && !a.is_empty() && !a.contains('/') => a,
            _ => return message(404, "Not Found"),
        };
        let token = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("")
            .trim();
        if token.is_empty() {
            return Reply::plain(401, "Authorization Required");
        }
        if s.credential.as_deref().is_some_and(|c| c != token) {
            return unauthorized();
        }
        let Some(events) = r.body.get("events").and_then(Value::as_array) else {
            return message(400, "events is required");
        };
        if events.is_empty() || events.len() > 1000 {
            return message(400, "events must hold 1 to 1000 events");
        }
        if let Err(wait_ms) = s.admit(account, 1, r.now_ms) {
            let secs = (wait_ms + 999) / 1000;
            return message(429, "Too Many Requests").header("retry-after", secs.to_string());
        }
        let bad: Vec<Value> = events
            .iter()
            .filter_map(|e| invalid(e, r.now_ms).map(|m| json!({"error_message": m, "event": e})))
            .collect();
        if !bad.is_empty() {
            return Reply::json(
                400,
                &json!({
                    "message": format!(
                        "There were {} invalid conversion events. None were processed.",
                        bad.len()
                    ),
                    "invalid_events": bad,
                }),
            );
        }
        message(
            200,
            &format!("Successfully processed {} conversion events.", events.len()),
        )
        .accepted()
    }
}
