//! A Standard Webhooks receiver (platforms.md §11): takes any `POST` path.
//!
//! - With an expected `whsec_…` secret ([`super::SimOptions::credential`]) it verifies
//!   like the reference libraries: `webhook-id`, `webhook-timestamp` (within ±5 minutes
//!   of the simulator's clock) and a `v1,` signature over `id.timestamp.body` among the
//!   space-separated ones; failure → 401. Without a secret, signatures are not checked.
//! - A body that is not JSON → 400. Success → `200 {"ok":true}`.
//! - Faults: `Throttle` → 429 (`Retry-After` only if scripted); `Auth` → 401;
//!   `Transient` → 503; `Invalid` → 400; `Code{status, ..}` → that status. Statuses of
//!   the webhook row not covered by a named fault (502, 504, 408, 403, 404) come from
//!   `ServerError(status)`.

use base64::Engine;
use serde_json::{Value, json};

use super::{Fault, Ids, PlatformSim, Reply, Req, Shared};
use crate::platforms::webhook::sign;

fn verify(secret: &str, r: &Req) -> Result<(), &'static str> {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .ok_or("simulator secret is not whsec_<base64>")?;
    let id = r.header("webhook-id").ok_or("missing webhook-id")?;
    let ts: i64 = r
        .header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or("missing or bad webhook-timestamp")?;
    if (ts - r.now_ms.div_euclid(1000)).abs() > 300 {
        return Err("webhook-timestamp outside tolerance");
    }
    let want = sign(&key, id, ts, r.raw);
    let sigs = r
        .header("webhook-signature")
        .ok_or("missing webhook-signature")?;
    let ok = sigs.split(' ').any(|s| {
        use subtle::ConstantTimeEq;
        s.as_bytes().ct_eq(want.as_bytes()).into()
    });
    if ok {
        Ok(())
    } else {
        Err("no matching signature")
    }
}

pub(super) struct Webhook;

impl PlatformSim for Webhook {
    fn ids(&self) -> Ids {
        Ids::One(&["event_id"])
    }

    fn fault(&self, f: &Fault, now_ms: i64, _seq: u64, _body: &Value) -> Reply {
        match f {
            Fault::Throttle { retry_after } => {
                Reply::plain(429, "Too Many Requests").retry_after(*retry_after, now_ms)
            }
            Fault::Auth => Reply::plain(401, "Unauthorized"),
            Fault::Transient => Reply::plain(503, "Service Unavailable"),
            Fault::Invalid => Reply::plain(400, "Bad Request"),
            Fault::Code { status, code } => {
                Reply::json(*status, &json!({"error": code.to_string()}))
            }
            _ => Reply::plain(500, "unexpected fault"),
        }
    }

    fn handle(&self, s: &Shared, r: &Req) -> Reply {
        if r.method != "POST" {
            return Reply::plain(405, "Method Not Allowed");
        }
        if let Some(secret) = &s.credential
            && let Err(why) = verify(secret, r)
        {
            return Reply::plain(401, why);
        }
        if r.body.is_null() {
            return Reply::plain(400, "body is not JSON");
        }
        if s.admit("webhook", 1, r.now_ms).is_err() {
            return Reply::plain(429, "Too Many Requests").header("retry-after", "1".into());
        }
        Reply::json(200, &json!({"ok": true})).accepted()
    }
}
