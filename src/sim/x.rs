//! X (Twitter) Conversion API simulator (platforms.md §9).
//!
//! - `POST /12/measurement/conversions/{pixel_id}` with `Authorization: Bearer …`, JSON
//!   `{"conversions":[1..=500 conversions]}`.
//! - Success: `200 {"data":{"conversions_processed":N,"debug_id"},"request":{"params":
//!   {"pixel_id"}}}`. N counts the conversions X took: a conversion whose `event_id` is
//!   a `tw-<pixel>-<event>` id of another pixel, whose `conversion_time` is more than 7
//!   days old (unverified) or in the future, or whose `price_currency` is not three
//!   letters is **silently not processed** (fewer processed than sent inside a 200).
//!   The request counts as accepted only when every conversion was processed.
//! - Errors `{"errors":[{"code","message"}],"request":{"params":{}}}`: no or empty token,
//!   or one other than the expected one → `401 UNAUTHORIZED_ACCESS`; a body without a
//!   `conversions` array of 1 to 500, or a conversion without `conversion_time`
//!   (ISO-8601), `event_id` or `identifiers`, with an identifier object that is none of
//!   `twclid`, `hashed_email`, `hashed_phone_number`, `ip_address`/`user_agent`, with a
//!   hash that is not 64 hex digits, or with only IP address / user agent →
//!   `400 INVALID_PARAMETER` for the whole request.
//! - Rate limit: 100,000 requests per 15 min per pixel (sliding); going over answers
//!   `429 TOO_MANY_REQUESTS` with `x-rate-limit-limit`, `x-rate-limit-remaining: 0` and
//!   `x-rate-limit-reset` (unix seconds). Answers under the limit carry the same headers.
//! - Faults: `Throttle` → 429 (`x-rate-limit-reset` only if scripted: now plus the
//!   scripted seconds); `Auth` → 401; `Transient` → 503 `SERVICE_UNAVAILABLE`;
//!   `Invalid` → 400 `INVALID_PARAMETER`; `Code{200, n}` → a 200 with
//!   `conversions_processed: n`; `Code{status, code}` → that status with `errors[0].code`
//!   `SIMULATED_<code>`.

use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, RateLimit, Reply, Req, RetryAfter, Shared};

pub const PATH_PREFIX: &str = "/12/measurement/conversions/";

/// `conversion_time` older than this is not processed (unverified).
pub const MAX_AGE_MS: i64 = 7 * 86_400_000;
const MAX_FUTURE_MS: i64 = 5 * 60_000;

fn errors(status: u16, code: &str, msg: &str) -> Reply {
    Reply::json(
        status,
        &json!({"errors": [{"code": code, "message": msg}], "request": {"params": {}}}),
    )
}

fn unauthorized() -> Reply {
    errors(
        401,
        "UNAUTHORIZED_ACCESS",
        "This request is not properly authenticated",
    )
}

fn is_hex64(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn non_empty(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// Why a conversion fails the request (400), if it does.
fn malformed(c: &Value) -> Option<String> {
    let time_ok = c
        .get("conversion_time")
        .and_then(Value::as_str)
        .is_some_and(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
        });
    if !time_ok {
        return Some("conversion_time must be an ISO-8601 timestamp".into());
    }
    if !non_empty(c.get("event_id")) {
        return Some("event_id is required".into());
    }
    let Some(ids) = c.get("identifiers").and_then(Value::as_array) else {
        return Some("identifiers is required".into());
    };
    let mut matchable = false;
    for id in ids {
        let Some(o) = id.as_object() else {
            return Some("identifiers must be objects".into());
        };
        for (k, v) in o {
            match k.as_str() {
                "twclid" if non_empty(Some(v)) => matchable = true,
                "hashed_email" | "hashed_phone_number" if is_hex64(v) => matchable = true,
                "ip_address" | "user_agent" if non_empty(Some(v)) => {}
                _ => return Some(format!("identifiers.{k} is invalid")),
            }
        }
    }
    if !matchable {
        return Some("identifiers need twclid, hashed_email or hashed_phone_number".into());
    }
    None
}

/// Whether X silently drops a well-formed conversion.
fn dropped(c: &Value, pixel: &str, now_ms: i64) -> bool {
    let ev = c.get("event_id").and_then(Value::as_str).unwrap_or("");
    if let Some(rest) = ev.strip_prefix("tw-")
        && !rest.starts_with(&format!("{pixel}-"))
    {
        return true;
    }
    let at = c
        .get("conversion_time")
        .and_then(Value::as_str)
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    if at < now_ms - MAX_AGE_MS || at > now_ms + MAX_FUTURE_MS {
        return true;
    }
    c.get("price_currency").is_some_and(|p| {
        !p.as_str()
            .is_some_and(|p| p.len() == 3 && p.bytes().all(|b| b.is_ascii_alphabetic()))
    })
}

pub(super) struct X;

impl PlatformSim for X {
    fn ids(&self) -> Ids {
        Ids::Each {
            list: "conversions",
            id: &["conversion_id"],
        }
    }

    fn limits(&self) -> Vec<RateLimit> {
        vec![RateLimit::sliding(100_000, 900_000)]
    }

    fn fault(&self, f: &Fault, now_ms: i64, _seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => {
                let r = errors(429, "TOO_MANY_REQUESTS", "Rate limit exceeded")
                    .header("x-rate-limit-remaining", "0".into());
                let secs = match retry_after {
                    Some(RetryAfter::Seconds(s)) => Some(*s as i64),
                    Some(RetryAfter::HttpDate { in_secs }) => Some(*in_secs),
                    None => None,
                };
                match secs {
                    Some(s) => r.header("x-rate-limit-reset", (now_ms / 1000 + s).to_string()),
                    None => r,
                }
            }
            Fault::Auth => unauthorized(),
            Fault::Transient => errors(503, "SERVICE_UNAVAILABLE", "Service unavailable"),
            Fault::Invalid => errors(400, "INVALID_PARAMETER", "conversions is invalid"),
            Fault::Code { status: 200, code } => Reply::json(
                200,
                &json!({"data": {"conversions_processed": code, "debug_id": "sim"},
                    "request": {"params": {}}}),
            ),
            Fault::Code { status, code } => {
                errors(*status, &format!("SIMULATED_{code}"), "Simulated error")
            }
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        let pixel = match r.path.strip_prefix(PATH_PREFIX) {
            Some(p) if r.method == "POST" && !p.is_empty() && !p.contains('/') => p,
            _ => {
                return Reply::plain(
                    404,
                    "<html><body>Sorry, that page does not exist</body></html>",
                )
                .header("content-type", "text/html".into());
            }
        };
        let token = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("")
            .trim();
        if token.is_empty() || s.credential.as_deref().is_some_and(|c| c != token) {
            return unauthorized();
        }
        let limit = s.limits.first().map_or(0, |l| l.limit);
        let reset_in = |now_ms: i64| (now_ms / 1000 + 900).to_string();
        if let Err(wait_ms) = s.admit(pixel, 1, r.now_ms) {
            return errors(429, "TOO_MANY_REQUESTS", "Rate limit exceeded")
                .header("x-rate-limit-limit", limit.to_string())
                .header("x-rate-limit-remaining", "0".into())
                .header(
                    "x-rate-limit-reset",
                    ((r.now_ms + wait_ms + 999) / 1000).to_string(),
                );
        }
        let convs = match r.body.get("conversions").and_then(Value::as_array) {
            Some(a) if !a.is_empty() && a.len() <= 500 => a,
            _ => {
                return errors(
                    400,
                    "INVALID_PARAMETER",
                    "conversions must hold 1 to 500 conversions",
                );
            }
        };
        for (i, c) in convs.iter().enumerate() {
            if let Some(m) = malformed(c) {
                return errors(400, "INVALID_PARAMETER", &format!("conversions[{i}]: {m}"));
            }
        }
        let processed = convs
            .iter()
            .filter(|c| !dropped(c, pixel, r.now_ms))
            .count();
        let reply = Reply::json(
        200,
        &json!({"data": {"conversions_processed": processed, "debug_id": format!("sim-{}", r.seq)},
                "request": {"params": {"pixel_id": pixel}}}),
    )
    .header("x-rate-limit-limit", limit.to_string())
    .header("x-rate-limit-reset", reset_in(r.now_ms));
        if processed == convs.len() {
            reply.accepted()
        } else {
            reply
        }
    }
}
