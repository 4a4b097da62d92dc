//! HTTP routes. Every error body is `{"error": "<code>", "message": "<human text>"}`
//! ([`error::ApiError`]); admin routes take the [`auth::Admin`] extractor.
//!
//! - [`ingest`]: `POST /v1/events`;
//! - [`admin`]: destinations, pause/resume, purge, timeline, reload, backup;
//! - [`requests`]: a destination's request log;
//! - [`series`]: a destination's time series (the console's charts);
//! - [`dlq`]: DLQ list (by reason, by event id), summary, replay, discard;
//! - [`audit`]: the audit chain's list, export and verify;
//! - [`test_send`]: `POST /v1/destinations/{id}/test`;
//! - here: `/metrics`, `/healthz`, `/readyz`.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod dlq;
pub mod error;
pub mod events;
pub mod ingest;
pub mod requests;
pub mod series;
pub mod serve;
pub mod test_send;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::state::App;
use error::{ApiError, json};

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/events", post(ingest::post_events))
        .route("/v1/events/{event_id}", get(events::get_trace))
        .route("/v1/destinations", get(admin::list_destinations))
        .route("/v1/destinations/{id}", get(admin::get_destination))
        .route(
            "/v1/destinations/{id}/pause",
            post(admin::pause_destination),
        )
        .route(
            "/v1/destinations/{id}/resume",
            post(admin::resume_destination),
        )
        .route("/v1/destinations/{id}/timeline", get(admin::timeline))
        .route("/v1/destinations/{id}/purge", post(admin::purge))
        .route("/v1/destinations/{id}/requests", get(requests::list))
        .route("/v1/destinations/{id}/series", get(series::get_series))
        .route(
            "/v1/destinations/{id}/test",
            post(test_send::test_destination),
        )
        .route("/v1/auto-pause-events", get(admin::auto_pause_events))
        .route("/v1/admin/reload", post(admin::reload))
        .route("/v1/admin/backup", post(admin::backup))
        .route("/v1/accuracy", get(crate::watch::accuracy::get_accuracy))
        .route("/v1/dlq", get(dlq::list))
        .route("/v1/dlq/summary", get(dlq::summary))
        .route("/v1/dlq/replay", post(dlq::replay))
        .route("/v1/dlq/discard", post(dlq::discard))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::console::router(app.clone()))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(app)
}

/// A query string, refused as a JSON `400 invalid_request` (not axum's plain text) when
/// it does not parse.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
    }
}

/// `GET /metrics` (open, SPEC §10). The per-destination gauges are left out while the
/// store cannot be read (the counters are still served).
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let a = app.clone();
    let text = tokio::task::spawn_blocking(move || {
        let rt = a.runtime();
        let gauges = a.engine.gauges(&rt.config).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "metrics: cannot read the backlogs; gauges left out");
            Vec::new()
        });
        a.engine.metrics.encode(&gauges)
    })
    .await
    .unwrap_or_default();
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    r
}

/// Every answer is the JSON error body, an unknown route's too.
async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(128).collect();
    ApiError::not_found(format!("no route {path:?}: see docs/api.md for the routes"))
}

async fn wrong_method(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on this route"),
    )
}

async fn healthz() -> Response {
    json(StatusCode::OK, &json!({"status": "ok"}))
}

async fn readyz(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    if app.is_ready() {
        Ok(json(StatusCode::OK, &json!({"status": "ready"})))
    } else {
        Err(ApiError::unavailable(
            "the store is not open or not writable yet; sluice reopens it by itself",
        ))
    }
}
