//! Destination `params` are validated like credentials: every platform declares the
//! params it knows, and any other key is a config error at its path, on `serve`,
//! `config check` and reload.

use std::sync::Arc;

use crate::common::*;
use serde_json::json;
use sluice::clock::ManualClock;
use sluice::config::Platform;
use sluice::sim::{self, FaultScript, SimServer};

const ADMIN: &str = "admin_test_token";
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

async fn sim(p: Platform, clock: &Arc<ManualClock>, script: FaultScript) -> SimServer {
    sim::start(p, "127.0.0.1:0".parse().unwrap(), clock.clone(), script)
        .await
        .unwrap()
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
    let meta = sim(Platform::Meta, &clock, FaultScript::none()).await;
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
