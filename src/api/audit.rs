//! Audit routes (SPEC §6), admin-authorized like every other `/v1/` admin route (§7):
//! - `GET /v1/audit?type=&resource=&limit=100&cursor=` → `{"events": [...],
//!   "next_cursor"}`, newest first (`limit` 1–1000; `cursor` is a `next_cursor` this
//!   route gave out).
//! - `GET /v1/audit/export` → JSON Lines (`application/x-ndjson`), oldest first, every
//!   field.
//! - `GET /v1/audit/verify` → `{"ok": true, "length", "head"}` or `{"ok": false,
//!   "length", "broken_at", "reason"}`.
//!
//! Export and verify walk the whole chain, so they run on the blocking pool, each in one
//! read transaction (a consistent snapshot while the writer goes on).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{error, json_response};
use crate::app::App;
use crate::audit;
use crate::store::StoreError;

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        format!("the audit chain could not be read: {e}"),
    )
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// Runs a whole-chain read on the blocking pool.
async fn read_blocking<R: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&redb::ReadTransaction) -> Result<R, redb::Error> + Send + 'static,
) -> Result<R, StoreError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || app.intake.store.read(f))
        .await
        .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())))
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    resource: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    admin!(app, headers);
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return bad_request("limit must be between 1 and 1000");
    }
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match c.parse::<u64>() {
            Ok(c) => Some(c),
            Err(_) => return bad_request("cursor is not one this API gave out"),
        },
    };
    let ty = q.event_type.filter(|t| !t.is_empty());
    let resource = q.resource.filter(|r| !r.is_empty());
    let res = app
        .intake
        .store
        .read(|txn| audit::list(txn, ty.as_deref(), resource.as_deref(), limit, cursor));
    match res {
        Ok((events, next)) => {
            let events: Vec<_> = events.iter().map(audit::AuditRecord::to_json).collect();
            json_response(
                StatusCode::OK,
                &json!({"events": events, "next_cursor": next}),
            )
        }
        Err(e) => unavailable(e),
    }
}

pub async fn export(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    admin!(app, headers);
    let res = read_blocking(&app, |txn| {
        let mut out = Vec::new();
        audit::export(txn, &mut out)?;
        Ok(out)
    })
    .await;
    match res {
        Ok(body) => {
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            r
        }
        Err(e) => unavailable(e),
    }
}

pub async fn verify(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    admin!(app, headers);
    match read_blocking(&app, audit::verify).await {
        Ok(v) => json_response(StatusCode::OK, &v.to_json()),
        Err(e) => unavailable(e),
    }
}
