//! Pinterest Conversions API v5 simulator (platforms.md §6).
//!
//! - `POST /v5/ad_accounts/{ad_account_id}/events` (optionally `?test=true`) with
//!   `Authorization: Bearer …`, JSON `{"data":[1..=1000 events]}`.
//! - Each event is judged **on its own**: an `event_name` Pinterest does not have, an
//!   `action_source` other than `web`, `app_android`, `app_ios`, `offline`, an
//!   `event_time` that is not an integer of unix seconds, more than 7 days old
//!   (unverified) or more than 5 min in the future, no `event_id`, a `user_data`
//!   without `em`, `hashed_maids`, or both `client_ip_address` and
//!   `client_user_agent`, a hashed field (`em`, `ph`, …) that is not 64 hex digits, or
//!   a `custom_data.currency` that is not three letters, fails that event.
//! - Some events processed → `200 {"num_events_received","num_events_processed",
//!   "events":[{"status":"processed"|"failed","error_message","warning_message"}]}` in
//!   request order (**failed events inside a 200**); none processed → `422 {"code":
//!   4196,"message":"Not all events were successfully processed","details":[…]}` (one
//!   text per failed event; the real `details` shape is unverified).
//! - No or empty token → `401 {"code":2,"message":"Authentication failed."}`, a token
//!   other than the expected one → the same; a body without a `data` array of 1 to
//!   1,000 → `400 {"code":4196,"message"}`.
//! - Rate limit: 5,000 requests/min per ad account (sliding), going over answers
//!   `429 {"code":8}` with `Retry-After` (seconds, rounded up).
//! - Faults: `Throttle` → 429 code 8 (`Retry-After` only if scripted); `Auth` → 401
//!   code 2; `Transient` → 503 code 4197; `Invalid` → 400 code 4196; `Code{status,
//!   code}` → that status with `{"code","message"}`, except `Code{200, n}`: a 200 whose
//!   first `n` events are `failed` (errors inside a 200), and `Code{422, _}`: the 422
//!   above for every event.

use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, RateLimit, Reply, Req, Shared};

pub const PATH_PREFIX: &str = "/v5/ad_accounts/";

/// `event_time` must be at most this old (unverified).
pub const MAX_AGE_MS: i64 = 7 * 86_400_000;
const MAX_FUTURE_MS: i64 = 5 * 60_000;

const EVENT_NAMES: [&str; 9] = [
    "add_to_cart",
    "checkout",
    "custom",
    "lead",
    "page_visit",
    "search",
    "signup",
    "view_category",
    "watch_video",
];

const ACTION_SOURCES: [&str; 4] = ["web", "app_android", "app_ios", "offline"];

const HASHED: [&str; 11] = [
    "em",
    "ph",
    "external_id",
    "fn",
    "ln",
    "ct",
    "st",
    "zp",
    "country",
    "ge",
    "db",
];

pub const NOT_ALL: &str = "Not all events were successfully processed";

fn error(status: u16, code: i64, msg: &str) -> Reply {
    Reply::json(status, &json!({ "code": code, "message": msg }))
}

fn unauthorized() -> Reply {
    error(401, 2, "Authentication failed.")
}

/// The answer for events judged `results` (None: processed).
fn answer(results: &[Option<String>]) -> Reply {
    let processed = results.iter().filter(|r| r.is_none()).count();
    if processed == 0 {
        let details: Vec<String> = results
            .iter()
            .enumerate()
            .map(|(i, r)| format!("events[{i}]: {}", r.as_deref().unwrap_or("")))
            .collect();
        return Reply::json(
            422,
            &json!({"code": 4196, "message": NOT_ALL, "details": details}),
        );
    }
    let events: Vec<Value> = results
        .iter()
        .map(|r| match r {
            None => json!({"status": "processed", "error_message": "", "warning_message": ""}),
            Some(m) => json!({"status": "failed", "error_message": m, "warning_message": ""}),
        })
        .collect();
    Reply::json(
        200,
        &json!({
            "num_events_received": results.len(),
            "num_events_processed": processed,
            "events": events,
        }),
    )
    .accepted()
}

fn is_hex64(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn non_empty(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// Why an event fails, if it does.
fn invalid(e: &Value, now_ms: i64) -> Option<String> {
    let name = e.get("event_name").and_then(Value::as_str).unwrap_or("");
    if !EVENT_NAMES.contains(&name) {
        return Some(format!("event_name '{name}' is not a valid event name."));
    }
    let src = e.get("action_source").and_then(Value::as_str).unwrap_or("");
    if !ACTION_SOURCES.contains(&src) {
        return Some(format!("action_source '{src}' is not valid."));
    }
    let Some(t) = e.get("event_time").and_then(Value::as_i64) else {
        return Some("event_time must be an integer of unix seconds.".into());
    };
    if t * 1000 < now_ms - MAX_AGE_MS {
        return Some("event_time is too far in the past.".into());
    }
    if t * 1000 > now_ms + MAX_FUTURE_MS {
        return Some("event_time is in the future.".into());
    }
    if !non_empty(e.get("event_id")) {
        return Some("event_id is required.".into());
    }
    let u = e.get("user_data");
    let field = |k: &str| u.and_then(|u| u.get(k));
    for k in HASHED {
        if let Some(v) = field(k) {
            let ok = v
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(is_hex64));
            if !ok {
                return Some(format!("user_data.{k} must be a list of SHA-256 hashes."));
            }
        }
    }
    let identified = field("em").is_some()
        || field("hashed_maids").is_some()
        || (non_empty(field("client_ip_address")) && non_empty(field("client_user_agent")));
    if !identified {
        return Some(
            "user_data needs em, hashed_maids, or client_ip_address with client_user_agent.".into(),
        );
    }
    if let Some(c) = e.pointer("/custom_data/currency") {
        let ok = c
            .as_str()
            .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()));
        if !ok {
            return Some("custom_data.currency is not a valid ISO-4217 code.".into());
        }
    }
    None
}

pub(super) struct Pinterest;

impl PlatformSim for Pinterest {
    fn ids(&self) -> Ids {
        Ids::Each {
            list: "data",
            id: &["event_id"],
        }
    }

    fn limits(&self) -> Vec<RateLimit> {
        vec![RateLimit::sliding(5_000, 60_000)]
    }

    fn fault(&self, f: &Fault, now_ms: i64, _seq: u64, body: &Value) -> Reply {
        // Faults shaped per event answer for each event the request carried.
        let n = self.ids().count(body);
        match f {
            Fault::Throttle { retry_after } => {
                error(429, 8, "Rate limit exceeded.").retry_after(*retry_after, now_ms)
            }
            Fault::Auth => unauthorized(),
            Fault::Transient => error(503, 4197, "Service unavailable. Please try again later."),
            Fault::Invalid => error(400, 4196, "Invalid request: conversion events are invalid."),
            Fault::Code { status: 200, code } => {
                let failed = (*code).max(0) as usize;
                let n = n.max(1);
                let events: Vec<Value> = (0..n)
                .map(|i| {
                    if i < failed {
                        json!({"status": "failed", "error_message": "Simulated failure.", "warning_message": ""})
                    } else {
                        json!({"status": "processed", "error_message": "", "warning_message": ""})
                    }
                })
                .collect();
                Reply::json(
                    200,
                    &json!({"num_events_received": n, "num_events_processed": n.saturating_sub(failed), "events": events}),
                )
            }
            Fault::Code { status: 422, .. } => {
                answer(&vec![Some("Simulated failure.".into()); n.max(1)])
            }
            Fault::Code { status, code } => error(*status, *code, "Simulated error"),
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        let account = match r
            .path
            .strip_prefix(PATH_PREFIX)
            .and_then(|p| p.strip_suffix("/events"))
        {
            Some(a) if r.method == "POST" && !a.is_empty() && !a.contains('/') => a,
            _ => return error(404, 404, "Not found."),
        };
        let token = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("")
            .trim();
        if token.is_empty() || s.credential.as_deref().is_some_and(|c| c != token) {
            return unauthorized();
        }
        let Some(events) = r.body.get("data").and_then(Value::as_array) else {
            return error(400, 4196, "data is required.");
        };
        if events.is_empty() || events.len() > 1000 {
            return error(400, 4196, "data must hold 1 to 1000 events.");
        }
        if let Err(wait_ms) = s.admit(account, 1, r.now_ms) {
            let secs = (wait_ms + 999) / 1000;
            return error(429, 8, "Rate limit exceeded.").header("retry-after", secs.to_string());
        }
        let results: Vec<Option<String>> = events.iter().map(|e| invalid(e, r.now_ms)).collect();
        answer(&results)
    }
}
