//! "Where is my event?" (issue 15): each destination's request log (exact rows against
//! the simulators, the ring's wrap at `storage.request_log`, a restart, `0` = off, what
//! an excerpt may never hold), the DLQ's reason and event-id filters and its summary,
//! and their CLI. Time runs on the manual clock; real time is only waited on for work
//! to land.

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::{ManualClock, rfc3339_ms};
use sluice::config::Platform;
use sluice::sim::{Fault, FaultScript, Rule};

const ADMIN: &str = "admin_reqlog_token";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const META_TOKEN: &str = "EAAB-reqlog-secret-token-9f2c";

fn config(dir: &std::path::Path, storage_extra: &str, destinations: &str) -> String {
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
{destinations}
"#,
        store = dir.join("sluice.redb").display()
    )
}

/// A webhook destination sending one request at a time (so requests, and the sim's
/// request numbers, follow the log's order).
fn webhook(id: &str, url: &str, policy: &str) -> String {
    format!(
        r#"
[[destinations]]
id = "{id}"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{url}/hook"
credentials = {{ signing_secret = "{WHSEC}" }}
policy = {{ concurrency = 1{policy} }}
"#
    )
}

fn meta(id: &str, url: &str) -> String {
    format!(
        r#"
[[destinations]]
id = "{id}"
workspace = "glasshouse"
platform = "meta"
endpoint = "{url}"
params = {{ pixel_id = "1234567890" }}
credentials = {{ access_token = "{META_TOKEN}" }}
policy = {{ concurrency = 1 }}
"#
    )
}

/// The worker of `dest` has nothing in flight or uncommitted.
async fn idle(d: &TestDaemon, dest: &str) {
    let app = d.daemon.as_ref().unwrap().app.clone();
    eventually("worker idle", || {
        app.engine
            .snapshot(dest)
            .is_some_and(|s| s.requests_in_flight == 0 && s.unsettled == 0)
    })
    .await;
}

/// GET an admin route: status and JSON body.
async fn get(d: &TestDaemon, path: &str) -> (u16, Value) {
    let r = d
        .http
        .get(format!("{}{path}", d.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn requests(d: &TestDaemon, dest: &str) -> Vec<Value> {
    let (s, v) = get(d, &format!("/v1/destinations/{dest}/requests")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["destination_id"], dest);
    assert_eq!(v["next_cursor"], Value::Null);
    v["requests"].as_array().unwrap().clone()
}

/// Rows of `dest` in the `request_log` table itself (not through the route).
fn stored_rows(d: &TestDaemon, dest: &str) -> Vec<u64> {
    d.daemon
        .as_ref()
        .unwrap()
        .app
        .intake
        .store
        .read(|txn| {
            let t = txn.open_table(sluice::store::REQUEST_LOG)?;
            let mut out = Vec::new();
            for row in t.range((dest, 0u64)..=(dest, u64::MAX))? {
                out.push(row?.0.value().1);
            }
            Ok(out)
        })
        .unwrap()
}

fn seqs(rows: &[Value]) -> Vec<u64> {
    rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

/// The longest run of hex digits in `s`.
fn longest_hex_run(s: &str) -> usize {
    s.split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// An event of the clock's current second routed only to `dest`.
fn event_to(id: &str, now_ms: i64, dest: &str) -> Value {
    let mut e = event(id, now_ms);
    e["destinations"] = json!([dest]);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_record_delivered_rejected_slow_and_retryable_requests_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    // Request 2 is refused as invalid, 3 answers after 250 ms, 4 is a transient error.
    let script = FaultScript::none()
        .with(Rule::Range {
            from: 2,
            to: 2,
            fault: Fault::Invalid,
        })
        .with(Rule::Range {
            from: 3,
            to: 3,
            fault: Fault::Latency(250),
        })
        .with(Rule::Range {
            from: 4,
            to: 4,
            fault: Fault::Transient,
        });
    let m = sim_on(Platform::Meta, &clock, script).await;
    let text = config(dir.path(), "", &meta("meta_main", &m.url()));
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;

    // 1: three events in one request, sent when the oldest has lingered 1 s.
    let (s, _) = d.post(&batch((0..3).map(|i| format!("m{i}")), T0_MS)).await;
    assert_eq!(s, 202);
    clock.advance_ms(1000);
    settled_at(&d, "meta_main", &m, 1).await;
    // 2: rejected (Meta 400 code 100).
    d.post(&event("m3", d.clock_ms())).await;
    clock.advance_ms(1000);
    settled_at(&d, "meta_main", &m, 2).await;
    // 3: answered 250 ms (of the manual clock) after it was sent.
    d.post(&event("m4", d.clock_ms())).await;
    clock.advance_ms(1000);
    eventually("request 3 at the simulator", || m.count() == 3).await;
    clock.advance_ms(250);
    settled_at(&d, "meta_main", &m, 3).await;
    // 4: a transient error (Meta 503 code 2); its retry is due later and never sent.
    d.post(&event("m5", d.clock_ms())).await;
    clock.advance_ms(1000);
    settled_at(&d, "meta_main", &m, 4).await;

    let got = m.received();
    let rows = requests(&d, "meta_main").await;
    assert_eq!(seqs(&rows), [4, 3, 2, 1], "newest first");
    let want = [
        // (events, status, latency, outcome)
        (3, 200, 0, "delivered"),
        (1, 400, 0, "rejected"),
        (1, 200, 250, "delivered"),
        (1, 503, 0, "retryable"),
    ];
    for (i, (events, status, latency, outcome)) in want.into_iter().enumerate() {
        let r = &rows[3 - i];
        let n = i + 1;
        assert_eq!(r["seq"], n, "{r}");
        assert_eq!(r["sent_at"], rfc3339_ms(got[i].at_ms), "{r}");
        assert_eq!(r["events"], events, "{r}");
        assert_eq!(r["status"], status, "{r}");
        assert_eq!(r["latency_ms"], latency, "{r}");
        assert_eq!(r["outcome"], outcome, "{r}");
        // Meta gives its id in the body (fbtrace_id), as the simulator does.
        assert_eq!(r["request_id"], format!("SimTrace{n}"), "{r}");
        let body: Value = serde_json::from_str(r["response_excerpt"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("excerpt of {n} is the whole (short) answer: {e}: {r}"));
        let trace = body
            .get("fbtrace_id")
            .or_else(|| body["error"].get("fbtrace_id"));
        assert_eq!(trace, Some(&json!(format!("SimTrace{n}"))), "{r}");
    }
    assert_eq!(got[0].at_ms, T0_MS + 1000);
    assert_eq!(got[2].at_ms, T0_MS + 3000);
    let ok: Value = serde_json::from_str(rows[3]["response_excerpt"].as_str().unwrap()).unwrap();
    assert_eq!(ok["events_received"], 3);
    let bad: Value = serde_json::from_str(rows[2]["response_excerpt"].as_str().unwrap()).unwrap();
    assert_eq!(bad["error"]["code"], 100);
    // The rejected event is in the DLQ, the retryable one waits.
    let dlq = dlq_with(&d, "meta_main", 1).await;
    assert_eq!(dlq["entries"][0]["event"]["event_id"], "m3");

    // Pages: two rows, then the rest.
    let (_, p1) = get(&d, "/v1/destinations/meta_main/requests?limit=2").await;
    assert_eq!(seqs(p1["requests"].as_array().unwrap()), [4, 3]);
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let (_, p2) = get(
        &d,
        &format!("/v1/destinations/meta_main/requests?limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(seqs(p2["requests"].as_array().unwrap()), [2, 1]);
    assert_eq!(p2["next_cursor"], Value::Null);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_a_transport_row_without_status_or_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim_on(
        Platform::Webhook,
        &clock,
        FaultScript::range(1, 1, Fault::Timeout),
    )
    .await;
    let text = config(
        dir.path(),
        "",
        &webhook("hooks", &hook.url(), ", timeout = \"2s\""),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&event("slow", T0_MS)).await;
    eventually("the request at the simulator", || hook.count() == 1).await;
    clock.advance_ms(2000);
    idle(&d, "hooks").await;
    eventually("one row", || stored_rows(&d, "hooks").len() == 1).await;
    let rows = requests(&d, "hooks").await;
    assert_eq!(
        rows,
        [json!({
            "seq": 1, "sent_at": rfc3339_ms(T0_MS), "events": 1, "status": null,
            "latency_ms": 2000, "outcome": "transport", "request_id": null,
            "response_excerpt": "timed out after 2000 ms",
        })]
    );
    // The retry, 1 s later, is delivered: the simulator's id comes in x-request-id.
    clock.advance_ms(1000);
    eventually("two rows", || stored_rows(&d, "hooks").len() == 2).await;
    let rows = requests(&d, "hooks").await;
    assert_eq!(rows[0]["status"], 200);
    assert_eq!(rows[0]["outcome"], "delivered");
    assert_eq!(rows[0]["request_id"], "sim-00000002");
    assert_eq!(rows[0]["response_excerpt"], r#"{"ok":true}"#);
    assert_eq!(rows[0]["sent_at"], rfc3339_ms(T0_MS + 3000));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ring_keeps_the_newest_n_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim_on(Platform::Webhook, &clock, FaultScript::none()).await;
    let text = config(
        dir.path(),
        "request_log = 5",
        &webhook("hooks", &hook.url(), ""),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&batch((0..8).map(|i| format!("r{i}")), T0_MS)).await;
    settled_at(&d, "hooks", &hook, 8).await;
    let rows = requests(&d, "hooks").await;
    assert_eq!(seqs(&rows), [8, 7, 6, 5, 4]);
    // Trimmed in the store, not only on the page.
    assert_eq!(stored_rows(&d, "hooks"), [4, 5, 6, 7, 8]);
    for r in &rows {
        let n = r["seq"].as_u64().unwrap();
        assert_eq!(r["request_id"], format!("sim-{n:08}"));
        assert_eq!(
            (r["events"].clone(), r["status"].clone()),
            (json!(1), json!(200))
        );
    }
    let before = rows;

    let d = d.restart(&text).await;
    assert_eq!(
        requests(&d, "hooks").await,
        before,
        "the same rows after a restart"
    );
    // Numbering goes on from the store's last number.
    d.post(&event("r8", d.clock_ms())).await;
    settled_at(&d, "hooks", &hook, 9).await;
    let rows = requests(&d, "hooks").await;
    assert_eq!(seqs(&rows), [9, 8, 7, 6, 5]);
    assert_eq!(rows[0]["request_id"], "sim-00000009");
    assert_eq!(&rows[1..], &before[..4]);

    // A lower limit after a reload trims at the next request.
    let text2 = text.replace("request_log = 5", "request_log = 2");
    std::fs::write(dir.path().join("sluice.toml"), &text2).unwrap();
    let r = d
        .http
        .post(format!("{}/v1/admin/reload", d.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    d.post(&event("r9", d.clock_ms())).await;
    settled_at(&d, "hooks", &hook, 10).await;
    assert_eq!(stored_rows(&d, "hooks"), [9, 10]);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_zero_records_nothing_and_unknown_ids_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim_on(
        Platform::Webhook,
        &clock,
        FaultScript::range(2, 2, Fault::Invalid),
    )
    .await;
    let text = config(
        dir.path(),
        "request_log = 0",
        &webhook("hooks", &hook.url(), ""),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&batch((0..3).map(|i| format!("z{i}")), T0_MS)).await;
    settled_at(&d, "hooks", &hook, 3).await;
    dlq_with(&d, "hooks", 1).await;
    assert_eq!(requests(&d, "hooks").await, Vec::<Value>::new());
    assert_eq!(stored_rows(&d, "hooks"), Vec::<u64>::new());

    let (s, v) = get(&d, "/v1/destinations/nope/requests").await;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = get(&d, "/v1/destinations/hooks/requests?cursor=abc").await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
    let (s, v) = get(&d, "/v1/destinations/hooks/requests?limit=0").await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
    let r = d
        .http
        .get(format!("{}/v1/destinations/hooks/requests", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_destination_keeps_its_log_until_purged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let a = sim_on(Platform::Webhook, &clock, FaultScript::none()).await;
    let b = sim_on(Platform::Webhook, &clock, FaultScript::none()).await;
    let kept = webhook("hooks", &a.url(), "");
    let text = config(
        dir.path(),
        "",
        &(kept.clone() + &webhook("hooks_gone", &b.url(), "")),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&batch((0..2).map(|i| format!("p{i}")), T0_MS)).await;
    settled_at(&d, "hooks", &a, 2).await;
    settled_at(&d, "hooks_gone", &b, 2).await;

    std::fs::write(
        dir.path().join("sluice.toml"),
        config(dir.path(), "", &kept),
    )
    .unwrap();
    let (s, _) = admin_post(&d, "/v1/admin/reload", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(seqs(&requests(&d, "hooks_gone").await), [2, 1]);
    let (s, v) = admin_post(&d, "/v1/destinations/hooks_gone/purge", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(stored_rows(&d, "hooks_gone"), Vec::<u64>::new());
    let (s, _) = get(&d, "/v1/destinations/hooks_gone/requests").await;
    assert_eq!(s, 404);
    assert_eq!(
        seqs(&requests(&d, "hooks").await),
        [2, 1],
        "another's log stays"
    );
    d.shutdown().await;
}

/// A stand-in platform that echoes what it was sent (the URL with its token, the body
/// with its hashed identifiers) in a 400: what a careless real API might answer.
async fn echo_server() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{StatusCode, Uri};
    async fn echo(uri: Uri, body: String) -> (StatusCode, String) {
        let msg = format!("cannot process {uri} with {body}");
        let v = json!({"error": {"message": msg, "type": "GraphMethodException", "code": 100, "fbtrace_id": "EchoTrace1"}});
        (StatusCode::BAD_REQUEST, v.to_string())
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(echo);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excerpts_never_hold_a_credential_or_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let (url, task) = echo_server().await;
    let text = config(dir.path(), "", &meta("meta_echo", &url));
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&event("leaky", T0_MS)).await;
    clock.advance_ms(1000);
    eventually("one row", || stored_rows(&d, "meta_echo").len() == 1).await;
    idle(&d, "meta_echo").await;
    let rows = requests(&d, "meta_echo").await;
    let r = &rows[0];
    assert_eq!(r["status"], 400);
    assert_eq!(r["outcome"], "rejected");
    assert_eq!(r["request_id"], "EchoTrace1");
    let excerpt = r["response_excerpt"].as_str().unwrap();
    assert!(excerpt.len() <= 1024, "{}", excerpt.len());
    // The answer held both: the token (URL) and the hashed email (body).
    let email = sha256_hex("buyer@example.com");
    let dlq = dlq_with(&d, "meta_echo", 1).await;
    let whole = dlq["entries"][0]["response_body"].as_str().unwrap();
    assert!(whole.contains(&email), "the echo carried the hash: {whole}");
    assert!(whole.contains("access_token=[redacted]"), "{whole}");
    // The excerpt holds neither, and says where they were.
    assert!(!excerpt.contains(META_TOKEN), "{excerpt}");
    assert!(!excerpt.contains(&email), "{excerpt}");
    assert!(longest_hex_run(excerpt) < 64, "{excerpt}");
    assert!(excerpt.contains("access_token=[redacted]"), "{excerpt}");
    assert!(excerpt.contains("[hashed]"), "{excerpt}");
    d.shutdown().await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_filters_by_reason_and_event_id_and_counts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    // hooks_a: requests 1 and 2 rejected, 3 fails once with no retry left, 4 delivered.
    let a = sim_on(
        Platform::Webhook,
        &clock,
        FaultScript::range(1, 2, Fault::Invalid).with(Rule::Range {
            from: 3,
            to: 3,
            fault: Fault::Transient,
        }),
    )
    .await;
    let b = sim_on(
        Platform::Webhook,
        &clock,
        FaultScript::always(Fault::Invalid),
    )
    .await;
    let no_retry = ", retry = { max_retries = 0 }";
    let dests = webhook("hooks_a", &a.url(), no_retry) + &webhook("hooks_b", &b.url(), no_retry);
    let text = config(dir.path(), "", &dests);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let evs: Vec<Value> = (1..=4)
        .map(|i| event_to(&format!("a{i}"), T0_MS, "hooks_a"))
        .collect();
    d.post(&json!({ "events": evs })).await;
    settled_at(&d, "hooks_a", &a, 4).await;
    // hooks_b's entries are dead-lettered a minute later.
    clock.advance_ms(60_000);
    let now = d.clock_ms();
    let evs: Vec<Value> = (1..=2)
        .map(|i| event_to(&format!("b{i}"), now, "hooks_b"))
        .collect();
    d.post(&json!({ "events": evs })).await;
    settled_at(&d, "hooks_b", &b, 2).await;
    dlq_with(&d, "hooks_a", 3).await;
    dlq_with(&d, "hooks_b", 2).await;

    let ids = |v: &Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    let list = |q: &'static str| {
        let d = &d;
        async move {
            let (s, v) = get(d, &format!("/v1/dlq?destination=hooks_a{q}")).await;
            assert_eq!(s, 200, "{q}: {v}");
            v
        }
    };
    let v = list("&reason=rejected").await;
    assert_eq!(ids(&v), ["a1", "a2"]);
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["error_class"] == "rejected")
    );
    let v = list("&reason=retries_exhausted").await;
    assert_eq!(ids(&v), ["a3"]);
    assert_eq!(v["entries"][0]["status"], 503);
    assert_eq!(ids(&list("&reason=expired").await), Vec::<String>::new());
    assert_eq!(ids(&list("&event_id=a2").await), ["a2"]);
    assert_eq!(
        ids(&list("&event_id=a3&reason=retries_exhausted").await),
        ["a3"]
    );
    assert_eq!(
        ids(&list("&event_id=a2&reason=retries_exhausted").await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&list("&event_id=a4").await),
        Vec::<String>::new(),
        "delivered"
    );
    assert_eq!(
        ids(&list("&event_id=b1").await),
        Vec::<String>::new(),
        "another destination's"
    );
    // Pages of a filtered list.
    let p1 = list("&reason=rejected&limit=1").await;
    assert_eq!(ids(&p1), ["a1"]);
    let c = p1["next_cursor"].as_str().unwrap().to_string();
    let (_, p2) = get(
        &d,
        &format!("/v1/dlq?destination=hooks_a&reason=rejected&limit=1&cursor={c}"),
    )
    .await;
    assert_eq!(ids(&p2), ["a2"]);
    assert_eq!(p2["next_cursor"], Value::Null);
    // An unknown reason is refused and the message lists the known ones.
    let (s, v) = get(&d, "/v1/dlq?destination=hooks_a&reason=Rejected").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("rejected, retries_exhausted, expired, unsendable"),
        "{msg}"
    );

    // The summary: exact counts, per destination and reason.
    let (s, v) = get(&d, "/v1/dlq/summary").await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"since": null, "total": 5, "counts": [
            {"destination_id": "hooks_a", "reason": "rejected", "count": 2},
            {"destination_id": "hooks_a", "reason": "retries_exhausted", "count": 1},
            {"destination_id": "hooks_b", "reason": "rejected", "count": 2},
        ]})
    );
    let (_, v) = get(&d, "/v1/dlq/summary?since=2026-11-02T12:00:00Z").await;
    assert_eq!(v["total"], 5);
    assert_eq!(v["since"], rfc3339_ms(T0_MS));
    // Since half a minute later: only hooks_b's (dead-lettered at T0 + 60 s).
    let (_, v) = get(&d, "/v1/dlq/summary?since=2026-11-02T12:00:30%2B00:00").await;
    assert_eq!(
        v,
        json!({"since": rfc3339_ms(T0_MS + 30_000), "total": 2, "counts": [
            {"destination_id": "hooks_b", "reason": "rejected", "count": 2},
        ]})
    );
    // Exactly at the second batch: inclusive.
    let (_, v) = get(
        &d,
        &format!("/v1/dlq/summary?since={}", rfc3339_ms(T0_MS + 60_000)),
    )
    .await;
    assert_eq!(v["total"], 2);
    let (_, v) = get(
        &d,
        &format!("/v1/dlq/summary?since={}", rfc3339_ms(T0_MS + 60_001)),
    )
    .await;
    assert_eq!(
        v,
        json!({"since": rfc3339_ms(T0_MS + 60_001), "total": 0, "counts": []})
    );
    let (s, v) = get(&d, "/v1/dlq/summary?since=yesterday").await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
    d.shutdown().await;
}

async fn sluice(url: &str, args: &[&str]) -> (i32, String, String) {
    sluice_cli(url, ADMIN, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_dlq_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim_on(
        Platform::Webhook,
        &clock,
        FaultScript::range(2, 2, Fault::Invalid),
    )
    .await;
    let text = config(dir.path(), "", &webhook("hooks", &hook.url(), ""));
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    d.post(&batch((0..3).map(|i| format!("c{i}")), T0_MS)).await;
    settled_at(&d, "hooks", &hook, 3).await;
    dlq_with(&d, "hooks", 1).await;

    let (code, out, err) = sluice(
        &d.url,
        &["destinations", "requests", "hooks", "--limit", "2"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let t = rfc3339_ms(T0_MS);
    assert_eq!(
        out,
        format!(
            "Seq  Sent At                   Events  Status  Latency ms  Outcome    Request Id    Response\n\
             3    {t}  1       200     0           delivered  sim-00000003  {{\"ok\":true}}\n\
             2    {t}  1       400     0           rejected   sim-00000002  Bad Request\n"
        )
    );
    let (code, out, _) = sluice(&d.url, &["destinations", "requests", "hooks"]).await;
    assert_eq!((code, out.lines().count()), (0, 4));
    let (code, _, err) = sluice(&d.url, &["destinations", "requests", "nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not_found (404)"), "{err}");
    let (code, _, _) = sluice(
        &d.url,
        &["destinations", "requests", "hooks", "--limit", "0"],
    )
    .await;
    assert_eq!(code, 2);

    let (code, out, err) = sluice(
        &d.url,
        &[
            "dlq",
            "list",
            "--destination",
            "hooks",
            "--reason",
            "rejected",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let e: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(e["event"]["event_id"], "c1");
    assert_eq!(err.trim(), "1 entry");
    let (_, out, err) = sluice(
        &d.url,
        &["dlq", "list", "--destination", "hooks", "--event-id", "c0"],
    )
    .await;
    assert_eq!((out.as_str(), err.trim()), ("", "0 entries"));
    let (code, _, err) = sluice(
        &d.url,
        &["dlq", "list", "--destination", "hooks", "--reason", "bogus"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid_request (400): reason must be one of"),
        "{err}"
    );

    let (code, out, _) = sluice(&d.url, &["dlq", "summary"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "Destination  Reason    Count\nhooks        rejected  1\n1 entry\n"
    );
    let (code, out, _) = sluice(
        &d.url,
        &["dlq", "summary", "--since", "2026-11-03T00:00:00Z"],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(out, "no DLQ entries since 2026-11-03T00:00:00.000Z\n");
    d.shutdown().await;
}
