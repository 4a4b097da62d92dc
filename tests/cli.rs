//! The operator's CLI against a running daemon (SPEC §9): status table and suggestion
//! lines, pause/resume by id and by platform with exit codes, and `audit verify|export`
//! whose output an independent re-computation of the chain accepts.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;
use sluice::clock::ManualClock;
use sluice::config::Platform;
use sluice::sim::{self, FaultScript};

const ADMIN: &str = "admin_cli_token";

fn config(dir: &std::path::Path, url: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"

[storage]
path = "{store}"

[[workspaces]]
id = "northfield"
plan = "enterprise"
ingest_keys = ["{KEY}"]

[[destinations]]
id = "hooks_a"
workspace = "northfield"
platform = "webhook"
endpoint = "{url}/a"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}

[[destinations]]
id = "hooks_b"
workspace = "northfield"
platform = "webhook"
endpoint = "{url}/b"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
"#,
        store = dir.join("sluice.redb").display()
    )
}

async fn sluice(url: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .args(["--url", url, "--config", "/nonexistent/sluice.toml"])
        .env("SLUICE_API_KEY", ADMIN);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pause_resume_and_audit_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::none(),
    )
    .await
    .unwrap();
    let d = TestDaemon::start_with(
        dir.path(),
        &config(dir.path(), &hook.url()),
        clock.clone(),
        None,
    )
    .await;
    let url = d.url.clone();

    let (code, out, _) = sluice(&url, &["destinations", "status"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "Destination  Merchant    Platform  State   Error %  Last Checked"
    );
    assert_eq!(
        lines[1],
        "hooks_a      northfield  webhook   active  -        -"
    );
    assert_eq!(lines.len(), 3);

    // Pause one by id, then both by platform: the second already paused one fails → exit 1.
    let (code, out, _) = sluice(
        &url,
        &[
            "destinations",
            "pause",
            "--id",
            "hooks_a",
            "--reason",
            "maintenance window",
        ],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "hooks_a: paused\n"));
    let (code, out, _) = sluice(
        &url,
        &[
            "destinations",
            "pause",
            "--platform",
            "webhook",
            "--workspace",
            "northfield",
            "--reason",
            "all of them",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        out.contains("hooks_a: failed: already_paused (409)"),
        "{out}"
    );
    assert!(out.contains("hooks_b: paused"), "{out}");
    let (code, out, _) = sluice(&url, &["destinations", "status"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(
        "suggestion: webhook paused at 2026-11-02T12:00:00.000Z (manual). No auto-clear; resume manually: sluice destinations resume --id hooks_a --reason \"…\""
    ), "{out}");
    let (code, out, _) = sluice(
        &url,
        &[
            "destinations",
            "resume",
            "--platform",
            "webhook",
            "--reason",
            "done",
        ],
    )
    .await;
    assert_eq!(
        (code, out.as_str()),
        (0, "hooks_a: active\nhooks_b: active\n")
    );
    // Usage errors exit 2; an unknown destination exits 1.
    let (code, _, _) = sluice(&url, &["destinations", "resume", "--reason", "x"]).await;
    assert_eq!(code, 2);
    let (code, out, _) = sluice(
        &url,
        &["destinations", "resume", "--id", "nope", "--reason", "x"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(out.contains("nope: failed: not_found (404)"), "{out}");

    // The chain: four state changes, actor cli, verified and re-computed independently.
    let (code, out, _) = sluice(&url, &["audit", "verify"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("audit chain ok: 4 events, head "), "{out}");
    let (code, out, _) = sluice(&url, &["audit", "export"]).await;
    assert_eq!(code, 0);
    let (records, head) = recompute_export(&out);
    assert_eq!(records.len(), 4);
    assert!(out.trim_end().ends_with('}'));
    assert!(records.iter().all(|r| r["actor"] == "cli"));
    assert_eq!(records[0]["event_type"], "destination_pause");
    assert_eq!(
        records[0]["details"],
        json!({"destination_id": "hooks_a", "merchant_id": "northfield", "platform": "webhook", "reason": "ops_intervention", "error_rate": null, "note": "maintenance window"})
    );
    assert_eq!(records[3]["event_type"], "destination_resume");
    let verify = d
        .http
        .get(format!("{url}/v1/audit/verify"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(verify, json!({"ok": true, "length": 4, "head": head}));

    // A wrong token: exit 1 with the API's message.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["audit", "verify", "--url", &url, "--config", "/nonexistent"])
        .env("SLUICE_API_KEY", "wrong");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized (401)"));
    d.shutdown().await;
}
