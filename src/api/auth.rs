//! Who may call what: ingest keys name a workspace, the admin token opens the admin
//! routes. Every comparison runs over all candidates in constant time (keys are
//! compared as SHA-256 digests), and no key is ever echoed.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::audit::Actor;
use crate::ingest::intake::WorkspaceRules;
use crate::state::{App, Runtime};

/// `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer(h: &HeaderMap) -> Option<&[u8]> {
    let v = h.get(header::AUTHORIZATION)?.as_bytes();
    if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
        let t = v[7..].trim_ascii();
        (!t.is_empty()).then_some(t)
    } else {
        None
    }
}

/// The workspace owning this ingest key. Compares against every key in constant time.
pub fn ingest_workspace<'a>(rt: &'a Runtime, token: &[u8]) -> Option<&'a WorkspaceRules> {
    let h: [u8; 32] = Sha256::digest(token).into();
    let mut found = None;
    for (k, rules) in rt.ingest_keys() {
        if bool::from(k.ct_eq(&h)) {
            found = Some(rules);
        }
    }
    found
}

/// An admin request: it carried the admin token. `actor` is `cli` when the CLI says so
/// (`X-Sluice-Actor: cli`), else `api_user`.
#[derive(Debug, Clone, Copy)]
pub struct Admin {
    pub actor: Actor,
}

impl Admin {
    /// Checks the admin token in `headers` against the running configuration.
    pub fn check(app: &App, headers: &HeaderMap) -> Result<Admin, ApiError> {
        let rt = app.runtime();
        let Some(token) = &rt.config.server.admin_token else {
            let shown = rt.config.server.admin_token_env.as_ref().filter(|v| {
                // Only a variable's name is shown (never a secret pasted in its place).
                v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            });
            let why = match (shown, &rt.config.server.admin_token_env) {
                (Some(var), _) => format!(
                    "the admin API is disabled: server.admin_token_env names {var}, which was not set in the daemon's environment when it started; start the daemon with {var} exported (a reload does not read the environment again), or set server.admin_token_file and reload"
                ),
                (None, Some(_)) => "the admin API is disabled: the variable server.admin_token_env names was not set in the daemon's environment when it started; start the daemon with it exported (a reload does not read the environment again), or set server.admin_token_file and reload".to_string(),
                (None, None) => "the admin API is disabled: no admin token is configured; set server.admin_token_file (or admin_token) and reload".to_string(),
            };
            return Err(ApiError::new(StatusCode::FORBIDDEN, "admin_disabled", why));
        };
        let given = bearer(headers).unwrap_or_default();
        let a: [u8; 32] = Sha256::digest(given).into();
        let b: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        if given.is_empty() || !bool::from(a.ct_eq(&b)) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong admin token: send Authorization: Bearer <admin token>",
            ));
        }
        let actor = match headers.get("x-sluice-actor").and_then(|v| v.to_str().ok()) {
            Some(v) if v.eq_ignore_ascii_case("cli") => Actor::Cli,
            _ => Actor::Api,
        };
        Ok(Admin { actor })
    }
}

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        Admin::check(app, &parts.headers)
    }
}
