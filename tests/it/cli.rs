//! The operator's CLI against a running daemon (SPEC §9): status table and suggestion
//! lines, pause/resume by id and by platform with exit codes, and `audit verify|export`
//! whose output an independent re-computation of the chain accepts.

use std::process::Command;

use crate::common::*;
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
    sluice_cli(url, ADMIN, args).await
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
        "Destination  Merchant    Platform  State   Queue  Lag  DLQ  Error %  Last Checked"
    );
    assert_eq!(
        lines[1],
        "hooks_a      northfield  webhook   active  0      0s   0    -        -"
    );
    assert_eq!(
        lines[3],
        "Error % - for hooks_a: too few attempts yet to evaluate"
    );
    assert_eq!(lines.len(), 5);

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
    // The CLI names the CLI command to use next, not the API route (issue 19).
    assert!(
        out.contains("hooks_a: failed: already_paused (409): destination hooks_a is already paused; resume it with sluice destinations resume --id hooks_a --reason \"…\"\n"),
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
    assert!(
        out.contains("nope: failed: not_found (404): no destination \"nope\": list them with sluice destinations status\n"),
        "{out}"
    );

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
    let (code, _, err) = sluice_cli(&url, "wrong", &["audit", "verify"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("unauthorized (401)"), "{err}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_replay_discard_and_backup_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    // hooks_a rejects every request: its events go to the DLQ.
    let hook = sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::always(sim::Fault::Invalid),
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
    let (s, _) = d
        .post(&batch((0..3).map(|i| format!("dl{i}")), d.clock_ms()))
        .await;
    assert_eq!(s, 202);
    let app = d.daemon.as_ref().unwrap().app.clone();
    for _ in 0..1000 {
        let depth = app
            .intake
            .store
            .read(|txn| {
                let q = txn.open_table(sluice::store::DLQ)?;
                Ok(q.range(("hooks_a", 0u64)..=("hooks_a", u64::MAX))?.count())
            })
            .unwrap();
        if depth == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    let (code, out, err) = sluice(&d.url, &["dlq", "list", "--destination", "hooks_a"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|e| e["event"]["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["dl0", "dl1", "dl2"]);
    assert!(
        lines.iter().all(|e| e["error_class"] == "rejected"),
        "{out}"
    );
    assert_eq!(err.trim(), "3 entries");

    let (code, out, _) = sluice(
        &d.url,
        &["dlq", "replay", "--destination", "hooks_a", "--dry-run"],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        "dry run: would replay 3 entries of hooks_a (0 past the age limit would be skipped)"
    );
    let (code, out, _) = sluice(
        &d.url,
        &["dlq", "discard", "--destination", "hooks_a", "--dry-run"],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "dry run: would discard 3 entries of hooks_a");
    // Nothing moved.
    let (_, out, _) = sluice(&d.url, &["dlq", "list", "--destination", "hooks_a"]).await;
    assert_eq!(out.lines().count(), 3);
    // A window that holds none of them.
    let (code, out, _) = sluice(
        &d.url,
        &[
            "dlq",
            "discard",
            "--destination",
            "hooks_a",
            "--to",
            "2026-01-01T00:00:00Z",
        ],
    )
    .await;
    assert_eq!((code, out.trim()), (0, "discarded 0 entries of hooks_a"));
    let (code, out, _) = sluice(&d.url, &["dlq", "discard", "--destination", "hooks_a"]).await;
    assert_eq!((code, out.trim()), (0, "discarded 3 entries of hooks_a"));
    let (_, out, err) = sluice(&d.url, &["dlq", "list", "--destination", "hooks_a"]).await;
    assert_eq!((out.as_str(), err.trim()), ("", "0 entries"));
    // Bad input: a clear error and exit 1; a usage error exits 2.
    let (code, _, err) = sluice(
        &d.url,
        &[
            "dlq",
            "list",
            "--destination",
            "hooks_a",
            "--from",
            "yesterday",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("from must be an RFC 3339 time"), "{err}");
    let (code, _, _) = sluice(&d.url, &["dlq", "list"]).await;
    assert_eq!(code, 2);

    let (code, out, err) = sluice(&d.url, &["backup", "--name", "cli-backup"]).await;
    assert_eq!(code, 0, "{err}");
    let path = dir.path().join("backups").join("cli-backup");
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        out.trim(),
        format!("backup written: {} ({size} bytes)", path.display())
    );
    let (code, _, err) = sluice(&d.url, &["backup", "--name", "cli-backup"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("exists (409)"), "{err}");
    d.shutdown().await;
}

/// One rule for unknown ids (issue 19): an unknown destination, workspace or platform
/// is an error naming it, exit 1; a known platform with no destination is a different
/// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_errors_through_the_cli() {
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
    for args in [
        &["dlq", "list", "--destination", "nope"][..],
        &["dlq", "discard", "--destination", "nope"][..],
        &["dlq", "discard", "--destination", "nope", "--dry-run"][..],
        &["dlq", "replay", "--destination", "nope"][..],
    ] {
        let (code, out, err) = sluice(&url, args).await;
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.starts_with("error: not_found (404): no destination \"nope\""),
            "{args:?}: {err}"
        );
    }
    let (code, out, err) = sluice(&url, &["destinations", "status", "--workspace", "nope"]).await;
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains("not_found (404): no workspace \"nope\" is configured"),
        "{err}"
    );
    let (code, out, err) = sluice(
        &url,
        &[
            "destinations",
            "pause",
            "--platform",
            "metaa",
            "--reason",
            "x",
        ],
    )
    .await;
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.starts_with("error: unknown platform metaa (known: webhook, meta, tiktok, "),
        "{err}"
    );
    let (code, out, err) = sluice(
        &url,
        &[
            "destinations",
            "resume",
            "--platform",
            "meta",
            "--reason",
            "x",
        ],
    )
    .await;
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(err.trim(), "error: no destination matches platform meta");
    d.shutdown().await;
}

/// Top-level help names every client command; `dlq list` takes no --dry-run (issue 19).
#[tokio::test]
async fn help_lists_client_commands_and_dlq_list_refuses_dry_run() {
    let (code, out, _) = sluice("http://127.0.0.1:9", &["--help"]).await;
    assert_eq!(code, 0);
    for c in [
        "destinations",
        "audit",
        "dlq",
        "events",
        "report",
        "backup",
        "reload",
    ] {
        assert!(
            out.contains(&format!("  {c} ")),
            "{c} missing from the commands: {out}"
        );
    }
    assert!(
        out.contains("Client commands (destinations, audit, dlq, events, report, backup, reload)"),
        "{out}"
    );
    let (code, _, err) = sluice(
        "http://127.0.0.1:9",
        &["dlq", "list", "--destination", "x", "--dry-run"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--dry-run"), "{err}");
}

/// `status --live` against a daemon that does not answer keeps going and says since
/// when (issue 19); it used to exit 1 at the first failed refresh.
#[tokio::test]
async fn status_live_keeps_going_while_the_daemon_is_unreachable() {
    use std::io::BufRead;
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["destinations", "status", "--live", "--url", &url])
        .args(["--config", "/nonexistent/sluice.toml"])
        .env("SLUICE_API_KEY", ADMIN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("unreachable since");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    let text = seen.join("\n");
    assert!(text.contains("no successful refresh yet"), "{text}");
    let last = seen.last().unwrap();
    assert!(
        last.contains("sluice unreachable since ")
            && last.contains(", retrying every 2 s: cannot reach sluice at"),
        "{text}"
    );
    assert!(still_running, "{text}");
}

/// `sluice backup` without --name picks a timestamped name; the store and the backup
/// are 0600 / 0640 even under a permissive umask (issue 19).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_default_name_and_private_file_modes() {
    use std::os::unix::fs::PermissionsExt;
    // nextest runs each test in its own process: the umask is this test's alone.
    rustix::process::umask(rustix::fs::Mode::empty());
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let d = TestDaemon::start_with(
        dir.path(),
        &config(dir.path(), "http://127.0.0.1:9"),
        clock.clone(),
        None,
    )
    .await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("sluice.redb")), 0o600);
    let (code, out, err) = sluice(&d.url, &["backup"]).await;
    assert_eq!(code, 0, "{err}");
    let path = out
        .trim()
        .strip_prefix("backup written: ")
        .and_then(|r| r.split(" (").next())
        .unwrap()
        .to_string();
    let name = std::path::Path::new(&path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    // sluice-YYYYMMDDTHHMMSSZ.redb
    assert_eq!(name.len(), "sluice-20261204T161500Z.redb".len(), "{name}");
    assert!(
        name.starts_with("sluice-20") && name.ends_with("Z.redb"),
        "{name}"
    );
    assert_eq!(mode(std::path::Path::new(&path)), 0o640);
    d.shutdown().await;
}

/// Offline checks (issue 19): `audit verify --file` checks an export without a daemon,
/// `backup verify FILE` opens a backup read-only and checks it opens, its schema and its
/// audit chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_and_backup_verify_offline() {
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
    for action in ["pause", "resume"] {
        let (code, _, err) = sluice(
            &d.url,
            &[
                "destinations",
                action,
                "--id",
                "hooks_a",
                "--reason",
                "drill",
            ],
        )
        .await;
        assert_eq!(code, 0, "{err}");
    }
    let (_, online, _) = sluice(&d.url, &["audit", "verify"]).await;
    let (code, export, _) = sluice(&d.url, &["audit", "export"]).await;
    assert_eq!(code, 0);
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &export).unwrap();
    let (code, backup_out, err) = sluice(&d.url, &["backup", "--name", "b1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(backup_out.starts_with("backup written: "), "{backup_out}");
    d.shutdown().await;

    let offline = |args: Vec<String>| async move {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(args);
        run_cmd(cmd).await
    };
    let path = |p: &std::path::Path| p.display().to_string();
    // The daemon is gone: the export checks out as the online verify said.
    let (code, out, err) = offline(vec![
        "audit".into(),
        "verify".into(),
        "--file".into(),
        path(&file),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, online);
    assert!(out.starts_with("audit chain ok: 2 events, head "), "{out}");
    // One edited note breaks it at that record.
    let first: serde_json::Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    std::fs::write(&file, export.replacen("\"drill\"", "\"drilled\"", 1)).unwrap();
    let (code, out, _) = offline(vec![
        "audit".into(),
        "verify".into(),
        "--file".into(),
        path(&file),
    ])
    .await;
    assert_eq!(code, 1);
    assert_eq!(
        out.trim(),
        format!(
            "audit chain BROKEN at {}: hash mismatch (2 events in the file)",
            first["event_id"].as_str().unwrap()
        )
    );
    // The backup opens read-only, with its schema and the same chain.
    let b1 = dir.path().join("backups").join("b1");
    let (code, out, err) = offline(vec!["backup".into(), "verify".into(), path(&b1)]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("{}: opens, schema 3", b1.display()));
    assert_eq!(lines[1], online.trim());
    // Not a store: exit 1 with why.
    let (code, _, err) = offline(vec!["backup".into(), "verify".into(), path(&file)]).await;
    assert_eq!(code, 1);
    assert!(err.contains("does not open as a sluice store"), "{err}");
}
