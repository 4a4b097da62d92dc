//! What a `/metrics` scrape costs while a destination holds a large backlog. The gauges
//! are exact (SPEC §10: queue depth, lag, oldest age, events expiring soon): the log part
//! of each backlog is a summary brought up to date at each scrape, so a scrape reads
//! only what was appended or delivered since the last one. No target. Run:
//! `cargo bench --bench metrics`.
//!
//! A daemon in-process (system clock) with one webhook destination paused and a second
//! one active towards a simulator, so the scrape also covers a drained destination;
//! backlogs of 10,000, 100,000 and 300,000 events are built by ingesting 1,000-event
//! batches; the first scrape after each step (catching up on every event appended
//! since the previous step) is timed on its own, then `/metrics` and
//! `GET /v1/destinations` are timed 15 times each.
// Benches measure and print; the pedantic lints the library follows would cost
// them clarity.
#![allow(clippy::pedantic)]

mod support;

use std::time::{Duration, Instant};

use sluice::app::{Daemon, StartOptions};
use sluice::clock::SystemClock;
use sluice::config::Platform;
use sluice::sim::{self, FaultScript};

const SCRAPES: usize = 15;

fn main() {
    let rt = support::serve::runtime("sluice-bench");
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let any = "127.0.0.1:0".parse().expect("addr");
    let clock = std::sync::Arc::new(SystemClock);
    let hook = sim::start(Platform::Webhook, any, clock.clone(), FaultScript::none())
        .await
        .expect("sim");
    hook.set_keep_bodies(false);
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "bench"
max_events_per_request = 1000
[storage]
path = "{}"
[platforms.webhook]
concurrency = 32
[[workspaces]]
id = "w"
plan = "enterprise"
ingest_keys = ["k"]
limits = {{ rate = 0, burst = 0 }}
[[destinations]]
id = "held"
workspace = "w"
platform = "webhook"
endpoint = "http://127.0.0.1:9/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
[[destinations]]
id = "live"
workspace = "w"
platform = "webhook"
endpoint = "{}/hook"
events = ["Lead"]
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
"#,
        dir.path().join("s.redb").display(),
        hook.url()
    );
    let cfg =
        sluice::config::parse(&text, Some(&dir.path().join("s.toml")), &|_| None).expect("config");
    let mut opts = StartOptions::new(cfg);
    opts.clock = clock;
    opts.listen = Some(any);
    let d = Daemon::start(opts).await.expect("daemon");
    let url = format!("http://{}", d.addr);
    let http = reqwest::Client::new();
    while !d.app.is_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = http
        .post(format!("{url}/v1/destinations/held/pause"))
        .bearer_auth("bench")
        .json(&serde_json::json!({"reason": "bench"}))
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status(), 200);

    println!("/metrics with one paused destination holding a backlog (p50 / max of {SCRAPES}):");
    let mut sent = 0usize;
    let mut previous = 0usize;
    for target in [10_000usize, 100_000, 300_000] {
        while sent < target {
            let now = support::now_ms() / 1000;
            let events: Vec<_> = (0..1000)
                .map(|i| {
                    serde_json::json!({
                        "event_id": format!("e{}", sent + i),
                        "event_name": "Purchase",
                        "event_time": now,
                        "user_data": {"email": "buyer@example.com"},
                        "custom_data": {"currency": "EUR", "value": 42.5}
                    })
                })
                .collect();
            let r = http
                .post(format!("{url}/v1/events"))
                .bearer_auth("k")
                .json(&serde_json::json!({"events": events}))
                .send()
                .await
                .expect("ingest");
            assert_eq!(r.status(), 202);
            sent += 1000;
        }
        let catch_up = time_one(&http, &format!("{url}/metrics")).await;
        let metrics = time(&http, &format!("{url}/metrics"), None, |body| {
            assert!(
                body.contains(&format!(
                    "sluice_queue_depth{{destination=\"held\",platform=\"webhook\",merchant=\"w\"}} {target}\n"
                )),
                "queue depth must read {target}"
            );
        })
        .await;
        let admin = time(
            &http,
            &format!("{url}/v1/destinations"),
            Some("bench"),
            |_| {},
        )
        .await;
        println!(
            "  backlog {target:>7}: first scrape after {:>6} new events {:>9.1?} · then /metrics p50 {:>9.1?} max {:>9.1?} · GET /v1/destinations p50 {:>9.1?}",
            target - previous,
            catch_up,
            admin_p50(&metrics),
            metrics[metrics.len() - 1],
            admin_p50(&admin),
        );
        previous = target;
    }
    d.shutdown().await;
}

async fn time_one(http: &reqwest::Client, url: &str) -> Duration {
    let start = Instant::now();
    let r = http.get(url).send().await.expect("scrape");
    let _ = r.text().await.expect("body");
    start.elapsed()
}

fn admin_p50(v: &[Duration]) -> Duration {
    v[v.len() / 2]
}

async fn time(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    check: impl Fn(&str),
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let mut req = http.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let start = Instant::now();
        let r = req.send().await.expect("scrape");
        let body = r.text().await.expect("body");
        out.push(start.elapsed());
        check(&body);
    }
    out.sort();
    out
}
