//! Delivery (SPEC §3) against the platform simulators, under a manual clock that also
//! drives linger, retry due times, throttle holds, latency and timeouts.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::{Clock, ManualClock};
use sluice::config::Platform;
use sluice::sim::{Fault, FaultScript, RetryAfter, Rule};

const ADMIN: &str = "admin_test_token";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Lets the daemon run for a moment of real time without moving the clock.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(60)).await;
}

fn base_config(dir: &std::path::Path, destinations: &str) -> String {
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
{destinations}
"#,
        store = dir.join("sluice.redb").display()
    )
}

fn webhook(id: &str, url: &str, extra: &str) -> String {
    format!(
        r#"
[[destinations]]
id = "{id}"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{url}/hook"
credentials = {{ signing_secret = "{WHSEC}" }}
{extra}
"#
    )
}

#[tokio::test]
async fn webhook_delivers_after_linger_with_signature() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim_on(Platform::Webhook, &clock, FaultScript::none()).await;
    let text = base_config(dir.path(), &webhook("hooks", &hook.url(), ""));
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    assert_eq!(
        d.post(&batch((0..3).map(|i| format!("w{i}")), T0_MS))
            .await
            .1["accepted"],
        3
    );
    // One event per webhook request: every batch is full, so nothing lingers.
    settled_at(&d, "hooks", &hook, 3).await;
    let got = hook.received();
    for r in &got {
        assert_eq!(r.status, 200);
        assert_eq!(r.at_ms, T0_MS);
        let id = r.body["event_id"].as_str().unwrap();
        assert_eq!(r.header("webhook-id").unwrap(), format!("Purchase:{id}"));
        assert_eq!(r.body["merchant_id"], "glasshouse");
        assert_eq!(r.body["destination_id"], "hooks");
        assert_eq!(r.body["event_time"], T0_MS / 1000);
        assert_eq!(r.body["user_data"]["client_ip_address"], "203.0.113.9");
        assert_eq!(
            r.body["user_data"]["email_sha256"],
            sha256_hex("buyer@example.com")
        );
        assert!(r.body["user_data"].get("email").is_none());
    }
    let dests = admin_get(&d, "/v1/destinations").await;
    let h = &dests["destinations"][0];
    assert_eq!(h["destination_id"], "hooks");
    assert_eq!(h["state"], "active");
    assert_eq!(h["queue_depth"], 0);
    assert_eq!(h["dlq_depth"], 0);
    d.shutdown().await;
}

#[tokio::test]
async fn retry_ladder_is_exact_then_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim_on(
        Platform::Webhook,
        &clock,
        FaultScript::always(Fault::Transient),
    )
    .await;
    let text = base_config(dir.path(), &webhook("hooks", &hook.url(), ""));
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&event("ladder", T0_MS)).await;
    settled_at(&d, "hooks", &hook, 1).await;
    let mut expect_at = T0_MS;
    // Retries 1..8 due 1, 2, 4 … 128 s after each failure: 255 s in all.
    for n in 1..=8u32 {
        let delay = 1000i64 << (n - 1);
        clock.advance_ms(delay - 1);
        settle().await;
        assert_eq!(hook.count(), n as usize, "retry {n} sent early");
        clock.advance_ms(1);
        expect_at += delay;
        settled_at(&d, "hooks", &hook, n as usize + 1).await;
        assert_eq!(hook.received()[n as usize].at_ms, expect_at);
    }
    assert_eq!(expect_at - T0_MS, 255_000);
    let dlq = dlq_with(&d, "hooks", 1).await;
    let e = &dlq["entries"][0];
    assert_eq!(e["error_class"], "retries_exhausted");
    assert_eq!(e["retries"], 8);
    assert_eq!(e["status"], 503);
    assert_eq!(e["event"]["event_id"], "ladder");
    assert_eq!(e["destination_id"], "hooks");
    assert_eq!(dlq["next_cursor"], Value::Null);
    // Nothing more is sent.
    clock.advance_ms(3_600_000);
    settle().await;
    assert_eq!(hook.count(), 9);
    d.shutdown().await;
}

/// The DLQ listing once it holds `n` entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_holds_the_scope_and_uses_no_retry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let script = FaultScript::none().with(Rule::Range {
        from: 1,
        to: 1,
        fault: Fault::Throttle {
            retry_after: Some(RetryAfter::Seconds(30)),
        },
    });
    let hook = sim_on(Platform::Webhook, &clock, script).await;
    let text = base_config(dir.path(), &webhook("hooks", &hook.url(), ""));
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&event("t1", T0_MS)).await;
    settled_at(&d, "hooks", &hook, 1).await;
    assert_eq!(hook.received()[0].status, 429);
    clock.advance_ms(29_999);
    settle().await;
    assert_eq!(hook.count(), 1, "sent during the hold");
    clock.advance_ms(1);
    eventually("delivery after the hold", || hook.count() == 2).await;
    assert_eq!(hook.received()[1].status, 200);
    assert_eq!(hook.received()[1].at_ms, T0_MS + 30_000);
    let dlq = admin_get(&d, "/v1/dlq?destination=hooks").await;
    assert_eq!(dlq["entries"], json!([]));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_requeue_without_retry_count_or_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let script = FaultScript::none().with(Rule::Range {
        from: 1,
        to: 2,
        fault: Fault::Auth,
    });
    let hook = sim_on(Platform::Webhook, &clock, script).await;
    // No retries at all: a retryable failure would dead-letter at once; auth must not.
    let text = base_config(
        dir.path(),
        &webhook(
            "hooks",
            &hook.url(),
            "policy = { retry = { max_retries = 0 } }",
        ),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&event("a1", T0_MS)).await;
    // Each auth failure holds the destination for `retry.base` (1 s), then resends.
    for n in 1..=2 {
        settled_at(&d, "hooks", &hook, n).await;
        assert_eq!(hook.received()[n - 1].status, 401);
        assert_eq!(hook.received()[n - 1].at_ms, T0_MS + 1000 * (n as i64 - 1));
        clock.advance_ms(1000);
    }
    settled_at(&d, "hooks", &hook, 3).await;
    assert_eq!(hook.received()[2].status, 200);
    assert_eq!(hook.received()[2].body["event_id"], "a1");
    assert_eq!(
        admin_get(&d, "/v1/dlq?destination=hooks").await["entries"],
        json!([])
    );
    assert_eq!(
        admin_get(&d, "/v1/destinations/hooks").await["state"],
        "active"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_goes_to_dlq_and_replay_keeps_ids_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let script = FaultScript::none().with(Rule::Range {
        from: 1,
        to: 1,
        fault: Fault::Invalid,
    });
    let hook = sim_on(Platform::Webhook, &clock, script).await;
    let text = base_config(dir.path(), &webhook("hooks", &hook.url(), ""));
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&event("r1", T0_MS - 5000)).await;
    settled_at(&d, "hooks", &hook, 1).await;
    let dlq = dlq_with(&d, "hooks", 1).await;
    let e = &dlq["entries"][0];
    assert_eq!(e["error_class"], "rejected");
    assert_eq!(e["status"], 400);
    assert_eq!(e["retries"], 0);
    assert!(!e["response_body"].as_str().unwrap().is_empty());
    assert_eq!(e["first_seen_at"], "2026-11-02T12:00:00.000Z");
    assert_eq!(e["last_attempt_at"], "2026-11-02T12:00:00.000Z");
    let dests = admin_get(&d, "/v1/destinations/hooks").await;
    assert_eq!(dests["dlq_depth"], 1);
    // A dry run changes nothing.
    let (s, v) = admin_post(
        &d,
        "/v1/dlq/replay",
        json!({"destination": "hooks", "dry_run": true}),
    )
    .await;
    assert_eq!((s, v), (200, json!({"would_replay": 1, "expired": 0})));
    // A window that excludes it matches nothing (`to` is exclusive).
    let (s, v) = admin_post(
        &d,
        "/v1/dlq/replay",
        json!({"destination": "hooks", "to": "2026-11-02T12:00:00Z"}),
    )
    .await;
    assert_eq!((s, v), (200, json!({"replayed": 0, "expired_skipped": 0})));
    let (s, v) = admin_post(
        &d,
        "/v1/dlq/replay",
        json!({"destination": "hooks", "from": "2026-11-02T12:00:00Z"}),
    )
    .await;
    assert_eq!((s, v), (200, json!({"replayed": 1, "expired_skipped": 0})));
    eventually("replayed delivery", || hook.count() == 2).await;
    let r = &hook.received()[1];
    assert_eq!(r.status, 200);
    assert_eq!(r.body["event_id"], "r1");
    assert_eq!(r.body["event_time"], (T0_MS - 5000) / 1000);
    assert_eq!(r.header("webhook-id").unwrap(), "Purchase:r1");
    assert_eq!(
        admin_get(&d, "/v1/dlq?destination=hooks").await["entries"],
        json!([])
    );
    // Replays are audited (dry runs are not); so are discards (see below).
    let audit = admin_get(&d, "/v1/audit?type=dlq_replay").await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{audit}");
    assert_eq!(events[0]["actor"], "api_user");
    assert_eq!(events[0]["resource_id"], "hooks");
    assert_eq!(
        events[0]["details"],
        json!({"destination_id": "hooks", "from": "2026-11-02T12:00:00.000Z", "to": null, "replayed": 1, "expired_skipped": 0})
    );
    assert_eq!(events[1]["details"]["replayed"], 0);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_drops_entries() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim_on(
        Platform::Webhook,
        &clock,
        FaultScript::always(Fault::Invalid),
    )
    .await;
    let text = base_config(dir.path(), &webhook("hooks", &hook.url(), ""));
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&batch((0..3).map(|i| format!("x{i}")), T0_MS)).await;
    clock.advance_ms(1000);
    dlq_with(&d, "hooks", 3).await;
    let v = admin_get(&d, "/v1/dlq?destination=hooks&limit=2").await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    let next = v["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let page2 = admin_get(
        &d,
        &format!("/v1/dlq?destination=hooks&limit=2&cursor={next}"),
    )
    .await;
    assert_eq!(page2["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page2["next_cursor"], Value::Null);
    let ids: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["entries"].as_array().unwrap())
        .map(|e| e["event"]["event_id"].as_str().unwrap())
        .collect();
    let mut ids = ids;
    ids.sort_unstable();
    assert_eq!(ids, ["x0", "x1", "x2"]);
    let (s, v) = admin_post(&d, "/v1/dlq/discard", json!({"destination": "hooks"})).await;
    assert_eq!((s, v), (200, json!({"discarded": 3})));
    let audit = admin_get(&d, "/v1/audit?type=dlq_discard").await;
    assert_eq!(audit["events"][0]["details"]["discarded"], 3);
    assert_eq!(admin_get(&d, "/v1/audit/verify").await["ok"], true);
    assert_eq!(
        admin_get(&d, "/v1/dlq?destination=hooks").await["entries"],
        json!([])
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_destination_does_not_delay_a_healthy_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let slow = sim_on(
        Platform::Webhook,
        &clock,
        FaultScript::none().with_latency(5000),
    )
    .await;
    let fast = sim_on(Platform::Webhook, &clock, FaultScript::none()).await;
    let text = base_config(
        dir.path(),
        &(webhook("slow", &slow.url(), "") + &webhook("fast", &fast.url(), "")),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    for chunk in 0..4 {
        d.post(&batch(
            (0..10).map(|i| format!("iso{chunk}_{i}")),
            clock.now_ms(),
        ))
        .await;
    }
    // The healthy one delivers its whole stream at once, the clock standing still...
    eventually("fast delivered all 40", || {
        fast.received().iter().filter(|r| r.status == 200).count() == 40
    })
    .await;
    assert!(fast.received().iter().all(|r| r.at_ms == T0_MS));
    // ...while the slow one has only its 4 in-flight requests out.
    settle().await;
    assert_eq!(slow.count(), 4);
    // Each 5 s step completes 4 more; the whole slow stream takes 10 steps.
    for step in 1..=10 {
        let arrived = (4 * step).min(40);
        eventually("slow's next four arrived", || slow.count() == arrived).await;
        clock.advance_ms(5000);
        eventually("slow's next four answered", || {
            slow.received().iter().filter(|r| r.status == 200).count() == 4 * step
        })
        .await;
    }
    assert_eq!(slow.count(), 40);
    d.shutdown().await;
    slow.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_batch_with_an_invalid_event_is_bisected() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let meta = sim_on(Platform::Meta, &clock, FaultScript::none()).await;
    let dest = format!(
        r#"
[[destinations]]
id = "meta_gh"
workspace = "glasshouse"
platform = "meta"
endpoint = "{}"
params = {{ pixel_id = "1234567890" }}
credentials = {{ access_token = "EAAB-secret-token" }}
"#,
        meta.url()
    );
    let text = base_config(dir.path(), &dest);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let mut events: Vec<Value> = (0..8).map(|i| event(&format!("m{i}"), T0_MS)).collect();
    events[5]["event_name"] = json!("Invalid");
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 8);
    clock.advance_ms(1000);
    // 8 → 4+4 → (4 ok) 2+2 → (2 ok) 1+1: 1 rejected, 7 delivered.
    eventually("bisection done", || {
        (0..8)
            .filter(|i| *i != 5)
            .all(|i| meta.accepted_event(&format!("m{i}")) == 1)
    })
    .await;
    let dlq = dlq_with(&d, "meta_gh", 1).await;
    assert_eq!(dlq["entries"][0]["event"]["event_id"], "m5");
    assert_eq!(dlq["entries"][0]["error_class"], "rejected");
    assert_eq!(meta.accepted_event("m5"), 0);
    let body = dlq["entries"][0]["response_body"].as_str().unwrap();
    assert!(!body.contains("EAAB-secret-token"), "{body}");
    // The token rides in the query string; it never shows in the API.
    let all = admin_get(&d, "/v1/destinations").await.to_string();
    assert!(!all.contains("EAAB-secret-token"));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_near_the_age_limit_expire_without_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let meta = sim_on(Platform::Meta, &clock, FaultScript::none()).await;
    let dest = format!(
        r#"
[[destinations]]
id = "meta_gh"
workspace = "glasshouse"
platform = "meta"
endpoint = "{}"
params = {{ pixel_id = "1234567890" }}
credentials = {{ access_token = "tok" }}
"#,
        meta.url()
    );
    let d = TestDaemon::start_with(
        dir.path(),
        &base_config(dir.path(), &dest),
        clock.clone(),
        None,
    )
    .await;
    let week = 7 * 24 * 3600 * 1000;
    // 5 minutes short of 7 days: inside the 10-minute margin.
    d.post(&event("old", T0_MS - week + 5 * 60_000)).await;
    // Days past the limit already: accepted (202), expired, and the entry says how far.
    let (s, _) = d
        .post(&event("ancient", T0_MS - week - (3 * 24 + 2) * 3_600_000))
        .await;
    assert_eq!(s, 202);
    d.post(&event("fresh", T0_MS)).await;
    clock.advance_ms(1000);
    eventually("fresh delivered", || meta.accepted_event("fresh") == 1).await;
    assert_eq!(meta.count_event("old"), 0);
    assert_eq!(meta.count_event("ancient"), 0);
    let dlq = dlq_with(&d, "meta_gh", 2).await;
    let entries = dlq["entries"].as_array().unwrap();
    let by_id = |id: &str| {
        entries
            .iter()
            .find(|e| e["event"]["event_id"] == id)
            .unwrap()
            .clone()
    };
    let old = by_id("old");
    assert_eq!(old["error_class"], "expired");
    assert_eq!(old["status"], Value::Null);
    assert_eq!(
        old["response_body"],
        "the event is within 10m of the platform's age limit (7d after event_time): it would arrive too late"
    );
    let ancient = by_id("ancient");
    assert_eq!(ancient["error_class"], "expired");
    assert_eq!(
        ancient["response_body"],
        "the event is 3d 2h past the platform's age limit (7d after event_time)"
    );
    // Both were that old when accepted: counted as stale on arrival.
    let text = d.metrics_text().await;
    assert!(
        text.contains(
            "sluice_events_stale_on_arrival_total{destination=\"meta_gh\",platform=\"meta\",merchant=\"glasshouse\"} 2\n"
        ),
        "{text}"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_pacing_never_trips_the_sliding_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let tt = sim_on(Platform::Tiktok, &clock, FaultScript::none()).await;
    let dest = format!(
        r#"
[[destinations]]
id = "tt"
workspace = "glasshouse"
platform = "tiktok"
endpoint = "{}"
params = {{ pixel_code = "C123" }}
credentials = {{ access_token = "tt-token" }}
policy = {{ max_batch = 1, linger = "0s", concurrency = 8 }}
"#,
        tt.url()
    );
    let d = TestDaemon::start_with(
        dir.path(),
        &base_config(dir.path(), &dest),
        clock.clone(),
        None,
    )
    .await;
    let n = 1500;
    for chunk in 0..(n / 500) {
        let (s, _) = d
            .post(&batch((0..500).map(|i| format!("p{chunk}_{i}")), T0_MS))
            .await;
        assert_eq!(s, 202);
    }
    // Drive the clock in 500 ms steps; after each, let the worker send all the pacer
    // allows and see every answer before the clock moves again.
    let app = d.daemon.as_ref().unwrap().app.clone();
    for _ in 0..400 {
        clock.advance_ms(500);
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let answered = tt.received().iter().filter(|r| r.status != 0).count();
            let idle = app
                .engine
                .snapshot("tt")
                .is_some_and(|s| s.requests_in_flight == 0 && s.unsettled == 0);
            if idle && answered == last {
                break;
            }
            last = answered;
        }
        if tt.count() >= n {
            break;
        }
    }
    eventually("all delivered", || {
        tt.received().iter().filter(|r| r.accepted).count() == n
    })
    .await;
    let got = tt.received();
    assert!(
        got.iter().all(|r| r.accepted),
        "the simulator throttled a request"
    );
    // Never more than 600 in any 60 s window of arrival times (the pacer aims at 588 by
    // send time; a request sent just before the test moves the clock arrives after).
    let times: Vec<i64> = got.iter().map(|r| r.at_ms).collect();
    let mut busiest = 0;
    for (i, t) in times.iter().enumerate() {
        let inside = times[i..].iter().take_while(|&&s| s < t + 60_000).count();
        busiest = busiest.max(inside);
    }
    assert!(busiest <= 600, "{busiest} requests in one minute");
    assert!(
        busiest >= 580,
        "paced far below the limit: {busiest} in the busiest minute"
    );
    d.shutdown().await;
}

/// `sluice simulate`'s run-time fault control (issue 19): `POST /_sim/faults` replaces
/// the script (status, rate or count, Retry-After, latency), and each request records
/// the error body answered, which the CLI prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_faults_change_at_run_time_and_error_bodies_are_kept() {
    let clock = ManualClock::new(T0_MS);
    let hook = sim_on(Platform::Webhook, &clock, FaultScript::none()).await;
    let http = reqwest::Client::new();
    let control = |body: Value| {
        let http = http.clone();
        let url = format!("{}/_sim/faults", hook.url());
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let send = || {
        let http = http.clone();
        let url = format!("{}/hook", hook.url());
        async move {
            http.post(url)
                .json(&json!({"events": []}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Off by default: an embedded simulator's paths are all the platform's.
    control(json!({"fault": "status:503", "count": 2})).await;
    assert_eq!(send().await, 200, "the script did not change");
    hook.clear_received();
    hook.enable_control();
    let (s, v) = control(json!({"fault": "status:503", "count": 2})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!([send().await, send().await, send().await], [503, 503, 200]);
    let got = hook.received();
    assert_eq!(got[0].error_body.as_deref(), Some("Server Error"));
    assert_eq!(got[2].error_body, None);
    // A rate: every 2nd request throttled with Retry-After.
    let (s, _) = control(json!({"fault": "throttle", "fail_every": 2, "retry_after": 7})).await;
    assert_eq!(s, 200);
    assert_eq!(send().await, 200);
    let r = http
        .post(format!("{}/hook", hook.url()))
        .json(&json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    // Bad input: 400 with why; `{}` clears every fault.
    let (s, v) = control(json!({"fault": "nope", "count": 1})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = control(json!({"fail_every": 0})).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("fail_every must be at least 1"))
    );
    let (s, _) = control(json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(send().await, 200);
    hook.shutdown().await;
}
