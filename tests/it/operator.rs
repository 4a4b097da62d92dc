//! The operator's surface (SPEC §5, §7, §10): `/metrics` scraped and parsed with a
//! Prometheus text parser, backpressure alerts through a real alert channel, and online
//! backups that open as a store holding the same events and audit chain.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::config::Platform;
use sluice::sim::{self, Fault, FaultScript, SimServer};

const ADMIN: &str = "admin_operator_token";
const MIN: i64 = 60_000;

/// Every name of SPEC §10 as it appears in the exposition (counters with `_total`).
const SPEC_NAMES: [&str; 13] = [
    "sluice_queue_depth",
    "sluice_consumer_lag_seconds",
    "sluice_oldest_pending_age_seconds",
    "sluice_platform_latency_seconds",
    "sluice_platform_error_rate",
    "sluice_dlq_depth",
    "sluice_dlq_growth_rate",
    "sluice_destination_paused",
    "sluice_deliveries_total",
    "sluice_projected_drain_seconds",
    "sluice_events_expiring_soon",
    "sluice_ingest_events_total",
    "sluice_ingest_rejected_total",
];

fn config(dir: &std::path::Path, hook_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"

[storage]
path = "{store}"
max_backlog_age = "2h"

[platforms.webhook]
concurrency = 1
retry = {{ base = "1m", max = "1h" }}

[[workspaces]]
id = "glasshouse"
plan = "enterprise"
ingest_keys = ["{KEY}"]

[[destinations]]
id = "hooks"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{hook_url}/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
{extra}
"#,
        store = dir.join("sluice.redb").display()
    )
}

struct Rig {
    d: TestDaemon,
    hook: SimServer,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

async fn rig(extra: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::none(),
    )
    .await
    .unwrap();
    let text = config(dir.path(), &hook.url(), extra);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    Rig {
        d,
        hook,
        clock,
        dir,
    }
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..2000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn admin_get(d: &TestDaemon, path: &str) -> (u16, Value) {
    let r = d
        .http
        .get(format!("{}{path}", d.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Waits until the webhook simulator has answered `n` requests and the worker has
/// nothing in flight.
async fn answered(r: &Rig, n: usize) {
    let app = r.d.daemon.as_ref().unwrap().app.clone();
    until(&format!("{n} answered"), || {
        let done = r.hook.received().iter().filter(|x| x.status != 0).count();
        let idle = app
            .engine
            .snapshot("hooks")
            .is_some_and(|s| s.requests_in_flight == 0 && s.in_memory == 0);
        async move { done == n && idle }
    })
    .await;
    // The commit that follows the last answer.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn send(r: &Rig, prefix: &str, n: usize) {
    let now = r.clock_ms();
    let (s, v) =
        r.d.post(&batch((0..n).map(|i| format!("{prefix}{i}")), now))
            .await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(n as u64)), "{v}");
}

impl Rig {
    fn clock_ms(&self) -> i64 {
        self.d.clock_ms()
    }
}

struct Scrape {
    text: String,
    parsed: prometheus_parse::Scrape,
}

async fn scrape(d: &TestDaemon) -> Scrape {
    // Open: no token.
    let r = d
        .http
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = r.text().await.unwrap();
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the exposition parses");
    Scrape { text, parsed }
}

impl Scrape {
    /// The value of the one sample of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .parsed
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .filter_map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(*v),
                _ => None,
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matched {found:?}");
        found.first().copied()
    }

    fn dest(&self, name: &str) -> f64 {
        self.value(
            name,
            &[
                ("destination", "hooks"),
                ("platform", "webhook"),
                ("merchant", "glasshouse"),
            ],
        )
        .unwrap_or_else(|| panic!("no {name} for hooks in:\n{}", self.text))
    }

    fn outcome(&self, outcome: &str) -> f64 {
        self.value(
            "sluice_deliveries_total",
            &[("destination", "hooks"), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    }

    fn latency_count(&self) -> f64 {
        self.value(
            "sluice_platform_latency_seconds_count",
            &[("destination", "hooks")],
        )
        .unwrap_or(0.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_every_spec_series_and_move_with_the_pipeline() {
    let r = rig("").await;

    // Traffic: three delivered, one event rejected at intake, one request without a key.
    send(&r, "ok", 3).await;
    let now = r.clock_ms();
    let mut bad = event("bad", now);
    bad["event_name"] = json!("");
    let (s, v) = r.d.post(&json!({"events": [bad, event("ok9", now)]})).await;
    assert_eq!(s, 202, "{v}");
    let reason = v["rejected"][0]["error"].as_str().unwrap().to_string();
    let (s, _, _) =
        r.d.post_raw(None, Some("application/json"), b"{}".to_vec())
            .await;
    assert_eq!(s, 401);
    answered(&r, 4).await;

    let m = scrape(&r.d).await;
    for name in SPEC_NAMES {
        let present = m.parsed.samples.iter().any(|s| {
            s.metric == name
                || s.metric == format!("{name}_count")
                || s.metric == format!("{name}_bucket")
        });
        assert!(present, "{name} missing from:\n{}", m.text);
        let family = name.trim_end_matches("_total");
        assert!(
            m.text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
    }
    assert_eq!(m.outcome("delivered"), 4.0);
    assert_eq!(m.latency_count(), 4.0);
    assert_eq!(
        m.value("sluice_ingest_events_total", &[("merchant", "glasshouse")]),
        Some(4.0)
    );
    assert_eq!(
        m.value(
            "sluice_ingest_rejected_total",
            &[("merchant", "glasshouse"), ("reason", reason.as_str())]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "sluice_ingest_rejected_total",
            &[("merchant", "unknown"), ("reason", "unauthorized")]
        ),
        Some(1.0)
    );
    assert_eq!(m.dest("sluice_queue_depth"), 0.0);
    assert_eq!(m.dest("sluice_projected_drain_seconds"), 0.0);
    assert_eq!(m.dest("sluice_destination_paused"), 0.0);
    assert_eq!(m.dest("sluice_dlq_depth"), 0.0);

    // Paused with a backlog: depth, lag and age move; the drain time is +Inf.
    let (s, _) = admin_post(
        &r.d,
        "/v1/destinations/hooks/pause",
        json!({"reason": "drill"}),
    )
    .await;
    assert_eq!(s, 200);
    send(&r, "held", 5).await;
    r.clock.advance_ms(10_000);
    let m = scrape(&r.d).await;
    assert_eq!(m.dest("sluice_queue_depth"), 5.0);
    assert_eq!(m.dest("sluice_destination_paused"), 1.0);
    // Counts print as integers.
    assert!(
        m.text.contains(
            "sluice_queue_depth{destination=\"hooks\",platform=\"webhook\",merchant=\"glasshouse\"} 5\n"
        ),
        "{}",
        m.text
    );
    assert_eq!(m.dest("sluice_consumer_lag_seconds"), 10.0);
    assert_eq!(m.dest("sluice_oldest_pending_age_seconds"), 10.0);
    assert_eq!(m.dest("sluice_projected_drain_seconds"), f64::INFINITY);
    assert!(
        m.text.contains(
            "sluice_projected_drain_seconds{destination=\"hooks\",platform=\"webhook\",merchant=\"glasshouse\"} +Inf\n"
        ),
        "{}",
        m.text
    );
    assert_eq!(m.dest("sluice_events_expiring_soon"), 0.0);
    // max_backlog_age is 2 h: an hour later they are within 1 h of it.
    r.clock.advance_ms(61 * MIN);
    let m = scrape(&r.d).await;
    assert_eq!(m.dest("sluice_events_expiring_soon"), 5.0);
    assert_eq!(m.dest("sluice_consumer_lag_seconds"), 3670.0);

    // Resumed, the first request rejected by the platform: DLQ depth and growth move.
    r.hook.set_script(FaultScript::range(1, 1, Fault::Invalid));
    let (s, _) = admin_post(
        &r.d,
        "/v1/destinations/hooks/resume",
        json!({"reason": "drill over"}),
    )
    .await;
    assert_eq!(s, 200);
    answered(&r, 9).await;
    let m = scrape(&r.d).await;
    assert_eq!(m.dest("sluice_queue_depth"), 0.0);
    assert_eq!(m.dest("sluice_destination_paused"), 0.0);
    assert_eq!(m.dest("sluice_dlq_depth"), 1.0);
    assert_eq!(m.dest("sluice_dlq_growth_rate"), 0.2);
    assert_eq!(m.outcome("dead_lettered"), 1.0);
    assert_eq!(m.outcome("delivered"), 8.0);
    assert_eq!(m.latency_count(), 9.0);
    // Five minutes on, the DLQ has stopped growing.
    r.clock.advance_ms(6 * MIN);
    let m = scrape(&r.d).await;
    assert_eq!(m.dest("sluice_dlq_growth_rate"), 0.0);
    assert_eq!(m.dest("sluice_dlq_depth"), 1.0);
    r.d.shutdown().await;
}

/// Collects what the alert webhook channel posts.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<Value>>>);

impl Sink {
    async fn start(&self) -> String {
        let s = self.clone();
        let app = axum::Router::new().route(
            "/alerts",
            axum::routing::post(move |body: axum::Json<Value>| {
                let s = s.clone();
                async move {
                    s.0.lock().unwrap().push(body.0);
                    "ok"
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}/alerts")
    }

    fn of_type(&self, t: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == t)
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_alerts_fire_once_and_resolve_once() {
    let sink = Sink::default();
    let url = sink.start().await;
    let r = rig(&format!(
        "[alerts]\nwebhook = {{ url = \"{url}\" }}\nbackpressure = {{ queue_depth = 4, consumer_lag = \"1h\" }}\n"
    ))
    .await;
    let app = r.d.daemon.as_ref().unwrap().app.clone();
    // One evaluation per 30 s mark of the clock.
    let pass = |n: u64| {
        let (app, clock) = (app.clone(), r.clock.clone());
        async move {
            until(&format!("backpressure pass {n}"), || {
                let done = app
                    .backpressure_passes
                    .load(std::sync::atomic::Ordering::SeqCst);
                async move { done >= n }
            })
            .await;
            // A delivery whose attempt failed (as one can under a loaded `cargo
            // test`) waits for its retry on the test clock: moved to it, not waited
            // on forever (this wait once hung the run).
            drive_alerter_to_idle(&app.alerter, &clock, Duration::from_secs(20), async |_| {})
                .await;
        }
    };
    let (s, _) = admin_post(
        &r.d,
        "/v1/destinations/hooks/pause",
        json!({"reason": "drill"}),
    )
    .await;
    assert_eq!(s, 200);
    send(&r, "bp", 5).await;
    r.clock.advance_ms(30_000);
    pass(1).await;
    let fired = sink.of_type("backpressure");
    assert_eq!(fired.len(), 1, "{fired:?}");
    let a = &fired[0];
    assert_eq!(a["destination_id"], "hooks");
    assert_eq!(a["merchant_id"], "glasshouse");
    assert_eq!(a["platform"], "webhook");
    assert_eq!(a["metric"], "queue_depth");
    assert_eq!(a["value"], "5 events");
    assert_eq!(a["limit"], "4 events");
    assert_eq!(
        a["resume_command"],
        "sluice destinations resume --id hooks --reason \"…\""
    );
    // Still over the limit: no second alert.
    r.clock.advance_ms(30_000);
    pass(2).await;
    assert_eq!(sink.of_type("backpressure").len(), 1);
    // Drained: resolved once.
    let (s, _) = admin_post(
        &r.d,
        "/v1/destinations/hooks/resume",
        json!({"reason": "drill over"}),
    )
    .await;
    assert_eq!(s, 200);
    answered(&r, 5).await;
    r.clock.advance_ms(30_000);
    pass(3).await;
    r.clock.advance_ms(30_000);
    pass(4).await;
    let resolved = sink.of_type("backpressure_resolved");
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["metric"], "queue_depth");
    assert_eq!(resolved[0]["value"], "0 events");
    assert_eq!(sink.of_type("backpressure").len(), 1);
    // The manual pause and resume alerts name who and why (issue 19).
    let paused = sink.of_type("destination_paused");
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(
        (
            &paused[0]["reason"],
            &paused[0]["actor"],
            &paused[0]["note"]
        ),
        (&json!("manual"), &json!("api_user"), &json!("drill"))
    );
    let text = paused[0]["text"].as_str().unwrap();
    assert!(
        text.contains("\nActor:        api_user\nNote:         drill\n"),
        "{text}"
    );
    let resumed = sink.of_type("destination_resumed");
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(
        (
            &resumed[0]["reason"],
            &resumed[0]["actor"],
            &resumed[0]["note"]
        ),
        (
            &json!("ops_intervention"),
            &json!("api_user"),
            &json!("drill over")
        )
    );
    assert_eq!(fired[0]["actor"], Value::Null);
    // Consumer lag never crossed its hour.
    assert!(
        sink.0
            .lock()
            .unwrap()
            .iter()
            .all(|v| v["metric"] != "consumer_lag")
    );
    r.d.shutdown().await;
}

/// A paused destination is not evaluated: a backpressure alert about it carries no
/// error rate from before the pause (issue 19).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backpressure_alert_of_a_paused_destination_has_no_stale_error_rate() {
    let sink = Sink::default();
    let url = sink.start().await;
    let r = rig(&format!(
        "policy = {{ auto_pause = {{ interval = \"1m\", min_samples = 1 }} }}\n[alerts]\nwebhook = {{ url = \"{url}\" }}\nbackpressure = {{ queue_depth = 4 }}\n"
    ))
    .await;
    // Attempts inside the minute that the 12:01 evaluation looks at.
    r.clock.advance_ms(10_000);
    send(&r, "ok", 10).await;
    answered(&r, 10).await;
    r.clock.advance_ms(50_000);
    until("evaluated", || async {
        admin_get(&r.d, "/v1/destinations/hooks").await.1["error_rate"] == json!(0.0)
    })
    .await;
    let (s, _) = admin_post(
        &r.d,
        "/v1/destinations/hooks/pause",
        json!({"reason": "drill"}),
    )
    .await;
    assert_eq!(s, 200);
    send(&r, "bp", 5).await;
    r.clock.advance_ms(30_000);
    until("backpressure alert", || async {
        !sink.of_type("backpressure").is_empty()
    })
    .await;
    let a = &sink.of_type("backpressure")[0];
    assert_eq!(a["metric"], "queue_depth");
    assert_eq!(a["error_rate"], Value::Null, "{a}");
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_opens_as_a_store_with_the_same_events_and_audit_chain() {
    let r = rig("").await;
    send(&r, "kept", 4).await;
    answered(&r, 4).await;
    // A backlog and audit events: paused, more events held.
    let (s, _) = admin_post(
        &r.d,
        "/v1/destinations/hooks/pause",
        json!({"reason": "backup drill"}),
    )
    .await;
    assert_eq!(s, 200);
    send(&r, "held", 3).await;

    let (s, v) = admin_post(
        &r.d,
        "/v1/admin/backup",
        json!({"name": "before-upgrade.redb"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let path = r.dir.path().join("backups").join("before-upgrade.redb");
    assert_eq!(v["path"], path.display().to_string());
    assert_eq!(
        v["bytes"].as_u64(),
        Some(std::fs::metadata(&path).unwrap().len())
    );
    // Never overwrites; names are plain file names.
    let (s, v2) = admin_post(
        &r.d,
        "/v1/admin/backup",
        json!({"name": "before-upgrade.redb"}),
    )
    .await;
    assert_eq!((s, v2["error"].as_str()), (409, Some("exists")));
    let (s, v2) = admin_post(&r.d, "/v1/admin/backup", json!({"name": "../escape"})).await;
    assert_eq!((s, v2["error"].as_str()), (400, Some("invalid_request")));
    assert!(!r.dir.path().join("escape").exists());
    let unauth =
        r.d.http
            .post(format!("{}/v1/admin/backup", r.d.url))
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
    assert_eq!(unauth.status(), 401);

    let (_, verify) = admin_get(&r.d, "/v1/audit/verify").await;
    let (_, export) = {
        let t =
            r.d.http
                .get(format!("{}/v1/audit/export", r.d.url))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
        (200, t)
    };
    let hook_url = r.hook.url();
    r.d.shutdown().await;

    // The copy, as the store of a new daemon.
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::copy(&path, dir2.path().join("sluice.redb")).unwrap();
    let text = config(dir2.path(), &hook_url, "");
    let d2 = TestDaemon::start_with(dir2.path(), &text, r.clock.clone(), None).await;
    let (_, verify2) = admin_get(&d2, "/v1/audit/verify").await;
    assert_eq!(verify2["ok"], true);
    assert_eq!(verify2, verify);
    let export2 = d2
        .http
        .get(format!("{}/v1/audit/export", d2.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(export2, export);
    // Same events: the paused backlog is there, and every event is a known duplicate.
    let (_, dest) = admin_get(&d2, "/v1/destinations/hooks").await;
    assert_eq!(dest["state"], "paused");
    assert_eq!(dest["queue_depth"], 3);
    let now = d2.clock_ms();
    let ids: Vec<String> = (0..4)
        .map(|i| format!("kept{i}"))
        .chain((0..3).map(|i| format!("held{i}")))
        .collect();
    let (s, v) = d2.post(&batch(ids, now)).await;
    assert_eq!(
        (s, v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (202, Some(0), Some(7)),
        "{v}"
    );
    d2.shutdown().await;
}

/// The gauges keep a per-destination summary of the log part of the backlog and update
/// it incrementally; at every step it must equal a whole read of the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incremental_backlog_always_equals_a_whole_read() {
    let r = rig("").await;
    let app = r.d.daemon.as_ref().unwrap().app.clone();
    let check = |step: &str| {
        let rt = app.runtime();
        let cfg = &rt.config;
        let now = r.clock_ms();
        let g = app.engine.gauges(cfg).unwrap();
        let g = g.iter().find(|g| g.labels.destination == "hooks").unwrap();
        let d = cfg.destinations.iter().find(|d| d.id == "hooks").unwrap();
        let max_age = cfg.storage.max_backlog_age.as_millis() as i64;
        let view = app.intake.store.view().unwrap();
        let whole =
            sluice::delivery::backlog::read_whole(&view, d, None, now, 3_600_000, max_age).unwrap();
        assert_eq!(g.queue_depth, whole.depth, "{step}: depth");
        assert_eq!(
            g.events_expiring_soon, whole.expiring_soon,
            "{step}: expiring"
        );
        let lag = whole
            .oldest_accepted_ms
            .map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0);
        assert_eq!(g.consumer_lag_seconds, lag, "{step}: lag");
        whole.depth
    };
    let mixed = |prefix: &str, n: usize, now: i64| {
        json!({"events": (0..n).map(|i| {
            let mut e = event(&format!("{prefix}{i}"), now);
            if i % 3 == 0 {
                e["event_name"] = json!("Lead");
            }
            e
        }).collect::<Vec<_>>()})
    };
    let pause = |reason: &'static str| {
        admin_post(
            &r.d,
            "/v1/destinations/hooks/pause",
            json!({ "reason": reason }),
        )
    };
    let resume = |reason: &'static str| {
        admin_post(
            &r.d,
            "/v1/destinations/hooks/resume",
            json!({ "reason": reason }),
        )
    };

    assert_eq!(check("empty"), 0);
    assert_eq!(pause("a").await.0, 200);
    assert_eq!(r.d.post(&mixed("a", 30, r.clock_ms())).await.0, 202);
    assert_eq!(check("30 held"), 30);
    r.clock.advance_ms(20 * MIN);
    assert_eq!(r.d.post(&mixed("b", 12, r.clock_ms())).await.0, 202);
    assert_eq!(check("42 held, two ages"), 42);
    // An hour and a half later the first 30 are within an hour of the 2 h limit.
    r.clock.advance_ms(40 * MIN);
    assert_eq!(check("some expiring"), 42);
    assert_eq!(resume("a").await.0, 200);
    answered(&r, 42).await;
    assert_eq!(check("drained"), 0);

    // A reload narrows the routing to Lead: the summary is read again whole.
    assert_eq!(pause("b").await.0, 200);
    assert_eq!(r.d.post(&mixed("c", 9, r.clock_ms())).await.0, 202);
    assert_eq!(check("9 held"), 9);
    let text = config(r.dir.path(), &r.hook.url(), "events = [\"Lead\"]");
    std::fs::write(r.dir.path().join("sluice.toml"), text).unwrap();
    let (s, v) = admin_post(&r.d, "/v1/admin/reload", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(check("Lead only"), 3);
    // Housekeeping passes run (trimming the log below every position), then drained again.
    r.clock.advance_ms(3 * MIN);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(r.d.post(&mixed("d", 6, r.clock_ms())).await.0, 202);
    assert_eq!(check("Lead only, more"), 5);
    assert_eq!(resume("b").await.0, 200);
    answered(&r, 47).await;
    assert_eq!(check("drained again"), 0);
    r.d.shutdown().await;
}

/// A destination whose `events` filter skips a whole read-ahead page (here: the webhook
/// reads two events at a time) still reaches the event behind it without waiting for
/// the next ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_events_routed_elsewhere_does_not_stall_the_destination() {
    let r = rig("events = [\"Lead\"]").await;
    let now = r.clock_ms();
    let mut events: Vec<Value> = (0..10).map(|i| event(&format!("p{i}"), now)).collect();
    let mut lead = event("lead-behind", now);
    lead["event_name"] = json!("Lead");
    events.push(lead);
    let (s, v) = r.d.post(&json!({ "events": events })).await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(11)));
    answered(&r, 1).await;
    assert_eq!(r.hook.accepted_event("lead-behind"), 1);
    let m = scrape(&r.d).await;
    assert_eq!(m.dest("sluice_queue_depth"), 0.0);
    r.d.shutdown().await;
}

/// On a fresh daemon every labelled counter of a configured label set is already there
/// at 0 (issue 19): `increase()` sees the first rejection and the first delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_counters_start_at_zero_for_known_label_sets() {
    let r = rig("").await;
    let m = scrape(&r.d).await.text;
    for want in [
        "sluice_ingest_events_total{merchant=\"glasshouse\"} 0\n",
        "sluice_ingest_rejected_total{merchant=\"glasshouse\",reason=\"invalid_field\"} 0\n",
        "sluice_ingest_rejected_total{merchant=\"glasshouse\",reason=\"rate_limited\"} 0\n",
        "sluice_ingest_rejected_total{merchant=\"unknown\",reason=\"unauthorized\"} 0\n",
        "sluice_deliveries_total{destination=\"hooks\",platform=\"webhook\",merchant=\"glasshouse\",outcome=\"delivered\"} 0\n",
        "sluice_deliveries_total{destination=\"hooks\",platform=\"webhook\",merchant=\"glasshouse\",outcome=\"expired\"} 0\n",
        "sluice_events_stale_on_arrival_total{destination=\"hooks\",platform=\"webhook\",merchant=\"glasshouse\"} 0\n",
    ] {
        assert!(m.contains(want), "missing {want}: {m}");
    }
    r.d.shutdown().await;
}
