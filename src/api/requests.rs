//! The request log route (`GET /v1/destinations/{id}/requests`): a destination's last
//! requests, newest first, paged like the other lists ([`crate::delivery::request_log`]
//! says what a row holds). Admin only.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::json;

use super::Q;
use super::admin::{known, not_found, page_limit};
use super::auth::Admin;
use super::error::{ApiError, ApiResult, ok};
use crate::delivery::request_log;
use crate::state::App;

#[derive(Deserialize)]
pub struct RequestsQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

impl RequestsQuery {
    /// The newest `limit` requests (the console's destination page).
    pub fn latest(limit: usize) -> Self {
        RequestsQuery {
            limit: Some(limit),
            cursor: None,
        }
    }
}

/// `200 {"destination_id", "requests": [...], "next_cursor"}`; `404 not_found` for an
/// id that is neither configured nor holds anything in the store.
pub async fn list(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(id): Path<String>,
    Q(q): Q<RequestsQuery>,
) -> ApiResult {
    let limit = page_limit(q.limit)?;
    let before = match q.cursor.as_deref() {
        None => u64::MAX,
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("cursor is not one this API gave out"))?,
    };
    // A removed destination keeps its log until it is purged.
    if known(&app, &id).is_err() && !app.intake.store.view()?.has_requests(&id)? {
        return Err(not_found(&id));
    }
    let (rows, next) = request_log::page(&app.intake.store, &id, before, limit)?;
    ok(&json!({"destination_id": id, "requests": rows, "next_cursor": next}))
}
