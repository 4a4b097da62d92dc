//! Contract tests of the Microsoft Advertising offline-conversions adapter against its
//! simulator (platforms.md §10a): the exact request, each documented error shape
//! classified, and `PartialErrors` through the real delivery engine.

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
use sluice::platforms::microsoft_ads::MICROSOFT_ADS;
use sluice::platforms::{self, Adapter, Class, OutEvent, Verdict};
use sluice::sim::{self, Fault, FaultScript, RetryAfter, SimOptions, SimServer};

const T0_S: i64 = T0_MS / 1000;
const TOKEN: &str = "EwBQA-static-access-token";
const DEV: &str = "BBD37VB98";
const ADMIN: &str = "admin_test_token";

fn dest(server: &SimServer, token: &str) -> Destination {
    Destination {
        id: "msads".into(),
        workspace: "glasshouse".into(),
        platform: Platform::MicrosoftAds,
        endpoint: Some(server.url()),
        events: Some(vec!["Purchase".into()]),
        event_map: Default::default(),
        params: [
            ("customer_id".to_string(), "1111".to_string()),
            ("account_id".to_string(), "2222".to_string()),
            (
                "conversion_name".to_string(),
                "Offline \"Purchase\"".to_string(),
            ),
        ]
        .into(),
        credentials: [
            ("access_token".to_string(), Secret(token.to_string())),
            ("developer_token".to_string(), Secret(DEV.to_string())),
        ]
        .into(),
        policy: contract_policy(1000),
    }
}

fn click_ev(id: &str, msclkid: &str) -> NormalizedEvent {
    ev(id, &[], &[(ClearField::Msclkid, msclkid)], None)
}

async fn start(clock: &Arc<ManualClock>) -> SimServer {
    let c: SharedClock = clock.clone();
    sim::start_with(
        Platform::MicrosoftAds,
        "127.0.0.1:0".parse().unwrap(),
        c,
        FaultScript::none(),
        SimOptions {
            rate_limits: None,
            credential: None,
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn microsoft_ads_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock).await;
    let d = dest(&server, TOKEN);
    let a = ev(
        "ord-1",
        &[
            (IdField::Email, " Jane.Doe@Example.com "),
            (IdField::Phone, "+1 (415) 555-0100"),
            (IdField::ExternalId, "c-9"),
        ],
        &[
            (ClearField::Msclkid, "f8a7c1b2e3d4"),
            (ClearField::Gclid, "not-sent"),
        ],
        Some(json!({"currency": "USD", "value": "19.99"})),
    );
    let b = click_ev("ord-2", "aa11");
    let req = MICROSOFT_ADS.build(&d, &[out(&a), out(&b)], T0_MS);
    assert_eq!(req.secrets, vec![TOKEN.to_string(), DEV.to_string()]);
    assert_eq!(
        req.url,
        format!(
            "{}/CampaignManagement/v13/OfflineConversions/Apply",
            server.url()
        )
    );
    let mut prod = d.clone();
    prod.endpoint = None;
    assert_eq!(
        MICROSOFT_ADS.build(&prod, &[out(&a)], T0_MS).url,
        "https://campaign.api.bingads.microsoft.com/CampaignManagement/v13/OfflineConversions/Apply"
    );
    let want = json!({"OfflineConversions": [
        {
            "ConversionCurrencyCode": "USD",
            "ConversionName": "Offline \"Purchase\"",
            "ConversionTime": "2026-11-02T11:59:00Z",
            "ConversionValue": 19.99,
            "HashedEmailAddress": sha256_hex("jane.doe@example.com"),
            "HashedPhoneNumber": sha256_hex("+14155550100"),
            "MicrosoftClickId": "f8a7c1b2e3d4",
        },
        {
            "ConversionName": "Offline \"Purchase\"",
            "ConversionTime": "2026-11-02T11:59:00Z",
            "MicrosoftClickId": "aa11",
        },
    ]});
    assert_eq!(
        String::from_utf8(req.body.clone()).unwrap(),
        serde_json::to_string(&want).unwrap()
    );
    let r = send(&req).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({"PartialErrors": []})
    );
    assert_eq!(MICROSOFT_ADS.classify(&d, 2, &r), whole(Class::Delivered));
    let got = server.received();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!(g.method, "POST");
    assert_eq!(g.path, "/CampaignManagement/v13/OfflineConversions/Apply");
    assert_eq!(g.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
    assert_eq!(g.header("developertoken"), Some(DEV));
    assert_eq!(g.header("customerid"), Some("1111"));
    assert_eq!(g.header("customeraccountid"), Some("2222"));
    assert_eq!(g.header("content-type"), Some("application/json"));
    assert_eq!(g.body, want);
    assert!(g.accepted);
    assert_eq!(
        sim::event_ids(Platform::MicrosoftAds, &g.body),
        ["f8a7c1b2e3d4", "aa11"]
    );

    // check(): msclkid, hashed email or hashed phone.
    let none = ev(
        "n",
        &[(IdField::ExternalId, "c1")],
        &[(ClearField::Gclid, "g")],
        None,
    );
    assert!(MICROSOFT_ADS.check(&d, &out(&none)).is_err());
    let em = ev("e", &[(IdField::Email, "a@b.example")], &[], None);
    let ph = ev("p", &[(IdField::Phone, "+14155550100")], &[], None);
    for e in [&a, &b, &em, &ph] {
        assert!(MICROSOFT_ADS.check(&d, &out(e)).is_ok());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn microsoft_ads_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock).await;
    let d = dest(&server, TOKEN);
    let e = click_ev("a", "ok-a");
    let req = MICROSOFT_ADS.build(&d, &[out(&e)], T0_MS);

    // Credentials refused in Microsoft's shape.
    let mut no_dev = d.clone();
    no_dev.credentials.remove("developer_token");
    let mut no_acct = d.clone();
    no_acct.params.remove("account_id");
    for (dd, status, code) in [
        (dest(&server, ""), 401, 105),
        (dest(&server, "sim-at.1.2.3"), 401, 105),
        (no_dev, 401, 105),
        (no_acct, 400, 116),
    ] {
        let r = send(&MICROSOFT_ADS.build(&dd, &[out(&e)], T0_MS)).await;
        assert_eq!(r.status, status);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["Errors"][0]["Code"], code);
        let want = if code == 105 {
            Class::Auth
        } else {
            Class::Rejected
        };
        assert_eq!(MICROSOFT_ADS.classify(&d, 1, &r), whole(want), "{code}");
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
                retry_after: Some(RetryAfter::Seconds(60)),
            },
            429,
            Class::Throttled {
                hold_ms: Some(60_000),
            },
        ),
        (Fault::Transient, 500, Class::Retryable),
        (Fault::ServerError(503), 503, Class::Retryable),
        (Fault::ServerError(408), 408, Class::Retryable),
        (Fault::Redirect, 307, Class::Retryable),
        (Fault::Invalid, 400, Class::Rejected),
        // Codes decide whatever the status.
        (code(400, 109), 400, Class::Auth),
        (code(400, 106), 400, Class::Auth),
        (code(400, 117), 400, Class::Throttled { hold_ms: None }),
        (code(400, 0), 400, Class::Retryable),
        (code(400, 4804), 400, Class::Rejected),
        // A 400 that is not JSON: retried.
        (Fault::ServerError(400), 400, Class::Retryable),
        (Fault::ServerError(404), 404, Class::Rejected),
    ];
    for (fault, status, class) in cases {
        server.set_script(FaultScript::always(fault.clone()));
        let r = send(&req).await;
        assert_eq!(r.status, status, "{fault:?}");
        assert_eq!(MICROSOFT_ADS.classify(&d, 1, &r), whole(class), "{fault:?}");
    }
    server.set_script(FaultScript::none());
    // A fault body at top level (an ApplicationFault) and `OperationErrors`.
    let r = resp(
        401,
        json!({"Code": 109, "ErrorCode": "AuthenticationTokenExpired", "Message": "m"}),
    );
    assert_eq!(MICROSOFT_ADS.classify(&d, 1, &r), whole(Class::Auth));
    let r = resp(
        400,
        json!({"OperationErrors": [{"Code": 117, "ErrorCode": "CallRateExceeded"}]}),
    );
    assert_eq!(
        MICROSOFT_ADS.classify(&d, 1, &r),
        whole(Class::Throttled { hold_ms: None })
    );
    server.shutdown().await;
}

#[tokio::test]
async fn microsoft_ads_partial_errors_name_the_rows() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock).await;
    let d = dest(&server, TOKEN);
    let busy = format!("busy-until-{}", T0_S + 5);
    let mut future = click_ev("future-4", "ok-4");
    future.event_time = T0_S + 3600;
    let evs = [
        click_ev("ok-0", "ok-0"),
        click_ev("bad-1", "invalid-1"),
        click_ev("busy-2", &busy),
        ev("ok-3", &[(IdField::Email, "a@b.example")], &[], None),
        future,
    ];
    let outs: Vec<OutEvent<'_>> = evs.iter().map(out).collect();
    let r = send(&MICROSOFT_ADS.build(&d, &outs, T0_MS)).await;
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let pe = v["PartialErrors"].as_array().unwrap();
    assert_eq!(pe.len(), 3);
    assert_eq!(pe[0]["Index"], 1);
    assert_eq!(
        pe[0]["ErrorCode"],
        "OfflineConversionMicrosoftClickIdInvalid"
    );
    assert_eq!(pe[1]["Index"], 2);
    assert_eq!(pe[1]["Code"], 0);
    assert_eq!(pe[2]["Index"], 4);
    assert_eq!(pe[2]["ErrorCode"], "OfflineConversionTimeInvalid");
    assert_eq!(
        MICROSOFT_ADS.classify(&d, 5, &r),
        Verdict::PerRow(vec![
            Class::Delivered,
            Class::Rejected,
            Class::Retryable,
            Class::Delivered,
            Class::Rejected,
        ])
    );
    clock.advance_ms(5000);
    let r = send(&MICROSOFT_ADS.build(&d, &outs[2..3], T0_MS)).await;
    assert_eq!(MICROSOFT_ADS.classify(&d, 1, &r), whole(Class::Delivered));

    // Documented row shapes.
    let rows = |errs: Value| resp(200, json!({ "PartialErrors": errs }));
    let r = rows(json!([
        {"Code": 117, "ErrorCode": "CallRateExceeded", "Index": 0},
        {"Code": 109, "ErrorCode": "AuthenticationTokenExpired", "Index": "1"},
        {"Code": 0, "ErrorCode": "InternalError", "Index": 2},
        {"Code": 4801, "ErrorCode": "OfflineConversionNameInvalid", "Index": 2},
        {"Code": 4801, "ErrorCode": "X", "Index": 7},
    ]));
    assert_eq!(
        MICROSOFT_ADS.classify(&d, 4, &r),
        Verdict::PerRow(vec![
            Class::Throttled { hold_ms: None },
            Class::Auth,
            Class::Rejected,
            Class::Delivered,
        ])
    );
    // Errors naming no row: the whole request is retried.
    let r = rows(json!([{"Code": 4801, "ErrorCode": "X", "Index": null}]));
    assert_eq!(MICROSOFT_ADS.classify(&d, 2, &r), whole(Class::Retryable));
    for body in [
        json!({"PartialErrors": null}),
        json!({}),
        json!({"PartialErrors": []}),
    ] {
        assert_eq!(
            MICROSOFT_ADS.classify(&d, 2, &resp(200, body)),
            whole(Class::Delivered)
        );
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
id = "msads"
workspace = "glasshouse"
platform = "microsoft_ads"
endpoint = "{url}"
events = ["Purchase"]
params = {{ customer_id = "1111", account_id = "2222", conversion_name = "Offline Purchase" }}
credentials = {{ developer_token = "{DEV}", access_token = "{TOKEN}" }}
"#,
        store = dir.join("sluice.redb").display(),
        url = sim.url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_ads_partial_errors_through_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock).await;
    let d = TestDaemon::start_with(
        dir.path(),
        &daemon_config(dir.path(), &server),
        clock.clone(),
        None,
    )
    .await;
    // m1's click id is invalid (rejected); m3 is busy until T0+2 s (retried once).
    let busy = format!("busy-until-{}", T0_S + 2);
    let clicks = ["ok-m0", "invalid-m1", "ok-m2", busy.as_str(), "ok-m4"];
    let events: Vec<Value> = clicks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut e = common::event(&format!("m{i}"), T0_MS);
            e["user_data"]["msclkid"] = json!(c);
            e
        })
        .collect();
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 5);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.count(), 0);
    clock.advance_ms(1000);
    let app = d.daemon.as_ref().unwrap().app.clone();
    eventually("the first answer settled", || {
        server.received().iter().any(|r| r.status != 0)
            && app
                .engine
                .snapshot("msads")
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
    assert_eq!(sim::event_ids(Platform::MicrosoftAds, &got[0].body), clicks);
    assert_eq!(
        sim::event_ids(Platform::MicrosoftAds, &got[1].body),
        [busy.as_str()]
    );
    assert_eq!(got[1].at_ms, T0_MS + 2000);
    assert!(got[1].accepted);

    let dlq = loop {
        let v = admin_get(&d, "/v1/dlq?destination=msads").await;
        if v["entries"].as_array().unwrap().len() == 1 {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let entry = &dlq["entries"][0];
    assert_eq!(entry["event"]["event_id"], "m1");
    assert_eq!(entry["error_class"], "rejected");
    assert_eq!(entry["status"], 200);
    let body = entry["response_body"].as_str().unwrap();
    assert!(
        body.contains("OfflineConversionMicrosoftClickIdInvalid"),
        "{body}"
    );
    assert!(!body.contains(TOKEN) && !body.contains(DEV));
    for c in ["ok-m0", "ok-m2", "ok-m4", "invalid-m1"] {
        assert_eq!(server.count_event(c), 1, "{c}");
    }
    assert_eq!(server.count_event(&busy), 2);
    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.count(), 2);
    let h = admin_get(&d, "/v1/destinations/msads").await;
    assert_eq!(h["queue_depth"], 0);
    assert_eq!(h["dlq_depth"], 1);
    d.shutdown().await;
    server.shutdown().await;
}

#[test]
fn microsoft_ads_adapter_is_registered() {
    assert_eq!(
        platforms::adapter(Platform::MicrosoftAds)
            .unwrap()
            .platform(),
        Platform::MicrosoftAds
    );
}
