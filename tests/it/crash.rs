//! Crash safety with the real binary: concurrent clients send while the daemon is killed
//! with SIGKILL at an arbitrary moment; after a restart every acknowledged event is still
//! known (re-sending it answers duplicate). Several rounds on the same store.
//!
//! The workspace has one webhook destination, paused before the first event, so the
//! log keeps every event: housekeeping trims the log of a workspace no destination
//! reads at each minute mark of the clock, and a mark passing during the test took the
//! first events from the log this test reads.

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{free_port, now_secs, spawn_sluice_logged, wait_http_ready};
use redb::ReadableDatabase;
use serde_json::{Value, json};

const KEY: &str = "crash_key";
const ADMIN: &str = "crash_admin";

fn ev(id: &str) -> Value {
    json!({"event_id": id, "event_name": "Purchase", "event_time": now_secs(),
           "user_data": {"email": format!("{id}@example.com")}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
admin_token = "{ADMIN}"
[storage]
path = "{}"
[[workspaces]]
id = "crash"
plan = "enterprise"
ingest_keys = ["{KEY}"]
[[destinations]]
id = "hold"
workspace = "crash"
platform = "webhook"
endpoint = "http://127.0.0.1:9/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
"#,
            dir.path().join("store/sluice.redb").display()
        ),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    // Kill moments spread over the sending, varied per run.
    let seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    );
    // Each start's log: the ingest journal's replay is said there.
    let logs: Vec<std::path::PathBuf> =
        (0..5).map(|i| dir.path().join(format!("log{i}"))).collect();
    for round in 0..4u64 {
        let mut child = spawn_sluice_logged(&config, &logs[round as usize]);
        wait_http_ready(&http, &url).await;
        if round == 0 {
            pause_hold(&http, &url).await;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for c in 0..8 {
            let (http, url, acked, stop) = (http.clone(), url.clone(), acked.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let ids: Vec<String> =
                        (0..10).map(|i| format!("r{round}c{c}n{n}i{i}")).collect();
                    n += 1;
                    let body = json!({"events": ids.iter().map(|i| ev(i)).collect::<Vec<_>>()});
                    match http
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(KEY)
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 202 => {
                            let v: Value = r.json().await.unwrap_or(Value::Null);
                            if v["accepted"] == 10 {
                                acked.lock().unwrap().extend(ids);
                            }
                        }
                        _ => break,
                    }
                }
            }));
        }
        let delay = 100 + (seed.wrapping_mul(round + 7) % 400);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in clients {
            let _ = c.await;
        }
        eprintln!(
            "round {round}: killed after {delay} ms, {} acknowledged so far",
            acked.lock().unwrap().len()
        );
    }

    // Restart and re-send everything acknowledged: all duplicates.
    let mut child = spawn_sluice_logged(&config, &logs[4]);
    wait_http_ready(&http, &url).await;
    let all = acked.lock().unwrap().clone();
    assert!(
        all.len() > 100,
        "too few events were acknowledged to prove anything: {}",
        all.len()
    );
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
    for chunk in all.chunks(500) {
        let body = json!({"events": chunk.iter().map(|i| ev(i)).collect::<Vec<_>>()});
        let r = http
            .post(format!("{url}/v1/events"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["duplicates"].as_u64().unwrap() as usize,
            chunk.len(),
            "an acknowledged event was lost: {v}"
        );
    }
    unsafe_sigterm(&mut child);

    // Each restart committed again what only the journal held when the daemon was
    // killed; with clients sending to the end, at least one kill found some.
    let mut replayed = 0;
    for (i, log) in logs.iter().enumerate().skip(1) {
        let text = std::fs::read_to_string(log).unwrap();
        let line = text.lines().find(|l| l.contains("ingest journal replayed"));
        eprintln!(
            "start {i}: {}",
            line.map_or("nothing to replay from the journal", |l| l.trim())
        );
        replayed += usize::from(line.is_some());
    }
    assert!(
        replayed > 0,
        "no restart replayed the journal: the test did not exercise it"
    );

    // Nothing stored twice, nothing acknowledged missing: the log holds each event once.
    let db = redb::Database::open(dir.path().join("store/sluice.redb")).unwrap();
    let read = db.begin_read().unwrap();
    let events = read.open_table(sluice::store::EVENTS).unwrap();
    let mut stored = HashSet::new();
    for row in events.range(("crash", 0u64)..=("crash", u64::MAX)).unwrap() {
        let (_, v) = row.unwrap();
        for e in sluice::store::log::chunk_events(v.value()).unwrap() {
            let id = sluice::store::codec::decode_event(e)
                .unwrap()
                .event
                .event_id;
            assert!(stored.insert(id.clone()), "{id} is in the log twice");
        }
    }
    for id in &all {
        assert!(
            stored.contains(id),
            "{id} was acknowledged and is not in the log"
        );
    }
    eprintln!(
        "{} events in the log, each once; {} acknowledged",
        stored.len(),
        all.len()
    );
}

/// Pauses `hold` through the admin API (its worker may still be starting: `409
/// not_running` is retried for up to 10 s). The pause outlives restarts.
async fn pause_hold(http: &reqwest::Client, url: &str) {
    for _ in 0..200 {
        let r = http
            .post(format!("{url}/v1/destinations/hold/pause"))
            .bearer_auth(ADMIN)
            .json(&json!({"reason": "crash test: the log keeps every event"}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        if status == 200 {
            return;
        }
        assert!(
            status == 409 && body.contains("not_running"),
            "pausing hold: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("hold never paused");
}

/// Stops the last daemon with SIGTERM and checks it exits 0.
fn unsafe_sigterm(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap();
    assert!(code.success(), "sluice did not exit 0 on SIGTERM: {code:?}");
}
