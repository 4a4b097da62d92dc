//! `POST /v1/admin/reload` (SPEC §7, §8): a good file is applied and audited with its
//! SHA-256; a bad one keeps the running config, answers 422 naming key and line (never
//! the line's text), and is audited too.

use crate::common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ADMIN: &str = "admin_reload_token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_route_applies_or_keeps_and_audits_both() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "").replace(
        "[server]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN}\"\n"),
    );
    let d = TestDaemon::start(dir.path(), &text).await;
    let reload = || async {
        let r = d
            .http
            .post(format!("{}/v1/admin/reload", d.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };

    // A bad file: 422 with key path and line; the running keys keep working.
    let bad = text.replace(
        "plan = \"growth\"",
        "plan = \"growth\"\nlimits = { rate = \"fast\" }",
    );
    std::fs::write(dir.path().join("sluice.toml"), &bad).unwrap();
    let (s, v) = reload().await;
    assert_eq!((s, v["error"].as_str()), (422, Some("invalid_config")));
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("workspaces[0].limits.rate"), "{msg}");
    assert!(msg.contains("line "), "{msg}");
    assert!(
        !msg.contains("fast"),
        "the line's text is never echoed: {msg}"
    );
    assert_eq!(d.post(&event("r1", T0_MS)).await.0, 202);

    // A good file with a rotated key: applied at once.
    let good = text.replace(KEY, "rotated_by_reload");
    std::fs::write(dir.path().join("sluice.toml"), &good).unwrap();
    let (s, v) = reload().await;
    let sha = hex::encode(Sha256::digest(good.as_bytes()));
    assert_eq!((s, v), (200, json!({"ok": true, "config_sha256": sha})));
    assert_eq!(d.post(&event("r2", T0_MS)).await.0, 401);

    // Both outcomes are in the audit chain.
    let audit: Value = d
        .http
        .get(format!("{}/v1/audit?resource=config", d.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_type"], "config_reloaded");
    assert_eq!(events[0]["details"]["config_sha256"], sha.as_str());
    assert_eq!(events[0]["actor"], "api_user");
    assert_eq!(events[1]["event_type"], "config_reload_failed");
    assert!(
        events[1]["details"]["error"]
            .as_str()
            .unwrap()
            .contains("workspaces[0].limits.rate")
    );
    // Unauthenticated: 401.
    let r = d
        .http
        .post(format!("{}/v1/admin/reload", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    d.shutdown().await;
}

/// The real binary's logs (SPEC §10): structured lines on stderr, one per state change,
/// never a secret; `server.log_level` follows a SIGHUP reload (RUST_LOG unset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_structured_lines_and_follow_log_level_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let write = |level: &str| {
        let text = config_text(dir.path(), "", "")
            .replace(
                "[server]\nlisten = \"127.0.0.1:0\"\n",
                &format!(
                    "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{ADMIN}\"\nlog_level = \"{level}\"\n"
                ),
            );
        std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
    };
    write("error");
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--config"])
        .arg(dir.path().join("sluice.toml"))
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    wait_http_ready(&http, &url).await;
    let pause = |reason: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(format!("{url}/v1/destinations/hooks_glasshouse/pause"))
                .bearer_auth(ADMIN)
                .json(&json!({ "reason": reason }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // At error, a manual pause (a warning line) is not logged.
    assert_eq!(pause("quiet").await, 200);
    write("info");
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    for _ in 0..500 {
        if read().contains("log level changed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(read().contains("log level changed"), "{}", read());
    // Resume, then pause again: now one line each.
    let status = http
        .post(format!("{url}/v1/destinations/hooks_glasshouse/resume"))
        .bearer_auth(ADMIN)
        .json(&json!({ "reason": "loud" }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(pause("loud").await, 200);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(code.success());
    let text = read();
    let changes: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("destination=hooks_glasshouse")
                && (l.contains("destination paused") || l.contains("destination resumed"))
        })
        .collect();
    assert_eq!(
        changes.len(),
        2,
        "one line per state change after the reload:\n{text}"
    );
    assert!(
        changes[0].contains(" INFO ") && changes[0].contains("destination resumed"),
        "{}",
        changes[0]
    );
    assert!(
        changes[1].contains(" WARN ") && changes[1].contains("reason=manual"),
        "{}",
        changes[1]
    );
    assert!(!text.contains(ADMIN), "the admin token is never logged");
    assert!(!text.contains("whsec_"), "secrets are never logged");
    // Plain lines (stderr is not a terminal): no colour codes.
    assert!(!text.contains('\u{1b}'), "{text}");
}

/// `sluice reload` (issue 19): exit 1 with the reason for a bad file, which also raises
/// a `config_reload_failed` alert and sets `sluice_config_last_reload_success` to 0;
/// exit 0 for a good one. `sluice_build_info` names the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_reload_command_alerts_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let clock = sluice::clock::ManualClock::new(T0_MS);
    let receiver = sluice::sim::start(
        sluice::config::Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        sluice::sim::FaultScript::none(),
    )
    .await
    .unwrap();
    let text = config_text(
        dir.path(),
        "",
        &format!(
            "[alerts]\nwebhook = {{ url = \"{}/ops\" }}\n",
            receiver.url()
        ),
    )
    .replace(
        "[server]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN}\"\n"),
    );
    std::fs::write(dir.path().join("sluice.toml"), &text).unwrap();
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let cli = |url: String| async move { sluice_cli(&url, ADMIN, &["reload"]).await };
    let m = d.metrics_text().await;
    assert!(
        m.contains(&format!(
            "sluice_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{m}"
    );
    assert!(m.contains("sluice_config_last_reload_success 1\n"), "{m}");

    let bad = text.replace(
        "plan = \"growth\"",
        "plan = \"growth\"\nlimits = { rate = \"fast\" }",
    );
    std::fs::write(dir.path().join("sluice.toml"), &bad).unwrap();
    let (code, out, err) = cli(d.url.clone()).await;
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.starts_with("error: invalid_config (422): "), "{err}");
    assert!(err.contains("workspaces[0].limits.rate"), "{err}");
    for _ in 0..1000 {
        if receiver.count() >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let alert = receiver.received()[0].body.clone();
    assert_eq!(alert["type"], "config_reload_failed", "{alert}");
    assert!(
        alert["error"]
            .as_str()
            .unwrap()
            .contains("workspaces[0].limits.rate"),
        "{alert}"
    );
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .starts_with("sluice config reload failed: the running configuration stays\n"),
        "{alert}"
    );
    let m = d.metrics_text().await;
    assert!(m.contains("sluice_config_last_reload_success 0\n"), "{m}");
    assert!(
        m.contains(&format!(
            "sluice_config_last_reload_timestamp_seconds {}.0\n",
            T0_MS / 1000
        )),
        "{m}"
    );

    std::fs::write(dir.path().join("sluice.toml"), &text).unwrap();
    let (code, out, err) = cli(d.url.clone()).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("config reloaded (sha256 "), "{out}");
    assert!(
        d.metrics_text()
            .await
            .contains("sluice_config_last_reload_success 1\n")
    );
    d.shutdown().await;
}
