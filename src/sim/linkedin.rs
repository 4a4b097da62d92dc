//! LinkedIn Conversions API simulator (platforms.md §5).
//!
//! - `POST /rest/conversionEvents` with `Authorization: Bearer …`, `LinkedIn-Version:
//!   YYYYMM` and `X-Restli-Protocol-Version: 2.0.0`. With `X-RestLi-Method:
//!   BATCH_CREATE` the body is `{"elements":[1..=5000 elements]}` and success is
//!   `200 {"elements":[{"status":201},…]}`; without it the body is one element and
//!   success is `201` with no body.
//! - Errors carry `{"status","serviceErrorCode","code","message"}`:
//!   no or empty bearer token → `401 / 65600 / INVALID_ACCESS_TOKEN`; a token other than
//!   the expected one → `401 / 65601 / REVOKED_ACCESS_TOKEN`; no `LinkedIn-Version` or
//!   one that is not `YYYYMM` → `400 VERSION_MISSING`; a version older than
//!   [`OLDEST_VERSION`] → `426 NONEXISTENT_VERSION` (sunset); a protocol version other
//!   than 2.0.0 → `400`.
//! - Validation is **all-or-nothing** per batch, like LinkedIn's: an element whose
//!   `conversion` is not `urn:lla:llaPartnerConversion:<digits>`, whose
//!   `conversionHappenedAt` is not an integer of epoch ms, is more than 90 days old or in
//!   the future, without `user.userIds` (or with an unknown `idType`, or a
//!   `SHA256_EMAIL` that is not 64 hex digits), or whose `conversionValue.currencyCode`
//!   is not three upper-case letters or `amount` not a decimal string, fails the whole
//!   batch with `422` and a `message` of lines `Index: <n>, ERROR :: /<path> :: <text>`.
//!   A body without an `elements` array of 1 to 5,000 → `400`.
//! - No rate limit by default (LinkedIn publishes none); when one is configured (per
//!   token), going over answers `429` (with `Retry-After`, seconds rounded up).
//! - Faults: `Throttle` → 429 (`Retry-After` only if scripted); `Auth` → 401 / 65601
//!   REVOKED_ACCESS_TOKEN; `Transient` → 503; `Invalid` → 400 without `Index` lines;
//!   `Code{status, code}` → that status with `serviceErrorCode` = `code` (a status of 422
//!   names row `Index: 0`, 426 is the sunset answer).

use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, Reply, Req, Shared};

pub const PATH: &str = "/rest/conversionEvents";

/// `conversionHappenedAt` must be at most this old.
pub const MAX_AGE_MS: i64 = 90 * 86_400_000;

/// Versions before this one are sunset (426).
pub const OLDEST_VERSION: u32 = 202_503;

const ID_TYPES: [&str; 4] = [
    "SHA256_EMAIL",
    "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID",
    "ACXIOM_ID",
    "ORACLE_MOAT_ID",
];

fn error(status: u16, service: i64, code: &str, msg: &str) -> Reply {
    Reply::json(
        status,
        &json!({"status": status, "serviceErrorCode": service, "code": code, "message": msg}),
    )
}

fn revoked() -> Reply {
    error(
        401,
        65601,
        "REVOKED_ACCESS_TOKEN",
        "The token used in the request has been revoked by the user",
    )
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why element `e` is invalid: the path and the text of LinkedIn's message.
fn invalid(e: &Value, now_ms: i64) -> Option<(&'static str, &'static str)> {
    let conv = e.get("conversion").and_then(Value::as_str).unwrap_or("");
    let rule = conv.strip_prefix("urn:lla:llaPartnerConversion:");
    if !rule.is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())) {
        return Some(("/conversion", "is not a valid conversion URN"));
    }
    let Some(at) = e.get("conversionHappenedAt").and_then(Value::as_i64) else {
        return Some((
            "/conversionHappenedAt",
            "field is required (epoch milliseconds)",
        ));
    };
    if at < now_ms - MAX_AGE_MS {
        return Some((
            "/conversionHappenedAt",
            "conversion happened more than 90 days ago",
        ));
    }
    if at > now_ms + 60_000 {
        return Some(("/conversionHappenedAt", "conversion happened in the future"));
    }
    if let Some(v) = e.get("conversionValue") {
        let cur = v.get("currencyCode").and_then(Value::as_str).unwrap_or("");
        if cur.len() != 3 || !cur.bytes().all(|b| b.is_ascii_uppercase()) {
            return Some((
                "/conversionValue/currencyCode",
                "is not a valid ISO 4217 currency code",
            ));
        }
        let amount = v.get("amount").and_then(Value::as_str);
        if !amount.is_some_and(|a| a.parse::<f64>().is_ok_and(f64::is_finite)) {
            return Some(("/conversionValue/amount", "must be a decimal string"));
        }
    }
    let ids = e.pointer("/user/userIds").and_then(Value::as_array);
    let Some(ids) = ids.filter(|a| !a.is_empty()) else {
        return Some(("/user/userIds", "at least one user id is required"));
    };
    for id in ids {
        let ty = id.get("idType").and_then(Value::as_str).unwrap_or("");
        let val = id.get("idValue").and_then(Value::as_str).unwrap_or("");
        if !ID_TYPES.contains(&ty) {
            return Some(("/user/userIds/idType", "is not a valid id type"));
        }
        if val.is_empty() || (ty == "SHA256_EMAIL" && !is_hex64(val)) {
            return Some(("/user/userIds/idValue", "is not a valid id value"));
        }
    }
    if e.get("eventId").is_some_and(|v| !v.is_string()) {
        return Some(("/eventId", "must be a string"));
    }
    None
}

pub(super) struct Linkedin;

impl PlatformSim for Linkedin {
    fn ids(&self) -> Ids {
        Ids::Each {
            list: "elements",
            id: &["eventId"],
        }
    }

    fn fault(&self, f: &Fault, now_ms: i64, _seq: u64, _body: &Value) -> Reply {
        match f {
        Fault::Throttle { retry_after } => error(
            429,
            0,
            "TOO_MANY_REQUESTS",
            "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.",
        )
        .retry_after(*retry_after, now_ms),
        Fault::Auth => revoked(),
        Fault::Transient => error(503, 0, "SERVICE_UNAVAILABLE", "Service Unavailable"),
        Fault::Invalid => error(
            400,
            100,
            "ILLEGAL_ARGUMENT",
            "Invalid request: the body could not be read",
        ),
        Fault::Code { status, code } => match status {
            422 => error(
                422,
                *code,
                "UNPROCESSABLE_ENTITY",
                "Index: 0, ERROR :: /conversion :: simulated error\n",
            ),
            426 => error(
                426,
                *code,
                "NONEXISTENT_VERSION",
                "Requested version is not active",
            ),
            s => error(*s, *code, "SIMULATED", "Simulated error"),
        },
        _ => Reply::plain(500, "unexpected fault"),
    }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        if r.path != PATH || r.method != "POST" {
            return error(404, 0, "NOT_FOUND", "Not Found");
        }
        let token = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("")
            .trim();
        if token.is_empty() {
            return error(401, 65600, "INVALID_ACCESS_TOKEN", "Invalid access token");
        }
        if s.credential.as_deref().is_some_and(|c| c != token) {
            return revoked();
        }
        let version = r.header("linkedin-version").unwrap_or("").trim();
        let Some(v) = version.parse::<u32>().ok().filter(|_| version.len() == 6) else {
            return error(
                400,
                0,
                "VERSION_MISSING",
                "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
            );
        };
        if v < OLDEST_VERSION {
            return error(
                426,
                0,
                "NONEXISTENT_VERSION",
                &format!("Requested version {version} is not active"),
            );
        }
        if r.header("x-restli-protocol-version") != Some("2.0.0") {
            return error(
                400,
                0,
                "ILLEGAL_ARGUMENT",
                "X-Restli-Protocol-Version must be 2.0.0",
            );
        }
        let batch = r
            .header("x-restli-method")
            .is_some_and(|m| m.eq_ignore_ascii_case("BATCH_CREATE"));
        let elements: Vec<Value> = if batch {
            match r.body.get("elements").and_then(Value::as_array) {
                Some(a) if !a.is_empty() && a.len() <= 5000 => a.clone(),
                _ => {
                    return error(
                        400,
                        0,
                        "ILLEGAL_ARGUMENT",
                        "elements must hold 1 to 5000 elements",
                    );
                }
            }
        } else if r.body.is_object() {
            vec![r.body.clone()]
        } else {
            return error(400, 0, "ILLEGAL_ARGUMENT", "body must be a JSON object");
        };
        if let Err(wait_ms) = s.admit(token, 1, r.now_ms) {
            let secs = (wait_ms + 999) / 1000;
            return error(429, 0, "TOO_MANY_REQUESTS", "Too Many Requests")
                .header("retry-after", secs.to_string());
        }
        let mut msg = String::new();
        for (i, e) in elements.iter().enumerate() {
            if let Some((path, text)) = invalid(e, r.now_ms) {
                msg.push_str(&format!("Index: {i}, ERROR :: {path} :: {text}\n"));
            }
        }
        if !msg.is_empty() {
            return error(422, 0, "UNPROCESSABLE_ENTITY", &msg);
        }
        if batch {
            let statuses: Vec<Value> = elements.iter().map(|_| json!({"status": 201})).collect();
            Reply::json(200, &json!({ "elements": statuses })).accepted()
        } else {
            Reply::plain(201, "").accepted()
        }
    }
}
