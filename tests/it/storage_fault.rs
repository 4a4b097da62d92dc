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
        digests += sluice::store::dedup::decode_log(v.value()).unwrap().1.len();
    }
    assert_eq!(digests, 10);
}
