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

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::Q;
use super::admin::page_limit;
use super::auth::Admin;
use super::error::{ApiError, ApiResult, ok};
use crate::audit;
use crate::state::App;
use crate::store::StoreError;

fn unreadable(e: StoreError) -> ApiError {
    ApiError::unavailable(format!("the audit chain could not be read: {e}"))
}

/// Runs a whole-chain read on the blocking pool.
async fn read_blocking<R: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&redb::ReadTransaction) -> Result<R, redb::Error> + Send + 'static,
) -> ApiResult<R> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || app.intake.store.read(f))
        .await
        .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())))
        .map_err(unreadable)
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    resource: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

impl ListQuery {
    /// Every type and resource, `limit` a page (the console's audit page).
    pub fn page(limit: usize, cursor: Option<String>) -> Self {
        ListQuery {
            event_type: None,
            resource: None,
            limit: Some(limit),
            cursor,
        }
    }

    /// The events of one resource (the console's timeline takes their actors).
    pub fn resource(resource: &str, limit: usize) -> Self {
        ListQuery {
            event_type: None,
            resource: Some(resource.to_string()),
            limit: Some(limit),
            cursor: None,
        }
    }
}

pub async fn list(State(app): State<Arc<App>>, _: Admin, Q(q): Q<ListQuery>) -> ApiResult {
    let limit = page_limit(q.limit)?;
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| ApiError::bad_request("cursor is not one this API gave out"))?,
        ),
    };
    let ty = q.event_type.filter(|t| !t.is_empty());
    let resource = q.resource.filter(|r| !r.is_empty());
    let (events, next) = app
        .intake
        .store
        .read(|txn| audit::list(txn, ty.as_deref(), resource.as_deref(), limit, cursor))
        .map_err(unreadable)?;
    let events: Vec<_> = events.iter().map(audit::AuditRecord::to_json).collect();
    ok(&json!({"events": events, "next_cursor": next}))
}

pub async fn export(State(app): State<Arc<App>>, _: Admin) -> ApiResult {
    let body = read_blocking(&app, |txn| {
        let mut out = Vec::new();
        audit::export(txn, &mut out)?;
        Ok(out)
    })
    .await?;
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(r)
}

pub async fn verify(State(app): State<Arc<App>>, _: Admin) -> ApiResult {
    let v = read_blocking(&app, audit::verify).await?;
    ok(&v.to_json())
}
