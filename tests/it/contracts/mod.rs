//! Contract tests: each adapter's requests, sent with reqwest over real sockets to its
//! simulator, and each row of platforms.md "Classification" driven by the simulator's
//! scripted faults.
//!
//! This module holds the webhook, Meta, TikTok and Klaviyo contracts and the simulator's
//! own; each other platform has its own submodule (`contracts/<platform>.rs`).

mod criteo;
mod google_ads;
mod linkedin;
mod microsoft_ads;
mod outbrain;
mod pinterest;
mod reddit;
mod snapchat;
mod taboola;
mod x;

use crate::common::{contract_policy, hash, out, whole};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sluice::clock::{ManualClock, SharedClock};
use sluice::config::{Destination, Platform, Secret};
use sluice::event::{ClearField, NormalizedEvent, PlainField, Variant};
use sluice::ingest::identifiers::{IdField, normalize};
use sluice::platforms::{
    self, Adapter, Class, HttpRequest, HttpResponse, Verdict, klaviyo::KLAVIYO, meta::META, redact,
    tiktok::TIKTOK, webhook::WEBHOOK,
};
use sluice::sim::{self, Fault, FaultScript, RetryAfter, SimOptions, SimServer};

/// 2026-11-02T12:00:00Z
const T0_MS: i64 = 1_793_620_800_000;
const T0_S: i64 = T0_MS / 1000;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn dest(
    platform: Platform,
    endpoint: &str,
    params: &[(&str, &str)],
    creds: &[(&str, &str)],
    event_map: &[(&str, &str)],
) -> Destination {
    Destination {
        id: format!("{}_dest", platform.name()),
        workspace: "glasshouse".into(),
        platform,
        endpoint: Some(endpoint.to_string()),
        events: None,
        event_map: event_map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        credentials: creds
            .iter()
            .map(|(k, v)| (k.to_string(), Secret(v.to_string())))
            .collect(),
        policy: contract_policy(1000),
    }
}

/// The hex hash intake keeps for `raw` in `variant`.
struct Ev<'a> {
    id: &'a str,
    name: &'a str,
    time: i64,
    ids: Vec<(IdField, &'a str)>,
    clear: Vec<(ClearField, &'a str)>,
    plain: Vec<(PlainField, &'a str)>,
    custom: Option<Value>,
    url: Option<&'a str>,
    action_source: Option<&'a str>,
}

impl<'a> Ev<'a> {
    fn new(id: &'a str, name: &'a str) -> Self {
        Ev {
            id,
            name,
            time: T0_S - 60,
            ids: vec![],
            clear: vec![],
            plain: vec![],
            custom: None,
            url: None,
            action_source: None,
        }
    }

    fn build(self) -> NormalizedEvent {
        let country = self
            .ids
            .iter()
            .find(|(f, _)| *f == IdField::Country)
            .map(|(_, v)| *v);
        let mut hashed = vec![];
        for (f, raw) in &self.ids {
            for n in normalize(*f, raw, "1", country).unwrap() {
                hashed.push((n.variant, n.sha256));
            }
        }
        hashed.sort_by_key(|(v, _)| *v);
        let mut clear: Vec<(ClearField, String)> = self
            .clear
            .iter()
            .map(|(f, v)| (*f, v.to_string()))
            .collect();
        clear.sort_by_key(|(f, _)| *f);
        NormalizedEvent {
            event_id: self.id.into(),
            event_name: self.name.into(),
            event_time: self.time,
            action_source: self.action_source.map(str::to_string),
            event_source_url: self.url.map(str::to_string),
            hashed,
            clear,
            plaintext: self
                .plain
                .iter()
                .map(|(f, v)| (*f, v.to_string()))
                .collect(),
            custom_data: self
                .custom
                .map(|c| serde_json::to_vec(&c).unwrap())
                .unwrap_or_default(),
            destinations: vec![],
        }
    }
}

/// A shopper with every identifier and click id.
fn full_event(id: &str, name: &str) -> NormalizedEvent {
    let mut e = Ev::new(id, name);
    e.ids = vec![
        (IdField::Email, " Jane.Doe@Gmail.com "),
        (IdField::Phone, "+1 (415) 555-0100"),
        (IdField::FirstName, "Jane"),
        (IdField::LastName, "Doe"),
        (IdField::City, "San Francisco"),
        (IdField::State, "California"),
        (IdField::Zip, "94103-1234"),
        (IdField::Country, "US"),
        (IdField::Gender, "female"),
        (IdField::DateOfBirth, "1990-04-01"),
        (IdField::ExternalId, "CUST-42"),
    ];
    e.clear = vec![
        (ClearField::ClientIpAddress, "203.0.113.7"),
        (
            ClearField::ClientUserAgent,
            "Mozilla/5.0 (X11; Linux x86_64)",
        ),
        (ClearField::Fbc, "fb.1.1700000000000.AbCdEf"),
        (ClearField::Fbp, "fb.1.1700000000000.123456"),
        (ClearField::Ttclid, "E.C.P.ttclid123"),
        (ClearField::Ttp, "ttp-cookie-1"),
    ];
    e.plain = vec![
        (PlainField::Email, "jane.doe@gmail.com"),
        (PlainField::PhoneE164, "+14155550100"),
    ];
    e.custom = Some(json!({"currency": "USD", "value": 129.5, "order_id": "A-1001"}));
    e.url = Some("https://shop.example/checkout/thanks");
    e.build()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn send(c: &reqwest::Client, req: &HttpRequest) -> HttpResponse {
    let mut b = c.request(
        reqwest::Method::from_bytes(req.method.as_bytes()).unwrap(),
        &req.url,
    );
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    let r = b.body(req.body.clone()).send().await.unwrap();
    HttpResponse {
        status: r.status().as_u16(),
        headers: r
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

async fn start(p: Platform, clock: &Arc<ManualClock>, opts: SimOptions) -> SimServer {
    let c: SharedClock = clock.clone();
    sim::start_with(
        p,
        "127.0.0.1:0".parse().unwrap(),
        c,
        FaultScript::none(),
        opts,
    )
    .await
    .unwrap()
}

/// Sends `req` with `fault` scripted for it and returns the adapter's verdict.
async fn verdict_under(
    server: &SimServer,
    adapter: &dyn Adapter,
    d: &Destination,
    req: &HttpRequest,
    n: usize,
    fault: Option<Fault>,
) -> (HttpResponse, Verdict) {
    server.set_script(match fault {
        Some(f) => FaultScript::always(f),
        None => FaultScript::none(),
    });
    let resp = send(&client(), req).await;
    let v = adapter.classify(d, n, &resp);
    (resp, v)
}

fn throttle(ra: Option<RetryAfter>) -> Fault {
    Fault::Throttle { retry_after: ra }
}

// ---------------------------------------------------------------- webhook

#[tokio::test]
async fn webhook_request_is_signed_and_carries_hashes_only() {
    let clock = ManualClock::new(T0_MS);
    let server = start(
        Platform::Webhook,
        &clock,
        SimOptions {
            credential: Some(SECRET.into()),
            ..Default::default()
        },
    )
    .await;
    let d = dest(
        Platform::Webhook,
        &format!("{}/hooks/in?src=sluice", server.url()),
        &[],
        &[("signing_secret", SECRET)],
        &[],
    );
    let e = full_event("ord-1001", "Purchase");
    WEBHOOK.check(&d, &out(&e)).unwrap();
    let req = WEBHOOK.build(&d, &[out(&e)], T0_MS + 1_500);
    let resp = send(&client(), &req).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(WEBHOOK.classify(&d, 1, &resp), whole(Class::Delivered));

    let got = server.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/in?src=sluice");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("webhook-id"), Some("Purchase:ord-1001"));
    // Send time T0 + 1.5 s → whole seconds.
    let ts = T0_S + 1;
    assert_eq!(r.header("webhook-timestamp"), Some(ts.to_string().as_str()));

    // Recompute the Standard Webhooks signature independently.
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("Purchase:ord-1001.{ts}.").as_bytes());
    mac.update(&r.raw_body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.header("webhook-signature"), Some(want.as_str()));

    let b = &r.body;
    assert_eq!(b["event_id"], "ord-1001");
    assert_eq!(b["event_name"], "Purchase");
    assert_eq!(b["event_time"], T0_S - 60);
    assert_eq!(b["merchant_id"], "glasshouse");
    assert_eq!(b["destination_id"], "webhook_dest");
    assert_eq!(
        b["event_source_url"],
        "https://shop.example/checkout/thanks"
    );
    assert!(b.get("action_source").is_none());
    assert_eq!(
        b["custom_data"],
        json!({"currency": "USD", "value": 129.5, "order_id": "A-1001"})
    );
    let u = &b["user_data"];
    assert_eq!(
        u["email_sha256"],
        hash(IdField::Email, "jane.doe@gmail.com", Variant::Email)
    );
    assert_eq!(
        u["email_google_sha256"],
        hash(IdField::Email, "janedoe@gmail.com", Variant::EmailGoogle)
    );
    assert_eq!(
        u["phone_digits_sha256"],
        hash(IdField::Phone, "+14155550100", Variant::PhoneDigits)
    );
    assert_eq!(
        u["phone_e164_sha256"],
        hash(IdField::Phone, "+14155550100", Variant::PhoneE164)
    );
    assert_eq!(u["zip_sha256"], hash(IdField::Zip, "94103", Variant::Zip));
    assert_eq!(u["client_ip_address"], "203.0.113.7");
    assert_eq!(u["fbc"], "fb.1.1700000000000.AbCdEf");
    assert_eq!(u["ttclid"], "E.C.P.ttclid123");
    assert!(u.get("email").is_none());
    let raw = String::from_utf8_lossy(&r.raw_body);
    assert!(!raw.contains("jane.doe@gmail.com") && !raw.contains("+14155550100"));
    // The DLQ view is the same JSON.
    assert_eq!(
        platforms::webhook::webhook_event_json(&out(&e), "webhook_dest"),
        *b
    );

    // A wrong secret fails the receiver's verification → 401 → auth.
    let bad = dest(
        Platform::Webhook,
        &format!("{}/hooks/in", server.url()),
        &[],
        &[("signing_secret", "whsec_c2VjcmV0LXRoYXQtaXMtd3Jvbmc=")],
        &[],
    );
    let resp = send(&client(), &WEBHOOK.build(&bad, &[out(&e)], T0_MS)).await;
    assert_eq!(resp.status, 401);
    assert_eq!(WEBHOOK.classify(&bad, 1, &resp), whole(Class::Auth));
    assert!(
        !redact(&format!("{req:?}"), &req.secrets).contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn webhook_event_map_renames_and_changes_webhook_id() {
    let clock = ManualClock::new(T0_MS);
    let server = start(Platform::Webhook, &clock, SimOptions::default()).await;
    let d = dest(
        Platform::Webhook,
        &server.url(),
        &[],
        &[("signing_secret", SECRET)],
        &[("Lead", "lead_created")],
    );
    let e = full_event("lead-7", "Lead");
    send(&client(), &WEBHOOK.build(&d, &[out(&e)], T0_MS)).await;
    let r = &server.received()[0];
    assert_eq!(r.header("webhook-id"), Some("lead_created:lead-7"));
    assert_eq!(r.body["event_name"], "lead_created");
    server.shutdown().await;
}

#[tokio::test]
async fn webhook_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(Platform::Webhook, &clock, SimOptions::default()).await;
    let d = dest(
        Platform::Webhook,
        &format!("{}/hook", server.url()),
        &[],
        &[("signing_secret", SECRET)],
        &[],
    );
    let e = full_event("ord-1", "Purchase");
    let req = WEBHOOK.build(&d, &[out(&e)], T0_MS);
    let cases: Vec<(Fault, u16, Class)> = vec![
        (
            throttle(Some(RetryAfter::Seconds(7))),
            429,
            Class::Throttled {
                hold_ms: Some(7_000),
            },
        ),
        (
            throttle(Some(RetryAfter::HttpDate { in_secs: 30 })),
            429,
            Class::Throttled {
                hold_ms: Some(30_000),
            },
        ),
        (throttle(None), 429, Class::Throttled { hold_ms: None }),
        (
            Fault::ServerError(502),
            502,
            Class::Throttled { hold_ms: None },
        ),
        (
            Fault::ServerError(504),
            504,
            Class::Throttled { hold_ms: None },
        ),
        (Fault::Auth, 401, Class::Auth),
        (Fault::ServerError(403), 403, Class::Auth),
        (Fault::Redirect, 307, Class::Retryable),
        (Fault::ServerError(301), 301, Class::Retryable),
        (Fault::Gone, 410, Class::Gone("endpoint_gone")),
        (Fault::ServerError(408), 408, Class::Retryable),
        (Fault::Transient, 503, Class::Retryable),
        (Fault::ServerError(500), 500, Class::Retryable),
        (Fault::Invalid, 400, Class::Rejected),
        (Fault::ServerError(404), 404, Class::Rejected),
        (Fault::ServerError(422), 422, Class::Rejected),
        (Fault::ServerError(204), 204, Class::Delivered),
    ];
    for (fault, status, class) in cases {
        let before = server.count();
        let (resp, v) = verdict_under(&server, &WEBHOOK, &d, &req, 1, Some(fault.clone())).await;
        assert_eq!(resp.status, status, "{fault:?}");
        assert_eq!(v, whole(class), "{fault:?}");
        // Exactly one request arrived: a redirect is never followed.
        assert_eq!(server.count(), before + 1, "{fault:?}");
    }
    assert!(server.received().iter().all(|r| r.path == "/hook"));
    server.shutdown().await;
}

// ---------------------------------------------------------------- meta

const META_TOKEN: &str = "EAAB/tok+en=42";

fn meta_dest(server: &SimServer, map: &[(&str, &str)]) -> Destination {
    dest(
        Platform::Meta,
        &server.url(),
        &[("pixel_id", "1234567890")],
        &[("access_token", META_TOKEN)],
        map,
    )
}

#[tokio::test]
async fn meta_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(
        Platform::Meta,
        &clock,
        SimOptions {
            credential: Some(META_TOKEN.into()),
            ..Default::default()
        },
    )
    .await;
    let d = meta_dest(&server, &[("Lead", "SubmitApplication")]);
    let a = full_event("ord-1001", "Purchase");
    let mut b = Ev::new("lead-9", "Lead");
    b.ids = vec![(IdField::Email, "someone@example.com")];
    b.action_source = Some("system_generated");
    let b = b.build();
    let req = META.build(&d, &[out(&a), out(&b)], T0_MS);
    assert_eq!(
        req.url,
        format!(
            "{}/v24.0/1234567890/events?access_token=EAAB%2Ftok%2Ben%3D42",
            server.url()
        )
    );
    assert_eq!(req.secrets, vec![META_TOKEN.to_string()]);
    let shown = redact(&req.url, &req.secrets);
    assert_eq!(
        shown,
        format!(
            "{}/v24.0/1234567890/events?access_token=[redacted]",
            server.url()
        )
    );
    // Default-endpoint URL, plain token, is redacted too.
    let mut prod = d.clone();
    prod.endpoint = None;
    prod.credentials
        .insert("access_token".into(), Secret("EAABplain123".into()));
    let pr = META.build(&prod, &[out(&a)], T0_MS);
    assert_eq!(
        pr.url,
        "https://graph.facebook.com/v24.0/1234567890/events?access_token=EAABplain123"
    );
    assert_eq!(
        redact(&pr.url, &pr.secrets),
        "https://graph.facebook.com/v24.0/1234567890/events?access_token=[redacted]"
    );

    let resp = send(&client(), &req).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(META.classify(&d, 2, &resp), whole(Class::Delivered));
    let got = server.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        "/v24.0/1234567890/events?access_token=EAAB%2Ftok%2Ben%3D42"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let x = &data[0];
    assert_eq!(x["event_name"], "Purchase");
    assert_eq!(x["event_id"], "ord-1001");
    assert_eq!(x["event_time"], T0_S - 60); // seconds
    assert_eq!(x["action_source"], "website"); // default
    assert_eq!(
        x["event_source_url"],
        "https://shop.example/checkout/thanks"
    );
    assert_eq!(x["custom_data"]["value"], 129.5);
    let u = &x["user_data"];
    assert_eq!(
        u["em"],
        json!([hash(IdField::Email, "jane.doe@gmail.com", Variant::Email)])
    );
    let ph_digits = hash(IdField::Phone, "+14155550100", Variant::PhoneDigits);
    assert_eq!(u["ph"], json!([ph_digits]));
    assert_ne!(
        ph_digits,
        hash(IdField::Phone, "+14155550100", Variant::PhoneE164)
    );
    assert_eq!(
        u["fn"],
        json!([hash(IdField::FirstName, "jane", Variant::FirstName)])
    );
    assert_eq!(
        u["ln"],
        json!([hash(IdField::LastName, "doe", Variant::LastName)])
    );
    assert_eq!(
        u["ct"],
        json!([hash(IdField::City, "sanfrancisco", Variant::City)])
    );
    assert_eq!(u["st"], json!([hash(IdField::State, "ca", Variant::State)]));
    assert_eq!(u["zp"], json!([hash(IdField::Zip, "94103", Variant::Zip)]));
    assert_eq!(
        u["country"],
        json!([hash(IdField::Country, "us", Variant::Country)])
    );
    assert_eq!(
        u["ge"],
        json!([hash(IdField::Gender, "f", Variant::Gender)])
    );
    assert_eq!(
        u["db"],
        json!([hash(IdField::DateOfBirth, "19900401", Variant::DateOfBirth)])
    );
    assert_eq!(
        u["external_id"],
        json!([hash(IdField::ExternalId, "cust-42", Variant::ExternalId)])
    );
    assert_eq!(u["client_ip_address"], "203.0.113.7");
    assert_eq!(u["client_user_agent"], "Mozilla/5.0 (X11; Linux x86_64)");
    assert_eq!(u["fbc"], "fb.1.1700000000000.AbCdEf");
    assert_eq!(u["fbp"], "fb.1.1700000000000.123456");
    assert!(u.get("ttclid").is_none());
    assert_eq!(u.as_object().unwrap().len(), 15);
    let y = &data[1];
    assert_eq!(y["event_name"], "SubmitApplication"); // event_map
    assert_eq!(y["action_source"], "system_generated");
    assert!(y.get("custom_data").is_none());
    assert_eq!(server.count_event("ord-1001"), 1);
    assert_eq!(server.accepted_event("lead-9"), 1);

    // A token other than the pixel's → 400 code 190 → auth.
    let mut wrong = d.clone();
    wrong
        .credentials
        .insert("access_token".into(), Secret("EAABexpired".into()));
    let resp = send(&client(), &META.build(&wrong, &[out(&a)], T0_MS)).await;
    assert_eq!(resp.status, 400);
    assert_eq!(META.classify(&wrong, 1, &resp), whole(Class::Auth));
    server.shutdown().await;
}

#[tokio::test]
async fn meta_check_requires_a_matchable_identifier() {
    let d = dest(
        Platform::Meta,
        "http://127.0.0.1:9",
        &[("pixel_id", "1")],
        &[("access_token", "t")],
        &[],
    );
    let mut names_only = Ev::new("e1", "Purchase");
    names_only.ids = vec![(IdField::FirstName, "Jane"), (IdField::City, "Paris")];
    assert!(META.check(&d, &out(&names_only.build())).is_err());
    let mut ip_only = Ev::new("e2", "Purchase");
    ip_only.clear = vec![(ClearField::ClientIpAddress, "203.0.113.7")];
    assert!(META.check(&d, &out(&ip_only.build())).is_err());
    let mut ip_ua = Ev::new("e3", "Purchase");
    ip_ua.clear = vec![
        (ClearField::ClientIpAddress, "203.0.113.7"),
        (ClearField::ClientUserAgent, "curl/8"),
    ];
    assert!(META.check(&d, &out(&ip_ua.build())).is_ok());
    let mut fbp = Ev::new("e4", "Purchase");
    fbp.clear = vec![(ClearField::Fbp, "fb.1.1.1")];
    assert!(META.check(&d, &out(&fbp.build())).is_ok());
    let mut phone = Ev::new("e5", "Purchase");
    phone.ids = vec![(IdField::Phone, "4155550100")];
    assert!(META.check(&d, &out(&phone.build())).is_ok());
}

#[tokio::test]
async fn meta_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(Platform::Meta, &clock, SimOptions::default()).await;
    let d = meta_dest(&server, &[]);
    let (a, b) = (full_event("a", "Purchase"), full_event("b", "Purchase"));
    let one = META.build(&d, &[out(&a)], T0_MS);
    let two = META.build(&d, &[out(&a), out(&b)], T0_MS);
    let code = |status, code| Fault::Code { status, code };
    let cases: Vec<(Fault, usize, u16, Verdict)> = vec![
        (
            throttle(None),
            1,
            400,
            whole(Class::Throttled { hold_ms: None }),
        ),
        (
            throttle(Some(RetryAfter::Seconds(5))),
            2,
            400,
            whole(Class::Throttled {
                hold_ms: Some(5_000),
            }),
        ),
        (
            code(400, 4),
            1,
            400,
            whole(Class::Throttled { hold_ms: None }),
        ),
        (
            code(400, 32),
            2,
            400,
            whole(Class::Throttled { hold_ms: None }),
        ),
        (
            code(400, 341),
            1,
            400,
            whole(Class::Throttled { hold_ms: None }),
        ),
        (
            code(400, 613),
            2,
            400,
            whole(Class::Throttled { hold_ms: None }),
        ),
        (
            code(403, 17),
            1,
            403,
            whole(Class::Throttled { hold_ms: None }),
        ),
        (
            code(400, 80004),
            1,
            400,
            whole(Class::Throttled { hold_ms: None }),
        ),
        (
            Fault::ServerError(429),
            2,
            429,
            whole(Class::Throttled { hold_ms: None }),
        ),
        (Fault::Auth, 2, 400, whole(Class::Auth)),
        (code(400, 102), 1, 400, whole(Class::Auth)),
        (code(403, 190), 2, 403, whole(Class::Auth)),
        (code(401, 100), 2, 401, whole(Class::Auth)), // status first
        (Fault::ServerError(401), 1, 401, whole(Class::Auth)),
        (Fault::Transient, 2, 503, whole(Class::Retryable)),
        (code(400, 1), 2, 400, whole(Class::Retryable)),
        (code(500, 2), 1, 500, whole(Class::Retryable)),
        (Fault::ServerError(500), 2, 500, whole(Class::Retryable)),
        (Fault::ServerError(408), 1, 408, whole(Class::Retryable)),
        (Fault::Redirect, 1, 307, whole(Class::Retryable)),
        (Fault::Invalid, 2, 400, Verdict::Bisect),
        (Fault::Invalid, 1, 400, whole(Class::Rejected)),
        (code(403, 200), 1, 403, whole(Class::Rejected)),
        (code(404, 803), 2, 404, Verdict::Bisect),
        (
            code(400, 17),
            1,
            400,
            whole(Class::Throttled { hold_ms: None }),
        ),
        // 2xx carrying a Graph error is never taken as delivered.
        (code(200, 1), 1, 200, whole(Class::Retryable)),
        // 2xx that is not Meta's success body: retry, never guess.
        (Fault::ServerError(200), 1, 200, whole(Class::Retryable)),
    ];
    for (fault, n, status, want) in cases {
        let req = if n == 1 { &one } else { &two };
        let (resp, v) = verdict_under(&server, &META, &d, req, n, Some(fault.clone())).await;
        assert_eq!(resp.status, status, "{fault:?}");
        assert_eq!(v, want, "{fault:?} n={n}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn meta_invalid_event_rejects_the_batch_and_bisection_finds_it() {
    let clock = ManualClock::new(T0_MS);
    let server = start(Platform::Meta, &clock, SimOptions::default()).await;
    let d = meta_dest(&server, &[]);
    let good = full_event("good-1", "Purchase");
    let bad = full_event("bad-1", "Invalid");
    let c = client();
    let resp = send(&c, &META.build(&d, &[out(&good), out(&bad)], T0_MS)).await;
    assert_eq!(resp.status, 400);
    let err: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(err["error"]["code"], 100);
    assert_eq!(META.classify(&d, 2, &resp), Verdict::Bisect);
    // Halves.
    let resp = send(&c, &META.build(&d, &[out(&good)], T0_MS)).await;
    assert_eq!(META.classify(&d, 1, &resp), whole(Class::Delivered));
    let resp = send(&c, &META.build(&d, &[out(&bad)], T0_MS)).await;
    assert_eq!(META.classify(&d, 1, &resp), whole(Class::Rejected));
    assert_eq!(server.count_event("good-1"), 2);
    assert_eq!(server.accepted_event("good-1"), 1);
    assert_eq!(server.accepted_event("bad-1"), 0);

    // One event older than 7 days fails the whole request.
    let mut old = Ev::new("old-1", "Purchase");
    old.ids = vec![(IdField::Email, "old@example.com")];
    old.time = T0_S - 7 * 86_400 - 1;
    let old = old.build();
    let resp = send(&c, &META.build(&d, &[out(&good), out(&old)], T0_MS)).await;
    assert_eq!(resp.status, 400);
    let err: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(err["error"]["error_subcode"], 2_804_003);
    assert_eq!(META.classify(&d, 1, &resp), whole(Class::Rejected));
    assert_eq!(server.accepted_event("good-1"), 1);

    // An event without user_data (only possible from a client other than the adapter).
    let resp = c
        .post(format!("{}/v24.0/1/events?access_token=x", server.url()))
        .json(
            &json!({"data": [{"event_name": "Purchase", "event_time": T0_S,
            "action_source": "website", "user_data": {}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    server.shutdown().await;
}

// ---------------------------------------------------------------- tiktok

const TT_TOKEN: &str = "tt-access-token-abc";

fn tiktok_dest(server: &SimServer, token: &str, map: &[(&str, &str)]) -> Destination {
    dest(
        Platform::Tiktok,
        &server.url(),
        &[("pixel_code", "CABCDEF123")],
        &[("access_token", token)],
        map,
    )
}

#[tokio::test]
async fn tiktok_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(
        Platform::Tiktok,
        &clock,
        SimOptions {
            credential: Some(TT_TOKEN.into()),
            ..Default::default()
        },
    )
    .await;
    let d = tiktok_dest(&server, TT_TOKEN, &[("AddToCart", "AddToBasket")]);
    let a = full_event("ord-1001", "Purchase");
    let mut b = Ev::new("lead-1", "Lead");
    b.clear = vec![(ClearField::Ttclid, "E.C.P.x")];
    let b = b.build();
    let mut c = Ev::new("atc-1", "AddToCart");
    c.ids = vec![(IdField::ExternalId, "CUST-9")];
    let c = c.build();
    let mut v = Ev::new("view-1", "ViewContent");
    v.ids = vec![(IdField::Email, "v@example.com")];
    let v = v.build();
    let req = TIKTOK.build(&d, &[out(&a), out(&b), out(&c), out(&v)], T0_MS);
    assert_eq!(req.secrets, vec![TT_TOKEN.to_string()]);
    let resp = send(&client(), &req).await;
    assert_eq!(resp.status, 200);
    assert_eq!(TIKTOK.classify(&d, 4, &resp), whole(Class::Delivered));

    let r = &server.received()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/open_api/v1.3/event/track/");
    assert_eq!(r.header("access-token"), Some(TT_TOKEN));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body["event_source"], "web");
    assert_eq!(r.body["event_source_id"], "CABCDEF123");
    let data = r.body["data"].as_array().unwrap();
    let names: Vec<&str> = data.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "CompletePayment",
            "SubmitForm",
            "AddToBasket",
            "ViewContent"
        ]
    );
    let x = &data[0];
    assert_eq!(x["event_id"], "ord-1001");
    assert_eq!(x["event_time"], T0_S - 60);
    assert_eq!(
        x["page"],
        json!({"url": "https://shop.example/checkout/thanks"})
    );
    assert_eq!(
        x["properties"],
        json!({"currency": "USD", "value": 129.5, "order_id": "A-1001"})
    );
    let u = &x["user"];
    assert_eq!(
        u["email"],
        json!([hash(IdField::Email, "jane.doe@gmail.com", Variant::Email)])
    );
    let e164 = hash(IdField::Phone, "+14155550100", Variant::PhoneE164);
    assert_eq!(u["phone"], json!([e164]));
    assert_ne!(
        e164,
        hash(IdField::Phone, "+14155550100", Variant::PhoneDigits)
    );
    assert_eq!(
        u["external_id"],
        json!([hash(IdField::ExternalId, "cust-42", Variant::ExternalId)])
    );
    assert_eq!(u["zip_code"], hash(IdField::Zip, "94103", Variant::Zip));
    assert_eq!(u["ttclid"], "E.C.P.ttclid123");
    assert_eq!(u["ttp"], "ttp-cookie-1");
    assert_eq!(u["ip"], "203.0.113.7");
    assert_eq!(u["user_agent"], "Mozilla/5.0 (X11; Linux x86_64)");
    assert!(u.get("fbc").is_none());
    assert_eq!(data[1]["properties"], json!({}));
    assert!(data[1].get("page").is_none());

    // Wrong token: HTTP 200 with code 40105 → auth.
    let wrong = tiktok_dest(&server, "tt-revoked", &[]);
    let resp = send(&client(), &TIKTOK.build(&wrong, &[out(&a)], T0_MS)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(TIKTOK.classify(&wrong, 1, &resp), whole(Class::Auth));

    // No user signal at all: unsendable.
    assert!(
        TIKTOK
            .check(&d, &out(&Ev::new("x", "Purchase").build()))
            .is_err()
    );
    assert!(TIKTOK.check(&d, &out(&b)).is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn tiktok_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(Platform::Tiktok, &clock, SimOptions::default()).await;
    let d = tiktok_dest(&server, TT_TOKEN, &[]);
    let e = full_event("a", "Purchase");
    let req = TIKTOK.build(&d, &[out(&e)], T0_MS);
    let code = |status, code| Fault::Code { status, code };
    let cases: Vec<(Fault, u16, Class)> = vec![
        (code(200, 0), 200, Class::Delivered),
        (code(200, 20001), 200, Class::Delivered),
        (throttle(None), 200, Class::Throttled { hold_ms: None }),
        (
            throttle(Some(RetryAfter::Seconds(9))),
            200,
            Class::Throttled {
                hold_ms: Some(9_000),
            },
        ),
        (Fault::Auth, 200, Class::Auth),
        (code(200, 40104), 200, Class::Auth),
        (Fault::Invalid, 200, Class::Rejected),
        (code(200, 40001), 200, Class::Rejected),
        (Fault::Transient, 200, Class::Retryable),
        (code(200, 40123), 200, Class::Retryable),
        (code(200, 40123), 200, Class::Retryable), // logged once, same answer
        // Non-200 statuses by row "all", whatever the code.
        (code(400, 0), 400, Class::Rejected),
        (code(503, 40100), 503, Class::Retryable),
        (
            Fault::ServerError(429),
            429,
            Class::Throttled { hold_ms: None },
        ),
        (Fault::ServerError(401), 401, Class::Auth),
        (Fault::ServerError(408), 408, Class::Retryable),
        (Fault::ServerError(500), 500, Class::Retryable),
        (Fault::ServerError(404), 404, Class::Rejected),
        (Fault::Redirect, 307, Class::Retryable),
        // A 2xx whose body is not TikTok's JSON: retry, never guess.
        (Fault::ServerError(200), 200, Class::Retryable),
    ];
    for (fault, status, class) in cases {
        let (resp, v) = verdict_under(&server, &TIKTOK, &d, &req, 1, Some(fault.clone())).await;
        assert_eq!(resp.status, status, "{fault:?}");
        assert_eq!(v, whole(class), "{fault:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn tiktok_sliding_window_rate_limit() {
    let clock = ManualClock::new(T0_MS);
    let server = start(Platform::Tiktok, &clock, SimOptions::default()).await;
    let d = tiktok_dest(&server, TT_TOKEN, &[]);
    let e = full_event("a", "Purchase");
    let req = TIKTOK.build(&d, &[out(&e)], T0_MS);
    let c = client();
    // 300 at t0, 300 at t0+30s: all within one minute.
    for i in 0..600 {
        if i == 300 {
            clock.advance_ms(30_000);
        }
        let resp = send(&c, &req).await;
        assert_eq!(
            TIKTOK.classify(&d, 1, &resp),
            whole(Class::Delivered),
            "request {i}"
        );
    }
    let resp = send(&c, &req).await;
    assert_eq!(resp.status, 200);
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["code"], 40100);
    assert_eq!(
        TIKTOK.classify(&d, 1, &resp),
        whole(Class::Throttled { hold_ms: None })
    );
    // Another token has its own window.
    let other = tiktok_dest(&server, "tt-other-token", &[]);
    let resp = send(&c, &TIKTOK.build(&other, &[out(&e)], T0_MS)).await;
    assert_eq!(TIKTOK.classify(&other, 1, &resp), whole(Class::Delivered));
    // Just before the first 300 leave the window: still throttled.
    clock.advance_ms(29_999);
    let resp = send(&c, &req).await;
    assert_eq!(
        TIKTOK.classify(&d, 1, &resp),
        whole(Class::Throttled { hold_ms: None })
    );
    // The window slides past the first 300: room again.
    clock.advance_ms(1);
    for i in 0..300 {
        let resp = send(&c, &req).await;
        assert_eq!(
            TIKTOK.classify(&d, 1, &resp),
            whole(Class::Delivered),
            "{i}"
        );
    }
    let resp = send(&c, &req).await;
    assert_eq!(
        TIKTOK.classify(&d, 1, &resp),
        whole(Class::Throttled { hold_ms: None })
    );
    assert_eq!(server.count(), 600 + 1 + 1 + 1 + 300 + 1);
    assert_eq!(server.accepted_event("a"), 600 + 1 + 300);
    server.shutdown().await;
}

// ---------------------------------------------------------------- klaviyo

const KL_KEY: &str = "pk_live_0123456789abcdef";

fn klaviyo_dest(server: &SimServer, map: &[(&str, &str)]) -> Destination {
    dest(
        Platform::Klaviyo,
        &server.url(),
        &[],
        &[("api_key", KL_KEY)],
        map,
    )
}

#[tokio::test]
async fn klaviyo_request_shape() {
    let clock = ManualClock::new(T0_MS);
    let server = start(
        Platform::Klaviyo,
        &clock,
        SimOptions {
            credential: Some(KL_KEY.into()),
            ..Default::default()
        },
    )
    .await;
    let d = klaviyo_dest(&server, &[("Lead", "Signed Up")]);
    let e = full_event("ord-1001", "Purchase");
    KLAVIYO.check(&d, &out(&e)).unwrap();
    let req = KLAVIYO.build(&d, &[out(&e)], T0_MS);
    assert_eq!(req.secrets, vec![KL_KEY.to_string()]);
    assert!(!redact(&format!("{:?}", req.headers), &req.secrets).contains(KL_KEY));
    let resp = send(&client(), &req).await;
    assert_eq!(resp.status, 202, "{}", String::from_utf8_lossy(&resp.body));
    assert!(resp.body.is_empty());
    assert_eq!(KLAVIYO.classify(&d, 1, &resp), whole(Class::Delivered));

    let r = &server.received()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/events");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Klaviyo-API-Key {KL_KEY}").as_str())
    );
    assert_eq!(r.header("revision"), Some("2026-07-15"));
    assert_eq!(r.header("content-type"), Some("application/vnd.api+json"));
    let a = &r.body["data"]["attributes"];
    assert_eq!(r.body["data"]["type"], "event");
    assert_eq!(a["metric"]["data"]["type"], "metric");
    assert_eq!(a["metric"]["data"]["attributes"]["name"], "Purchase");
    assert_eq!(a["unique_id"], "ord-1001");
    assert_eq!(a["time"], "2026-11-02T11:59:00Z");
    assert_eq!(a["value"], 129.5);
    assert_eq!(a["value_currency"], "USD");
    assert_eq!(
        a["properties"],
        json!({"currency": "USD", "value": 129.5, "order_id": "A-1001"})
    );
    assert_eq!(a["profile"]["data"]["type"], "profile");
    assert_eq!(
        a["profile"]["data"]["attributes"],
        json!({"email": "jane.doe@gmail.com", "phone_number": "+14155550100"})
    );

    // event_map, phone only, no custom_data.
    let mut l = Ev::new("lead-1", "Lead");
    l.plain = vec![(PlainField::PhoneE164, "+447700900123")];
    let l = l.build();
    KLAVIYO.check(&d, &out(&l)).unwrap();
    let resp = send(&client(), &KLAVIYO.build(&d, &[out(&l)], T0_MS)).await;
    assert_eq!(KLAVIYO.classify(&d, 1, &resp), whole(Class::Delivered));
    let a = &server.received()[1].body["data"]["attributes"];
    assert_eq!(a["metric"]["data"]["attributes"]["name"], "Signed Up");
    assert_eq!(a["properties"], json!({}));
    assert!(a.get("value").is_none());
    assert_eq!(
        a["profile"]["data"]["attributes"],
        json!({"phone_number": "+447700900123"})
    );

    // Hashes only: unsendable.
    let mut h = Ev::new("h-1", "Purchase");
    h.ids = vec![
        (IdField::Email, "jane@example.com"),
        (IdField::ExternalId, "C-1"),
    ];
    assert!(KLAVIYO.check(&d, &out(&h.build())).is_err());

    // Wrong key → 401 → auth.
    let mut wrong = d.clone();
    wrong
        .credentials
        .insert("api_key".into(), Secret("pk_wrong".into()));
    let resp = send(&client(), &KLAVIYO.build(&wrong, &[out(&e)], T0_MS)).await;
    assert_eq!(resp.status, 401);
    assert_eq!(KLAVIYO.classify(&wrong, 1, &resp), whole(Class::Auth));
    // A metric the simulator refuses → 400 → rejected.
    let bad = full_event("bad-1", "Invalid");
    let resp = send(&client(), &KLAVIYO.build(&d, &[out(&bad)], T0_MS)).await;
    assert_eq!(resp.status, 400);
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["errors"][0]["code"], "invalid");
    assert_eq!(KLAVIYO.classify(&d, 1, &resp), whole(Class::Rejected));
    server.shutdown().await;
}

#[tokio::test]
async fn klaviyo_classification_table() {
    let clock = ManualClock::new(T0_MS);
    let server = start(Platform::Klaviyo, &clock, SimOptions::default()).await;
    let d = klaviyo_dest(&server, &[]);
    let e = full_event("a", "Purchase");
    let req = KLAVIYO.build(&d, &[out(&e)], T0_MS);
    let cases: Vec<(Fault, u16, Class)> = vec![
        (
            throttle(Some(RetryAfter::Seconds(3))),
            429,
            Class::Throttled {
                hold_ms: Some(3_000),
            },
        ),
        (
            throttle(Some(RetryAfter::HttpDate { in_secs: 20 })),
            429,
            Class::Throttled {
                hold_ms: Some(20_000),
            },
        ),
        (throttle(None), 429, Class::Throttled { hold_ms: None }),
        (Fault::Auth, 401, Class::Auth),
        (
            Fault::Code {
                status: 403,
                code: 1,
            },
            403,
            Class::Auth,
        ),
        (Fault::Invalid, 400, Class::Rejected),
        (
            Fault::Code {
                status: 409,
                code: 1,
            },
            409,
            Class::Rejected,
        ),
        (Fault::Transient, 503, Class::Retryable),
        (Fault::ServerError(500), 500, Class::Retryable),
        (Fault::ServerError(408), 408, Class::Retryable),
        (Fault::Redirect, 307, Class::Retryable),
        (Fault::ServerError(200), 200, Class::Delivered),
    ];
    for (fault, status, class) in cases {
        let (resp, v) = verdict_under(&server, &KLAVIYO, &d, &req, 1, Some(fault.clone())).await;
        assert_eq!(resp.status, status, "{fault:?}");
        assert_eq!(v, whole(class), "{fault:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn klaviyo_burst_limit_answers_429_with_retry_after() {
    // 2026-11-02T12:00:00.400Z: 600 ms left in the second.
    let clock = ManualClock::new(T0_MS + 400);
    let server = start(Platform::Klaviyo, &clock, SimOptions::default()).await;
    let d = klaviyo_dest(&server, &[]);
    let e = full_event("a", "Purchase");
    let req = KLAVIYO.build(&d, &[out(&e)], T0_MS);
    let c = client();
    for i in 0..350 {
        let resp = send(&c, &req).await;
        assert_eq!(resp.status, 202, "request {i}");
    }
    let resp = send(&c, &req).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(
        KLAVIYO.classify(&d, 1, &resp),
        whole(Class::Throttled {
            hold_ms: Some(1_000)
        })
    );
    clock.advance_ms(600);
    assert_eq!(send(&c, &req).await.status, 202);
    server.shutdown().await;
}

// ---------------------------------------------------------------- simulator mechanics

#[tokio::test]
async fn scripted_faults_are_deterministic_and_settable_at_runtime() {
    let clock = ManualClock::new(T0_MS);
    let c: SharedClock = clock.clone();
    let server = sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        c,
        FaultScript::every(3, Fault::Transient).with(sim::Rule::Range {
            from: 4,
            to: 5,
            fault: Fault::Auth,
        }),
    )
    .await
    .unwrap();
    let d = dest(
        Platform::Webhook,
        &server.url(),
        &[],
        &[("signing_secret", SECRET)],
        &[],
    );
    let e = full_event("same-id", "Purchase");
    let req = WEBHOOK.build(&d, &[out(&e)], T0_MS);
    let http = client();
    let mut statuses = vec![];
    for _ in 0..7 {
        statuses.push(send(&http, &req).await.status);
    }
    assert_eq!(statuses, [200, 200, 503, 401, 401, 503, 200]);
    assert_eq!(server.count_event("same-id"), 7);
    assert_eq!(server.accepted_event("same-id"), 3);
    // From now on: gone.
    server.set_script(FaultScript::always(Fault::Gone));
    assert_eq!(send(&http, &req).await.status, 410);
    assert_eq!(send(&http, &req).await.status, 410);
    server.set_script(FaultScript::none());
    assert_eq!(send(&http, &req).await.status, 200);
    let seqs: Vec<u64> = server.received().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test]
async fn latency_and_timeout_follow_the_injected_clock() {
    let clock = ManualClock::new(T0_MS);
    let server = start(Platform::Tiktok, &clock, SimOptions::default()).await;
    let d = tiktok_dest(&server, TT_TOKEN, &[]);
    let e = full_event("a", "Purchase");
    let req = TIKTOK.build(&d, &[out(&e)], T0_MS);

    server.set_script(FaultScript::always(Fault::Latency(5_000)));
    let r2 = req.clone();
    let t = tokio::spawn(async move { send(&client(), &r2).await });
    while server.count() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!t.is_finished(), "answered before the clock moved");
    clock.advance_ms(4_999);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!t.is_finished(), "answered before the latency elapsed");
    clock.advance_ms(1);
    let resp = t.await.unwrap();
    assert_eq!(TIKTOK.classify(&d, 1, &resp), whole(Class::Delivered));
    assert_eq!(resp.header("date"), Some("Mon, 02 Nov 2026 12:00:05 GMT"));

    // Timeout: a client with a deadline gives up; the server holds until the clock
    // passes the hold, then answers 504.
    server.set_script(FaultScript::always(Fault::Timeout));
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = quick
        .post(&req.url)
        .headers(
            req.headers
                .iter()
                .map(|(k, v)| {
                    (
                        reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        v.parse().unwrap(),
                    )
                })
                .collect(),
        )
        .body(req.body.clone())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    let r2 = req.clone();
    let t = tokio::spawn(async move { send(&client(), &r2).await });
    while server.count() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    clock.advance_ms(sim::TIMEOUT_HOLD_MS - 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!t.is_finished());
    clock.advance_ms(1);
    let resp = t.await.unwrap();
    assert_eq!(resp.status, 504);
    assert_eq!(TIKTOK.classify(&d, 1, &resp), whole(Class::Retryable));
    // Shutdown releases nothing pending and returns.
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .unwrap();
}

#[test]
fn every_platform_has_its_adapter() {
    for p in Platform::ALL {
        let a = platforms::adapter(p).unwrap_or_else(|| panic!("no adapter for {}", p.name()));
        assert_eq!(a.platform(), p);
    }
}
