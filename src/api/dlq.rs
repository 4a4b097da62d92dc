//! DLQ routes (SPEC §3, §7): list a destination's entries with paging (by reason and
//! event id too), count them per destination and reason, replay or discard a window of
//! them (a dry run first shows what would move). Admin only.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::Q;
use super::admin::{known, not_found, page_limit};
use super::auth::Admin;
use super::error::{ApiError, ApiResult, ok};
use crate::delivery::dlq::{self, Selector};
use crate::state::App;
use crate::store::codec::ErrorClass;

pub(crate) fn parse_time(field: &str, v: Option<&String>) -> ApiResult<Option<i64>> {
    match v {
        None => Ok(None),
        Some(s) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "{field} must be an RFC 3339 time such as 2026-04-23T14:00:00Z"
                ))
            }),
    }
}

#[derive(Deserialize)]
pub struct DlqQuery {
    destination: Option<String>,
    from: Option<String>,
    to: Option<String>,
    reason: Option<String>,
    event_id: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

impl DlqQuery {
    /// One page of a destination's entries, of one reason or all (the console).
    pub fn page(
        destination: &str,
        reason: Option<String>,
        cursor: Option<String>,
        limit: usize,
    ) -> Self {
        DlqQuery {
            destination: Some(destination.to_string()),
            from: None,
            to: None,
            reason,
            event_id: None,
            limit: Some(limit),
            cursor,
        }
    }
}

/// A `reason` filter: one of the DLQ's error classes.
fn parse_reason(v: Option<&str>) -> ApiResult<Option<ErrorClass>> {
    match v {
        None => Ok(None),
        Some(s) => ErrorClass::from_name(s).map(Some).ok_or_else(|| {
            let names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.name()).collect();
            ApiError::bad_request(format!(
                "reason must be one of {}; got {:?}",
                names.join(", "),
                s.chars().take(64).collect::<String>()
            ))
        }),
    }
}

pub async fn list(State(app): State<Arc<App>>, _: Admin, Q(q): Q<DlqQuery>) -> ApiResult {
    let Some(dest) = q.destination else {
        return Err(ApiError::bad_request(
            "destination is required: GET /v1/dlq?destination=ID",
        ));
    };
    known(&app, &dest)?;
    let sel = Selector {
        from_ms: parse_time("from", q.from.as_ref())?,
        to_ms: parse_time("to", q.to.as_ref())?,
        reason: parse_reason(q.reason.as_deref())?,
        event_id: q.event_id,
    };
    let limit = page_limit(q.limit)?;
    let after = match q.cursor.as_deref().map(str::parse::<u64>) {
        None => 0,
        Some(Ok(c)) => c,
        Some(Err(_)) => {
            return Err(ApiError::bad_request("cursor is not one this API gave out"));
        }
    };
    let (entries, next) = dlq::list(&app.intake.store, &dest, &sel, after, limit)?;
    ok(&json!({"entries": entries, "next_cursor": next}))
}

#[derive(Deserialize)]
pub struct SummaryQuery {
    since: Option<String>,
}

/// `GET /v1/dlq/summary[?since=T]`: entries per destination and reason dead-lettered
/// at or after `since` (every entry without it). The whole DLQ is read (each record's
/// class and time only), off the HTTP threads.
pub async fn summary(State(app): State<Arc<App>>, _: Admin, Q(q): Q<SummaryQuery>) -> ApiResult {
    let since = parse_time("since", q.since.as_ref())?;
    let store = app.intake.store.clone();
    let counts = tokio::task::spawn_blocking(move || dlq::summary(&store, since))
        .await
        .map_err(|e| ApiError::unavailable(format!("the DLQ could not be read: {e}")))??;
    let total: u64 = counts.iter().map(|c| c.count).sum();
    let rows: Vec<_> = counts
        .iter()
        .map(|c| json!({"destination_id": c.destination_id, "reason": c.reason.name(), "count": c.count}))
        .collect();
    ok(&json!({
        "since": since.map(crate::clock::rfc3339_ms),
        "total": total,
        "counts": rows,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqAction {
    destination: String,
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

fn action_body(bytes: &[u8]) -> ApiResult<(DlqAction, Selector)> {
    let a: DlqAction = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"destination\", \"from\"?, \"to\"?, \"dry_run\"?}}: {e}"
        ))
    })?;
    let sel = Selector {
        from_ms: parse_time("from", a.from.as_ref())?,
        to_ms: parse_time("to", a.to.as_ref())?,
        ..Selector::default()
    };
    Ok((a, sel))
}

pub async fn replay(
    State(app): State<Arc<App>>,
    admin: Admin,
    body: axum::body::Bytes,
) -> ApiResult {
    let (a, sel) = action_body(&body)?;
    let rt = app.runtime();
    let Some(dest) = rt
        .config
        .destinations
        .iter()
        .find(|d| d.id == a.destination)
    else {
        return Err(not_found(&a.destination));
    };
    let now = app.intake.clock.now_ms();
    let max_age = rt.config.storage.max_backlog_age.as_millis() as i64;
    let c = dlq::replay(
        &app.intake.store,
        dest,
        &sel,
        now,
        max_age,
        a.dry_run,
        admin.actor,
    )
    .await?;
    if a.dry_run {
        return ok(&json!({"would_replay": c.replayed, "expired": c.expired}));
    }
    app.engine.notify_ingest(&dest.workspace);
    ok(&json!({"replayed": c.replayed, "expired_skipped": c.expired}))
}

pub async fn discard(
    State(app): State<Arc<App>>,
    admin: Admin,
    body: axum::body::Bytes,
) -> ApiResult {
    let (a, sel) = action_body(&body)?;
    known(&app, &a.destination)?;
    if a.dry_run {
        // Count what would go, change nothing.
        let mut n = 0usize;
        let mut after = 0u64;
        loop {
            let (entries, next) = dlq::list(&app.intake.store, &a.destination, &sel, after, 1000)?;
            n += entries.len();
            match next.and_then(|c| c.parse::<u64>().ok()) {
                Some(c) => after = c,
                None => break,
            }
        }
        return ok(&json!({"would_discard": n}));
    }
    let now = app.intake.clock.now_ms();
    let n = dlq::discard(&app.intake.store, &a.destination, &sel, now, admin.actor).await?;
    ok(&json!({"discarded": n}))
}
