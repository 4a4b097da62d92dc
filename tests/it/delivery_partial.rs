//! Batches rejected whole because of named rows (SPEC §3; Reddit `invalid_events`,
//! platforms.md §8): the named rows go to the DLQ, the others are sent again at once
//! with unchanged retry counts. End to end through the daemon and the Reddit simulator.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::config::Platform;
use sluice::sim::{self, FaultScript, SimServer};

const ADMIN: &str = "admin_test_token";
const TOKEN: &str = "rdt-secret-token";

fn config(dir: &std::path::Path, sim: &SimServer) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"

[storage]
path = "{store}"

[[workspaces]]
id = "glasshouse"
plan = "enterprise"
ingest_keys = ["{KEY}"]

[[destinations]]
id = "reddit_gh"
workspace = "glasshouse"
platform = "reddit"
endpoint = "{url}"
params = {{ ad_account_id = "t2_abc" }}
credentials = {{ access_token = "{TOKEN}" }}
"#,
        store = dir.join("sluice.redb").display(),
        url = sim.url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reddit_invalid_events_dead_letter_and_the_rest_is_resent_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let reddit = sim::start(
        Platform::Reddit,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::none(),
    )
    .await
    .unwrap();
    let text = config(dir.path(), &reddit);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let mut events: Vec<Value> = (0..5).map(|i| event(&format!("r{i}"), T0_MS)).collect();
    // Invalid for Reddit: sent as `Custom` with `custom_event_name` "Invalid".
    events[1]["event_name"] = json!("Invalid");
    events[3]["event_name"] = json!("Invalid");
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 5);

    // Nothing before the linger ends.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(reddit.count(), 0);
    clock.advance_ms(1000);

    eventually("the rest delivered", || {
        reddit.received().iter().filter(|r| r.status != 0).count() == 2
    })
    .await;
    let dlq = dlq_with(&d, "reddit_gh", 2).await;
    let got = reddit.received();
    assert_eq!(got.len(), 2);
    let first = &got[0];
    assert_eq!(first.status, 400);
    assert!(!first.accepted);
    assert_eq!(
        sim::event_ids(Platform::Reddit, &first.body),
        ["r0", "r1", "r2", "r3", "r4"]
    );
    let second = &got[1];
    assert_eq!(second.status, 200);
    assert!(second.accepted);
    assert_eq!(
        sim::event_ids(Platform::Reddit, &second.body),
        ["r0", "r2", "r4"]
    );
    // At once: the same clock time, no retry delay.
    assert_eq!(first.at_ms, T0_MS + 1000);
    assert_eq!(second.at_ms, first.at_ms);

    let mut ids: Vec<&str> = dlq["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["r1", "r3"]);
    let sim_body = String::from_utf8_lossy(&first.raw_body).into_owned();
    for e in dlq["entries"].as_array().unwrap() {
        assert_eq!(e["error_class"], "rejected");
        assert_eq!(e["retries"], 0);
        assert_eq!(e["status"], 400);
        assert_eq!(e["destination_id"], "reddit_gh");
        let body = e["response_body"].as_str().unwrap();
        assert!(!body.contains(TOKEN), "{body}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_ne!(v, Value::Null, "{sim_body}");
        assert_eq!(
            v["message"],
            "There were 2 invalid conversion events. None were processed."
        );
        let named: Vec<&str> = v["invalid_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i["event"]["event_metadata"]["conversion_id"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(named, ["r1", "r3"]);
    }

    // Each good event delivered exactly once, nothing more sent later.
    for i in [0, 2, 4] {
        assert_eq!(reddit.accepted_event(&format!("r{i}")), 1);
        assert_eq!(reddit.count_event(&format!("r{i}")), 2);
    }
    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(reddit.count(), 2);
    let dests = admin_get(&d, "/v1/destinations").await;
    assert!(!dests.to_string().contains(TOKEN));
    let h = &dests["destinations"][0];
    assert_eq!(h["queue_depth"], 0);
    assert_eq!(h["dlq_depth"], 2);
    d.shutdown().await;
    reddit.shutdown().await;
}
