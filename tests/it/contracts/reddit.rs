//! Contract tests of the Reddit Conversions API adapter against its simulator
//! (platforms.md §8): the exact request, and each row of its classification.

use crate::common::{contract_policy, hash, out, send, sha256_hex, whole};
use std::sync::Arc;

use serde_json::{Value, json};
use sluice::clock::{ManualClock, SharedClock};
use sluice::config::{Destination, Platform, Secret};
use sluice::event::{ClearField, NormalizedEvent, Variant};
use sluice::ingest::identifiers::{IdField, normalize};
use sluice::platforms::reddit::REDDIT;
use sluice::platforms::{self, Adapter, Class, HttpResponse, OutEvent, Verdict};
use sluice::sim::{self, Fault, FaultScript, RetryAfter, SimOptions, SimServer};

/// 2026-11-02T12:00:00Z
const T0_MS: i64 = 1_793_620_800_000;
const T0_S: i64 = T0_MS / 1000;
const TOKEN: &str = "rdt-conv-token-123";

/// A reddit destination; `id` differs per test (the adapter remembers recent requests
/// per destination).
fn dest(id: &str, server: &SimServer, token: &str, map: &[(&str, &str)]) -> Destination {
    Destination {
        id: id.into(),
        workspace: "glasshouse".into(),
        platform: Platform::Reddit,
        endpoint: Some(server.url()),
        events: None,
        event_map: map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        params: [("ad_account_id".to_string(), "t2_abc".to_string())].into(),
        credentials: [("access_token".to_string(), Secret(token.to_string()))].into(),
        policy: contract_policy(1000),
    }
}

fn ev(
    id: &str,
    name: &str,
    ids: &[(IdField, &str)],
    clear: &[(ClearField, &str)],
    custom: Option<Value>,
) -> NormalizedEvent {
    let mut hashed = vec![];
    for (f, raw) in ids {
        for n in normalize(*f, raw, "1", Some("US")).unwrap() {
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

fn email_ev(id: &str, name: &str) -> NormalizedEvent {
    ev(id, name, &[(IdField::Email, "x@example.com")], &[], None)
}

async fn start(clock: &Arc<ManualClock>, credential: Option<&str>) -> SimServer {
    let c: SharedClock = clock.clone();
    sim::start_with(
        Platform::Reddit,
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
async fn reddit_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, Some(TOKEN)).await;
    let d = dest(
        "rd_shape",
        &server,
        TOKEN,
        &[("Lead", "SignUp"), ("AddToCart", "Basket")],
    );
    let a = ev(
        "ord-1001",
        "Purchase",
        &[
            (IdField::Email, "John.Smith+promo@GMail.com"),
            (IdField::Phone, "+1 (415) 555-0100"),
            (IdField::ExternalId, "CUST-42"),
            (IdField::FirstName, "John"),
        ],
        &[
            (ClearField::ClientIpAddress, "203.0.113.7"),
            (ClearField::ClientUserAgent, "Mozilla/5.0 (X11)"),
            (ClearField::RdtCid, "rdt-click-1"),
            (ClearField::Fbc, "fb.1.1.x"),
        ],
        Some(json!({"currency": "USD", "value": 129.5, "order_id": "A-1"})),
    );
    let b = ev(
        "lead-1",
        "Lead",
        &[],
        &[(ClearField::RdtCid, "rdt-click-2")],
        Some(json!({"value": " 7.25 "})),
    );
    let c = email_ev("atc-1", "AddToCart");
    let r = email_ev("reg-1", "CompleteRegistration");
    let p = email_ev("pv-1", "PageView");
    let s = email_ev("srch-1", "Search");
    let req = REDDIT.build(
        &d,
        &[out(&a), out(&b), out(&c), out(&r), out(&p), out(&s)],
        T0_MS,
    );
    assert_eq!(req.secrets, vec![TOKEN.to_string()]);
    assert_eq!(
        req.url,
        format!("{}/api/v2.0/conversions/events/t2_abc", server.url())
    );
    // Default endpoint.
    let mut prod = d.clone();
    prod.endpoint = None;
    assert_eq!(
        REDDIT.build(&prod, &[out(&a)], T0_MS).url,
        "https://ads-api.reddit.com/api/v2.0/conversions/events/t2_abc"
    );

    let resp = send(&req).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        serde_json::from_slice::<Value>(&resp.body).unwrap(),
        json!({"message": "Successfully processed 6 conversion events."})
    );
    assert_eq!(REDDIT.classify(&d, 6, &resp), whole(Class::Delivered));

    let got = server.received();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!(g.method, "POST");
    assert_eq!(g.path, "/api/v2.0/conversions/events/t2_abc");
    assert_eq!(g.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
    assert_eq!(g.header("content-type"), Some("application/json"));
    assert!(g.accepted);
    assert_eq!(g.body["test_mode"], false);
    let evs = g.body["events"].as_array().unwrap();
    assert_eq!(evs.len(), 6);
    let x = &evs[0];
    assert_eq!(x["event_at"], "2026-11-02T11:59:00Z");
    assert_eq!(x["event_type"], json!({"tracking_type": "Purchase"}));
    assert_eq!(x["click_id"], "rdt-click-1");
    assert_eq!(
        x["event_metadata"],
        json!({"conversion_id": "ord-1001", "currency": "USD", "value_decimal": 129.5})
    );
    let want_email = sha256_hex("johnsmith@gmail.com");
    assert_eq!(
        want_email,
        hash(
            IdField::Email,
            "John.Smith+promo@GMail.com",
            Variant::EmailReddit
        )
    );
    assert_ne!(
        want_email,
        hash(IdField::Email, "John.Smith+promo@GMail.com", Variant::Email)
    );
    let want_phone = sha256_hex("+14155550100");
    assert_eq!(
        want_phone,
        hash(IdField::Phone, "+14155550100", Variant::PhoneE164)
    );
    assert_eq!(
        x["user"],
        json!({
            "email": want_email,
            "phone_number": want_phone,
            "external_id": sha256_hex("cust-42"),
            "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (X11)",
        })
    );
    // Only what exists is sent.
    let y = &evs[1];
    assert_eq!(y["event_type"], json!({"tracking_type": "SignUp"})); // event_map
    assert_eq!(y["click_id"], "rdt-click-2");
    assert_eq!(
        y["event_metadata"],
        json!({"conversion_id": "lead-1", "value_decimal": 7.25})
    );
    assert_eq!(y["user"], json!({}));
    // event_map to a name Reddit does not know → Custom.
    assert_eq!(
        evs[2]["event_type"],
        json!({"tracking_type": "Custom", "custom_event_name": "Basket"})
    );
    assert!(evs[2].get("click_id").is_none());
    assert_eq!(evs[3]["event_type"]["tracking_type"], "SignUp");
    assert_eq!(evs[4]["event_type"]["tracking_type"], "PageVisit");
    assert_eq!(evs[5]["event_type"]["tracking_type"], "Search");
    // Unmapped canonical names → Custom.
    let ic = email_ev("ic-1", "InitiateCheckout");
    let body: Value = serde_json::from_slice(&REDDIT.build(&d, &[out(&ic)], T0_MS).body).unwrap();
    assert_eq!(
        body["events"][0]["event_type"],
        json!({"tracking_type": "Custom", "custom_event_name": "InitiateCheckout"})
    );
    assert_eq!(
        sim::event_ids(Platform::Reddit, &g.body),
        ["ord-1001", "lead-1", "atc-1", "reg-1", "pv-1", "srch-1"]
    );
    assert_eq!(server.accepted_event("lead-1"), 1);

    // check(): at least one identifier Reddit can match.
    let none = ev("n", "Purchase", &[(IdField::FirstName, "Jo")], &[], None);
    assert!(REDDIT.check(&d, &out(&none)).is_err());
    let ip = ev(
        "i",
        "Purchase",
        &[],
        &[(ClearField::ClientIpAddress, "203.0.113.7")],
        None,
    );
    assert!(REDDIT.check(&d, &out(&ip)).is_err());
    let ip_ua = ev(
        "i2",
        "Purchase",
        &[],
        &[
            (ClearField::ClientIpAddress, "203.0.113.7"),
            (ClearField::ClientUserAgent, "curl/8"),
        ],
        None,
    );
    assert!(REDDIT.check(&d, &out(&ip_ua)).is_ok());
    for e in [&a, &b, &c] {
        assert!(REDDIT.check(&d, &out(e)).is_ok());
    }
    let phone = ev(
        "p",
        "Purchase",
        &[(IdField::Phone, "4155550100")],
        &[],
        None,
    );
    assert!(REDDIT.check(&d, &out(&phone)).is_ok());
    let ext = ev("x", "Purchase", &[(IdField::ExternalId, "c1")], &[], None);
    assert!(REDDIT.check(&d, &out(&ext)).is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn reddit_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, Some(TOKEN)).await;
    let d = dest("rd_table", &server, TOKEN, &[]);
    let e = email_ev("a", "Purchase");
    let req = REDDIT.build(&d, &[out(&e)], T0_MS);

    // 401, plain text (no token) and JSON (a token other than the account's).
    let resp = send(&REDDIT.build(&dest("rd_table", &server, "", &[]), &[out(&e)], T0_MS)).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.body, b"Authorization Required");
    assert_eq!(REDDIT.classify(&d, 1, &resp), whole(Class::Auth));
    let resp = send(&REDDIT.build(
        &dest("rd_table", &server, "expired", &[]),
        &[out(&e)],
        T0_MS,
    ))
    .await;
    assert_eq!(resp.status, 401);
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["reason"], "UNAUTHORIZED");
    assert_eq!(REDDIT.classify(&d, 1, &resp), whole(Class::Auth));

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
                retry_after: Some(RetryAfter::Seconds(5)),
            },
            429,
            Class::Throttled {
                hold_ms: Some(5_000),
            },
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
        (Fault::Transient, 503, Class::Retryable),
        (Fault::ServerError(500), 500, Class::Retryable),
        (Fault::ServerError(408), 408, Class::Retryable),
        (Fault::Redirect, 307, Class::Retryable),
        // A 400 without invalid_events: rejected whole.
        (Fault::Invalid, 400, Class::Rejected),
        (code(400, 7), 400, Class::Rejected),
        // A 400 that is not Reddit's JSON: retried, never lost to a guess.
        (Fault::ServerError(400), 400, Class::Retryable),
        (Fault::ServerError(403), 403, Class::Rejected),
        (Fault::ServerError(404), 404, Class::Rejected),
        (code(200, 0), 200, Class::Delivered),
    ];
    for (fault, status, class) in cases {
        server.set_script(FaultScript::always(fault.clone()));
        let resp = send(&req).await;
        assert_eq!(resp.status, status, "{fault:?}");
        assert_eq!(REDDIT.classify(&d, 1, &resp), whole(class), "{fault:?}");
    }
    server.set_script(FaultScript::none());
    server.shutdown().await;
}

#[tokio::test]
async fn reddit_invalid_events_name_the_rows() {
    let clock = ManualClock::new(T0_MS);
    let server = start(&clock, None).await;
    let d = dest("rd_rows", &server, TOKEN, &[]);
    let mut evs = [
        email_ev("ok-0", "Purchase"),
        email_ev("bad-1", "Invalid"),
        email_ev("ok-2", "Lead"),
        email_ev("bad-3", "Purchase"),
        email_ev("ok-4", "Purchase"),
    ];
    evs[3].event_time = T0_S - 168 * 3600; // 168 h old: too old for Reddit
    let outs: Vec<OutEvent<'_>> = evs.iter().map(out).collect();
    let resp = send(&REDDIT.build(&d, &outs, T0_MS)).await;
    assert_eq!(resp.status, 400);
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        v["message"],
        "There were 2 invalid conversion events. None were processed."
    );
    let inv = v["invalid_events"].as_array().unwrap();
    assert_eq!(inv.len(), 2);
    assert_eq!(inv[0]["event"]["event_metadata"]["conversion_id"], "bad-1");
    assert_eq!(
        inv[1]["error_message"],
        "event_at timestamp must be less than 168h0m0s old"
    );
    assert_eq!(
        REDDIT.classify_events(&d, &outs, &resp),
        Verdict::RowsRejected(vec![1, 3])
    );
    // All or nothing: nothing was accepted.
    assert_eq!(server.accepted_event("ok-0"), 0);
    assert!(!server.received()[0].accepted);

    // Named events that are not in the request (or no events known): rejected whole.
    assert_eq!(
        REDDIT.classify_events(&d, &outs[..1], &resp),
        whole(Class::Rejected)
    );
    assert_eq!(REDDIT.classify(&d, 5, &resp), whole(Class::Rejected));

    // The rest goes through.
    let rest = [out(&evs[0]), out(&evs[2]), out(&evs[4])];
    let resp = send(&REDDIT.build(&d, &rest, T0_MS)).await;
    assert_eq!(REDDIT.classify(&d, 3, &resp), whole(Class::Delivered));
    assert_eq!(server.accepted_event("ok-2"), 1);

    // An event without any user identifier is invalid too (only from a client other
    // than the adapter, whose check() refuses it).
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v2.0/conversions/events/t2_abc",
            server.url()
        ))
        .bearer_auth("t")
        .json(&json!({"test_mode": false, "events": [{
            "event_at": "2026-11-02T11:59:00Z",
            "event_type": {"tracking_type": "Purchase"},
            "event_metadata": {"conversion_id": "anon"},
            "user": {"ip_address": "203.0.113.7"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["invalid_events"][0]["event"]["event_metadata"]["conversion_id"],
        "anon"
    );

    // invalid_events naming no event of the request: rejected whole.
    let foreign = HttpResponse {
        status: 400,
        headers: vec![],
        body: serde_json::to_vec(&json!({"message": "There were 1 invalid conversion events. None were processed.",
            "invalid_events": [{"error_message": "x", "event": {"event_metadata": {"conversion_id": "zzz"}}}]}))
        .unwrap(),
    };
    assert_eq!(
        REDDIT.classify_events(&d, &outs[..2], &foreign),
        whole(Class::Rejected)
    );

    // A 2xx that still carries invalid_events names rows too.
    let ok_but = HttpResponse {
        status: 200,
        headers: vec![],
        body: serde_json::to_vec(&json!({"message": "Successfully processed 1 conversion events.",
            "invalid_events": [{"error_message": "x", "event": {"event_metadata": {"conversion_id": "bad-1"}}}]}))
        .unwrap(),
    };
    assert_eq!(
        REDDIT.classify_events(&d, &outs[..2], &ok_but),
        Verdict::RowsRejected(vec![1])
    );
    // A 2xx that is not JSON, or with an empty invalid_events: delivered.
    for body in [&b"OK"[..], br#"{"message":"x","invalid_events":[]}"#] {
        let r = HttpResponse {
            status: 200,
            headers: vec![],
            body: body.to_vec(),
        };
        assert_eq!(REDDIT.classify(&d, 2, &r), whole(Class::Delivered));
    }
    server.shutdown().await;
}

#[test]
fn reddit_adapter_is_registered() {
    assert_eq!(
        platforms::adapter(Platform::Reddit).unwrap().platform(),
        Platform::Reddit
    );
}
