//! Regression tests for the failures an adversarial run found (issue 14): each fails
//! without its fix.

use std::sync::Arc;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::{Clock, ManualClock};
use sluice::config::Platform;
use sluice::sim::{self, FaultScript};

/// 14.1: ids and names with control characters are refused at intake (they used to be
/// accepted, then every send failed to build and counted as an error).
#[tokio::test]
async fn control_characters_and_blank_ids_are_refused_at_intake() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &config_text(dir.path(), "", "")).await;
    for (field, value) in [
        ("event_id", "a\u{0}b"),
        ("event_id", "line\nforged"),
        ("event_id", "tab\there"),
        ("event_name", "Pur\u{1}chase"),
        ("event_name", "Purchase\u{7f}"),
        ("event_id", "   "),
    ] {
        let mut e = event("ok-id", T0_MS);
        e[field] = json!(value);
        let (s, v) = d.post(&e).await;
        assert_eq!(s, 400, "{field} {value:?}: {v}");
        assert_eq!(
            v["rejected"][0]["error"], "invalid_field",
            "{field} {value:?}"
        );
        let msg = v["rejected"][0]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{msg}");
    }
    d.shutdown().await;
}

/// 14.1: an event whose data cannot go into a request (here: accepted by an older
/// sluice with a newline in its id, which the webhook sends in `webhook-id`) goes to
/// the DLQ as `unsendable` at once, is not retried, and does not count as an error:
/// the destination delivers the rest and stays active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbuildable_request_is_unsendable_not_an_error() {
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
    let text = config_text(dir.path(), "", "")
        .replace("http://127.0.0.1:9/hook", &format!("{}/hook", hook.url()))
        .replace(
            "[server]\nlisten = \"127.0.0.1:0\"",
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"adm_hardening\"",
        );
    // Position the destination, then write old data behind its cursor.
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.shutdown().await;
    {
        let db = redb::Database::open(dir.path().join("sluice.redb")).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(sluice::store::EVENTS).unwrap();
            let mk = |id: &str| {
                let stored = sluice::store::codec::StoredEvent {
                    accepted_ms: T0_MS,
                    sealed: vec![],
                    event: sluice::event::NormalizedEvent {
                        event_id: id.into(),
                        event_name: "Purchase".into(),
                        event_time: T0_MS / 1000,
                        action_source: None,
                        event_source_url: None,
                        hashed: vec![],
                        clear: vec![],
                        plaintext: vec![],
                        custom_data: vec![],
                        destinations: vec![],
                    },
                };
                sluice::store::codec::encode_event(&stored)
            };
            let evs: Vec<Vec<u8>> = ["bad\n1", "bad\n2", "good-1", "bad\u{0}3", "bad\n4"]
                .iter()
                .map(|id| mk(id))
                .collect();
            let chunk = sluice::store::log::encode_chunk(evs.iter().map(Vec::as_slice));
            t.insert(("glasshouse", 1u64), chunk.as_slice()).unwrap();
        }
        w.commit().unwrap();
    }
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    eventually("the good one delivered", || {
        hook.accepted_event("good-1") == 1
    })
    .await;
    let app = d.daemon.as_ref().unwrap().app.clone();
    eventually("4 in the DLQ", || {
        app.intake
            .store
            .view()
            .is_ok_and(|v| v.dlq_count("hooks_glasshouse").unwrap() == 4)
    })
    .await;
    let dlq = admin_get(&d, "/v1/dlq?destination=hooks_glasshouse").await;
    let entries = dlq["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    for e in entries {
        assert_eq!(e["error_class"], "unsendable", "{e}");
        assert_eq!(e["retries"], 0);
        let body = e["response_body"].as_str().unwrap();
        assert!(body.contains("webhook-id"), "{body}");
        assert!(!body.contains("bad"), "never the value: {body}");
    }
    // One request went out (the good event); nothing else was attempted or retried.
    assert_eq!(hook.count(), 1);
    // Evaluations come and go: one attempt, no error, still active.
    for _ in 0..12 {
        clock.advance_ms(60_000);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let v: Value = admin_get(&d, "/v1/destinations/hooks_glasshouse").await;
    assert_eq!(v["state"], "active", "{v}");
    assert_eq!(hook.count(), 1, "no retries of unsendable events");
    let _ = Arc::clone(&clock).now_ms();
    d.shutdown().await;
}

/// 14.2: a value from outside never writes a line of its own into the log. Events an
/// older sluice accepted with a newline, a NUL and `\x01` in their ids are
/// dead-lettered by the real binary; each log line stays one line, with the id escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_values_cannot_forge_log_lines() {
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
    let port = free_port();
    let text = config_text(dir.path(), "", "")
        .replace("http://127.0.0.1:9/hook", &format!("{}/hook", hook.url()))
        .replace(
            "[server]\nlisten = \"127.0.0.1:0\"",
            &format!("[server]\nlisten = \"127.0.0.1:{port}\""),
        );
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(&cfg, &text).unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    // First run: positions the destination.
    let mut child = spawn_sluice(&cfg);
    wait_http_ready(&http, &url).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    {
        let db = redb::Database::open(dir.path().join("sluice.redb")).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(sluice::store::EVENTS).unwrap();
            let evs: Vec<Vec<u8>> = [
                "x\n2026-01-01T00:00:00Z  INFO forged line",
                "nul\u{0}here",
                "soh\u{1}here",
            ]
            .iter()
            .map(|id| {
                sluice::store::codec::encode_event(&sluice::store::codec::StoredEvent {
                    accepted_ms: now_secs() * 1000,
                    sealed: vec![],
                    event: sluice::event::NormalizedEvent {
                        event_id: (*id).into(),
                        event_name: "Purchase".into(),
                        event_time: now_secs(),
                        action_source: None,
                        event_source_url: None,
                        hashed: vec![],
                        clear: vec![],
                        plaintext: vec![],
                        custom_data: vec![],
                        destinations: vec![],
                    },
                })
            })
            .collect();
            let chunk = sluice::store::log::encode_chunk(evs.iter().map(Vec::as_slice));
            t.insert(("glasshouse", 1u64), chunk.as_slice()).unwrap();
        }
        w.commit().unwrap();
    }
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_http_ready(&http, &url).await;
    let mut text = String::new();
    for _ in 0..500 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.matches(": dead-lettered ").count() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    assert_eq!(text.matches(": dead-lettered ").count(), 3, "{text}");
    assert!(
        !text.contains('\u{0}') && !text.contains('\u{1}'),
        "raw control bytes: {text:?}"
    );
    for line in text.lines() {
        assert!(!line.starts_with("2026-01-01"), "a forged line: {line:?}");
        assert!(
            !line.contains("forged line") || line.contains("dead-lettered"),
            "{line:?}"
        );
    }
    assert!(
        text.contains(r#"x\n2026-01-01T00:00:00Z"#),
        "escaped: {text}"
    );
    assert_eq!(hook.count(), 0);
}
