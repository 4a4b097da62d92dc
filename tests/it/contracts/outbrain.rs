//! Contract tests of the Outbrain `unifiedPixel` adapter against its simulator (facts and
//! sources in `src/platforms/outbrain.rs`): the exact request, each row of its
//! classification, and a batch with unsendable rows through the real daemon.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::{ManualClock, SharedClock};
use sluice::config::{Destination, Platform};
use sluice::event::{ClearField, NormalizedEvent};
use sluice::platforms::outbrain::OUTBRAIN;
use sluice::platforms::{self, Adapter, Class, Verdict};
use sluice::sim::{self, Fault, FaultScript, RetryAfter, SimOptions, SimServer};

const T0_S: i64 = T0_MS / 1000;
const CLICK: &str = "00f1e2d3c4b5a6978800aabbccddeeff/obclick+1";
const ADMIN: &str = "admin_test_token";

fn dest(endpoint: Option<String>, map: &[(&str, &str)]) -> Destination {
    Destination {
        id: "ob".into(),
        workspace: "glasshouse".into(),
        platform: Platform::Outbrain,
        endpoint,
        events: None,
        event_map: map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        params: Default::default(),
        credentials: Default::default(),
        policy: contract_policy(1),
    }
}

fn ev(id: &str, name: &str, click: Option<&str>, custom: Option<Value>) -> NormalizedEvent {
    NormalizedEvent {
        event_id: id.into(),
        event_name: name.into(),
        event_time: T0_S - 60,
        action_source: None,
        event_source_url: None,
        hashed: vec![],
        clear: click
            .map(|c| vec![(ClearField::ObClickId, c.to_string())])
            .unwrap_or_default(),
        plaintext: vec![],
        custom_data: custom
            .map(|c| serde_json::to_vec(&c).unwrap())
            .unwrap_or_default(),
        destinations: vec![],
    }
}

async fn start(clock: &Arc<ManualClock>) -> SimServer {
    let c: SharedClock = clock.clone();
    sim::start_with(
        Platform::Outbrain,
        "127.0.0.1:0".parse().unwrap(),
        c,
        FaultScript::none(),
        SimOptions::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn outbrain_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock).await;
    let d = dest(Some(server.url()), &[("Lead", "Lead Form \"A\"")]);
    let a = ev(
        "ord-1001",
        "Purchase",
        Some(CLICK),
        Some(json!({"currency": "USD", "value": 129.5})),
    );
    let req = OUTBRAIN.build(&d, &[out(&a)], T0_MS);
    assert_eq!(req.method, "GET");
    assert_eq!(
        req.url,
        format!(
            "{}/unifiedPixel?ob_click_id=00f1e2d3c4b5a6978800aabbccddeeff%2Fobclick%2B1&name=Purchase&orderId=ord-1001&orderValue=129.5&currency=USD&timestamp=2026-11-02%2011%3A59%3A00",
            server.url()
        )
    );
    assert!(req.headers.is_empty() && req.body.is_empty() && req.secrets.is_empty());
    assert!(
        OUTBRAIN
            .build(&dest(None, &[]), &[out(&a)], T0_MS)
            .url
            .starts_with("https://tr.outbrain.com/unifiedPixel?ob_click_id=")
    );
    let resp = send(&req).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        OUTBRAIN.classify(&d, 1, &resp),
        Verdict::Whole(Class::Delivered)
    );
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "GET");
    assert_eq!(
        got[0].body,
        json!({"ob_click_id": CLICK, "name": "Purchase", "orderId": "ord-1001",
            "orderValue": "129.5", "currency": "USD", "timestamp": "2026-11-02 11:59:00"})
    );
    assert!(got[0].accepted);
    assert_eq!(
        sim::event_ids(Platform::Outbrain, &got[0].body),
        ["ord-1001"]
    );

    // event_map gives the conversion name; no value or currency: not sent.
    let b = ev("lead-1", "Lead", Some(CLICK), Some(json!({"value": "n/a"})));
    let req = OUTBRAIN.build(&d, &[out(&b)], T0_MS);
    assert!(
        req.url
            .contains("&name=Lead%20Form%20%22A%22&orderId=lead-1&timestamp="),
        "{}",
        req.url
    );
    let resp = send(&req).await;
    assert_eq!(resp.status, 200);
    assert_eq!(server.received()[1].body["name"], "Lead Form \"A\"");

    // check(): the click id is the only identifier Outbrain takes.
    assert!(OUTBRAIN.check(&d, &out(&a)).is_ok());
    let none = ev("n", "Purchase", None, None);
    assert!(
        OUTBRAIN
            .check(&d, &out(&none))
            .unwrap_err()
            .0
            .contains("ob_click_id")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn outbrain_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock).await;
    let d = dest(Some(server.url()), &[]);
    let e = ev("a", "Purchase", Some(CLICK), None);
    let req = OUTBRAIN.build(&d, &[out(&e)], T0_MS);
    let code = |status, code| Fault::Code { status, code };
    let cases: Vec<(Fault, u16, Class)> = vec![
        (
            Fault::Throttle { retry_after: None },
            429,
            Class::Throttled { hold_ms: None },
        ),
        (
            Fault::Throttle {
                retry_after: Some(RetryAfter::HttpDate { in_secs: 12 }),
            },
            429,
            Class::Throttled {
                hold_ms: Some(12_000),
            },
        ),
        (Fault::Auth, 401, Class::Auth),
        (Fault::Transient, 503, Class::Retryable),
        (Fault::ServerError(502), 502, Class::Retryable),
        (Fault::ServerError(408), 408, Class::Retryable),
        (Fault::Redirect, 307, Class::Retryable),
        (Fault::Invalid, 400, Class::Rejected),
        (code(404, 1), 404, Class::Rejected),
        (code(204, 0), 204, Class::Delivered),
    ];
    for (fault, status, class) in cases {
        server.set_script(FaultScript::always(fault.clone()));
        let resp = send(&req).await;
        assert_eq!(resp.status, status, "{fault:?}");
        assert_eq!(
            OUTBRAIN.classify(&d, 1, &resp),
            Verdict::Whole(class),
            "{fault:?}"
        );
    }
    server.set_script(FaultScript::none());
    // The simulator refuses what the adapter never sends: no click id, a bad timestamp.
    for q in [
        "name=Purchase",
        "ob_click_id=x&name=Purchase&timestamp=yesterday",
    ] {
        let r = reqwest::get(format!("{}/unifiedPixel?{q}", server.url()))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
    }
    let r = reqwest::get(format!(
        "{}/unifiedPixel?ob_click_id=x&name=P&timestamp=11%2F02%2F2026%2011%3A59%3A00",
        server.url()
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    server.shutdown().await;
}

#[test]
fn outbrain_adapter_is_registered() {
    assert_eq!(
        platforms::adapter(Platform::Outbrain).unwrap().platform(),
        Platform::Outbrain
    );
}

/// Moves the clock 1 s at a time (linger, backoff) until `n` requests were answered.
/// Five events, two without a click id: those two are dead-lettered as unsendable and
/// never sent; the other three go one per request, and the one whose request fails
/// (503) is sent again after the backoff: each delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbrain_unsendable_rows_dead_letter_and_only_the_failed_one_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let server = sim::start(
        Platform::Outbrain,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::range(2, 2, Fault::Transient),
    )
    .await
    .unwrap();
    let text = format!(
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
id = "outbrain_gh"
workspace = "glasshouse"
platform = "outbrain"
endpoint = "{url}"
"#,
        store = dir.path().join("sluice.redb").display(),
        url = server.url(),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let mut events: Vec<Value> = (0..5).map(|i| event(&format!("o{i}"), T0_MS)).collect();
    for i in [0, 2, 4] {
        events[i]["user_data"]["ob_click_id"] = json!(format!("{CLICK}-{i}"));
    }
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 5);

    let dlq = dlq_with(&d, "outbrain_gh", 2).await;
    let mut ids: Vec<&str> = dlq["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["o1", "o3"]);
    for e in dlq["entries"].as_array().unwrap() {
        assert_eq!(e["error_class"], "unsendable");
    }

    drive(&clock, &server, 4).await;
    let got = server.received();
    assert_eq!(got.len(), 4);
    let failed: Vec<&sim::Received> = got.iter().filter(|r| r.status == 503).collect();
    assert_eq!(failed.len(), 1);
    let retried = failed[0].body["orderId"].as_str().unwrap().to_string();
    for i in [0, 2, 4] {
        let id = format!("o{i}");
        let sent = if id == retried { 2 } else { 1 };
        assert_eq!(server.count_event(&id), sent, "{id}");
        assert_eq!(server.accepted_event(&id), 1, "{id}");
    }
    for g in &got {
        assert_eq!(g.method, "GET");
        assert_eq!(g.body["name"], "Purchase");
        assert_eq!(g.body["currency"], "EUR");
        assert_eq!(g.body["orderValue"], "42.5");
    }
    for i in [1, 3] {
        assert_eq!(server.count_event(&format!("o{i}")), 0);
    }
    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.count(), 4);
    d.shutdown().await;
    server.shutdown().await;
}
