//! Contract tests of the Criteo OneTag S2S adapter against its simulator (facts and
//! sources in `src/platforms/criteo.rs`): the exact request, each row of its
//! classification (errors inside HTTP 200), and a batch through the real daemon.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::{ManualClock, SharedClock};
use sluice::config::{Destination, Platform};
use sluice::event::{ClearField, NormalizedEvent, Variant};
use sluice::ingest::identifiers::{IdField, normalize};
use sluice::platforms::criteo::CRITEO;
use sluice::platforms::{self, Adapter, Class, HttpRequest, HttpResponse, Verdict};
use sluice::sim::{self, Fault, FaultScript, RetryAfter, SimOptions, SimServer};

const T0_S: i64 = T0_MS / 1000;
const ADMIN: &str = "admin_test_token";

fn dest(endpoint: Option<String>, map: &[(&str, &str)]) -> Destination {
    Destination {
        id: "cr".into(),
        workspace: "glasshouse".into(),
        platform: Platform::Criteo,
        endpoint,
        events: None,
        event_map: map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        params: [("account_id".to_string(), "12345".to_string())].into(),
        credentials: Default::default(),
        policy: contract_policy(1),
    }
}

fn ev(
    id: &str,
    name: &str,
    email: Option<&str>,
    clear: &[(ClearField, &str)],
    custom: Option<Value>,
) -> NormalizedEvent {
    let mut hashed = vec![];
    if let Some(raw) = email {
        for n in normalize(IdField::Email, raw, "1", Some("US")).unwrap() {
            hashed.push((n.variant, n.sha256));
        }
    }
    hashed.sort_by_key(|(v, _)| *v);
    NormalizedEvent {
        event_id: id.into(),
        event_name: name.into(),
        event_time: T0_S - 60,
        action_source: None,
        event_source_url: None,
        hashed,
        clear: clear.iter().map(|(f, v)| (*f, v.to_string())).collect(),
        plaintext: vec![],
        custom_data: custom
            .map(|c| serde_json::to_vec(&c).unwrap())
            .unwrap_or_default(),
        destinations: vec![],
    }
}

fn body_of(req: &HttpRequest) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

async fn start(clock: &Arc<ManualClock>) -> SimServer {
    let c: SharedClock = clock.clone();
    sim::start_with(
        Platform::Criteo,
        "127.0.0.1:0".parse().unwrap(),
        c,
        FaultScript::none(),
        SimOptions::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn criteo_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock).await;
    let d = dest(Some(server.url()), &[("Lead", "viewPage")]);
    let a = ev(
        "ord-1001",
        "Purchase",
        Some(" John.Smith+promo@GMail.com "),
        &[
            (ClearField::ClientIpAddress, "203.0.113.7"),
            (ClearField::ClientUserAgent, "Mozilla/5.0 (X11)"),
            (ClearField::Fbc, "fb.1.1.x"),
        ],
        Some(json!({"currency": "EUR", "value": 31.5, "contents": [
            {"id": "SKU-1", "quantity": 2, "item_price": 10.5},
            {"id": 42, "quantity": 1},
            {"name": "no id"}
        ]})),
    );
    let req = CRITEO.build(&d, &[out(&a)], T0_MS);
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, format!("{}/m/event?version=s2s_v0", server.url()));
    assert_eq!(
        req.headers,
        vec![("content-type".to_string(), "application/json".to_string())]
    );
    assert!(req.secrets.is_empty(), "nothing is authenticated");
    let email = sha256_hex("john.smith+promo@gmail.com");
    assert_eq!(
        a.hash_of(Variant::Email).map(hex::encode),
        Some(email.clone())
    );
    let want = format!(
        concat!(
            r#"{{"account":"12345","events":[{{"currency":"EUR","event":"trackTransaction","id":"ord-1001","#,
            r#""item":[{{"id":"SKU-1","price":10.5,"quantity":2}},{{"id":"42","quantity":1}}],"#,
            r#""timestamp":"2026-11-02T11:59:00Z"}}],"id":{{"email":{{"sha256":"{email}"}}}},"#,
            r#""ip":"203.0.113.7","site_type":"d","useragent":"Mozilla/5.0 (X11)"}}"#
        ),
        email = email
    );
    assert_eq!(String::from_utf8(req.body.clone()).unwrap(), want);
    assert_eq!(
        CRITEO.build(&dest(None, &[]), &[out(&a)], T0_MS).url,
        "https://widget.criteo.com/m/event?version=s2s_v0"
    );

    let resp = send(&req).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&resp.body).unwrap(),
        json!({"errors": [], "warnings": []})
    );
    assert_eq!(
        CRITEO.classify(&d, 1, &resp),
        Verdict::Whole(Class::Delivered)
    );
    let got = server.received();
    assert_eq!(got[0].path, "/m/event?version=s2s_v0");
    assert!(got[0].accepted);
    assert_eq!(sim::event_ids(Platform::Criteo, &got[0].body), ["ord-1001"]);

    // The default map, items per event, the site type.
    let contents = json!({"contents": [{"id": "A"}, {"id": "B"}], "currency": "USD"});
    let mut m = d.clone();
    m.params.insert("site_type".into(), "m".into());
    let one = |name: &str| {
        let e = ev("x", name, Some("a@b.example"), &[], Some(contents.clone()));
        body_of(&CRITEO.build(&m, &[out(&e)], T0_MS))
    };
    let v = one("ViewContent");
    assert_eq!(v["site_type"], "m");
    assert_eq!(
        v["events"][0],
        json!({"event": "viewItem", "item": "A", "currency": "USD", "timestamp": "2026-11-02T11:59:00Z"})
    );
    assert_eq!(v["events"][0].get("id"), None);
    assert_eq!(one("Search")["events"][0]["item"], json!(["A", "B"]));
    assert_eq!(
        one("InitiateCheckout")["events"][0]["event"],
        "beginCheckout"
    );
    assert_eq!(
        one("AddToCart")["events"][0]["item"],
        json!([{"id": "A"}, {"id": "B"}])
    );
    assert_eq!(
        one("AddPaymentInfo")["events"][0]["event"],
        "addPaymentInfo"
    );
    assert_eq!(one("PageView")["events"][0]["event"], "viewPage");
    assert_eq!(one("Lead")["events"][0]["event"], "viewPage"); // event_map
    let v = one("PageView");
    assert_eq!(v.get("ip"), None);
    assert_eq!(v.get("useragent"), None);

    // check(): an email, and a name that maps to a OneTag event.
    assert!(CRITEO.check(&d, &out(&a)).is_ok());
    let lead = ev("l", "Lead", Some("a@b.example"), &[], None);
    assert!(CRITEO.check(&d, &out(&lead)).is_ok());
    let sub = ev("s", "Subscribe", Some("a@b.example"), &[], None);
    assert!(
        CRITEO
            .check(&d, &out(&sub))
            .unwrap_err()
            .0
            .contains("event_map")
    );
    let anon = ev(
        "n",
        "Purchase",
        None,
        &[(ClearField::ClientIpAddress, "203.0.113.7")],
        None,
    );
    assert!(
        CRITEO
            .check(&d, &out(&anon))
            .unwrap_err()
            .0
            .contains("email")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn criteo_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock).await;
    let d = dest(Some(server.url()), &[]);
    let e = ev("a", "Purchase", Some("a@b.example"), &[], None);
    let req = CRITEO.build(&d, &[out(&e)], T0_MS);
    let code = |status, code| Fault::Code { status, code };
    let cases: Vec<(Fault, u16, Class)> = vec![
        // ⚠ Errors inside HTTP 200: a known validation error is final…
        (Fault::Invalid, 200, Class::Rejected),
        // …an unknown one is retried (never lost to a guess).
        (code(200, 9), 200, Class::Retryable),
        (
            Fault::Throttle { retry_after: None },
            429,
            Class::Throttled { hold_ms: None },
        ),
        (
            Fault::Throttle {
                retry_after: Some(RetryAfter::Seconds(30)),
            },
            429,
            Class::Throttled {
                hold_ms: Some(30_000),
            },
        ),
        (Fault::Auth, 401, Class::Auth),
        (Fault::Transient, 503, Class::Retryable),
        (Fault::ServerError(500), 500, Class::Retryable),
        (Fault::ServerError(408), 408, Class::Retryable),
        // Criteo's regional redirect: never followed, retried.
        (Fault::Redirect, 307, Class::Retryable),
        (code(400, 1), 400, Class::Rejected),
        (Fault::ServerError(404), 404, Class::Rejected),
    ];
    for (fault, status, class) in cases {
        server.set_script(FaultScript::always(fault.clone()));
        let resp = send(&req).await;
        assert_eq!(resp.status, status, "{fault:?}");
        assert_eq!(
            CRITEO.classify(&d, 1, &resp),
            Verdict::Whole(class),
            "{fault:?}"
        );
    }
    server.set_script(FaultScript::none());

    // The simulator's own validation, inside 200.
    let post = |body: Value| {
        let url = format!("{}/m/event?version=s2s_v0", server.url());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            HttpResponse {
                status: r.status().as_u16(),
                headers: vec![],
                body: r.bytes().await.unwrap().to_vec(),
            }
        }
    };
    let r = post(json!({"account": "12345", "id": {}, "events": [{"event": "viewHome"}]})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["errors"],
        json!(["UserIdentifierMissing"])
    );
    assert_eq!(CRITEO.classify(&d, 1, &r), Verdict::Whole(Class::Rejected));
    let r = post(json!({"id": {"email": {"sha256": "ab"}}})).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["errors"],
        json!(["AccountMissing", "EventsMissing"])
    );
    assert_eq!(CRITEO.classify(&d, 1, &r), Verdict::Whole(Class::Rejected));
    // An unknown event name is only a warning: delivered.
    let r = post(json!({"account": "1", "id": {"email": {"sha256": "ab"}},
        "events": [{"event": "somethingElse"}]}))
    .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({"errors": [], "warnings": ["UnknownEvent"]})
    );
    assert_eq!(CRITEO.classify(&d, 1, &r), Verdict::Whole(Class::Delivered));
    // Without version=s2s_v0: 400.
    let r = reqwest::Client::new()
        .post(format!("{}/m/event", server.url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.shutdown().await;
}

#[test]
fn criteo_adapter_is_registered() {
    assert_eq!(
        platforms::adapter(Platform::Criteo).unwrap().platform(),
        Platform::Criteo
    );
}

/// Moves the clock 1 s at a time (linger, backoff) until `n` requests were answered.
/// Six events: one (`Subscribe`) has no Criteo event and is dead-lettered as
/// unsendable; the other five go one per request. The request answered 200 with a known
/// error is dead-lettered (rejected, status 200); the one answered 503 is sent again
/// after the backoff; the rest are delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn criteo_errors_inside_200_dead_letter_only_that_event() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let server = sim::start(
        Platform::Criteo,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::range(2, 2, Fault::Invalid).with(sim::Rule::Range {
            from: 4,
            to: 4,
            fault: Fault::Transient,
        }),
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
id = "criteo_gh"
workspace = "glasshouse"
platform = "criteo"
endpoint = "{url}"
params = {{ account_id = "12345" }}
"#,
        store = dir.path().join("sluice.redb").display(),
        url = server.url(),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let mut events: Vec<Value> = (0..6).map(|i| event(&format!("c{i}"), T0_MS)).collect();
    events[5]["event_name"] = json!("Subscribe");
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 6);

    drive(&clock, &server, 6).await;
    let dlq = dlq_with(&d, "criteo_gh", 2).await;
    let got = server.received();
    assert_eq!(got.len(), 6);
    let id_of = |r: &sim::Received| sim::event_ids(Platform::Criteo, &r.body)[0].clone();
    let rejected: Vec<String> = got
        .iter()
        .filter(|r| r.status == 200 && !r.accepted)
        .map(id_of)
        .collect();
    let retried: Vec<String> = got.iter().filter(|r| r.status == 503).map(id_of).collect();
    assert_eq!((rejected.len(), retried.len()), (1, 1));
    for i in 0..5 {
        let id = format!("c{i}");
        let (sent, accepted) = if id == rejected[0] {
            (1, 0)
        } else if id == retried[0] {
            (2, 1)
        } else {
            (1, 1)
        };
        assert_eq!(server.count_event(&id), sent, "{id}");
        assert_eq!(server.accepted_event(&id), accepted, "{id}");
    }
    let email = sha256_hex("buyer@example.com");
    for g in &got {
        assert_eq!(g.body["id"], json!({"email": {"sha256": email}}));
        assert_eq!(g.body["ip"], "203.0.113.9");
        assert_eq!(g.body["events"][0]["event"], "trackTransaction");
        assert_eq!(g.body["events"][0]["currency"], "EUR");
    }

    let mut entries: Vec<(String, String, Value)> = dlq["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"]["event_id"].as_str().unwrap().to_string(),
                e["error_class"].as_str().unwrap().to_string(),
                e["status"].clone(),
            )
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (rejected[0].clone(), "rejected".to_string(), json!(200)),
        ("c5".to_string(), "unsendable".to_string(), Value::Null),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(entries, want);

    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.count(), 6);
    d.shutdown().await;
    server.shutdown().await;
}
