//! Contract tests of the Pinterest Conversions API v5 adapter against its simulator
//! (platforms.md §6): the exact request, each row of its classification (failed events
//! inside a 200), and a partly failed batch through the real delivery engine.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    self, KEY, T0_MS, TestDaemon, admin_get, contract_policy, dlq_with, ev, out, resp, send,
    sha256_hex, whole,
};
use serde_json::{Value, json};
use sluice::clock::{ManualClock, SharedClock};
use sluice::config::{Destination, Platform, Secret};
use sluice::event::{ClearField, NormalizedEvent};
use sluice::ingest::identifiers::IdField;
use sluice::platforms::pinterest::PINTEREST;
use sluice::platforms::{self, Adapter, Class, HttpResponse, OutEvent, Verdict};
use sluice::sim::{self, Fault, FaultScript, RetryAfter, SimOptions, SimServer};

const T0_S: i64 = T0_MS / 1000;
const TOKEN: &str = "pina_conv_token_123";
const ADMIN: &str = "admin_test_token";
const ACCOUNT: &str = "549755885175";

fn dest(server: &SimServer, token: &str, map: &[(&str, &str)]) -> Destination {
    Destination {
        id: "pin_dest".into(),
        workspace: "glasshouse".into(),
        platform: Platform::Pinterest,
        endpoint: Some(server.url()),
        events: None,
        event_map: map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        params: [("ad_account_id".to_string(), ACCOUNT.to_string())].into(),
        credentials: [("access_token".to_string(), Secret(token.to_string()))].into(),
        policy: contract_policy(5000),
    }
}

fn email_ev(id: &str, name: &str) -> NormalizedEvent {
    let mut e = ev(id, &[(IdField::Email, "x@example.com")], &[], None);
    e.event_name = name.into();
    e
}

async fn start(clock: &Arc<ManualClock>, credential: Option<&str>) -> SimServer {
    let c: SharedClock = clock.clone();
    sim::start_with(
        Platform::Pinterest,
        "127.0.0.1:0".parse().unwrap(),
        c,
        FaultScript::none(),
        SimOptions {
            rate_limits: None,
            credential: credential.map(str::to_string),
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn pinterest_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, Some(TOKEN)).await;
    let d = dest(&server, TOKEN, &[("Search", "search")]);
    let mut a = ev(
        "ord-1001",
        &[
            (IdField::Email, "  John.Smith@Example.com "),
            (IdField::Phone, "+1 (415) 555-0100"),
            (IdField::ExternalId, "CUST-42"),
            (IdField::FirstName, "John"),
        ],
        &[
            (ClearField::ClientIpAddress, "203.0.113.7"),
            (ClearField::ClientUserAgent, "Mozilla/5.0 (X11)"),
            (ClearField::Epik, "dj0yJnU9"),
            (ClearField::RdtCid, "not-for-pinterest"),
        ],
        Some(json!({"currency": "USD", "value": 129.5, "order_id": "A-1", "items": [1]})),
    );
    a.event_source_url = Some("https://shop.example/thanks".into());
    a.action_source = Some("website".into());
    let mut b = ev(
        "lead-1",
        &[],
        &[
            (ClearField::ClientIpAddress, "203.0.113.8"),
            (ClearField::ClientUserAgent, "curl/8"),
        ],
        Some(json!({"value": " 7.25 "})),
    );
    b.event_name = "Lead".into();
    b.action_source = Some("physical_store".into());
    let req = PINTEREST.build(&d, &[out(&a), out(&b)], T0_MS);
    assert_eq!(req.secrets, vec![TOKEN.to_string()]);
    assert_eq!(
        req.url,
        format!("{}/v5/ad_accounts/{ACCOUNT}/events", server.url())
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
            r#"{{"data":["#,
            r#"{{"action_source":"web","custom_data":{{"currency":"USD","order_id":"A-1","value":"129.5"}},"#,
            r#""event_id":"ord-1001","event_name":"checkout","event_source_url":"https://shop.example/thanks","#,
            r#""event_time":{t},"user_data":{{"click_id":"dj0yJnU9","client_ip_address":"203.0.113.7","#,
            r#""client_user_agent":"Mozilla/5.0 (X11)","em":["{em}"],"external_id":["{ext}"],"fn":["{fname}"],"#,
            r#""ph":["{ph}"]}}}},"#,
            r#"{{"action_source":"offline","custom_data":{{"value":"7.25"}},"event_id":"lead-1","#,
            r#""event_name":"lead","event_time":{t},"user_data":{{"client_ip_address":"203.0.113.8","#,
            r#""client_user_agent":"curl/8"}}}}"#,
            r#"]}}"#
        ),
        t = T0_S - 60,
        em = sha256_hex("john.smith@example.com"),
        ext = sha256_hex("cust-42"),
        fname = sha256_hex("john"),
        ph = sha256_hex("14155550100"),
    );
    assert_eq!(String::from_utf8(req.body.clone()).unwrap(), want);
    let mut prod = d.clone();
    prod.endpoint = None;
    assert_eq!(
        PINTEREST.build(&prod, &[out(&a)], T0_MS).url,
        format!("https://api.pinterest.com/v5/ad_accounts/{ACCOUNT}/events")
    );

    let r = send(&req).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["num_events_received"], 2);
    assert_eq!(v["num_events_processed"], 2);
    assert_eq!(v["events"][1]["status"], "processed");
    assert_eq!(PINTEREST.classify(&d, 2, &r), whole(Class::Delivered));
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, format!("/v5/ad_accounts/{ACCOUNT}/events"));
    assert_eq!(got[0].raw_body, req.body);
    assert_eq!(
        sim::event_ids(Platform::Pinterest, &got[0].body),
        ["ord-1001", "lead-1"]
    );

    // Event names: the default map, `custom` for the rest, event_map overrides.
    let names: Vec<String> = [
        "Purchase",
        "AddToCart",
        "PageView",
        "Lead",
        "CompleteRegistration",
        "ViewContent",
        "Search",
        "Whatever",
    ]
    .iter()
    .map(|n| {
        let e = email_ev("n", n);
        let body: Value =
            serde_json::from_slice(&PINTEREST.build(&d, &[out(&e)], T0_MS).body).unwrap();
        body["data"][0]["event_name"].as_str().unwrap().to_string()
    })
    .collect();
    assert_eq!(
        names,
        [
            "checkout",
            "add_to_cart",
            "page_visit",
            "lead",
            "signup",
            "custom",
            "search",
            "custom"
        ]
    );

    // check(): em, or IP with user agent; an event_map to a name Pinterest lacks.
    assert!(PINTEREST.check(&d, &out(&a)).is_ok());
    assert!(PINTEREST.check(&d, &out(&b)).is_ok());
    let ip_only = ev(
        "i",
        &[(IdField::Phone, "4155550100")],
        &[(ClearField::ClientIpAddress, "203.0.113.7")],
        None,
    );
    assert!(PINTEREST.check(&d, &out(&ip_only)).is_err());
    let odd = dest(&server, TOKEN, &[("Purchase", "Buy")]);
    assert!(PINTEREST.check(&odd, &out(&a)).is_err());
    assert_eq!(
        platforms::adapter(Platform::Pinterest).unwrap().platform(),
        Platform::Pinterest
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pinterest_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, Some(TOKEN)).await;
    let d = dest(&server, TOKEN, &[]);
    let e1 = email_ev("a", "Purchase");
    let e2 = email_ev("b", "Purchase");
    let req = PINTEREST.build(&d, &[out(&e1), out(&e2)], T0_MS);

    // 401 code 2: no token, another token.
    for t in ["", "expired"] {
        let r = send(&PINTEREST.build(&dest(&server, t, &[]), &[out(&e1)], T0_MS)).await;
        assert_eq!(r.status, 401);
        assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap()["code"], 2);
        assert_eq!(PINTEREST.classify(&d, 1, &r), whole(Class::Auth));
    }

    let code = |status, code| Fault::Code { status, code };
    let cases: Vec<(Fault, u16, Verdict)> = vec![
        (Fault::Auth, 401, whole(Class::Auth)),
        (code(403, 29), 403, whole(Class::Auth)),
        (code(403, 1), 403, whole(Class::Rejected)),
        (
            Fault::Throttle { retry_after: None },
            429,
            whole(Class::Throttled { hold_ms: None }),
        ),
        (
            Fault::Throttle {
                retry_after: Some(RetryAfter::Seconds(5)),
            },
            429,
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
        ),
        (Fault::Transient, 503, whole(Class::Retryable)),
        (code(503, 4197), 503, whole(Class::Retryable)),
        (Fault::ServerError(500), 500, whole(Class::Retryable)),
        (Fault::ServerError(408), 408, whole(Class::Retryable)),
        (Fault::Redirect, 307, whole(Class::Retryable)),
        (Fault::Invalid, 400, whole(Class::Rejected)),
        (code(400, 4196), 400, whole(Class::Rejected)),
        (Fault::ServerError(404), 404, whole(Class::Rejected)),
        // Failed events inside a 200.
        (
            code(200, 1),
            200,
            Verdict::PerRow(vec![Class::Rejected, Class::Delivered]),
        ),
        (
            code(200, 2),
            200,
            Verdict::PerRow(vec![Class::Rejected, Class::Rejected]),
        ),
        (code(200, 0), 200, whole(Class::Delivered)),
        // 422 "Not all events were successfully processed" without rows: bisect.
        (code(422, 0), 422, Verdict::Bisect),
    ];
    for (fault, status, verdict) in cases {
        server.set_script(FaultScript::always(fault.clone()));
        let r = send(&req).await;
        assert_eq!(r.status, status, "{fault:?}");
        assert_eq!(PINTEREST.classify(&d, 2, &r), verdict, "{fault:?}");
    }
    // A single event's 422: rejected.
    server.set_script(FaultScript::always(code(422, 0)));
    let r = send(&PINTEREST.build(&d, &[out(&e1)], T0_MS)).await;
    assert_eq!(r.status, 422);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["message"], "Not all events were successfully processed");
    assert_eq!(PINTEREST.classify(&d, 1, &r), whole(Class::Rejected));
    server.set_script(FaultScript::none());

    // 2xx bodies the adapter cannot read for sure: retried, never taken as delivered.
    assert_eq!(
        PINTEREST.classify(
            &d,
            2,
            &resp(
                200,
                json!({"num_events_received": 2, "num_events_processed": 1})
            )
        ),
        whole(Class::Retryable)
    );
    assert_eq!(
        PINTEREST.classify(
            &d,
            2,
            &resp(
                200,
                json!({"num_events_received": 2, "num_events_processed": 2})
            )
        ),
        whole(Class::Delivered)
    );
    let not_json = HttpResponse {
        status: 200,
        headers: vec![],
        body: b"OK".to_vec(),
    };
    assert_eq!(
        PINTEREST.classify(&d, 2, &not_json),
        whole(Class::Retryable)
    );
    // A short events list or an unknown status: those rows are retried.
    assert_eq!(
        PINTEREST.classify(
            &d,
            3,
            &resp(
                200,
                json!({"events": [{"status": "processed"}, {"status": "pending"}]})
            )
        ),
        Verdict::PerRow(vec![Class::Delivered, Class::Retryable, Class::Retryable])
    );
    // A 422 that lists events: per row.
    assert_eq!(
        PINTEREST.classify(
            &d,
            2,
            &resp(
                422,
                json!({"code": 4196, "message": "Not all events were successfully processed",
                       "events": [{"status": "failed"}, {"status": "processed"}]})
            )
        ),
        Verdict::PerRow(vec![Class::Rejected, Class::Delivered])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pinterest_judges_each_event() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, None).await;
    let d = dest(&server, TOKEN, &[]);
    let mut evs = [
        email_ev("ok-0", "Purchase"),
        ev(
            "bad-1",
            &[(IdField::Email, "x@example.com")],
            &[],
            Some(json!({"currency": "euro", "value": 1})),
        ),
        email_ev("ok-2", "Lead"),
        email_ev("bad-3", "Purchase"),
    ];
    evs[3].event_time = T0_S - 8 * 86_400;
    let outs: Vec<OutEvent<'_>> = evs.iter().map(out).collect();
    let r = send(&PINTEREST.build(&d, &outs, T0_MS)).await;
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["num_events_received"], 4);
    assert_eq!(v["num_events_processed"], 2);
    assert_eq!(v["events"][1]["status"], "failed");
    assert_eq!(
        v["events"][1]["error_message"],
        "custom_data.currency is not a valid ISO-4217 code."
    );
    assert_eq!(
        PINTEREST.classify(&d, 4, &r),
        Verdict::PerRow(vec![
            Class::Delivered,
            Class::Rejected,
            Class::Delivered,
            Class::Rejected
        ])
    );
    // Nothing processed: the 422.
    let r = send(&PINTEREST.build(&d, &[out(&evs[1]), out(&evs[3])], T0_MS)).await;
    assert_eq!(r.status, 422);
    assert_eq!(PINTEREST.classify(&d, 2, &r), Verdict::Bisect);
    server.shutdown().await;
}

// ---- Through the daemon ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinterest_failed_events_dead_letter_and_the_processed_are_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let pin = start(&clock, Some(TOKEN)).await;
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
id = "pin_gh"
workspace = "glasshouse"
platform = "pinterest"
endpoint = "{url}"
params = {{ ad_account_id = "{ACCOUNT}" }}
credentials = {{ access_token = "{TOKEN}" }}
"#,
        store = dir.path().join("sluice.redb").display(),
        url = pin.url(),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let mut events: Vec<Value> = (0..5)
        .map(|i| common::event(&format!("p{i}"), T0_MS))
        .collect();
    // Not ISO-4217: Pinterest fails these events inside its 200.
    events[1]["custom_data"]["currency"] = json!("euro");
    events[3]["custom_data"]["currency"] = json!("E");
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 5);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(pin.count(), 0);
    clock.advance_ms(1000);

    let dlq = dlq_with(&d, "pin_gh", 2).await;
    let got = pin.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 200);
    assert_eq!(
        sim::event_ids(Platform::Pinterest, &got[0].body),
        ["p0", "p1", "p2", "p3", "p4"]
    );
    let mut ids: Vec<&str> = dlq["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["p1", "p3"]);
    for e in dlq["entries"].as_array().unwrap() {
        assert_eq!(e["error_class"], "rejected");
        assert_eq!(e["retries"], 0);
        assert_eq!(e["status"], 200);
        let body = e["response_body"].as_str().unwrap();
        assert!(!body.contains(TOKEN), "{body}");
        assert!(body.contains("\"failed\""), "{body}");
    }
    // The processed events are done: nothing is sent again, however long we wait.
    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pin.count(), 1);
    for i in 0..5 {
        assert_eq!(pin.count_event(&format!("p{i}")), 1);
    }
    let dests = admin_get(&d, "/v1/destinations").await;
    let h = &dests["destinations"][0];
    assert_eq!(h["queue_depth"], 0);
    assert_eq!(h["dlq_depth"], 2);

    // A scripted failure inside a 200: its row is dead-lettered, the other is done.
    pin.set_script(FaultScript::none().with(sim::Rule::Range {
        from: 1,
        to: 1,
        fault: Fault::Code {
            status: 200,
            code: 1,
        },
    }));
    let evs: Vec<Value> = (5..7)
        .map(|i| common::event(&format!("p{i}"), T0_MS + 3_600_000))
        .collect();
    assert_eq!(d.post(&json!({"events": evs})).await.1["accepted"], 2);
    clock.advance_ms(1000);
    dlq_with(&d, "pin_gh", 3).await;
    assert_eq!(pin.count(), 2);
    d.shutdown().await;
    pin.shutdown().await;
}
