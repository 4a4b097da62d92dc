//! TikTok Events API simulator (platforms.md §2).
//!
//! - `POST /open_api/v1.3/event/track/` with `Access-Token`, JSON
//!   `{"event_source","event_source_id","data":[1..=1000 events]}`.
//! - **Every answer of the API proper is HTTP 200** with `{"code","message",
//!   "request_id","data":{}}`; `code` 0 is success. Missing token → code 40104, a token
//!   other than the expected one → 40105 (both unverified); over the rate limit (600
//!   requests/min, sliding window, per token) → 40100; a malformed body or event (no
//!   `event_source_id`, no `event`, no integer `event_time`, event "Invalid") → 40002.
//!   An unknown path is a plain 404.
//! - Test events: a top-level `test_event_code` (a non-empty string, else code 40002)
//!   is answered as usual and recorded as the request's test mark; nothing is counted.
//! - Faults: `Throttle` → 200 code 40100; `Auth` → 200 code 40105; `Transient` → 200
//!   code 50000 (a code the adapter does not know: retryable); `Invalid` → 200 code
//!   40002; `Code{status, code}` → that status with that code.

use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, RateLimit, Reply, Req, Shared};

pub const PATH: &str = "/open_api/v1.3/event/track/";

fn answer(status: u16, code: i64, message: &str, seq: u64) -> Reply {
    let r = Reply::json(
        status,
        &json!({
            "code": code,
            "message": message,
            "request_id": format!("sim{seq:016}"),
            "data": {},
        }),
    );
    if code == 0 { r.accepted() } else { r }
}

fn invalid(e: &Value) -> Option<&'static str> {
    match e.get("event").and_then(Value::as_str) {
        None | Some("") => return Some("data.event: Missing data for required field."),
        Some("Invalid") => return Some("data.event: Invalid value."),
        _ => {}
    }
    if e.get("event_time").and_then(Value::as_i64).is_none() {
        return Some("data.event_time: Missing data for required field.");
    }
    None
}

pub(super) struct Tiktok;

impl PlatformSim for Tiktok {
    fn test_mark(&self, body: &Value) -> Option<String> {
        super::meta::test_event_code(body)
    }

    fn ids(&self) -> Ids {
        Ids::Each {
            list: "data",
            id: &["event_id"],
        }
    }

    fn limits(&self) -> Vec<RateLimit> {
        vec![RateLimit::sliding(600, 60_000)]
    }

    fn fault(&self, f: &Fault, now_ms: i64, seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => answer(
                200,
                40100,
                "Too many requests. Please retry in some time.",
                seq,
            )
            .retry_after(*retry_after, now_ms),
            Fault::Auth => answer(
                200,
                40105,
                "The access token is invalid or has been revoked.",
                seq,
            ),
            Fault::Transient => answer(200, 50000, "System error", seq),
            Fault::Invalid => answer(200, 40002, "Invalid parameter", seq),
            Fault::Code { status, code } => answer(*status, *code, "Simulated error", seq),
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        if r.path != PATH || r.method != "POST" {
            return Reply::plain(404, "404 page not found");
        }
        let token = r.header("access-token").unwrap_or("");
        if token.is_empty() {
            return answer(200, 40104, "Access token is null.", r.seq);
        }
        if s.credential.as_deref().is_some_and(|c| c != token) {
            return answer(
                200,
                40105,
                "The access token is invalid or has been revoked.",
                r.seq,
            );
        }
        if s.admit(token, 1, r.now_ms).is_err() {
            return answer(
                200,
                40100,
                "Too many requests. Please retry in some time.",
                r.seq,
            );
        }
        let source_ok = r
            .body
            .get("event_source_id")
            .and_then(Value::as_str)
            .is_some_and(|p| !p.is_empty());
        if !source_ok {
            return answer(
                200,
                40002,
                "event_source_id: Missing data for required field.",
                r.seq,
            );
        }
        let Some(data) = r.body.get("data").and_then(Value::as_array) else {
            return answer(200, 40002, "data: Missing data for required field.", r.seq);
        };
        if r.body.get("test_event_code").is_some() && super::meta::test_event_code(r.body).is_none()
        {
            return answer(200, 40002, "test_event_code: Not a valid string.", r.seq);
        }
        if data.is_empty() || data.len() > 1000 {
            return answer(
                200,
                40002,
                "data: Length must be between 1 and 1000.",
                r.seq,
            );
        }
        if let Some(msg) = data.iter().find_map(invalid) {
            return answer(200, 40002, msg, r.seq);
        }
        answer(200, 0, "OK", r.seq)
    }
}
