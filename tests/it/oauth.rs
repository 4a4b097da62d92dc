//! OAuth refresh for Google Ads and Microsoft Ads destinations (platforms::oauth), end
//! to end through the daemon and the simulators' token endpoints, on a manual clock:
//! an expired access token is refreshed before the send, a 401 to a cached token
//! refreshes once and resends, and a revoked refresh token pauses the destination with
//! `auth_failed` while its events stay queued.

use std::time::Duration;

use crate::common::{self, KEY, T0_MS, TestDaemon, admin_get};
use serde_json::json;
use sluice::clock::{Clock, ManualClock};
use sluice::config::Platform;
use sluice::sim::{self, Fault, FaultScript, Received, SimOptions, SimServer};

const ADMIN: &str = "admin_test_token";
const RT: &str = "1//refresh-token-good";
const SECRET: &str = "client-secret-xyz";
const DEV: &str = "dev-token-123";

struct Rig {
    d: TestDaemon,
    sim: SimServer,
    clock: std::sync::Arc<ManualClock>,
    platform: Platform,
    _dir: tempfile::TempDir,
}

fn dest_id(p: Platform) -> &'static str {
    match p {
        Platform::GoogleAds => "gads",
        _ => "msads",
    }
}

fn config(dir: &std::path::Path, p: Platform, url: &str, refresh_token: &str) -> String {
    let (platform, params) = match p {
        Platform::GoogleAds => (
            "google_ads",
            r#"{ customer_id = "123-456-7890", conversion_action_id = "555" }"#,
        ),
        _ => (
            "microsoft_ads",
            r#"{ customer_id = "1111", account_id = "2222", conversion_name = "Offline Purchase" }"#,
        ),
    };
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
id = "{id}"
workspace = "glasshouse"
platform = "{platform}"
endpoint = "{url}"
events = ["Purchase"]
params = {params}
credentials = {{ developer_token = "{DEV}", client_id = "client-1.apps.example", client_secret = "{SECRET}", refresh_token = "{refresh_token}" }}
"#,
        store = dir.join("sluice.redb").display(),
        id = dest_id(p),
    )
}

async fn rig(
    p: Platform,
    credential: Option<&str>,
    refresh_token: &str,
    script: FaultScript,
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let sim = sim::start_with(
        p,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        script,
        SimOptions {
            rate_limits: None,
            credential: credential.map(str::to_string),
        },
    )
    .await
    .unwrap();
    let text = config(dir.path(), p, &sim.url(), refresh_token);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    Rig {
        d,
        sim,
        clock,
        platform: p,
        _dir: dir,
    }
}

fn is_token(r: &Received) -> bool {
    r.path.ends_with("/token")
}

fn token_requests(r: &Rig) -> Vec<Received> {
    r.sim.received().into_iter().filter(is_token).collect()
}

fn api_requests(r: &Rig) -> Vec<Received> {
    r.sim
        .received()
        .into_iter()
        .filter(|x| !is_token(x))
        .collect()
}

/// The id the simulator counts an event by: Google's `orderId` (the event id),
/// Microsoft's click id.
fn sim_id(p: Platform, id: &str) -> String {
    match p {
        Platform::GoogleAds => id.to_string(),
        _ => format!("clk-{id}"),
    }
}

async fn post(r: &Rig, id: &str) {
    let mut e = common::event(id, r.clock.now_ms());
    e["user_data"]["msclkid"] = json!(format!("clk-{id}"));
    let (s, v) = r.d.post(&json!({ "events": [e] })).await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(1)));
}

async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits until the simulator answered `n` API requests and nothing is in flight.
async fn api_settled(r: &Rig, n: usize) {
    let app = r.d.daemon.as_ref().unwrap().app.clone();
    let id = dest_id(r.platform);
    until(&format!("{n} API answers"), || {
        api_requests(r).iter().filter(|x| x.status != 0).count() == n
            && app
                .engine
                .snapshot(id)
                .is_some_and(|s| s.requests_in_flight == 0 && s.unsettled == 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
}

fn bearer(r: &Received) -> String {
    r.header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string()
}

fn form(r: &Received) -> Vec<(String, String)> {
    String::from_utf8(r.raw_body.clone())
        .unwrap()
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

async fn expired_token_is_refreshed(p: Platform) {
    let r = rig(p, Some(RT), RT, FaultScript::none()).await;
    let id = dest_id(p);
    post(&r, "e1").await;
    r.clock.advance_ms(1000);
    api_settled(&r, 1).await;
    let tokens = token_requests(&r);
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].status, 200);
    assert_eq!(tokens[0].method, "POST");
    assert_eq!(
        tokens[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let f = form(&tokens[0]);
    assert_eq!(f[0], ("grant_type".into(), "refresh_token".into()));
    assert!(f.contains(&("refresh_token".into(), "1%2F%2Frefresh-token-good".into())));
    assert!(f.contains(&("client_secret".into(), SECRET.into())));
    match p {
        Platform::GoogleAds => assert_eq!(tokens[0].path, "/token"),
        _ => {
            assert_eq!(tokens[0].path, "/common/oauth2/v2.0/token");
            assert!(
                f.iter()
                    .any(|(k, v)| k == "scope" && v.contains("msads.manage"))
            );
        }
    }
    let first = api_requests(&r);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status, 200);
    let old = bearer(&first[0]);
    assert!(old.starts_with("sim-at."));

    // Past the token's life (3,599 s): the next send refreshes first.
    r.clock.advance_ms(3_600_000);
    post(&r, "e2").await;
    r.clock.advance_ms(1000);
    api_settled(&r, 2).await;
    assert_eq!(token_requests(&r).len(), 2, "one refresh per token life");
    let api = api_requests(&r);
    assert_eq!(api.len(), 2);
    assert!(api.iter().all(|x| x.status == 200 && x.accepted));
    assert_ne!(bearer(&api[1]), old);
    for e in ["e1", "e2"] {
        assert_eq!(r.sim.count_event(&sim_id(p, e)), 1, "{e}");
        assert_eq!(r.sim.accepted_event(&sim_id(p, e)), 1, "{e}");
    }
    // The old token is indeed expired at the platform.
    let resp = reqwest::Client::new()
        .post(format!("{}{}", r.sim.url(), api[0].path))
        .bearer_auth(&old)
        .header("developer-token", DEV)
        .header("developertoken", DEV)
        .header("customerid", "1111")
        .header("customeraccountid", "2222")
        .body(api[0].raw_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let h = admin_get(&r.d, &format!("/v1/destinations/{id}")).await;
    assert_eq!(h["state"], "active");
    assert_eq!(h["queue_depth"], 0);
    assert_eq!(h["dlq_depth"], 0);
    r.d.shutdown().await;
    r.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_ads_expired_token_is_refreshed_and_the_event_delivered_once() {
    expired_token_is_refreshed(Platform::GoogleAds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_ads_expired_token_is_refreshed_and_the_event_delivered_once() {
    expired_token_is_refreshed(Platform::MicrosoftAds).await;
}

async fn a_401_refreshes_once_and_resends(p: Platform) {
    // The platform refuses the second API request (a token revoked early, say).
    let r = rig(p, Some(RT), RT, FaultScript::range(2, 2, Fault::Auth)).await;
    post(&r, "e1").await;
    r.clock.advance_ms(1000);
    api_settled(&r, 1).await;
    post(&r, "e2").await;
    r.clock.advance_ms(1000);
    api_settled(&r, 3).await;
    let api = api_requests(&r);
    let statuses: Vec<u16> = api.iter().map(|x| x.status).collect();
    assert_eq!(statuses, [200, 401, 200]);
    assert_eq!(token_requests(&r).len(), 2);
    assert_eq!(bearer(&api[0]), bearer(&api[1]));
    assert_ne!(bearer(&api[1]), bearer(&api[2]));
    // Resent at once, not after a backoff.
    assert_eq!(api[2].at_ms, api[1].at_ms);
    assert_eq!(r.sim.count_event(&sim_id(p, "e2")), 2);
    assert_eq!(r.sim.accepted_event(&sim_id(p, "e2")), 1);
    let h = admin_get(&r.d, &format!("/v1/destinations/{}", dest_id(p))).await;
    assert_eq!(h["state"], "active");
    assert_eq!(h["queue_depth"], 0);
    r.d.shutdown().await;
    r.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_ads_401_to_a_cached_token_refreshes_once_and_resends() {
    a_401_refreshes_once_and_resends(Platform::GoogleAds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_ads_401_to_a_cached_token_refreshes_once_and_resends() {
    a_401_refreshes_once_and_resends(Platform::MicrosoftAds).await;
}

async fn revoked_refresh_token_pauses(p: Platform) {
    let r = rig(p, None, "revoked-refresh-token", FaultScript::none()).await;
    let id = dest_id(p);
    post(&r, "e1").await;
    // Each failed refresh is an auth attempt held for 1 s; the third in a row pauses.
    let mut paused = false;
    for _ in 0..50 {
        r.clock.advance_ms(1000);
        tokio::time::sleep(Duration::from_millis(30)).await;
        if admin_get(&r.d, &format!("/v1/destinations/{id}")).await["paused_reason"]
            == "auth_failed"
        {
            paused = true;
            break;
        }
    }
    assert!(paused, "never paused with auth_failed");
    let tokens = token_requests(&r);
    assert_eq!(tokens.len(), 3);
    for t in &tokens {
        assert_eq!(t.status, 400);
    }
    assert!(api_requests(&r).is_empty(), "nothing sent without a token");
    let h = admin_get(&r.d, &format!("/v1/destinations/{id}")).await;
    assert_eq!(h["state"], "paused");
    assert_eq!(h["queue_depth"], 1, "the event stays queued");
    assert_eq!(h["dlq_depth"], 0);
    let timeline = admin_get(&r.d, &format!("/v1/destinations/{id}/timeline")).await;
    assert_eq!(timeline["events"][0]["reason"], "auth_failed");
    // Nothing more is tried while paused; no secret shows anywhere.
    r.clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(token_requests(&r).len(), 3);
    let all = format!("{}{}", admin_get(&r.d, "/v1/destinations").await, timeline);
    for s in [SECRET, "revoked-refresh-token", DEV] {
        assert!(!all.contains(s), "{s} leaked");
    }
    r.d.shutdown().await;
    r.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_ads_revoked_refresh_token_pauses_with_auth_failed() {
    revoked_refresh_token_pauses(Platform::GoogleAds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_ads_revoked_refresh_token_pauses_with_auth_failed() {
    revoked_refresh_token_pauses(Platform::MicrosoftAds).await;
}
