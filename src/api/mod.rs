//! HTTP routes. Every error body is `{"error": "<code>", "message": "<human text>"}`.

/// Answers with the admin-auth error unless the request carries the admin token.
macro_rules! admin {
    ($app:expr, $headers:expr) => {
        if let Err(r) = $crate::api::admin::authorize(&$app, &$headers) {
            return *r;
        }
    };
}

pub mod admin;
pub mod audit;
pub mod ingest;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::app::App;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/events", post(ingest::post_events))
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
        .route("/v1/auto-pause-events", get(admin::auto_pause_events))
        .route("/v1/admin/reload", post(admin::reload))
        .route("/v1/admin/backup", post(admin::backup))
        .route("/v1/dlq", get(admin::dlq_list))
        .route("/v1/dlq/replay", post(admin::dlq_replay))
        .route("/v1/dlq/discard", post(admin::dlq_discard))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The uniform error body.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json_response(status, &json!({"error": code, "message": message.into()}))
}

/// `GET /metrics` (open, SPEC §10). The per-destination gauges are left out while the
/// store cannot be read (the counters are still served).
async fn metrics(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
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

async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

async fn readyz(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    if app.is_ready() {
        json_response(StatusCode::OK, &json!({"status": "ready"}))
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the store is not open or not writable yet; sluice reopens it by itself",
        )
    }
}
