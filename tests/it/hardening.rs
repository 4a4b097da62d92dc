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

/// 14.3: a key given twice is refused, never silently resolved: in the body
/// (`invalid_json`), or inside one event (`invalid_field`, the others accepted).
#[tokio::test]
async fn duplicate_json_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &config_text(dir.path(), "", "")).await;
    let e = |id: &str| serde_json::to_string(&event(id, T0_MS)).unwrap();
    let body = format!(r#"{{"events":[{}],"events":[{}]}}"#, e("d1"), e("d2"));
    let (s, _, v) = d
        .post_raw(Some(KEY), Some("application/json"), body.into_bytes())
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_json")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("events"), "{v}");
    // Inside one event of a batch: that event only.
    let twice = e("d3").replacen(
        "\"event_id\":\"d3\"",
        "\"event_id\":\"d3\",\"event_id\":\"d4\"",
        1,
    );
    let body = format!(r#"{{"events":[{},{}]}}"#, e("d5"), twice);
    let (s, _, v) = d
        .post_raw(Some(KEY), Some("application/json"), body.into_bytes())
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["rejected"][0]["index"], 1);
    assert_eq!(v["rejected"][0]["error"], "invalid_field");
    assert!(
        v["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .contains("event_id")
    );
    // A single event with a duplicate in user_data.
    let one = e("d6").replacen("\"user_data\":{", "\"user_data\":{\"email\":\"a@b.co\",", 1);
    let (s, _, v) = d
        .post_raw(Some(KEY), Some("application/json"), one.into_bytes())
        .await;
    assert_eq!(
        (s, v["rejected"][0]["error"].as_str()),
        (400, Some("invalid_field")),
        "{v}"
    );
    // Neither d3, d4 nor d6 was stored.
    for id in ["d3", "d4", "d6"] {
        let (s, v) = d.post(&event(id, T0_MS)).await;
        assert_eq!(
            (s, v["accepted"].as_u64()),
            (202, Some(1)),
            "{id} was not stored before"
        );
    }
    d.shutdown().await;
}

/// 14 (also): every error is the JSON error body (unknown route, wrong method, a
/// query that does not parse); a rejection echoes at most 128 characters of an id; a
/// megabyte email is refused; an early answer closes the connection and says so; 401
/// comes before 413.
#[tokio::test]
async fn errors_are_json_bounded_and_in_contract_order() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "").replace(
        "[server]\nlisten = \"127.0.0.1:0\"",
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"adm_h\"\nmax_body_bytes = 4096",
    );
    let d = TestDaemon::start(dir.path(), &text).await;
    let r = d.http.get(format!("{}/nope", d.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "not_found");
    let r = d
        .http
        .delete(format!("{}/v1/events", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "method_not_allowed"
    );
    let r = d
        .http
        .get(format!(
            "{}/v1/dlq?destination=hooks_glasshouse&limit=-1",
            d.url
        ))
        .bearer_auth("adm_h")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // Echo bounded.
    let mut e = event("x", T0_MS);
    e["event_id"] = json!("i".repeat(200));
    e["event_time"] = json!("not a time");
    let (s, v) = d.post(&e).await;
    assert_eq!(s, 400);
    let echoed = v["rejected"][0]["event_id"].as_str().unwrap();
    assert_eq!(
        echoed.chars().count(),
        129,
        "128 characters and an ellipsis"
    );
    // A 1 MB email: refused, and the answer stays small.
    let mut e = event("big", T0_MS);
    e["user_data"]["email"] = json!(format!("{}@example.com", "a".repeat(2000)));
    let (s, v) = d.post(&e).await;
    assert_eq!(
        (s, v["rejected"][0]["error"].as_str()),
        (400, Some("invalid_field"))
    );
    // 401 before 413, and both close the connection.
    let big = vec![b' '; 10_000];
    let (s, h, v) = d
        .post_raw(Some("wrong"), Some("application/json"), big.clone())
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
    assert_eq!(h["connection"], "close");
    let (s, h, v) = d.post_raw(Some(KEY), Some("application/json"), big).await;
    assert_eq!((s, v["error"].as_str()), (413, Some("payload_too_large")));
    assert_eq!(h["connection"], "close");
    let (s, h, _) = d
        .post_raw(
            Some(KEY),
            Some("application/json"),
            serde_json::to_vec(&event("ok1", T0_MS)).unwrap(),
        )
        .await;
    assert_eq!(s, 202);
    assert!(
        h.get("connection").is_none(),
        "a read request keeps its connection"
    );
    d.shutdown().await;
}

/// 14.4: slow clients are cut off (half a header, half a body, nothing at all), and past
/// the cap on open connections a new one is answered 503 with Retry-After instead of
/// being held; the daemon keeps serving.
///
/// No step counts on how fast the machine is: the cap is tested on a daemon whose header
/// timeout (60 s) cannot free a slot meanwhile, once the daemon's own count of open
/// connections says the six silent ones hold every slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_time_out_and_the_connection_cap_answers_503() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The limits come from the config file's [server] keys.
    let start = |dir: std::path::PathBuf, header_timeout: &'static str| async move {
        let text = config_text(&dir, "", "").replace(
            "[server]\nlisten = \"127.0.0.1:0\"",
            &format!("[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 6\nheader_timeout = \"{header_timeout}\"\nbody_timeout = \"300ms\""),
        );
        let cfg = parse(&dir, &text);
        let mut opts = sluice::app::StartOptions::new(cfg);
        opts.listen = Some("127.0.0.1:0".parse().unwrap());
        opts.clock = ManualClock::new(T0_MS);
        assert_eq!(opts.http_limits.max_connections, 6);
        sluice::app::Daemon::start(opts).await.unwrap()
    };
    let read_all = |mut s: tokio::net::TcpStream| async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    // Until the daemon holds `n` client connections open (10 s at most).
    let open_reaches = |daemon: &sluice::app::Daemon, n: usize| {
        let open = daemon.app.open_connections.clone();
        async move {
            let t = Instant::now();
            while open.get() != n {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "{} connections open, waiting for {n}",
                    open.get()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    // Timeouts of 300 ms.
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path().to_path_buf(), "300ms").await;
    let addr = daemon.addr;
    let url = format!("http://{addr}");
    let http = reqwest::Client::new();
    wait_http_ready(&http, &url).await;
    // Half a header: closed after the header timeout, without an answer of ours.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let _ = read_all(s).await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "closed: {:?}",
        t.elapsed()
    );
    // Half a body: 408 after the body timeout.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"event").as_bytes()).await.unwrap();
    let answer = read_all(s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // Six silent connections, as many as the cap, once the slots of the ones above are
    // free (and the client's idle one timed out): the header timeout closes each
    // without an answer and frees its slot; served again.
    open_reaches(&daemon, 0).await;
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    for mut s in held {
        let mut out = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(
            matches!(r, Ok(Ok(0))),
            "a silent connection is closed without an answer: {r:?} {}",
            String::from_utf8_lossy(&out)
        );
    }
    open_reaches(&daemon, 0).await;
    let r = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    daemon.shutdown().await;

    // The cap, with a header timeout that frees no slot while the test runs.
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path().to_path_buf(), "60s").await;
    let addr = daemon.addr;
    let url = format!("http://{addr}");
    // No idle connection kept (it would hold a slot for the 60 s).
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    wait_http_ready(&http, &url).await;
    open_reaches(&daemon, 0).await;
    // Six silent connections take every slot; the seventh is told to come back.
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    open_reaches(&daemon, 6).await;
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = read_all(s).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("\"error\":\"overloaded\""), "{answer}");
    // The refused one took no slot; once the silent ones go, their slots are free:
    // served again.
    assert_eq!(daemon.app.open_connections.get(), 6);
    drop(held);
    open_reaches(&daemon, 0).await;
    let r = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    daemon.shutdown().await;
}

/// The client limits are config keys with defaults (10 s, 30 s, the open-file limit less
/// 256) and ranges; a value out of range names its key.
#[test]
fn client_limits_are_config_keys_with_defaults_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let base = config_text(dir.path(), "", "");
    let limits = |extra: &str| {
        let text = base.replace(
            "[server]\nlisten = \"127.0.0.1:0\"",
            &format!("[server]\nlisten = \"127.0.0.1:0\"\n{extra}"),
        );
        let path = dir.path().join("sluice.toml");
        sluice::config::parse(&text, Some(&path), &|_| None)
            .map(|c| sluice::api::serve::Limits::of(&c.server))
            .map_err(|e| e.to_string())
    };
    let d = limits("").unwrap();
    assert_eq!(d.header_timeout, std::time::Duration::from_secs(10));
    assert_eq!(d.body_timeout, std::time::Duration::from_secs(30));
    assert_eq!(
        d.max_connections,
        sluice::api::serve::default_max_connections()
    );
    let l =
        limits("header_timeout = \"2s\"\nbody_timeout = \"1m\"\nmax_connections = 900").unwrap();
    assert_eq!(l.header_timeout, std::time::Duration::from_secs(2));
    assert_eq!(l.body_timeout, std::time::Duration::from_secs(60));
    assert_eq!(l.max_connections, 900);
    for (bad, key) in [
        ("header_timeout = \"10ms\"", "server.header_timeout"),
        ("body_timeout = \"2h\"", "server.body_timeout"),
        ("max_connections = 0", "server.max_connections"),
    ] {
        let e = limits(bad).unwrap_err();
        assert!(e.contains(key), "{bad}: {e}");
    }
}

/// DLQ routes answer 404 for a destination that is neither configured nor in the store,
/// as replay does: discard answered `200 {"would_discard": 0}` and list an empty page.
#[tokio::test]
async fn dlq_routes_refuse_an_unknown_destination() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "").replace(
        "[server]\nlisten = \"127.0.0.1:0\"",
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"adm_h\"",
    );
    let d = TestDaemon::start(dir.path(), &text).await;
    for dry_run in [true, false] {
        for (dest, want) in [("nope", 404), ("hooks_glasshouse", 200)] {
            let (s, v) = admin_post(
                &d,
                "/v1/dlq/discard",
                json!({"destination": dest, "dry_run": dry_run}),
            )
            .await;
            assert_eq!(s, want, "discard {dest} dry_run={dry_run}: {v}");
            if want == 404 {
                assert_eq!(v["error"], "not_found");
            }
        }
    }
    let r = d
        .http
        .get(format!("{}/v1/dlq?destination=nope", d.url))
        .bearer_auth("adm_h")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (s, _) = admin_post(&d, "/v1/dlq/replay", json!({"destination": "nope"})).await;
    assert_eq!(s, 404);
    d.shutdown().await;
}

/// The admin_disabled answer says what is missing: the variable admin_token_env names
/// was not exported when the daemon started, and a restart (not a reload) fixes it.
#[tokio::test]
async fn admin_disabled_names_the_unset_variable_and_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "").replace(
        "[server]\nlisten = \"127.0.0.1:0\"",
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token_env = \"SLUICE_TEST_NEVER_SET_TOKEN\"",
    );
    let d = TestDaemon::start(dir.path(), &text).await;
    let r = d
        .http
        .get(format!("{}/v1/destinations", d.url))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "admin_disabled");
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("SLUICE_TEST_NEVER_SET_TOKEN"), "{m}");
    assert!(m.contains("was not set in the daemon's environment"), "{m}");
    assert!(
        m.contains("a reload does not read the environment again"),
        "{m}"
    );
    d.shutdown().await;
}
