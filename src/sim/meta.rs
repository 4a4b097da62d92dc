//! Meta Conversions API simulator (platforms.md §1).
//!
//! - `POST /v{N}/{pixel_id}/events?access_token=…`, JSON `{"data":[1..=1000 events]}`.
//! - Success: `200 {"events_received":N,"messages":[],"fbtrace_id":…}`.
//! - Errors: Graph error objects `{"error":{"message","type","code","error_subcode"?,
//!   "fbtrace_id"}}`. Missing token → 400 code 104; a token other than the expected one
//!   → 400 code 190 (OAuthException). Validation is all-or-nothing like Meta's: any
//!   event with `event_name` "Invalid", or without `event_name`, integer `event_time`,
//!   `action_source` or a non-empty `user_data`, fails the whole request with 400 code
//!   100; any event older than 7 days does too (whole request, nothing processed).
//! - Test events: a top-level `test_event_code` (a non-empty string, else 400 code 100)
//!   is answered as usual and recorded as the request's test mark; nothing is counted.
//! - Faults: `Throttle` → 400 code 17 subcode 2446079 ("User request limit reached":
//!   Meta throttles with HTTP 400, not 429); `Auth` → 400 code 190; `Transient` → 503
//!   code 2; `Invalid` → 400 code 100; `Code{status, code}` → that status and code.
//! - No rate limit by default (Meta publishes no CAPI number); when one is configured,
//!   going over answers 400 code 17.

use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, Reply, Req, Shared};

pub const MAX_AGE_SECS: i64 = 7 * 86_400;

fn graph_error(status: u16, code: i64, subcode: Option<i64>, message: &str, seq: u64) -> Reply {
    let mut err = json!({
        "message": message,
        "type": if code == 190 || code == 104 { "OAuthException" } else { "GraphMethodException" },
        "code": code,
        "fbtrace_id": format!("SimTrace{seq}"),
    });
    if let Some(sc) = subcode {
        err["error_subcode"] = json!(sc);
    }
    if code == 1 || code == 2 {
        err["is_transient"] = json!(true);
    }
    Reply::json(status, &json!({ "error": err }))
}

/// Why an event is invalid, if it is.
fn invalid(e: &Value, now_s: i64) -> Option<&'static str> {
    let name = e.get("event_name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        return Some("The parameter event_name is required");
    }
    if name == "Invalid" {
        return Some("Invalid parameter: event_name");
    }
    let Some(t) = e.get("event_time").and_then(Value::as_i64) else {
        return Some("The parameter event_time is required");
    };
    if t > now_s + 60 {
        return Some("event_time is in the future");
    }
    if e.get("action_source").and_then(Value::as_str).is_none() {
        return Some("The parameter action_source is required");
    }
    match e.get("user_data").and_then(Value::as_object) {
        Some(u) if !u.is_empty() => None,
        _ => Some("The parameter user_data is required"),
    }
}

/// A top-level `test_event_code` that is a non-empty string (Meta's and TikTok's test
/// marker).
pub(super) fn test_event_code(body: &Value) -> Option<String> {
    body.get("test_event_code")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

pub(super) struct Meta;

impl PlatformSim for Meta {
    fn ids(&self) -> Ids {
        Ids::Each {
            list: "data",
            id: &["event_id"],
        }
    }

    fn test_mark(&self, body: &Value) -> Option<String> {
        test_event_code(body)
    }

    fn fault(&self, f: &Fault, now_ms: i64, seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => {
                graph_error(400, 17, Some(2_446_079), "User request limit reached", seq)
                    .retry_after(*retry_after, now_ms)
            }
            Fault::Auth => graph_error(
                400,
                190,
                Some(463),
                "Error validating access token: Session has expired",
                seq,
            ),
            Fault::Transient => graph_error(503, 2, None, "Service temporarily unavailable", seq),
            Fault::Invalid => graph_error(400, 100, None, "Invalid parameter", seq),
            Fault::Code { status, code } => {
                graph_error(*status, *code, None, "Simulated error", seq)
            }
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        let seg: Vec<&str> = r.path.trim_matches('/').split('/').collect();
        let pixel = match seg.as_slice() {
            [v, pixel, "events"] if v.starts_with('v') && r.method == "POST" => *pixel,
            _ => {
                return graph_error(404, 100, Some(33), "Unsupported post request.", r.seq);
            }
        };
        let token = r.query_param("access_token").unwrap_or_default();
        if token.is_empty() {
            return graph_error(
                400,
                104,
                None,
                "An access token is required to request this resource.",
                r.seq,
            );
        }
        if s.credential.as_deref().is_some_and(|c| c != token) {
            return graph_error(
                400,
                190,
                None,
                "Invalid OAuth access token - Cannot parse access token",
                r.seq,
            );
        }
        let Some(data) = r.body.get("data").and_then(Value::as_array) else {
            return graph_error(400, 100, None, "The parameter data is required", r.seq);
        };
        if data.is_empty() || data.len() > 1000 {
            return graph_error(
                400,
                100,
                None,
                "Invalid parameter: data must hold 1 to 1000 events",
                r.seq,
            );
        }
        if r.body.get("test_event_code").is_some() && test_event_code(r.body).is_none() {
            return graph_error(
                400,
                100,
                None,
                "Invalid parameter: test_event_code must be a non-empty string",
                r.seq,
            );
        }
        let now_s = r.now_ms.div_euclid(1000);
        if data.iter().any(|e| {
            e.get("event_time")
                .and_then(Value::as_i64)
                .is_some_and(|t| t < now_s - MAX_AGE_SECS)
        }) {
            // Subcode as commonly reported for "event_time too old" (unverified).
            return graph_error(
                400,
                100,
                Some(2_804_003),
                "Invalid parameter: event_time is more than 7 days in the past",
                r.seq,
            );
        }
        if let Some(msg) = data.iter().find_map(|e| invalid(e, now_s)) {
            return graph_error(400, 100, None, msg, r.seq);
        }
        if s.admit(pixel, data.len() as u64, r.now_ms).is_err() {
            return graph_error(
                400,
                17,
                Some(2_446_079),
                "User request limit reached",
                r.seq,
            );
        }
        Reply::json(
            200,
            &json!({
                "events_received": data.len(),
                "messages": [],
                "fbtrace_id": format!("SimTrace{}", r.seq),
            }),
        )
        .accepted()
    }
}
