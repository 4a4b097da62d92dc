//! Outbrain `unifiedPixel` simulator (see `platforms::outbrain` for the sources).
//!
//! - `GET /unifiedPixel?ob_click_id=…&name=…[&orderId&orderValue&currency&timestamp]`,
//!   no authentication. The recorded body is the query as a JSON object (decoded), so
//!   tests and [`super::event_ids`] read `orderId` from it.
//! - Success: `200`, empty body (a pixel). A missing `ob_click_id` or `name` → `400`
//!   plain text (unverified: a pixel may well answer 200 there too; the adapter never
//!   sends such a call). Anything else on the path → 404.
//! - A `timestamp` that is present but neither `yyyy-MM-dd HH:mm:ss` nor
//!   `MM/dd/yyyy HH:mm:ss` → 400.
//! - No rate limit by default; when one is configured (per click id's marketer: here,
//!   per server), going over answers `429` with `Retry-After`.
//! - Faults: `Throttle` → 429 (`Retry-After` only if scripted); `Auth` → 401;
//!   `Transient` → 503; `Invalid` → 400; `Code{status, code}` → that status with the
//!   code as plain text.

use serde_json::{Map, Value};

use super::{Fault, Ids, PlatformSim, Reply, Req, Shared, json_body};

pub const PATH: &str = "/unifiedPixel";

/// The query of a request as a JSON object of decoded strings (what is recorded as the
/// body of a GET).
fn query_object(query: Option<&str>) -> Value {
    let mut m = Map::new();
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        m.insert(
            super::percent_decode(k),
            Value::String(super::percent_decode(v)),
        );
    }
    Value::Object(m)
}

fn timestamp_ok(t: &str) -> bool {
    let iso = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let us = time::macros::format_description!("[month]/[day]/[year] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(t, &iso).is_ok()
        || time::PrimitiveDateTime::parse(t, &us).is_ok()
}

pub(super) struct Outbrain;

impl PlatformSim for Outbrain {
    fn ids(&self) -> Ids {
        Ids::One(&["orderId"])
    }

    /// A GET (the postback) records its query as its body.
    fn body(&self, raw: &[u8], query: Option<&str>) -> Value {
        if raw.is_empty() {
            query_object(query)
        } else {
            json_body(raw)
        }
    }

    fn fault(&self, f: &Fault, now_ms: i64, _seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => {
                Reply::plain(429, "Too Many Requests").retry_after(*retry_after, now_ms)
            }
            Fault::Auth => Reply::plain(401, "Unauthorized"),
            Fault::Transient => Reply::plain(503, "Service Unavailable"),
            Fault::Invalid => Reply::plain(400, "Bad Request"),
            Fault::Code { status, code } => Reply::plain(*status, &format!("error {code}")),
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        if r.path != PATH || r.method != "GET" {
            return Reply::plain(404, "Not Found");
        }
        let field = |k: &str| r.body.get(k).and_then(Value::as_str).unwrap_or("");
        if field("ob_click_id").is_empty() || field("name").is_empty() {
            return Reply::plain(400, "ob_click_id and name are required");
        }
        if r.body.get("timestamp").is_some() && !timestamp_ok(field("timestamp")) {
            return Reply::plain(400, "timestamp must be yyyy-MM-dd HH:mm:ss");
        }
        if let Err(wait_ms) = s.admit("outbrain", 1, r.now_ms) {
            let secs = (wait_ms + 999) / 1000;
            return Reply::plain(429, "Too Many Requests").header("retry-after", secs.to_string());
        }
        Reply {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            accepted: true,
        }
    }
}
