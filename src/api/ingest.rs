//! `POST /v1/events` (SPEC §2). Checks run in the contract's order and the first that
//! fails answers: key, media type, body size, JSON shape, event count and burst, then
//! per event (fields, dedup, ingress limits) in [`crate::ingest::intake`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{error, json_response};
use crate::app::App;
use crate::ingest::intake::{Outcome, Rejected};

pub async fn post_events(State(app): State<Arc<App>>, req: Request) -> Response {
    let rt = app.runtime();
    let (parts, body) = req.into_parts();

    // 1. The ingest key.
    let Some(rules) = bearer(&parts.headers).and_then(|t| rt.authenticate(t)) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown ingest key: send Authorization: Bearer <workspace ingest key>",
        );
    };
    if !app.is_ready() {
        return unavailable("the store is not open yet; retry shortly");
    }
    // 2. The media type.
    if !is_json(&parts.headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        );
    }
    // 3. The body size.
    let max = rt.config.server.max_body_bytes;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than server.max_body_bytes ({max} bytes)"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let bytes = match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the request body could not be read",
            );
        }
    };
    // 4. The JSON shape.
    let events = match parse_body(&bytes) {
        Ok(e) => e,
        Err(msg) => return error(StatusCode::BAD_REQUEST, "invalid_json", msg),
    };
    // 5. Counts.
    let max_events = rt.config.server.max_events_per_request;
    if events.len() > max_events {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "{} events in one request; server.max_events_per_request is {max_events}",
                events.len()
            ),
        );
    }
    let burst = rules.limits.burst;
    if rules.limits.rate > 0 && burst > 0 && events.len() as u64 > burst {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_exceeds_burst",
            format!(
                "{} events in one request; workspace {} allows a burst of {burst}: split the batch",
                events.len(),
                rules.id
            ),
        );
    }
    // 6. Per event.
    let outcome = app
        .intake
        .ingest(
            rules,
            &rt.config.ingest.default_country_code,
            rt.config.storage.dedup_window.as_millis() as i64,
            &events,
        )
        .await;
    match outcome {
        Outcome::Accepted {
            accepted,
            duplicates,
            rejected,
        } => json_response(
            StatusCode::ACCEPTED,
            &json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejected_json(&rejected)}),
        ),
        Outcome::AllRejected(rejected) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({
                "error": "all_rejected",
                "message": format!("none of the {} events was accepted; see rejected", events.len()),
                "rejected": rejected_json(&rejected),
            }),
        ),
        Outcome::RateLimited { retry_after_secs } => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "workspace {} is over its ingress rate ({} events/s, burst {}); retry after {retry_after_secs} s",
                    rules.id, rules.limits.rate, rules.limits.burst
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            r
        }
        Outcome::Unavailable(why) => {
            tracing::warn!(reason = %why, "ingest answered 503");
            unavailable(
                "the store could not commit; nothing of this request that was not already stored was accepted. sluice is recovering the store: retry (stored events answer as duplicates)",
            )
        }
    }
}

fn unavailable(msg: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", msg);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn rejected_json(r: &[Rejected]) -> Value {
    Value::Array(
        r.iter()
            .map(|r| {
                json!({"index": r.index, "event_id": r.event_id, "error": r.error, "message": r.message})
            })
            .collect(),
    )
}

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

fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false)
}

/// One event object, or `{"events": [ … ]}` (with no other key).
fn parse_body(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    match v {
        Value::Object(mut m) if m.contains_key("events") => {
            if m.len() != 1 {
                return Err("a batch body is {\"events\": [...]} with no other key".to_string());
            }
            match m.remove("events") {
                Some(Value::Array(a)) => Ok(a),
                _ => Err("\"events\" must be an array of event objects".to_string()),
            }
        }
        Value::Object(m) => Ok(vec![Value::Object(m)]),
        _ => Err("the body must be an event object or {\"events\": [...]}".to_string()),
    }
}
