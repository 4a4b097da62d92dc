//! What a `/metrics` scrape costs while a destination holds a large backlog: the gauges
//! are computed at scrape time by reading every pending event (SPEC §10 asks for exact
//! queue depth, lag, oldest age and events expiring soon). No target; the figure tells
//! an operator how often to scrape. Run: `cargo bench --bench metrics`.
//!
//! A daemon in-process (system clock) with one webhook destination paused and a second
//! one active towards a simulator, so the scrape also covers a drained destination;
//! backlogs of 10,000, 100,000 and 300,000 events are built by ingesting 1,000-event
//! batches, then `/metrics` and `GET /v1/destinations` are timed 15 times each.

use std::time::{Duration, Instant};

use sluice::app::{Daemon, StartOptions};
use sluice::clock::SystemClock;
use sluice::config::Platform;
use sluice::sim::{self, FaultScript};

const SCRAPES: usize = 15;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
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
    for target in [10_000usize, 100_000, 300_000] {
        while sent < target {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_secs();
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
        let metrics = time(&http, &format!("{url}/metrics"), None, |body| {
            assert!(
                body.contains(&format!(
                    "sluice_queue_depth{{destination=\"held\",platform=\"webhook\",merchant=\"w\"}} {target}.0\n"
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
            "  backlog {target:>7}: /metrics p50 {:>9.1?} max {:>9.1?} ({:.2} µs per pending event) · GET /v1/destinations p50 {:>9.1?}",
            admin_p50(&metrics),
            metrics[metrics.len() - 1],
            admin_p50(&metrics).as_secs_f64() * 1e6 / target as f64,
            admin_p50(&admin),
        );
    }
    d.shutdown().await;
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
