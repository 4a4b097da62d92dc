//! `POST /v1/destinations/{id}/test`: one synthetic event sent to a configured
//! destination through its real adapter, credentials and pacing, marked as a test where
//! the platform offers that ([`crate::delivery::test_send`]); the answer is the
//! platform's verdict. Takes the [`Admin`] extractor; the send is audited as
//! `destination_test` with the admin request's actor.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::admin::not_found;
use super::auth::Admin;
use super::error::{ApiError, ApiResult, ok};
use crate::clock::rfc3339_ms;
use crate::delivery::test_send::{TestRefused, TestRequest, TestVerdict};
use crate::state::App;

/// The optional body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// Send even when the request cannot be marked as a test.
    #[serde(default)]
    live: bool,
    event_name: Option<String>,
}

/// `POST /v1/destinations/{id}/test` `{"live"?, "event_name"?}` (body optional).
pub async fn test_destination(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let rt = app.runtime();
    let Some(dest) = rt.config.destinations.iter().find(|d| d.id == id) else {
        let removed = app.intake.store.view()?.known_destinations()?.contains(&id);
        return Err(if removed {
            ApiError::conflict(
                "removed",
                format!(
                    "destination {id:?} was removed from the config: it sends nothing, and cannot be tested until it is configured again"
                ),
            )
        } else {
            not_found(&id)
        });
    };
    let b: Body = if body.trim_ascii().is_empty() {
        Body::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body must be empty or {{\"live\": true|false, \"event_name\": \"…\"}}: {e}"
            ))
        })?
    };
    let req = TestRequest {
        live: b.live,
        event_name: b.event_name,
        actor: admin.actor,
    };
    match app.engine.test_send(&rt.config, dest, req).await {
        Ok(v) => ok(&verdict_json(&id, dest.platform.name(), &v)),
        Err(e) => Err(refusal(&id, e, app.intake.clock.now_ms())),
    }
}

fn verdict_json(id: &str, platform: &str, v: &TestVerdict) -> serde_json::Value {
    json!({
        "destination_id": id,
        "platform": platform,
        "event_id": v.event_id,
        "event_name": v.event_name,
        "live": v.test_mode.is_none(),
        "marked_test": v.test_mode.is_some(),
        "test_mode": v.test_mode,
        "sent_at": rfc3339_ms(v.sent_at_ms),
        "status": v.status,
        "class": v.class,
        "detail": v.detail,
        "request_id": v.request_id,
        "latency_ms": v.latency_ms,
        "response_excerpt": v.excerpt,
    })
}

/// The error answer of a test send that did not happen (or was not audited).
fn refusal(id: &str, e: TestRefused, now_ms: i64) -> ApiError {
    match e {
        TestRefused::NoTestMode {
            platform,
            needs_param: None,
        } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "test_mode_unavailable",
            format!(
                "platform {platform} has no test mode: a test send to destination {id} would be a real event that {platform} counts. To send it anyway, send {{\"live\": true}} (sluice destinations test {id} --live)"
            ),
        ),
        TestRefused::NoTestMode {
            platform,
            needs_param: Some(param),
        } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "test_mode_unavailable",
            format!(
                "destination {id} has no params.{param}: set it to the code of {platform}'s test events tool to send a marked test; without it a test send is a real event that {platform} counts. To send it anyway, send {{\"live\": true}} (sluice destinations test {id} --live)"
            ),
        ),
        TestRefused::BadEventName(m) => ApiError::bad_request(m),
        TestRefused::Unsendable(m) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsendable",
            format!("destination {id} cannot send the test event (nothing was sent): {m}"),
        ),
        TestRefused::Paced { until_ms } => {
            let secs = ((until_ms - now_ms).max(0) as u64).div_ceil(1000).max(1);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "paced",
                format!(
                    "destination {id}'s pacing scope has no room until {} (its rate limit is used up, or the platform throttled it): try again then",
                    rfc3339_ms(until_ms)
                ),
            )
            .retry_after(secs)
        }
        TestRefused::StoreUnavailable => ApiError::unavailable(
            "the store is not open yet (a test send is audited): try again shortly",
        )
        .retry_after(1),
        TestRefused::NoAdapter => ApiError::conflict(
            "not_running",
            format!("destination {id}'s platform has no adapter"),
        ),
        TestRefused::Interrupted(why) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "interrupted",
            format!(
                "the test send to destination {id} did not finish (sluice is stopping?): {why}"
            ),
        ),
        TestRefused::NotRecorded { verdict, error } => ApiError::unavailable(format!(
            "the test event was sent (class {}, status {}) but its audit event could not be committed: {error}",
            verdict.class,
            verdict
                .status
                .map_or_else(|| "none".to_string(), |s| s.to_string())
        )),
    }
}
