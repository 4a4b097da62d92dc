//! Criteo OneTag S2S simulator (see `platforms::criteo` for the sources).
//!
//! - `POST /m/event?version=s2s_v0`, JSON, no authentication. Another path → 404; a
//!   missing or other `version` → `400` plain text.
//! - **Errors inside 200**, like Criteo's endpoint as public connector code describes
//!   it: every well-formed request is answered `200 {"errors":[…],"warnings":[…]}`.
//!   `AccountMissing` (no `account`), `UserIdentifierMissing` (no `id.email` hash, no
//!   `id.mapping_key` + `id.mapped_user_id`, no `id.idfa`/`id.gaid`), `EventsMissing`
//!   (no `events`, or one without `event`). An event name that is not a OneTag event
//!   only adds the warning `UnknownEvent` (unverified). The request's event is accepted
//!   only when `errors` is empty.
//! - No rate limit by default; when one is configured (per account), going over answers
//!   `429` with `Retry-After`.
//! - Faults: `Throttle` → 429 (`Retry-After` only if scripted); `Auth` → 401;
//!   `Transient` → 503; `Invalid` → `200 {"errors":["UserIdentifierMissing"]}`;
//!   `Code{status, code}` → that status with `{"errors":["Error<code>"]}`.

use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, Reply, Req, Shared};

pub const PATH: &str = "/m/event";

// The platform's event names: one list, the adapter's.
use crate::platforms::criteo::EVENTS;

fn answer(status: u16, errors: &[&str], warnings: &[&str]) -> Reply {
    Reply::json(status, &json!({"errors": errors, "warnings": warnings}))
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Object(m)) => m.values().any(|x| non_empty(Some(x))),
        _ => false,
    }
}

pub(super) struct Criteo;

impl PlatformSim for Criteo {
    fn ids(&self) -> Ids {
        Ids::Each {
            list: "events",
            id: &["id"],
        }
    }

    fn fault(&self, f: &Fault, now_ms: i64, _seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => {
                Reply::plain(429, "Too Many Requests").retry_after(*retry_after, now_ms)
            }
            Fault::Auth => Reply::plain(401, "Unauthorized"),
            Fault::Transient => Reply::plain(503, "Service Unavailable"),
            Fault::Invalid => answer(200, &["UserIdentifierMissing"], &[]),
            Fault::Code { status, code } => Reply::json(
                *status,
                &json!({"errors": [format!("Error{code}")], "warnings": []}),
            ),
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        if r.path != PATH || r.method != "POST" {
            return Reply::plain(404, "Not Found");
        }
        if r.query_param("version").as_deref() != Some("s2s_v0") {
            return Reply::plain(400, "version=s2s_v0 is required");
        }
        let account = r.body.get("account").and_then(Value::as_str).unwrap_or("");
        if let Err(wait_ms) = s.admit(account, 1, r.now_ms) {
            let secs = (wait_ms + 999) / 1000;
            return Reply::plain(429, "Too Many Requests").header("retry-after", secs.to_string());
        }
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        if account.is_empty() {
            errors.push("AccountMissing");
        }
        let id = r.body.get("id");
        let field = |k: &str| id.and_then(|i| i.get(k));
        let identified = non_empty(field("email"))
            || (non_empty(field("mapping_key")) && non_empty(field("mapped_user_id")))
            || non_empty(field("idfa"))
            || non_empty(field("gaid"));
        if !identified {
            errors.push("UserIdentifierMissing");
        }
        match r.body.get("events").and_then(Value::as_array) {
            Some(evs) if !evs.is_empty() => {
                for e in evs {
                    match e.get("event").and_then(Value::as_str) {
                        None | Some("") if !errors.contains(&"EventsMissing") => {
                            errors.push("EventsMissing");
                        }
                        None | Some("") => {}
                        Some(name) if !EVENTS.contains(&name) => warnings.push("UnknownEvent"),
                        _ => {}
                    }
                }
            }
            _ => errors.push("EventsMissing"),
        }
        let reply = answer(200, &errors, &warnings);
        if errors.is_empty() {
            reply.accepted()
        } else {
            reply
        }
    }
}
