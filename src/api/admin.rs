//! Destination routes (SPEC §7): list and get (one [`DestinationView`] each), pause,
//! resume, purge, the timeline and `auto_pause_events`; plus reload and backup. Every
//! one takes the [`Admin`] extractor: without the admin token it never runs.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Q;
use super::auth::Admin;
use super::error::{ApiError, ApiResult, ok};
use crate::audit::{AuditType, Details, NewAuditEvent};
use crate::clock::rfc3339_ms;
use crate::config::Destination;
use crate::delivery::{Command, CommandReply};
use crate::state::App;
use crate::store::DeliveryOp;

#[derive(Deserialize)]
pub struct WorkspaceFilter {
    workspace: Option<String>,
}

/// One destination as `GET /v1/destinations` and `GET /v1/destinations/{id}` show it.
/// A removed destination (no longer configured, still holding data) has `state`
/// `removed`, no live figures and no policy.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationView {
    pub destination_id: String,
    pub merchant_id: Option<String>,
    pub platform: Option<String>,
    pub state: &'static str,
    pub error_rate: Option<f64>,
    pub last_checked: Option<String>,
    /// When the current error-rate window started (the last resume), if ever.
    pub window_started_at: Option<String>,
    pub paused_at: Option<String>,
    pub paused_reason: Option<String>,
    pub auto_clear_at: Option<String>,
    pub queue_depth: Option<u64>,
    pub consumer_lag_seconds: Option<f64>,
    pub dlq_depth: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
}

impl DestinationView {
    /// A configured destination: the worker's live state when it runs, else the stored
    /// one; its backlog from the engine.
    pub fn configured(app: &App, d: &Destination) -> ApiResult<Self> {
        let now = app.intake.clock.now_ms();
        let view = app.intake.store.view()?;
        let max_age = app.runtime().config.storage.max_backlog_age.as_millis() as i64;
        let b = app.engine.backlog(&view, d, now, max_age)?;
        let stored = view.dest_state(&d.id)?.unwrap_or_default();
        drop(view);
        let state = app.engine.snapshot(&d.id).map_or(stored, |s| s.state);
        Ok(DestinationView {
            destination_id: d.id.clone(),
            merchant_id: Some(d.workspace.clone()),
            platform: Some(d.platform.name().into()),
            state: state.mode.name(),
            error_rate: state.error_rate,
            last_checked: state.last_checked_ms.map(rfc3339_ms),
            window_started_at: (state.window_start_ms > 0)
                .then(|| rfc3339_ms(state.window_start_ms)),
            paused_at: state.paused_at_ms.map(rfc3339_ms),
            paused_reason: state.paused_reason,
            auto_clear_at: state.auto_clear_at_ms.map(rfc3339_ms),
            queue_depth: Some(b.depth),
            consumer_lag_seconds: Some(
                b.oldest_accepted_ms
                    .map_or(0.0, |o| ((now - o).max(0) as f64) / 1000.0),
            ),
            dlq_depth: b.dlq_depth,
            threshold: Some(d.policy.auto_pause.threshold),
            window_seconds: Some(d.policy.auto_pause.window.as_secs()),
        })
    }

    /// Destinations no longer configured that still hold a position, retries or DLQ.
    pub fn removed(app: &App, configured: &[Destination]) -> ApiResult<Vec<Self>> {
        let view = app.intake.store.view()?;
        let mut out = Vec::new();
        for id in view.known_destinations()? {
            if configured.iter().any(|d| d.id == id) {
                continue;
            }
            // What it was, as its last health record says.
            let was = view.dest_state(&id)?.filter(|s| !s.workspace.is_empty());
            out.push(DestinationView {
                dlq_depth: view.dlq_count(&id)?,
                destination_id: id,
                merchant_id: was.as_ref().map(|s| s.workspace.clone()),
                platform: was.as_ref().map(|s| s.platform.clone()),
                state: "removed",
                error_rate: None,
                last_checked: None,
                window_started_at: None,
                paused_at: None,
                paused_reason: None,
                auto_clear_at: None,
                queue_depth: None,
                consumer_lag_seconds: None,
                threshold: None,
                window_seconds: None,
            });
        }
        Ok(out)
    }

    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

pub async fn list_destinations(
    State(app): State<Arc<App>>,
    _: Admin,
    Q(q): Q<WorkspaceFilter>,
) -> ApiResult {
    let rt = app.runtime();
    if let Some(w) = &q.workspace
        && !rt.config.workspaces.iter().any(|ws| ws.id == *w)
    {
        return Err(ApiError::not_found(format!(
            "no workspace {w:?} is configured"
        )));
    }
    let mut out = Vec::new();
    for d in &rt.config.destinations {
        if q.workspace.as_ref().is_none_or(|w| *w == d.workspace) {
            out.push(DestinationView::configured(&app, d)?.json());
        }
    }
    if q.workspace.is_none() {
        out.extend(
            DestinationView::removed(&app, &rt.config.destinations)?
                .iter()
                .map(DestinationView::json),
        );
    }
    ok(&json!({ "destinations": out }))
}

pub async fn get_destination(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult {
    let rt = app.runtime();
    let v = match rt.config.destinations.iter().find(|d| d.id == id) {
        Some(d) => DestinationView::configured(&app, d)?,
        None => DestinationView::removed(&app, &rt.config.destinations)?
            .into_iter()
            .find(|v| v.destination_id == id)
            .ok_or_else(|| not_found(&id))?,
    };
    ok(&v.json())
}

/// `POST /v1/destinations/{id}/purge`: drops a removed destination's backlog and DLQ
/// (`409 not_removed` while it is configured); audited as `destination_purge`.
pub async fn purge(State(app): State<Arc<App>>, admin: Admin, Path(id): Path<String>) -> ApiResult {
    let rt = app.runtime();
    if rt.config.destinations.iter().any(|d| d.id == id) || app.engine.is_running(&id) {
        return Err(ApiError::conflict(
            "not_removed",
            format!(
                "destination {id:?} is configured: only a destination removed from the config can be purged"
            ),
        ));
    }
    if !app
        .engine
        .retired_stopped(&id, std::time::Duration::from_secs(10))
        .await
    {
        return Err(ApiError::conflict(
            "not_removed",
            format!("destination {id:?} is still finishing its last requests; try again shortly"),
        ));
    }
    let before = DestinationView::removed(&app, &rt.config.destinations)?
        .into_iter()
        .find(|v| v.destination_id == id)
        .ok_or_else(|| not_found(&id))?;
    let (retries, cursor) = app
        .intake
        .store
        .view()
        .and_then(|v| Ok((v.retry_count(&id)?, v.cursor(&id)?)))
        .unwrap_or((0, None));
    let details = Details::new()
        .int("dlq_entries", before.dlq_depth as i64)
        .int("retries", retries as i64)
        .opt_int("cursor", cursor.map(|c| c as i64));
    let audit = NewAuditEvent::record(
        AuditType::DestinationPurge,
        &id,
        admin.actor,
        details,
        app.intake.clock.now_ms(),
    );
    app.intake
        .store
        .delivery(vec![
            DeliveryOp::Purge { dest: id.clone() },
            DeliveryOp::Audit(audit),
        ])
        .await?;
    tracing::info!(destination = %id, "removed destination purged");
    ok(
        &json!({"destination_id": id, "purged": true, "dlq_entries": before.dlq_depth, "retries": retries}),
    )
}

/// `404 not_found` unless `id` is a configured destination or one the store still
/// holds (removed from the config, not yet purged).
pub(super) fn known(app: &App, id: &str) -> ApiResult<()> {
    if app.runtime().config.destinations.iter().any(|d| d.id == id)
        || app.intake.store.view()?.known_destinations()?.contains(id)
    {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no destination {id:?}: list them with GET /v1/destinations"
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: Option<Value>,
}

/// The operator's reason (1–500 characters), or the 400 to answer.
fn reason_of(body: &[u8]) -> ApiResult<String> {
    let bad = |m: &str| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_reason", m);
    let b: ReasonBody = serde_json::from_slice(body)
        .map_err(|_| bad("the body must be {\"reason\": \"…\"} (1 to 500 characters)"))?;
    match b.reason {
        Some(Value::String(s))
            if (1..=500).contains(&s.chars().count()) && !s.trim().is_empty() =>
        {
            Ok(s)
        }
        _ => Err(bad(
            "reason must be a non-blank string of 1 to 500 characters",
        )),
    }
}

/// The common part of pause and resume: the destination, the reason, the worker's
/// answer.
async fn destination_command(
    app: &App,
    admin: Admin,
    id: &str,
    body: &[u8],
    make: impl FnOnce(String, crate::audit::Actor) -> Command,
) -> ApiResult<CommandReply> {
    if !app.runtime().config.destinations.iter().any(|d| d.id == id) {
        return Err(not_found(id));
    }
    let note = reason_of(body)?;
    match app.engine.command(id, make(note, admin.actor)).await {
        Some(CommandReply::Unavailable(m)) => Err(ApiError::unavailable(m)),
        Some(reply) => Ok(reply),
        None => Err(ApiError::conflict(
            "not_running",
            format!(
                "destination {id} has no running delivery worker (its platform has no adapter yet, or sluice is still starting)"
            ),
        )),
    }
}

pub async fn pause_destination(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let make = |note, actor| Command::Pause { note, actor };
    match destination_command(&app, admin, &id, &body, make).await? {
        CommandReply::Paused { paused_at_ms } => ok(
            &json!({"destination_id": id, "state": "paused", "paused_at": rfc3339_ms(paused_at_ms), "paused_by": "api", "paused_reason": "manual"}),
        ),
        CommandReply::AlreadyPaused => Err(ApiError::conflict(
            "already_paused",
            format!(
                "destination {id} is already paused; resume it with POST /v1/destinations/{id}/resume"
            ),
        )),
        other => Err(ApiError::unavailable(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

pub async fn resume_destination(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let make = |note, actor| Command::Resume { note, actor };
    match destination_command(&app, admin, &id, &body, make).await? {
        CommandReply::Resumed {
            resumed_at_ms,
            previous_pause_reason,
            paused_at_ms,
        } => ok(&json!({
            "destination_id": id, "state": "active", "resumed_at": rfc3339_ms(resumed_at_ms),
            "resumed_by": "api", "previous_pause_reason": previous_pause_reason,
            "paused_at": paused_at_ms.map(rfc3339_ms),
        })),
        CommandReply::NotPaused => Err(ApiError::conflict(
            "not_paused",
            format!("destination {id} is active: there is nothing to resume"),
        )),
        other => Err(ApiError::unavailable(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

#[derive(Deserialize)]
pub struct EventsQuery {
    workspace: Option<String>,
    platform: Option<String>,
    destination: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `auto_pause_events` rows, newest first, filtered; and the next page's cursor.
fn auto_pause_rows(
    app: &App,
    q: &EventsQuery,
    limit: usize,
) -> ApiResult<(Vec<Value>, Option<String>)> {
    let before = match q.cursor.as_deref() {
        None => u64::MAX,
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("cursor is not one this API gave out"))?,
    };
    let (rows, next) = app
        .intake
        .store
        .view()?
        .auto_pause_rows(before, limit, |row| {
            let is = |field: &str, want: &Option<String>| {
                want.as_ref().is_none_or(|w| row[field] == w.as_str())
            };
            is("merchant_id", &q.workspace)
                && is("platform", &q.platform)
                && is("destination_id", &q.destination)
        })?;
    Ok((rows, next.map(|n| n.to_string())))
}

/// `limit` of a paged route: 1–1000, default 100.
pub(super) fn page_limit(limit: Option<usize>) -> ApiResult<usize> {
    let limit = limit.unwrap_or(100);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request("limit must be between 1 and 1000"))
    }
}

pub async fn auto_pause_events(
    State(app): State<Arc<App>>,
    _: Admin,
    Q(q): Q<EventsQuery>,
) -> ApiResult {
    let limit = page_limit(q.limit)?;
    let (events, next) = auto_pause_rows(&app, &q, limit)?;
    ok(&json!({"events": events, "next_cursor": next}))
}

pub async fn timeline(State(app): State<Arc<App>>, _: Admin, Path(id): Path<String>) -> ApiResult {
    let q = EventsQuery {
        workspace: None,
        platform: None,
        destination: Some(id),
        limit: None,
        cursor: None,
    };
    let (events, _) = auto_pause_rows(&app, &q, usize::MAX)?;
    ok(&json!({"events": events}))
}

/// `POST /v1/admin/backup` `{"name"}`: a consistent copy of the store (one read
/// transaction) as a new file under `storage.backup_dir` → `{"path", "bytes"}`.
pub async fn backup(State(app): State<Arc<App>>, _: Admin, body: axum::body::Bytes) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
    }
    let b: Body = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"name\": \"<file name>\"}}: {e}"
        ))
    })?;
    use crate::store::backup::{BackupError, backup as write_backup, check_name};
    check_name(&b.name)?;
    let dir = app.runtime().config.storage.backup_dir.clone();
    let store = app.intake.store.clone();
    let started = std::time::Instant::now();
    let (path, bytes) = tokio::task::spawn_blocking(move || write_backup(&store, &dir, &b.name))
        .await
        .unwrap_or_else(|e| Err(BackupError::Io(e.to_string())))?;
    tracing::info!(path = %path.display(), bytes, ms = started.elapsed().as_millis() as u64, "backup written");
    ok(&json!({"path": path.display().to_string(), "bytes": bytes}))
}

/// `POST /v1/admin/reload`: re-reads the config file; an invalid one keeps the running
/// config and answers 422 with the key path and line.
pub async fn reload(State(app): State<Arc<App>>, admin: Admin) -> ApiResult {
    let sha = app.reload_audited(admin.actor).await?;
    ok(&json!({"ok": true, "config_sha256": sha}))
}
