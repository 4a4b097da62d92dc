//! Shared test harness: a real daemon in-process on port 0 over a temporary store, a
//! controllable clock, and a real HTTP client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use sluice::app::{Daemon, StartOptions};
use sluice::clock::ManualClock;
use sluice::config::Config;
use sluice::store::FaultSwitch;

/// 2026-11-02T12:00:00Z
pub const T0_MS: i64 = 1_793_620_800_000;

pub const KEY: &str = "gh_live_test_key";

/// A config with one workspace `glasshouse` (plan `growth` unless `extra` overrides)
/// whose store lives in `dir`.
pub fn config_text(dir: &Path, workspace_extra: &str, rest: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[storage]
path = "{store}"

[[workspaces]]
id = "glasshouse"
plan = "growth"
ingest_keys = ["{KEY}", "gh_second_key"]
{workspace_extra}

[[workspaces]]
id = "other"
plan = "enterprise"
ingest_keys = ["other_key"]

[[destinations]]
id = "hooks_glasshouse"
workspace = "glasshouse"
platform = "webhook"
endpoint = "http://127.0.0.1:9/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}

[[destinations]]
id = "hooks_other"
workspace = "other"
platform = "webhook"
endpoint = "http://127.0.0.1:9/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
{rest}
"#,
        store = dir.join("sluice.redb").display()
    )
}

pub fn parse(dir: &Path, text: &str) -> Config {
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    sluice::config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

pub struct TestDaemon {
    pub daemon: Option<Daemon>,
    pub url: String,
    pub dir: PathBuf,
    pub clock: Arc<ManualClock>,
    pub faults: Option<Arc<FaultSwitch>>,
    pub http: reqwest::Client,
    /// `server.admin_token` of the config it runs with.
    pub admin_token: Option<String>,
}

impl TestDaemon {
    pub async fn start(dir: &Path, text: &str) -> TestDaemon {
        Self::start_with(dir, text, ManualClock::new(T0_MS), None).await
    }

    pub async fn start_with(
        dir: &Path,
        text: &str,
        clock: Arc<ManualClock>,
        faults: Option<Arc<FaultSwitch>>,
    ) -> TestDaemon {
        let td = Self::launch(dir, text, clock, faults).await;
        td.wait_ready().await;
        td
    }

    /// Starts the daemon without waiting for it to be ready.
    pub async fn launch(
        dir: &Path,
        text: &str,
        clock: Arc<ManualClock>,
        faults: Option<Arc<FaultSwitch>>,
    ) -> TestDaemon {
        if let Ok(filter) = std::env::var("RUST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let cfg = parse(dir, text);
        let admin_token = cfg
            .server
            .admin_token
            .as_ref()
            .map(|t| t.expose().to_string());
        let mut opts = StartOptions::new(cfg);
        opts.config_path = Some(dir.join("sluice.toml"));
        opts.clock = clock.clone();
        opts.faults = faults.clone();
        opts.listen = Some("127.0.0.1:0".parse().unwrap());
        let daemon = Daemon::start(opts).await.expect("daemon starts");
        let url = format!("http://{}", daemon.addr);
        TestDaemon {
            daemon: Some(daemon),
            url,
            dir: dir.to_path_buf(),
            clock,
            faults,
            http: reqwest::Client::new(),
            admin_token,
        }
    }

    pub async fn wait_ready(&self) {
        for _ in 0..500 {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.url)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("daemon never became ready");
    }

    /// Stops the daemon (graceful) and starts a new one on the same store and clock.
    pub async fn restart(mut self, text: &str) -> TestDaemon {
        self.daemon.take().unwrap().shutdown().await;
        Self::start_with(
            &self.dir.clone(),
            text,
            self.clock.clone(),
            self.faults.clone(),
        )
        .await
    }

    /// [`TestDaemon::restart`] without waiting for it to be ready.
    pub async fn restart_unready(mut self, text: &str) -> TestDaemon {
        self.daemon.take().unwrap().shutdown().await;
        Self::launch(
            &self.dir.clone(),
            text,
            self.clock.clone(),
            self.faults.clone(),
        )
        .await
    }

    pub async fn shutdown(mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
    }

    /// The text of `GET /metrics` (open: no token).
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// POSTs a JSON body to /v1/events with the given key; returns status, headers, body.
    pub async fn post_raw(
        &self,
        key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.post(format!("{}/v1/events", self.url)).body(body);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, v)
    }

    pub async fn post(&self, body: &Value) -> (u16, Value) {
        let (s, _, v) = self
            .post_raw(
                Some(KEY),
                Some("application/json"),
                serde_json::to_vec(body).unwrap(),
            )
            .await;
        (s, v)
    }
}

/// A valid event with the given id, timed at the clock's current second.
pub fn event(id: &str, now_ms: i64) -> Value {
    json!({
        "event_id": id,
        "event_name": "Purchase",
        "event_time": now_ms / 1000,
        "action_source": "website",
        "user_data": {"email": "Buyer@Example.com", "client_ip_address": "203.0.113.9"},
        "custom_data": {"currency": "EUR", "value": 42.5}
    })
}

pub fn batch(ids: impl IntoIterator<Item = String>, now_ms: i64) -> Value {
    json!({"events": ids.into_iter().map(|i| event(&i, now_ms)).collect::<Vec<_>>()})
}

impl TestDaemon {
    pub fn clock_ms(&self) -> i64 {
        use sluice::clock::Clock;
        self.clock.now_ms()
    }
}

// ---------------------------------------------------------------------------------------
// Independent re-computation of the audit chain (SPEC §6), separate from the crate's code.

/// Canonical JSON written separately from the crate's: keys sorted by a std::collections::BTreeMap (same
/// order as UTF-16 for the keys used here), serialized by serde_json, whose escaping of
/// strings matches RFC 8785 (`\"`, `\\`, `\n`-style short forms, `\u001f` for the rest).
pub fn independent_canonical(v: &serde_json::Value) -> String {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let b: std::collections::BTreeMap<&String, serde_json::Value> =
                    m.iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::to_value(b).unwrap()
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => {
                assert!(!other.is_f64(), "no floats in the chain");
                other.clone()
            }
        }
    }
    serde_json::to_string(&sorted(v)).unwrap()
}

pub fn independent_hash(prev_hex: &str, material: &str) -> String {
    use sha2::{Digest, Sha256};
    let prev = hex::decode(prev_hex).unwrap();
    assert_eq!(prev.len(), 32);
    let mut h = Sha256::new();
    h.update(&prev);
    h.update(material.as_bytes());
    hex::encode(h.finalize())
}

/// Re-computes every link and hash of an audit export (JSON Lines, oldest first) with the
/// independent canonical JSON and SHA-256 above; returns the records and the head.
pub fn recompute_export(text: &str) -> (Vec<serde_json::Value>, String) {
    let mut prev = "0".repeat(64);
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(
            line["prev_hash"],
            prev.as_str(),
            "line {i} links to the one before"
        );
        let material = independent_canonical(&serde_json::json!({
            "actor": line["actor"], "created_at": line["created_at"], "details": line["details"],
            "event_id": line["event_id"], "event_type": line["event_type"],
            "resource_id": line["resource_id"],
        }));
        let h = independent_hash(&prev, &material);
        assert_eq!(line["hash"], h.as_str(), "line {i} hash");
        prev = h;
        out.push(line);
    }
    (out, prev)
}

// ---------------------------------------------------------------------------------------
// Alerts.

/// Waits until `alerter` has no delivery left, moving `clock` to each scheduled retry in
/// turn: a delivery waiting for its retry sleeps on the test's clock, which moves only
/// when told. It moves only while every unfinished delivery is asleep until a time
/// still ahead, and calls `before_retry(at)` first (to check what happens before it).
/// Fails with the alerter's activity when `wait` passes without progress.
pub async fn drive_alerter_to_idle(
    alerter: &sluice::alerts::Alerter,
    clock: &ManualClock,
    wait: std::time::Duration,
    mut before_retry: impl AsyncFnMut(i64),
) {
    use sluice::clock::Clock;
    let mut act = alerter.activity();
    loop {
        let now = clock.now_ms();
        let waited = tokio::time::timeout(
            wait,
            act.wait_for(|a| {
                a.in_flight == 0
                    || (a.waiting == a.in_flight && a.next_retry_at_ms.is_some_and(|t| t > now))
            }),
        )
        .await
        .map(|a| a.unwrap().clone());
        let Ok(a) = waited else {
            panic!(
                "alerter made no progress: {:?}",
                *alerter.activity().borrow()
            );
        };
        if a.in_flight == 0 {
            return;
        }
        let next = a.next_retry_at_ms.expect("a retry is scheduled");
        before_retry(next).await;
        clock.set_ms(next);
    }
}

// ---------------------------------------------------------------------------------------
// The real binary (crash tests).

/// A free loopback port (for a config's `listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `sluice serve --config <config>` as a child process, quiet.
pub fn spawn_sluice(config: &Path) -> std::process::Child {
    serve(config)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sluice")
}

/// Like [`spawn_sluice`], with its log (info and up) written to `log`.
pub fn spawn_sluice_logged(config: &Path, log: &Path) -> std::process::Child {
    serve(config)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn sluice")
}

/// `sluice serve --config <config>`, stdout discarded.
fn serve(config: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null());
    c
}

/// Waits (up to 10 s) until `GET {url}/readyz` answers 200.
pub async fn wait_http_ready(http: &reqwest::Client, url: &str) {
    for _ in 0..1000 {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("sluice never became ready");
}

/// The wall clock in unix seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------------
// Adapter contract tests: requests sent for real, answers and policies as fixtures, and
// admin reads against a TestDaemon.

use sluice::config::{AutoPausePolicy, PlatformPolicy, RetryPolicy};
use sluice::event::{ClearField, NormalizedEvent, Variant};
use sluice::ingest::identifiers::{IdField, normalize};
use sluice::platforms::{Class, HttpRequest, HttpResponse, OutEvent, Verdict};
use sluice::sim::SimServer;

/// The fixed policy of the contract tests: the shared defaults, unpaced, no age limit.
pub fn contract_policy(max_batch: u32) -> PlatformPolicy {
    PlatformPolicy {
        max_batch,
        linger: std::time::Duration::from_secs(1),
        concurrency: 4,
        timeout: std::time::Duration::from_secs(10),
        age_limit: None,
        rates: vec![],
        retry: RetryPolicy {
            max_retries: 8,
            base: std::time::Duration::from_secs(1),
            max: std::time::Duration::from_secs(128),
            jitter: 0.0,
        },
        auto_pause: AutoPausePolicy {
            threshold: 0.25,
            interval: std::time::Duration::from_secs(300),
            window: std::time::Duration::from_secs(300),
            sample: 1000,
            min_samples: 10,
            auto_clear: std::time::Duration::from_secs(14_400),
            reprobe: std::time::Duration::from_secs(1800),
            probe_requests: 5,
        },
        watch: sluice::config::WatchPolicy::default(),
    }
}

/// A Purchase a minute before T0 carrying these identifiers (hashed in every variant),
/// clear fields and `custom_data`.
pub fn ev(
    id: &str,
    ids: &[(IdField, &str)],
    clear: &[(ClearField, &str)],
    custom: Option<Value>,
) -> NormalizedEvent {
    let mut hashed = vec![];
    for (f, raw) in ids {
        for n in normalize(*f, raw, "1", Some("US")).unwrap() {
            hashed.push((n.variant, n.sha256));
        }
    }
    hashed.sort_by_key(|(v, _)| *v);
    NormalizedEvent {
        event_id: id.into(),
        event_name: "Purchase".into(),
        event_time: T0_MS / 1000 - 60,
        action_source: None,
        event_source_url: None,
        hashed,
        clear: clear.iter().map(|(f, v)| (*f, v.to_string())).collect(),
        plaintext: vec![],
        custom_data: custom
            .map(|c| serde_json::to_vec(&c).unwrap())
            .unwrap_or_default(),
        destinations: vec![],
    }
}

/// An event as sent for merchant `glasshouse`, accepted 50 s before T0.
pub fn out(e: &NormalizedEvent) -> OutEvent<'_> {
    OutEvent {
        event: e,
        merchant_id: "glasshouse",
        accepted_ms: T0_MS - 50_000,
    }
}

pub fn whole(c: Class) -> Verdict {
    Verdict::Whole(c)
}

pub fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The lowercase-hex SHA-256 of `raw` normalized as `field` in `variant`.
pub fn hash(field: IdField, raw: &str, variant: Variant) -> String {
    let n = normalize(field, raw, "1", Some("US")).unwrap();
    hex::encode(n.iter().find(|n| n.variant == variant).unwrap().sha256)
}

/// Sends an adapter's request for real (redirects not followed) and reads the answer.
pub async fn send(req: &HttpRequest) -> HttpResponse {
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut b = c.request(req.method.parse().unwrap(), &req.url);
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

/// An answer with a JSON body and no headers.
pub fn resp(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

/// An answer with these body bytes and no headers.
pub fn resp_raw(status: u16, body: &[u8]) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![],
        body: body.to_vec(),
    }
}

/// Polls `f` every 5 ms for up to 5 s.
pub async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits for `n` answered requests at `server`, moving the clock a second at a time
/// when nothing happens (retries fall due).
pub async fn drive(clock: &ManualClock, server: &SimServer, n: usize) {
    let answered = || server.received().iter().filter(|r| r.status != 0).count();
    for _ in 0..20 {
        for _ in 0..100 {
            if answered() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        clock.advance_ms(1000);
    }
    panic!("only {} of {n} requests were answered", answered());
}

/// GET an admin route with the daemon's admin token; it must answer 200.
/// A simulator of `p` on a free loopback port, on `clock`.
pub async fn sim_on(
    p: sluice::config::Platform,
    clock: &Arc<ManualClock>,
    script: sluice::sim::FaultScript,
) -> SimServer {
    sluice::sim::start(p, "127.0.0.1:0".parse().unwrap(), clock.clone(), script)
        .await
        .unwrap()
}

/// Waits until `server` has answered `n` requests and `dest`'s worker has nothing in
/// flight or uncommitted (their outcomes, retries and request-log rows are in the
/// store). Real time passes; the clock does not move.
pub async fn settled_at(d: &TestDaemon, dest: &str, server: &SimServer, n: usize) {
    let app = d.daemon.as_ref().unwrap().app.clone();
    eventually(&format!("{n} answered requests settled"), || {
        let answered = server.received().iter().filter(|r| r.status != 0).count();
        let idle = app
            .engine
            .snapshot(dest)
            .is_some_and(|s| s.requests_in_flight == 0 && s.unsettled == 0);
        answered == n && idle
    })
    .await;
}

/// Runs the `sluice` binary's client command `args` against the daemon at `url` with
/// `admin` as its token (and a config file that does not exist, so nothing else is
/// read): exit code, stdout, stderr.
pub async fn sluice_cli(url: &str, admin: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .args(["--url", url, "--config", "/nonexistent/sluice.toml"])
        .env("SLUICE_API_KEY", admin);
    run_cmd(cmd).await
}

/// Runs `cmd` off the runtime: exit code, stdout, stderr.
pub async fn run_cmd(mut cmd: std::process::Command) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub async fn admin_get(d: &TestDaemon, path: &str) -> Value {
    let mut req = d.http.get(format!("{}{path}", d.url));
    if let Some(t) = &d.admin_token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// POST an admin route with the daemon's admin token: status and JSON body (null when
/// the body is not JSON).
pub async fn admin_post(d: &TestDaemon, path: &str, body: Value) -> (u16, Value) {
    let mut req = d.http.post(format!("{}{path}", d.url)).json(&body);
    if let Some(t) = &d.admin_token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The DLQ of `dest` once it holds exactly `n` entries (waits up to 5 s).
pub async fn dlq_with(d: &TestDaemon, dest: &str, n: usize) -> Value {
    for _ in 0..1000 {
        let v = admin_get(d, &format!("/v1/dlq?destination={dest}")).await;
        if v["entries"].as_array().unwrap().len() == n {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the DLQ of {dest} never held {n} entries");
}
