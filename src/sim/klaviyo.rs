//! Klaviyo Create Event simulator (platforms.md §3).
//!
//! - `POST /api/events` (or `/api/events/`) with `Authorization: Klaviyo-API-Key …`, a
//!   `revision` header and a JSON:API body `{"data":{"type":"event","attributes":{
//!   "properties","metric","profile",…}}}`.
//! - Success: `202`, no body.
//! - Errors: JSON:API `{"errors":[{"id","status","code","title","detail","source"}]}`.
//!   No or malformed key → 401 `not_authenticated`; a key other than the expected one →
//!   401 `authentication_failed`; no `revision` → 400; a malformed event (no
//!   `properties` object, no metric name, a profile without email/phone_number/
//!   external_id, an unreadable `time`, metric "Invalid") → 400 `invalid`.
//! - Rate limit per key, fixed windows: 350/s burst and 3,500/min steady → 429
//!   `throttled` with `Retry-After` (seconds to the window's end, rounded up).
//! - Faults: `Throttle` → 429 (`Retry-After` only if scripted); `Auth` → 401;
//!   `Transient` → 503; `Invalid` → 400; `Code{status, code}` → that status with
//!   `errors[0].code` = the code as a string.

use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, RateLimit, Reply, Req, Shared};

fn errors(status: u16, code: &str, title: &str, detail: &str, seq: u64) -> Reply {
    Reply::json(
        status,
        &json!({"errors": [{
            "id": format!("sim-{seq}"),
            "status": status,
            "code": code,
            "title": title,
            "detail": detail,
            "source": {"pointer": "/data/"},
        }]}),
    )
}

fn invalid(body: &Value) -> Option<&'static str> {
    let d = body.get("data")?;
    if d.get("type").and_then(Value::as_str) != Some("event") {
        return Some("data.type must be `event`");
    }
    let a = d.get("attributes")?;
    if !a.get("properties").is_some_and(Value::is_object) {
        return Some("properties is required and must be an object");
    }
    match a
        .pointer("/metric/data/attributes/name")
        .and_then(Value::as_str)
    {
        None | Some("") => return Some("metric name is required"),
        Some("Invalid") => return Some("metric name is invalid"),
        _ => {}
    }
    let p = a
        .pointer("/profile/data/attributes")
        .and_then(Value::as_object);
    let has_id = p.is_some_and(|p| {
        ["email", "phone_number", "external_id", "id"]
            .iter()
            .any(|k| {
                p.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty())
            })
    });
    if !has_id {
        return Some("profile needs one of email, phone_number, external_id");
    }
    if let Some(t) = a.get("time") {
        let ok = t.as_str().is_some_and(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
        });
        if !ok {
            return Some("time is not ISO-8601");
        }
    }
    None
}

pub(super) struct Klaviyo;

impl PlatformSim for Klaviyo {
    fn ids(&self) -> Ids {
        Ids::One(&["data", "attributes", "unique_id"])
    }

    fn limits(&self) -> Vec<RateLimit> {
        vec![
            RateLimit::fixed(350, 1_000),
            RateLimit::fixed(3_500, 60_000),
        ]
    }

    fn fault(&self, f: &Fault, now_ms: i64, seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => errors(
                429,
                "throttled",
                "Request was throttled.",
                "Request was throttled.",
                seq,
            )
            .retry_after(*retry_after, now_ms),
            Fault::Auth => errors(
                401,
                "not_authenticated",
                "Authentication credentials were not provided.",
                "Missing or invalid private key.",
                seq,
            ),
            Fault::Transient => errors(
                503,
                "service_unavailable",
                "Service unavailable",
                "Please try again later.",
                seq,
            ),
            Fault::Invalid => errors(400, "invalid", "Invalid input.", "Simulated invalid.", seq),
            Fault::Code { status, code } => errors(
                *status,
                &code.to_string(),
                "Simulated error",
                "Simulated error",
                seq,
            ),
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        if r.method != "POST" || !(r.path == "/api/events" || r.path == "/api/events/") {
            return errors(404, "not_found", "Not found.", "Not found.", r.seq);
        }
        let key = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Klaviyo-API-Key "))
            .unwrap_or("")
            .trim();
        if key.is_empty() {
            return errors(
                401,
                "not_authenticated",
                "Authentication credentials were not provided.",
                "Missing or invalid private key.",
                r.seq,
            );
        }
        if s.credential.as_deref().is_some_and(|c| c != key) {
            return errors(
                401,
                "authentication_failed",
                "Incorrect authentication credentials.",
                "The private key is invalid.",
                r.seq,
            );
        }
        if let Err(wait_ms) = s.admit(key, 1, r.now_ms) {
            let secs = (wait_ms + 999) / 1000;
            return errors(
                429,
                "throttled",
                "Request was throttled.",
                &format!("Request was throttled. Expected available in {secs} second(s)."),
                r.seq,
            )
            .header("retry-after", secs.to_string());
        }
        if r.header("revision").is_none_or(str::is_empty) {
            return errors(
                400,
                "invalid",
                "Invalid input.",
                "Missing `revision` header.",
                r.seq,
            );
        }
        let msg = if r.body.is_null() {
            Some("body is not JSON")
        } else {
            invalid(r.body).or_else(|| {
                r.body
                    .pointer("/data/attributes")
                    .is_none()
                    .then_some("data.attributes is required")
            })
        };
        if let Some(msg) = msg {
            return errors(400, "invalid", "Invalid input.", msg, r.seq);
        }
        Reply {
            status: 202,
            headers: vec![],
            body: vec![],
            accepted: true,
        }
    }
}
