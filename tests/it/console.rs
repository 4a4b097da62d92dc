//! The operator's web console (issue 16): real-browser tests (headless Chromium over
//! WebDriver, driven with fantoccini) against a daemon on port 0 and the webhook
//! simulator, and plain-HTTP tests of the session, CSRF, headers, `server.console`,
//! the sign-in limiter and the time series.
//!
//! The browser tests need `chromedriver` and `chromium` (Debian packages `chromium`,
//! `chromium-driver`; `.ci/run` installs them). Each saves screenshots under
//! `target/console-screens/` and checks they are not blank.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::config::Platform;
use sluice::sim::{self, Fault, FaultScript, SimServer};

const ADMIN: &str = "admin_console_token";

fn config(dir: &std::path::Path, url: &str, server_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"
{server_extra}

[storage]
path = "{store}"

[platforms.webhook]
concurrency = 16
retry = {{ base = "1m", max = "1h" }}
auto_pause = {{ interval = "1m" }}

[[workspaces]]
id = "glasshouse"
plan = "enterprise"
ingest_keys = ["{KEY}"]

[[destinations]]
id = "hooks"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{url}/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
"#,
        store = dir.join("sluice.redb").display()
    )
}

struct Rig {
    d: TestDaemon,
    hook: SimServer,
    clock: Arc<ManualClock>,
    text: String,
    _dir: tempfile::TempDir,
}

async fn rig(script: FaultScript, server_extra: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0_MS);
    let hook = sim::start(
        Platform::Webhook,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        script,
    )
    .await
    .unwrap();
    let text = config(dir.path(), &hook.url(), server_extra);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    Rig {
        d,
        hook,
        clock,
        text,
        _dir: dir,
    }
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..1000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn admin(d: &TestDaemon, path: &str) -> Value {
    let r = d
        .http
        .get(format!("{}{path}", d.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Waits until the simulator has answered `n` requests and the worker is idle.
async fn settled(r: &Rig, n: usize) {
    let app = r.d.daemon.as_ref().unwrap().app.clone();
    until(&format!("{n} answered"), || {
        let answered = r.hook.received().iter().filter(|x| x.status != 0).count();
        let idle = app
            .engine
            .snapshot("hooks")
            .is_some_and(|s| s.requests_in_flight == 0 && s.unsettled == 0);
        async move { answered >= n && idle }
    })
    .await;
}

async fn tick(r: &Rig, ms: i64) {
    r.clock.advance_ms(ms);
    tokio::time::sleep(Duration::from_millis(30)).await;
}

async fn send(r: &Rig, prefix: &str, n: usize) {
    let now = sluice::clock::Clock::now_ms(&*r.clock);
    let (s, v) =
        r.d.post(&batch((0..n).map(|i| format!("{prefix}{i}")), now))
            .await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(n as u64)), "{v}");
}

/// Three events dead-lettered (the platform rejects them), then `hooks` auto-paused by
/// a platform failing every request (100% errors at the 12:01 evaluation).
async fn paused_with_dlq(r: &Rig) {
    tick(r, 10_000).await;
    send(r, "bad", 3).await;
    settled(r, 3).await;
    until("3 in the DLQ", || async {
        admin(&r.d, "/v1/destinations/hooks").await["dlq_depth"] == 3
    })
    .await;
    r.hook.set_script(FaultScript::always(Fault::Transient));
    send(r, "e", 10).await;
    settled(r, 13).await;
    r.clock.advance_ms(50_000);
    until("paused", || async {
        admin(&r.d, "/v1/destinations/hooks").await["state"] == "paused"
    })
    .await;
}

// ---- plain HTTP: session, CSRF, headers ----

/// No redirects followed: the tests look at each answer.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in with the admin token: the session cookie (`name=value`) and the raw
/// `Set-Cookie` header.
async fn sign_in(d: &TestDaemon) -> (String, String) {
    let r = http()
        .post(format!("{}/console/signin", d.url))
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let pair = set.split(';').next().unwrap().to_string();
    (pair, set)
}

/// The CSRF token in a page (the hidden `csrf` field).
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + 64].to_string()
}

async fn get_page(
    d: &TestDaemon,
    cookie: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = http()
        .get(format!("{}{path}", d.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let h = r.headers().clone();
    (s, h, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_is_httponly_strict_and_scoped_and_pages_carry_a_strict_csp() {
    let r = rig(FaultScript::none(), "").await;
    // Signed out: pages send to the sign-in page, which is a POST form.
    let resp = http()
        .get(format!("{}/console/", r.d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/console/signin");
    let (_, h, page) = get_page(&r.d, "", "/console/signin").await;
    assert!(
        page.contains("method=\"post\" action=\"/console/signin\""),
        "{page}"
    );
    assert!(page.contains("type=\"password\" name=\"token\""));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");

    let (cookie, set) = sign_in(&r.d).await;
    assert!(
        cookie.starts_with("sluice_console=") && cookie.len() > 60,
        "{set}"
    );
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(set.contains(flag), "{flag} missing from {set}");
    }
    let (s, h, page) = get_page(&r.d, &cookie, "/console/").await;
    assert_eq!(s, 200);
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'")
    );
    assert!(page.contains("hooks"));
    // No inline script and no secret in the page, its script or its JSON.
    assert!(!page.contains("<script>") && page.contains("<script src=\"/console/app.js\""));
    let (_, _, json) = get_page(&r.d, &cookie, "/console/overview.json").await;
    let (_, jsh, js) = get_page(&r.d, &cookie, "/console/app.js").await;
    assert!(
        jsh["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    for text in [&page, &json, &js] {
        assert!(!text.contains(ADMIN));
        assert!(!text.contains("whsec_"));
        assert!(!text.contains(KEY));
    }
    let (_, _, cfg) = get_page(&r.d, &cookie, "/console/config").await;
    assert!(!cfg.contains(ADMIN) && !cfg.contains("whsec_") && !cfg.contains(KEY));
    assert!(cfg.contains("config-sha"));

    // Signing out ends the session.
    let token = csrf_of(&page);
    let resp = http()
        .post(format!("{}/console/signout", r.d.url))
        .header("cookie", &cookie)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (s, _, _) = get_page(&r.d, &cookie, "/console/").await;
    assert_eq!(s, 303);
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_the_session_and_its_csrf_token() {
    let r = rig(FaultScript::none(), "").await;
    let url = format!("{}/console/destinations/hooks/pause", r.d.url);
    // No session.
    let resp = http()
        .post(&url)
        .form(&[("reason", "drill")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (cookie, _) = sign_in(&r.d).await;
    // A session, no CSRF token; then a wrong one.
    for form in [
        vec![("reason", "drill")],
        vec![("reason", "drill"), ("csrf", "00")],
    ] {
        let resp = http()
            .post(&url)
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"], "csrf");
    }
    // Another session's token does not do either.
    let (other, _) = sign_in(&r.d).await;
    let (_, _, page) = get_page(&r.d, &other, "/console/").await;
    let other_token = csrf_of(&page);
    let resp = http()
        .post(&url)
        .header("cookie", &cookie)
        .form(&[("reason", "drill"), ("csrf", other_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        admin(&r.d, "/v1/destinations/hooks").await["state"],
        "active"
    );
    // With both: paused, audited with actor console.
    let (_, _, page) = get_page(&r.d, &cookie, "/console/").await;
    let token = csrf_of(&page);
    let resp = http()
        .post(&url)
        .header("cookie", &cookie)
        .form(&[("reason", "drill"), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.ends_with("?notice=Paused."), "{loc}");
    assert_eq!(
        admin(&r.d, "/v1/destinations/hooks").await["state"],
        "paused"
    );
    let audit = admin(&r.d, "/v1/audit?type=destination_pause").await;
    assert_eq!(audit["events"][0]["actor"], "console");
    assert_eq!(audit["events"][0]["details"]["note"], "drill");
    // The same rules as the API: a blank reason is refused, nothing changes.
    let resp = http()
        .post(format!("{}/console/destinations/hooks/resume", r.d.url))
        .header("cookie", &cookie)
        .form(&[("reason", " "), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.contains("Not%20resumed"), "{loc}");
    assert_eq!(
        admin(&r.d, "/v1/destinations/hooks").await["state"],
        "paused"
    );
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_off_answers_404() {
    let r = rig(FaultScript::none(), "console = false").await;
    for path in ["/console/", "/console/signin", "/console/app.js"] {
        let resp = http()
            .get(format!("{}{path}", r.d.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    let resp = http()
        .post(format!("{}/console/signin", r.d.url))
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().get("set-cookie").is_none());
    // The API is unaffected.
    admin(&r.d, "/v1/destinations/hooks").await;
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_token_means_sign_in_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "");
    let d = TestDaemon::start(dir.path(), &text).await;
    let resp = http()
        .get(format!("{}/console/signin", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains("Sign-in is disabled"), "{page}");
    let resp = http()
        .post(format!("{}/console/signin", d.url))
        .form(&[("token", "anything")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("set-cookie").is_none());
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_audited_and_limited_to_five_a_minute() {
    let r = rig(FaultScript::none(), "").await;
    for i in 0..5 {
        let resp = http()
            .post(format!("{}/console/signin", r.d.url))
            .form(&[("token", format!("wrong{i}"))])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "attempt {i}");
        assert!(resp.headers().get("set-cookie").is_none());
    }
    // The sixth within the minute is refused unchecked, even with the right token.
    let resp = http()
        .post(format!("{}/console/signin", r.d.url))
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "60");
    let audit = admin(&r.d, "/v1/audit?type=console_sign_in_failed").await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["actor"], "console");
    assert_eq!(events[0]["details"]["client"], "127.0.0.1");
    // Never the token tried.
    assert!(!audit.to_string().contains("wrong0"));
    assert_eq!(admin(&r.d, "/v1/audit/verify").await["ok"], true);
    // A minute later the right token signs in.
    r.clock.advance_ms(61_000);
    sign_in(&r.d).await;
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_is_sampled_every_30_s_and_survives_a_restart() {
    let r = rig(FaultScript::none(), "").await;
    tick(&r, 10_000).await;
    send(&r, "s", 4).await;
    settled(&r, 4).await;
    // Samples at 12:00:30, 12:01:00 and 12:01:30 (each waited for: the sampler wakes
    // once per move of the clock however far it moves).
    for k in 1..=3usize {
        tick(&r, 30_000).await;
        until(&format!("{k} samples"), || async {
            admin(&r.d, "/v1/destinations/hooks/series").await["samples"]
                .as_array()
                .unwrap()
                .len()
                >= k
        })
        .await;
    }
    let v = admin(&r.d, "/v1/destinations/hooks/series").await;
    assert_eq!(v["interval_seconds"], 30);
    let samples = v["samples"].as_array().unwrap().clone();
    assert_eq!(samples[0]["at"], "2026-11-02T12:00:30.000Z");
    let delivered: u64 = samples
        .iter()
        .map(|s| s["delivered"].as_u64().unwrap())
        .sum();
    assert_eq!(delivered, 4);
    assert!(samples.iter().all(|s| s["queue_depth"] == 0));
    // The console serves the same JSON to a session.
    let (cookie, _) = sign_in(&r.d).await;
    let (s, _, body) = get_page(&r.d, &cookie, "/console/destinations/hooks/series.json").await;
    assert_eq!(s, 200);
    let cv: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cv["samples"][0], samples[0]);
    let bad = http()
        .get(format!("{}/v1/destinations/nope/series", r.d.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);

    // Restarted on the same store: the samples are still there.
    let Rig {
        d,
        hook,
        clock,
        text,
        _dir,
    } = r;
    let d = d.restart(&text).await;
    let after = admin(&d, "/v1/destinations/hooks/series").await;
    assert_eq!(
        after["samples"].as_array().unwrap()[..samples.len()],
        samples[..]
    );
    // 25 hours on, the old ones are trimmed.
    clock.advance_ms(25 * 3_600_000);
    until("trimmed", || async {
        let v = admin(&d, "/v1/destinations/hooks/series").await;
        let s = v["samples"].as_array().unwrap().clone();
        !s.is_empty() && s.iter().all(|x| x["at"] != "2026-11-02T12:00:30.000Z")
    })
    .await;
    let stored = d
        .daemon
        .as_ref()
        .unwrap()
        .app
        .intake
        .store
        .read(|txn| sluice::store::series::read(txn, "hooks", 0))
        .unwrap();
    assert!(
        stored.iter().all(|s| s.at_ms >= T0_MS + 24 * 3_600_000),
        "{stored:?}"
    );
    drop(hook);
    d.shutdown().await;
}

// ---- real browser ----

/// chromedriver on a free port, and a headless Chromium session through it.
struct Browser {
    client: Client,
    driver: Child,
}

async fn browser() -> Browser {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (apt-get install chromium chromium-driver)");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]}),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return Browser { client, driver },
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no WebDriver session: {last:?}");
}

impl Browser {
    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    /// The element `css`, once the page has it.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    /// The text of `css`. The overview redraws itself every few seconds, so an element
    /// found may be gone by the time it is read: then it is found again.
    async fn text(&self, css: &str) -> String {
        let mut last = String::new();
        for _ in 0..20 {
            match self.element(css).await.text().await {
                Ok(t) => return t,
                Err(e) if is_stale(&e) => last = e.to_string(),
                Err(e) => panic!("{css}: {e}"),
            }
        }
        panic!("{css}: stale every time: {last}");
    }

    /// The text of `css` once it reads `want`, reloading the page between looks (the
    /// state a page shows may be a moment behind the action that changed it).
    async fn text_becomes(&self, css: &str, want: &str) {
        let mut last = String::new();
        for _ in 0..50 {
            last = self.text(css).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.client.refresh().await.expect("reload the page");
        }
        panic!("{css}: {last:?}, never {want:?}");
    }

    /// The page's notice once it starts with `prefix`. A click on a form's button may
    /// return before the browser has left the page, whose own notice (of the action
    /// before) must not be taken for the answer.
    async fn notice_starting(&self, prefix: &str) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            if let Ok(e) = self.client.find(Locator::Css(".notice")).await
                && let Ok(t) = e.text().await
            {
                if t.starts_with(prefix) {
                    return t;
                }
                last = t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(".notice: {last:?}, never starting with {prefix:?}");
    }

    async fn click(&self, css: &str) {
        let mut last = String::new();
        for _ in 0..20 {
            match self.element(css).await.click().await {
                Ok(_) => return,
                Err(e) if is_stale(&e) => last = e.to_string(),
                Err(e) => panic!("{css}: {e}"),
            }
        }
        panic!("{css}: stale every time: {last}");
    }

    async fn fill(&self, css: &str, text: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .send_keys(text)
            .await
            .unwrap();
    }

    /// Saves a screenshot under `target/console-screens/` and checks it is not blank.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screens");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        assert!(colours(&png) > 1, "{} is blank", path.display());
        path
    }

    async fn sign_in(&self, d: &TestDaemon) {
        self.client
            .goto(&format!("{}/console/", d.url))
            .await
            .unwrap();
        // Sent to the sign-in page.
        self.fill("#token", ADMIN).await;
        self.click("#signin button").await;
        self.text("#overview").await;
    }
}

/// Distinct colours in a PNG (counting stops at 2).
fn colours(png: &[u8]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples() * (info.bit_depth as usize).div_ceil(8);
    let bytes = &buf[..info.buffer_size()];
    let first = &bytes[..px];
    if bytes.chunks(px).any(|p| p != first) {
        2
    } else {
        1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sees_an_auto_pause_and_resumes_it_with_a_reason() {
    let r = rig(FaultScript::always(Fault::Invalid), "").await;
    paused_with_dlq(&r).await;
    // A sample while paused, for the charts.
    tick(&r, 30_000).await;
    let b = browser().await;
    b.sign_in(&r.d).await;
    let state = b.text("#dest-hooks .state").await;
    assert_eq!(state, "paused");
    let row = b.text("#dest-hooks").await;
    assert!(row.contains("error_rate_"), "{row}");
    let sug = b.text("tr.suggestion").await;
    assert!(
        sug.contains("sluice destinations resume --id hooks"),
        "{sug}"
    );
    b.screenshot("overview-paused").await;

    // The destination page: resume with a reason.
    r.hook.set_script(FaultScript::none());
    b.click("#dest-hooks a").await;
    let first = b.text("#timeline tbody tr:first-child").await;
    assert!(
        first.contains("pause") && first.contains("rate_threshold_exceeded"),
        "{first}"
    );
    b.screenshot("destination-paused").await;
    b.fill("#resume-reason", "platform fixed, resuming").await;
    b.click("#resume").await;
    assert_eq!(b.notice_starting("Resumed").await, "Resumed.");
    b.text_becomes("#state .state", "active").await;
    let first = b.text("#timeline tbody tr:first-child").await;
    assert!(first.contains("manual_resume"), "{first}");
    assert!(first.contains("platform fixed, resuming"), "{first}");
    assert_eq!(
        b.text("#timeline tbody tr:first-child td.actor").await,
        "console"
    );
    b.screenshot("destination-resumed").await;
    // The audit page shows it, by the console.
    b.client
        .goto(&format!("{}/console/audit", r.d.url))
        .await
        .unwrap();
    assert!(b.text("#verify").await.contains("Chain verified"));
    let top = b.text("#audit-events tbody tr:first-child").await;
    assert!(
        top.contains("destination_resume") && top.contains("console"),
        "{top}"
    );
    b.screenshot("audit").await;
    let api = admin(&r.d, "/v1/audit?type=destination_resume").await;
    assert_eq!(api["events"][0]["actor"], "console");
    b.close().await;
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_looks_up_an_event_and_replays_the_dlq_after_a_dry_run() {
    let r = rig(FaultScript::always(Fault::Invalid), "").await;
    tick(&r, 10_000).await;
    send(&r, "bad", 3).await;
    settled(&r, 3).await;
    until("3 in the DLQ", || async {
        admin(&r.d, "/v1/destinations/hooks").await["dlq_depth"] == 3
    })
    .await;
    let b = browser().await;
    b.sign_in(&r.d).await;

    // The overview refreshes itself: a pause through the API shows without a reload.
    assert_eq!(b.text("#dest-hooks .state").await, "active");
    let (s, _) = admin_post(
        &r.d,
        "/v1/destinations/hooks/pause",
        json!({"reason": "drill"}),
    )
    .await;
    assert_eq!(s, 200);
    let mut seen = String::new();
    for _ in 0..100 {
        seen = b.text("#dest-hooks .state").await;
        if seen == "paused" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "paused", "the overview never refreshed");
    let (s, _) = admin_post(
        &r.d,
        "/v1/destinations/hooks/resume",
        json!({"reason": "drill over"}),
    )
    .await;
    assert_eq!(s, 200);

    // Event lookup.
    b.click("nav a[href='/console/events']").await;
    b.fill("#event-id", "bad1").await;
    b.click("#lookup button").await;
    let fate = b.text("#trace tr.fate").await;
    assert!(
        fate.contains("hooks") && fate.contains("dead_lettered"),
        "{fate}"
    );
    b.screenshot("event-lookup").await;

    // DLQ: counts by reason, the list, then a dry run and the replay.
    r.hook.set_script(FaultScript::none());
    b.client
        .goto(&format!("{}/console/destinations/hooks", r.d.url))
        .await
        .unwrap();
    assert!(b.text("#dlq").await.contains("rejected: 3"));
    assert_eq!(
        b.client
            .find_all(Locator::Css("#dlq-list tbody tr"))
            .await
            .unwrap()
            .len(),
        3
    );
    b.click("#replay-dry-run").await;
    assert_eq!(b.text("#would-move").await, "3");
    // The dry run moved nothing.
    assert_eq!(admin(&r.d, "/v1/destinations/hooks").await["dlq_depth"], 3);
    b.screenshot("dlq-dry-run").await;
    b.click("#confirm").await;
    b.notice_starting("Replayed 3").await;
    settled(&r, 6).await;
    until("DLQ empty", || async {
        admin(&r.d, "/v1/destinations/hooks").await["dlq_depth"] == 0
    })
    .await;
    let audit = admin(&r.d, "/v1/audit?type=dlq_replay").await;
    assert_eq!(audit["events"][0]["actor"], "console");
    b.screenshot("dlq-replayed").await;

    // A test send and a reload, both audited as the console.
    b.click("#test-form input[name=live]").await;
    b.click("#test-form button").await;
    b.notice_starting("Test send (live): delivered").await;
    let audit = admin(&r.d, "/v1/audit?type=destination_test").await;
    assert_eq!(audit["events"][0]["actor"], "console");
    b.click("nav a[href='/console/config']").await;
    assert!(b.text("#last-reload").await.contains("No reload"));
    b.click("#reload-form button").await;
    b.notice_starting("Reloaded").await;
    assert!(b.text("#last-reload").await.contains("by console: ok"));
    assert!(b.text("#summary").await.contains("config sha256"));
    let audit = admin(&r.d, "/v1/audit?type=config_reloaded").await;
    assert_eq!(audit["events"][0]["actor"], "console");
    b.screenshot("config").await;
    b.close().await;
    r.d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_discard_shows_a_dry_run_then_discards_on_confirmation() {
    let r = rig(FaultScript::always(Fault::Invalid), "").await;
    tick(&r, 10_000).await;
    send(&r, "bad", 4).await;
    settled(&r, 4).await;
    until("4 in the DLQ", || async {
        admin(&r.d, "/v1/destinations/hooks").await["dlq_depth"] == 4
    })
    .await;
    let (cookie, _) = sign_in(&r.d).await;
    let (_, _, page) = get_page(&r.d, &cookie, "/console/destinations/hooks").await;
    assert!(page.contains("rejected: 4"), "{page}");
    let token = csrf_of(&page);
    let url = format!("{}/console/dlq/discard", r.d.url);
    // The first POST is a dry run: a confirmation page, nothing discarded.
    let resp = http()
        .post(&url)
        .header("cookie", &cookie)
        .form(&[
            ("csrf", token.as_str()),
            ("destination", "hooks"),
            ("from", ""),
            ("to", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let confirm = resp.text().await.unwrap();
    assert!(confirm.contains("id=\"would-move\">4<"), "{confirm}");
    assert!(confirm.contains("name=\"confirm\" value=\"1\""));
    assert_eq!(admin(&r.d, "/v1/destinations/hooks").await["dlq_depth"], 4);
    assert!(
        admin(&r.d, "/v1/audit?type=dlq_discard").await["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Confirmed: discarded, audited as the console.
    let resp = http()
        .post(&url)
        .header("cookie", &cookie)
        .form(&[
            ("csrf", token.as_str()),
            ("destination", "hooks"),
            ("from", ""),
            ("to", ""),
            ("confirm", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.contains("Discarded%204"), "{loc}");
    assert_eq!(admin(&r.d, "/v1/destinations/hooks").await["dlq_depth"], 0);
    let audit = admin(&r.d, "/v1/audit?type=dlq_discard").await;
    assert_eq!(audit["events"][0]["actor"], "console");
    assert_eq!(audit["events"][0]["details"]["discarded"], 4);
    // An unknown id: the page says what the API says (a dry run of nothing, or its
    // 404 as a notice on the way back), and nothing changes.
    let resp = http()
        .post(&url)
        .header("cookie", &cookie)
        .form(&[("csrf", token.as_str()), ("destination", "nope")])
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        200 => assert!(resp.text().await.unwrap().contains("id=\"would-move\">0<")),
        303 => {
            let loc = resp.headers()["location"].to_str().unwrap().to_string();
            assert!(loc.contains("Discard%20refused"), "{loc}");
        }
        s => panic!("unexpected {s}"),
    }
    assert_eq!(
        admin(&r.d, "/v1/audit?type=dlq_discard").await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    r.d.shutdown().await;
}

/// The element a command was given is no longer in the page (it was redrawn).
fn is_stale(e: &fantoccini::error::CmdError) -> bool {
    e.to_string().contains("stale element")
}
