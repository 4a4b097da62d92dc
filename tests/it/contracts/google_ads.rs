//! Contract tests of the Google Ads UploadClickConversions adapter against its simulator
//! (platforms.md §4): the exact request, each documented error shape classified, and a
//! partial failure through the real delivery engine.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    self, KEY, T0_MS, TestDaemon, admin_get, contract_policy, ev, eventually, out, resp, send,
    sha256_hex, whole,
};
use serde_json::{Value, json};
use sluice::clock::{ManualClock, SharedClock};
use sluice::config::{Destination, Platform, Secret};
use sluice::event::{ClearField, NormalizedEvent};
use sluice::ingest::identifiers::IdField;
use sluice::platforms::google_ads::GOOGLE_ADS;
use sluice::platforms::{self, Adapter, Class, HttpResponse, OutEvent, Verdict};
use sluice::sim::{self, Fault, FaultScript, RetryAfter, SimOptions, SimServer};

const T0_S: i64 = T0_MS / 1000;
const TOKEN: &str = "ya29.static-access-token";
const DEV: &str = "dev-token-abc";
const ADMIN: &str = "admin_test_token";

fn dest(server: &SimServer, token: &str, login: Option<&str>) -> Destination {
    let mut params: std::collections::BTreeMap<String, String> = [
        ("customer_id".to_string(), "123-456-7890".to_string()),
        ("conversion_action_id".to_string(), "555".to_string()),
    ]
    .into();
    if let Some(l) = login {
        params.insert("login_customer_id".into(), l.into());
    }
    Destination {
        id: "gads".into(),
        workspace: "glasshouse".into(),
        platform: Platform::GoogleAds,
        endpoint: Some(server.url()),
        events: Some(vec!["Purchase".into()]),
        event_map: Default::default(),
        params,
        credentials: [
            ("access_token".to_string(), Secret(token.to_string())),
            ("developer_token".to_string(), Secret(DEV.to_string())),
        ]
        .into(),
        policy: contract_policy(2000),
    }
}

fn gclid_ev(id: &str, gclid: &str) -> NormalizedEvent {
    ev(id, &[], &[(ClearField::Gclid, gclid)], None)
}

async fn start(clock: &Arc<ManualClock>, credential: Option<&str>) -> SimServer {
    let c: SharedClock = clock.clone();
    sim::start_with(
        Platform::GoogleAds,
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
async fn google_ads_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, None).await;
    let d = dest(&server, TOKEN, Some("999-888-7777"));
    let a = ev(
        "ord-1001",
        &[
            (IdField::Email, "John.Smith@GMail.com"),
            (IdField::Phone, "+1 (415) 555-0100"),
            (IdField::FirstName, "John"),
        ],
        &[
            (ClearField::Gclid, "Cj0KCQ-abc_123"),
            (ClearField::Gbraid, "gb-1"),
            (ClearField::ClientIpAddress, "203.0.113.7"),
        ],
        Some(json!({"currency": "EUR", "value": 129.5})),
    );
    let b = ev(
        "lead-\"2\"",
        &[],
        &[(ClearField::Wbraid, "wb-2")],
        Some(json!({"value": " 7.25 "})),
    );
    let c = ev("ph-3", &[(IdField::Phone, "+14155550100")], &[], None);
    let req = GOOGLE_ADS.build(&d, &[out(&a), out(&b), out(&c)], T0_MS);
    assert_eq!(req.secrets, vec![TOKEN.to_string(), DEV.to_string()]);
    assert_eq!(
        req.url,
        format!(
            "{}/v22/customers/1234567890:uploadClickConversions",
            server.url()
        )
    );
    let mut prod = d.clone();
    prod.endpoint = None;
    assert_eq!(
        GOOGLE_ADS.build(&prod, &[out(&a)], T0_MS).url,
        "https://googleads.googleapis.com/v22/customers/1234567890:uploadClickConversions"
    );
    let email = sha256_hex("johnsmith@gmail.com");
    let phone = sha256_hex("+14155550100");
    let want = json!({
        "conversions": [
            {
                "conversionAction": "customers/1234567890/conversionActions/555",
                "conversionDateTime": "2026-11-02 11:59:00+00:00",
                "conversionValue": 129.5,
                "currencyCode": "EUR",
                "gclid": "Cj0KCQ-abc_123",
                "orderId": "ord-1001",
                "userIdentifiers": [{"hashedEmail": email}, {"hashedPhoneNumber": phone}],
            },
            {
                "conversionAction": "customers/1234567890/conversionActions/555",
                "conversionDateTime": "2026-11-02 11:59:00+00:00",
                "conversionValue": 7.25,
                "orderId": "lead-\"2\"",
                "wbraid": "wb-2",
            },
            {
                "conversionAction": "customers/1234567890/conversionActions/555",
                "conversionDateTime": "2026-11-02 11:59:00+00:00",
                "orderId": "ph-3",
                "userIdentifiers": [{"hashedPhoneNumber": phone}],
            },
        ],
        "partialFailure": true,
    });
    // Exact bytes: keys in sorted order, compact.
    assert_eq!(
        String::from_utf8(req.body.clone()).unwrap(),
        serde_json::to_string(&want).unwrap()
    );

    let r = send(&req).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v.get("partialFailureError").is_none());
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
    assert_eq!(GOOGLE_ADS.classify(&d, 3, &r), whole(Class::Delivered));
    let got = server.received();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!(g.method, "POST");
    assert_eq!(g.path, "/v22/customers/1234567890:uploadClickConversions");
    assert_eq!(g.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
    assert_eq!(g.header("developer-token"), Some(DEV));
    assert_eq!(g.header("login-customer-id"), Some("9998887777"));
    assert_eq!(g.header("content-type"), Some("application/json"));
    assert_eq!(g.body, want);
    assert!(g.accepted);
    assert_eq!(
        sim::event_ids(Platform::GoogleAds, &g.body),
        ["ord-1001", "lead-\"2\"", "ph-3"]
    );
    // No login-customer-id without the param.
    let plain = GOOGLE_ADS.build(&dest(&server, TOKEN, None), &[out(&a)], T0_MS);
    assert!(!plain.headers.iter().any(|(k, _)| k == "login-customer-id"));

    // check(): a click id, a hashed email or a hashed phone.
    let none = ev(
        "n",
        &[(IdField::FirstName, "Jo"), (IdField::ExternalId, "c1")],
        &[(ClearField::ClientIpAddress, "203.0.113.7")],
        None,
    );
    assert!(GOOGLE_ADS.check(&d, &out(&none)).is_err());
    for e in [&a, &b, &c, &gclid_ev("g", "x")] {
        assert!(GOOGLE_ADS.check(&d, &out(e)).is_ok());
    }
    let em = ev("e", &[(IdField::Email, "a@b.example")], &[], None);
    assert!(GOOGLE_ADS.check(&d, &out(&em)).is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn google_ads_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, None).await;
    let d = dest(&server, TOKEN, None);
    let e = gclid_ev("a", "Cj0-ok");
    let req = GOOGLE_ADS.build(&d, &[out(&e)], T0_MS);

    // 401 UNAUTHENTICATED in Google's shape: no token, unknown issued-looking token, no
    // developer token.
    let mut no_dev = d.clone();
    no_dev.credentials.remove("developer_token");
    for (dd, code) in [
        (dest(&server, "", None), "OAUTH_TOKEN_HEADER_INVALID"),
        (dest(&server, "sim-at.1.2.3", None), "OAUTH_TOKEN_INVALID"),
        (no_dev, "DEVELOPER_TOKEN_PARAMETER_MISSING"),
    ] {
        let r = send(&GOOGLE_ADS.build(&dd, &[out(&e)], T0_MS)).await;
        assert_eq!(r.status, 401);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
        assert_eq!(
            v["error"]["details"][0]["errors"][0]["errorCode"]["authenticationError"],
            code
        );
        assert_eq!(GOOGLE_ADS.classify(&d, 1, &r), whole(Class::Auth), "{code}");
    }

    let code = |status, code| Fault::Code { status, code };
    let cases: Vec<(Fault, u16, Class)> = vec![
        (Fault::Auth, 401, Class::Auth),
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
        (Fault::Transient, 503, Class::Retryable),
        (Fault::ServerError(500), 500, Class::Retryable),
        (Fault::ServerError(408), 408, Class::Retryable),
        (Fault::Redirect, 307, Class::Retryable),
        (Fault::Invalid, 400, Class::Rejected),
        // A 400 carrying internalError: transient.
        (code(400, 13), 400, Class::Retryable),
        (code(500, 13), 500, Class::Retryable),
        // A 400 that is not Google's JSON: a proxy's answer, retried.
        (Fault::ServerError(400), 400, Class::Retryable),
        (Fault::ServerError(403), 403, Class::Rejected),
        (Fault::ServerError(404), 404, Class::Rejected),
        // An error object inside a 200 (not Google's shape, but a proxy or a changed
        // API could send it): never counted delivered; retried (found by the drill).
        (code(200, 13), 200, Class::Retryable),
    ];
    for (fault, status, class) in cases {
        server.set_script(FaultScript::always(fault.clone()));
        let r = send(&req).await;
        assert_eq!(r.status, status, "{fault:?}");
        assert_eq!(GOOGLE_ADS.classify(&d, 1, &r), whole(class), "{fault:?}");
    }
    server.set_script(FaultScript::none());

    // Documented request-level shapes.
    let failure = |status: u16, st: &str, code: Value, extra: Value| {
        let mut err = json!({"errorCode": code, "message": "m"});
        err.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        resp(
            status,
            json!({"error": {"code": status, "message": "x", "status": st,
                "details": [{"@type": "type.googleapis.com/google.ads.googleads.v22.errors.GoogleAdsFailure",
                    "errors": [err]}]}}),
        )
    };
    let none = json!({});
    let table = [
        (
            failure(
                403,
                "PERMISSION_DENIED",
                json!({"authorizationError": "USER_PERMISSION_DENIED"}),
                none.clone(),
            ),
            Class::Auth,
        ),
        (
            failure(
                403,
                "PERMISSION_DENIED",
                json!({"authorizationError": "DEVELOPER_TOKEN_NOT_APPROVED"}),
                none.clone(),
            ),
            Class::Auth,
        ),
        (
            failure(
                401,
                "UNAUTHENTICATED",
                json!({"authenticationError": "OAUTH_TOKEN_EXPIRED"}),
                none.clone(),
            ),
            Class::Auth,
        ),
        (
            failure(
                429,
                "RESOURCE_EXHAUSTED",
                json!({"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"}),
                json!({"details": {"quotaErrorDetails": {"retryDelay": "7s"}}}),
            ),
            Class::Throttled {
                hold_ms: Some(7000),
            },
        ),
        (
            failure(
                400,
                "INVALID_ARGUMENT",
                json!({"quotaError": "RESOURCE_EXHAUSTED"}),
                none.clone(),
            ),
            Class::Throttled { hold_ms: None },
        ),
        (
            failure(
                409,
                "ABORTED",
                json!({"databaseError": "CONCURRENT_MODIFICATION"}),
                none.clone(),
            ),
            Class::Retryable,
        ),
        (
            failure(
                400,
                "INVALID_ARGUMENT",
                json!({"conversionUploadError": "TOO_MANY_CONVERSIONS_IN_REQUEST"}),
                none.clone(),
            ),
            Class::Rejected,
        ),
        (
            resp(
                503,
                json!({"error": {"code": 503, "message": "x", "status": "UNAVAILABLE"}}),
            ),
            Class::Retryable,
        ),
        (
            resp(
                500,
                json!({"error": {"code": 500, "message": "x", "status": "INTERNAL"}}),
            ),
            Class::Retryable,
        ),
    ];
    for (r, class) in table {
        assert_eq!(
            GOOGLE_ADS.classify(&d, 1, &r),
            whole(class),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn google_ads_partial_failure_names_the_rows() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, None).await;
    let d = dest(&server, TOKEN, None);
    let busy = format!("busy-until-{}", T0_S + 5);
    let mut old = gclid_ev("old-4", "Cj0-ok4");
    old.event_time = T0_S - 91 * 86_400;
    let evs = [
        gclid_ev("ok-0", "Cj0-ok0"),
        gclid_ev("bad-1", "unparseable-1"),
        gclid_ev("busy-2", &busy),
        gclid_ev("ok-3", "Cj0-ok3"),
        old,
    ];
    let outs: Vec<OutEvent<'_>> = evs.iter().map(out).collect();
    let r = send(&GOOGLE_ADS.build(&d, &outs, T0_MS)).await;
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[1], json!({}));
    assert_eq!(results[0]["gclid"], "Cj0-ok0");
    let pfe = &v["partialFailureError"];
    assert_eq!(pfe["code"], 3);
    let errs = pfe["details"][0]["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 3);
    assert_eq!(
        errs[0]["errorCode"],
        json!({"conversionUploadError": "UNPARSEABLE_GCLID"})
    );
    assert_eq!(
        errs[0]["location"]["fieldPathElements"][0],
        json!({"fieldName": "conversions", "index": 1})
    );
    assert_eq!(
        errs[1]["errorCode"],
        json!({"databaseError": "CONCURRENT_MODIFICATION"})
    );
    assert_eq!(
        errs[2]["errorCode"],
        json!({"conversionUploadError": "EXPIRED_EVENT"})
    );
    assert_eq!(
        GOOGLE_ADS.classify(&d, 5, &r),
        Verdict::PerRow(vec![
            Class::Delivered,
            Class::Rejected,
            Class::Retryable,
            Class::Delivered,
            Class::Rejected,
        ])
    );
    // Good rows were taken.
    assert!(server.received()[0].accepted);
    // Once the clock passes the busy time, that row goes through.
    clock.advance_ms(5000);
    let r = send(&GOOGLE_ADS.build(&d, &outs[2..3], T0_MS)).await;
    assert_eq!(GOOGLE_ADS.classify(&d, 1, &r), whole(Class::Delivered));

    // Documented row shapes, classified.
    let pf = |errors: Value, results: Value| {
        resp(
            200,
            json!({"results": results, "partialFailureError": {"code": 3, "message": "m",
                "details": [{"@type": "x", "errors": errors}]}}),
        )
    };
    let at = |i: Value, code: Value| {
        json!({"errorCode": code, "message": "m",
            "location": {"fieldPathElements": [{"fieldName": "conversions", "index": i}, {"fieldName": "gclid"}]}})
    };
    // Duplicates are already in; quota rows are retried; several errors on one row:
    // the worst wins; an index given as a string is read; out-of-range ignored.
    let r = pf(
        json!([
            at(
                json!(0),
                json!({"conversionUploadError": "CLICK_CONVERSION_ALREADY_EXISTS"})
            ),
            at(
                json!(1),
                json!({"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"})
            ),
            at(json!("2"), json!({"internalError": "INTERNAL_ERROR"})),
            at(json!(2), json!({"fieldError": "INVALID_VALUE"})),
            at(
                json!(3),
                json!({"conversionUploadError": "TOO_RECENT_EVENT"})
            ),
            at(
                json!(4),
                json!({"authorizationError": "USER_PERMISSION_DENIED"})
            ),
            at(json!(9), json!({"fieldError": "REQUIRED"})),
        ]),
        json!([{}, {}, {}, {}, {}, {"gclid": "x"}]),
    );
    assert_eq!(
        GOOGLE_ADS.classify(&d, 6, &r),
        Verdict::PerRow(vec![
            Class::Delivered,
            Class::Throttled { hold_ms: None },
            Class::Rejected,
            Class::Retryable,
            Class::Auth,
            Class::Delivered,
        ])
    );
    // An empty result not named: retried.
    let r = pf(
        json!([at(json!(0), json!({"fieldError": "REQUIRED"}))]),
        json!([{}, {}, {"gclid": "x"}]),
    );
    assert_eq!(
        GOOGLE_ADS.classify(&d, 3, &r),
        Verdict::PerRow(vec![Class::Rejected, Class::Retryable, Class::Delivered])
    );
    // A partial failure naming no row: the whole request is retried.
    let r = pf(
        json!([{"errorCode": {"fieldError": "REQUIRED"}, "message": "m"}]),
        json!([]),
    );
    assert_eq!(GOOGLE_ADS.classify(&d, 2, &r), whole(Class::Retryable));
    // A 2xx that is not JSON, or with a null partialFailureError: delivered.
    for body in [
        &b"OK"[..],
        br#"{"results":[{}],"partialFailureError":null}"#,
    ] {
        let r = HttpResponse {
            status: 200,
            headers: vec![],
            body: body.to_vec(),
        };
        assert_eq!(GOOGLE_ADS.classify(&d, 1, &r), whole(Class::Delivered));
    }
    server.shutdown().await;
}

fn daemon_config(dir: &std::path::Path, sim: &SimServer) -> String {
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

[[destinations]]
id = "gads"
workspace = "glasshouse"
platform = "google_ads"
endpoint = "{url}"
events = ["Purchase"]
params = {{ customer_id = "123-456-7890", conversion_action_id = "555" }}
credentials = {{ developer_token = "{DEV}", access_token = "{TOKEN}" }}
"#,
        store = dir.join("sluice.redb").display(),
        url = sim.url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_ads_partial_failure_through_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, None).await;
    let d = TestDaemon::start_with(
        dir.path(),
        &daemon_config(dir.path(), &server),
        clock.clone(),
        None,
    )
    .await;
    // r1 is unparseable (rejected), r3 busy until T0+2 s (retried once, then taken).
    let busy = format!("busy-until-{}", T0_S + 2);
    let gclids = [
        "Cj0-r0",
        "unparseable-r1",
        "Cj0-r2",
        busy.as_str(),
        "Cj0-r4",
    ];
    let events: Vec<Value> = gclids
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut e = common::event(&format!("r{i}"), T0_MS);
            e["user_data"]["gclid"] = json!(g);
            e
        })
        .collect();
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 5);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.count(), 0);
    clock.advance_ms(1000);
    eventually("the first answer", || {
        server.received().iter().any(|r| r.status != 0)
    })
    .await;
    // The busy row's retry is due 1 s later (retry 1: the 1 s base).
    let app = d.daemon.as_ref().unwrap().app.clone();
    eventually("the first answer settled", || {
        app.engine
            .snapshot("gads")
            .is_some_and(|s| s.requests_in_flight == 0 && s.unsettled == 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.count(), 1);
    clock.advance_ms(1000);
    eventually("the retry answered", || {
        server.received().iter().filter(|r| r.status != 0).count() == 2
    })
    .await;
    let got = server.received();
    assert_eq!(
        sim::event_ids(Platform::GoogleAds, &got[0].body),
        ["r0", "r1", "r2", "r3", "r4"]
    );
    assert_eq!(got[0].status, 200);
    assert_eq!(sim::event_ids(Platform::GoogleAds, &got[1].body), ["r3"]);
    assert_eq!(got[1].at_ms, T0_MS + 2000);
    assert!(got[1].accepted);

    let dlq = loop {
        let v = admin_get(&d, "/v1/dlq?destination=gads").await;
        if v["entries"].as_array().unwrap().len() == 1 {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let entry = &dlq["entries"][0];
    assert_eq!(entry["event"]["event_id"], "r1");
    assert_eq!(entry["error_class"], "rejected");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["retries"], 0);
    let body = entry["response_body"].as_str().unwrap();
    assert!(body.contains("UNPARSEABLE_GCLID"), "{body}");
    assert!(!body.contains(TOKEN) && !body.contains(DEV));

    // Each good row sent once; the busy one twice; nothing more later.
    for id in ["r0", "r2", "r4", "r1"] {
        assert_eq!(server.count_event(id), 1, "{id}");
    }
    assert_eq!(server.count_event("r3"), 2);
    // The retry's answer committed before the clock moves (an answer still being
    // settled when the clock jumps an hour times out on it).
    eventually("the retry settled", || {
        app.engine
            .snapshot("gads")
            .is_some_and(|s| s.requests_in_flight == 0 && s.unsettled == 0)
    })
    .await;
    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.count(), 2);
    let h = admin_get(&d, "/v1/destinations/gads").await;
    assert_eq!(h["queue_depth"], 0);
    assert_eq!(h["dlq_depth"], 1);
    assert_eq!(h["state"], "active");
    d.shutdown().await;
    server.shutdown().await;
}

#[test]
fn google_ads_adapter_is_registered() {
    assert_eq!(
        platforms::adapter(Platform::GoogleAds).unwrap().platform(),
        Platform::GoogleAds
    );
}
