//! One-off test sends (`POST /v1/destinations/{id}/test`, `sluice destinations test`):
//! one synthetic event through the destination's real adapter, credentials (OAuth
//! included), timeout and pacing scopes, marked as a test where the platform offers a
//! test mode ([`TestMode`]: Meta and TikTok `test_event_code`, Google Ads
//! `validateOnly`). Where it offers none, or the destination lacks the param it needs,
//! only a `live` send goes out (a real event the platform counts).
//!
//! A test send runs beside the delivery pipeline, not in it: no worker takes part, and
//! the one thing written is its audit event (`destination_test`). It is never counted
//! in the destination's outcome ring, error rate or delivery metrics, never
//! dead-lettered or retried, and never moves a cursor. It takes one event of budget
//! from the destination's pacing scopes (refused while a scope has none, or is held
//! after a throttle answer), and leaves their holds alone: a throttle answer is
//! reported, and live traffic meets its own.
//!
//! The event is clearly synthetic: `event_id` `sluice-test-<unix ms>`, email
//! `sluice-test@example.com` (normalized and hashed as intake does), external id
//! `sluice-test`, a documentation IP address (192.0.2.1), user agent
//! `sluice-test/<version>`, `custom_data` `{"currency":"USD","value":0,
//! "sluice_test":true}`, and for the click-id-only platforms (Taboola, Outbrain) the
//! event id as click id.

use std::sync::Arc;

use serde_json::json;

use super::pacer::Grant;
use super::{DestCtx, Engine, worker};
use crate::audit::{Actor, AuditType, Details, NewAuditEvent};
use crate::config::{Config, Destination, Platform};
use crate::ingest::validate::{ValidateCtx, validate_event};
use crate::platforms::{self, Class, TestMode, Verdict};
use crate::store::DeliveryOp;
use crate::store::codec::StoredEvent;

/// The synthetic user's email (hashed as intake hashes it).
pub const TEST_EMAIL: &str = "sluice-test@example.com";
/// The synthetic user's IP address (RFC 5737 documentation range).
pub const TEST_IP: &str = "192.0.2.1";
/// Most bytes of the platform's answer shown in a verdict.
pub const EXCERPT_BYTES: usize = 1024;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct TestRequest {
    /// Send even when the request cannot be marked as a test (a real event).
    pub live: bool,
    /// The event name (default: the first of the destination's `events`, else
    /// `Purchase`).
    pub event_name: Option<String>,
    /// Who asked (recorded in the audit event).
    pub actor: Actor,
}

/// The platform's verdict on a test send.
#[derive(Debug, Clone, PartialEq)]
pub struct TestVerdict {
    pub event_id: String,
    pub event_name: String,
    /// What marked the request as a test (`test_event_code`, `validateOnly`); None for
    /// a live send.
    pub test_mode: Option<&'static str>,
    pub sent_at_ms: i64,
    /// The HTTP status; None when no answer came (transport error, timeout).
    pub status: Option<u16>,
    /// sluice's classification: `delivered`, `retryable`, `throttled`, `auth`,
    /// `rejected`, `gone` or `per_row`.
    pub class: &'static str,
    /// `gone`: the pause reason it would cause; `per_row`: the row's class.
    pub detail: Option<String>,
    /// The platform's request id, when it gave one.
    pub request_id: Option<String>,
    pub latency_ms: i64,
    /// The start of the answer (or why there was none), secrets and the event's
    /// plaintext replaced by `[redacted]`.
    pub excerpt: String,
}

/// Why a test send did not go out (or, for [`TestRefused::NotRecorded`], was not
/// audited).
#[derive(Debug, Clone, PartialEq)]
pub enum TestRefused {
    /// The request cannot be marked as a test: the platform has no test mode, or the
    /// destination lacks the param it needs (`needs_param`). `live` would send it.
    NoTestMode {
        platform: &'static str,
        needs_param: Option<&'static str>,
    },
    /// The event name is not one the destination receives, or not a valid name.
    BadEventName(String),
    /// The adapter cannot express the event (nothing was sent).
    Unsendable(String),
    /// A pacing scope has no room before this time (ms).
    Paced { until_ms: i64 },
    /// The store is not open (the test send could not be audited).
    StoreUnavailable,
    /// The platform has no adapter.
    NoAdapter,
    /// The send did not finish (the delivery runtime is shutting down).
    Interrupted(String),
    /// Sent and answered, but the audit event could not be committed.
    NotRecorded {
        verdict: Box<TestVerdict>,
        error: String,
    },
}

impl Engine {
    /// Sends one synthetic event to `dest` and returns the platform's verdict, after
    /// recording it in the audit chain (see the module doc).
    pub async fn test_send(
        self: &Arc<Self>,
        cfg: &Config,
        dest: &Destination,
        req: TestRequest,
    ) -> Result<TestVerdict, TestRefused> {
        let adapter = platforms::adapter(dest.platform).ok_or(TestRefused::NoAdapter)?;
        let now = self.clock.now_ms();
        let name = event_name(dest, req.event_name.as_deref())?;
        let event = synthetic(cfg, dest, &name, now).map_err(TestRefused::BadEventName)?;
        let test_mode = if req.live {
            None
        } else {
            match adapter.test_mode(dest) {
                TestMode::Marked(how) => Some(how),
                TestMode::NeedsParam(p) => {
                    return Err(TestRefused::NoTestMode {
                        platform: dest.platform.name(),
                        needs_param: Some(p),
                    });
                }
                TestMode::Unsupported => {
                    return Err(TestRefused::NoTestMode {
                        platform: dest.platform.name(),
                        needs_param: None,
                    });
                }
            }
        };
        if !self.store.is_open() {
            return Err(TestRefused::StoreUnavailable);
        }
        let out = platforms::OutEvent {
            event: &event,
            merchant_id: &dest.workspace,
            accepted_ms: now,
        };
        adapter
            .check(dest, &out)
            .map_err(|u| TestRefused::Unsendable(u.0))?;

        // One event of budget from every scope, as a worker's batch takes it.
        let pacers = self.pacers_for(dest);
        let mut wait = now;
        for p in &pacers {
            if let Grant::WaitUntil(t) = p.lock().expect("pacer lock").grant(now, 1) {
                wait = wait.max(t);
            }
        }
        if wait > now {
            return Err(TestRefused::Paced { until_ms: wait });
        }
        for p in &pacers {
            p.lock().expect("pacer lock").record(now, 1);
        }

        let ctx = Arc::new(DestCtx {
            dest: dest.clone(),
            adapter,
            pacers,
            max_backlog_age_ms: cfg.storage.max_backlog_age.as_millis() as i64,
            initial_head: None,
            mark_test: test_mode.is_some(),
            // A test send is not delivery: it stays out of the request log too.
            request_log: 0,
        });
        let stored = StoredEvent {
            accepted_ms: now,
            sealed: Vec::new(),
            event: event.clone(),
        };
        // On the delivery runtime, as every platform request.
        let engine = self.clone();
        let a = self
            .rt
            .spawn(async move { worker::send::one_off(&engine, &ctx, stored).await })
            .await
            .map_err(|e| TestRefused::Interrupted(e.to_string()))?;
        let at = self.clock.now_ms();
        if let Some(why) = a.unbuildable {
            return Err(TestRefused::Unsendable(why));
        }
        let (class, detail) = class_of(&a.verdict);
        let excerpt = match (&a.response, &a.error) {
            (Some(r), _) => excerpt(&platforms::redact(
                &String::from_utf8_lossy(&r.body),
                &a.secrets,
            )),
            (None, Some(e)) => excerpt(e),
            (None, None) => String::new(),
        };
        let verdict = TestVerdict {
            event_id: event.event_id.clone(),
            event_name: name,
            test_mode,
            sent_at_ms: now,
            status: a.response.as_ref().map(|r| r.status),
            class,
            detail,
            request_id: a.response.as_ref().and_then(|r| adapter.request_id(r)),
            latency_ms: (at - now).max(0),
            excerpt,
        };
        let details = Details::new()
            .str("destination_id", &dest.id)
            .str("merchant_id", &dest.workspace)
            .str("platform", dest.platform.name())
            .str("event_id", &verdict.event_id)
            .str("event_name", &verdict.event_name)
            .bool("live", test_mode.is_none())
            .opt_str("test_mode", test_mode)
            .opt_int("status", verdict.status.map(i64::from))
            .str("class", class)
            .opt_str("request_id", verdict.request_id.clone())
            .int("latency_ms", verdict.latency_ms);
        let audit =
            NewAuditEvent::record(AuditType::DestinationTest, &dest.id, req.actor, details, at);
        if let Err(e) = self.store.delivery(vec![DeliveryOp::Audit(audit)]).await {
            return Err(TestRefused::NotRecorded {
                verdict: Box::new(verdict),
                error: e.to_string(),
            });
        }
        tracing::info!(destination = %dest.id, class, status = verdict.status, live = test_mode.is_none(), "test send answered");
        Ok(verdict)
    }
}

/// The event name: the one asked for (it must be routed to the destination), else the
/// first of the destination's `events`, else `Purchase`.
fn event_name(dest: &Destination, asked: Option<&str>) -> Result<String, TestRefused> {
    match (asked, &dest.events) {
        (Some(n), Some(list)) if !list.iter().any(|e| e == n) => {
            Err(TestRefused::BadEventName(format!(
                "event_name {n:?} is not routed to destination {} (its `events`: {})",
                dest.id,
                list.join(", ")
            )))
        }
        (Some(n), _) => Ok(n.to_string()),
        (None, Some(list)) if !list.is_empty() => Ok(list[0].clone()),
        (None, _) => Ok("Purchase".to_string()),
    }
}

/// The synthetic event, validated and hashed as intake does it.
fn synthetic(
    cfg: &Config,
    dest: &Destination,
    name: &str,
    now_ms: i64,
) -> Result<crate::event::NormalizedEvent, String> {
    let id = format!("sluice-test-{now_ms}");
    let mut user = json!({
        "email": TEST_EMAIL,
        "external_id": "sluice-test",
        "client_ip_address": TEST_IP,
        "client_user_agent": concat!("sluice-test/", env!("CARGO_PKG_VERSION")),
    });
    match dest.platform {
        Platform::Taboola => user["tblci"] = json!(id),
        Platform::Outbrain => user["ob_click_id"] = json!(id),
        _ => {}
    }
    let v = json!({
        "event_id": id,
        "event_name": name,
        "event_time": now_ms.div_euclid(1000),
        "action_source": "website",
        "event_source_url": "https://sluice.invalid/test",
        "user_data": user,
        "custom_data": {"currency": "USD", "value": 0, "sluice_test": true},
    });
    let ids = [dest.id.clone()];
    validate_event(
        &v,
        &ValidateCtx {
            now_secs: now_ms.div_euclid(1000),
            default_country_code: &cfg.ingest.default_country_code,
            destination_ids: &ids,
            keep_plaintext: dest.platform == Platform::Klaviyo,
        },
    )
    .map_err(|e| e.message)
}

/// The verdict's class for one event, as delivery would settle it: a batch split or
/// rows named reject a lone event; per-row answers report the row's class.
fn class_of(v: &Verdict) -> (&'static str, Option<String>) {
    fn name(c: &Class) -> &'static str {
        match c {
            Class::Delivered => "delivered",
            Class::Retryable => "retryable",
            Class::Throttled { .. } => "throttled",
            Class::Auth => "auth",
            Class::Rejected => "rejected",
            Class::Gone(_) => "gone",
        }
    }
    match v {
        Verdict::Whole(Class::Gone(reason)) => ("gone", Some((*reason).to_string())),
        Verdict::Whole(c) => (name(c), None),
        Verdict::RowsRejected(_) | Verdict::Bisect => ("rejected", None),
        Verdict::PerRow(rows) => (
            "per_row",
            Some(rows.first().map_or("delivered", name).to_string()),
        ),
    }
}

/// At most [`EXCERPT_BYTES`] of `text`, cut on a character boundary (`…` marks a cut).
fn excerpt(text: &str) -> String {
    if text.len() <= EXCERPT_BYTES {
        return text.to_string();
    }
    let mut cut = EXCERPT_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_a_lone_event() {
        assert_eq!(
            class_of(&Verdict::Whole(Class::Delivered)),
            ("delivered", None)
        );
        assert_eq!(
            class_of(&Verdict::Whole(Class::Gone("endpoint_gone"))),
            ("gone", Some("endpoint_gone".into()))
        );
        assert_eq!(class_of(&Verdict::Bisect), ("rejected", None));
        assert_eq!(
            class_of(&Verdict::RowsRejected(vec![0])),
            ("rejected", None)
        );
        assert_eq!(
            class_of(&Verdict::PerRow(vec![Class::Rejected])),
            ("per_row", Some("rejected".into()))
        );
    }

    #[test]
    fn excerpts_cut_on_characters() {
        let long = "é".repeat(EXCERPT_BYTES);
        let e = excerpt(&long);
        assert!(e.ends_with('…') && e.len() <= EXCERPT_BYTES + '…'.len_utf8());
        assert_eq!(excerpt("short"), "short");
    }
}
