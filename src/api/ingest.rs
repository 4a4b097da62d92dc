//! `POST /v1/events` (SPEC §2). Checks run in the contract's order and the first that
//! fails answers: key, media type, body size, JSON shape, event count and burst, then
//! per event (fields, dedup, ingress limits) in [`crate::ingest::intake`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::auth::{bearer, ingest_workspace};
use super::error::{ApiError, json};
use crate::ingest::body::parse_body;
use crate::ingest::intake::{Outcome, Rejected};
use crate::state::App;

pub async fn post_events(State(app): State<Arc<App>>, req: Request) -> Response {
    let mut tally = Tally::default();
    let mut r = ingest(&app, req, &mut tally).await;
    tally.record(&app.engine.metrics);
    // Answered before the body was read: the connection closes (what is left of the
    // body is never read), and the client is told so.
    if !tally.body_read {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// What one request adds to `sluice_ingest_events_total` and
/// `sluice_ingest_rejected_total`: accepted events, and rejected ones by error code (a
/// request refused whole counts once under its code; rate-limited requests count their
/// events).
#[derive(Default)]
struct Tally {
    /// The whole body was read (else the connection is closed after the answer).
    body_read: bool,
    merchant: Option<Arc<str>>,
    accepted: u64,
    rejected: Vec<(&'static str, u64)>,
}

impl Tally {
    fn fail(&mut self, status: StatusCode, code: &'static str, msg: impl Into<String>) -> Response {
        self.rejected.push((code, 1));
        ApiError::new(status, code, msg).into_response()
    }

    fn events(&mut self, rejected: &[Rejected]) {
        for r in rejected {
            match self.rejected.iter_mut().find(|(c, _)| *c == r.error) {
                Some((_, n)) => *n += 1,
                None => self.rejected.push((r.error, 1)),
            }
        }
    }

    fn record(&self, m: &crate::metrics::Metrics) {
        let merchant = self.merchant.as_deref().unwrap_or("unknown");
        m.ingested(merchant, self.accepted);
        for (code, n) in &self.rejected {
            m.rejected(merchant, code, *n);
        }
    }
}

async fn ingest(app: &App, req: Request, m: &mut Tally) -> Response {
    let rt = app.runtime();
    let (parts, body) = req.into_parts();

    // 1. The ingest key.
    let Some(rules) = bearer(&parts.headers).and_then(|t| ingest_workspace(&rt, t)) else {
        return m.fail(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown ingest key: send Authorization: Bearer <workspace ingest key>",
        );
    };
    m.merchant = Some(rules.id.clone());
    if !app.is_ready() {
        m.rejected.push(("storage_unavailable", 1));
        return unavailable("the store is not open yet; retry shortly");
    }
    // 2. The media type.
    if !is_json(&parts.headers) {
        return m.fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        );
    }
    // 3. The body size.
    let max = rt.config.server.max_body_bytes;
    let too_large = |m: &mut Tally| {
        m.fail(
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
        return too_large(m);
    }
    let read = http_body_util::Limited::new(body, max).collect();
    let body_timeout = app.http_limits.body_timeout;
    let bytes = match tokio::time::timeout(body_timeout, read).await {
        Err(_) => {
            return m.fail(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the body did not arrive within {} ms",
                    body_timeout.as_millis()
                ),
            );
        }
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(m),
        Ok(Err(_)) => {
            return m.fail(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the request body could not be read",
            );
        }
    };
    m.body_read = true;
    // 4. The JSON shape.
    let events = match parse_body(&bytes) {
        Ok(e) => e,
        Err(msg) => return m.fail(StatusCode::BAD_REQUEST, "invalid_json", msg),
    };
    // 5. Counts.
    let max_events = rt.config.server.max_events_per_request;
    if events.len() > max_events {
        return m.fail(
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
        return m.fail(
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
        } => {
            m.accepted = accepted as u64;
            m.events(&rejected);
            json(
                StatusCode::ACCEPTED,
                &json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejected_json(&rejected)}),
            )
        }
        Outcome::AllRejected(rejected) => {
            m.events(&rejected);
            json(
                StatusCode::BAD_REQUEST,
                &json!({
                    "error": "all_rejected",
                    "message": format!("none of the {} events was accepted; see rejected", events.len()),
                    "rejected": rejected_json(&rejected),
                }),
            )
        }
        Outcome::RateLimited { retry_after_secs } => {
            m.rejected.push(("rate_limited", events.len() as u64));
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "workspace {} is over its ingress rate ({} events/s, burst {}); retry after {retry_after_secs} s",
                    rules.id, rules.limits.rate, rules.limits.burst
                ),
            )
            .retry_after(retry_after_secs)
            .into_response()
        }
        Outcome::Unavailable(why) => {
            tracing::warn!(reason = ?why, "ingest answered 503");
            m.rejected
                .push(("storage_unavailable", events.len() as u64));
            unavailable(
                "the store could not commit; nothing of this request that was not already stored was accepted. sluice is recovering the store: retry (stored events answer as duplicates)",
            )
        }
    }
}

fn unavailable(msg: &str) -> Response {
    ApiError::unavailable(msg).retry_after(1).into_response()
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

fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
}

#[cfg(test)]
mod tests {
    //! The body parser and per-event validation under random input: never a panic,
    //! always an answer; and the duplicate-aware parser reads every document without
    //! duplicates exactly as `serde_json` does. Cases: `PROPTEST_CASES` (256 by
    //! default here, more on demand).

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use crate::ingest::body::parse_body;
    use crate::ingest::validate::{ValidateCtx, validate};

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn valid_body() -> String {
        json!({"events": [
            {"event_id": "o-1", "event_name": "Purchase", "event_time": 1_793_620_700,
             "action_source": "website",
             "user_data": {"email": "A@Example.com", "phone": "+1 415 555 0100",
                           "client_ip_address": "203.0.113.9", "fbp": "fb.1.2.3"},
             "custom_data": {"value": 42.5, "currency": "EUR", "items": [1, {"a": null}]}},
            {"event_id": "o-2", "event_name": "Lead", "event_time": 1_793_620_800}
        ]})
        .to_string()
    }

    /// Any JSON value (small).
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn check(bytes: &[u8]) {
        let ctx = ValidateCtx {
            now_secs: 1_793_620_800,
            default_country_code: "1",
            destination_ids: &[],
            keep_plaintext: false,
        };
        match parse_body(bytes) {
            Ok(events) => {
                for e in &events {
                    match validate(e, &ctx) {
                        Ok(n) => assert!(!n.event_id.is_empty()),
                        Err(err) => assert!(!err.message.is_empty()),
                    }
                }
            }
            Err(msg) => assert!(!msg.is_empty()),
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            check(&bytes);
        }

        #[test]
        fn mutated_valid_bodies_never_panic(
            cuts in proptest::collection::vec((0usize..400, 0usize..8, ".{0,6}"), 1..6)
        ) {
            let mut s = valid_body();
            for (at, len, insert) in cuts {
                let at = at.min(s.len());
                let mut at = at;
                while !s.is_char_boundary(at) { at -= 1; }
                let mut end = (at + len).min(s.len());
                while !s.is_char_boundary(end) { end -= 1; }
                s.replace_range(at..end.max(at), &insert);
            }
            check(s.as_bytes());
        }

        #[test]
        fn any_event_shape_is_answered(v in any_json()) {
            check(v.to_string().as_bytes());
            check(json!({"events": [v]}).to_string().as_bytes());
        }

        #[test]
        fn without_duplicates_the_strict_parser_is_serde_json(v in any_json()) {
            let text = v.to_string();
            let p = crate::ingest::strict_json::parse(text.as_bytes()).unwrap();
            prop_assert!(p.duplicates.is_empty());
            prop_assert_eq!(p.value, serde_json::from_str::<Value>(&text).unwrap());
        }
    }
}
