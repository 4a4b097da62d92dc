//! The watches (issue 18) on the injected clock: silent sources against their 7-day
//! baseline (per workspace and per listed event name, across a restart), falling
//! behind, delivery accuracy per hour, and the warning before a pause with its
//! cooldown. Alerts are read where an operator gets them: the alert webhook.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::{Clock, ManualClock};
use sluice::config::Platform;
use sluice::sim::{self, Fault, FaultScript, Rule, SimServer};

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

/// Retries a minute apart.
const RETRY: &str = r#"retry = { base = "1m", max = "1h" }"#;

struct Rig {
    d: TestDaemon,
    hook: SimServer,
    ops: SimServer,
    clock: Arc<ManualClock>,
    text: String,
    _dir: tempfile::TempDir,
}

fn config(
    dir: &std::path::Path,
    hook: &str,
    ops: &str,
    policy: &str,
    workspace: &str,
    dest: &str,
) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "admin_test_token"

[storage]
path = "{store}"

[platforms.webhook]
concurrency = 16
{policy}

[[workspaces]]
id = "glasshouse"
plan = "enterprise"
ingest_keys = ["{KEY}"]
{workspace}

[[destinations]]
id = "hooks"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{hook}/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
{dest}

[alerts]
webhook = {{ url = "{ops}/ops" }}
"#,
        store = dir.join("sluice.redb").display()
    )
}

async fn rig_at(start_ms: i64, script: FaultScript, policy: &str, workspace: &str) -> Rig {
    rig_with(start_ms, script, policy, workspace, "").await
}

/// A rig whose destination takes no event the silent-source tests send (they count
/// what arrives, not what is delivered, and move the clock by days).
async fn quiet_rig(workspace: &str) -> Rig {
    rig_with(
        T0_MS - 8 * DAY,
        FaultScript::none(),
        RETRY,
        workspace,
        r#"events = ["Refund"]"#,
    )
    .await
}

async fn rig_with(
    start_ms: i64,
    script: FaultScript,
    policy: &str,
    workspace: &str,
    dest: &str,
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_ms);
    let addr = "127.0.0.1:0".parse().unwrap();
    let hook = sim::start(Platform::Webhook, addr, clock.clone(), script)
        .await
        .unwrap();
    let ops = sim::start(Platform::Webhook, addr, clock.clone(), FaultScript::none())
        .await
        .unwrap();
    let text = config(dir.path(), &hook.url(), &ops.url(), policy, workspace, dest);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    first_look(&d).await;
    Rig {
        d,
        hook,
        ops,
        clock,
        text,
        _dir: dir,
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

/// Waits for the watches' first look of a started daemon.
async fn first_look(d: &TestDaemon) {
    until("the first watch pass", || async { watch_passes(d) > 0 }).await;
}

fn watch_passes(d: &TestDaemon) -> u64 {
    d.daemon
        .as_ref()
        .unwrap()
        .app
        .watch_passes
        .load(Ordering::SeqCst)
}

/// Moves the clock by `ms` and waits for the watch pass it causes.
async fn pass(r: &Rig, ms: i64) {
    let before = watch_passes(&r.d);
    r.clock.advance_ms(ms);
    until("a watch pass", || async { watch_passes(&r.d) > before }).await;
    // Let an alert it sent reach the receiver.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Alert names the ops webhook received, in order.
fn alerts(r: &Rig) -> Vec<String> {
    r.ops
        .received()
        .iter()
        .map(|x| x.body["type"].as_str().unwrap_or("").to_string())
        .collect()
}

fn alerts_of(r: &Rig, watch: &str) -> Vec<Value> {
    r.ops
        .received()
        .iter()
        .map(|x| x.body.clone())
        .filter(|b| b["watch"] == watch)
        .collect()
}

fn named(name: &str, id: &str, now_ms: i64) -> Value {
    let mut e = event(id, now_ms);
    e["event_name"] = json!(name);
    e
}

/// `n` events of `name` now.
async fn send(r: &Rig, name: &str, prefix: &str, n: usize) {
    send_then(r, name, prefix, n, false).await;
}

/// `n` events of `name` now; with `wait`, until they are delivered.
async fn send_then(r: &Rig, name: &str, prefix: &str, n: usize, wait: bool) {
    let now = r.clock.now_ms();
    let events: Vec<Value> = (0..n)
        .map(|i| named(name, &format!("{prefix}{i}"), now))
        .collect();
    let before = r.hook.count();
    let (s, v) = r.d.post(&json!({ "events": events })).await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(n as u64)), "{v}");
    if wait {
        until(&format!("{prefix}: delivered"), || async {
            r.hook.count() >= before + n
        })
        .await;
    }
}

/// Two events a minute from 11:15 to 12:30 on each of the 7 days before T0 (noon), of
/// each name: a baseline of 30 per name for any 15-minute window from 11:30 to 12:30.
async fn seven_days_of_history(r: &Rig, names: &[&str]) {
    for day in (1..=7).rev() {
        let start = T0_MS - day * DAY - 45 * MIN;
        r.clock.set_ms(start + 1_000);
        for m in 0..75 {
            for name in names {
                send(r, name, &format!("{name}-d{day}-m{m}-"), 2).await;
            }
            r.clock.advance_ms(MIN);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_silent_at_a_busy_hour_alerts_once_and_resolves_once_and_a_restart_keeps_the_baseline()
 {
    let ws = "silent_source = { min_baseline = 20, min_ratio = 0.2 }";
    let r = quiet_rig(ws).await;
    seven_days_of_history(&r, &["Purchase"]).await;
    // Today the same: traffic from 11:15 to 11:45, then a restart (the baseline is in
    // the store).
    r.clock.set_ms(T0_MS - 45 * MIN + 1_000);
    for m in 0..30 {
        send(&r, "Purchase", &format!("today-{m}-"), 2).await;
        pass(&r, MIN).await;
    }
    let Rig {
        d,
        hook,
        ops,
        clock,
        text,
        _dir,
    } = r;
    let d = d.restart(&text).await;
    first_look(&d).await;
    let r = Rig {
        d,
        hook,
        ops,
        clock,
        text,
        _dir,
    };
    // 20 silent minutes from 11:45.
    for _ in 0..20 {
        pass(&r, MIN).await;
    }
    let fired = alerts_of(&r, "silent_source");
    assert_eq!(fired.len(), 1, "{fired:?}");
    let a = &fired[0];
    assert_eq!(a["type"], "silent_source");
    assert_eq!(a["merchant_id"], "glasshouse");
    assert_eq!(a["subject"], "glasshouse");
    assert_eq!(a["figures"]["Baseline (7-day median)"], "30");
    // Under 20 % of 30: 4 events left in the window (2 a minute, the last two minutes).
    assert_eq!(a["figures"]["Events, last 15 min"], "4");
    assert!(
        a["action"].as_str().unwrap().contains("check the source"),
        "{a}"
    );
    // Events again: resolved once, when the window holds 6 or more.
    for m in 0..5 {
        send(&r, "Purchase", &format!("back-{m}-"), 2).await;
        pass(&r, MIN).await;
    }
    let all = alerts_of(&r, "silent_source");
    assert_eq!(
        all.iter()
            .map(|a| a["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["silent_source", "silent_source_resolved"]
    );
    // Audited both ways, and the last look is in /metrics.
    let audit = admin_get(&r.d, "/v1/audit?type=watch_alert").await;
    let kinds: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["details"]["watch"] == "silent_source")
        .map(|e| e["details"]["alert"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["silent_source_resolved", "silent_source"]);
    let metrics = r.d.metrics_text().await;
    assert!(
        metrics
            .contains("sluice_source_baseline_events{merchant=\"glasshouse\",event_name=\"\"} 30"),
        "{metrics}"
    );
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_gap_at_a_quiet_hour_does_not_alert() {
    let ws = "silent_source = { min_baseline = 20 }";
    let r = quiet_rig(ws).await;
    seven_days_of_history(&r, &["Purchase"]).await;
    // 03:00: no traffic at this hour on any day, so the baseline is 0.
    r.clock.set_ms(T0_MS - 9 * 60 * MIN + 1_000);
    for m in 0..5 {
        send(&r, "Purchase", &format!("night-{m}-"), 1).await;
        pass(&r, MIN).await;
    }
    for _ in 0..20 {
        pass(&r, MIN).await;
    }
    assert_eq!(alerts_of(&r, "silent_source"), Vec::<Value>::new());
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_stopping_while_page_views_flow_alerts_for_purchase_only() {
    let ws = r#"silent_source = { min_baseline = 20, event_names = ["Purchase"] }"#;
    let r = quiet_rig(ws).await;
    seven_days_of_history(&r, &["Purchase", "PageView"]).await;
    // From 11:15 PageView at twice its usual rate throughout; Purchase as usual until
    // 11:30, then never again.
    r.clock.set_ms(T0_MS - 45 * MIN + 1_000);
    for m in 0..45 {
        send(&r, "PageView", &format!("pv-{m}-"), 4).await;
        if m < 15 {
            send(&r, "Purchase", &format!("p-{m}-"), 2).await;
        }
        pass(&r, MIN).await;
    }
    let fired = alerts_of(&r, "silent_source");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["subject"], "glasshouse/Purchase");
    // Under 20 % of 30: the last two Purchase minutes left in the window.
    assert_eq!(fired[0]["figures"]["Events, last 15 min"], "4");
    assert!(
        fired[0]["action"]
            .as_str()
            .unwrap()
            .contains("what sends Purchase")
    );
    r.d.shutdown().await;
}

/// Policy: never paused by errors here (the watch is what is tested), behind at 5 min.
const NO_PAUSE: &str = r#"retry = { base = "1m", max = "1h" }
auto_pause = { interval = "1m", sample = 10000, min_samples = 10000 }
watch = { max_lag = "5m" }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falling_behind_alerts_at_max_lag_and_not_for_a_paused_destination() {
    let r = rig_at(T0_MS, FaultScript::always(Fault::Transient), NO_PAUSE, "").await;
    send(&r, "Purchase", "slow", 3).await;
    // Failing and retried: the oldest waits. 5 minutes is not yet "older than 5 min";
    // 6 minutes is, at one look; at the second look in a row it alerts.
    for _ in 0..6 {
        pass(&r, MIN).await;
    }
    assert!(alerts_of(&r, "falling_behind").is_empty());
    pass(&r, MIN).await;
    let fired = alerts_of(&r, "falling_behind");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["destination_id"], "hooks");
    assert_eq!(fired[0]["figures"]["Queued"], "3");
    // Still behind: no repeat. Then the platform heals: resolved once.
    pass(&r, MIN).await;
    assert_eq!(alerts_of(&r, "falling_behind").len(), 1);
    r.hook.set_script(FaultScript::none());
    // The next retry (on its doubling ladder) delivers them; the pass after resolves.
    for _ in 0..30 {
        pass(&r, MIN).await;
        if alerts_of(&r, "falling_behind").len() == 2 {
            break;
        }
    }
    let names: Vec<String> = alerts_of(&r, "falling_behind")
        .iter()
        .map(|a| a["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["falling_behind", "falling_behind_resolved"]);
    // Paused by an operator: events wait far past max_lag, and no alert says so.
    let (s, _) = admin_post(
        &r.d,
        "/v1/destinations/hooks/pause",
        json!({"reason": "drill"}),
    )
    .await;
    assert_eq!(s, 200);
    send(&r, "Purchase", "held", 2).await;
    for _ in 0..15 {
        pass(&r, MIN).await;
    }
    assert_eq!(alerts_of(&r, "falling_behind").len(), 2);
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accuracy_route_counts_an_hour_exactly() {
    // Every third request is rejected (invalid): 4 of 12 dead-lettered.
    let r = rig_at(T0_MS, FaultScript::every(3, Fault::Invalid), RETRY, "").await;
    send(&r, "Purchase", "a", 12).await;
    until("12 answered", || async { r.hook.count() == 12 }).await;
    until("4 in the DLQ", || async {
        admin_get(&r.d, "/v1/destinations/hooks").await["dlq_depth"] == 4
    })
    .await;
    let v = admin_get(&r.d, "/v1/accuracy?destination=hooks").await;
    assert_eq!(
        v["hours"],
        json!([{
            "destination_id": "hooks", "merchant_id": "glasshouse",
            "hour": "2026-11-02T12:00:00.000Z",
            "routed": 12, "delivered": 8, "recovered": 0,
            "dead_lettered": {"rejected": 4}, "pending": 0,
            "share_delivered": 8.0 / 12.0,
        }])
    );
    // A replay once fixed: recovered, and the share is whole.
    r.hook.set_script(FaultScript::none());
    let (s, v) = admin_post(&r.d, "/v1/dlq/replay", json!({"destination": "hooks"})).await;
    assert_eq!((s, v), (200, json!({"replayed": 4, "expired_skipped": 0})));
    // Due at once; the clock stays (moved while they are in flight, they would time
    // out on it and be sent again).
    let seen = || {
        let ids: Vec<String> = r
            .hook
            .received()
            .iter()
            .map(|x| format!("{}:{}", x.body["event_id"], x.status))
            .collect();
        ids.join(" ")
    };
    for _ in 0..2000 {
        if r.hook.count() >= 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(r.hook.count(), 16, "{}", seen());
    for _ in 0..2000 {
        let v = admin_get(&r.d, "/v1/accuracy?destination=hooks").await;
        if v["hours"][0]["recovered"] == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let v = admin_get(&r.d, "/v1/accuracy?destination=hooks").await;
    assert_eq!(v["hours"][0]["recovered"], 4, "{v} {}", seen());
    let v = admin_get(&r.d, "/v1/accuracy?destination=hooks").await;
    assert_eq!(v["hours"][0]["share_delivered"], 1.0);
    assert_eq!(v["hours"][0]["delivered"], 8);
    // The same through the CLI.
    let (code, out, err) = sluice_cli(
        &r.d.url,
        "admin_test_token",
        &["report", "accuracy", "--destination", "hooks"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let row = out.lines().nth(1).unwrap_or_default();
    for cell in [
        "2026-11-02T12:00:00.000Z",
        "hooks",
        "12",
        "8",
        "rejected 4",
        "100.0%",
    ] {
        assert!(row.contains(cell), "{cell} not in {out}");
    }
    let resp =
        r.d.http
            .get(format!("{}/v1/accuracy?destination=nope", r.d.url))
            .bearer_auth("admin_test_token")
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "not_found");
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_under_min_accuracy_alerts_once_it_is_finished() {
    let policy = r#"retry = { max_retries = 0 }
watch = { min_accuracy = 0.9 }"#;
    let r = rig_at(T0_MS, FaultScript::every(3, Fault::Invalid), policy, "").await;
    send(&r, "Purchase", "a", 12).await;
    until("12 answered", || async { r.hook.count() == 12 }).await;
    // Settled too (answered is not yet committed): the hour's count is complete.
    until("4 dead-lettered", || async {
        admin_get(&r.d, "/v1/destinations/hooks").await["dlq_depth"] == 4
    })
    .await;
    // The hour is not over: nothing yet.
    pass(&r, 30 * MIN).await;
    assert!(alerts_of(&r, "accuracy").is_empty());
    pass(&r, 31 * MIN).await;
    let fired = alerts_of(&r, "accuracy");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["figures"]["Routed"], "12");
    assert_eq!(fired[0]["figures"]["Dead-lettered (rejected)"], "4");
    assert!(
        fired[0]["summary"].as_str().unwrap().contains("only 66.7%"),
        "{}",
        fired[0]
    );
    // Judged once.
    pass(&r, 60 * MIN).await;
    assert_eq!(alerts_of(&r, "accuracy").len(), 1);
    r.d.shutdown().await;
}

/// 2 of the next 10 requests fail, the rest succeed.
fn two_of_ten() -> FaultScript {
    FaultScript::none().with(Rule::Range {
        from: 1,
        to: 2,
        fault: Fault::Transient,
    })
}

/// Sends 10 events and waits until the 10 requests are answered.
async fn ten(r: &Rig, prefix: &str, answered_before: usize) {
    send(r, "Purchase", prefix, 10).await;
    until("10 answered", || async {
        r.hook.count() == answered_before + 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
}

/// Moves the clock to the next whole minute (an evaluation) and waits until the
/// worker has made it; then on to half past.
async fn evaluate(r: &Rig) {
    let now = r.clock.now_ms();
    let mark = (now / MIN + 1) * MIN;
    r.clock.set_ms(mark);
    let want = sluice::clock::rfc3339_ms(mark);
    until("the evaluation", || async {
        admin_get(&r.d, "/v1/destinations/hooks").await["last_checked"] == want.as_str()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    r.clock.set_ms(mark + 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_precedes_a_pause_and_is_not_repeated_within_the_cooldown() {
    // Evaluated every minute over that minute; warned at 0.8 × 25 % = 20 %; retries are
    // dead-lettered at once, so each minute's requests are that minute's events.
    let policy = r#"auto_pause = { interval = "1m" }
retry = { max_retries = 0 }"#;
    let r = rig_at(T0_MS + 30_000, two_of_ten(), policy, "").await;
    ten(&r, "a", 0).await;
    // The evaluation at 12:01 sees 20 %: a warning.
    evaluate(&r).await;
    until("the warning", || async { !alerts(&r).is_empty() }).await;
    assert_eq!(alerts(&r), ["error_rate_warning"]);
    let w = &r.ops.received()[0].body;
    assert_eq!(w["figures"]["Error rate"], "20.0%");
    assert_eq!(w["figures"]["Threshold"], "25.0%");
    assert_eq!(w["figures"]["Warn at"], "20.0%");
    assert!(
        w["action"]
            .as_str()
            .unwrap()
            .contains("sluice destinations pause --id hooks")
    );
    // A clean minute: cleared.
    r.hook.set_script(FaultScript::none());
    ten(&r, "b", 10).await;
    evaluate(&r).await;
    until("cleared", || async { alerts(&r).len() == 2 }).await;
    assert_eq!(
        alerts(&r),
        ["error_rate_warning", "error_rate_warning_resolved"]
    );
    // 20 % again within the hour: quiet.
    r.hook.set_script(two_of_ten());
    ten(&r, "c", 20).await;
    evaluate(&r).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(alerts(&r).len(), 2);
    // An hour on, 20 % warns again; then 30 % pauses, the warning giving way to the pause.
    r.clock.advance_ms(60 * MIN);
    evaluate(&r).await;
    r.hook.set_script(two_of_ten());
    ten(&r, "d", 30).await;
    evaluate(&r).await;
    until("warned again", || async { alerts(&r).len() == 3 }).await;
    r.hook.set_script(FaultScript::none().with(Rule::Range {
        from: 1,
        to: 3,
        fault: Fault::Transient,
    }));
    ten(&r, "e", 40).await;
    r.clock.set_ms((r.clock.now_ms() / MIN + 1) * MIN);
    until("paused", || async {
        admin_get(&r.d, "/v1/destinations/hooks").await["state"] == "paused"
    })
    .await;
    until("two more alerts", || async { alerts(&r).len() == 5 }).await;
    // The pause and the warning's end go out together (in either order).
    let mut all = alerts(&r);
    all[3..].sort();
    assert_eq!(
        all,
        [
            "error_rate_warning",
            "error_rate_warning_resolved",
            "error_rate_warning",
            "destination_paused",
            "error_rate_warning_resolved",
        ]
    );
    // A resume starts the cooldown and says what it will drain.
    let (s, _) = admin_post(
        &r.d,
        "/v1/destinations/hooks/resume",
        json!({"reason": "fixed"}),
    )
    .await;
    assert_eq!(s, 200);
    until("resume alert", || async { alerts(&r).len() == 6 }).await;
    let resumed = &r.ops.received()[5].body;
    assert_eq!(resumed["type"], "destination_resumed");
    assert_eq!(resumed["figures"]["Backlog"], "0 events");
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_what_is_watched() {
    let r = quiet_rig("silent_source = { min_baseline = 20 }").await;
    send(&r, "Purchase", "before", 3).await;
    pass(&r, MIN).await;
    let m = r.d.metrics_text().await;
    let total = "sluice_source_window_events{merchant=\"glasshouse\",event_name=\"\"}";
    let purchase = "sluice_source_window_events{merchant=\"glasshouse\",event_name=\"Purchase\"}";
    assert!(m.contains(&format!("{total} 3")), "{m}");
    assert!(!m.contains(purchase), "{m}");
    // Purchase watched on its own from the reload on: it counts what arrives after.
    let text = r.text.replace(
        "silent_source = { min_baseline = 20 }",
        "silent_source = { min_baseline = 20, event_names = [\"Purchase\"] }",
    );
    std::fs::write(r.d.dir.join("sluice.toml"), &text).unwrap();
    let (s, v) = admin_post(&r.d, "/v1/admin/reload", json!({})).await;
    assert_eq!(s, 200, "{v}");
    send(&r, "Purchase", "after", 2).await;
    pass(&r, MIN).await;
    let m = r.d.metrics_text().await;
    assert!(m.contains(&format!("{total} 5")), "{m}");
    assert!(m.contains(&format!("{purchase} 2")), "{m}");
    r.d.shutdown().await;
}
