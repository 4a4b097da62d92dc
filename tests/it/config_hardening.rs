//! Issue 14, the backup and configuration findings of the adversarial run: concurrent
//! backups with one name; config and secret files that are not regular files (a FIFO,
//! `/dev/zero`) or are too large; an empty file, or a reload that would drop every
//! workspace or the admin API; an ingest key equal to the admin token.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};
use sluice::config::{ConfigError, parse};

const ADMIN: &str = "admin_hardening_token";

fn no_env(_: &str) -> Option<String> {
    None
}

/// `config_text` with an admin token.
fn with_admin(dir: &Path) -> String {
    config_text(dir, "", "").replace(
        "[server]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN}\"\n"),
    )
}

/// Runs `cmd` with stdout and stderr to files; kills it after `limit`. Returns the exit
/// code (None: killed at the limit), stdout, stderr and the time it took.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<i32>, String, String, Duration) {
    let out = tempfile::tempdir().unwrap();
    let (o, e) = (out.path().join("out"), out.path().join("err"));
    cmd.stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (code, read(&o), read(&e), started.elapsed())
}

fn config_check(path: &Path) -> (Option<i32>, String, String, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["config", "check"])
        .arg(path)
        .env_remove("RUST_LOG");
    run_bounded(cmd, Duration::from_secs(10))
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Parses `text` (from `origin`) on a thread; a parse still blocked after 5 s fails
/// the test (after opening `fifo` for writing, which lets the blocked read end).
fn parse_bounded(text: &str, origin: &Path, fifo: &Path) -> Result<(), ConfigError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (text, origin) = (text.to_string(), origin.to_path_buf());
    std::thread::spawn(move || {
        let _ = tx.send(parse(&text, Some(&origin), &no_env).map(|_| ()));
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(r) => r,
        Err(_) => {
            let _ = std::fs::OpenOptions::new().write(true).open(fifo);
            panic!("parsing a config whose secret file is a FIFO hangs");
        }
    }
}

// ------------------------------------------------------------------ 1. backups

/// Eight backups with one name at once: exactly one is written, the others answer
/// `409 exists`; the folder holds that one file and no partial file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_backups_with_one_name_write_one_file_and_answer_409() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &with_admin(dir.path())).await;
    let events: Vec<String> = (0..200).map(|i| format!("b{i}")).collect();
    assert_eq!(d.post(&batch(events, T0_MS)).await.0, 202);
    for round in 0..3 {
        let name = format!("same-{round}.redb");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (http, url, name) = (d.http.clone(), d.url.clone(), name.clone());
                tokio::spawn(async move {
                    let r = http
                        .post(format!("{url}/v1/admin/backup"))
                        .bearer_auth(ADMIN)
                        .json(&json!({ "name": name }))
                        .send()
                        .await
                        .unwrap();
                    let s = r.status().as_u16();
                    (s, r.json::<Value>().await.unwrap_or(Value::Null))
                })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        let ok = answers.iter().filter(|(s, _)| *s == 200).count();
        let exists = answers
            .iter()
            .filter(|(s, v)| *s == 409 && v["error"] == "exists")
            .count();
        assert_eq!((ok, exists), (1, 7), "round {round}: {answers:?}");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("backups"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.contains("partial")),
            "round {round}: a partial file is left: {names:?}"
        );
        assert_eq!(names.iter().filter(|n| **n == name).count(), 1, "{names:?}");
        assert_eq!(names.len(), round + 1, "{names:?}");
    }
    d.shutdown().await;
}

// ------------------------------------------------------------------ 2. file kinds, sizes

#[test]
fn config_check_of_dev_zero_exits_at_once() {
    let (code, out, err, took) = config_check(Path::new("/dev/zero"));
    assert_eq!(
        code,
        Some(1),
        "killed after {took:?}; stdout: {out}\nstderr: {err}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(err.contains("/dev/zero"), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn config_check_of_a_fifo_or_a_directory_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("sluice.toml");
    mkfifo(&fifo);
    let (code, _, err, took) = config_check(&fifo);
    assert_eq!(code, Some(1), "killed after {took:?}: {err}");
    assert!(err.contains("not a regular file"), "{err}");
    let (code, _, err, _) = config_check(dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn a_secret_file_that_is_a_fifo_or_a_device_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("admin.fifo");
    mkfifo(&fifo);
    let origin = dir.path().join("sluice.toml");
    let text = with_admin(dir.path()).replace(
        &format!("admin_token = \"{ADMIN}\""),
        "admin_token_file = \"admin.fifo\"",
    );
    let e = parse_bounded(&text, &origin, &fifo).expect_err("a FIFO");
    assert_eq!(
        e.key_path.as_deref(),
        Some("server.admin_token_file"),
        "{e}"
    );
    assert!(e.message.contains(&fifo.display().to_string()), "{e}");
    assert!(e.message.contains("not a regular file"), "{e}");

    let text = with_admin(dir.path()).replace(
        "ingest_keys = [\"other_key\"]",
        "ingest_keys_file = \"/dev/zero\"",
    );
    let e = parse_bounded(&text, &origin, &fifo).expect_err("a device");
    assert_eq!(
        e.key_path.as_deref(),
        Some("workspaces[1].ingest_keys_file"),
        "{e}"
    );
    assert!(e.message.contains("/dev/zero"), "{e}");

    // The real binary, on the FIFO: an error, no hang.
    std::fs::write(
        &origin,
        with_admin(dir.path()).replace(
            &format!("admin_token = \"{ADMIN}\""),
            "admin_token_file = \"admin.fifo\"",
        ),
    )
    .unwrap();
    let (code, _, err, took) = config_check(&origin);
    assert_eq!(code, Some(1), "killed after {took:?}: {err}");
    assert!(err.contains("server.admin_token_file"), "{err}");
}

#[test]
fn oversized_config_and_secret_files_are_errors_and_symlinks_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    // A config file over 4 MiB (valid TOML: comments).
    let big = dir.path().join("big.toml");
    let mut text = with_admin(dir.path());
    let line = format!("# {}\n", "x".repeat(1021));
    while text.len() <= 4 << 20 {
        text.push_str(&line);
    }
    std::fs::write(&big, &text).unwrap();
    let e = sluice::config::load(&big).expect_err("too large");
    assert!(e.message.contains(&big.display().to_string()), "{e}");
    assert!(e.message.contains("4 MiB"), "{e}");
    let (code, _, err, _) = config_check(&big);
    assert_eq!(code, Some(1), "{err}");
    // Just under the cap: fine.
    let mut fits = with_admin(dir.path());
    while fits.len() + line.len() <= 4 << 20 {
        fits.push_str(&line);
    }
    std::fs::write(&big, &fits).unwrap();
    sluice::config::load(&big).expect("a file at the cap loads");

    // A secret file over 64 KiB.
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "t".repeat((64 << 10) + 1)).unwrap();
    let text = with_admin(dir.path()).replace(
        &format!("admin_token = \"{ADMIN}\""),
        "admin_token_file = \"admin.token\"",
    );
    let origin = dir.path().join("sluice.toml");
    let e = parse(&text, Some(&origin), &no_env).expect_err("too large");
    assert_eq!(
        e.key_path.as_deref(),
        Some("server.admin_token_file"),
        "{e}"
    );
    assert!(e.message.contains("64 KiB"), "{e}");
    assert!(!e.message.contains("ttttttttt"), "{e}");
    // At the cap (plus the trimmed newline): fine.
    std::fs::write(&token, format!("{}\n", "t".repeat((64 << 10) - 1))).unwrap();
    parse(&text, Some(&origin), &no_env).expect("a secret at the cap");

    // Symlinks to regular files are followed, for the config and for secrets.
    std::fs::write(&token, "from-a-link\n").unwrap();
    std::os::unix::fs::symlink(&token, dir.path().join("link.token")).unwrap();
    std::fs::write(&origin, text.replace("admin.token", "link.token")).unwrap();
    std::os::unix::fs::symlink(&origin, dir.path().join("link.toml")).unwrap();
    let c = sluice::config::load(&dir.path().join("link.toml")).expect("links are followed");
    assert_eq!(
        c.server.admin_token.as_ref().map(|t| t.expose()),
        Some("from-a-link")
    );
}

// ------------------------------------------------------------------ 3. empty files, reloads

#[test]
fn an_empty_file_is_refused() {
    for text in [
        "",
        "\n\n",
        "# only a comment\n",
        "  \n# a\n\n",
        "[server]\n",
    ] {
        let e = parse(text, None, &no_env).expect_err(text);
        assert!(e.message.contains("empty"), "{text:?}: {e}");
        assert!(e.message.contains("[[workspaces]]"), "{text:?}: {e}");
    }
    // A file that sets something but has no workspace yet is valid: the daemon starts
    // (the Debian package's conffile is such a file) and answers every key with 401.
    let c = parse("[server]\nlisten = \"127.0.0.1:8470\"\n", None, &no_env).expect("valid");
    assert!(c.workspaces.is_empty());
}

#[test]
fn config_check_refuses_an_empty_file_and_warns_without_workspaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, "").unwrap();
    let (code, out, err, _) = config_check(&path);
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("empty"), "{err}");
    assert!(!out.contains("is valid"), "{out}");
    // Settings but no workspace (the Debian conffile): valid, with a warning.
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:8470\"\n").unwrap();
    let (code, out, err, _) = config_check(&path);
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("is valid"), "{out}");
    assert!(
        err.contains("warning") && err.contains("no [[workspaces]]"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_never_drops_every_workspace_or_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let text = with_admin(dir.path());
    let d = TestDaemon::start(dir.path(), &text).await;
    let app = d.daemon.as_ref().unwrap().app.clone();
    let running = app.runtime().config.sha256.clone();
    let path = dir.path().join("sluice.toml");
    let store = dir.path().join("sluice.redb");
    let no_workspaces = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN}\"\n\n[storage]\npath = \"{}\"\n",
        store.display()
    );
    let no_admin = text.replace(&format!("admin_token = \"{ADMIN}\"\n"), "");
    assert_ne!(no_admin, text);
    for (what, bad, want) in [
        ("an empty file", String::new(), "empty"),
        ("no workspace", no_workspaces, "every workspace"),
        ("no admin token", no_admin, "admin API"),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let e = app.reload().expect_err(what).to_string();
        assert!(e.contains(want), "{what}: {e}");
        if what != "an empty file" {
            assert!(e.contains("restart"), "{what}: {e}");
        }
        assert_eq!(app.runtime().config.sha256, running, "{what}");
        assert_eq!(
            d.post(&event(&format!("kept-{}", want.len()), T0_MS))
                .await
                .0,
            202,
            "{what}: the running keys stay"
        );
        let (s, _) = admin_post(
            &d,
            "/v1/admin/backup",
            json!({"name": format!("{}", want.len())}),
        )
        .await;
        assert_eq!(s, 200, "{what}: the admin API stays");
    }
    // The HTTP route says the same, and a good file still reloads.
    std::fs::write(&path, "").unwrap();
    let (s, v) = admin_post(&d, "/v1/admin/reload", json!({})).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (422, Some("invalid_config")),
        "{v}"
    );
    std::fs::write(&path, text.replace(KEY, "rotated_hardening_key")).unwrap();
    app.reload().expect("a good file reloads");
    assert_eq!(d.post(&event("after", T0_MS)).await.0, 401);
    d.shutdown().await;
}

// ------------------------------------------------------------------ 4. key = token

#[test]
fn an_ingest_key_equal_to_the_admin_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = with_admin(dir.path()).replace("\"gh_second_key\"", &format!("\"{ADMIN}\""));
    let e = parse(&text, None, &no_env).expect_err("key = token");
    assert_eq!(
        e.key_path.as_deref(),
        Some("workspaces[0].ingest_keys[1]"),
        "{e}"
    );
    assert!(e.line.is_some(), "{e}");
    assert!(e.message.contains("admin token"), "{e}");
    assert!(!format!("{e} {e:?}").contains(ADMIN), "{e}");

    // The same through files and the environment.
    std::fs::write(dir.path().join("keys"), format!("a_key,{ADMIN}\n")).unwrap();
    let text = with_admin(dir.path())
        .replace(
            &format!("admin_token = \"{ADMIN}\""),
            "admin_token_env = \"TOK\"",
        )
        .replace(
            "ingest_keys = [\"other_key\"]",
            "ingest_keys_file = \"keys\"",
        );
    let env = |n: &str| (n == "TOK").then(|| ADMIN.to_string());
    let e = parse(&text, Some(&dir.path().join("sluice.toml")), &env).expect_err("key = token");
    assert_eq!(
        e.key_path.as_deref(),
        Some("workspaces[1].ingest_keys_file"),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains(ADMIN), "{e}");
}
