//! SPEC §2 over real HTTP: every status and error code, the order of checks, batches,
//! dedup, ingress limits, monthly caps, restarts and PII at rest.

use crate::common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SMALL: &str = "[server]\nmax_body_bytes = 4096\nmax_events_per_request = 10\n";

fn small_config(dir: &std::path::Path, ws_extra: &str) -> String {
    // Replace the [server] table of the default config with a small one.
    config_text(dir, ws_extra, "").replacen(
        "[server]\nlisten = \"127.0.0.1:0\"\n",
        &format!("{SMALL}listen = \"127.0.0.1:0\"\n"),
        1,
    )
}

fn rejected_codes(v: &Value) -> Vec<(u64, String)> {
    v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["error"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn auth_is_checked_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &small_config(dir.path(), "")).await;
    let unauthorized = json!({"error": "unauthorized", "message": "missing or unknown ingest key: send Authorization: Bearer <workspace ingest key>"});

    let (s, _, v) = d
        .post_raw(None, Some("application/json"), b"{}".to_vec())
        .await;
    assert_eq!((s, &v), (401, &unauthorized));
    let (s, _, v) = d
        .post_raw(Some("nope"), Some("application/json"), b"{}".to_vec())
        .await;
    assert_eq!((s, &v), (401, &unauthorized));
    // A bad key on an oversized, non-JSON, wrongly typed body is still 401.
    let (s, _, v) = d
        .post_raw(Some("nope"), Some("text/plain"), vec![b'x'; 100_000])
        .await;
    assert_eq!((s, &v), (401, &unauthorized));
    // The second key of the workspace works.
    let (s, _, _) = d
        .post_raw(
            Some("gh_second_key"),
            Some("application/json"),
            serde_json::to_vec(&event("k2", T0_MS)).unwrap(),
        )
        .await;
    assert_eq!(s, 202);
    d.shutdown().await;
}

#[tokio::test]
async fn media_type_then_size_then_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &small_config(dir.path(), "")).await;
    let ev = serde_json::to_vec(&event("m1", T0_MS)).unwrap();

    let (s, _, v) = d.post_raw(Some(KEY), Some("text/plain"), ev.clone()).await;
    assert_eq!(s, 415);
    assert_eq!(
        v,
        json!({"error": "unsupported_media_type", "message": "Content-Type must be application/json"})
    );
    let (s, _, _) = d.post_raw(Some(KEY), None, ev.clone()).await;
    assert_eq!(s, 415);
    // Media type is checked before size.
    let (s, _, _) = d
        .post_raw(Some(KEY), Some("text/plain"), vec![b'x'; 10_000])
        .await;
    assert_eq!(s, 415);
    // Parameters are ignored.
    let (s, _, v) = d
        .post_raw(
            Some(KEY),
            Some("Application/JSON; charset=utf-8"),
            ev.clone(),
        )
        .await;
    assert_eq!(
        (s, v),
        (202, json!({"accepted": 1, "duplicates": 0, "rejected": []}))
    );

    // Size is checked before JSON.
    let (s, _, v) = d
        .post_raw(Some(KEY), Some("application/json"), vec![b'x'; 4097])
        .await;
    assert_eq!(s, 413);
    assert_eq!(
        v,
        json!({"error": "payload_too_large", "message": "the body is larger than server.max_body_bytes (4096 bytes)"})
    );
    // Exactly at the limit is read (and here fails as JSON).
    let (s, _, v) = d
        .post_raw(Some(KEY), Some("application/json"), vec![b' '; 4096])
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_json")));

    for bad in [
        &b"{not json"[..],
        b"[]",
        b"42",
        b"{\"events\": 5}",
        b"{\"events\": [], \"x\": 1}",
    ] {
        let (s, _, v) = d
            .post_raw(Some(KEY), Some("application/json"), bad.to_vec())
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_json")),
            "{}",
            String::from_utf8_lossy(bad)
        );
        assert!(v["message"].as_str().unwrap().len() > 10);
    }
    d.shutdown().await;
}

/// A chunked body (no Content-Length) over the limit is cut off at the limit.
#[tokio::test]
async fn chunked_body_over_limit_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &small_config(dir.path(), "")).await;
    let addr = d.url.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let chunk = vec![b' '; 3000];
    let mut req = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..2 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    sock.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    sock.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"payload_too_large\""), "{text}");
    d.shutdown().await;
}

#[tokio::test]
async fn event_count_and_burst_limits() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(
        dir.path(),
        &small_config(dir.path(), "limits = { rate = 100, burst = 5 }"),
    )
    .await;
    let (s, v) = d
        .post(&batch((0..11).map(|i| format!("c{i}")), T0_MS))
        .await;
    assert_eq!(s, 413);
    assert_eq!(
        v,
        json!({"error": "payload_too_large", "message": "11 events in one request; server.max_events_per_request is 10"})
    );
    let (s, v) = d.post(&batch((0..6).map(|i| format!("c{i}")), T0_MS)).await;
    assert_eq!(s, 413);
    assert_eq!(
        v,
        json!({"error": "batch_exceeds_burst", "message": "6 events in one request; workspace glasshouse allows a burst of 5: split the batch"})
    );
    let (s, v) = d.post(&batch((0..5).map(|i| format!("c{i}")), T0_MS)).await;
    assert_eq!(
        (s, v),
        (202, json!({"accepted": 5, "duplicates": 0, "rejected": []}))
    );
    d.shutdown().await;
}

#[tokio::test]
async fn per_event_rejections_and_partial_acceptance() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &config_text(dir.path(), "", "")).await;
    let now = T0_MS / 1000;
    let mut no_id = event("x", T0_MS);
    no_id.as_object_mut().unwrap().remove("event_id");
    let body = json!({"events": [
        event("ok1", T0_MS),
        no_id,
        {"event_id": "u1", "event_name": "Purchase", "event_time": now, "colour": "red"},
        {"event_id": "u2", "event_name": "Purchase", "event_time": now, "user_data": {"ssn": "1"}},
        {"event_id": "f1", "event_name": "Purchase", "event_time": now + 301},
        {"event_id": "f2", "event_name": "Purchase", "event_time": now + 300},
        {"event_id": "i1", "event_name": "Purchase", "event_time": "yesterday"},
        {"event_id": "i2", "event_name": "Purchase", "event_time": now, "user_data": {"country": "USA"}},
        {"event_id": "d1", "event_name": "Purchase", "event_time": now, "destinations": ["hooks_other"]},
        {"event_id": "d2", "event_name": "Purchase", "event_time": now, "destinations": ["hooks_glasshouse"]},
        7
    ]});
    let (s, v) = d.post(&body).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["accepted"], 3);
    assert_eq!(v["duplicates"], 0);
    assert_eq!(
        rejected_codes(&v),
        vec![
            (1, "missing_field".into()),
            (2, "unknown_field".into()),
            (3, "unknown_field".into()),
            (4, "event_time_in_future".into()),
            (6, "invalid_field".into()),
            (7, "invalid_field".into()),
            (8, "unknown_destination".into()),
            (10, "invalid_field".into()),
        ]
    );
    let rej = v["rejected"].as_array().unwrap();
    assert_eq!(rej[0]["event_id"], Value::Null);
    assert_eq!(rej[1]["event_id"], "u1");
    assert_eq!(rej[7]["event_id"], Value::Null);
    for r in rej {
        assert!(!r["message"].as_str().unwrap().is_empty());
    }

    // Nothing accepted, nothing duplicate: 400 all_rejected with the same list shape.
    let (s, v) = d
        .post(&json!({"events": [{"event_id": "z", "event_name": "Purchase"}]}))
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "all_rejected");
    assert_eq!(rejected_codes(&v), vec![(0, "missing_field".into())]);
    assert_eq!(v["rejected"][0]["event_id"], "z");
    // A single-object body that is invalid is all_rejected too.
    let (s, v) = d
        .post(&json!({"event_name": "Purchase", "event_time": now}))
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("all_rejected")));
    d.shutdown().await;
}

/// An `event_time` in milliseconds (or microseconds) is far in the future: the
/// rejection says what it looks like (issue 19).
#[tokio::test]
async fn event_time_in_milliseconds_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &config_text(dir.path(), "", "")).await;
    let now = T0_MS / 1000;
    let body = json!({"events": [
        {"event_id": "ms", "event_name": "Purchase", "event_time": T0_MS},
        {"event_id": "us", "event_name": "Purchase", "event_time": T0_MS * 1000},
        {"event_id": "s", "event_name": "Purchase", "event_time": now + 3600},
    ]});
    let (s, v) = d.post(&body).await;
    assert_eq!(s, 400, "{v}");
    let rej = v["rejected"].as_array().unwrap();
    assert_eq!(
        rej[0]["message"],
        format!(
            "event_time is more than 300 s in the future: {T0_MS} looks like milliseconds: send unix seconds"
        )
    );
    assert_eq!(
        rej[1]["message"],
        format!(
            "event_time is more than 300 s in the future: {} looks like microseconds: send unix seconds",
            T0_MS * 1000
        )
    );
    assert_eq!(
        rej[2]["message"],
        "event_time is more than 300 s in the future"
    );
    assert!(
        rej.iter().all(|r| r["error"] == "event_time_in_future"),
        "{v}"
    );
    d.shutdown().await;
}

#[tokio::test]
async fn dedup_within_request_across_requests_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &config_text(dir.path(), "", "")).await;
    let (s, v) = d
        .post(&json!({"events": [event("a", T0_MS), event("a", T0_MS), event("b", T0_MS)]}))
        .await;
    assert_eq!(
        (s, v),
        (202, json!({"accepted": 2, "duplicates": 1, "rejected": []}))
    );
    // All duplicates is still 202.
    let (s, v) = d.post(&event("a", T0_MS)).await;
    assert_eq!(
        (s, v),
        (202, json!({"accepted": 0, "duplicates": 1, "rejected": []}))
    );
    // Same id, another name: a different event.
    let mut other_name = event("a", T0_MS);
    other_name["event_name"] = json!("AddToCart");
    assert_eq!(d.post(&other_name).await.1["accepted"], 1);
    // Same id in another workspace: a different event.
    let (s, _, v) = d
        .post_raw(
            Some("other_key"),
            Some("application/json"),
            serde_json::to_vec(&event("a", T0_MS)).unwrap(),
        )
        .await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(1)));
    // Counted from first acceptance: still a duplicate just inside 48 h...
    d.clock.advance_ms(48 * 3600 * 1000 - 1);
    assert_eq!(d.post(&event("a", d.clock_ms())).await.1["duplicates"], 1);
    // ...and new again after it.
    d.clock.advance_ms(1);
    assert_eq!(d.post(&event("a", d.clock_ms())).await.1["accepted"], 1);
    d.shutdown().await;
}

#[tokio::test]
async fn acknowledged_event_is_duplicate_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "");
    let d = TestDaemon::start(dir.path(), &text).await;
    assert_eq!(
        d.post(&batch((0..50).map(|i| format!("r{i}")), T0_MS))
            .await
            .1["accepted"],
        50
    );
    let d = d.restart(&text).await;
    let (s, v) = d
        .post(&batch((0..51).map(|i| format!("r{i}")), T0_MS))
        .await;
    assert_eq!(
        (s, v),
        (
            202,
            json!({"accepted": 1, "duplicates": 50, "rejected": []})
        )
    );
    d.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_accept_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &config_text(dir.path(), "", "")).await;
    for round in 0..5 {
        let id = format!("race{round}");
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let http = d.http.clone();
            let url = format!("{}/v1/events", d.url);
            let body = event(&id, T0_MS);
            tasks.push(tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(KEY)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                r.json::<Value>().await.unwrap()
            }));
        }
        let mut accepted = 0;
        let mut dups = 0;
        for t in tasks {
            let v = t.await.unwrap();
            accepted += v["accepted"].as_u64().unwrap();
            dups += v["duplicates"].as_u64().unwrap();
        }
        assert_eq!((accepted, dups), (1, 15));
    }
    d.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(
        dir.path(),
        &config_text(dir.path(), "limits = { rate = 10, burst = 20 }", ""),
    )
    .await;
    let ids = |p: &str, n: usize| (0..n).map(move |i| format!("{p}{i}")).collect::<Vec<_>>();
    assert_eq!(d.post(&batch(ids("a", 20), T0_MS)).await.1["accepted"], 20);
    let (s, h, v) = d
        .post_raw(
            Some(KEY),
            Some("application/json"),
            serde_json::to_vec(&event("b0", T0_MS)).unwrap(),
        )
        .await;
    assert_eq!(s, 429);
    assert_eq!(h["retry-after"], "1");
    assert_eq!(v["error"], "rate_limited");
    // Duplicates take no tokens: dedup runs before the limit.
    let (s, v) = d.post(&batch(ids("a", 20), T0_MS)).await;
    assert_eq!((s, v["duplicates"].as_u64()), (202, Some(20)));
    // Half a second refills 5 tokens; 15 more need 1 s more.
    d.clock.advance_ms(500);
    let (s, h, _) = d
        .post_raw(
            Some(KEY),
            Some("application/json"),
            serde_json::to_vec(&batch(ids("c", 20), T0_MS)).unwrap(),
        )
        .await;
    assert_eq!((s, h["retry-after"].to_str().unwrap()), (429, "2"));
    // A rejected request takes nothing: 5 still fit.
    assert_eq!(d.post(&batch(ids("d", 5), T0_MS)).await.1["accepted"], 5);
    d.shutdown().await;
}

#[tokio::test]
async fn monthly_cap_is_per_event_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "limits = { monthly_cap = 3 }", "");
    let d = TestDaemon::start(dir.path(), &text).await;
    let (s, v) = d.post(&batch((0..5).map(|i| format!("m{i}")), T0_MS)).await;
    assert_eq!(s, 202);
    assert_eq!(v["accepted"], 3);
    assert_eq!(
        rejected_codes(&v),
        vec![
            (3, "monthly_cap_reached".into()),
            (4, "monthly_cap_reached".into())
        ]
    );
    assert_eq!(v["rejected"][0]["event_id"], "m3");
    let d = d.restart(&text).await;
    let (s, v) = d.post(&event("m9", T0_MS)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("all_rejected")));
    assert_eq!(rejected_codes(&v), vec![(0, "monthly_cap_reached".into())]);
    // A new calendar month (UTC) starts a new count.
    d.clock.set_ms(1_796_083_200_000); // 2026-12-01T00:00:00Z
    let (s, v) = d.post(&event("m9", d.clock_ms())).await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(1)));
    d.shutdown().await;
}

#[tokio::test]
async fn plaintext_identifiers_never_reach_the_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("pii.key");
    std::fs::write(&key_file, "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=\n").unwrap();
    let text = config_text(
        dir.path(),
        "",
        r#"
[[destinations]]
id = "klaviyo_glasshouse"
workspace = "glasshouse"
platform = "klaviyo"
credentials = { api_key = "pk_test_secret" }
"#,
    )
    .replace(
        "[storage]\n",
        &format!("[storage]\npii_key_file = \"{}\"\n", key_file.display()),
    );
    let d = TestDaemon::start(dir.path(), &text).await;
    let body = json!({
        "event_id": "pii1", "event_name": "Purchase", "event_time": T0_MS / 1000,
        "user_data": {
            "email": "Zelda.Quixote@Example.org", "phone": "+1 (415) 555-0199",
            "first_name": "Zelda", "last_name": "Quixotic", "city": "Walla Walla",
            "external_id": "CUSTOMER-778899"
        }
    });
    assert_eq!(d.post(&body).await.0, 202);
    d.shutdown().await;
    let bytes = std::fs::read(dir.path().join("sluice.redb")).unwrap();
    let hay = String::from_utf8_lossy(&bytes).to_lowercase();
    for needle in [
        "zelda.quixote@example.org",
        "zelda",
        "quixot",
        "4155550199",
        "+14155550199",
        "walla",
        "customer-778899",
    ] {
        assert!(
            !hay.contains(needle),
            "plaintext {needle:?} found in the store file"
        );
    }
    // The event is there, with the plaintext sealed under the key.
    let db = redb::Database::open(dir.path().join("sluice.redb")).unwrap();
    use redb::ReadableDatabase;
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(sluice::store::EVENTS).unwrap();
    let events = sluice::store::log::read(&t, "glasshouse", 1, 10).unwrap();
    assert_eq!(events.len(), 1);
    let stored = sluice::store::codec::decode_event(&events[0].1).unwrap();
    assert_eq!(stored.event.event_id, "pii1");
    assert!(stored.event.plaintext.is_empty());
    assert_eq!(stored.sealed.len(), 2);
    let key: [u8; 32] = base64_decode("q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=");
    let aad = sluice::store::codec::pii_aad("glasshouse", "Purchase", "pii1");
    let email = sluice::ingest::pii::open(&key, &aad, &stored.sealed[0].1).unwrap();
    assert_eq!(email, b"zelda.quixote@example.org");
}

fn base64_decode(s: &str) -> [u8; 32] {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap()
        .try_into()
        .unwrap()
}

#[tokio::test]
async fn health_routes() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &config_text(dir.path(), "", "")).await;
    let r = d
        .http
        .get(format!("{}/healthz", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = d
        .http
        .get(format!("{}/readyz", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    d.shutdown().await;
}

#[tokio::test]
async fn reload_swaps_keys_and_a_bad_file_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "");
    let d = TestDaemon::start(dir.path(), &text).await;
    let app = d.daemon.as_ref().unwrap().app.clone();
    // A broken file: the running keys stay.
    std::fs::write(
        dir.path().join("sluice.toml"),
        text.replace("plan = \"growth\"", "plan = \"gold\""),
    )
    .unwrap();
    let err = app.reload().unwrap_err().to_string();
    assert!(err.contains("plan"), "{err}");
    assert_eq!(d.post(&event("k1", T0_MS)).await.0, 202);
    // A good file with a new key: the old one stops working at once.
    std::fs::write(
        dir.path().join("sluice.toml"),
        text.replace(KEY, "rotated_key"),
    )
    .unwrap();
    app.reload().unwrap();
    assert_eq!(d.post(&event("k2", T0_MS)).await.0, 401);
    let (s, _, _) = d
        .post_raw(
            Some("rotated_key"),
            Some("application/json"),
            serde_json::to_vec(&event("k2", T0_MS)).unwrap(),
        )
        .await;
    assert_eq!(s, 202);
    d.shutdown().await;
}
