//! Contract tests of the LinkedIn Conversions API adapter against its simulator
//! (platforms.md §5): the exact request, each row of its classification, and a batch
//! failed by a 422 naming rows through the real delivery engine.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    self, KEY, T0_MS, TestDaemon, admin_get, contract_policy, dlq_with, ev, eventually, out, send,
    sha256_hex, whole,
};
use serde_json::{Value, json};
use sluice::clock::{ManualClock, SharedClock};
use sluice::config::{Destination, Platform, Secret};
use sluice::event::{ClearField, NormalizedEvent};
use sluice::ingest::identifiers::IdField;
use sluice::platforms::linkedin::LINKEDIN;
use sluice::platforms::{self, Adapter, Class, HttpResponse, OutEvent, Verdict};
use sluice::sim::{self, Fault, FaultScript, RetryAfter, SimOptions, SimServer};

const T0_S: i64 = T0_MS / 1000;
const TOKEN: &str = "li-conv-token-123";
const ADMIN: &str = "admin_test_token";

fn dest(server: &SimServer, token: &str, extra: &[(&str, &str)]) -> Destination {
    let mut params: std::collections::BTreeMap<String, String> =
        [("conversion_rule_id".to_string(), "104004".to_string())].into();
    for (k, v) in extra {
        params.insert(k.to_string(), v.to_string());
    }
    Destination {
        id: "li_dest".into(),
        workspace: "glasshouse".into(),
        platform: Platform::Linkedin,
        endpoint: Some(server.url()),
        events: Some(vec!["Purchase".into()]),
        event_map: Default::default(),
        params: params.into_iter().collect(),
        credentials: [("access_token".to_string(), Secret(token.to_string()))].into(),
        policy: contract_policy(5000),
    }
}

fn email_ev(id: &str) -> NormalizedEvent {
    ev(id, &[(IdField::Email, "x@example.com")], &[], None)
}

async fn start(clock: &Arc<ManualClock>, credential: Option<&str>) -> SimServer {
    let c: SharedClock = clock.clone();
    sim::start_with(
        Platform::Linkedin,
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
async fn linkedin_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, Some(TOKEN)).await;
    let d = dest(&server, TOKEN, &[]);
    let a = ev(
        "ord-1001",
        &[
            (IdField::Email, "  John.Smith@Example.com "),
            (IdField::Phone, "+1 (415) 555-0100"),
            (IdField::FirstName, "John"),
        ],
        &[
            (ClearField::LiFatId, "li-fat-1"),
            (ClearField::ClientIpAddress, "203.0.113.7"),
        ],
        Some(json!({"currency": "USD", "value": 129.5, "order_id": "A-1"})),
    );
    let b = ev(
        "ord-1002",
        &[],
        &[(ClearField::LiFatId, "li-fat-2")],
        Some(json!({"currency": "EUR", "value": " 7.25 "})),
    );
    // A value without a currency: no conversionValue.
    let c = ev(
        "ord-1003",
        &[(IdField::Email, "x@example.com")],
        &[],
        Some(json!({"value": 3})),
    );
    let req = LINKEDIN.build(&d, &[out(&a), out(&b), out(&c)], T0_MS);
    assert_eq!(req.secrets, vec![TOKEN.to_string()]);
    assert_eq!(req.url, format!("{}/rest/conversionEvents", server.url()));
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.headers,
        vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("authorization".to_string(), format!("Bearer {TOKEN}")),
            ("linkedin-version".to_string(), "202603".to_string()),
            ("x-restli-protocol-version".to_string(), "2.0.0".to_string()),
            ("x-restli-method".to_string(), "BATCH_CREATE".to_string()),
        ]
    );
    let email = sha256_hex("john.smith@example.com");
    let want = format!(
        concat!(
            r#"{{"elements":["#,
            r#"{{"conversion":"urn:lla:llaPartnerConversion:104004","conversionHappenedAt":{ms},"#,
            r#""conversionValue":{{"amount":"129.5","currencyCode":"USD"}},"eventId":"ord-1001","#,
            r#""user":{{"userIds":[{{"idType":"SHA256_EMAIL","idValue":"{email}"}},"#,
            r#"{{"idType":"LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID","idValue":"li-fat-1"}}]}}}},"#,
            r#"{{"conversion":"urn:lla:llaPartnerConversion:104004","conversionHappenedAt":{ms},"#,
            r#""conversionValue":{{"amount":"7.25","currencyCode":"EUR"}},"eventId":"ord-1002","#,
            r#""user":{{"userIds":[{{"idType":"LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID","idValue":"li-fat-2"}}]}}}},"#,
            r#"{{"conversion":"urn:lla:llaPartnerConversion:104004","conversionHappenedAt":{ms},"#,
            r#""eventId":"ord-1003","user":{{"userIds":[{{"idType":"SHA256_EMAIL","idValue":"{email2}"}}]}}}}"#,
            r#"]}}"#
        ),
        ms = (T0_S - 60) * 1000,
        email = email,
        email2 = sha256_hex("x@example.com"),
    );
    assert_eq!(String::from_utf8(req.body.clone()).unwrap(), want);
    // Default endpoint; a configured LinkedIn-Version.
    let mut prod = dest(&server, TOKEN, &[("linkedin_version", "202609")]);
    prod.endpoint = None;
    let p = LINKEDIN.build(&prod, &[out(&a)], T0_MS);
    assert_eq!(p.url, "https://api.linkedin.com/rest/conversionEvents");
    assert!(
        p.headers
            .contains(&("linkedin-version".to_string(), "202609".to_string()))
    );

    let resp = send(&req).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        serde_json::from_slice::<Value>(&resp.body).unwrap(),
        json!({"elements": [{"status": 201}, {"status": 201}, {"status": 201}]})
    );
    assert_eq!(LINKEDIN.classify(&d, 3, &resp), whole(Class::Delivered));
    let got = server.received();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!(g.path, "/rest/conversionEvents");
    assert_eq!(g.header("x-restli-method"), Some("BATCH_CREATE"));
    assert_eq!(g.header("linkedin-version"), Some("202603"));
    assert_eq!(g.raw_body, req.body);
    assert!(g.accepted);
    assert_eq!(
        sim::event_ids(Platform::Linkedin, &g.body),
        ["ord-1001", "ord-1002", "ord-1003"]
    );

    // check(): a hashed email or a li_fat_id.
    let none = ev(
        "n",
        &[(IdField::Phone, "4155550100")],
        &[(ClearField::ClientIpAddress, "203.0.113.7")],
        None,
    );
    assert!(LINKEDIN.check(&d, &out(&none)).is_err());
    for e in [&a, &b, &c] {
        assert!(LINKEDIN.check(&d, &out(e)).is_ok());
    }
    assert!(platforms::adapter(Platform::Linkedin).unwrap().platform() == Platform::Linkedin);
    server.shutdown().await;
}

#[tokio::test]
async fn linkedin_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, Some(TOKEN)).await;
    let d = dest(&server, TOKEN, &[]);
    let e = email_ev("a");
    let req = LINKEDIN.build(&d, &[out(&e)], T0_MS);
    let field = |resp: &HttpResponse, k: &str| -> Value {
        serde_json::from_slice::<Value>(&resp.body).unwrap()[k].clone()
    };

    // 401: no token (65600) and a revoked one (65601).
    let resp = send(&LINKEDIN.build(&dest(&server, "", &[]), &[out(&e)], T0_MS)).await;
    assert_eq!(resp.status, 401);
    assert_eq!(field(&resp, "serviceErrorCode"), 65600);
    assert_eq!(field(&resp, "code"), "INVALID_ACCESS_TOKEN");
    assert_eq!(LINKEDIN.classify(&d, 1, &resp), whole(Class::Auth));
    let resp = send(&LINKEDIN.build(&dest(&server, "old", &[]), &[out(&e)], T0_MS)).await;
    assert_eq!(resp.status, 401);
    assert_eq!(field(&resp, "serviceErrorCode"), 65601);
    assert_eq!(LINKEDIN.classify(&d, 1, &resp), whole(Class::Auth));

    // A sunset LinkedIn-Version: 426, the destination pauses.
    let old = dest(&server, TOKEN, &[("linkedin_version", "202301")]);
    let resp = send(&LINKEDIN.build(&old, &[out(&e)], T0_MS)).await;
    assert_eq!(resp.status, 426);
    assert_eq!(field(&resp, "code"), "NONEXISTENT_VERSION");
    assert_eq!(
        LINKEDIN.classify(&d, 1, &resp),
        whole(Class::Gone("api_version_retired"))
    );
    // A version that is no version: 400, rejected.
    let bad = dest(&server, TOKEN, &[("linkedin_version", "2026-03")]);
    let resp = send(&LINKEDIN.build(&bad, &[out(&e)], T0_MS)).await;
    assert_eq!(resp.status, 400);
    assert_eq!(field(&resp, "code"), "VERSION_MISSING");
    assert_eq!(LINKEDIN.classify(&d, 1, &resp), whole(Class::Rejected));

    let code = |status, code| Fault::Code { status, code };
    let cases: Vec<(Fault, u16, Verdict)> = vec![
        (Fault::Auth, 401, whole(Class::Auth)),
        (code(401, 65600), 401, whole(Class::Auth)),
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
        (code(500, 0), 500, whole(Class::Retryable)),
        (Fault::ServerError(502), 502, whole(Class::Retryable)),
        (Fault::ServerError(408), 408, whole(Class::Retryable)),
        (Fault::Redirect, 307, whole(Class::Retryable)),
        (Fault::Timeout, 504, whole(Class::Retryable)),
        (Fault::Invalid, 400, whole(Class::Rejected)),
        (code(403, 100), 403, whole(Class::Rejected)),
        (Fault::ServerError(404), 404, whole(Class::Rejected)),
        (code(422, 0), 422, Verdict::RowsRejected(vec![0])),
        (code(426, 0), 426, whole(Class::Gone("api_version_retired"))),
    ];
    for (fault, status, verdict) in cases {
        server.set_script(FaultScript::always(fault.clone()));
        let send_it = send(&req);
        let resp = if fault == Fault::Timeout {
            let c2 = clock.clone();
            let adv = async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                c2.advance_ms(sim::TIMEOUT_HOLD_MS);
            };
            let (r, ()) = tokio::join!(send_it, adv);
            r
        } else {
            send_it.await
        };
        assert_eq!(resp.status, status, "{fault:?}");
        assert_eq!(LINKEDIN.classify(&d, 1, &resp), verdict, "{fault:?}");
    }
    server.set_script(FaultScript::none());

    // Element statuses inside a 200.
    let ok = |body: Value| HttpResponse {
        status: 200,
        headers: vec![],
        body: serde_json::to_vec(&body).unwrap(),
    };
    assert_eq!(
        LINKEDIN.classify(
            &d,
            3,
            &ok(json!({"elements": [{"status": 201}, {"status": 400}, {"status": 503}]}))
        ),
        Verdict::PerRow(vec![Class::Delivered, Class::Rejected, Class::Retryable])
    );
    // A short list: the rows without a status are retried, never taken as delivered.
    assert_eq!(
        LINKEDIN.classify(&d, 2, &ok(json!({"elements": [{"status": 201}]}))),
        Verdict::PerRow(vec![Class::Delivered, Class::Retryable])
    );
    // A 201 without a body (single create) or a 200 with no elements: delivered.
    for body in [&b""[..], b"{}"] {
        let r = HttpResponse {
            status: 201,
            headers: vec![],
            body: body.to_vec(),
        };
        assert_eq!(LINKEDIN.classify(&d, 1, &r), whole(Class::Delivered));
    }
    // A 422 naming rows beyond the request, or none: rejected whole.
    let r422 = |msg: &str| HttpResponse {
        status: 422,
        headers: vec![],
        body: serde_json::to_vec(&json!({"status": 422, "message": msg})).unwrap(),
    };
    assert_eq!(
        LINKEDIN.classify(&d, 2, &r422("Index: 5, ERROR :: /x :: y\n")),
        whole(Class::Rejected)
    );
    assert_eq!(
        LINKEDIN.classify(&d, 2, &r422("something else")),
        whole(Class::Rejected)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn linkedin_422_names_the_rows() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, None).await;
    let d = dest(&server, TOKEN, &[]);
    let mut evs = [
        email_ev("ok-0"),
        ev(
            "bad-1",
            &[(IdField::Email, "x@example.com")],
            &[],
            Some(json!({"currency": "euro", "value": 1})),
        ),
        email_ev("ok-2"),
        email_ev("bad-3"),
        email_ev("ok-4"),
    ];
    evs[3].event_time = T0_S - 91 * 86_400; // older than LinkedIn's 90 days
    let outs: Vec<OutEvent<'_>> = evs.iter().map(out).collect();
    let resp = send(&LINKEDIN.build(&d, &outs, T0_MS)).await;
    assert_eq!(resp.status, 422);
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        v["message"],
        "Index: 1, ERROR :: /conversionValue/currencyCode :: is not a valid ISO 4217 currency code\n\
         Index: 3, ERROR :: /conversionHappenedAt :: conversion happened more than 90 days ago\n"
    );
    assert_eq!(
        LINKEDIN.classify(&d, 5, &resp),
        Verdict::RowsRejected(vec![1, 3])
    );
    // All or nothing.
    assert_eq!(server.accepted_event("ok-0"), 0);
    let rest = [out(&evs[0]), out(&evs[2]), out(&evs[4])];
    let resp = send(&LINKEDIN.build(&d, &rest, T0_MS)).await;
    assert_eq!(LINKEDIN.classify(&d, 3, &resp), whole(Class::Delivered));
    assert_eq!(server.accepted_event("ok-2"), 1);
    server.shutdown().await;
}

// ---- Through the daemon ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_rows_named_by_a_422_dead_letter_and_the_rest_is_resent_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let li = start(&clock, Some(TOKEN)).await;
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
id = "li_gh"
workspace = "glasshouse"
platform = "linkedin"
endpoint = "{url}"
events = ["Purchase"]
params = {{ conversion_rule_id = "104004" }}
credentials = {{ access_token = "{TOKEN}" }}
"#,
        store = dir.path().join("sluice.redb").display(),
        url = li.url(),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let mut events: Vec<Value> = (0..5)
        .map(|i| common::event(&format!("l{i}"), T0_MS))
        .collect();
    // Not an ISO 4217 code: LinkedIn's 422 names these rows.
    events[1]["custom_data"]["currency"] = json!("euro");
    events[3]["custom_data"]["currency"] = json!("eur");
    // Not routed: the destination sends one fixed conversion (events = ["Purchase"]).
    let mut lead = common::event("lead-x", T0_MS);
    lead["event_name"] = json!("Lead");
    events.push(lead);
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 6);

    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(li.count(), 0);
    clock.advance_ms(1000);

    eventually("the rest delivered", || {
        li.received().iter().filter(|r| r.status != 0).count() == 2
    })
    .await;
    let dlq = dlq_with(&d, "li_gh", 2).await;
    let got = li.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].status, 422);
    assert_eq!(
        sim::event_ids(Platform::Linkedin, &got[0].body),
        ["l0", "l1", "l2", "l3", "l4"]
    );
    assert_eq!(got[1].status, 200);
    assert!(got[1].accepted);
    assert_eq!(
        sim::event_ids(Platform::Linkedin, &got[1].body),
        ["l0", "l2", "l4"]
    );
    // At once: no retry delay.
    assert_eq!(got[1].at_ms, got[0].at_ms);
    let mut ids: Vec<&str> = dlq["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["l1", "l3"]);
    for e in dlq["entries"].as_array().unwrap() {
        assert_eq!(e["error_class"], "rejected");
        assert_eq!(e["retries"], 0);
        assert_eq!(e["status"], 422);
        let body = e["response_body"].as_str().unwrap();
        assert!(!body.contains(TOKEN), "{body}");
        assert!(body.contains("Index: 1, ERROR"), "{body}");
    }
    for i in [0, 2, 4] {
        assert_eq!(li.accepted_event(&format!("l{i}")), 1);
        assert_eq!(li.count_event(&format!("l{i}")), 2);
    }
    assert_eq!(li.count_event("lead-x"), 0);
    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(li.count(), 2);
    let dests = admin_get(&d, "/v1/destinations").await;
    let h = &dests["destinations"][0];
    assert_eq!(h["queue_depth"], 0);
    assert_eq!(h["dlq_depth"], 2);
    d.shutdown().await;
    li.shutdown().await;
}
