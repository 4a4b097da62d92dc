//! Hot reload under a steady stream (SPEC §8, issue 5): many reloads while events are
//! accepted and delivered lose nothing; a bad file keeps the running policy and names
//! key and line; batch size, rate and threshold changes take effect without a restart;
//! an added destination receives events; a removed one keeps its backlog, comes back
//! where it was, and can be purged; a rotated `*_file` token is used after the reload.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::config::Platform;
use sluice::sim::{self, FaultScript, SimServer};

const ADMIN: &str = "admin_reload_load";

/// What a reload changes.
#[derive(Clone)]
struct Shape {
    meta_batch: u32,
    threshold: f64,
    /// `rate` of the meta destination (`limit = 0`: unpaced).
    meta_rate: u32,
    w1: bool,
    w2: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            meta_batch: 50,
            threshold: 0.25,
            meta_rate: 0,
            w1: true,
            w2: false,
        }
    }
}

struct Rig {
    d: TestDaemon,
    meta: SimServer,
    w1: SimServer,
    w2: SimServer,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

fn text(dir: &Path, r: (&str, &str, &str), s: &Shape) -> String {
    let (meta, w1, w2) = r;
    let mut t = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"

[storage]
path = "{store}"

[platforms.meta]
max_batch = {batch}
linger = "0s"
rate = {{ limit = {rate}, per = "1m", unit = "events" }}
auto_pause = {{ threshold = {threshold} }}

[platforms.webhook]
concurrency = 8

[[workspaces]]
id = "glasshouse"
plan = "enterprise"
ingest_keys = ["{KEY}"]

[[destinations]]
id = "meta1"
workspace = "glasshouse"
platform = "meta"
endpoint = "{meta}"
params = {{ pixel_id = "1234567890" }}
credentials = {{ access_token_file = "{token}" }}
"#,
        store = dir.join("sluice.redb").display(),
        token = dir.join("meta.token").display(),
        batch = s.meta_batch,
        rate = s.meta_rate,
        threshold = s.threshold,
    );
    for (on, id, url) in [(s.w1, "w1", w1), (s.w2, "w2", w2)] {
        if on {
            t.push_str(&format!(
                r#"
[[destinations]]
id = "{id}"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{url}/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
"#
            ));
        }
    }
    t
}

async fn sim_of(p: Platform, clock: &Arc<ManualClock>) -> SimServer {
    sim::start(
        p,
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
        FaultScript::none(),
    )
    .await
    .unwrap()
}

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meta.token"), "tok-1\n").unwrap();
        let clock = ManualClock::new(T0_MS);
        let meta = sim_of(Platform::Meta, &clock).await;
        let w1 = sim_of(Platform::Webhook, &clock).await;
        let w2 = sim_of(Platform::Webhook, &clock).await;
        let t = text(
            dir.path(),
            (&meta.url(), &w1.url(), &w2.url()),
            &Shape::default(),
        );
        let d = TestDaemon::start_with(dir.path(), &t, clock.clone(), None).await;
        Rig {
            d,
            meta,
            w1,
            w2,
            clock,
            dir,
        }
    }

    fn write(&self, s: &Shape) -> String {
        let t = text(
            self.dir.path(),
            (&self.meta.url(), &self.w1.url(), &self.w2.url()),
            s,
        );
        std::fs::write(self.dir.path().join("sluice.toml"), &t).unwrap();
        t
    }

    async fn reload(&self) -> (u16, Value) {
        self.admin("POST", "/v1/admin/reload", None).await
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.d.url);
        let mut req = match method {
            "POST" => self.d.http.post(url),
            _ => self.d.http.get(url),
        }
        .bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, ids: &[String]) {
        let (s, v) = self
            .d
            .post(&batch(ids.iter().cloned(), self.d.clock_ms()))
            .await;
        assert_eq!(
            (s, v["accepted"].as_u64()),
            (202, Some(ids.len() as u64)),
            "{v}"
        );
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..3000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Event ids the simulator accepted, with how many times.
fn accepted(s: &SimServer) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for r in s.received().iter().filter(|r| r.accepted) {
        for id in sim::event_ids(s.platform, &r.body) {
            *m.entry(id).or_insert(0) += 1;
        }
    }
    m
}

async fn delivered_once(what: &str, s: &SimServer, want: &[String]) {
    until(what, || {
        let got = accepted(s);
        let ok = want.iter().all(|id| got.contains_key(id));
        async move { ok }
    })
    .await;
    let got = accepted(s);
    for id in want {
        assert_eq!(
            got.get(id),
            Some(&1),
            "{what}: {id} delivered more than once"
        );
    }
}

/// The `access_token` query parameter of a meta request.
fn token_of(x: &sim::Received) -> String {
    x.path
        .split_once('?')
        .map_or("", |(_, q)| q)
        .split('&')
        .find_map(|kv| kv.strip_prefix("access_token="))
        .unwrap_or("")
        .to_string()
}

/// Events per meta request received after the first `skip` requests.
fn meta_batches(s: &SimServer, skip: usize) -> Vec<usize> {
    s.received()
        .iter()
        .skip(skip)
        .map(|r| sim::event_ids(Platform::Meta, &r.body).len())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_a_steady_stream_lose_nothing_and_take_effect() {
    let r = Rig::new().await;

    // 1. A stream of 40 requests × 10 events while the config is reloaded 30 times
    //    (batch size and threshold flipping, one invalid file among them).
    let url = r.d.url.clone();
    let clock_ms = r.d.clock_ms();
    let stream = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut sent = Vec::new();
        for i in 0..40 {
            let batch_ids = ids(&format!("s{i}"), 10);
            let resp = http
                .post(format!("{url}/v1/events"))
                .bearer_auth(KEY)
                .json(&batch(batch_ids.iter().cloned(), clock_ms))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["accepted"], 10, "{v}");
            sent.extend(batch_ids);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        sent
    });
    let mut bad_seen = false;
    for i in 0..30 {
        if i == 15 {
            // Reload 14 set threshold 0.25; the bad file would set 0.5.
            let good = r.write(&Shape {
                threshold: 0.5,
                ..Shape::default()
            });
            let bad = good.replace("max_batch = 50", "max_batch = 50\nconcurrency = \"many\"");
            std::fs::write(r.dir.path().join("sluice.toml"), bad).unwrap();
            let (s, v) = r.reload().await;
            assert_eq!(
                (s, v["error"].as_str()),
                (422, Some("invalid_config")),
                "{v}"
            );
            let msg = v["message"].as_str().unwrap();
            assert!(msg.contains("platforms.meta.concurrency"), "{msg}");
            assert!(msg.contains("(line 11)"), "{msg}");
            assert!(!msg.contains("many"), "never echoes the line: {msg}");
            bad_seen = true;
            // The running policy is kept.
            let (_, d) = r.admin("GET", "/v1/destinations/meta1", None).await;
            assert_eq!(
                d["threshold"], 0.25,
                "the last good reload's threshold stays"
            );
            continue;
        }
        let flip = i % 2 == 0;
        r.write(&Shape {
            meta_batch: if flip { 7 } else { 50 },
            threshold: if flip { 0.25 } else { 0.5 },
            ..Shape::default()
        });
        let (s, v) = r.reload().await;
        assert_eq!((s, v["ok"].as_bool()), (200, Some(true)), "{v}");
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    assert!(bad_seen);
    let streamed = stream.await.unwrap();
    assert_eq!(streamed.len(), 400);
    delivered_once("every streamed event at meta", &r.meta, &streamed).await;
    delivered_once("every streamed event at w1", &r.w1, &streamed).await;
    assert!(r.w2.received().is_empty(), "w2 was never configured");

    // 2. Batch size and threshold: max_batch 7 and threshold 0.5 from this reload on.
    r.write(&Shape {
        meta_batch: 7,
        threshold: 0.5,
        ..Shape::default()
    });
    assert_eq!(r.reload().await.0, 200);
    let (_, d) = r.admin("GET", "/v1/destinations/meta1", None).await;
    assert_eq!(d["threshold"], 0.5);
    let before = r.meta.received().len();
    let b = ids("batch7", 30);
    r.send(&b).await;
    delivered_once("batch7 at meta", &r.meta, &b).await;
    let sizes = meta_batches(&r.meta, before);
    assert!(sizes.iter().all(|n| *n <= 7), "{sizes:?}");
    assert!(sizes.contains(&7), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 30);

    // 3. A rate: 20 events a minute (paced at 98%) from a fresh window.
    r.clock.advance_ms(120_000);
    r.write(&Shape {
        meta_rate: 20,
        ..Shape::default()
    });
    assert_eq!(r.reload().await.0, 200);
    let before = r.meta.received().len();
    let paced = ids("paced", 45);
    r.send(&paced).await;
    let sent_now = || meta_batches(&r.meta, before).iter().sum::<usize>();
    until("the first window's budget", || {
        let n = sent_now();
        async move { n >= 19 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sent_now(), 19, "19 of 20 (98%) in the first minute");
    r.clock.advance_ms(60_000);
    until("the second window", || {
        let n = sent_now();
        async move { n >= 38 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sent_now(), 38);
    r.clock.advance_ms(60_000);
    delivered_once("paced at meta", &r.meta, &paced).await;

    // 4. A rotated token file is used after the reload.
    std::fs::write(r.dir.path().join("meta.token"), "tok-2\n").unwrap();
    r.write(&Shape::default());
    assert_eq!(r.reload().await.0, 200);
    let before = r.meta.received().len();
    let rot = ids("rotated", 5);
    r.send(&rot).await;
    delivered_once("rotated at meta", &r.meta, &rot).await;
    let tokens: HashSet<String> = r
        .meta
        .received()
        .iter()
        .skip(before)
        .map(token_of)
        .collect();
    assert_eq!(tokens, HashSet::from(["tok-2".to_string()]));
    assert!(
        r.meta.received()[..before]
            .iter()
            .all(|x| token_of(x) == "tok-1")
    );

    // 5. An added destination receives what is accepted from then on.
    r.write(&Shape {
        w2: true,
        ..Shape::default()
    });
    assert_eq!(r.reload().await.0, 200);
    let added = ids("added", 10);
    r.send(&added).await;
    delivered_once("added at w2", &r.w2, &added).await;
    assert_eq!(accepted(&r.w2).len(), 10, "only events from the reload on");

    // 6. A removed destination keeps its backlog, returns where it was, can be purged.
    let (s, _) = r
        .admin(
            "POST",
            "/v1/destinations/w1/pause",
            Some(json!({"reason": "moving it"})),
        )
        .await;
    assert_eq!(s, 200);
    let held = ids("held", 5);
    r.send(&held).await;
    delivered_once("held at w2", &r.w2, &held).await;
    r.write(&Shape {
        w1: false,
        w2: true,
        ..Shape::default()
    });
    assert_eq!(r.reload().await.0, 200);
    let (s, d) = r.admin("GET", "/v1/destinations/w1", None).await;
    assert_eq!((s, d["state"].as_str()), (200, Some("removed")), "{d}");
    assert_eq!(d["merchant_id"], "glasshouse");
    assert_eq!(d["platform"], "webhook");
    let (_, all) = r.admin("GET", "/v1/destinations", None).await;
    let listed: Vec<&str> = all["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["destination_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["meta1", "w2", "w1"]);
    let (s, v) = r.admin("POST", "/v1/destinations/w2/purge", None).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("not_removed")));
    let meanwhile = ids("meanwhile", 3);
    r.send(&meanwhile).await;
    delivered_once("meanwhile at w2", &r.w2, &meanwhile).await;
    // Back: still paused, with everything since its position.
    r.write(&Shape {
        w2: true,
        ..Shape::default()
    });
    assert_eq!(r.reload().await.0, 200);
    let (_, d) = r.admin("GET", "/v1/destinations/w1", None).await;
    assert_eq!(d["state"], "paused");
    assert_eq!(d["queue_depth"], 8);
    let w1_got = accepted(&r.w1);
    assert!(
        held.iter()
            .chain(meanwhile.iter())
            .all(|id| !w1_got.contains_key(id)),
        "nothing held was sent while paused or removed"
    );
    let (s, _) = r
        .admin(
            "POST",
            "/v1/destinations/w1/resume",
            Some(json!({"reason": "moved"})),
        )
        .await;
    assert_eq!(s, 200);
    let back: Vec<String> = held.iter().chain(meanwhile.iter()).cloned().collect();
    delivered_once("backlog at w1 after its return", &r.w1, &back).await;

    // Removed again with a backlog, then purged: gone, audited.
    r.admin(
        "POST",
        "/v1/destinations/w1/pause",
        Some(json!({"reason": "retiring"})),
    )
    .await;
    r.send(&ids("last", 4)).await;
    r.write(&Shape {
        w1: false,
        w2: true,
        ..Shape::default()
    });
    assert_eq!(r.reload().await.0, 200);
    let (s, v) = r.admin("POST", "/v1/destinations/w1/purge", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["purged"], true);
    let (s, _) = r.admin("GET", "/v1/destinations/w1", None).await;
    assert_eq!(s, 404);
    let (s, _) = r.admin("POST", "/v1/destinations/w1/purge", None).await;
    assert_eq!(s, 404);
    let (_, audit) = r.admin("GET", "/v1/audit?resource=w1", None).await;
    let types: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"destination_purge"), "{types:?}");

    // Every reload is in the audit chain: 30 good or bad during the stream + 7 after.
    let (_, cfg_audit) = r
        .admin("GET", "/v1/audit?resource=config&limit=100", None)
        .await;
    let evs = cfg_audit["events"].as_array().unwrap();
    assert_eq!(evs.len(), 37);
    assert_eq!(
        evs.iter()
            .filter(|e| e["event_type"] == "config_reload_failed")
            .count(),
        1
    );
    r.d.shutdown().await;
}
