//! Contract tests of the Taboola bulk S2S adapter against its simulator (facts and
//! sources in `src/platforms/taboola.rs`): the exact request, each row of its
//! classification, and a batch with unsendable rows through the real daemon.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::{ManualClock, SharedClock};
use sluice::config::{Destination, Platform};
use sluice::event::{ClearField, NormalizedEvent};
use sluice::platforms::taboola::TABOOLA;
use sluice::platforms::{self, Adapter, Class, Verdict};
use sluice::sim::{self, Fault, FaultScript, RetryAfter, SimOptions, SimServer};

const T0_S: i64 = T0_MS / 1000;
/// Taboola's sample click id.
const CLICK: &str = "GiDxLZcEVjwEqkGfKQMQndUYMIeZXFHmZ0DrHIJhGS6kKiDzkGUos9GzkpqG-YHQATCwxlQ";
const ADMIN: &str = "admin_test_token";

fn dest(endpoint: Option<String>, map: &[(&str, &str)]) -> Destination {
    Destination {
        id: "tb".into(),
        workspace: "glasshouse".into(),
        platform: Platform::Taboola,
        endpoint,
        events: None,
        event_map: map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        params: [("account_id".to_string(), "1234567".to_string())].into(),
        credentials: Default::default(),
        policy: contract_policy(1000),
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
            .map(|c| vec![(ClearField::Tblci, c.to_string())])
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
        Platform::Taboola,
        "127.0.0.1:0".parse().unwrap(),
        c,
        FaultScript::none(),
        SimOptions::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn taboola_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock).await;
    let d = dest(Some(server.url()), &[("Lead", "make_lead")]);
    let a = ev(
        "ord-1001",
        "Purchase",
        Some(CLICK),
        Some(json!({"currency": " USD ", "value": 129.5, "num_items": 3, "order_id": "A-1"})),
    );
    let b = ev(
        "lead-\"1\"",
        "Lead",
        Some(CLICK),
        Some(json!({"value": " 7.25 "})),
    );
    let req = TABOOLA.build(&d, &[out(&a), out(&b)], T0_MS);
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.url,
        format!("{}/1234567/log/3/bulk-s2s-action", server.url())
    );
    assert_eq!(
        req.headers,
        vec![("content-type".to_string(), "application/json".to_string())]
    );
    assert!(req.secrets.is_empty(), "nothing is authenticated");
    let want = format!(
        concat!(
            r#"{{"actions":["#,
            r#"{{"click-id":"{c}","currency":"USD","name":"Purchase","orderid":"ord-1001","quantity":3,"revenue":129.5,"timestamp":1793620740000}},"#,
            r#"{{"click-id":"{c}","name":"make_lead","orderid":"lead-\"1\"","revenue":7.25,"timestamp":1793620740000}}"#,
            r#"]}}"#
        ),
        c = CLICK
    );
    assert_eq!(String::from_utf8(req.body.clone()).unwrap(), want);
    // Default endpoint.
    assert_eq!(
        TABOOLA.build(&dest(None, &[]), &[out(&a)], T0_MS).url,
        "https://trc.taboola.com/1234567/log/3/bulk-s2s-action"
    );

    let resp = send(&req).await;
    assert_eq!(resp.status, 204);
    assert!(resp.body.is_empty());
    assert_eq!(
        TABOOLA.classify(&d, 2, &resp),
        Verdict::Whole(Class::Delivered)
    );
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/1234567/log/3/bulk-s2s-action");
    assert_eq!(got[0].raw_body, req.body);
    assert!(got[0].accepted);
    assert_eq!(
        sim::event_ids(Platform::Taboola, &got[0].body),
        ["ord-1001", "lead-\"1\""]
    );

    // check(): the click id is the only identifier Taboola takes.
    assert!(TABOOLA.check(&d, &out(&a)).is_ok());
    let none = ev("n", "Purchase", None, None);
    let err = TABOOLA.check(&d, &out(&none)).unwrap_err();
    assert!(err.0.contains("tblci"), "{err:?}");
    let empty = ev("e", "Purchase", Some(""), None);
    assert!(TABOOLA.check(&d, &out(&empty)).is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn taboola_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock).await;
    let d = dest(Some(server.url()), &[]);
    let e = ev("a", "Purchase", Some(CLICK), None);
    let req = TABOOLA.build(&d, &[out(&e)], T0_MS);
    let code = |status, code| Fault::Code { status, code };
    let cases: Vec<(Fault, u16, Class)> = vec![
        (
            Fault::Throttle { retry_after: None },
            429,
            Class::Throttled { hold_ms: None },
        ),
        (
            Fault::Throttle {
                retry_after: Some(RetryAfter::Seconds(5)),
            },
            429,
            Class::Throttled {
                hold_ms: Some(5_000),
            },
        ),
        (Fault::Auth, 401, Class::Auth),
        (Fault::Transient, 503, Class::Retryable),
        (Fault::ServerError(500), 500, Class::Retryable),
        (Fault::ServerError(408), 408, Class::Retryable),
        (Fault::Redirect, 307, Class::Retryable),
        (Fault::Invalid, 400, Class::Rejected),
        (code(400, 7), 400, Class::Rejected),
        (Fault::ServerError(403), 403, Class::Rejected),
        (Fault::Gone, 410, Class::Rejected),
    ];
    for (fault, status, class) in cases {
        server.set_script(FaultScript::always(fault.clone()));
        let resp = send(&req).await;
        assert_eq!(resp.status, status, "{fault:?}");
        assert_eq!(
            TABOOLA.classify(&d, 1, &resp),
            Verdict::Whole(class),
            "{fault:?}"
        );
    }
    server.set_script(FaultScript::none());

    // ⚠ The bulk endpoint does not validate: a click id Taboola cannot parse is still
    // answered 204 (delivered: nothing in the answer says otherwise), and not counted.
    let bogus = ev("bogus", "Purchase", Some("not-a-click-id"), None);
    let resp = send(&TABOOLA.build(&d, &[out(&bogus)], T0_MS)).await;
    assert_eq!(resp.status, 204);
    assert_eq!(
        TABOOLA.classify(&d, 1, &resp),
        Verdict::Whole(Class::Delivered)
    );
    assert_eq!(server.count_event("bogus"), 1);
    assert_eq!(server.accepted_event("bogus"), 0);

    // A malformed body and an unknown account.
    let r = reqwest::Client::new()
        .post(format!("{}/1234567/log/3/bulk-s2s-action", server.url()))
        .json(&json!({"actions": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let mut bad = d.clone();
    bad.params.insert("account_id".into(), "acme".into());
    let resp = send(&TABOOLA.build(&bad, &[out(&e)], T0_MS)).await;
    assert_eq!(resp.status, 404);
    assert_eq!(
        TABOOLA.classify(&d, 1, &resp),
        Verdict::Whole(Class::Rejected)
    );
    server.shutdown().await;
}

#[test]
fn taboola_adapter_is_registered() {
    assert_eq!(
        platforms::adapter(Platform::Taboola).unwrap().platform(),
        Platform::Taboola
    );
}

/// Moves the clock 1 s at a time (linger, backoff) until `n` requests were answered.
/// Five events, two without a click id: those two are dead-lettered as unsendable and
/// never sent; the other three go in one request, which fails once (503) and is sent
/// again after the backoff: each delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taboola_unsendable_rows_dead_letter_and_the_batch_is_retried_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let server = sim::start(
        Platform::Taboola,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::range(1, 1, Fault::Transient),
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
id = "taboola_gh"
workspace = "glasshouse"
platform = "taboola"
endpoint = "{url}"
params = {{ account_id = "1234567" }}
event_map = {{ Purchase = "make_purchase" }}
"#,
        store = dir.path().join("sluice.redb").display(),
        url = server.url(),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let mut events: Vec<Value> = (0..5).map(|i| event(&format!("t{i}"), T0_MS)).collect();
    for i in [0, 2, 4] {
        events[i]["user_data"]["tblci"] = json!(CLICK);
    }
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 5);

    let dlq = dlq_with(&d, "taboola_gh", 2).await;
    let mut ids: Vec<&str> = dlq["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["t1", "t3"]);
    for e in dlq["entries"].as_array().unwrap() {
        assert_eq!(e["error_class"], "unsendable");
    }

    drive(&clock, &server, 2).await;
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].status, 503);
    for g in &got {
        assert_eq!(
            sim::event_ids(Platform::Taboola, &g.body),
            ["t0", "t2", "t4"]
        );
        assert_eq!(g.body["actions"][0]["name"], "make_purchase");
        assert_eq!(g.body["actions"][0]["click-id"], CLICK);
    }
    for i in [0, 2, 4] {
        assert_eq!(server.count_event(&format!("t{i}")), 2);
        assert_eq!(server.accepted_event(&format!("t{i}")), 1);
    }
    for i in [1, 3] {
        assert_eq!(server.count_event(&format!("t{i}")), 0);
    }
    // Nothing more is sent later.
    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.count(), 2);
    d.shutdown().await;
    server.shutdown().await;
}
