//! The OAuth 2.0 token endpoint of the Google Ads and Microsoft Ads simulators
//! (`grant_type=refresh_token`, RFC 6749 §6), and the access-token check of their APIs.
//!
//! - `POST` a form `grant_type=refresh_token&client_id&client_secret&refresh_token`
//!   (Microsoft also `scope`, which must name `msads.manage`):
//!   `200 {"access_token","expires_in":3599,"token_type":"Bearer"}` (Microsoft adds
//!   `scope`, `ext_expires_in` and the `refresh_token` back). A refresh token starting
//!   with `revoked`, or, when [`super::SimOptions::credential`] is set, any other than
//!   it → `400 {"error":"invalid_grant","error_description"}` (Google's and Microsoft's
//!   wording); no client id or secret → `401 {"error":"invalid_client"}`; another
//!   grant type → `400 unsupported_grant_type`; a Microsoft request without the ads
//!   scope → `400 invalid_scope`.
//! - Access tokens are issued as `sim-at.<expiry ms>.<n>.<mac>`: the API accepts one
//!   until its expiry on the simulator's clock (3,599 s after issue), then answers 401
//!   in the platform's shape. With `credential` set, only tokens issued here pass;
//!   without it, any other non-empty token passes too (a static `access_token`).
//! - Token requests are not subject to the fault script and do not count as its
//!   requests; they are recorded like any request (body `Null`: a form is not JSON).

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Reply, Req, Shared, percent_decode};

/// Lifetime of an issued access token (Google's `expires_in`).
pub const EXPIRES_IN_S: i64 = 3599;

const MAC_KEY: &str = "sluice-sim-oauth";

fn mac(exp_ms: i64, n: u64) -> String {
    let mut h = Sha256::new();
    h.update(MAC_KEY.as_bytes());
    h.update(exp_ms.to_be_bytes());
    h.update(n.to_be_bytes());
    hex::encode(&h.finalize()[..8])
}

/// A token valid until `exp_ms`.
pub fn issue(exp_ms: i64, n: u64) -> String {
    format!("sim-at.{exp_ms}.{n}.{}", mac(exp_ms, n))
}

/// Why an access token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Expired,
    Invalid,
}

/// Whether the API takes this bearer token now.
pub fn check_access(s: &Shared, token: &str, now_ms: i64) -> Result<(), Refused> {
    if token.is_empty() {
        return Err(Refused::Missing);
    }
    let issued = token.strip_prefix("sim-at.").and_then(|rest| {
        let mut it = rest.split('.');
        let exp: i64 = it.next()?.parse().ok()?;
        let n: u64 = it.next()?.parse().ok()?;
        (it.next()? == mac(exp, n) && it.next().is_none()).then_some(exp)
    });
    match issued {
        Some(exp) if now_ms < exp => Ok(()),
        Some(_) => Err(Refused::Expired),
        None if s.credential.is_some() || token.starts_with("sim-at.") => Err(Refused::Invalid),
        None => Ok(()),
    }
}

/// The bearer token of a request ("" when none).
pub fn bearer<'a>(r: &'a Req) -> &'a str {
    r.header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
}

fn form(raw: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(raw)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// Answers a refresh request. `microsoft`: Microsoft identity platform's shape.
pub(super) fn token(s: &Shared, r: &Req, microsoft: bool) -> Reply {
    if r.method != "POST" {
        return oauth_error(405, "invalid_request", "POST required");
    }
    let f = form(r.raw);
    let get = |k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    };
    if get("grant_type") != "refresh_token" {
        return oauth_error(
            400,
            "unsupported_grant_type",
            "Invalid grant_type: only refresh_token is supported",
        );
    }
    if get("client_id").is_empty() || get("client_secret").is_empty() {
        return oauth_error(401, "invalid_client", "Unauthorized");
    }
    let rt = get("refresh_token");
    if rt.is_empty() {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: refresh_token",
        );
    }
    if microsoft && !get("scope").contains("msads.manage") {
        return oauth_error(
            400,
            "invalid_scope",
            "AADSTS70011: The provided request must include a 'scope' input parameter.",
        );
    }
    let revoked = rt.starts_with("revoked") || s.credential.as_deref().is_some_and(|c| c != rt);
    if revoked {
        return if microsoft {
            oauth_error(
                400,
                "invalid_grant",
                "AADSTS70000: The provided value for the 'refresh_token' is not valid.",
            )
        } else {
            oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        };
    }
    let access = issue(r.now_ms + EXPIRES_IN_S * 1000, r.seq);
    let body = if microsoft {
        json!({"token_type": "Bearer", "scope": "https://ads.microsoft.com/msads.manage",
               "expires_in": EXPIRES_IN_S, "ext_expires_in": EXPIRES_IN_S,
               "access_token": access, "refresh_token": rt})
    } else {
        json!({"access_token": access, "expires_in": EXPIRES_IN_S, "token_type": "Bearer",
               "scope": "https://www.googleapis.com/auth/adwords"})
    };
    Reply::json(200, &body)
}
