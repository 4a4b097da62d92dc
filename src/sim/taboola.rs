//! Taboola bulk S2S simulator (see `platforms::taboola` for the sources).
//!
//! - `POST /{account_id}/log/3/bulk-s2s-action`, JSON `{"actions":[1..=1000]}`, no
//!   authentication. A non-numeric account id → `404 {"message"}` (unverified shape).
//! - Success: `204`, no body. Like Taboola's bulk endpoint, the actions themselves are
//!   **not validated**: an action without `click-id` or `name` is still answered 204 (it
//!   is recorded as not accepted: see [`counted`]).
//! - A body that is not `{"actions":[…]}` with 1 to 1,000 actions → `400 {"message"}`
//!   (unverified shape).
//! - No rate limit by default (none published); when one is configured (per account),
//!   going over answers `429` with `Retry-After`.
//! - Faults: `Throttle` → 429 (`Retry-After` only if scripted); `Auth` → 401;
//!   `Transient` → 503; `Invalid` → 400; `Code{status, code}` → that status with
//!   `{"message","code"}`.

use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, Reply, Req, Shared};

pub const PATH_SUFFIX: &str = "/log/3/bulk-s2s-action";

fn message(status: u16, msg: &str) -> Reply {
    Reply::json(status, &json!({ "message": msg }))
}

/// Whether Taboola would count this action (it still answers 204 for those it drops).
pub fn counted(action: &Value) -> bool {
    let s = |k: &str| action.get(k).and_then(Value::as_str).unwrap_or("");
    s("click-id").len() >= 20 && !s("name").is_empty() && action["timestamp"].is_i64()
}

pub(super) struct Taboola;

impl PlatformSim for Taboola {
    fn ids(&self) -> Ids {
        Ids::Each {
            list: "actions",
            id: &["orderid"],
        }
    }

    fn fault(&self, f: &Fault, now_ms: i64, _seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => {
                message(429, "Too Many Requests").retry_after(*retry_after, now_ms)
            }
            Fault::Auth => message(401, "Unauthorized"),
            Fault::Transient => message(503, "Service Unavailable"),
            Fault::Invalid => message(400, "Bad Request"),
            Fault::Code { status, code } => Reply::json(
                *status,
                &json!({"message": "Simulated error", "code": code}),
            ),
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        let account = match r
            .path
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix(PATH_SUFFIX))
        {
            Some(a) if r.method == "POST" && !a.is_empty() && !a.contains('/') => a,
            _ => return message(404, "Not Found"),
        };
        if !account.bytes().all(|b| b.is_ascii_digit()) {
            return message(404, "Unknown account");
        }
        let Some(actions) = r.body.get("actions").and_then(Value::as_array) else {
            return message(400, "actions is required");
        };
        if actions.is_empty() || actions.len() > 1000 {
            return message(400, "actions must hold 1 to 1000 conversions");
        }
        if let Err(wait_ms) = s.admit(account, 1, r.now_ms) {
            let secs = (wait_ms + 999) / 1000;
            return message(429, "Too Many Requests").header("retry-after", secs.to_string());
        }
        Reply {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
            // 204 either way; "accepted" (what tests count) only if every action counts.
            accepted: actions.iter().all(counted),
        }
    }
}
