//! OAuth 2.0 access tokens from a refresh token (RFC 6749 §6), for the platforms whose
//! access tokens last about an hour: Google Ads and Microsoft Advertising.
//!
//! A destination refreshes when its `credentials` hold all of `client_id`,
//! `client_secret` and `refresh_token` (config validation requires all three or none);
//! its `access_token`, if also given, is then not used. Otherwise the static
//! `access_token` is sent as configured and nothing here applies.
//!
//! - Token endpoint: Google `POST https://oauth2.googleapis.com/token`, Microsoft
//!   `POST https://login.microsoftonline.com/common/oauth2/v2.0/token` (with `scope` =
//!   `https://ads.microsoft.com/msads.manage offline_access`); form body
//!   `grant_type=refresh_token&client_id&client_secret&refresh_token`. The destination
//!   param `token_url` replaces the whole URL; without it, the destination's `endpoint`
//!   replaces its scheme, host and port, as for the API URL (local simulators serve the
//!   token path next to the API).
//! - Answer: `200 {"access_token","expires_in","token_type"}` (Microsoft also returns a
//!   new `refresh_token`, which is used for the next refresh while the process runs; the
//!   configured one is used again after a restart or a change of credentials).
//!   Errors: `400 {"error":"invalid_grant","error_description"}` (revoked or expired
//!   refresh token), `401 {"error":"invalid_client"}` (wrong client id or secret), and
//!   other `error` codes of RFC 6749 §5.2.
//! - Cache: one token per destination (keyed by a hash of the refresh settings, so a
//!   reload with new credentials starts over), refreshed when none is held, when it is
//!   within 5 minutes of `expires_in` (half its lifetime for tokens shorter than 10 min)
//!   on the engine's clock, or when the API answered 401 to it. Concurrent sends wait
//!   for one refresh rather than each refreshing.
//! - Classification of a failed refresh (it counts as one attempt, SPEC §4): any 4xx but
//!   408 and 429 → auth (the credentials must be fixed; three in a row pause the
//!   destination with `auth_failed`, its events stay queued); 429 → throttled (with
//!   `Retry-After`); 408, 5xx, a 2xx without `access_token`, transport errors and the
//!   destination's `timeout` → retryable.
//! - Secrecy: the client secret, refresh tokens and access tokens are never logged;
//!   error texts are redacted with [`super::redact`].
//!
//! Unverified: Microsoft's tenant (`common` works for both work and personal accounts;
//! a tenant-specific URL can be given as `token_url`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::debug;

use super::{
    Class, HttpRequest, HttpResponse, percent_encode, redact, retry_after_hint, with_endpoint,
};
use crate::clock::Clock;
use crate::config::{Destination, Platform, Secret};

pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const MICROSOFT_TOKEN_URL: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/token";
pub const MICROSOFT_SCOPE: &str = "https://ads.microsoft.com/msads.manage offline_access";
/// A token is refreshed this long before it expires.
pub const EARLY_MS: i64 = 5 * 60_000;
/// `expires_in` when the answer has none.
const DEFAULT_EXPIRES_IN_S: i64 = 3600;

/// How a destination refreshes its access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshConfig {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// Microsoft's `scope` parameter.
    pub scope: Option<&'static str>,
}

impl RefreshConfig {
    /// Strings never to show.
    pub fn secrets(&self) -> Vec<String> {
        vec![self.client_secret.clone(), self.refresh_token.clone()]
    }

    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            &self.token_url,
            &self.client_id,
            &self.client_secret,
            &self.refresh_token,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// The refresh settings of a destination, or None when it sends a static token.
pub fn refresh_config(dest: &Destination) -> Option<RefreshConfig> {
    let (default_url, scope) = match dest.platform {
        Platform::GoogleAds => (GOOGLE_TOKEN_URL, None),
        Platform::MicrosoftAds => (MICROSOFT_TOKEN_URL, Some(MICROSOFT_SCOPE)),
        _ => return None,
    };
    let cred = |k: &str| dest.credentials.get(k).map(|s| s.expose().to_string());
    let token_url = match dest.params.get("token_url") {
        Some(u) => u.clone(),
        None => with_endpoint(default_url, dest.endpoint.as_deref()),
    };
    Some(RefreshConfig {
        token_url,
        client_id: cred("client_id")?,
        client_secret: cred("client_secret")?,
        refresh_token: cred("refresh_token")?,
        scope,
    })
}

/// `dest` with its `access_token` credential replaced by `token` (what the adapter sends).
pub fn with_access_token(dest: &Destination, token: &str) -> Destination {
    let mut d = dest.clone();
    d.credentials
        .insert("access_token".into(), Secret(token.to_string()));
    d
}

/// A usable access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub access_token: String,
    /// Obtained by a refresh for this very request (a 401 to it is final).
    pub fresh: bool,
}

/// A refresh that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshError {
    pub class: Class,
    /// Redacted.
    pub message: String,
}

#[derive(Debug)]
struct Cached {
    access_token: String,
    expires_at_ms: i64,
    /// A rotated refresh token (Microsoft), used for the next refresh.
    refresh_token: Option<String>,
}

#[derive(Debug)]
struct Entry {
    fingerprint: String,
    state: tokio::sync::Mutex<Option<Cached>>,
}

/// Access tokens by destination.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

impl TokenCache {
    fn entry(&self, dest_id: &str, cfg: &RefreshConfig) -> Arc<Entry> {
        let fp = cfg.fingerprint();
        let mut map = self.entries.lock().expect("token cache lock");
        match map.get(dest_id) {
            Some(e) if e.fingerprint == fp => e.clone(),
            _ => {
                let e = Arc::new(Entry {
                    fingerprint: fp,
                    state: tokio::sync::Mutex::new(None),
                });
                map.insert(dest_id.to_string(), e.clone());
                e
            }
        }
    }

    /// A current access token for `dest_id`: the cached one unless it is missing,
    /// within [`EARLY_MS`] of expiry, or `stale` (the token the API just refused);
    /// else a refresh, bounded by `timeout_ms` on `clock`.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        clock: &dyn Clock,
        dest_id: &str,
        cfg: &RefreshConfig,
        stale: Option<&str>,
        timeout_ms: i64,
    ) -> Result<Token, RefreshError> {
        let entry = self.entry(dest_id, cfg);
        let mut state = entry.state.lock().await;
        let now = clock.now_ms();
        if let Some(c) = state.as_ref()
            && now < c.expires_at_ms
            && stale != Some(c.access_token.as_str())
        {
            return Ok(Token {
                access_token: c.access_token.clone(),
                fresh: false,
            });
        }
        let refresh_token = state
            .as_ref()
            .and_then(|c| c.refresh_token.clone())
            .unwrap_or_else(|| cfg.refresh_token.clone());
        let mut secrets = cfg.secrets();
        secrets.push(refresh_token.clone());
        let result = tokio::select! {
            r = request(http, cfg, &refresh_token) => r,
            () = clock.sleep_ms(timeout_ms) => Err(format!("timed out after {timeout_ms} ms")),
        };
        let at = clock.now_ms();
        let resp = result.map_err(|e| RefreshError {
            class: Class::Retryable,
            message: redact(&format!("OAuth token refresh failed: {e}"), &secrets),
        })?;
        let got = parse(&resp).map_err(|(class, m)| RefreshError {
            class,
            message: redact(&format!("OAuth token refresh failed: {m}"), &secrets),
        })?;
        let life_ms = got.expires_in_s.max(0) * 1000;
        let early = EARLY_MS.min(life_ms / 2);
        debug!(
            destination = dest_id,
            expires_in = got.expires_in_s,
            "OAuth access token refreshed"
        );
        *state = Some(Cached {
            access_token: got.access_token.clone(),
            expires_at_ms: at + life_ms - early,
            refresh_token: got.refresh_token.or(Some(refresh_token)),
        });
        Ok(Token {
            access_token: got.access_token,
            fresh: true,
        })
    }
}

/// The form body of a refresh request.
pub fn form_body(cfg: &RefreshConfig, refresh_token: &str) -> String {
    let mut pairs = vec![
        ("grant_type", "refresh_token"),
        ("client_id", cfg.client_id.as_str()),
        ("client_secret", cfg.client_secret.as_str()),
        ("refresh_token", refresh_token),
    ];
    if let Some(s) = cfg.scope {
        pairs.push(("scope", s));
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn request(
    http: &reqwest::Client,
    cfg: &RefreshConfig,
    refresh_token: &str,
) -> Result<HttpResponse, String> {
    let req = HttpRequest {
        method: "POST",
        url: cfg.token_url.clone(),
        headers: vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("accept".into(), "application/json".into()),
        ],
        body: form_body(cfg, refresh_token).into_bytes(),
        secrets: Vec::new(),
    };
    super::execute(http, req).await
}

/// A token endpoint's success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub access_token: String,
    pub expires_in_s: i64,
    pub refresh_token: Option<String>,
}

/// Reads a token endpoint's answer (see the module doc for the classification).
pub fn parse(resp: &HttpResponse) -> Result<Granted, (Class, String)> {
    let v: Option<Value> = serde_json::from_slice(&resp.body).ok();
    let s = |k: &str| {
        v.as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match resp.status {
        200..=299 => {
            let Some(at) = s("access_token") else {
                return Err((
                    Class::Retryable,
                    format!("HTTP {} without an access_token", resp.status),
                ));
            };
            let expires_in_s = v
                .as_ref()
                .and_then(|v| v.get("expires_in"))
                .and_then(|e| {
                    e.as_i64()
                        .or_else(|| e.as_str().and_then(|s| s.trim().parse().ok()))
                })
                .unwrap_or(DEFAULT_EXPIRES_IN_S);
            Ok(Granted {
                access_token: at.to_string(),
                expires_in_s,
                refresh_token: s("refresh_token").map(str::to_string),
            })
        }
        st => {
            let what = match (s("error"), s("error_description")) {
                (Some(e), Some(d)) => format!("HTTP {st} {e}: {d}"),
                (Some(e), None) => format!("HTTP {st} {e}"),
                _ => format!("HTTP {st}"),
            };
            let class = match st {
                429 => Class::Throttled {
                    hold_ms: retry_after_hint(resp),
                },
                408 => Class::Retryable,
                400..=499 => Class::Auth,
                _ => Class::Retryable,
            };
            Err((class, what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(
            parse(&resp(
                200,
                r#"{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}"#
            )),
            Ok(Granted {
                access_token: "ya29.a".into(),
                expires_in_s: 3599,
                refresh_token: None
            })
        );
        let ms = parse(&resp(
            200,
            r#"{"access_token":"EwB","expires_in":"3600","refresh_token":"M.R3"}"#,
        ))
        .unwrap();
        assert_eq!(ms.expires_in_s, 3600);
        assert_eq!(ms.refresh_token.as_deref(), Some("M.R3"));
        assert_eq!(parse(&resp(200, "{}")).unwrap_err().0, Class::Retryable);
        let (c, m) = parse(&resp(
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        ))
        .unwrap_err();
        assert_eq!(c, Class::Auth);
        assert_eq!(
            m,
            "HTTP 400 invalid_grant: Token has been expired or revoked."
        );
        assert_eq!(
            parse(&resp(401, r#"{"error":"invalid_client"}"#))
                .unwrap_err()
                .0,
            Class::Auth
        );
        assert_eq!(parse(&resp(503, "busy")).unwrap_err().0, Class::Retryable);
        assert_eq!(parse(&resp(408, "")).unwrap_err().0, Class::Retryable);
        assert_eq!(
            parse(&resp(429, "")).unwrap_err().0,
            Class::Throttled { hold_ms: None }
        );
    }

    #[test]
    fn form_is_encoded() {
        let cfg = RefreshConfig {
            token_url: "http://x/token".into(),
            client_id: "id 1".into(),
            client_secret: "s&=".into(),
            refresh_token: "1//r".into(),
            scope: Some(MICROSOFT_SCOPE),
        };
        assert_eq!(
            form_body(&cfg, "1//r"),
            "grant_type=refresh_token&client_id=id%201&client_secret=s%26%3D&refresh_token=1%2F%2Fr&scope=https%3A%2F%2Fads.microsoft.com%2Fmsads.manage%20offline_access"
        );
    }
}
