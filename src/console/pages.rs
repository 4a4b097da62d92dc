//! The console's pages, rendered with [`maud`] (every value escaped). What a page
//! shows comes from the admin API's route functions (as JSON) or from the same reads
//! they make; nothing secret (tokens, credentials, event bodies) is ever put in one.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::chart;
use super::{CONSOLE, ReloadNote, Session, json_of};
use crate::api::admin::DestinationView;
use crate::api::error::ApiError;
use crate::clock::rfc3339_ms;
use crate::config::Config;
use crate::state::App;
use crate::store::series::Sample;

const DAY_MS: i64 = 24 * 3_600_000;

fn nav(s: &Session) -> Markup {
    html! {
        header {
            nav {
                a href="/console/" { "Overview" }
                a href="/console/events" { "Event lookup" }
                a href="/console/audit" { "Audit" }
                a href="/console/config" { "Config" }
                form.inline method="post" action="/console/signout" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button type="submit" { "Sign out" }
                }
            }
        }
    }
}

fn layout(title: &str, s: Option<&Session>, notice: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sluice console" }
                link rel="stylesheet" href="/console/app.css";
                script src="/console/app.js" defer {}
            }
            body {
                @if let Some(s) = s { (nav(s)) }
                main {
                    h1 { (title) }
                    @if let Some(n) = notice {
                        p.notice role="status" { (n) }
                    }
                    (body)
                }
            }
        }
    }
}

pub fn sign_in(enabled: bool, error: Option<&str>) -> Markup {
    let body = if enabled {
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form #signin method="post" action="/console/signin" {
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
        }
    } else {
        html! {
            p.error #signin-disabled {
                "Sign-in is disabled: no admin token is configured. Set server.admin_token_env "
                "(or admin_token / admin_token_file) and reload."
            }
        }
    };
    layout("Sign in", None, None, body)
}

pub fn error(s: &Session, e: &ApiError) -> Markup {
    layout(
        "Error",
        Some(s),
        None,
        html! { p.error { (e.code()) ": " (e.message()) } },
    )
}

// ---- overview ----

pub struct Row {
    pub view: DestinationView,
    pub samples: Vec<Sample>,
}

pub struct Overview {
    pub now_ms: i64,
    pub rows: Vec<Row>,
}

/// Every destination (configured, then removed) with its last 24 h of samples.
pub async fn overview_data(app: &Arc<App>) -> Result<Overview, ApiError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let rt = app.runtime();
        let now_ms = app.intake.clock.now_ms();
        let mut views = Vec::with_capacity(rt.config.destinations.len());
        for d in &rt.config.destinations {
            views.push(DestinationView::configured(&app, d)?);
        }
        views.extend(DestinationView::removed(&app, &rt.config.destinations)?);
        let from = now_ms - DAY_MS;
        let rows = app.intake.store.read(|txn| {
            let mut rows = Vec::with_capacity(views.len());
            for view in views {
                let samples = crate::store::series::read_sparse(
                    txn,
                    &view.destination_id,
                    from,
                    now_ms,
                    120,
                )?;
                rows.push(Row { view, samples });
            }
            Ok(rows)
        })?;
        Ok(Overview { now_ms, rows })
    })
    .await
    .map_err(|e| ApiError::unavailable(format!("the overview could not be read: {e}")))?
}

fn parse_ms(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// "3h 4m 5s".
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |r| format!("{:.1}%", r * 100.0))
}

fn opt(v: Option<&str>) -> &str {
    v.unwrap_or("–")
}

/// Where a chart's time axis starts: 24 h back, or the first sample when the series
/// is younger (so a new daemon's first minutes are not squeezed into one pixel).
fn chart_from(samples: &[Sample], now_ms: i64) -> i64 {
    let day = now_ms - DAY_MS;
    samples
        .first()
        .map_or(day, |s| s.at_ms.max(day))
        .min(now_ms - crate::store::series::INTERVAL_MS)
}

fn points(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Vec<(i64, f64)> {
    samples
        .iter()
        .filter_map(|s| f(s).map(|v| (s.at_ms, v)))
        .collect()
}

/// The suggestion the CLI prints for a paused or probing destination.
fn suggestion(v: &DestinationView) -> Option<String> {
    matches!(v.state, "paused" | "probing").then(|| crate::cli::suggestion(&v.json()))
}

fn state_cell(v: &DestinationView, now_ms: i64) -> Markup {
    html! {
        span class=(format!("state state-{}", v.state)) data-state=(v.state) { (v.state) }
        @if let Some(r) = &v.paused_reason {
            " " span.reason { (r) }
        }
        @if let Some(at) = &v.paused_at {
            br; small { "since " (at) }
        }
        @if let Some(ac) = v.auto_clear_at.as_deref() {
            br; small.autoclear {
                "auto-clear " (ac)
                @if let Some(t) = parse_ms(ac) { " (in " (span(t - now_ms)) ")" }
            }
        }
    }
}

/// The overview's body (also what the page's script swaps in every few seconds).
pub fn overview_body(d: &Overview) -> Markup {
    let mut by_merchant: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in &d.rows {
        let m = r
            .view
            .merchant_id
            .clone()
            .unwrap_or_else(|| "(unknown)".into());
        match by_merchant.iter_mut().find(|(k, _)| *k == m) {
            Some((_, v)) => v.push(r),
            None => by_merchant.push((m, vec![r])),
        }
    }
    html! {
        p.updated { "As of " time datetime=(rfc3339_ms(d.now_ms)) { (rfc3339_ms(d.now_ms)) } }
        @if d.rows.is_empty() { p { "No destinations are configured." } }
        @for (merchant, rows) in &by_merchant {
            section.merchant {
                h2 { "Merchant " (merchant) }
                table.dests {
                    thead { tr {
                        th { "Destination" } th { "State" } th { "Error rate / threshold" }
                        th { "Last evaluation" } th { "Queue" } th { "Lag" } th { "DLQ" }
                        th { "Error rate 24 h" } th { "Queue 24 h" } th { "Delivered 24 h" }
                    } }
                    tbody {
                        @for r in rows {
                            @let v = &r.view;
                            @let from = chart_from(&r.samples, d.now_ms);
                            tr id=(format!("dest-{}", v.destination_id)) data-destination=(v.destination_id) {
                                td { a href=(super::dest_url(&v.destination_id)) { (v.destination_id) }
                                     br; small { (opt(v.platform.as_deref())) } }
                                td { (state_cell(v, d.now_ms)) }
                                td { (pct(v.error_rate)) " / " (pct(v.threshold)) }
                                td { (opt(v.last_checked.as_deref())) }
                                td.num { (v.queue_depth.map_or_else(|| "–".into(), |q| q.to_string())) }
                                td.num { (v.consumer_lag_seconds.map_or_else(|| "–".into(), |l| format!("{l:.0}s"))) }
                                td.num { (v.dlq_depth) }
                                td { (chart::spark("error rate", &points(&r.samples, |s| s.error_rate), from, d.now_ms, Some(1.0))) }
                                td { (chart::spark("queue depth", &points(&r.samples, |s| Some(s.queue_depth as f64)), from, d.now_ms, None)) }
                                td { (chart::spark("delivered", &points(&r.samples, |s| Some(s.delivered as f64)), from, d.now_ms, None)) }
                            }
                            @if let Some(sug) = suggestion(v) {
                                tr.suggestion { td colspan="10" { code { (sug) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn overview(s: &Session, notice: Option<&str>, d: &Overview) -> Markup {
    layout(
        "Overview",
        Some(s),
        notice,
        html! { div #overview data-refresh="/console/overview.json" { (overview_body(d)) } },
    )
}

// ---- destination ----

pub struct DestinationPage {
    pub now_ms: i64,
    pub view: DestinationView,
    pub samples: Vec<Sample>,
    /// Timeline rows, newest first, each with the actor of its audit event.
    pub timeline: Vec<(Value, String)>,
    pub requests: Result<Value, ApiError>,
    pub dlq_counts: Vec<(&'static str, u64)>,
    pub dlq: Result<Value, ApiError>,
    pub reason: Option<String>,
}

pub async fn destination_data(
    app: &Arc<App>,
    id: &str,
    dlq_cursor: Option<String>,
    reason: Option<String>,
) -> Result<DestinationPage, ApiError> {
    let rt = app.runtime();
    let view = match rt.config.destinations.iter().find(|d| d.id == id) {
        Some(d) => DestinationView::configured(app, d)?,
        None => DestinationView::removed(app, &rt.config.destinations)?
            .into_iter()
            .find(|v| v.destination_id == id)
            .ok_or_else(|| crate::api::series::destination_not_found(id))?,
    };
    let now_ms = app.intake.clock.now_ms();
    let samples = crate::api::series::samples(app, id, 24)?;
    let tl = json_of(
        crate::api::admin::timeline(State(app.clone()), CONSOLE, Path(id.to_string())).await,
    )
    .await?;
    // Each row's actor is its audit event's (same resource, same time).
    let audit = json_of(
        crate::api::audit::list(
            State(app.clone()),
            CONSOLE,
            crate::api::Q(crate::api::audit::ListQuery::resource(id, 1000)),
        )
        .await,
    )
    .await
    .unwrap_or(Value::Null);
    let mut actors: HashMap<String, String> = HashMap::new();
    for e in audit["events"].as_array().into_iter().flatten() {
        if let (Some(at), Some(actor)) = (e["created_at"].as_str(), e["actor"].as_str()) {
            actors
                .entry(at.to_string())
                .or_insert_with(|| actor.to_string());
        }
    }
    let timeline = tl["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|row| {
            let actor = row["created_at"]
                .as_str()
                .and_then(|t| actors.get(t).cloned())
                .unwrap_or_else(|| "–".into());
            (row, actor)
        })
        .collect();
    let requests = json_of(
        crate::api::requests::list(
            State(app.clone()),
            CONSOLE,
            Path(id.to_string()),
            crate::api::Q(crate::api::requests::RequestsQuery::latest(50)),
        )
        .await,
    )
    .await;
    let dlq_counts = app
        .intake
        .store
        .view()?
        .dlq_counts_of(id)?
        .into_iter()
        .map(|(c, n)| (c.name(), n))
        .collect();
    let reason = reason.filter(|r| !r.is_empty());
    let dlq = json_of(
        crate::api::dlq::list(
            State(app.clone()),
            CONSOLE,
            crate::api::Q(crate::api::dlq::DlqQuery::page(
                id,
                reason.clone(),
                dlq_cursor.filter(|c| !c.is_empty()),
                50,
            )),
        )
        .await,
    )
    .await;
    Ok(DestinationPage {
        now_ms,
        view,
        samples,
        timeline,
        requests,
        dlq_counts,
        dlq,
        reason,
    })
}

/// Paused stretches (from, to) from the timeline rows (newest first).
fn pauses(rows: &[(Value, String)], now_ms: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut open: Option<i64> = None;
    for (row, _) in rows.iter().rev() {
        let Some(at) = row["created_at"].as_str().and_then(parse_ms) else {
            continue;
        };
        match row["action"].as_str().unwrap_or_default() {
            "pause" | "manual_pause" => {
                open.get_or_insert(at);
            }
            "auto_resume" | "manual_resume" => {
                if let Some(a) = open.take() {
                    out.push((a, at));
                }
            }
            _ => {}
        }
    }
    if let Some(a) = open {
        out.push((a, now_ms));
    }
    out
}

fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn destination(s: &Session, notice: Option<&str>, d: &DestinationPage) -> Markup {
    let v = &d.view;
    let id = &v.destination_id;
    let from = chart_from(&d.samples, d.now_ms);
    let p = pauses(&d.timeline, d.now_ms);
    let base = super::dest_url(id);
    let body = html! {
        section.summary {
            p { "Merchant " strong { (opt(v.merchant_id.as_deref())) } ", platform "
                strong { (opt(v.platform.as_deref())) } }
            p #state { "State: " (state_cell(v, d.now_ms)) }
            p { "Error rate " (pct(v.error_rate)) " (threshold " (pct(v.threshold)) "), last evaluation "
                (opt(v.last_checked.as_deref())) ". Queue " (v.queue_depth.unwrap_or(0))
                ", lag " (v.consumer_lag_seconds.map_or(0.0, f64::round)) " s, DLQ " (v.dlq_depth) "." }
            @if let Some(sug) = suggestion(v) { p.suggestion { code { (sug) } } }
        }
        section.actions {
            h2 { "Actions" }
            @if v.state == "active" {
                form #pause-form method="post" action=(format!("{base}/pause")) {
                    (csrf(s))
                    label { "Reason " input name="reason" required maxlength="500"; }
                    button type="submit" { "Pause" }
                }
            } @else if v.state != "removed" {
                form #resume-form method="post" action=(format!("{base}/resume")) {
                    (csrf(s))
                    label { "Reason " input #resume-reason name="reason" required maxlength="500"; }
                    button #resume type="submit" { "Resume" }
                }
            }
            @if v.state != "removed" {
                form #test-form method="post" action=(format!("{base}/test")) {
                    (csrf(s))
                    label { input type="checkbox" name="live" value="1"; " live (when the platform has no test mode)" }
                    button type="submit" { "Send a test event" }
                }
            }
        }
        section.charts {
            h2 { "Last 24 hours" }
            p { small { "From " (rfc3339_ms(from)) " to " (rfc3339_ms(d.now_ms)) "; paused stretches shaded." } }
            (chart::chart("Error rate", &points(&d.samples, |s| s.error_rate), from, d.now_ms, &p, Some(1.0)))
            (chart::chart("Queue depth", &points(&d.samples, |s| Some(s.queue_depth as f64)), from, d.now_ms, &p, None))
            (chart::chart("Delivered per 30 s", &points(&d.samples, |s| Some(s.delivered as f64)), from, d.now_ms, &p, None))
        }
        section #timeline {
            h2 { "Pause / resume / probe timeline" }
            @if d.timeline.is_empty() { p { "No pauses, resumes or probes yet." } }
            @else {
                table { thead { tr { th { "At" } th { "Action" } th { "Error rate" } th { "Reason" } th { "Actor" } th { "Note" } } }
                tbody {
                    @for (row, actor) in &d.timeline {
                        tr.timeline-row {
                            td { (cell(&row["created_at"])) } td { (cell(&row["action"])) }
                            td { (cell(&row["error_rate"])) } td { (cell(&row["reason"])) }
                            td.actor { (actor) } td { (cell(&row["note"])) }
                        }
                    }
                } }
            }
        }
        section #requests {
            h2 { "Request log (newest 50)" }
            @match &d.requests {
                Ok(r) => {
                    @let rows = r["requests"].as_array().cloned().unwrap_or_default();
                    @if rows.is_empty() { p { "No requests logged." } }
                    @else {
                        table { thead { tr { th { "Sent" } th { "Events" } th { "Status" } th { "Latency" } th { "Outcome" } th { "Request id" } } }
                        tbody { @for row in &rows { tr {
                            td { (cell(&row["sent_at"])) } td.num { (cell(&row["events"])) }
                            td { (cell(&row["status"])) } td.num { (cell(&row["latency_ms"])) " ms" }
                            td { (cell(&row["outcome"])) } td { (cell(&row["request_id"])) }
                        } } } }
                    }
                }
                Err(e) => { p.error { (e.message()) } }
            }
        }
        section #dlq {
            h2 { "Dead-letter queue" }
            p { "By reason: "
                @if d.dlq_counts.is_empty() { "empty." }
                @for (reason, n) in &d.dlq_counts {
                    a.reason-count href=(format!("{base}?reason={reason}#dlq")) { (reason) ": " (n) } " "
                }
                @if d.reason.is_some() { a href=(format!("{base}#dlq")) { "(all reasons)" } }
            }
            @if v.state != "removed" {
                form #replay-form method="post" action="/console/dlq/replay" {
                    (csrf(s))
                    input type="hidden" name="destination" value=(id);
                    label { "From " input name="from" placeholder="2026-04-23T14:00:00Z"; }
                    label { "To " input name="to" placeholder="(now)"; }
                    button #replay-dry-run type="submit" { "Replay… (dry run first)" }
                }
            }
            form #discard-form method="post" action="/console/dlq/discard" {
                (csrf(s))
                input type="hidden" name="destination" value=(id);
                label { "From " input name="from"; }
                label { "To " input name="to"; }
                button type="submit" { "Discard… (dry run first)" }
            }
            @match &d.dlq {
                Ok(r) => {
                    @let rows = r["entries"].as_array().cloned().unwrap_or_default();
                    @if rows.is_empty() { p { "No entries." } }
                    @else {
                        table #dlq-list { thead { tr { th { "Id" } th { "Event" } th { "Name" } th { "Reason" } th { "Status" } th { "Retries" } th { "First seen" } th { "Last attempt" } } }
                        tbody { @for row in &rows { tr {
                            td { (cell(&row["id"])) } td { (cell(&row["event"]["event_id"])) }
                            td { (cell(&row["event"]["event_name"])) } td { (cell(&row["error_class"])) }
                            td { (cell(&row["status"])) } td.num { (cell(&row["retries"])) }
                            td { (cell(&row["first_seen_at"])) } td { (cell(&row["last_attempt_at"])) }
                        } } } }
                        @if let Some(next) = r["next_cursor"].as_str() {
                            a #dlq-next href=(format!("{base}?dlq_cursor={next}{}#dlq",
                                d.reason.as_ref().map_or(String::new(), |r| format!("&reason={r}")))) { "Next page" }
                        }
                    }
                }
                Err(e) => { p.error { (e.message()) } }
            }
        }
    };
    layout(&format!("Destination {id}"), Some(s), notice, body)
}

/// The confirmation page after a dry run: what would move, and the form that does it.
pub fn dlq_confirm(s: &Session, replay: bool, form: &HashMap<String, String>, v: &Value) -> Markup {
    let dest = form.get("destination").cloned().unwrap_or_default();
    let f = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (what, n) = if replay {
        ("replay", v["would_replay"].as_u64().unwrap_or(0))
    } else {
        ("discard", v["would_discard"].as_u64().unwrap_or(0))
    };
    let body = html! {
        p #dry-run-result {
            "Dry run: " strong #would-move { (n) } " DLQ entries of " (dest) " would be "
            (if replay { "replayed" } else { "discarded" })
            @if replay { " (" (v["expired"].as_u64().unwrap_or(0)) " past storage.max_backlog_age would be skipped)" }
            "."
        }
        p { "Window: from " (if f("from").is_empty() { "the oldest".to_string() } else { f("from") })
            " to " (if f("to").is_empty() { "now".to_string() } else { f("to") }) "." }
        form #confirm-form method="post" action=(format!("/console/dlq/{what}")) {
            (csrf(s))
            input type="hidden" name="destination" value=(dest);
            input type="hidden" name="from" value=(f("from"));
            input type="hidden" name="to" value=(f("to"));
            input type="hidden" name="confirm" value="1";
            button #confirm type="submit" { "Confirm " (what) " of " (n) }
            " " a href=(super::dest_url(&dest)) { "Cancel" }
        }
    };
    layout(
        if replay {
            "Replay DLQ entries"
        } else {
            "Discard DLQ entries"
        },
        Some(s),
        None,
        body,
    )
}

pub fn dlq_notice(replay: bool, v: &Value) -> String {
    if replay {
        format!(
            "Replayed {} DLQ entries ({} expired, skipped).",
            v["replayed"].as_u64().unwrap_or(0),
            v["expired_skipped"].as_u64().unwrap_or(0)
        )
    } else {
        format!(
            "Discarded {} DLQ entries.",
            v["discarded"].as_u64().unwrap_or(0)
        )
    }
}

pub fn test_notice(v: &Value) -> String {
    format!(
        "Test send ({}): {}{}{}",
        if v["live"] == true {
            "live"
        } else {
            "marked as a test"
        },
        v["class"].as_str().unwrap_or("sent"),
        v["status"]
            .as_u64()
            .map_or(String::new(), |s| format!(", HTTP {s}")),
        v["detail"]
            .as_str()
            .map_or(String::new(), |d| format!(" — {d}"))
    )
}

// ---- event lookup ----

pub fn event_lookup(
    s: &Session,
    workspaces: &[String],
    ws: Option<&str>,
    event_id: Option<&str>,
    result: Option<Result<Value, ApiError>>,
) -> Markup {
    let body = html! {
        form #lookup method="get" action="/console/events" {
            label { "Workspace "
                select name="workspace" {
                    @for w in workspaces {
                        option value=(w) selected[ws == Some(w.as_str())] { (w) }
                    }
                }
            }
            label { "Event id " input #event-id name="event_id" value=(event_id.unwrap_or_default()) required; }
            button type="submit" { "Look up" }
        }
        @match result {
            None => {}
            Some(Err(e)) => { p.error #trace-error { (e.message()) } }
            Some(Ok(t)) => {
                section #trace {
                    @for ev in t["events"].as_array().cloned().unwrap_or_default() {
                        h2 { (cell(&ev["event_name"])) " — accepted " (cell(&ev["accepted_at"])) }
                        p { "Event time " (cell(&ev["event_time"])) }
                        table { thead { tr { th { "Destination" } th { "Platform" } th { "Fate" } th { "At" } th { "Attempts" } th { "Status" } th { "Detail" } } }
                        tbody { @for f in ev["destinations"].as_array().cloned().unwrap_or_default() {
                            tr.fate data-fate=(cell(&f["fate"])) {
                                td { a href=(super::dest_url(f["destination_id"].as_str().unwrap_or_default())) { (cell(&f["destination_id"])) } }
                                td { (cell(&f["platform"])) }
                                td { strong { (cell(&f["fate"])) } }
                                td { (cell(&f["at"])) }
                                td { (cell(&f["attempts"])) }
                                td { (cell(&f["status"])) }
                                td {
                                    @for k in ["destination_state", "ahead", "next_attempt_at", "last_error", "class", "dlq_id", "reason", "request_id"] {
                                        @if !f[k].is_null() { span.kv { (k) ": " (cell(&f[k])) } " " }
                                    }
                                }
                            }
                        } } }
                    }
                }
            }
        }
    };
    layout("Event lookup", Some(s), None, body)
}

// ---- audit ----

pub fn audit(
    s: &Session,
    verify: Result<Value, ApiError>,
    list: Result<Value, ApiError>,
) -> Markup {
    let body = html! {
        section #verify {
            @match &verify {
                Ok(v) if v["ok"] == true => {
                    p.ok { "Chain verified: " (cell(&v["length"])) " events, head " code { (cell(&v["head"])) } }
                }
                Ok(v) => {
                    p.error { "Chain BROKEN at " code { (cell(&v["broken_at"])) } " (of " (cell(&v["length"])) " events): " (cell(&v["reason"])) }
                }
                Err(e) => { p.error { "Cannot verify: " (e.message()) } }
            }
            p { a #export href="/console/audit/export" { "Export the whole chain (JSON Lines)" } }
        }
        section #audit-events {
            h2 { "Recent events" }
            @match &list {
                Ok(l) => {
                    table { thead { tr { th { "At" } th { "Type" } th { "Resource" } th { "Actor" } th { "Details" } } }
                    tbody { @for e in l["events"].as_array().cloned().unwrap_or_default() {
                        tr.audit-row {
                            td { (cell(&e["created_at"])) } td.type { (cell(&e["event_type"])) }
                            td { (cell(&e["resource_id"])) } td.actor { (cell(&e["actor"])) }
                            td { code { (e["details"].to_string()) } }
                        }
                    } } }
                    @if let Some(next) = l["next_cursor"].as_str() {
                        a href=(format!("/console/audit?cursor={next}")) { "Older" }
                    }
                }
                Err(e) => { p.error { (e.message()) } }
            }
        }
    };
    layout("Audit", Some(s), None, body)
}

// ---- config ----

pub fn config(
    s: &Session,
    notice: Option<&str>,
    cfg: &Config,
    loaded_at_ms: i64,
    last: Option<ReloadNote>,
) -> Markup {
    let body = html! {
        p { "Config file sha256 " code #config-sha { (cfg.sha256) } ", loaded " (rfc3339_ms(loaded_at_ms)) "." }
        p #last-reload {
            @match &last {
                None => { "No reload since the daemon started." }
                Some(n) => {
                    "Last reload " (rfc3339_ms(n.at_ms)) " by " (n.actor) ": "
                    @match &n.result {
                        Ok(sha) => { "ok (sha256 " code { (sha) } ")" }
                        Err(e) => { span.error { "failed: " (e) } }
                    }
                }
            }
        }
        form #reload-form method="post" action="/console/reload" {
            (csrf(s))
            button type="submit" { "Reload the config file" }
        }
        h2 { "Plans and policies" }
        pre #summary { (crate::config::summary(cfg)) }
    };
    layout("Config", Some(s), notice, body)
}
