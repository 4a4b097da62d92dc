//! Microsoft Advertising `ApplyOfflineConversions` simulator, REST (platforms.md §10a).
//!
//! - `POST /CampaignManagement/v13/OfflineConversions/Apply` with `authorization:
//!   Bearer …` (checked as [`super::oauth`] says), `developertoken`, `customerid` and
//!   `customeraccountid`; `POST /{tenant}/oauth2/v2.0/token` (the real path, e.g.
//!   `/common/oauth2/v2.0/token`) and `POST /token` are the OAuth token endpoint.
//! - Request-level errors `{"Errors":[{"Code","ErrorCode","Message"}],"TrackingId"}`:
//!   no or unknown token, or no developer token → `401` `105 InvalidCredentials`; an
//!   expired token → `401` `109 AuthenticationTokenExpired`; no `customerid` /
//!   `customeraccountid` → `400` `116 RequestMissingHeaders`; no `OfflineConversions`
//!   or more than 1,000 → `400` `100 NullRequest` / `OfflineConversionsLimitExceeded`;
//!   over a configured rate limit (requests per account; none by default) → `429`
//!   `117 CallRateExceeded` with `Retry-After`.
//! - Each conversion is judged on its own; failures come back as `200
//!   {"PartialErrors":[{"Code","Details","ErrorCode","FieldPath","Index","Message",
//!   "Type":"BatchError"}]}` naming the 0-based row (all good: `"PartialErrors":[]`):
//!   no `ConversionName` → `OfflineConversionNameInvalid`; a `ConversionTime` that is not
//!   ISO-8601, in the future, or older than 90 days → `OfflineConversionTimeInvalid`;
//!   a `MicrosoftClickId` starting with `invalid` → `OfflineConversionMicrosoftClickIdInvalid`;
//!   one `busy-until-<unix seconds>` → `0 InternalError` until the simulator's clock
//!   reaches that second; none of click id, `HashedEmailAddress`, `HashedPhoneNumber`
//!   → `OfflineConversionIdentifierRequired`; a hash that is not 64 lowercase hex →
//!   `OfflineConversionHashInvalid`. Good rows are taken (`accepted`: at least one row
//!   was). The numeric codes of the row errors here are the simulator's own
//!   (unverified); the adapter reads `ErrorCode`.
//! - Event ids: Microsoft carries none; the simulator counts events by
//!   `MicrosoftClickId` (Microsoft's dedup key with `ConversionTime`).
//! - Faults: `Throttle` → 429 `117 CallRateExceeded` (`Retry-After` only if scripted);
//!   `Auth` → 401 `105 InvalidCredentials`; `Transient` → 500 `0 InternalError`;
//!   `Invalid` → 400 `100 NullRequest`; `Code{status, code}` → that status with
//!   `Errors[0].Code` = code.

use serde_json::{Value, json};

use super::oauth::{Refused, bearer, check_access};
use super::{Fault, Ids, PlatformSim, Reply, Req, Shared};

pub const PATH: &str = "/CampaignManagement/v13/OfflineConversions/Apply";
pub const MAX_AGE_MS: i64 = 90 * 86_400_000;
pub const MAX_CONVERSIONS: usize = 1000;

fn errors(status: u16, code: i64, error_code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"Errors": [{"Code": code, "Details": null, "ErrorCode": error_code,
            "Message": message}], "TrackingId": "sim"}),
    )
}

fn invalid_credentials() -> Reply {
    errors(
        401,
        105,
        "InvalidCredentials",
        "Authentication failed. Either supplied credentials are invalid or the account is inactive.",
    )
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A row's error: (code, error code, message, field).
type RowError = (i64, &'static str, &'static str, &'static str);

fn judge(c: &Value, now_ms: i64) -> Result<(), RowError> {
    let str_of = |k: &str| c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    if str_of("ConversionName").is_none() {
        return Err((
            4801,
            "OfflineConversionNameInvalid",
            "The offline conversion name is invalid.",
            "ConversionName",
        ));
    }
    let at = str_of("ConversionTime").and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    let ok_time = at.is_some_and(|t| {
        let ms = t.unix_timestamp() * 1000;
        ms <= now_ms && ms >= now_ms - MAX_AGE_MS
    });
    if !ok_time {
        return Err((
            4802,
            "OfflineConversionTimeInvalid",
            "The offline conversion time is invalid.",
            "ConversionTime",
        ));
    }
    let click = str_of("MicrosoftClickId");
    let email = str_of("HashedEmailAddress");
    let phone = str_of("HashedPhoneNumber");
    if click.is_none() && email.is_none() && phone.is_none() {
        return Err((
            4803,
            "OfflineConversionIdentifierRequired",
            "A MicrosoftClickId, HashedEmailAddress or HashedPhoneNumber is required.",
            "MicrosoftClickId",
        ));
    }
    if let Some(k) = click {
        if let Some(until) = k
            .strip_prefix("busy-until-")
            .and_then(|s| s.parse::<i64>().ok())
        {
            if now_ms < until * 1000 {
                return Err((
                    0,
                    "InternalError",
                    "An internal error has occurred.",
                    "MicrosoftClickId",
                ));
            }
        } else if k.starts_with("invalid") {
            return Err((
                4804,
                "OfflineConversionMicrosoftClickIdInvalid",
                "The Microsoft click ID is invalid.",
                "MicrosoftClickId",
            ));
        }
    }
    if email.into_iter().chain(phone).any(|h| !is_hex64(h)) {
        return Err((
            4805,
            "OfflineConversionHashInvalid",
            "A hashed identifier is not a SHA-256 hash.",
            "HashedEmailAddress",
        ));
    }
    Ok(())
}

pub(super) struct MicrosoftAds;

impl PlatformSim for MicrosoftAds {
    // Microsoft carries no event id: its dedup key is the click id.
    fn ids(&self) -> Ids {
        Ids::Each {
            list: "OfflineConversions",
            id: &["MicrosoftClickId"],
        }
    }

    /// Whether `path` is this simulator's token endpoint.
    fn is_token_path(&self, path: &str) -> bool {
        path == "/token" || path.ends_with("/oauth2/v2.0/token")
    }

    fn fault(&self, f: &Fault, now_ms: i64, _seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => errors(
                429,
                117,
                "CallRateExceeded",
                "You have exceeded the number of calls that you are allowed to make in one minute.",
            )
            .retry_after(*retry_after, now_ms),
            Fault::Auth => invalid_credentials(),
            Fault::Transient => errors(500, 0, "InternalError", "An internal error has occurred."),
            Fault::Invalid => errors(400, 100, "NullRequest", "The request message is null."),
            Fault::Code { status, code } => errors(*status, *code, "Simulated", "Simulated error"),
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        if self.is_token_path(r.path) {
            return super::oauth::token(s, r, true);
        }
        if r.path != PATH || r.method != "POST" {
            return errors(404, 404, "NotFound", "Not Found");
        }
        match check_access(s, bearer(r), r.now_ms) {
            Ok(()) => {}
            Err(Refused::Expired) => {
                return errors(
                    401,
                    109,
                    "AuthenticationTokenExpired",
                    "Authentication token expired. Please renew it or obtain a new token.",
                );
            }
            Err(Refused::Missing | Refused::Invalid) => return invalid_credentials(),
        }
        if r.header("developertoken")
            .is_none_or(|t| t.trim().is_empty())
        {
            return invalid_credentials();
        }
        let account = r.header("customeraccountid").unwrap_or("").trim();
        if account.is_empty() || r.header("customerid").is_none_or(|c| c.trim().is_empty()) {
            return errors(
                400,
                116,
                "RequestMissingHeaders",
                "One or more required header elements are missing from the request.",
            );
        }
        let Some(convs) = r
            .body
            .get("OfflineConversions")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        else {
            return errors(400, 100, "NullRequest", "The request message is null.");
        };
        if convs.len() > MAX_CONVERSIONS {
            return errors(
                400,
                4800,
                "OfflineConversionsLimitExceeded",
                "The list of offline conversions exceeds the limit of 1,000.",
            );
        }
        if let Err(wait_ms) = s.admit(account, 1, r.now_ms) {
            let secs = (wait_ms + 999) / 1000;
            return errors(
                429,
                117,
                "CallRateExceeded",
                "You have exceeded the number of calls that you are allowed to make in one minute.",
            )
            .header("retry-after", secs.to_string());
        }
        let mut partial = Vec::new();
        for (i, c) in convs.iter().enumerate() {
            if let Err((code, ec, msg, field)) = judge(c, r.now_ms) {
                partial.push(json!({"Code": code, "Details": null, "ErrorCode": ec,
                "FieldPath": field, "Index": i, "Message": msg, "Type": "BatchError"}));
            }
        }
        let taken = partial.len() < convs.len();
        let reply = Reply::json(200, &json!({"PartialErrors": partial}));
        if taken { reply.accepted() } else { reply }
    }
}
