//! The event trace (`GET /v1/events/{event_id}`): an event followed to each fate at
//! the destinations of its workspace, with the simulators' request ids, after a
//! restart and after the log behind it was trimmed.

use std::sync::Arc;

use crate::common::*;
use serde_json::Value;
use sluice::clock::{Clock, ManualClock};
use sluice::config::Platform;
use sluice::sim::{self, Fault, FaultScript, SimServer};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn hook(clock: &Arc<ManualClock>, script: FaultScript) -> SimServer {
    sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        script,
    )
    .await
    .unwrap()
}

fn dest(id: &str, url: &str, extra: &str) -> String {
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

fn config(dir: &std::path::Path, dests: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "admin_test_token"

[storage]
path = "{}"

[[workspaces]]
id = "glasshouse"
plan = "enterprise"
ingest_keys = ["{KEY}"]
{dests}
"#,
        dir.join("sluice.redb").display()
    )
}

async fn trace(d: &TestDaemon, id: &str) -> (u16, Value) {
    let r = d
        .http
        .get(format!("{}/v1/events/{id}?workspace=glasshouse", d.url))
        .bearer_auth("admin_test_token")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    sluice_cli(url, "admin_test_token", args).await
}

/// The fate of the (one) event at `dest`.
fn at<'a>(t: &'a Value, dest: &str) -> &'a Value {
    assert_eq!(t["events"].as_array().unwrap().len(), 1, "{t}");
    t["events"][0]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["destination_id"] == dest)
        .unwrap_or_else(|| panic!("no {dest} in {t}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_traced_to_each_fate_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let ok = hook(&clock, FaultScript::none()).await;
    let flaky = hook(&clock, FaultScript::always(Fault::Transient)).await;
    let bad = hook(&clock, FaultScript::always(Fault::Invalid)).await;
    let held = hook(&clock, FaultScript::none()).await;
    let dests = [
        dest("ok", &ok.url(), ""),
        dest("flaky", &flaky.url(), ""),
        dest("bad", &bad.url(), ""),
        dest("views", &ok.url(), r#"events = ["PageView"]"#),
        dest("held", &held.url(), ""),
    ]
    .concat();
    let text = config(dir.path(), &dests);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let (s, _) = admin_post(
        &d,
        "/v1/destinations/held/pause",
        serde_json::json!({"reason": "trace test"}),
    )
    .await;
    assert_eq!(s, 200);
    // Two events ahead of the traced one at the paused destination.
    let now = clock.now_ms();
    assert_eq!(d.post(&batch(["a1".into(), "a2".into()], now)).await.0, 202);
    assert_eq!(d.post(&event("order-1234", now)).await.0, 202);
    eventually("delivered, retried and rejected", || {
        ok.accepted_event("order-1234") == 1
            && flaky.received().iter().filter(|r| r.status != 0).count() == 3
            && bad.received().iter().filter(|r| r.status != 0).count() == 3
    })
    .await;
    let app = d.daemon.as_ref().unwrap().app.clone();
    let settled = || {
        ["ok", "flaky", "bad"].iter().all(|id| {
            app.engine
                .snapshot(id)
                .is_some_and(|s| s.requests_in_flight == 0 && s.unsettled == 0)
        })
    };
    eventually("outcomes committed", settled).await;

    let check = |t: &Value| {
        let e = &t["events"][0];
        assert_eq!(e["event_name"], "Purchase");
        assert_eq!(
            e["event_time"],
            sluice::clock::rfc3339_ms(T0_MS / 1000 * 1000)
        );
        assert_eq!(e["accepted_at"], sluice::clock::rfc3339_ms(T0_MS));
        let f = at(t, "ok");
        assert_eq!(f["fate"], "delivered", "{f}");
        assert_eq!(f["attempts"], 1);
        assert_eq!(f["status"], 200);
        // The webhook simulator's request id (x-request-id), as the platform gives it.
        assert!(f["request_id"].as_str().unwrap().starts_with("sim-"), "{f}");
        let f = at(t, "flaky");
        assert_eq!(f["fate"], "retrying", "{f}");
        assert_eq!(f["attempts"], 1);
        assert_eq!(f["status"], 503);
        assert!(f["next_attempt_at"].as_str().unwrap() > f["at"].as_str().unwrap());
        assert!(f["last_error"].is_string());
        let f = at(t, "bad");
        assert_eq!(f["fate"], "dead_lettered", "{f}");
        assert_eq!(f["class"], "rejected");
        assert_eq!(f["status"], 400);
        assert!(f["dlq_id"].as_u64().is_some());
        let f = at(t, "views");
        assert_eq!(f["fate"], "not_routed", "{f}");
        assert_eq!(f["reason"], "the destination's events filter");
        let f = at(t, "held");
        assert_eq!(f["fate"], "queued", "{f}");
        assert_eq!(f["destination_state"], "paused");
        assert_eq!(f["ahead"], 2);
    };
    let (s, t) = trace(&d, "order-1234").await;
    assert_eq!(s, 200, "{t}");
    check(&t);
    // The DLQ id is the entry's.
    let dlq = admin_get(&d, "/v1/dlq?destination=bad").await;
    let ids: Vec<u64> = dlq["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.contains(&at(&t, "bad")["dlq_id"].as_u64().unwrap()),
        "{dlq}"
    );

    // Unknown ids and workspaces are 404; no workspace is a 400.
    assert_eq!(trace(&d, "order-9999").await.0, 404);
    let r = d
        .http
        .get(format!("{}/v1/events/order-1234?workspace=nope", d.url))
        .bearer_auth("admin_test_token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = d
        .http
        .get(format!("{}/v1/events/order-1234", d.url))
        .bearer_auth("admin_test_token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = d
        .http
        .get(format!(
            "{}/v1/events/order-1234?workspace=glasshouse",
            d.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The CLI: a table with each fate, exit 1 for an id the store does not know.
    let (code, out, err) = cli(
        &d.url,
        &["events", "trace", "order-1234", "--workspace", "glasshouse"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Purchase order-1234 in glasshouse: event time "),
        "{out}"
    );
    for (dest, fate) in [
        ("ok", "delivered"),
        ("flaky", "retrying"),
        ("bad", "dead_lettered"),
        ("views", "not_routed"),
        ("held", "queued"),
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(dest) && l.contains(fate)),
            "{dest} {fate}: {out}"
        );
    }
    assert!(out.contains("2 ahead, destination paused"), "{out}");
    let (code, _, err) = cli(
        &d.url,
        &["events", "trace", "nope", "--workspace", "glasshouse"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("not_found (404)"), "{err}");

    // The same after a restart.
    let d = d.restart(&text).await;
    let (s, t) = trace(&d, "order-1234").await;
    assert_eq!(s, 200, "{t}");
    check(&t);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_event_is_traced_after_its_log_was_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let ok = hook(&clock, FaultScript::none()).await;
    let text = config(dir.path(), &dest("ok", &ok.url(), ""));
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let now = clock.now_ms();
    // Two requests: trimming keeps the last chunk of a log (its numbering), the first
    // one goes.
    assert_eq!(d.post(&event("order-7", now)).await.0, 202);
    assert_eq!(d.post(&event("order-8", now)).await.0, 202);
    eventually("delivered", || {
        ok.accepted_event("order-7") == 1 && ok.accepted_event("order-8") == 1
    })
    .await;
    let app = d.daemon.as_ref().unwrap().app.clone();
    eventually("committed", || {
        app.engine
            .snapshot("ok")
            .is_some_and(|s| s.requests_in_flight == 0 && s.unsettled == 0 && s.cursor > 2)
    })
    .await;
    let passes = app
        .engine
        .housekeeping_passes
        .load(std::sync::atomic::Ordering::SeqCst);
    clock.advance_ms(61_000);
    eventually("a housekeeping pass", || {
        app.engine
            .housekeeping_passes
            .load(std::sync::atomic::Ordering::SeqCst)
            > passes
    })
    .await;
    // The log no longer holds it.
    let view = app.intake.store.view().unwrap();
    let left: Vec<u64> = view
        .log("glasshouse", 1, 10)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(left, vec![2], "order-7 (1) trimmed, the last chunk kept");
    drop(view);
    let (s, t) = trace(&d, "order-7").await;
    assert_eq!(s, 200, "{t}");
    let e = &t["events"][0];
    assert_eq!(
        e["event_time"],
        sluice::clock::rfc3339_ms(T0_MS / 1000 * 1000)
    );
    let f = at(&t, "ok");
    assert_eq!(f["fate"], "delivered", "{f}");
    assert!(f["request_id"].as_str().unwrap().starts_with("sim-"));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_unsendable_events_are_traced_with_their_dlq_entries() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let ok = hook(&clock, FaultScript::none()).await;
    let meta = sim::start(
        Platform::Meta,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::none(),
    )
    .await
    .unwrap();
    let dests = [
        dest("young", &ok.url(), r#"policy = { age_limit = "1h" }"#),
        format!(
            r#"
[[destinations]]
id = "meta_gh"
workspace = "glasshouse"
platform = "meta"
endpoint = "{}"
params = {{ pixel_id = "1234567890" }}
credentials = {{ access_token = "tok" }}
policy = {{ linger = "0s" }}
"#,
            meta.url()
        ),
    ]
    .concat();
    let text = config(dir.path(), &dests);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let now = clock.now_ms();
    // Two hours old: past `young`'s one-hour age limit, inside Meta's seven days.
    assert_eq!(d.post(&event("old-1", now - 2 * 3_600_000)).await.0, 202);
    // Nothing Meta can match a person with (an IP without a user agent).
    let mut anon = event("anon-1", now);
    anon["user_data"] = serde_json::json!({"client_ip_address": "203.0.113.9"});
    assert_eq!(d.post(&anon).await.0, 202);
    eventually("the other fates delivered", || {
        ok.accepted_event("anon-1") == 1 && meta.accepted_event("old-1") == 1
    })
    .await;
    let young = dlq_with(&d, "young", 1).await;
    let meta_dlq = dlq_with(&d, "meta_gh", 1).await;
    let app = d.daemon.as_ref().unwrap().app.clone();
    eventually("committed", || {
        ["young", "meta_gh"].iter().all(|id| {
            app.engine
                .snapshot(id)
                .is_some_and(|s| s.requests_in_flight == 0 && s.unsettled == 0)
        })
    })
    .await;
    let dlq_id = |v: &Value| -> u64 { v["entries"][0]["id"].as_str().unwrap().parse().unwrap() };

    let (s, t) = trace(&d, "old-1").await;
    assert_eq!(s, 200, "{t}");
    let f = at(&t, "young");
    assert_eq!(f["fate"], "expired", "{f}");
    assert_eq!(f["class"], "expired");
    assert_eq!(f["attempts"], 0, "never sent");
    assert_eq!(f["dlq_id"].as_u64(), Some(dlq_id(&young)));
    assert_eq!(at(&t, "meta_gh")["fate"], "delivered");

    let (s, t) = trace(&d, "anon-1").await;
    assert_eq!(s, 200, "{t}");
    let f = at(&t, "meta_gh");
    assert_eq!(f["fate"], "unsendable", "{f}");
    assert_eq!(f["class"], "unsendable");
    assert_eq!(f["attempts"], 0, "never sent");
    assert_eq!(f["dlq_id"].as_u64(), Some(dlq_id(&meta_dlq)));
    assert_eq!(at(&t, "young")["fate"], "delivered");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_added_later_says_the_event_was_not_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let ok = hook(&clock, FaultScript::none()).await;
    let text = config(dir.path(), &dest("ok", &ok.url(), ""));
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    assert_eq!(d.post(&event("before-1", clock.now_ms())).await.0, 202);
    eventually("delivered", || ok.accepted_event("before-1") == 1).await;
    let more = config(
        dir.path(),
        &[dest("ok", &ok.url(), ""), dest("later", &ok.url(), "")].concat(),
    );
    let d = d.restart(&more).await;
    let app = d.daemon.as_ref().unwrap().app.clone();
    eventually("the new destination positioned", || {
        app.engine.snapshot("later").is_some()
    })
    .await;
    let (s, t) = trace(&d, "before-1").await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(at(&t, "ok")["fate"], "delivered");
    let f = at(&t, "later");
    assert_eq!(f["fate"], "not_routed", "{f}");
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .contains("accepted before it was added"),
        "{f}"
    );
    assert_eq!(ok.accepted_event("before-1"), 1, "never sent to `later`");
    d.shutdown().await;
}
