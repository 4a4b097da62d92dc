//! `sluice drill`: the built-in BFCM scenario passes every verdict line (run in-process
//! with the clock unpaced: as fast as the machine settles each step); a policy whose
//! threshold is above the injected error rate fails the outage line and the command
//! exits 1; `--config config.example.toml` rehearses the example config.

use std::process::Command;

use sluice::drill::scenario::{BUILTIN_CONFIG, Scenario};
use sluice::drill::verdict;

/// As fast as the machine goes: the driver still waits for each step's traffic and
/// in-flight requests, so nothing times out for the machine's sake.
const FAST: &str = "1000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_scenario_passes_every_check() {
    let d = sluice::drill::run(Scenario::builtin(), BUILTIN_CONFIG, 1_000_000.0)
        .await
        .unwrap();
    let j = verdict::judge(&d);
    let text = verdict::render(&j);
    assert!(j.lines.iter().all(|l| l.pass), "{text}");
    assert_eq!(j.lines.len(), 8, "{text}");

    // The traffic is the curve's: the same events every run, all accepted.
    assert_eq!(d.posted.len(), 36_975);
    assert!(d.posted.iter().all(|p| p.accepted));
    let purchase_like = d
        .posted
        .iter()
        .filter(|p| p.name == "Purchase" || p.name == "InitiateCheckout")
        .count() as u64;

    // Every routed event reached its simulator, counted there; Klaviyo gets only its
    // two event names; nothing is left in any DLQ after the replay.
    let f = |id: &str| j.facts.iter().find(|f| f.id == id).unwrap();
    for id in ["meta_shop", "tiktok_shop", "pinterest_shop"] {
        assert_eq!(
            (f(id).routed, f(id).delivered, f(id).lost),
            (36_975, 36_975, 0),
            "{id}"
        );
    }
    assert_eq!(f("klaviyo_shop").routed, purchase_like);
    assert_eq!(f("klaviyo_shop").delivered, purchase_like);
    for f in &j.facts {
        assert_eq!(
            (f.duplicates, f.rate_limited, f.in_dlq),
            (0, 0, 0),
            "{}",
            f.id
        );
    }
    assert!(d.dlq_final.values().all(Vec::is_empty));

    // TikTok paused at the first evaluation of its outage (02:21), probed an hour later
    // and resumed; Pinterest paused for its revoked token, resumed by the operator at
    // the window's end (03:50).
    let changes: Vec<(String, String, String)> = j
        .changes
        .iter()
        .map(|c| {
            (
                sluice::drill::hhmm(c.t_ms),
                c.destination.clone(),
                c.action.clone(),
            )
        })
        .collect();
    assert_eq!(
        changes[0],
        ("02:21".into(), "tiktok_shop".into(), "pause".into())
    );
    assert!(
        changes
            .iter()
            .any(|c| c.1 == "tiktok_shop" && c.2 == "auto_resume")
    );
    assert!(changes.iter().any(|c| c
        == &(
            "03:50".into(),
            "pinterest_shop".into(),
            "manual_resume".into()
        )));
    assert_eq!(changes.iter().filter(|c| c.2 == "pause").count(), 2);
    let pinterest_pause = j
        .changes
        .iter()
        .find(|c| c.destination == "pinterest_shop" && c.action == "pause")
        .unwrap();
    assert_eq!(pinterest_pause.reason, "auth_failed");

    // The replay: Pinterest's rejected rows (its only DLQ entries) went back once each.
    let replay = d.replay.as_ref().unwrap();
    let replayed = &replay.entries["pinterest_shop"];
    assert!(!replayed.is_empty());
    assert_eq!(replay.entries.len(), 1);
    assert_eq!(
        j.lines[6].detail,
        format!(
            "pinterest_shop: {n}/{n} replayed ids delivered, 0 sent twice, 0 already delivered before, times {n}/{n} equal",
            n = replayed.len()
        )
    );

    // What the people on call were told, as the daemon's alert webhook said it: each
    // pause and each resume, the resumes with their backlog and drain estimate; the
    // report lists them.
    let told: Vec<(String, String)> = d
        .alerts
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap_or("").to_string(),
                a["destination_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for want in [
        ("destination_paused", "tiktok_shop"),
        ("destination_resumed", "tiktok_shop"),
        ("destination_paused", "pinterest_shop"),
        ("destination_resumed", "pinterest_shop"),
    ] {
        assert!(
            told.iter().any(|t| (t.0.as_str(), t.1.as_str()) == want),
            "{want:?} not in {told:?}"
        );
    }
    assert!(
        d.alerts
            .iter()
            .filter(|a| a["type"] == "destination_resumed")
            .all(|a| a["figures"]["Backlog"].is_string()
                && a["figures"]["Drain estimate"].is_string()),
        "{:?}",
        d.alerts
    );
    // The morning replay queues yesterday's events again: while it drains, Pinterest
    // is behind by their age, said once and resolved once.
    let behind: Vec<&str> = told
        .iter()
        .filter(|t| t.0.starts_with("falling_behind"))
        .map(|t| t.0.as_str())
        .collect();
    assert!(
        behind.is_empty() || behind == ["falling_behind", "falling_behind_resolved"],
        "{told:?}"
    );
    let html = sluice::drill::report::html(&d, &j);
    assert!(html.contains("Alerts the people on call would have received"));
    assert!(html.contains("destination_paused"));
    assert_eq!(
        sluice::drill::report::summary(&d, &j)["alerts"]
            .as_array()
            .unwrap()
            .len(),
        d.alerts.len()
    );
}

/// A scenario file and a config whose TikTok threshold (0.50) is above the 40% error
/// rate injected for 20 minutes: the outage never pauses it.
fn absorbing_setup(dir: &std::path::Path) -> std::path::PathBuf {
    let config = BUILTIN_CONFIG.replace("threshold = 0.25", "threshold = 0.50");
    assert_ne!(config, BUILTIN_CONFIG);
    std::fs::write(dir.join("sluice.toml"), config).unwrap();
    let scenario = r#"
name = "TikTok outage under a loose threshold"
duration = "1h"
post_every = "5s"
config = "sluice.toml"
[traffic]
curve = [["0m", 120.0]]
mix = { Purchase = 1.0 }
[[faults]]
destination = "tiktok_shop"
kind = "errors"
rate = 0.4
at = "10m"
for = "20m"
"#;
    let path = dir.join("scenario.toml");
    std::fs::write(&path, scenario).unwrap();
    path
}

#[test]
fn a_threshold_above_the_error_rate_fails_the_outage_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = absorbing_setup(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["drill", "--speed", FAST, "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(dir.path().join("report"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "FAIL each injected outage paused its destination within one evaluation interval\n      tiktok_shop Errors at 00:10: NOT paused by 00:11 (threshold 0.50)"
        ),
        "{stdout}"
    );
    // The rest held: 7,200 events, every one delivered everywhere.
    assert!(stdout.contains("PASS no accepted event lost\n      meta_shop 7200/7200 delivered; tiktok_shop 7200/7200 delivered; klaviyo_shop 7200/7200 delivered; pinterest_shop 7200/7200 delivered"), "{stdout}");
    assert!(
        stdout.contains("PASS no destination paused outside a fault\n      0 pause(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 check(s) failed"), "{stdout}");
    // The report files are there, and say the same.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["passed"], false);
    assert_eq!(summary["events_posted"], 7200);
    let html = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(html.contains("FAIL — 1 check(s) failed"));
    // Self-contained: no script, no external asset.
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));
}

#[test]
fn drills_the_example_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["drill", "--speed", FAST, "--config"])
        .arg(format!("{root}/config.example.toml"))
        .arg("--scenario")
        .arg(format!("{root}/scenarios/quick.toml"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // One hour of the quick curve (20/min, 40/min for 10 minutes, 5-minute ramps; the
    // area is 1,500), sampled at each 5 s post with fractions carried: 1,499.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    let n = summary["events_posted"].as_u64().unwrap();
    assert_eq!(n, 1_499);
    assert!(
        stdout.contains(&format!(
            "PASS no accepted event lost\n      demo_webhook {n}/{n} delivered"
        )),
        "{stdout}"
    );
    // The webhook's 2-minute 503 window (00:10-00:12): one event per request, each
    // retried with backoff, so failed attempts outnumber good ones over the example's
    // 5-minute window and the evaluation at 00:15 pauses it (after the fault healed,
    // within one interval of it: not a stray pause); the default 4 h auto-clear probes
    // and resumes it at 04:15.
    let dest = &summary["destinations"][0];
    assert_eq!(dest["id"], "demo_webhook");
    assert_eq!(dest["duplicates"], 0);
    assert!(
        dest["requests"].as_u64().unwrap() > n,
        "the 503s were retried"
    );
    let changes: Vec<(i64, &str, &str)> = summary["state_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["t_ms"].as_i64().unwrap() / 60_000,
                c["action"].as_str().unwrap(),
                c["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (15, "pause", "rate_threshold_exceeded"),
            (255, "auto_resume", "auto_clear_4h_window")
        ]
    );
    assert!(stdout.contains("every check passed"), "{stdout}");
}

/// The rehearsed copy of an operator's config: every secret given by environment or
/// file (none of them set or present here) is replaced, alert channels are gone, the
/// store is the drill's, and the plans, filters and policies are the operator's.
#[tokio::test]
async fn the_rehearsed_config_needs_no_secret_and_pages_no_one() {
    use sluice::drill::setup;
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[server]
admin_token_env = "SLUICE_DRILL_TEST_UNSET_ADMIN"
[storage]
path = "/nonexistent/sluice.redb"
pii_key_env = "SLUICE_DRILL_TEST_UNSET_PII"
[alerts]
slack = { webhook_url_env = "SLUICE_DRILL_TEST_UNSET_SLACK" }
[[workspaces]]
id = "w"
plan = "starter"
ingest_keys_env = "SLUICE_DRILL_TEST_UNSET_KEYS"
[[destinations]]
id = "k"
workspace = "w"
platform = "klaviyo"
credentials = { api_key_env = "SLUICE_DRILL_TEST_UNSET_KLAVIYO" }
policy = { timeout = "15s" }
[[destinations]]
id = "g"
workspace = "w"
platform = "google_ads"
events = ["Purchase"]
params = { customer_id = "1234567890", conversion_action_id = "987654321", token_url = "https://oauth2.googleapis.com/token" }
credentials = { developer_token_file = "/nonexistent/dev", access_token_env = "SLUICE_DRILL_TEST_UNSET_GADS" }
"#;
    let specs = setup::destinations(text).unwrap();
    assert_eq!(specs.len(), 2);
    let sims = setup::start_sims(&specs, sluice::clock::ManualClock::new(0))
        .await
        .unwrap();
    let reh = setup::rewrite(text, dir.path(), &sims, None).unwrap();
    let cfg = &reh.config;
    assert!(cfg.alerts.slack.is_none() && cfg.alerts.webhook.is_none());
    assert_eq!(
        cfg.server.admin_token.as_ref().map(|t| t.expose()),
        Some(reh.admin_token.as_str())
    );
    assert_eq!(cfg.storage.path, dir.path().join("sluice.redb"));
    assert!(cfg.storage.pii_key.is_some());
    assert_eq!(cfg.workspaces[0].plan, sluice::config::Plan::Starter);
    assert_eq!(
        cfg.workspaces[0].ingest_keys[0].expose(),
        reh.ingest_keys["w"]
    );
    for (d, sim) in cfg.destinations.iter().zip(&sims) {
        assert_eq!(d.endpoint.as_deref(), Some(sim.url().as_str()), "{}", d.id);
    }
    assert_eq!(
        cfg.destinations[0].policy.timeout,
        std::time::Duration::from_secs(15)
    );
    assert_eq!(
        cfg.destinations[1].events.as_deref(),
        Some(&["Purchase".to_string()][..])
    );
    assert!(!cfg.destinations[1].params.contains_key("token_url"));
    let written = std::fs::read_to_string(dir.path().join("sluice.toml")).unwrap();
    assert!(
        !written.contains("_env")
            && !written.contains("/nonexistent")
            && !written.contains("[alerts]")
    );
}

/// One destination of every platform: each simulator counts the drill's events by the
/// id it deduplicates on (Microsoft Ads by click id, which the drill makes the event
/// id), so no platform's events go uncounted; what a platform cannot take (Criteo and
/// Snapchat have no `Lead`) is in the DLQ as `unsendable`, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_is_drilled_and_counted() {
    let mut config = BUILTIN_CONFIG.to_string();
    config.push_str(
        r#"
[[destinations]]
id = "gads"
workspace = "shop"
platform = "google_ads"
events = ["Purchase"]
params = { customer_id = "1234567890", conversion_action_id = "987654321" }
credentials = { developer_token = "d", client_id = "c", client_secret = "s", refresh_token = "r" }
[[destinations]]
id = "msads"
workspace = "shop"
platform = "microsoft_ads"
events = ["Purchase"]
params = { customer_id = "123", account_id = "456", conversion_name = "purchase" }
credentials = { developer_token = "d", client_id = "c", client_secret = "s", refresh_token = "r" }
[[destinations]]
id = "li"
workspace = "shop"
platform = "linkedin"
events = ["Lead"]
params = { conversion_rule_id = "12345" }
credentials = { access_token = "t" }
[[destinations]]
id = "tab"
workspace = "shop"
platform = "taboola"
params = { account_id = "1234567" }
[[destinations]]
id = "ob"
workspace = "shop"
platform = "outbrain"
[[destinations]]
id = "cr"
workspace = "shop"
platform = "criteo"
params = { account_id = "12345" }
[[destinations]]
id = "x"
workspace = "shop"
platform = "x"
events = ["Purchase"]
params = { pixel_id = "o8z6j", event_id = "o8z6j-xyz" }
credentials = { access_token = "t" }
[[destinations]]
id = "rd"
workspace = "shop"
platform = "reddit"
params = { ad_account_id = "t2_abc123" }
credentials = { access_token = "t" }
[[destinations]]
id = "sc"
workspace = "shop"
platform = "snapchat"
params = { pixel_id = "abc-123" }
credentials = { access_token = "t" }
[[destinations]]
id = "wh"
workspace = "shop"
platform = "webhook"
endpoint = "http://127.0.0.1:9/hook"
credentials = { signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
"#,
    );
    let scenario = Scenario::parse(
        r#"name = "every platform"
duration = "10m"
post_every = "5s"
[traffic]
curve = [["0m", 60.0]]
mix = { Purchase = 0.5, Lead = 0.5 }
"#,
        None,
    )
    .unwrap();
    let d = sluice::drill::run(scenario, &config, 1_000_000.0)
        .await
        .unwrap();
    let j = verdict::judge(&d);
    assert!(j.lines.iter().all(|l| l.pass), "{}", verdict::render(&j));
    assert_eq!(d.posted.len(), 600);
    let purchases = d.posted.iter().filter(|p| p.name == "Purchase").count() as u64;
    let mut platforms = std::collections::BTreeSet::new();
    for f in &j.facts {
        platforms.insert(f.platform.clone());
        assert_eq!(f.lost, 0, "{}", f.id);
        let (delivered, unsendable) = match f.id.as_str() {
            "gads" | "msads" | "x" => (purchases, 0),
            "li" => (600 - purchases, 0),
            "cr" | "sc" => (purchases, 600 - purchases),
            "klaviyo_shop" => (f.routed, 0),
            _ => (600, 0),
        };
        assert_eq!(f.delivered, delivered, "{}", f.id);
        assert_eq!(
            f.dlq_by_reason.get("unsendable").copied().unwrap_or(0),
            unsendable,
            "{}",
            f.id
        );
    }
    assert_eq!(platforms.len(), 14);
}
