//! Test sends (`POST /v1/destinations/{id}/test`, `sluice destinations test`) against the
//! platform simulators under a manual clock: marked as tests where the platform has a
//! test mode (Meta and TikTok `test_event_code`, Google Ads `validateOnly`), refused
//! without `live` where it has none, answered with the platform's verdict, audited, and
//! never counted in the outcome ring, error rate, metrics, DLQ or cursor. Also the
//! validation of destination `params` (unknown keys are errors, as credentials').

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::config::Platform;
use sluice::sim::{self, Fault, FaultScript, SimServer};

const ADMIN: &str = "admin_test_token";
const TEST_CODE: &str = "TEST12345";
/// The Meta access token: never shown.
const META_TOKEN: &str = "EAAB-secret-token";

fn config(dir: &std::path::Path, extra: &str, destinations: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"

[storage]
path = "{store}"
{extra}

[[workspaces]]
id = "glasshouse"
plan = "enterprise"
ingest_keys = ["{KEY}"]
{destinations}
"#,
        store = dir.join("sluice.redb").display()
    )
}

fn meta_dest(url: &str, params: &str, extra: &str) -> String {
    format!(
        r#"
[[destinations]]
id = "meta_gh"
workspace = "glasshouse"
platform = "meta"
endpoint = "{url}"
params = {{ pixel_id = "1234567890"{params} }}
credentials = {{ access_token = "{META_TOKEN}" }}
{extra}
"#
    )
}

fn webhook_dest(url: &str) -> String {
    format!(
        r#"
[[destinations]]
id = "hooks"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{url}/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
"#
    )
}

/// `POST /v1/destinations/{id}/test` with `body` (None: no body), as the CLI when `cli`.
async fn test_send(d: &TestDaemon, id: &str, body: Option<Value>, cli: bool) -> (u16, Value) {
    let mut req = d
        .http
        .post(format!("{}/v1/destinations/{id}/test", d.url))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if cli {
        req = req.header("X-Sluice-Actor", "cli");
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut v: Value = r.json().await.unwrap_or(Value::Null);
    if let Some(ra) = retry_after {
        v["retry_after_header"] = json!(ra);
    }
    (status, v)
}

/// The requests the simulator answered, OAuth token requests left out.
fn api_requests(s: &SimServer) -> Vec<sim::Received> {
    s.received()
        .into_iter()
        .filter(|r| !r.path.ends_with("/token"))
        .collect()
}

/// Every `/metrics` line of this destination.
async fn metrics_of(d: &TestDaemon, dest: &str) -> Vec<String> {
    let text = d.metrics_text().await;
    let needle = format!("destination=\"{dest}\"");
    text.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_test_send_carries_the_test_event_code_and_live_traffic_never_does() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let meta = sim_on(Platform::Meta, &clock, FaultScript::none()).await;
    let text = config(
        dir.path(),
        "",
        &meta_dest(
            &meta.url(),
            &format!(", test_event_code = \"{TEST_CODE}\""),
            "",
        ),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;

    let (s, v) = test_send(&d, "meta_gh", None, false).await;
    assert_eq!(s, 200, "{v}");
    let event_id = format!("sluice-test-{T0_MS}");
    assert_eq!(
        v,
        json!({
            "destination_id": "meta_gh", "platform": "meta", "event_id": event_id,
            "event_name": "Purchase", "live": false, "marked_test": true,
            "test_mode": "test_event_code", "sent_at": "2026-11-02T12:00:00.000Z",
            "status": 200, "class": "delivered", "detail": null,
            "request_id": "SimTrace1", "latency_ms": 0,
            "response_excerpt": r#"{"events_received":1,"fbtrace_id":"SimTrace1","messages":[]}"#,
        })
    );
    let got = api_requests(&meta);
    assert_eq!(got.len(), 1);
    let r = &got[0];
    // Exactly the configured code, at the top level; Meta counts nothing of it.
    assert_eq!(r.body["test_event_code"], TEST_CODE);
    assert_eq!(r.test_mark.as_deref(), Some(TEST_CODE));
    assert!(!r.accepted);
    // The synthetic event: its id, the test email hashed as intake hashes it.
    let ev = &r.body["data"][0];
    assert_eq!(ev["event_id"], event_id.as_str());
    assert_eq!(
        ev["user_data"]["em"][0],
        sha256_hex("sluice-test@example.com").as_str()
    );
    assert_eq!(ev["custom_data"]["sluice_test"], true);
    // The token rode in the URL; the answer never shows it.
    assert!(r.path.contains(META_TOKEN));
    assert!(!v.to_string().contains(META_TOKEN));

    // Live traffic of the same destination is never marked.
    meta.clear_received();
    assert_eq!(d.post(&event("live-1", T0_MS)).await.0, 202);
    clock.advance_ms(1000);
    eventually("live event delivered", || {
        meta.accepted_event("live-1") == 1
    })
    .await;
    let live = api_requests(&meta);
    assert_eq!(live.len(), 1);
    assert!(
        live[0].body.get("test_event_code").is_none(),
        "{}",
        live[0].body
    );
    assert_eq!(live[0].test_mark, None);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_and_google_ads_test_sends_are_marked() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let tt = sim_on(Platform::Tiktok, &clock, FaultScript::none()).await;
    let gads = sim_on(Platform::GoogleAds, &clock, FaultScript::none()).await;
    let dests = format!(
        r#"
[[destinations]]
id = "tt"
workspace = "glasshouse"
platform = "tiktok"
endpoint = "{tt}"
params = {{ pixel_code = "C123", test_event_code = "TT-TEST-7" }}
credentials = {{ access_token = "tt-token" }}

[[destinations]]
id = "gads"
workspace = "glasshouse"
platform = "google_ads"
endpoint = "{gads}"
events = ["Lead"]
params = {{ customer_id = "123-456-7890", conversion_action_id = "555" }}
credentials = {{ developer_token = "dev-token", client_id = "client-1", client_secret = "gads-client-secret", refresh_token = "gads-refresh-token" }}
"#,
        tt = tt.url(),
        gads = gads.url()
    );
    let d = TestDaemon::start_with(
        dir.path(),
        &config(dir.path(), "", &dests),
        clock.clone(),
        None,
    )
    .await;

    let (s, v) = test_send(&d, "tt", Some(json!({})), false).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["class"], &v["status"], &v["request_id"], &v["test_mode"]),
        (
            &json!("delivered"),
            &json!(200),
            &json!("sim0000000000000001"),
            &json!("test_event_code")
        )
    );
    let got = api_requests(&tt);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["test_event_code"], "TT-TEST-7");
    assert_eq!(got[0].test_mark.as_deref(), Some("TT-TEST-7"));
    assert_eq!(got[0].body["data"][0]["event_id"], v["event_id"]);
    assert!(!got[0].accepted);

    // Google Ads: validateOnly, through the OAuth refresh; the event name defaults to
    // the first of the destination's `events`.
    let (s, v) = test_send(&d, "gads", None, false).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["class"], "delivered");
    assert_eq!(v["event_name"], "Lead");
    assert_eq!(v["test_mode"], "validateOnly");
    assert_eq!(v["marked_test"], true);
    let got = api_requests(&gads);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["validateOnly"], true);
    assert_eq!(got[0].body["partialFailure"], true);
    assert_eq!(got[0].test_mark.as_deref(), Some("validateOnly"));
    assert!(!got[0].accepted);
    assert!(
        got[0]
            .header("authorization")
            .unwrap()
            .starts_with("Bearer sim-at.")
    );
    // The simulator's request id (a header for Google Ads).
    assert_eq!(v["request_id"], format!("sim-{:08}", got[0].seq));
    let shown = v.to_string();
    for secret in ["gads-client-secret", "gads-refresh-token", "sim-at."] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // An event name the destination does not receive is refused before anything is sent.
    let (s, e) = test_send(&d, "gads", Some(json!({"event_name": "Purchase"})), false).await;
    assert_eq!((s, &e["error"]), (400, &json!("invalid_request")), "{e}");
    assert_eq!(api_requests(&gads).len(), 1);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_test_sends_report_their_class_and_count_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let meta = sim_on(
        Platform::Meta,
        &clock,
        FaultScript::always(Fault::Transient),
    )
    .await;
    // Evaluated every minute from a single attempt: any counted failure would show.
    let text = config(
        dir.path(),
        "\n[platforms.meta]\nauto_pause = { interval = \"1m\", min_samples = 1 }\n",
        &meta_dest(
            &meta.url(),
            &format!(", test_event_code = \"{TEST_CODE}\""),
            "",
        ),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let app = d.daemon.as_ref().unwrap().app.clone();
    let store = app.intake.store.clone();
    eventually("the worker positioned", || {
        app.engine.snapshot("meta_gh").is_some()
            && store.view().unwrap().cursor("meta_gh").unwrap().is_some()
    })
    .await;
    let cursor_before = store.view().unwrap().cursor("meta_gh").unwrap();
    let metrics_before = metrics_of(&d, "meta_gh").await;
    assert!(!metrics_before.is_empty());

    for _ in 0..3 {
        let (s, v) = test_send(&d, "meta_gh", None, false).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            (&v["class"], &v["status"]),
            (&json!("retryable"), &json!(503))
        );
        assert_eq!(v["request_id"], format!("SimTrace{}", meta.count()));
        assert!(
            v["response_excerpt"]
                .as_str()
                .unwrap()
                .contains("Service temporarily unavailable"),
            "{v}"
        );
    }
    // Three refusals of the credentials in a row would pause a destination (auth_failed).
    meta.set_script(FaultScript::always(Fault::Auth));
    for _ in 0..3 {
        let (s, v) = test_send(&d, "meta_gh", None, false).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!((&v["class"], &v["status"]), (&json!("auth"), &json!(400)));
    }
    assert_eq!(meta.count(), 6);
    // Nothing of it counted: no outcome in the ring, no DLQ entry, the cursor where it
    // was, the destination's metrics unchanged, still active.
    assert!(
        store
            .view()
            .unwrap()
            .outcomes("meta_gh")
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.view().unwrap().cursor("meta_gh").unwrap(),
        cursor_before
    );
    assert_eq!(metrics_of(&d, "meta_gh").await, metrics_before);
    let dlq = admin_get(&d, "/v1/dlq?destination=meta_gh").await;
    assert_eq!(dlq["entries"], json!([]));
    let s = admin_get(&d, "/v1/destinations/meta_gh").await;
    assert_eq!(
        (&s["state"], &s["error_rate"]),
        (&json!("active"), &Value::Null)
    );

    // One live success, then the evaluation at T0 + 1 min: its error rate is that one
    // request's (0), not 6 failures in 7.
    meta.set_script(FaultScript::none());
    assert_eq!(d.post(&event("live-1", T0_MS)).await.0, 202);
    clock.advance_ms(1000);
    eventually("live event delivered", || {
        meta.accepted_event("live-1") == 1
    })
    .await;
    eventually("its outcome recorded", || {
        store.view().unwrap().outcomes("meta_gh").unwrap().len() == 1
    })
    .await;
    clock.advance_ms(59_000);
    for _ in 0..1000 {
        if admin_get(&d, "/v1/destinations/meta_gh").await["last_checked"]
            == "2026-11-02T12:01:00.000Z"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = admin_get(&d, "/v1/destinations/meta_gh").await;
    assert_eq!(s["last_checked"], "2026-11-02T12:01:00.000Z", "{s}");
    assert_eq!(
        (&s["state"], &s["error_rate"]),
        (&json!("active"), &json!(0.0)),
        "{s}"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_test_mode_only_a_live_send_goes_out() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim_on(Platform::Webhook, &clock, FaultScript::none()).await;
    let meta = sim_on(Platform::Meta, &clock, FaultScript::none()).await;
    let dests = format!(
        "{}{}",
        webhook_dest(&hook.url()),
        meta_dest(&meta.url(), "", "")
    );
    let d = TestDaemon::start_with(
        dir.path(),
        &config(dir.path(), "", &dests),
        clock.clone(),
        None,
    )
    .await;

    // A platform without a test mode.
    let (s, e) = test_send(&d, "hooks", None, false).await;
    assert_eq!(
        (s, &e["error"]),
        (400, &json!("test_mode_unavailable")),
        "{e}"
    );
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("platform webhook has no test mode"), "{msg}");
    assert!(
        msg.contains("{\"live\": true}") && msg.contains("--live"),
        "{msg}"
    );
    assert!(msg.contains("real event"), "{msg}");
    let (s, _) = test_send(&d, "hooks", Some(json!({"live": false})), false).await;
    assert_eq!(s, 400);
    assert_eq!(hook.count(), 0);
    let (s, v) = test_send(&d, "hooks", Some(json!({"live": true})), false).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["class"], &v["live"], &v["marked_test"], &v["test_mode"]),
        (
            &json!("delivered"),
            &json!(true),
            &json!(false),
            &Value::Null
        )
    );
    let got = hook.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["event_id"], v["event_id"]);
    assert!(got[0].accepted && got[0].test_mark.is_none());

    // Meta without a test_event_code: the message names the param; live sends unmarked.
    let (s, e) = test_send(&d, "meta_gh", None, false).await;
    assert_eq!(
        (s, &e["error"]),
        (400, &json!("test_mode_unavailable")),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("params.test_event_code"),
        "{e}"
    );
    assert_eq!(meta.count(), 0);
    let (s, v) = test_send(&d, "meta_gh", Some(json!({"live": true})), false).await;
    assert_eq!((s, &v["class"]), (200, &json!("delivered")), "{v}");
    let got = meta.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].body.get("test_event_code").is_none());
    assert!(got[0].accepted);

    // Bodies that are not the contract, unknown and removed destinations.
    let (s, e) = test_send(&d, "hooks", Some(json!({"live": true, "extra": 1})), false).await;
    assert_eq!((s, &e["error"]), (400, &json!("invalid_request")), "{e}");
    let (s, e) = test_send(&d, "nope", None, false).await;
    assert_eq!((s, &e["error"]), (404, &json!("not_found")), "{e}");
    std::fs::write(
        dir.path().join("sluice.toml"),
        config(dir.path(), "", &webhook_dest(&hook.url())),
    )
    .unwrap();
    let (s, v) = admin_post(&d, "/v1/admin/reload", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let (s, e) = test_send(&d, "meta_gh", Some(json!({"live": true})), false).await;
    assert_eq!((s, &e["error"]), (409, &json!("removed")), "{e}");
    assert_eq!(meta.count(), 1);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sends_take_pacing_budget_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let meta = sim_on(Platform::Meta, &clock, FaultScript::none()).await;
    let text = config(
        dir.path(),
        "",
        &meta_dest(
            &meta.url(),
            &format!(", test_event_code = \"{TEST_CODE}\""),
            "policy = { rate = { limit = 1, per = \"1m\" } }",
        ),
    );
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let (s, v) = test_send(&d, "meta_gh", None, true).await;
    assert_eq!((s, &v["class"]), (200, &json!("delivered")), "{v}");
    // The pixel's budget (one event a minute) is spent: the next waits for it.
    let (s, e) = test_send(&d, "meta_gh", None, true).await;
    assert_eq!((s, &e["error"]), (429, &json!("paced")), "{e}");
    assert_eq!(e["retry_after_header"], "60");
    assert_eq!(meta.count(), 1);
    clock.advance_ms(60_000);
    let (s, v2) = test_send(&d, "meta_gh", None, false).await;
    assert_eq!((s, &v2["class"]), (200, &json!("delivered")), "{v2}");

    // Each send that went out is in the audit chain, with who asked and the verdict.
    let audit = admin_get(&d, "/v1/audit?type=destination_test").await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{audit}");
    let (newest, first) = (&events[0], &events[1]);
    assert_eq!(first["resource_id"], "meta_gh");
    assert_eq!(first["actor"], "cli");
    assert_eq!(newest["actor"], "api_user");
    assert_eq!(
        first["details"],
        json!({
            "destination_id": "meta_gh", "merchant_id": "glasshouse", "platform": "meta",
            "event_id": v["event_id"], "event_name": "Purchase", "live": false,
            "test_mode": "test_event_code", "status": 200, "class": "delivered",
            "request_id": "SimTrace1", "latency_ms": 0,
        })
    );
    assert_eq!(newest["details"]["event_id"], v2["event_id"]);
    let verify = admin_get(&d, "/v1/audit/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim_on(Platform::Webhook, &clock, FaultScript::none()).await;
    let d = TestDaemon::start_with(
        dir.path(),
        &config(dir.path(), "", &webhook_dest(&hook.url())),
        clock.clone(),
        None,
    )
    .await;
    let (code, out, err) = sluice_cli(&d.url, &["destinations", "test", "hooks"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("test_mode_unavailable (400)"), "{err}");
    assert!(err.contains("--live"), "{err}");
    let (code, out, err) = sluice_cli(&d.url, &["destinations", "test", "hooks", "--live"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "hooks (webhook): delivered, HTTP 200, request id sim-00000001, 0 ms"
    );
    assert_eq!(
        lines[1],
        format!("event: Purchase sluice-test-{T0_MS}, LIVE: a real event, not marked as a test")
    );
    // A refusal by the platform exits 1.
    hook.set_script(FaultScript::always(Fault::Invalid));
    let (code, out, _) = sluice_cli(&d.url, &["destinations", "test", "hooks", "--live"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("hooks (webhook): rejected, HTTP 400"),
        "{out}"
    );
    let audit = admin_get(&d, "/v1/audit?type=destination_test").await;
    assert_eq!(audit["events"][0]["actor"], "cli");
    assert_eq!(audit["events"][0]["details"]["class"], "rejected");
    d.shutdown().await;
}

async fn sluice_cli(url: &str, args: &[&str]) -> (i32, String, String) {
    crate::common::sluice_cli(url, ADMIN, args).await
}

// ------------------------------------------------------------------ params validation

const PII_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn dest_config(platform: &str, body: &str) -> String {
    format!(
        r#"
[storage]
path = "/tmp/unused.redb"
pii_key_env = "PII"

[[workspaces]]
id = "ws"
plan = "enterprise"
ingest_keys = ["k"]

[[destinations]]
id = "d"
workspace = "ws"
platform = "{platform}"
{body}
"#
    )
}

fn check(text: &str) -> Result<sluice::config::Config, sluice::config::ConfigError> {
    let env = |k: &str| (k == "PII").then(|| PII_KEY.to_string());
    sluice::config::parse(text, None, &env)
}

#[test]
fn every_param_an_adapter_reads_is_accepted_and_no_other() {
    // platform, every param it knows, its credentials and events.
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "webhook",
            &[],
            "endpoint = \"http://127.0.0.1:9/h\"\ncredentials = { signing_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }",
        ),
        (
            "meta",
            &["pixel_id", "test_event_code"],
            "credentials = { access_token = \"t\" }",
        ),
        (
            "tiktok",
            &["pixel_code", "test_event_code"],
            "credentials = { access_token = \"t\" }",
        ),
        ("klaviyo", &[], "credentials = { api_key = \"k\" }"),
        (
            "google_ads",
            &[
                "customer_id",
                "conversion_action_id",
                "login_customer_id",
                "token_url",
            ],
            "events = [\"Purchase\"]\ncredentials = { developer_token = \"d\", access_token = \"t\" }",
        ),
        (
            "linkedin",
            &["conversion_rule_id", "linkedin_version"],
            "events = [\"Lead\"]\ncredentials = { access_token = \"t\" }",
        ),
        (
            "pinterest",
            &["ad_account_id"],
            "credentials = { access_token = \"t\" }",
        ),
        (
            "snapchat",
            &["pixel_id"],
            "credentials = { access_token = \"t\" }",
        ),
        (
            "reddit",
            &["ad_account_id"],
            "credentials = { access_token = \"t\" }",
        ),
        (
            "x",
            &["pixel_id", "event_id"],
            "events = [\"Purchase\"]\ncredentials = { access_token = \"t\" }",
        ),
        (
            "microsoft_ads",
            &["customer_id", "account_id", "conversion_name", "token_url"],
            "events = [\"Purchase\"]\ncredentials = { developer_token = \"d\", access_token = \"t\" }",
        ),
        ("taboola", &["account_id"], ""),
        ("outbrain", &[], ""),
        ("criteo", &["account_id", "site_type"], ""),
    ];
    for (platform, params, rest) in cases {
        let all: Vec<String> = params.iter().map(|p| format!("{p} = \"1\"")).collect();
        let with = |extra: &str| {
            let mut list = all.clone();
            if !extra.is_empty() {
                list.push(extra.to_string());
            }
            dest_config(
                platform,
                &format!("{rest}\nparams = {{ {} }}", list.join(", ")),
            )
        };
        let c = check(&with("")).unwrap_or_else(|e| panic!("{platform}: {e}"));
        assert_eq!(c.destinations[0].params.len(), params.len(), "{platform}");
        // An unknown key is an error at its path, with its line, naming what is known.
        let text = with("foo = \"x\"");
        let e = check(&text).expect_err(platform);
        assert_eq!(
            e.key_path.as_deref(),
            Some("destinations[0].params.foo"),
            "{platform}: {e}"
        );
        assert_eq!(
            e.line,
            text.lines()
                .position(|l| l.starts_with("params ="))
                .map(|i| i + 1),
            "{platform}: {e}"
        );
        assert!(e.message.contains("unknown param `foo`"), "{platform}: {e}");
        if params.is_empty() {
            assert!(e.message.contains("takes no params"), "{platform}: {e}");
        } else {
            assert!(e.message.contains(&params.join(", ")), "{platform}: {e}");
        }
    }
    // test_event_code belongs to Meta and TikTok only.
    let e = check(&dest_config(
        "klaviyo",
        "credentials = { api_key = \"k\" }\nparams = { test_event_code = \"TEST1\" }",
    ))
    .unwrap_err();
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].params.test_event_code"),
        "{e}"
    );
    let e = check(&dest_config(
        "pinterest",
        "credentials = { access_token = \"t\" }\nparams = { ad_account_id = \"1\", test_event_code = \"TEST1\" }",
    ))
    .unwrap_err();
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].params.test_event_code"),
        "{e}"
    );
    // A param named by a rate scope is the destination's own budget key: allowed.
    let c = check(&dest_config(
        "meta",
        "credentials = { access_token = \"t\" }\nparams = { pixel_id = \"1\", business = \"acme\" }\npolicy = { rate = { limit = 10, per = \"1m\", scope = \"business\" } }",
    ))
    .unwrap();
    assert_eq!(c.destinations[0].params["business"], "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_params_fail_config_check_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let meta = sim_on(Platform::Meta, &clock, FaultScript::none()).await;
    let good = config(dir.path(), "", &meta_dest(&meta.url(), "", ""));
    let d = TestDaemon::start_with(dir.path(), &good, clock.clone(), None).await;
    let path = dir.path().join("sluice.toml");
    let bad = config(
        dir.path(),
        "",
        &meta_dest(&meta.url(), ", test_event_cod = \"TEST1\"", ""),
    );
    std::fs::write(&path, &bad).unwrap();
    // Reload refuses it and keeps the running config.
    let (s, e) = admin_post(&d, "/v1/admin/reload", json!({})).await;
    assert_eq!((s, &e["error"]), (422, &json!("invalid_config")), "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("destinations[0].params.test_event_cod (line"),
        "{msg}"
    );
    assert!(msg.contains("unknown param `test_event_cod`"), "{msg}");
    // `config check` (and `serve`, which loads the same way) refuses it too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("destinations[0].params.test_event_cod"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("destinations[0].params.test_event_cod"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.shutdown().await;
}
