//! Client subcommands against the admin API (SPEC §9). They read the admin token from
//! `SLUICE_API_KEY`, else from the admin-token settings of `--config`; the URL from
//! `--url`, else `server.listen` of `--config` (a wildcard address becomes 127.0.0.1).
//! Every request carries `X-Sluice-Actor: cli`, so the audit chain says who acted.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};

mod report;
mod trace;
pub use report::{render_accuracy, report_accuracy};
pub use trace::{events_trace, render_trace};

/// Where the daemon is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Base URL of the daemon (default: `server.listen` of --config).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Config file to read the listen address and admin token from.
    #[arg(long, global = true, default_value = "/etc/sluice/sluice.toml")]
    pub config: PathBuf,
}

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(t: &Target) -> anyhow::Result<Client> {
        let cfg = crate::config::load(&t.config).ok();
        let base = match &t.url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let listen = cfg.as_ref().map_or_else(
                    || "127.0.0.1:8470".parse().expect("literal"),
                    |c| c.server.listen,
                );
                let host = if listen.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    listen.ip().to_string()
                };
                format!("http://{host}:{}", listen.port())
            }
        };
        let token = std::env::var("SLUICE_API_KEY")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| {
                cfg.as_ref().and_then(|c| {
                    c.server
                        .admin_token
                        .as_ref()
                        .map(|s| s.expose().to_string())
                })
            });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Client { base, token, http })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Sluice-Actor", "cli");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            anyhow::Error::new(Unreachable(format!(
                "cannot reach sluice at {}: {}",
                self.base,
                e.without_url()
            )))
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (s, v) = self.call(reqwest::Method::GET, path, None).await?;
        if s == 200 {
            Ok(v)
        } else {
            Err(api_error(s, &v))
        }
    }

    pub async fn text(&self, path: &str) -> anyhow::Result<String> {
        let (s, v) = self.call(reqwest::Method::GET, path, None).await?;
        match (s, v) {
            (200, Value::String(t)) => Ok(t),
            (200, v) => Ok(format!("{v}\n")),
            (s, v) => Err(api_error(s, &v)),
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

/// The daemon did not answer (connection refused, timeout): `--live` keeps retrying.
#[derive(Debug)]
pub struct Unreachable(String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

fn api_error(status: u16, v: &Value) -> anyhow::Error {
    match (v["error"].as_str(), v["message"].as_str()) {
        (Some(code), Some(msg)) => anyhow!("{code} ({status}): {}", cli_words(msg)),
        _ => anyhow!("HTTP {status}: {v}"),
    }
}

/// An API message as the CLI shows it: the routes it names for what to do next become
/// the CLI commands that do it (API clients keep the API's own words).
pub fn cli_words(msg: &str) -> String {
    let mut out = msg.replace(
        "list them with GET /v1/destinations",
        "list them with sluice destinations status",
    );
    // "resume it with POST /v1/destinations/{id}/resume"
    const RESUME: &str = "resume it with POST /v1/destinations/";
    if let Some(at) = out.find(RESUME) {
        let rest = &out[at + RESUME.len()..];
        if let Some(end) = rest.find("/resume") {
            let id = rest[..end].to_string();
            let tail = rest[end + "/resume".len()..].to_string();
            out = format!(
                "{}resume it with sluice destinations resume --id {id} --reason \"…\"{tail}",
                &out[..at]
            );
        }
    }
    out
}

/// `sluice destinations status`: the table, the footnote for `-` under Error %, and a
/// suggestion line per paused one.
pub fn render_status(dests: &[Value]) -> String {
    let mut out = String::new();
    let num = |v: &Value| v.as_u64().map_or_else(|| "-".into(), |n| n.to_string());
    let rows: Vec<[String; 9]> = dests
        .iter()
        .map(|d| {
            [
                s(&d["destination_id"]),
                s(&d["merchant_id"]),
                s(&d["platform"]),
                s(&d["state"]),
                num(&d["queue_depth"]),
                d["consumer_lag_seconds"]
                    .as_f64()
                    .map_or_else(|| "-".into(), lag),
                num(&d["dlq_depth"]),
                d["error_rate"]
                    .as_f64()
                    .map_or_else(|| "-".into(), |r| format!("{:.1}", r * 100.0)),
                d["last_checked"].as_str().unwrap_or("-").to_string(),
            ]
        })
        .collect();
    let head = [
        "Destination",
        "Merchant",
        "Platform",
        "State",
        "Queue",
        "Lag",
        "DLQ",
        "Error %",
        "Last Checked",
    ];
    out.push_str(&table(&head, &rows));
    // Why an error rate is unknown: too few attempts in the window (which a resume
    // starts afresh) to evaluate it.
    for d in dests
        .iter()
        .filter(|d| d["error_rate"].is_null() && d["state"] != "removed")
    {
        let since = d["window_started_at"]
            .as_str()
            .map_or_else(|| "yet".to_string(), |t| format!("since {t}"));
        out.push_str(&format!(
            "Error % - for {}: too few attempts {since} to evaluate\n",
            s(&d["destination_id"])
        ));
    }
    for d in dests
        .iter()
        .filter(|d| d["state"] == "paused" || d["state"] == "probing")
    {
        out.push_str(&suggestion(d));
        out.push('\n');
    }
    out
}

/// A consumer lag as the status table shows it: `0s`, `42s`, `5m03s`, `2h07m`.
fn lag(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Rows under a header, each column as wide as its widest cell, two spaces apart.
pub(crate) fn table<R: AsRef<[String]>>(head: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.as_ref()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (c, w) in cells.zip(&widths) {
            l.push_str(&format!("{c:<w$}  "));
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut head.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.as_ref().iter().map(String::as_str)));
    }
    out
}

pub(crate) fn s(v: &Value) -> String {
    v.as_str().map_or_else(|| "-".into(), str::to_string)
}

/// The next step for a paused destination, as `sluice destinations status` prints it
/// (the web console shows the same line).
pub fn suggestion(d: &Value) -> String {
    let id = s(&d["destination_id"]);
    let resume = format!("sluice destinations resume --id {id} --reason \"…\"");
    let reason = s(&d["paused_reason"]);
    let at = s(&d["paused_at"]);
    let platform = s(&d["platform"]);
    match reason.strip_prefix("error_rate_") {
        Some(rate) => {
            let threshold = d["threshold"].as_f64().map_or_else(
                || "its".into(),
                |t| format!("{}%", (t * 1000.0).round() / 10.0),
            );
            let mins = d["window_seconds"]
                .as_u64()
                .map_or_else(|| "the window".into(), |w| format!("{} min", w / 60));
            format!(
                "suggestion: {platform} paused at {at} (error rate {rate} > {threshold} threshold for {mins}). Auto-clear at {} or resume manually: {resume}",
                s(&d["auto_clear_at"])
            )
        }
        None => {
            let hint = match reason.as_str() {
                "auth_failed" => " after fixing its credentials",
                "endpoint_gone" | "api_version_retired" => " after fixing its endpoint",
                _ => "",
            };
            format!(
                "suggestion: {platform} paused at {at} ({reason}). No auto-clear; resume manually{hint}: {resume}"
            )
        }
    }
}

/// `sluice destinations status [--live]`.
pub async fn status(c: &Client, workspace: Option<&str>, live: bool) -> anyhow::Result<ExitCode> {
    let path = match workspace {
        Some(w) => format!(
            "/v1/destinations?workspace={}",
            crate::platforms::percent_encode(w)
        ),
        None => "/v1/destinations".to_string(),
    };
    // --live: the last table drawn, when it was fetched, and since when the daemon has
    // not answered.
    let mut last: Option<(String, String)> = None;
    let mut down_since: Option<String> = None;
    let now = || crate::clock::rfc3339_ms(crate::clock::Clock::now_ms(&crate::clock::SystemClock));
    loop {
        let frame = match c.get(&path).await {
            Ok(v) => {
                let dests = v["destinations"].as_array().cloned().unwrap_or_default();
                let text = render_status(&dests);
                if !live {
                    let mut out = std::io::stdout().lock();
                    write!(out, "{text}")?;
                    out.flush()?;
                    return Ok(ExitCode::SUCCESS);
                }
                down_since = None;
                let at = now();
                let frame = format!("{text}refreshed at {at} (every 2 s; Ctrl-C to stop)\n");
                last = Some((text, at));
                frame
            }
            // Only a daemon that does not answer is waited for; an API error ends it.
            Err(e) if live && e.downcast_ref::<Unreachable>().is_some() => {
                let since = down_since.get_or_insert_with(now).clone();
                let mut frame = match &last {
                    Some((text, at)) => format!("{text}last successful refresh at {at}\n"),
                    None => "no successful refresh yet\n".to_string(),
                };
                frame.push_str(&format!(
                    "sluice unreachable since {since}, retrying every 2 s: {e}\n"
                ));
                frame
            }
            Err(e) => return Err(e),
        };
        let mut out = std::io::stdout().lock();
        write!(out, "\x1b[2J\x1b[H{frame}")?;
        out.flush()?;
        drop(out);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `sluice destinations pause|resume (--id | --platform [--workspace]) --reason`.
pub async fn pause_resume(
    c: &Client,
    action: &str,
    id: Option<&str>,
    platform: Option<&str>,
    workspace: Option<&str>,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let ids: Vec<String> = match (id, platform) {
        (Some(id), _) => vec![id.to_string()],
        (None, Some(p)) => {
            if crate::config::Platform::from_name(p).is_none() {
                let known: Vec<&str> = crate::config::Platform::ALL
                    .iter()
                    .map(|p| p.name())
                    .collect();
                return Err(anyhow!(
                    "unknown platform {p} (known: {})",
                    known.join(", ")
                ));
            }
            let v = c.get("/v1/destinations").await?;
            v["destinations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["platform"] == p && workspace.is_none_or(|w| d["merchant_id"] == w))
                .filter(|d| d["state"] != "removed")
                .filter_map(|d| d["destination_id"].as_str().map(str::to_string))
                .collect()
        }
        (None, None) => return Err(anyhow!("give --id or --platform")),
    };
    if ids.is_empty() {
        let wanted = match (platform, workspace) {
            (Some(p), Some(w)) => format!(" platform {p} in workspace {w}"),
            (Some(p), None) => format!(" platform {p}"),
            _ => String::new(),
        };
        eprintln!("error: no destination matches{wanted}");
        return Ok(ExitCode::from(1));
    }
    let mut failed = false;
    for id in ids {
        let (s, v) = c
            .post(
                &format!(
                    "/v1/destinations/{}/{action}",
                    crate::platforms::percent_encode(&id)
                ),
                json!({ "reason": reason }),
            )
            .await?;
        if s == 200 {
            println!("{id}: {}", v["state"].as_str().unwrap_or("?"));
        } else {
            failed = true;
            println!("{id}: failed: {}", api_error(s, &v));
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `sluice destinations test ID [--live] [--event-name NAME]`: one synthetic event to
/// the destination (`POST /v1/destinations/{id}/test`); prints the platform's verdict.
/// Exit 0 when the platform took it (`delivered`, or a per-row answer whose row was),
/// 1 otherwise.
pub async fn test_send(
    c: &Client,
    id: &str,
    live: bool,
    event_name: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut body = json!({ "live": live });
    if let Some(n) = event_name {
        body["event_name"] = json!(n);
    }
    let (status, v) = c
        .post(&format!("/v1/destinations/{}/test", enc(id)), body)
        .await?;
    if status != 200 {
        return Err(api_error(status, &v));
    }
    print!("{}", render_test(&v));
    let took = v["class"] == "delivered" || (v["class"] == "per_row" && v["detail"] == "delivered");
    Ok(if took {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A test send's verdict as `sluice destinations test` prints it.
pub fn render_test(v: &Value) -> String {
    let class = match v["detail"].as_str() {
        Some(d) => format!("{} ({d})", s(&v["class"])),
        None => s(&v["class"]),
    };
    let status = v["status"]
        .as_u64()
        .map_or_else(|| "no answer".to_string(), |st| format!("HTTP {st}"));
    let marked = match v["test_mode"].as_str() {
        Some(m) => format!("marked as a test ({m})"),
        None => "LIVE: a real event, not marked as a test".to_string(),
    };
    format!(
        "{id} ({platform}): {class}, {status}, request id {rid}, {ms} ms\nevent: {name} {eid}, {marked}\nresponse: {excerpt}\n",
        id = s(&v["destination_id"]),
        platform = s(&v["platform"]),
        rid = s(&v["request_id"]),
        ms = v["latency_ms"],
        name = s(&v["event_name"]),
        eid = s(&v["event_id"]),
        excerpt = v["response_excerpt"].as_str().unwrap_or(""),
    )
}

/// `sluice audit verify`: exit 0 when the chain is intact.
pub async fn audit_verify(c: &Client) -> anyhow::Result<ExitCode> {
    let v = c.get("/v1/audit/verify").await?;
    if v["ok"] == true {
        println!(
            "audit chain ok: {}, head {}",
            count(v["length"].as_u64().unwrap_or(0), "event", "events"),
            s(&v["head"])
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "audit chain BROKEN at {}: {} ({} stored)",
            s(&v["broken_at"]),
            s(&v["reason"]),
            count(v["length"].as_u64().unwrap_or(0), "event", "events")
        );
        Ok(ExitCode::from(1))
    }
}

/// Prints a chain check as `sluice audit verify` does; exit 0 when intact.
fn print_verify(v: &crate::audit::Verify, stored: &str) -> ExitCode {
    match v {
        crate::audit::Verify::Ok { length, head } => {
            println!(
                "audit chain ok: {}, head {head}",
                count(*length, "event", "events")
            );
            ExitCode::SUCCESS
        }
        crate::audit::Verify::Broken {
            length,
            broken_at,
            reason,
        } => {
            println!(
                "audit chain BROKEN at {broken_at}: {reason} ({} {stored})",
                count(*length, "event", "events")
            );
            ExitCode::from(1)
        }
    }
}

/// `sluice audit verify --file EXPORT`: checks an export's JSON Lines without a daemon.
pub fn audit_verify_file(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(print_verify(
        &crate::audit::verify_export(&text),
        "in the file",
    ))
}

/// `sluice backup verify FILE`: opens a backup read-only (no daemon) and checks that it
/// opens, its schema and its audit chain.
pub fn backup_verify(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let check = crate::store::backup::verify_backup(path).map_err(|e| anyhow!(e))?;
    println!(
        "{}: opens, schema {}",
        path.display(),
        check.schema_version.unwrap_or(0)
    );
    Ok(print_verify(&check.audit, "stored"))
}

/// `sluice audit export`: JSON Lines, oldest first, to stdout.
pub async fn audit_export(c: &Client) -> anyhow::Result<ExitCode> {
    let text = c.text("/v1/audit/export").await.context("export failed")?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// What `sluice dlq` does with the matching entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqAction {
    List,
    Replay,
    Discard,
}

/// `sluice dlq list|replay|discard --destination ID [--from T] [--to T] [--dry-run]`.
pub async fn dlq(
    c: &Client,
    action: DlqAction,
    destination: &str,
    from: Option<&str>,
    to: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    match action {
        DlqAction::List => {
            let sel = DlqList {
                destination,
                from,
                to,
                ..DlqList::default()
            };
            dlq_list(c, &sel).await
        }
        DlqAction::Replay | DlqAction::Discard => {
            let verb = if action == DlqAction::Replay {
                "replay"
            } else {
                "discard"
            };
            let mut body = json!({"destination": destination, "dry_run": dry_run});
            if let Some(f) = from {
                body["from"] = json!(f);
            }
            if let Some(t) = to {
                body["to"] = json!(t);
            }
            let (status, v) = c.post(&format!("/v1/dlq/{verb}"), body).await?;
            if status != 200 {
                return Err(api_error(status, &v));
            }
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            let line = match (action, dry_run) {
                (DlqAction::Replay, true) => format!(
                    "dry run: would replay {} of {destination} ({} past the age limit would be skipped)",
                    entries(n("would_replay")),
                    n("expired")
                ),
                (DlqAction::Replay, false) => format!(
                    "replayed {} of {destination} ({} past the age limit skipped)",
                    entries(n("replayed")),
                    n("expired_skipped")
                ),
                (_, true) => format!(
                    "dry run: would discard {} of {destination}",
                    entries(n("would_discard"))
                ),
                (_, false) => format!("discarded {} of {destination}", entries(n("discarded"))),
            };
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The most characters of a response excerpt a table shows.
const EXCERPT_SHOWN: usize = 60;

/// An excerpt on one table line: control characters and runs of blanks as one space,
/// at most [`EXCERPT_SHOWN`] characters (then `…`).
fn one_line(text: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push(' ');
            blank = false;
        }
        out.push(c);
    }
    if out.chars().count() > EXCERPT_SHOWN {
        out = out.chars().take(EXCERPT_SHOWN - 1).collect::<String>() + "…";
    }
    out
}

/// `sluice destinations requests ID`: the request log as a table, newest first.
pub fn render_requests(rows: &[Value]) -> String {
    let num = |v: &Value| v.as_u64().map_or_else(|| "-".into(), |n| n.to_string());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                num(&r["seq"]),
                s(&r["sent_at"]),
                num(&r["events"]),
                num(&r["status"]),
                num(&r["latency_ms"]),
                s(&r["outcome"]),
                s(&r["request_id"]),
                one_line(r["response_excerpt"].as_str().unwrap_or("")),
            ]
        })
        .collect();
    let head = [
        "Seq",
        "Sent At",
        "Events",
        "Status",
        "Latency ms",
        "Outcome",
        "Request Id",
        "Response",
    ];
    table(&head, &cells)
}

/// `sluice destinations requests ID [--limit N]`: the newest `limit` requests (pages of
/// up to 1,000).
pub async fn requests(c: &Client, id: &str, limit: usize) -> anyhow::Result<ExitCode> {
    let mut rows: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    while rows.len() < limit {
        let want = (limit - rows.len()).min(1000);
        let mut q = format!("/v1/destinations/{}/requests?limit={want}", enc(id));
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={}", enc(c)));
        }
        let v = c.get(&q).await?;
        rows.extend(v["requests"].as_array().into_iter().flatten().cloned());
        match v["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    if rows.is_empty() {
        println!("no requests recorded for {id}");
    } else {
        print!("{}", render_requests(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `sluice dlq list` selects.
#[derive(Debug, Clone, Default)]
pub struct DlqList<'a> {
    pub destination: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub event_id: Option<&'a str>,
}

/// `sluice dlq list`: every matching entry as JSON Lines (all pages), the count on
/// stderr.
pub async fn dlq_list(c: &Client, sel: &DlqList<'_>) -> anyhow::Result<ExitCode> {
    let mut cursor: Option<String> = None;
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    loop {
        let mut q = format!("/v1/dlq?destination={}&limit=1000", enc(sel.destination));
        for (k, v) in [
            ("from", sel.from),
            ("to", sel.to),
            ("reason", sel.reason),
            ("event_id", sel.event_id),
            ("cursor", cursor.as_deref()),
        ] {
            if let Some(v) = v {
                q.push_str(&format!("&{k}={}", enc(v)));
            }
        }
        let v = c.get(&q).await?;
        for e in v["entries"].as_array().into_iter().flatten() {
            writeln!(out, "{e}")?;
            n += 1;
        }
        match v["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    out.flush()?;
    eprintln!("{}", entries(n));
    Ok(ExitCode::SUCCESS)
}

/// `sluice dlq summary`: a table of the counts, then the total.
pub fn render_dlq_summary(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["counts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                s(&r["destination_id"]),
                s(&r["reason"]),
                r["count"].as_u64().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    let since = v["since"]
        .as_str()
        .map_or_else(String::new, |t| format!(" since {t}"));
    let total = v["total"].as_u64().unwrap_or(0);
    if rows.is_empty() {
        return format!("no DLQ entries{since}\n");
    }
    let mut out = table(&["Destination", "Reason", "Count"], &rows);
    out.push_str(&format!("{}{since}\n", entries(total)));
    out
}

/// `sluice dlq summary [--since T]`.
pub async fn dlq_summary(c: &Client, since: Option<&str>) -> anyhow::Result<ExitCode> {
    let path = match since {
        Some(t) => format!("/v1/dlq/summary?since={}", enc(t)),
        None => "/v1/dlq/summary".to_string(),
    };
    let v = c.get(&path).await?;
    print!("{}", render_dlq_summary(&v));
    Ok(ExitCode::SUCCESS)
}

/// `sluice reload`: `POST /v1/admin/reload`; prints the new config's SHA-256.
pub async fn reload(c: &Client) -> anyhow::Result<ExitCode> {
    let (status, v) = c.post("/v1/admin/reload", json!({})).await?;
    if status != 200 {
        return Err(api_error(status, &v));
    }
    println!("config reloaded (sha256 {})", s(&v["config_sha256"]));
    Ok(ExitCode::SUCCESS)
}

/// The default backup name at `ms`: `sluice-20261204T161500Z.redb` (UTC, to the second).
pub fn default_backup_name(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    format!("sluice-{}.redb", t.format(&f).unwrap_or_default())
}

/// `sluice backup [--name NAME]`: the daemon writes the copy; prints its path and size.
/// Without a name, [`default_backup_name`] of now.
pub async fn backup(c: &Client, name: Option<&str>) -> anyhow::Result<ExitCode> {
    let name = name.map_or_else(
        || default_backup_name(crate::clock::Clock::now_ms(&crate::clock::SystemClock)),
        str::to_string,
    );
    let (status, v) = c.post("/v1/admin/backup", json!({"name": name})).await?;
    if status != 200 {
        return Err(api_error(status, &v));
    }
    println!("backup written: {} ({} bytes)", s(&v["path"]), v["bytes"]);
    Ok(ExitCode::SUCCESS)
}

/// `1 entry`, `0 entries`, `3 entries`.
pub fn entries(n: u64) -> String {
    count(n, "entry", "entries")
}

/// `n` and the noun, singular for 1.
pub fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn enc(v: &str) -> String {
    crate::platforms::percent_encode(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_routes_become_cli_commands() {
        assert_eq!(
            cli_words("no destination \"x\": list them with GET /v1/destinations"),
            "no destination \"x\": list them with sluice destinations status"
        );
        assert_eq!(
            cli_words(
                "destination m is already paused; resume it with POST /v1/destinations/m/resume"
            ),
            "destination m is already paused; resume it with sluice destinations resume --id m --reason \"…\""
        );
        assert_eq!(cli_words("plain"), "plain");
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(entries(1), "1 entry");
        assert_eq!(entries(0), "0 entries");
        assert_eq!(entries(3), "3 entries");
        assert_eq!(count(1, "event", "events"), "1 event");
    }

    #[test]
    fn default_backup_names_are_timestamps() {
        assert_eq!(
            default_backup_name(1_793_620_800_123),
            "sluice-20261102T120000Z.redb"
        );
    }

    #[test]
    fn requests_table() {
        let rows = vec![
            json!({"seq": 12, "sent_at": "2026-11-02T12:00:01.000Z", "events": 3, "status": 200,
                   "latency_ms": 131, "outcome": "delivered", "request_id": "SimTrace12",
                   "response_excerpt": "{\"events_received\":3,\n  \"messages\":[]}"}),
            json!({"seq": 11, "sent_at": "2026-11-02T12:00:00.000Z", "events": 1, "status": null,
                   "latency_ms": 10000, "outcome": "transport", "request_id": null,
                   "response_excerpt": "x".repeat(100)}),
        ];
        let text = render_requests(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Seq  Sent At                   Events  Status  Latency ms  Outcome    Request Id  Response"
        );
        assert_eq!(
            lines[1],
            "12   2026-11-02T12:00:01.000Z  3       200     131         delivered  SimTrace12  {\"events_received\":3, \"messages\":[]}"
        );
        assert_eq!(
            lines[2],
            format!(
                "11   2026-11-02T12:00:00.000Z  1       -       10000       transport  -           {}…",
                "x".repeat(59)
            )
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn dlq_summary_table() {
        let v = json!({"since": "2026-11-02T12:00:00.000Z", "total": 5, "counts": [
            {"destination_id": "hooks_a", "reason": "rejected", "count": 2},
            {"destination_id": "hooks_a", "reason": "retries_exhausted", "count": 1},
            {"destination_id": "meta_main", "reason": "rejected", "count": 2}]});
        assert_eq!(
            render_dlq_summary(&v),
            "Destination  Reason             Count\n\
             hooks_a      rejected           2\n\
             hooks_a      retries_exhausted  1\n\
             meta_main    rejected           2\n\
             5 entries since 2026-11-02T12:00:00.000Z\n"
        );
        assert_eq!(
            render_dlq_summary(&json!({"since": null, "total": 0, "counts": []})),
            "no DLQ entries\n"
        );
    }

    #[test]
    fn test_verdict_lines() {
        let v = json!({"destination_id": "meta_main", "platform": "meta", "event_id": "sluice-test-1793620800000",
            "event_name": "Purchase", "live": false, "marked_test": true, "test_mode": "test_event_code",
            "sent_at": "2026-11-02T12:00:00.000Z", "status": 200, "class": "delivered", "detail": null,
            "request_id": "AbC123", "latency_ms": 84, "response_excerpt": "{\"events_received\":1}"});
        assert_eq!(
            render_test(&v),
            "meta_main (meta): delivered, HTTP 200, request id AbC123, 84 ms\n\
             event: Purchase sluice-test-1793620800000, marked as a test (test_event_code)\n\
             response: {\"events_received\":1}\n"
        );
        let live = json!({"destination_id": "k", "platform": "klaviyo", "event_id": "e", "event_name": "Purchase",
            "test_mode": null, "status": null, "class": "retryable", "detail": null, "request_id": null,
            "latency_ms": 10000, "response_excerpt": "timed out after 10000 ms"});
        let text = render_test(&live);
        assert!(
            text.starts_with("k (klaviyo): retryable, no answer, request id -, 10000 ms\n"),
            "{text}"
        );
        assert!(text.contains("LIVE: a real event"), "{text}");
    }

    #[test]
    fn status_table_and_suggestions() {
        let dests = vec![
            json!({"destination_id": "tiktok_abc123", "merchant_id": "northfield", "platform": "tiktok", "state": "paused",
                   "error_rate": 0.312, "last_checked": "2026-04-23T14:01:58.000Z", "paused_at": "2026-04-23T14:01:58.000Z",
                   "paused_reason": "error_rate_31.2%", "auto_clear_at": "2026-04-23T18:01:58.000Z", "threshold": 0.25, "window_seconds": 300,
                   "queue_depth": 1520, "consumer_lag_seconds": 3723.4, "dlq_depth": 3}),
            json!({"destination_id": "meta_x", "merchant_id": "northfield", "platform": "meta", "state": "paused",
                   "error_rate": 0.5, "last_checked": null, "paused_at": "2026-04-23T15:00:00.000Z",
                   "paused_reason": "auth_failed", "auto_clear_at": null, "queue_depth": 0, "consumer_lag_seconds": 0.0, "dlq_depth": 0}),
            json!({"destination_id": "hooks", "merchant_id": "northfield", "platform": "webhook", "state": "active",
                   "error_rate": null, "last_checked": "2026-04-23T15:00:00.000Z", "window_started_at": "2026-04-23T14:59:00.000Z",
                   "queue_depth": 12, "consumer_lag_seconds": 65.0, "dlq_depth": 0}),
        ];
        let text = render_status(&dests);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Destination    Merchant    Platform  State   Queue  Lag    DLQ  Error %  Last Checked"
        );
        assert_eq!(
            lines[1],
            "tiktok_abc123  northfield  tiktok    paused  1520   1h02m  3    31.2     2026-04-23T14:01:58.000Z"
        );
        assert_eq!(
            lines[3],
            "hooks          northfield  webhook   active  12     1m05s  0    -        2026-04-23T15:00:00.000Z"
        );
        assert_eq!(
            lines[4],
            "Error % - for hooks: too few attempts since 2026-04-23T14:59:00.000Z to evaluate"
        );
        assert_eq!(
            lines[5],
            "suggestion: tiktok paused at 2026-04-23T14:01:58.000Z (error rate 31.2% > 25% threshold for 5 min). Auto-clear at 2026-04-23T18:01:58.000Z or resume manually: sluice destinations resume --id tiktok_abc123 --reason \"…\""
        );
        assert_eq!(
            lines[6],
            "suggestion: meta paused at 2026-04-23T15:00:00.000Z (auth_failed). No auto-clear; resume manually after fixing its credentials: sluice destinations resume --id meta_x --reason \"…\""
        );
        assert_eq!(lag(0.0), "0s");
        assert_eq!(lag(59.4), "59s");
    }
}
