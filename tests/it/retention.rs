//! Retention (SPEC §3) under a manual clock: expired events leave a paused destination's
//! backlog for the DLQ, DLQ entries past `dlq_retention` are dropped, and the log is
//! trimmed once every destination and retry is past an event.

use std::time::Duration;

use crate::common::*;
use redb::ReadableDatabase;
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::config::Platform;
use sluice::sim::{self, Fault, FaultScript};

const ADMIN: &str = "admin_test_token";

fn config(dir: &std::path::Path, storage_extra: &str, dests: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"

[storage]
path = "{store}"
{storage_extra}

[[workspaces]]
id = "glasshouse"
plan = "enterprise"
ingest_keys = ["{KEY}"]
{dests}
"#,
        store = dir.join("sluice.redb").display()
    )
}

fn webhook(id: &str, url: &str) -> String {
    format!(
        r#"
[[destinations]]
id = "{id}"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{url}/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
"#
    )
}

async fn get(d: &TestDaemon, path: &str) -> Value {
    d.http
        .get(format!("{}{path}", d.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Moves the clock past the next housekeeping pass and waits until it has run.
async fn housekeeping(d: &TestDaemon, clock: &ManualClock) {
    advance_past_housekeeping(d, clock, sluice::delivery::housekeeping::EVERY_MS).await;
}

/// Moves the clock by `ms` (at least one housekeeping interval, counted from the end
/// of the last pass) and waits for the pass that triggers.
async fn advance_past_housekeeping(d: &TestDaemon, clock: &ManualClock, ms: i64) {
    use std::sync::atomic::Ordering;
    let engine = d.daemon.as_ref().unwrap().app.engine.clone();
    let before = engine.housekeeping_passes.load(Ordering::SeqCst);
    clock.advance_ms(ms);
    until("a housekeeping pass", || async {
        engine.housekeeping_passes.load(Ordering::SeqCst) > before
    })
    .await;
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..1000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_pauses_and_the_paused_backlog_expires_into_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::always(Fault::Gone),
    )
    .await
    .unwrap();
    let text = config(
        dir.path(),
        "max_backlog_age = \"1h\"",
        &webhook("hooks", &hook.url()),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&batch((0..5).map(|i| format!("g{i}")), T0_MS)).await;
    until("paused", || async {
        get(&d, "/v1/destinations/hooks").await["state"] == "paused"
    })
    .await;
    let v = get(&d, "/v1/destinations/hooks").await;
    assert_eq!(v["paused_reason"], "endpoint_gone");
    assert_eq!(v["paused_at"], "2026-11-02T12:00:00.000Z");
    let sent = hook.count();
    assert!((1..=4).contains(&sent), "{sent} requests before the pause");
    // While paused nothing is sent and nothing is dead-lettered...
    clock.advance_ms(30 * 60_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(hook.count(), sent);
    assert_eq!(
        get(&d, "/v1/dlq?destination=hooks").await["entries"],
        json!([])
    );
    assert_eq!(get(&d, "/v1/destinations/hooks").await["queue_depth"], 5);
    // ...until the backlog passes its age limit (max_backlog_age for webhooks).
    clock.advance_ms(31 * 60_000);
    until("expired into the DLQ", || async {
        get(&d, "/v1/dlq?destination=hooks").await["entries"]
            .as_array()
            .unwrap()
            .len()
            == 5
    })
    .await;
    let dlq = get(&d, "/v1/dlq?destination=hooks").await;
    assert!(
        dlq["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["error_class"] == "expired")
    );
    assert_eq!(get(&d, "/v1/destinations/hooks").await["queue_depth"], 0);
    assert_eq!(hook.count(), sent);
    // The pause survives a restart.
    let d = d.restart(&text).await;
    assert_eq!(get(&d, "/v1/destinations/hooks").await["state"], "paused");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_entries_past_retention_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::always(Fault::Invalid),
    )
    .await
    .unwrap();
    let text = config(
        dir.path(),
        "dlq_retention = \"1h\"",
        &webhook("hooks", &hook.url()),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&event("bad", T0_MS)).await;
    until("dead-lettered", || async {
        get(&d, "/v1/dlq?destination=hooks").await["entries"]
            .as_array()
            .unwrap()
            .len()
            == 1
    })
    .await;
    // Kept just inside the retention...
    clock.advance_ms(3_600_000 - 60_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        get(&d, "/v1/dlq?destination=hooks").await["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // ...dropped at the first housekeeping pass after it.
    clock.advance_ms(60_000);
    housekeeping(&d, &clock).await;
    until("dropped", || async {
        get(&d, "/v1/dlq?destination=hooks").await["entries"] == json!([])
    })
    .await;
    d.shutdown().await;
}

fn stored_events(dir: &std::path::Path) -> Vec<u64> {
    let db = redb::Database::open(dir.join("sluice.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(sluice::store::EVENTS).unwrap();
    sluice::store::log::read(&t, "glasshouse", 1, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_is_trimmed_once_every_destination_and_retry_is_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let ok = sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::none(),
    )
    .await
    .unwrap();
    // The second receiver fails until told otherwise: its events wait in `retries`.
    let flaky = sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::always(Fault::Transient),
    )
    .await
    .unwrap();
    let text = config(
        dir.path(),
        "",
        &(webhook("a", &ok.url()) + &webhook("b", &flaky.url())),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    for i in 0..3 {
        d.post(&event(&format!("t{i}"), T0_MS)).await;
    }
    until("a got all", || async { ok.count() == 3 }).await;
    until("b failed all", || async {
        flaky.received().iter().filter(|r| r.status != 0).count() == 3
    })
    .await;
    // A housekeeping pass (every minute) while b's retries are pending: both cursors
    // are past every event, only the retries still need them.
    clock.advance_ms(61_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.shutdown().await;
    assert_eq!(
        stored_events(dir.path()),
        vec![1, 2, 3],
        "trimmed what pending retries need"
    );

    flaky.set_script(FaultScript::none());
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    for _ in 0..10 {
        clock.advance_ms(64_000);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until("b's retries delivered", || async {
        flaky.received().iter().filter(|r| r.status == 200).count() == 3
    })
    .await;
    clock.advance_ms(61_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.shutdown().await;
    // Delivered everywhere: trimmed, all but the last chunk (one request, here one
    // event), which keeps the log's numbering across restarts.
    assert_eq!(
        stored_events(dir.path()),
        vec![3],
        "delivered everywhere: trimmed to the last chunk"
    );
}
