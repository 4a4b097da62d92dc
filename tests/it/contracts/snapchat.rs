//! Contract tests of the Snapchat Conversions API v3 adapter against its simulator
//! (platforms.md §7): the exact request, each row of its classification, and a batch
//! failed whole by one invalid event, bisected through the real delivery engine.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    self, KEY, T0_MS, TestDaemon, contract_policy, dlq_with, ev, out, resp_raw, send, sha256_hex,
    whole,
};
use serde_json::{Value, json};
use sluice::clock::{ManualClock, SharedClock};
use sluice::config::{Destination, Platform, Secret};
use sluice::event::{ClearField, NormalizedEvent};
use sluice::ingest::identifiers::IdField;
use sluice::platforms::snapchat::SNAPCHAT;
use sluice::platforms::{self, Adapter, Class, OutEvent, Verdict};
use sluice::sim::{self, Fault, FaultScript, RetryAfter, SimOptions, SimServer};

const T0_S: i64 = T0_MS / 1000;
const TOKEN: &str = "snap/conv+token=1";
const TOKEN_ENC: &str = "snap%2Fconv%2Btoken%3D1";
const ADMIN: &str = "admin_test_token";
const PIXEL: &str = "a1b2c3d4-pixel";

fn dest(server: &SimServer, token: &str, map: &[(&str, &str)]) -> Destination {
    Destination {
        id: "snap_dest".into(),
        workspace: "glasshouse".into(),
        platform: Platform::Snapchat,
        endpoint: Some(server.url()),
        events: None,
        event_map: map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        params: [("pixel_id".to_string(), PIXEL.to_string())].into(),
        credentials: [("access_token".to_string(), Secret(token.to_string()))].into(),
        policy: contract_policy(5000),
    }
}

fn email_ev(id: &str, name: &str) -> NormalizedEvent {
    let mut e = ev(
        id,
        &[(IdField::Email, "x@example.com")],
        &[],
        Some(json!({"currency": "USD", "value": 10})),
    );
    e.event_name = name.into();
    e
}

async fn start(clock: &Arc<ManualClock>, credential: Option<&str>) -> SimServer {
    let c: SharedClock = clock.clone();
    sim::start_with(
        Platform::Snapchat,
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
async fn snapchat_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, Some(TOKEN)).await;
    let d = dest(&server, TOKEN, &[("Lead", "SIGN_UP")]);
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
            (ClearField::Sccid, "sc-click-1"),
            (ClearField::Fbc, "not-for-snap"),
        ],
        Some(json!({"currency": "USD", "value": 129.5, "order_id": "A-1"})),
    );
    a.event_source_url = Some("https://shop.example/thanks".into());
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
    let req = SNAPCHAT.build(&d, &[out(&a), out(&b)], T0_MS);
    assert_eq!(req.secrets, vec![TOKEN.to_string()]);
    assert_eq!(
        req.url,
        format!(
            "{}/v3/{PIXEL}/events?access_token={TOKEN_ENC}",
            server.url()
        )
    );
    assert_eq!(
        req.headers,
        vec![("content-type".to_string(), "application/json".to_string())]
    );
    let want = format!(
        concat!(
            r#"{{"data":["#,
            r#"{{"action_source":"website","custom_data":{{"currency":"USD","value":129.5}},"#,
            r#""event_id":"ord-1001","event_name":"PURCHASE","event_source_url":"https://shop.example/thanks","#,
            r#""event_time":{t},"user_data":{{"client_ip_address":"203.0.113.7","#,
            r#""client_user_agent":"Mozilla/5.0 (X11)","em":["{em}"],"external_id":["{ext}"],"#,
            r#""ph":["{ph}"],"sc_click_id":"sc-click-1"}}}},"#,
            r#"{{"action_source":"offline","custom_data":{{"value":7.25}},"event_id":"lead-1","#,
            r#""event_name":"SIGN_UP","event_time":{t},"user_data":{{"client_ip_address":"203.0.113.8","#,
            r#""client_user_agent":"curl/8"}}}}"#,
            r#"]}}"#
        ),
        t = T0_S - 60,
        em = sha256_hex("john.smith@example.com"),
        ext = sha256_hex("cust-42"),
        ph = sha256_hex("14155550100"),
    );
    assert_eq!(String::from_utf8(req.body.clone()).unwrap(), want);
    let mut prod = d.clone();
    prod.endpoint = None;
    assert_eq!(
        SNAPCHAT.build(&prod, &[out(&a)], T0_MS).url,
        format!("https://tr.snapchat.com/v3/{PIXEL}/events?access_token={TOKEN_ENC}")
    );

    let r = send(&req).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({"status": "SUCCESS", "reason": "SUCCESS"})
    );
    assert_eq!(SNAPCHAT.classify(&d, 2, &r), whole(Class::Delivered));
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].path,
        format!("/v3/{PIXEL}/events?access_token={TOKEN_ENC}")
    );
    assert_eq!(got[0].raw_body, req.body);
    assert_eq!(
        sim::event_ids(Platform::Snapchat, &got[0].body),
        ["ord-1001", "lead-1"]
    );

    // Event names: the default map; names Snap lacks are unsendable.
    let plain = dest(&server, TOKEN, &[]);
    let names: Vec<String> = [
        "Purchase",
        "AddToCart",
        "InitiateCheckout",
        "CompleteRegistration",
        "PageView",
        "ViewContent",
        "Search",
        "AddPaymentInfo",
        "AddToWishlist",
        "Subscribe",
    ]
    .iter()
    .map(|n| {
        let e = email_ev("n", n);
        assert!(SNAPCHAT.check(&plain, &out(&e)).is_ok(), "{n}");
        let body: Value =
            serde_json::from_slice(&SNAPCHAT.build(&plain, &[out(&e)], T0_MS).body).unwrap();
        body["data"][0]["event_name"].as_str().unwrap().to_string()
    })
    .collect();
    assert_eq!(
        names,
        [
            "PURCHASE",
            "ADD_CART",
            "START_CHECKOUT",
            "SIGN_UP",
            "PAGE_VIEW",
            "VIEW_CONTENT",
            "SEARCH",
            "ADD_BILLING",
            "ADD_TO_WISHLIST",
            "SUBSCRIBE"
        ]
    );
    assert!(SNAPCHAT.check(&plain, &out(&b)).is_err()); // Lead, unmapped
    assert!(SNAPCHAT.check(&d, &out(&b)).is_ok()); // Lead = SIGN_UP
    let custom = dest(&server, TOKEN, &[("Purchase", "Buy")]);
    assert!(SNAPCHAT.check(&custom, &out(&a)).is_err());
    // Identity: em, ph, or IP with user agent.
    let phone = ev("p", &[(IdField::Phone, "4155550100")], &[], None);
    assert!(SNAPCHAT.check(&plain, &out(&phone)).is_ok());
    let ip_only = ev(
        "i",
        &[(IdField::ExternalId, "c1")],
        &[(ClearField::ClientIpAddress, "203.0.113.7")],
        None,
    );
    assert!(SNAPCHAT.check(&plain, &out(&ip_only)).is_err());
    assert_eq!(
        platforms::adapter(Platform::Snapchat).unwrap().platform(),
        Platform::Snapchat
    );
    server.shutdown().await;
}

#[tokio::test]
async fn snapchat_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, Some(TOKEN)).await;
    let d = dest(&server, TOKEN, &[]);
    let e1 = email_ev("a", "Purchase");
    let e2 = email_ev("b", "Purchase");
    let one = SNAPCHAT.build(&d, &[out(&e1)], T0_MS);
    let two = SNAPCHAT.build(&d, &[out(&e1), out(&e2)], T0_MS);

    for t in ["", "expired"] {
        let r = send(&SNAPCHAT.build(&dest(&server, t, &[]), &[out(&e1)], T0_MS)).await;
        assert_eq!(r.status, 401);
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).unwrap()["status"],
            "UNAUTHORIZED"
        );
        assert_eq!(SNAPCHAT.classify(&d, 1, &r), whole(Class::Auth));
    }

    let code = |status, code| Fault::Code { status, code };
    // (fault, status, verdict for one event, verdict for two)
    let cases: Vec<(Fault, u16, Verdict, Verdict)> = vec![
        (Fault::Auth, 401, whole(Class::Auth), whole(Class::Auth)),
        (
            Fault::Throttle { retry_after: None },
            429,
            whole(Class::Throttled { hold_ms: None }),
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
        // INVALID inside a 200.
        (code(200, 7), 200, whole(Class::Rejected), Verdict::Bisect),
    ];
    for (fault, status, v1, v2) in cases {
        server.set_script(FaultScript::always(fault.clone()));
        let r = send(&one).await;
        assert_eq!(r.status, status, "{fault:?}");
        assert_eq!(SNAPCHAT.classify(&d, 1, &r), v1, "{fault:?}");
        let r = send(&two).await;
        assert_eq!(SNAPCHAT.classify(&d, 2, &r), v2, "{fault:?}");
    }
    server.set_script(FaultScript::none());

    // 2xx bodies: success shapes and no body are delivered; an unknown status retried.
    for body in [
        &br#"{"status":"VALID","reason":"ok"}"#[..],
        br#"{"status":"SUCCESS"}"#,
        b"",
        b"OK",
    ] {
        assert_eq!(
            SNAPCHAT.classify(&d, 2, &resp_raw(200, body)),
            whole(Class::Delivered)
        );
    }
    assert_eq!(
        SNAPCHAT.classify(&d, 2, &resp_raw(200, br#"{"status":"PARTIAL"}"#)),
        whole(Class::Retryable)
    );

    // The validate endpoint answers VALID and records nothing as accepted.
    let mut vreq = one.clone();
    vreq.url = vreq.url.replace("/events?", "/events/validate?");
    let r = send(&vreq).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["status"],
        "VALID"
    );
    assert!(!server.received().last().unwrap().accepted);
    server.shutdown().await;
}

#[tokio::test]
async fn snapchat_one_invalid_event_fails_the_batch() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, None).await;
    let d = dest(&server, TOKEN, &[]);
    let mut bad = email_ev("bad-1", "Purchase");
    bad.custom_data = b"{}".to_vec(); // PURCHASE without price or currency
    let evs = [
        email_ev("ok-0", "Purchase"),
        bad,
        email_ev("ok-2", "PageView"),
    ];
    let outs: Vec<OutEvent<'_>> = evs.iter().map(out).collect();
    let r = send(&SNAPCHAT.build(&d, &outs, T0_MS)).await;
    assert_eq!(r.status, 400);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "INVALID");
    assert_eq!(
        v["reason"],
        "events[1]: PURCHASE requires custom_data.currency and custom_data.value"
    );
    assert_eq!(SNAPCHAT.classify(&d, 3, &r), Verdict::Bisect);
    assert_eq!(server.accepted_event("ok-0"), 0);
    // Unhashed PII and an old event too.
    let mut old = email_ev("old", "Purchase");
    old.event_time = T0_S - 8 * 86_400;
    let r = send(&SNAPCHAT.build(&d, &[out(&old)], T0_MS)).await;
    assert_eq!(r.status, 400);
    assert_eq!(SNAPCHAT.classify(&d, 1, &r), whole(Class::Rejected));
    let raw = reqwest::Client::new()
        .post(format!("{}/v3/{PIXEL}/events?access_token=t", server.url()))
        .json(
            &json!({"data": [{"event_name": "PAGE_VIEW", "event_time": T0_S, "event_id": "u",
            "action_source": "website", "user_data": {"em": ["john@example.com"]}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let v: Value = raw.json().await.unwrap();
    assert_eq!(v["reason"], "events[0]: user_data.em is not hashed");
    server.shutdown().await;
}

// ---- Through the daemon ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapchat_invalid_event_is_bisected_out_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let snap = start(&clock, Some(TOKEN)).await;
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
id = "snap_gh"
workspace = "glasshouse"
platform = "snapchat"
endpoint = "{url}"
params = {{ pixel_id = "{PIXEL}" }}
credentials = {{ access_token = "{TOKEN}" }}
"#,
        store = dir.path().join("sluice.redb").display(),
        url = snap.url(),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let mut events: Vec<Value> = (0..4)
        .map(|i| common::event(&format!("s{i}"), T0_MS))
        .collect();
    // A Purchase without price or currency: Snap fails the whole request.
    events[1]["custom_data"] = json!({"note": "no price"});
    // Lead has no Snap name: unsendable, never sent.
    let mut lead = common::event("lead-x", T0_MS);
    lead["event_name"] = json!("Lead");
    events.push(lead);
    assert_eq!(d.post(&json!({"events": events})).await.1["accepted"], 5);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(snap.count(), 0);
    clock.advance_ms(1000);

    let dlq = dlq_with(&d, "snap_gh", 2).await;
    // [s0..s3] 400 → [s0,s1] 400 and [s2,s3] 200 → [s0] 200 and [s1] 400.
    for _ in 0..1000 {
        if snap.received().iter().filter(|r| r.status != 0).count() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = snap.received();
    assert_eq!(got.len(), 5);
    assert_eq!(got.iter().filter(|r| r.status == 400).count(), 3);
    assert_eq!(got.iter().filter(|r| r.accepted).count(), 2);
    for (id, sent) in [("s0", 3), ("s1", 3), ("s2", 2), ("s3", 2)] {
        assert_eq!(snap.count_event(id), sent, "{id}");
    }
    for id in ["s0", "s2", "s3"] {
        assert_eq!(snap.accepted_event(id), 1, "{id}");
    }
    assert_eq!(snap.accepted_event("s1"), 0);
    assert_eq!(snap.count_event("lead-x"), 0);
    // No retry delay: the halves went out at the time of the first answer.
    assert!(got.iter().all(|r| r.at_ms == got[0].at_ms));
    let mut entries: Vec<(String, String)> = dlq["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"]["event_id"].as_str().unwrap().to_string(),
                e["error_class"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            ("lead-x".to_string(), "unsendable".to_string()),
            ("s1".to_string(), "rejected".to_string())
        ]
    );
    for e in dlq["entries"].as_array().unwrap() {
        let body = e["response_body"].as_str().unwrap_or("");
        assert!(!body.contains(TOKEN) && !body.contains(TOKEN_ENC), "{body}");
    }
    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(snap.count(), 5);
    d.shutdown().await;
    snap.shutdown().await;
}
