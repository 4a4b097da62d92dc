//! Admin routes (SPEC §7): every one needs `Authorization: Bearer <admin token>`;
//! with no admin token configured they answer `403 admin_disabled`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{error, json_response};
use crate::app::App;
use crate::audit::{AuditType, Details, NewAuditEvent};
use crate::clock::rfc3339_ms;
use crate::config::Destination;
use crate::delivery::dlq::{self, Selector};

/// Checks the admin token; `Err` is the response to send.
pub fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let rt = app.runtime();
    let Some(token) = &rt.config.server.admin_token else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is disabled: set server.admin_token_env (or admin_token / admin_token_file) and reload",
        )));
    };
    let given = super::ingest::bearer(headers).unwrap_or_default();
    use sha2::{Digest, Sha256};
    let a: [u8; 32] = Sha256::digest(given).into();
    let b: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
    if bool::from(a.ct_eq(&b)) && !given.is_empty() {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token: send Authorization: Bearer <admin token>",
        )))
    }
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        format!("the store could not be read: {e}"),
    )
}

#[derive(Deserialize)]
pub struct WorkspaceFilter {
    workspace: Option<String>,
}

fn dest_json(app: &App, d: &Destination) -> Result<Value, crate::store::StoreError> {
    let snap = app.engine.snapshot(&d.id);
    let now = app.intake.clock.now_ms();
    let view = app.intake.store.view()?;
    let max_age = app.runtime().config.storage.max_backlog_age.as_millis() as i64;
    let b = app.engine.backlog(&view, d, now, max_age)?;
    let (depth, oldest, dlq_depth) = (b.depth, b.oldest_accepted_ms, b.dlq_depth);
    let state = view.dest_state(&d.id)?.unwrap_or_default();
    drop(view);
    // The worker's live state when it runs, else what the store holds.
    let state = snap.map(|s| s.state).unwrap_or(state);
    Ok(json!({
        "destination_id": d.id,
        "merchant_id": d.workspace,
        "platform": d.platform.name(),
        "state": state.mode.name(),
        "error_rate": state.error_rate,
        "last_checked": state.last_checked_ms.map(rfc3339_ms),
        "paused_at": state.paused_at_ms.map(rfc3339_ms),
        "paused_reason": state.paused_reason,
        "auto_clear_at": state.auto_clear_at_ms.map(rfc3339_ms),
        "queue_depth": depth,
        "consumer_lag_seconds": oldest.map(|o| ((now - o).max(0) as f64) / 1000.0).unwrap_or(0.0),
        "dlq_depth": dlq_depth,
        "threshold": d.policy.auto_pause.threshold,
        "window_seconds": d.policy.auto_pause.window.as_secs(),
    }))
}

/// Destinations no longer configured that still hold a position, retries or DLQ.
fn removed(app: &App, configured: &[Destination]) -> Result<Vec<Value>, crate::store::StoreError> {
    let view = app.intake.store.view()?;
    let mut out = Vec::new();
    for id in view.known_destinations()? {
        if configured.iter().any(|d| d.id == id) {
            continue;
        }
        let dlq_depth = view.dlq_count(&id)?;
        // What it was, as its last health record says.
        let was = view.dest_state(&id)?.filter(|s| !s.workspace.is_empty());
        out.push(json!({
            "destination_id": id,
            "merchant_id": was.as_ref().map(|s| s.workspace.clone()),
            "platform": was.as_ref().map(|s| s.platform.clone()),
            "state": "removed", "error_rate": null, "last_checked": null,
            "paused_at": null, "paused_reason": null, "auto_clear_at": null,
            "queue_depth": null, "consumer_lag_seconds": null, "dlq_depth": dlq_depth,
        }));
    }
    Ok(out)
}

pub async fn list_destinations(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<WorkspaceFilter>,
) -> Response {
    admin!(app, headers);
    let rt = app.runtime();
    let mut out = Vec::new();
    for d in &rt.config.destinations {
        if q.workspace.as_ref().is_some_and(|w| *w != d.workspace) {
            continue;
        }
        match dest_json(&app, d) {
            Ok(v) => out.push(v),
            Err(e) => return unavailable(e),
        }
    }
    if q.workspace.is_none() {
        match removed(&app, &rt.config.destinations) {
            Ok(r) => out.extend(r),
            Err(e) => return unavailable(e),
        }
    }
    json_response(StatusCode::OK, &json!({ "destinations": out }))
}

pub async fn get_destination(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin!(app, headers);
    let rt = app.runtime();
    match rt.config.destinations.iter().find(|d| d.id == id) {
        Some(d) => match dest_json(&app, d) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => unavailable(e),
        },
        None => match removed(&app, &rt.config.destinations) {
            Ok(r) => match r.into_iter().find(|v| v["destination_id"] == id.as_str()) {
                Some(v) => json_response(StatusCode::OK, &v),
                None => not_found(&id),
            },
            Err(e) => unavailable(e),
        },
    }
}

/// `POST /v1/destinations/{id}/purge`: drops a removed destination's backlog and DLQ
/// (`409 not_removed` while it is configured); audited as `destination_purge`.
pub async fn purge(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin!(app, headers);
    let rt = app.runtime();
    if rt.config.destinations.iter().any(|d| d.id == id) || app.engine.is_running(&id) {
        return error(
            StatusCode::CONFLICT,
            "not_removed",
            format!(
                "destination {id:?} is configured: only a destination removed from the config can be purged"
            ),
        );
    }
    if !app
        .engine
        .retired_stopped(&id, std::time::Duration::from_secs(10))
        .await
    {
        return error(
            StatusCode::CONFLICT,
            "not_removed",
            format!("destination {id:?} is still finishing its last requests; try again shortly"),
        );
    }
    let found = match removed(&app, &rt.config.destinations) {
        Ok(r) => r.into_iter().find(|v| v["destination_id"] == id.as_str()),
        Err(e) => return unavailable(e),
    };
    let Some(before) = found else {
        return not_found(&id);
    };
    let backlog = app
        .intake
        .store
        .view()
        .and_then(|v| Ok((v.retry_count(&id)?, v.cursor(&id)?)))
        .unwrap_or((0, None));
    let details = Details::new()
        .int("dlq_entries", before["dlq_depth"].as_i64().unwrap_or(0))
        .int("retries", backlog.0 as i64)
        .opt_int("cursor", backlog.1.map(|c| c as i64));
    let audit = NewAuditEvent::record(
        AuditType::DestinationPurge,
        &id,
        actor_of(&headers),
        details,
        app.intake.clock.now_ms(),
    );
    match app
        .intake
        .store
        .delivery(vec![
            crate::store::DeliveryOp::Purge { dest: id.clone() },
            crate::store::DeliveryOp::Audit(audit),
        ])
        .await
    {
        Ok(()) => {
            tracing::info!(destination = %id, "removed destination purged");
            json_response(
                StatusCode::OK,
                &json!({"destination_id": id, "purged": true, "dlq_entries": before["dlq_depth"], "retries": backlog.0}),
            )
        }
        Err(e) => unavailable(e),
    }
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no destination {id:?}: list them with GET /v1/destinations"),
    )
}

fn parse_time(field: &str, v: &Option<String>) -> Result<Option<i64>, Box<Response>> {
    match v {
        None => Ok(None),
        Some(s) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|_| {
                Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("{field} must be an RFC 3339 time such as 2026-04-23T14:00:00Z"),
                ))
            }),
    }
}

#[derive(Deserialize)]
pub struct DlqQuery {
    destination: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn dlq_list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<DlqQuery>,
) -> Response {
    admin!(app, headers);
    let Some(dest) = q.destination else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "destination is required: GET /v1/dlq?destination=ID",
        );
    };
    let sel = match (parse_time("from", &q.from), parse_time("to", &q.to)) {
        (Ok(f), Ok(t)) => Selector {
            from_ms: f,
            to_ms: t,
        },
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "limit must be between 1 and 1000",
        );
    }
    let after = match q.cursor.as_deref().map(str::parse::<u64>) {
        None => 0,
        Some(Ok(c)) => c,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "cursor is not one this API gave out",
            );
        }
    };
    match dlq::list(&app.intake.store, &dest, &sel, after, limit) {
        Ok((entries, next)) => json_response(
            StatusCode::OK,
            &json!({"entries": entries, "next_cursor": next}),
        ),
        Err(e) => unavailable(e),
    }
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

fn action_body(bytes: &[u8]) -> Result<(DlqAction, Selector), Box<Response>> {
    let a: DlqAction = serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the body must be {{\"destination\", \"from\"?, \"to\"?, \"dry_run\"?}}: {e}"),
        ))
    })?;
    let sel = Selector {
        from_ms: parse_time("from", &a.from)?,
        to_ms: parse_time("to", &a.to)?,
    };
    Ok((a, sel))
}

pub async fn dlq_replay(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    admin!(app, headers);
    let (a, sel) = match action_body(&body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let rt = app.runtime();
    let Some(dest) = rt
        .config
        .destinations
        .iter()
        .find(|d| d.id == a.destination)
    else {
        return not_found(&a.destination);
    };
    let now = app.intake.clock.now_ms();
    let max_age = rt.config.storage.max_backlog_age.as_millis() as i64;
    let actor = actor_of(&headers);
    match dlq::replay(
        &app.intake.store,
        dest,
        &sel,
        now,
        max_age,
        a.dry_run,
        actor,
    )
    .await
    {
        Ok(c) if a.dry_run => json_response(
            StatusCode::OK,
            &json!({"would_replay": c.replayed, "expired": c.expired}),
        ),
        Ok(c) => {
            app.engine.notify_ingest(&dest.workspace);
            json_response(
                StatusCode::OK,
                &json!({"replayed": c.replayed, "expired_skipped": c.expired}),
            )
        }
        Err(e) => unavailable(e),
    }
}

pub async fn dlq_discard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    admin!(app, headers);
    let (a, sel) = match action_body(&body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if a.dry_run {
        // Count what would go, change nothing.
        let mut n = 0usize;
        let mut after = 0u64;
        loop {
            match dlq::list(&app.intake.store, &a.destination, &sel, after, 1000) {
                Ok((entries, next)) => {
                    n += entries.len();
                    match next.and_then(|c| c.parse::<u64>().ok()) {
                        Some(c) => after = c,
                        None => break,
                    }
                }
                Err(e) => return unavailable(e),
            }
        }
        return json_response(StatusCode::OK, &json!({"would_discard": n}));
    }
    let now = app.intake.clock.now_ms();
    let actor = actor_of(&headers);
    match dlq::discard(&app.intake.store, &a.destination, &sel, now, actor).await {
        Ok(n) => json_response(StatusCode::OK, &json!({"discarded": n})),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: Option<serde_json::Value>,
}

/// The operator's reason (1–500 characters), or the 400 to answer.
fn reason_of(body: &[u8]) -> Result<String, Box<Response>> {
    let bad = |m: &str| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_reason",
            m.to_string(),
        ))
    };
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

fn actor_of(headers: &HeaderMap) -> crate::health::Actor {
    match headers.get("x-sluice-actor").and_then(|v| v.to_str().ok()) {
        Some(v) if v.eq_ignore_ascii_case("cli") => crate::health::Actor::Cli,
        _ => crate::health::Actor::Api,
    }
}

fn not_running(id: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        "not_running",
        format!(
            "destination {id} has no running delivery worker (its platform has no adapter yet, or sluice is still starting)"
        ),
    )
}

/// The common part of pause and resume: auth, the destination, the reason, the worker's
/// answer. `Err` is the response to send.
async fn destination_command(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    make: impl FnOnce(String, crate::health::Actor) -> crate::delivery::Command,
) -> Result<crate::delivery::CommandReply, Box<Response>> {
    authorize(app, headers)?;
    if !app.runtime().config.destinations.iter().any(|d| d.id == id) {
        return Err(Box::new(not_found(id)));
    }
    let note = reason_of(body)?;
    match app.engine.command(id, make(note, actor_of(headers))).await {
        Some(crate::delivery::CommandReply::Unavailable(m)) => Err(Box::new(unavailable(m))),
        Some(reply) => Ok(reply),
        None => Err(Box::new(not_running(id))),
    }
}

pub async fn pause_destination(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let make = |note, actor| crate::delivery::Command::Pause { note, actor };
    match destination_command(&app, &headers, &id, &body, make).await {
        Ok(crate::delivery::CommandReply::Paused { paused_at_ms }) => json_response(
            StatusCode::OK,
            &json!({"destination_id": id, "state": "paused", "paused_at": rfc3339_ms(paused_at_ms), "paused_by": "api", "paused_reason": "manual"}),
        ),
        Ok(crate::delivery::CommandReply::AlreadyPaused) => error(
            StatusCode::CONFLICT,
            "already_paused",
            format!(
                "destination {id} is already paused; resume it with POST /v1/destinations/{id}/resume"
            ),
        ),
        Ok(other) => unavailable(format!("unexpected answer {other:?}")),
        Err(r) => *r,
    }
}

pub async fn resume_destination(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let make = |note, actor| crate::delivery::Command::Resume { note, actor };
    match destination_command(&app, &headers, &id, &body, make).await {
        Ok(crate::delivery::CommandReply::Resumed {
            resumed_at_ms,
            previous_pause_reason,
            paused_at_ms,
        }) => json_response(
            StatusCode::OK,
            &json!({
                "destination_id": id, "state": "active", "resumed_at": rfc3339_ms(resumed_at_ms),
                "resumed_by": "api", "previous_pause_reason": previous_pause_reason,
                "paused_at": paused_at_ms.map(rfc3339_ms),
            }),
        ),
        Ok(crate::delivery::CommandReply::NotPaused) => error(
            StatusCode::CONFLICT,
            "not_paused",
            format!("destination {id} is active: there is nothing to resume"),
        ),
        Ok(other) => unavailable(format!("unexpected answer {other:?}")),
        Err(r) => *r,
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
) -> Result<(Vec<Value>, Option<String>), crate::store::StoreError> {
    let before = q
        .cursor
        .as_deref()
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    let (rows, next) = app
        .intake
        .store
        .view()?
        .auto_pause_rows(before, limit, |json| {
            q.workspace
                .as_ref()
                .is_none_or(|w| json["merchant_id"] == w.as_str())
                && q.platform
                    .as_ref()
                    .is_none_or(|p| json["platform"] == p.as_str())
                && q.destination
                    .as_ref()
                    .is_none_or(|d| json["destination_id"] == d.as_str())
        })?;
    Ok((rows, next.map(|n| n.to_string())))
}

pub async fn auto_pause_events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    admin!(app, headers);
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "limit must be between 1 and 1000",
        );
    }
    if q.cursor
        .as_deref()
        .is_some_and(|c| c.parse::<u64>().is_err())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "cursor is not one this API gave out",
        );
    }
    match auto_pause_rows(&app, &q, limit) {
        Ok((events, next)) => json_response(
            StatusCode::OK,
            &json!({"events": events, "next_cursor": next}),
        ),
        Err(e) => unavailable(e),
    }
}

pub async fn timeline(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin!(app, headers);
    let q = EventsQuery {
        workspace: None,
        platform: None,
        destination: Some(id),
        limit: None,
        cursor: None,
    };
    match auto_pause_rows(&app, &q, usize::MAX) {
        Ok((events, _)) => json_response(StatusCode::OK, &json!({"events": events})),
        Err(e) => unavailable(e),
    }
}

/// `POST /v1/admin/backup` `{"name"}`: a consistent copy of the store (one read
/// transaction) as a new file under `storage.backup_dir` → `{"path", "bytes"}`.
pub async fn backup(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    admin!(app, headers);
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
    }
    let b: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the body must be {{\"name\": \"<file name>\"}}: {e}"),
            );
        }
    };
    use crate::store::backup::{BackupError, backup as write_backup};
    if let Err(e) = crate::store::backup::check_name(&b.name) {
        return error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string());
    }
    let dir = app.runtime().config.storage.backup_dir.clone();
    let store = app.intake.store.clone();
    let name = b.name.clone();
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || write_backup(&store, &dir, &name))
        .await
        .unwrap_or_else(|e| Err(BackupError::Io(e.to_string())));
    match result {
        Ok((path, bytes)) => {
            tracing::info!(path = %path.display(), bytes, ms = started.elapsed().as_millis() as u64, "backup written");
            json_response(
                StatusCode::OK,
                &json!({"path": path.display().to_string(), "bytes": bytes}),
            )
        }
        Err(BackupError::InvalidName(m)) => error(StatusCode::BAD_REQUEST, "invalid_request", m),
        Err(e @ BackupError::Exists(_)) => error(StatusCode::CONFLICT, "exists", e.to_string()),
        Err(BackupError::Store(e)) => unavailable(e),
        Err(e @ BackupError::Io(_)) => {
            tracing::error!(error = %e, "backup failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "backup_failed",
                e.to_string(),
            )
        }
    }
}

/// `POST /v1/admin/reload`: re-reads the config file; an invalid one keeps the running
/// config and answers 422 with the key path and line.
pub async fn reload(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    admin!(app, headers);
    let actor = actor_of(&headers);
    match app.reload_audited(actor).await {
        Ok(sha) => json_response(StatusCode::OK, &json!({"ok": true, "config_sha256": sha})),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", e),
    }
}
