//! Contract tests of the X (Twitter) Conversion API adapter against its simulator
//! (platforms.md §9): the exact request, each row of its classification (fewer
//! conversions processed than sent inside a 200), and such a batch bisected through the
//! real delivery engine.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    self, KEY, T0_MS, TestDaemon, admin_get, contract_policy, dlq_with, ev, out, resp_raw, send,
    sha256_hex, whole,
};
use serde_json::{Value, json};
use sluice::clock::{ManualClock, SharedClock};
use sluice::config::{Destination, Platform, Secret};
use sluice::event::{ClearField, NormalizedEvent};
use sluice::ingest::identifiers::IdField;
use sluice::platforms::x::X_ADS;
use sluice::platforms::{self, Adapter, Class, OutEvent, Verdict};
use sluice::sim::{self, Fault, FaultScript, RateLimit, RetryAfter, SimOptions, SimServer};

const T0_S: i64 = T0_MS / 1000;
const TOKEN: &str = "x-events-manager-token";
const ADMIN: &str = "admin_test_token";
const PIXEL: &str = "o8z6j";
const X_EVENT: &str = "tw-o8z6j-o8z6k";

fn dest(server: &SimServer, token: &str) -> Destination {
    Destination {
        id: "x_dest".into(),
        workspace: "glasshouse".into(),
        platform: Platform::X,
        endpoint: Some(server.url()),
        events: Some(vec!["Purchase".into()]),
        event_map: Default::default(),
        params: [
            ("pixel_id".to_string(), PIXEL.to_string()),
            ("event_id".to_string(), X_EVENT.to_string()),
        ]
        .into(),
        credentials: [("access_token".to_string(), Secret(token.to_string()))].into(),
        policy: contract_policy(5000),
    }
}

fn email_ev(id: &str) -> NormalizedEvent {
    ev(id, &[(IdField::Email, "x@example.com")], &[], None)
}

async fn start_limited(
    clock: &Arc<ManualClock>,
    credential: Option<&str>,
    rate_limits: Option<Vec<RateLimit>>,
) -> SimServer {
    let c: SharedClock = clock.clone();
    sim::start_with(
        Platform::X,
        "127.0.0.1:0".parse().unwrap(),
        c,
        FaultScript::none(),
        SimOptions {
            rate_limits,
            credential: credential.map(str::to_string),
        },
    )
    .await
    .unwrap()
}

async fn start(clock: &Arc<ManualClock>, credential: Option<&str>) -> SimServer {
    start_limited(clock, credential, None).await
}

#[tokio::test]
async fn x_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, Some(TOKEN)).await;
    let d = dest(&server, TOKEN);
    let a = ev(
        "ord-1001",
        &[
            (IdField::Email, "  John.Smith@Example.com "),
            (IdField::Phone, "+1 (415) 555-0100"),
            (IdField::FirstName, "John"),
        ],
        &[
            (ClearField::Twclid, "tw-click-1"),
            (ClearField::ClientIpAddress, "203.0.113.7"),
            (ClearField::ClientUserAgent, "Mozilla/5.0 (X11)"),
            (ClearField::Fbc, "not-for-x"),
        ],
        Some(json!({"currency": "USD", "value": 129.5, "order_id": "A-1"})),
    );
    let b = ev(
        "ord-1002",
        &[],
        &[(ClearField::Twclid, "tw-click-2")],
        Some(json!({"value": " 7.25 "})),
    );
    let req = X_ADS.build(&d, &[out(&a), out(&b)], T0_MS);
    assert_eq!(req.secrets, vec![TOKEN.to_string()]);
    assert_eq!(
        req.url,
        format!("{}/12/measurement/conversions/{PIXEL}", server.url())
    );
    assert_eq!(
        req.headers,
        vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("authorization".to_string(), format!("Bearer {TOKEN}")),
        ]
    );
    let want = format!(
        concat!(
            r#"{{"conversions":["#,
            r#"{{"conversion_id":"ord-1001","conversion_time":"2026-11-02T11:59:00.000Z","event_id":"{xe}","#,
            r#""identifiers":[{{"twclid":"tw-click-1"}},{{"hashed_email":"{em}"}},{{"hashed_phone_number":"{ph}"}},"#,
            r#"{{"ip_address":"203.0.113.7","user_agent":"Mozilla/5.0 (X11)"}}],"#,
            r#""price_currency":"USD","value":129.5}},"#,
            r#"{{"conversion_id":"ord-1002","conversion_time":"2026-11-02T11:59:00.000Z","event_id":"{xe}","#,
            r#""identifiers":[{{"twclid":"tw-click-2"}}],"value":7.25}}"#,
            r#"]}}"#
        ),
        xe = X_EVENT,
        em = sha256_hex("john.smith@example.com"),
        ph = sha256_hex("+14155550100"),
    );
    assert_eq!(String::from_utf8(req.body.clone()).unwrap(), want);
    let mut prod = d.clone();
    prod.endpoint = None;
    assert_eq!(
        X_ADS.build(&prod, &[out(&a)], T0_MS).url,
        format!("https://ads-api.x.com/12/measurement/conversions/{PIXEL}")
    );

    let r = send(&req).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["data"]["conversions_processed"], 2);
    assert_eq!(v["request"]["params"]["pixel_id"], PIXEL);
    assert_eq!(X_ADS.classify(&d, 2, &r), whole(Class::Delivered));
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].accepted);
    assert_eq!(got[0].raw_body, req.body);
    assert_eq!(
        sim::event_ids(Platform::X, &got[0].body),
        ["ord-1001", "ord-1002"]
    );

    // check(): twclid, hashed email or hashed phone; IP and user agent are not enough.
    for e in [&a, &b, &email_ev("e")] {
        assert!(X_ADS.check(&d, &out(e)).is_ok());
    }
    let phone = ev("p", &[(IdField::Phone, "4155550100")], &[], None);
    assert!(X_ADS.check(&d, &out(&phone)).is_ok());
    let ip_ua = ev(
        "i",
        &[(IdField::ExternalId, "c1")],
        &[
            (ClearField::ClientIpAddress, "203.0.113.7"),
            (ClearField::ClientUserAgent, "curl/8"),
        ],
        None,
    );
    assert!(X_ADS.check(&d, &out(&ip_ua)).is_err());
    assert_eq!(
        platforms::adapter(Platform::X).unwrap().platform(),
        Platform::X
    );
    server.shutdown().await;
}

#[tokio::test]
async fn x_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, Some(TOKEN)).await;
    let d = dest(&server, TOKEN);
    let e1 = email_ev("a");
    let e2 = email_ev("b");
    let one = X_ADS.build(&d, &[out(&e1)], T0_MS);
    let two = X_ADS.build(&d, &[out(&e1), out(&e2)], T0_MS);

    for t in ["", "expired"] {
        let r = send(&X_ADS.build(&dest(&server, t), &[out(&e1)], T0_MS)).await;
        assert_eq!(r.status, 401);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["errors"][0]["code"], "UNAUTHORIZED_ACCESS");
        assert_eq!(X_ADS.classify(&d, 1, &r), whole(Class::Auth));
    }

    let code = |status, code| Fault::Code { status, code };
    // (fault, status, verdict for one conversion, verdict for two)
    let cases: Vec<(Fault, u16, Verdict, Verdict)> = vec![
        (Fault::Auth, 401, whole(Class::Auth), whole(Class::Auth)),
        (
            Fault::Throttle { retry_after: None },
            429,
            whole(Class::Throttled { hold_ms: None }),
            whole(Class::Throttled { hold_ms: None }),
        ),
        // X's hint is x-rate-limit-reset.
        (
            Fault::Throttle {
                retry_after: Some(RetryAfter::Seconds(5)),
            },
            429,
            whole(Class::Throttled {
                hold_ms: Some(5_000),
            }),
            whole(Class::Throttled {
                hold_ms: Some(5_000),
            }),
        ),
        (
            Fault::Throttle {
                retry_after: Some(RetryAfter::HttpDate { in_secs: 12 }),
            },
            429,
            whole(Class::Throttled {
                hold_ms: Some(12_000),
            }),
            whole(Class::Throttled {
                hold_ms: Some(12_000),
            }),
        ),
        (
            Fault::Transient,
            503,
            whole(Class::Retryable),
            whole(Class::Retryable),
        ),
        (
            Fault::ServerError(500),
            500,
            whole(Class::Retryable),
            whole(Class::Retryable),
        ),
        (
            Fault::ServerError(408),
            408,
            whole(Class::Retryable),
            whole(Class::Retryable),
        ),
        (
            Fault::Redirect,
            307,
            whole(Class::Retryable),
            whole(Class::Retryable),
        ),
        (Fault::Invalid, 400, whole(Class::Rejected), Verdict::Bisect),
        (
            code(403, 1),
            403,
            whole(Class::Rejected),
            whole(Class::Rejected),
        ),
        (
            Fault::ServerError(404),
            404,
            whole(Class::Rejected),
            whole(Class::Rejected),
        ),
        // Inside a 200: fewer processed than sent is not success.
        (code(200, 0), 200, whole(Class::Rejected), Verdict::Bisect),
        (code(200, 1), 200, whole(Class::Delivered), Verdict::Bisect),
        (
            code(200, 2),
            200,
            whole(Class::Delivered),
            whole(Class::Delivered),
        ),
    ];
    for (fault, status, v1, v2) in cases {
        server.set_script(FaultScript::always(fault.clone()));
        let r = send(&one).await;
        assert_eq!(r.status, status, "{fault:?}");
        assert_eq!(X_ADS.classify(&d, 1, &r), v1, "{fault:?}");
        let r = send(&two).await;
        assert_eq!(X_ADS.classify(&d, 2, &r), v2, "{fault:?}");
    }
    server.set_script(FaultScript::none());

    // A 2xx without conversions_processed: retried, never taken as delivered.
    for body in [&b"OK"[..], b"", br#"{"data":{}}"#] {
        assert_eq!(
            X_ADS.classify(&d, 1, &resp_raw(200, body)),
            whole(Class::Retryable)
        );
    }
    // The HTML 404 of a wrong path: rejected.
    let mut wrong = one.clone();
    wrong.url = format!("{}/11/measurement/conversion/{PIXEL}", server.url());
    let r = send(&wrong).await;
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("<html>"));
    assert_eq!(X_ADS.classify(&d, 1, &r), whole(Class::Rejected));
    server.shutdown().await;
}

#[tokio::test]
async fn x_rate_limit_and_unprocessed_conversions() {
    let clock = ManualClock::new(T0_MS);
    let server = start_limited(&clock, None, Some(vec![RateLimit::sliding(1, 60_000)])).await;
    let d = dest(&server, TOKEN);
    let e = email_ev("a");
    let req = X_ADS.build(&d, &[out(&e)], T0_MS);
    assert_eq!(send(&req).await.status, 200);
    let r = send(&req).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-rate-limit-remaining"), Some("0"));
    assert_eq!(
        r.header("x-rate-limit-reset"),
        Some(&*(T0_S + 60).to_string())
    );
    assert_eq!(
        X_ADS.classify(&d, 1, &r),
        whole(Class::Throttled {
            hold_ms: Some(60_000)
        })
    );
    clock.advance_ms(60_000);

    // A bad currency, an old conversion, another pixel's event: silently not processed.
    let mut evs = [
        email_ev("ok-0"),
        ev(
            "bad-1",
            &[(IdField::Email, "x@example.com")],
            &[],
            Some(json!({"currency": "euro", "value": 1})),
        ),
        email_ev("bad-2"),
    ];
    evs[2].event_time = T0_S - 8 * 86_400;
    let outs: Vec<OutEvent<'_>> = evs.iter().map(out).collect();
    let r = send(&X_ADS.build(&d, &outs, T0_MS)).await;
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["data"]["conversions_processed"], 1);
    assert_eq!(X_ADS.classify(&d, 3, &r), Verdict::Bisect);
    assert!(!server.received().last().unwrap().accepted);
    clock.advance_ms(60_000);
    let mut other = d.clone();
    other
        .params
        .insert("event_id".into(), "tw-zzzzz-o8z6k".into());
    let r = send(&X_ADS.build(&other, &[out(&evs[0])], T0_MS + 60_000)).await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["data"]["conversions_processed"], 0);
    assert_eq!(X_ADS.classify(&d, 1, &r), whole(Class::Rejected));
    // A malformed conversion fails the whole request: 400.
    clock.advance_ms(60_000);
    let raw = reqwest::Client::new()
        .post(format!("{}/12/measurement/conversions/{PIXEL}", server.url()))
        .bearer_auth("t")
        .json(&json!({"conversions": [{"conversion_time": "2026-11-02T12:00:30.000Z",
            "event_id": X_EVENT, "identifiers": [{"ip_address": "203.0.113.7", "user_agent": "curl/8"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let v: Value = raw.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "INVALID_PARAMETER");
    server.shutdown().await;
}

// ---- Through the daemon ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_unprocessed_conversions_are_bisected_out_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let xs = start(&clock, Some(TOKEN)).await;
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
id = "x_gh"
workspace = "glasshouse"
platform = "x"
endpoint = "{url}"
events = ["Purchase"]
params = {{ pixel_id = "{PIXEL}", event_id = "{X_EVENT}" }}
credentials = {{ access_token = "{TOKEN}" }}
"#,
        store = dir.path().join("sluice.redb").display(),
        url = xs.url(),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let mut events: Vec<Value> = (0..4)
        .map(|i| common::event(&format!("x{i}"), T0_MS))
        .collect();
    // Not a currency: X answers 200 but does not process it.
    events[1]["custom_data"]["currency"] = json!("euro");
    // Not routed: one fixed conversion (events = ["Purchase"]).
    let mut lead = common::event("lead-x", T0_MS);
    lead["event_name"] = json!("Lead");
    events.push(lead);
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 5);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(xs.count(), 0);
    clock.advance_ms(1000);

    let dlq = dlq_with(&d, "x_gh", 1).await;
    // [x0..x3] 3 of 4 → [x0,x1] 1 of 2 and [x2,x3] 2 of 2 → [x0] 1 of 1, [x1] 0 of 1.
    for _ in 0..1000 {
        if xs.received().iter().filter(|r| r.status != 0).count() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = xs.received();
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|r| r.status == 200));
    assert_eq!(got.iter().filter(|r| r.accepted).count(), 2);
    for (id, sent) in [("x0", 3), ("x1", 3), ("x2", 2), ("x3", 2)] {
        assert_eq!(xs.count_event(id), sent, "{id}");
    }
    for id in ["x0", "x2", "x3"] {
        assert_eq!(xs.accepted_event(id), 1, "{id}");
    }
    assert_eq!(xs.accepted_event("x1"), 0);
    assert_eq!(xs.count_event("lead-x"), 0);
    assert!(got.iter().all(|r| r.at_ms == got[0].at_ms));
    let e = &dlq["entries"][0];
    assert_eq!(e["event"]["event_id"], "x1");
    assert_eq!(e["error_class"], "rejected");
    assert_eq!(e["status"], 200);
    assert_eq!(e["retries"], 0);
    let body = e["response_body"].as_str().unwrap();
    assert!(body.contains("\"conversions_processed\":0"), "{body}");
    assert!(!body.contains(TOKEN));
    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(xs.count(), 5);
    let dests = admin_get(&d, "/v1/destinations").await;
    let h = &dests["destinations"][0];
    assert_eq!(h["queue_depth"], 0);
    assert_eq!(h["dlq_depth"], 1);
    d.shutdown().await;
    xs.shutdown().await;
}
