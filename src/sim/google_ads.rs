//! Google Ads `UploadClickConversions` simulator, REST (platforms.md §4).
//!
//! - `POST /v{N}/customers/{customer_id}:uploadClickConversions` with `authorization:
//!   Bearer …` (checked as [`super::oauth`] says) and `developer-token`; `POST /token`
//!   is the OAuth token endpoint ([`super::oauth`]).
//! - Request-level errors, in Google's shape `{"error":{"code","message","status",
//!   "details":[{"@type":"…GoogleAdsFailure","errors":[{"errorCode":{…},"message"}],
//!   "requestId"}]}}`: no, expired or unknown token → `401 UNAUTHENTICATED`
//!   (`authenticationError` `OAUTH_TOKEN_HEADER_INVALID` / `OAUTH_TOKEN_EXPIRED` /
//!   `OAUTH_TOKEN_INVALID`); no developer token → `401`
//!   `DEVELOPER_TOKEN_PARAMETER_MISSING`; `partialFailure` not `true` → `400
//!   INVALID_ARGUMENT` (`fieldError` `REQUIRED`); no conversions or more than 2,000 →
//!   `400` (`collectionSizeError` / `conversionUploadError`
//!   `TOO_MANY_CONVERSIONS_IN_REQUEST`); over a configured rate limit (conversions per
//!   `customer_id`; none by default) → `429 RESOURCE_EXHAUSTED` with `quotaError`
//!   `RESOURCE_TEMPORARILY_EXHAUSTED` and `quotaErrorDetails.retryDelay`.
//! - Each conversion is judged on its own (partial failure): a `conversionAction` that
//!   is not `customers/{this customer}/conversionActions/{digits}` →
//!   `NO_CONVERSION_ACTION_FOUND`; a `conversionDateTime` not in
//!   `yyyy-mm-dd hh:mm:ss±hh:mm` → `dateError`; older than 90 days → `EXPIRED_EVENT`;
//!   more than one of `gclid`/`gbraid`/`wbraid` → `fieldError` `VALUE_MUST_BE_UNSET`;
//!   neither a click id nor `userIdentifiers` → `fieldError` `REQUIRED`; a `gclid`
//!   starting with `unparseable` or holding characters other than letters, digits, `-`
//!   and `_` → `UNPARSEABLE_GCLID`; a `gclid` `busy-until-<unix seconds>` →
//!   `databaseError` `CONCURRENT_MODIFICATION` until the simulator's clock reaches that
//!   second (a transient row failure, deterministic); a hashed identifier that is not 64
//!   lowercase hex → `stringFormatError` `INVALID_FORMAT`. Bad rows make `200
//!   {"results":[…],"partialFailureError":{"code":3,"message","details":[…]},"jobId"}`
//!   with an empty object at each bad row's place and `location.fieldPathElements`
//!   naming `conversions` and its index; good rows are taken (`accepted`: at least one
//!   row was).
//! - `validateOnly: true` (a boolean, else `400 INVALID_ARGUMENT`): judged the same,
//!   stored nothing: `200 {}`, or `200 {"partialFailureError"}` naming the bad rows; no
//!   `results`, no `jobId`; recorded as the request's test mark, never accepted.
//! - Faults: `Throttle` → 429 `RESOURCE_TEMPORARILY_EXHAUSTED` (`retryDelay` from the
//!   scripted `Retry-After` seconds, if any; Google sends no `Retry-After`); `Auth` → 401
//!   `OAUTH_TOKEN_INVALID`; `Transient` → 503 `UNAVAILABLE`; `Invalid` → 400
//!   `INVALID_ARGUMENT` (`requestError` `INVALID_INPUT`); `Code{status, code}` → that
//!   status with `{"error":{"code":code,…}}` and an `internalError` detail.

use serde_json::{Value, json};

use super::oauth::{Refused, bearer, check_access};
use super::{Fault, Ids, PlatformSim, Reply, Req, RetryAfter, Shared};

/// Events older than this are `EXPIRED_EVENT`.
pub const MAX_AGE_MS: i64 = 90 * 86_400_000;
pub const MAX_CONVERSIONS: usize = 2000;
const FAILURE_TYPE: &str = "type.googleapis.com/google.ads.googleads.v22.errors.GoogleAdsFailure";

/// A `partialFailureError` naming these row errors.
fn partial_failure(errors: &[Value], seq: u64) -> Value {
    let message = errors
        .iter()
        .filter_map(|e| e.get("message").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(", ");
    json!({
        "code": 3,
        "message": message,
        "details": [{"@type": FAILURE_TYPE, "errors": errors, "requestId": format!("sim-{seq}")}],
    })
}

fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// A request-level error with one GoogleAdsFailure error.
fn failure(status: u16, code: i64, kind: &str, value: &str, message: &str, extra: Value) -> Reply {
    let mut err = json!({"errorCode": {kind: value}, "message": message});
    if let (Some(o), Value::Object(x)) = (err.as_object_mut(), extra) {
        o.extend(x);
    }
    Reply::json(
        status,
        &json!({"error": {
            "code": code,
            "message": if status == 401 {
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."
            } else {
                "Request contains an invalid argument."
            },
            "status": status_name(status),
            "details": [{"@type": FAILURE_TYPE, "errors": [err], "requestId": "sim"}],
        }}),
    )
}

fn auth(value: &str) -> Reply {
    failure(
        401,
        401,
        "authenticationError",
        value,
        "Authentication of the request failed.",
        json!({}),
    )
}

fn throttled(retry_delay_s: Option<i64>) -> Reply {
    let extra = match retry_delay_s {
        Some(s) => json!({"details": {"quotaErrorDetails": {
            "rateScope": "ACCOUNT", "rateName": "Requests per account", "retryDelay": format!("{s}s")}}}),
        None => json!({}),
    };
    failure(
        429,
        429,
        "quotaError",
        "RESOURCE_TEMPORARILY_EXHAUSTED",
        "Too many requests. Retry in the given delay.",
        extra,
    )
}

fn is_hex64(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A row's error: (kind, value, message, field).
type RowError = (&'static str, &'static str, &'static str, &'static str);

fn judge(c: &Value, cid: &str, now_ms: i64) -> Result<Value, RowError> {
    let action = c
        .get("conversionAction")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ok_action = action
        .strip_prefix(&format!("customers/{cid}/conversionActions/"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    if !ok_action {
        return Err((
            "conversionUploadError",
            "NO_CONVERSION_ACTION_FOUND",
            "The conversion action specified in the upload request cannot be found.",
            "conversion_action",
        ));
    }
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    );
    let when = c
        .get("conversionDateTime")
        .and_then(Value::as_str)
        .and_then(|s| time::OffsetDateTime::parse(s, &fmt).ok());
    let Some(when) = when else {
        return Err((
            "dateError",
            "INVALID_FIELD_VALUES_IN_DATE_TIME",
            "The field values in the date time string are not valid.",
            "conversion_date_time",
        ));
    };
    if when.unix_timestamp() * 1000 < now_ms - MAX_AGE_MS {
        return Err((
            "conversionUploadError",
            "EXPIRED_EVENT",
            "The click associated with the given identifier occurred too long ago.",
            "conversion_date_time",
        ));
    }
    let clicks: Vec<&str> = ["gclid", "gbraid", "wbraid"]
        .into_iter()
        .filter(|k| {
            c.get(*k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        })
        .collect();
    let ids = c.get("userIdentifiers").and_then(Value::as_array);
    if clicks.len() > 1 {
        return Err((
            "fieldError",
            "VALUE_MUST_BE_UNSET",
            "Only one of gclid, gbraid and wbraid may be set.",
            "gbraid",
        ));
    }
    if clicks.is_empty() && ids.is_none_or(std::vec::Vec::is_empty) {
        return Err((
            "fieldError",
            "REQUIRED",
            "A click id or user identifiers are required.",
            "gclid",
        ));
    }
    if let Some(g) = c.get("gclid").and_then(Value::as_str) {
        if let Some(until) = g
            .strip_prefix("busy-until-")
            .and_then(|s| s.parse::<i64>().ok())
        {
            if now_ms < until * 1000 {
                return Err((
                    "databaseError",
                    "CONCURRENT_MODIFICATION",
                    "Multiple requests were attempting to modify the same resource at once. Retry the request.",
                    "gclid",
                ));
            }
        } else if g.starts_with("unparseable")
            || !g
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err((
                "conversionUploadError",
                "UNPARSEABLE_GCLID",
                "The Google Click ID could not be decoded.",
                "gclid",
            ));
        }
    }
    for u in ids.into_iter().flatten() {
        let hashes = ["hashedEmail", "hashedPhoneNumber"];
        let present: Vec<&Value> = hashes.iter().filter_map(|k| u.get(*k)).collect();
        if present.len() != 1 || !present.iter().all(|v| is_hex64(v)) {
            return Err((
                "stringFormatError",
                "INVALID_FORMAT",
                "A user identifier must hold one SHA-256 hash in lowercase hex.",
                "user_identifiers",
            ));
        }
    }
    let mut res = serde_json::Map::new();
    for k in [
        "gclid",
        "gbraid",
        "wbraid",
        "conversionAction",
        "conversionDateTime",
    ] {
        if let Some(v) = c.get(k) {
            res.insert(k.to_string(), v.clone());
        }
    }
    Ok(Value::Object(res))
}

pub(super) struct GoogleAds;

impl PlatformSim for GoogleAds {
    fn request_id_header(&self) -> Option<&'static str> {
        Some("request-id")
    }

    fn test_mark(&self, body: &Value) -> Option<String> {
        (body.get("validateOnly") == Some(&Value::Bool(true))).then(|| "validateOnly".to_string())
    }

    fn ids(&self) -> Ids {
        Ids::Each {
            list: "conversions",
            id: &["orderId"],
        }
    }

    /// Whether `path` is this simulator's token endpoint.
    fn is_token_path(&self, path: &str) -> bool {
        path == "/token"
    }

    fn fault(&self, f: &Fault, _now_ms: i64, _seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => throttled(match retry_after {
                Some(RetryAfter::Seconds(s)) => Some(*s as i64),
                Some(RetryAfter::HttpDate { in_secs }) => Some(*in_secs),
                None => None,
            }),
            Fault::Auth => auth("OAUTH_TOKEN_INVALID"),
            Fault::Transient => Reply::json(
                503,
                &json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}),
            ),
            Fault::Invalid => failure(
                400,
                400,
                "requestError",
                "INVALID_INPUT",
                "The input is invalid.",
                json!({}),
            ),
            Fault::Code { status, code } => failure(
                *status,
                *code,
                "internalError",
                "INTERNAL_ERROR",
                "Simulated error",
                json!({}),
            ),
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        if self.is_token_path(r.path) {
            return super::oauth::token(s, r, false);
        }
        let cid = r
            .path
            .strip_prefix('/')
            .and_then(|p| p.split_once("/customers/"))
            .filter(|(v, _)| v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(_, rest)| rest.strip_suffix(":uploadClickConversions"))
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()));
        let Some(cid) = cid.filter(|_| r.method == "POST") else {
            return Reply::json(
                404,
                &json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}),
            );
        };
        match check_access(s, bearer(r), r.now_ms) {
            Ok(()) => {}
            Err(Refused::Missing) => return auth("OAUTH_TOKEN_HEADER_INVALID"),
            Err(Refused::Expired) => return auth("OAUTH_TOKEN_EXPIRED"),
            Err(Refused::Invalid) => return auth("OAUTH_TOKEN_INVALID"),
        }
        if r.header("developer-token")
            .is_none_or(|t| t.trim().is_empty())
        {
            return auth("DEVELOPER_TOKEN_PARAMETER_MISSING");
        }
        if r.body.get("partialFailure") != Some(&Value::Bool(true)) {
            return failure(
                400,
                400,
                "fieldError",
                "REQUIRED",
                "Partial failure mode is required for this operation.",
                json!({}),
            );
        }
        let validate_only = match r.body.get("validateOnly") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return failure(
                    400,
                    400,
                    "fieldError",
                    "INVALID_VALUE",
                    "Invalid value at 'validate_only' (TYPE_BOOL).",
                    json!({}),
                );
            }
        };
        let Some(convs) = r
            .body
            .get("conversions")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        else {
            return failure(
                400,
                400,
                "collectionSizeError",
                "TOO_FEW",
                "Too few conversions.",
                json!({}),
            );
        };
        if convs.len() > MAX_CONVERSIONS {
            return failure(
                400,
                400,
                "conversionUploadError",
                "TOO_MANY_CONVERSIONS_IN_REQUEST",
                "The request contained more than 2,000 conversions.",
                json!({}),
            );
        }
        if let Err(wait_ms) = s.admit(cid, convs.len() as u64, r.now_ms) {
            return throttled(Some((wait_ms + 999) / 1000));
        }
        let mut results = Vec::with_capacity(convs.len());
        let mut errors = Vec::new();
        for (i, c) in convs.iter().enumerate() {
            match judge(c, cid, r.now_ms) {
                Ok(res) => results.push(res),
                Err((kind, value, message, field)) => {
                    results.push(json!({}));
                    errors.push(json!({
                        "errorCode": {kind: value},
                        "message": message,
                        "location": {"fieldPathElements": [
                            {"fieldName": "conversions", "index": i},
                            {"fieldName": field},
                        ]},
                    }));
                }
            }
        }
        let taken = errors.len() < convs.len();
        let job = r.seq as i64;
        if validate_only {
            // Validated, stored nothing: no results, no job; failures as usual.
            return if errors.is_empty() {
                Reply::json(200, &json!({}))
            } else {
                Reply::json(
                    200,
                    &json!({"partialFailureError": partial_failure(&errors, r.seq)}),
                )
            };
        }
        let reply = if errors.is_empty() {
            Reply::json(200, &json!({"results": results, "jobId": job}))
        } else {
            Reply::json(
                200,
                &json!({"results": results, "jobId": job, "partialFailureError": partial_failure(&errors, r.seq)}),
            )
        };
        if taken { reply.accepted() } else { reply }
    }
}
