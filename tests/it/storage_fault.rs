//! A store whose disk starts failing (writes and fsyncs answer ENOSPC through a wrapped
//! redb file backend): requests answer 503 with nothing accepted in part, `/readyz`
//! reports it, and once the disk heals sluice reopens the store by itself and serves.

use crate::common::*;
use redb::{ReadableDatabase, ReadableTable};
use serde_json::json;
use sluice::clock::ManualClock;
use sluice::store::FaultSwitch;

async fn ready_status(d: &TestDaemon) -> u16 {
    d.http
        .get(format!("{}/readyz", d.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn failing_disk_answers_503_accepts_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "");
    let faults = FaultSwitch::new();
    let d = TestDaemon::start_with(
        dir.path(),
        &text,
        ManualClock::new(T0_MS),
        Some(faults.clone()),
    )
    .await;

    let ids = |p: &str| (0..5).map(move |i| format!("{p}{i}")).collect::<Vec<_>>();
    assert_eq!(d.post(&batch(ids("before"), T0_MS)).await.1["accepted"], 5);

    faults.fail();
    let (s, h, v) = d
        .post_raw(
            Some(KEY),
            Some("application/json"),
            serde_json::to_vec(&batch(ids("during"), T0_MS)).unwrap(),
        )
        .await;
    assert_eq!(s, 503);
    assert_eq!(v["error"], "storage_unavailable");
    assert_eq!(h["retry-after"], "1");
    assert!(faults.injected() > 0);
    assert_eq!(ready_status(&d).await, 503);
    // While failing, every request answers 503, none hangs.
    for _ in 0..3 {
        let (s, v) = d.post(&batch(ids("during"), T0_MS)).await;
        assert_eq!((s, v["error"].as_str()), (503, Some("storage_unavailable")));
    }

    faults.heal();
    d.wait_ready().await;
    // Nothing of the failed requests was stored: all five are new now.
    let (s, v) = d.post(&batch(ids("during"), T0_MS)).await;
    assert_eq!(
        (s, v),
        (202, json!({"accepted": 5, "duplicates": 0, "rejected": []}))
    );
    // What was acknowledged before the failure is still known.
    let (s, v) = d.post(&batch(ids("before"), T0_MS)).await;
    assert_eq!(
        (s, v),
        (202, json!({"accepted": 0, "duplicates": 5, "rejected": []}))
    );
    d.shutdown().await;

    let db = redb::Database::open(dir.path().join("sluice.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let events = txn.open_table(sluice::store::EVENTS).unwrap();
    let stored = sluice::store::log::read(&events, "glasshouse", 1, usize::MAX).unwrap();
    assert_eq!(stored.len(), 10);
    let dedup = txn.open_table(sluice::store::dedup::DEDUP_LOG).unwrap();
    let mut digests = 0;
    for row in dedup.iter().unwrap() {
        let (_, v) = row.unwrap();
        digests += sluice::store::dedup::decode_log(v.value()).unwrap().2.len();
    }
    assert_eq!(digests, 10);
}

/// Regression (issue 14.5): while the store refused commits, the outcomes of answered
/// requests could not be recorded and every in-flight event was sent again about once a
/// second of the clock. Now the worker keeps the fates it knows, sends nothing, and
/// commits them once the disk heals: each event reaches the receiver exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_deliveries_instead_of_resending_them() {
    use sluice::config::Platform;
    use sluice::sim::{self, FaultScript};
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    // Answers come late (on the simulator's clock), so requests are in flight when
    // the disk fails.
    let hook = sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::none().with_latency(500),
    )
    .await
    .unwrap();
    let dest = format!(
        r#"
[[destinations]]
id = "hooks"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{}/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
policy = {{ concurrency = 8 }}
"#,
        hook.url()
    );
    let text = config_text(dir.path(), "", &dest);
    let faults = FaultSwitch::new();
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), Some(faults.clone())).await;
    let ids: Vec<String> = (0..8).map(|i| format!("fd{i}")).collect();
    assert_eq!(d.post(&batch(ids.clone(), T0_MS)).await.1["accepted"], 8);
    eventually("8 requests in flight", || hook.count() == 8).await;
    // The disk fails while the answers are on their way.
    faults.fail();
    clock.advance_ms(500);
    // Sixty seconds of the clock with the disk full: nothing is sent again.
    for _ in 0..60 {
        clock.advance_ms(1000);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        hook.count(),
        8,
        "no request is sent again while the store cannot record outcomes"
    );
    faults.heal();
    // The held fates commit once the store is back (the worker tries again on its
    // backoff, on the clock); nothing more is sent.
    let app = d.daemon.as_ref().unwrap().app.clone();
    let cursor = || {
        app.intake
            .store
            .view()
            .ok()
            .and_then(|v| v.cursor("hooks").ok().flatten())
    };
    for _ in 0..600 {
        if cursor() == Some(9) {
            break;
        }
        clock.advance_ms(1000);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        cursor(),
        Some(9),
        "every fate committed after the disk healed"
    );
    for id in &ids {
        assert_eq!(hook.count_event(id), 1, "{id} reached the receiver once");
    }
    d.shutdown().await;
}

/// Regression (issue 14.5): after a restart on a still-full disk, `/readyz` said ready
/// while ingest answered 503. Readiness now means a durable write works: the store is
/// open, its last commit succeeded, and its disk has room.
#[tokio::test]
async fn a_nearly_full_disk_is_not_ready_and_refuses_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "");
    let faults = FaultSwitch::new();
    let d = TestDaemon::start_with(
        dir.path(),
        &text,
        ManualClock::new(T0_MS),
        Some(faults.clone()),
    )
    .await;
    assert_eq!(d.post(&event("full0", T0_MS)).await.0, 202);
    let d = {
        faults.set_free_bytes(Some(1 << 20));
        d.restart_unready(&text).await
    };
    // Started (the store opened, every destination positioned), yet not ready.
    let app = d.daemon.as_ref().unwrap().app.clone();
    eventually("started", || {
        app.engine.config().is_some() && app.intake.store.is_open()
    })
    .await;
    assert_eq!(ready_status(&d).await, 503, "nearly full: not ready");
    let (s, v) = d.post(&event("full1", T0_MS)).await;
    assert_eq!((s, v["error"].as_str()), (503, Some("storage_unavailable")));
    // Space freed: ready again, and events are taken (the first one is remembered).
    faults.set_free_bytes(None);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    d.wait_ready().await;
    assert_eq!(d.post(&event("full1", T0_MS)).await.1["accepted"], 1);
    assert_eq!(d.post(&event("full0", T0_MS)).await.1["duplicates"], 1);
    d.shutdown().await;
}
