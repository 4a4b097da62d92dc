//! Issue 14, the backup and configuration findings of the adversarial run: concurrent
//! backups with one name; config and secret files that are not regular files (a FIFO,
//! `/dev/zero`) or are too large; an empty file, or a reload that would drop every
//! workspace or the admin API; an ingest key equal to the admin token; and a property
//! test of the parser (never panics, never echoes a secret).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
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

// ------------------------------------------------------------------ 5. property test

/// Distinctive secrets of the base config: literals in the text, one from a file and one
/// from the environment (never in the text).
const LIT_SECRETS: [&str; 9] = [
    "sEcReT_admin_9f3a",
    "sEcReT_ingest_a_71c2",
    "sEcReT_ingest_b_55de",
    "sEcReT_meta_tok_0b8e",
    "sEcReT_gads_client_2d4f",
    "sEcReT_gads_refresh_8a1b",
    "sEcReT_smtp_pass_6c3d",
    "sEcReT_pd_route_4e9a",
    "https://hooks.example/sEcReT_slack_7f2c",
];
const FILE_SECRET: &str = "sEcReT_from_file_3b7d";
const ENV_SECRET: &str = "sEcReT_from_env_c4a0";

fn base_config(dir: &Path) -> String {
    let [
        admin,
        ing_a,
        ing_b,
        meta,
        gclient,
        grefresh,
        smtp,
        pd,
        slack,
    ] = LIT_SECRETS;
    format!(
        r#"[server]
listen = "127.0.0.1:8470"
admin_token = "{admin}"
max_body_bytes = 65536
log_level = "info"

[storage]
path = "{store}"
dedup_window = "24h"
pii_key_env = "PII"

[ingest]
default_country_code = "44"

[platforms.meta]
timeout = "5s"
retry = {{ max_retries = 3, base = "2s" }}
auto_pause = {{ threshold = 0.3, interval = "1m" }}

[[workspaces]]
id = "shop"
plan = "enterprise"
ingest_keys = ["{ing_a}", "{ing_b}"]
limits = {{ rate = 10, burst = 100 }}

[[workspaces]]
id = "other"
plan = "growth"
ingest_keys_env = "KEYS"

[[destinations]]
id = "meta_shop"
workspace = "shop"
platform = "meta"
params = {{ pixel_id = "1234" }}
credentials = {{ access_token = "{meta}" }}
policy = {{ concurrency = 2 }}

[[destinations]]
id = "gads"
workspace = "shop"
platform = "google_ads"
events = ["Purchase"]
params = {{ customer_id = "1", conversion_action_id = "2" }}
credentials = {{ developer_token_file = "{file}", client_id = "cid", client_secret = "{gclient}", refresh_token = "{grefresh}" }}

[[destinations]]
id = "hook"
workspace = "other"
platform = "webhook"
endpoint = "https://crm.example.com/in"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}

[[destinations]]
id = "kl"
workspace = "other"
platform = "klaviyo"
credentials = {{ api_key_env = "KL" }}

[alerts]
slack = {{ webhook_url = "{slack}" }}
email = {{ smtp = "127.0.0.1:25", password = "{smtp}", from = "a@example.com", to = ["o@example.com"] }}
pagerduty = {{ routing_key = "{pd}" }}
backpressure = {{ queue_depth = 100 }}
"#,
        store = dir.join("s.redb").display(),
        file = dir.join("dev.token").display(),
    )
}

fn prop_env(name: &str) -> Option<String> {
    match name {
        "PII" => Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string()),
        "KEYS" => Some("plain_key_1,plain_key_2".to_string()),
        "KL" => Some(ENV_SECRET.to_string()),
        _ => None,
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    /// Swap the values (after `=`) of two lines.
    SwapValues(usize, usize),
    /// Insert text at a position (a fraction of the line) of a line.
    Insert(usize, u8, String),
    /// Replace the value of a line with a random one.
    Revalue(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let junk = prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..8)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[\\[\\]{}=\",.#\\n\\\\ a-z0-9]{1,6}",
        Just("\"".to_string()),
        Just("\n[[workspaces]]\n".to_string()),
    ];
    let value = prop_oneof![
        Just("\"\"".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("99999999999999999999".to_string()),
        Just("1.5".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"1s\"".to_string()),
        Just("\"none\"".to_string()),
        Just("\"shop\"".to_string()),
        Just("\"/dev/null\"".to_string()),
        "\"[a-zA-Z0-9_:/.]{0,12}\"",
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapValues(a, b)),
        (any::<usize>(), any::<u8>(), junk).prop_map(|(l, at, s)| Mutation::Insert(l, at, s)),
        (any::<usize>(), value).prop_map(|(l, v)| Mutation::Revalue(l, v)),
    ]
}

fn apply(base: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
    for m in muts {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::Delete(i) => {
                lines.remove(i % n);
            }
            Mutation::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::SwapValues(a, b) => {
                let (a, b) = (a % n, b % n);
                if let (Some((ka, va)), Some((kb, vb))) =
                    (lines[a].split_once('='), lines[b].split_once('='))
                {
                    let (la, lb) = (format!("{ka}={vb}"), format!("{kb}={va}"));
                    lines[a] = la;
                    lines[b] = lb;
                }
            }
            Mutation::Insert(i, at, s) => {
                let l = &mut lines[i % n];
                let mut pos = l.len() * usize::from(*at) / 255;
                while !l.is_char_boundary(pos) {
                    pos -= 1;
                }
                l.insert_str(pos, s);
            }
            Mutation::Revalue(i, v) => {
                let l = &mut lines[i % n];
                if let Some((k, _)) = l.split_once('=') {
                    *l = format!("{k}= {v}");
                }
            }
        }
    }
    lines.join("\n") + "\n"
}

/// The string values the text holds under a secret key (what an error must never
/// show); every distinctive literal when the text is not TOML at all. A value of the
/// base config that is not a secret there (a plan name, `info`) moved under a secret
/// key by a swap is left out: error wording may name it for its own sake ("must be one
/// of starter, growth, …").
fn secrets_in(text: &str, base: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return LIT_SECRETS
            .iter()
            .filter(|s| text.contains(**s))
            .map(|s| s.to_string())
            .collect();
    };
    fn is_secret_key(parent: &str, key: &str) -> bool {
        matches!(
            key,
            "admin_token"
                | "ingest_keys"
                | "webhook_url"
                | "password"
                | "routing_key"
                | "signing_secret"
        ) || (parent == "credentials" && !key.ends_with("_env") && !key.ends_with("_file"))
            || (parent == "webhook" && key == "url")
    }
    fn strings(v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::String(s) => out.push(s.clone()),
            toml::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            toml::Value::Table(t) => t.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    fn walk(parent: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            if is_secret_key(parent, k) {
                strings(v, out);
            } else if let toml::Value::Table(sub) = v {
                walk(k, sub, out);
            } else if let toml::Value::Array(a) = v {
                for v in a {
                    if let toml::Value::Table(sub) = v {
                        walk(k, sub, out);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk("", &table, &mut out);
    // Short values ("t", "") would match ordinary words.
    out.retain(|s| s.len() >= 6 && (s.contains("sEcReT") || !base.contains(s.as_str())));
    out
}

#[derive(Debug, Clone)]
enum Input {
    Arbitrary(String),
    TomlIsh(String),
    Mutated(Vec<Mutation>),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        1 => any::<String>().prop_map(Input::Arbitrary),
        1 => "([a-z_.\\[\\]]{0,12}( ?= ?)?(\"[a-z0-9 ]{0,8}\"?|[0-9.-]{0,6}|\\[|\\{|\\}|\\])?\\n){0,12}"
            .prop_map(Input::TomlIsh),
        6 => proptest::collection::vec(mutation(), 1..5).prop_map(Input::Mutated),
    ]
}

/// Parsing never panics and answers Ok or an error with a message; an error never
/// shows a secret value (nor the value from a `*_file` or `*_env` secret), nor a whole
/// line of the file. `PROPTEST_CASES` sets the number of cases (256 by default).
#[test]
fn the_parser_never_panics_and_never_echoes_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dev.token"), format!("{FILE_SECRET}\n")).unwrap();
    let base = base_config(dir.path());
    parse(&base, None, &prop_env).expect("the base config is valid");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let (ran, valid) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&input(), |inp| {
        ran.fetch_add(1, Ordering::Relaxed);
        let text = match &inp {
            Input::Arbitrary(s) | Input::TomlIsh(s) => s.clone(),
            Input::Mutated(m) => apply(&base, m),
        };
        let outcome = std::panic::catch_unwind(|| parse(&text, None, &prop_env))
            .map_err(|_| TestCaseError::fail(format!("parse panicked on:\n{text}")))?;
        let e = match outcome {
            Ok(_) => {
                valid.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) => e,
        };
        prop_assert!(
            !e.message.trim().is_empty(),
            "an empty message for:\n{text}"
        );
        let shown = format!("{e} {e:?}");
        for s in secrets_in(&text, &base)
            .iter()
            .map(String::as_str)
            .chain([FILE_SECRET, ENV_SECRET])
        {
            prop_assert!(
                !shown.contains(s),
                "the error shows the secret {s:?}: {shown}\n---\n{text}"
            );
        }
        if matches!(inp, Input::Mutated(_)) {
            // Key/value lines (a bare header such as `[[workspaces]]` is fixed wording).
            let kv = |l: &&str| l.len() >= 12 && l.contains('=');
            for line in text.lines().map(str::trim).filter(kv) {
                prop_assert!(
                    !shown.contains(line),
                    "the error quotes the line {line:?}: {shown}"
                );
            }
            // Nor a distinctive literal moved (by a swap) under a key whose value an
            // error may name: a secret pasted as a variable name (`*_env`) is not
            // quoted either.
            for s in LIT_SECRETS {
                prop_assert!(
                    !shown.contains(s),
                    "the error shows {s:?}, moved under another key: {shown}\n---\n{text}"
                );
            }
        }
        Ok(())
    });
    eprintln!(
        "config parser property: {} cases run, {} valid, {} errors",
        ran.load(Ordering::Relaxed),
        valid.load(Ordering::Relaxed),
        ran.load(Ordering::Relaxed) - valid.load(Ordering::Relaxed),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A first start: `serve` creates the admin token file the config names when it does
/// not exist (64 hex characters, mode 0600, never replacing one); until then the
/// config loads with no admin token, like an unset `admin_token_env`. The example
/// config works this way, so the CLI's admin commands need no other step.
#[test]
fn a_missing_admin_token_file_is_created_on_first_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nadmin_token_file = \"admin.token\"\n[storage]\npath = \"{}\"\n[[workspaces]]\nid = \"w\"\nplan = \"growth\"\ningest_keys = [\"k_1\"]\n",
            dir.path().join("s.redb").display()
        ),
    )
    .unwrap();
    let c = sluice::config::load(&cfg).unwrap();
    assert!(c.server.admin_token.is_none(), "no file yet: no token");
    let made = sluice::config::create_missing_admin_token_file(&cfg).unwrap();
    let path = dir.path().join("admin.token");
    assert_eq!(made.as_deref(), Some(path.as_path()));
    let text = std::fs::read_to_string(&path).unwrap();
    let token = text.trim_end();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let c = sluice::config::load(&cfg).unwrap();
    assert_eq!(c.server.admin_token.as_ref().unwrap().expose(), token);
    // A second start keeps it.
    assert_eq!(
        sluice::config::create_missing_admin_token_file(&cfg).unwrap(),
        None
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // The example config names one too, and loads without it.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(text.contains("\nadmin_token_file = \"admin.token\"\n"));
}
