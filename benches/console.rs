//! How fast the console renders with 100 destinations, a large backlog and a full day
//! of chart samples: the overview (`/console/`) and a destination page, p50/p99 over
//! `SLUICE_BENCH_ROUNDS` (50) requests each, against a do-nothing axum route measured
//! the same way in the same run. Run: `cargo bench --bench console`.
//!
//! Setup: one workspace with 100 webhook destinations, all paused (so the backlog
//! stays), then batches of 1,000 events ingested by `SLUICE_BENCH_INGEST_CONNS` (4)
//! clients for up to `SLUICE_BENCH_SECS` (900) seconds or `SLUICE_BENCH_EVENTS`
//! (10,000,000) events, whichever comes first (the workspace has no ingress limit: the
//! clock is manual, a limit would never refill): every
//! event is in each destination's backlog. The bench prints how far it got. 24 h of
//! 30 s samples per destination (288,000 rows) are written through the store writer.
// Benches measure and print; the pedantic lints the library follows would cost
// them clarity.
#![allow(clippy::pedantic)]

mod support;

use std::time::{Duration, Instant};

use support::num;

use serde_json::json;
use sluice::app::{Daemon, StartOptions};
use sluice::clock::ManualClock;
use sluice::store::DeliveryOp;
use sluice::store::series::{INTERVAL_MS, Sample};

const DESTS: usize = 100;

fn main() {
    let rt = support::serve::runtime("sluice-bench");
    rt.block_on(run());
}

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

async fn time_get(http: &reqwest::Client, url: &str, cookie: &str, rounds: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(rounds);
    // One warm-up.
    let _ = http.get(url).header("cookie", cookie).send().await;
    for _ in 0..rounds {
        let t = Instant::now();
        let r = http
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .expect("request");
        assert!(r.status().is_success(), "{url}: {}", r.status());
        let _ = r.bytes().await.expect("body");
        out.push(t.elapsed());
    }
    out
}

async fn run() {
    let rounds: usize = num("SLUICE_BENCH_ROUNDS", 50);
    let secs: u64 = num("SLUICE_BENCH_SECS", 900);
    let max_events: u64 = num("SLUICE_BENCH_EVENTS", 10_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as i64;
    let clock = ManualClock::new(t0);
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "bench"
[storage]
path = "{}"
max_backlog_age = "7d"
[[workspaces]]
id = "w"
plan = "enterprise"
ingest_keys = ["k"]
# Unlimited: the clock is manual, so a rate limit would never refill.
limits = {{ rate = 0, burst = 0, monthly_cap = 0 }}
"#,
        dir.path().join("s.redb").display()
    );
    for i in 0..DESTS {
        text.push_str(&format!(
            "[[destinations]]\nid = \"d{i:03}\"\nworkspace = \"w\"\nplatform = \"webhook\"\nendpoint = \"http://127.0.0.1:9/hook\"\ncredentials = {{ signing_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }}\n"
        ));
    }
    let cfg =
        sluice::config::parse(&text, Some(&dir.path().join("s.toml")), &|_| None).expect("config");
    let mut opts = StartOptions::new(cfg);
    opts.clock = clock.clone();
    opts.listen = Some("127.0.0.1:0".parse().expect("addr"));
    let d = Daemon::start(opts).await.expect("daemon");
    let url = format!("http://{}", d.addr);
    let http = reqwest::Client::new();
    while !d.app.is_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Every destination paused: the backlog stays.
    for i in 0..DESTS {
        let r = http
            .post(format!("{url}/v1/destinations/d{i:03}/pause"))
            .bearer_auth("bench")
            .json(&json!({"reason": "bench"}))
            .send()
            .await
            .expect("pause");
        assert!(r.status().is_success(), "pause d{i:03}: {}", r.status());
    }
    // The backlog: 1,000-event batches from `SLUICE_BENCH_INGEST_CONNS` (4) clients.
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let conns: usize = num("SLUICE_BENCH_INGEST_CONNS", 4);
    let mut clients = Vec::new();
    for _ in 0..conns {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while started.elapsed() < Duration::from_secs(secs) {
                let first = next.fetch_add(1000, std::sync::atomic::Ordering::SeqCst);
                if first >= max_events {
                    break;
                }
                let events: Vec<_> = (first..first + 1000)
                    .map(|n| {
                        json!({"event_id": format!("e{n}"), "event_name": "Purchase",
                               "event_time": t0 / 1000, "action_source": "website",
                               "user_data": {"email": "buyer@example.com"}})
                    })
                    .collect();
                let r = http
                    .post(format!("{url}/v1/events"))
                    .bearer_auth("k")
                    .json(&json!({ "events": events }))
                    .send()
                    .await
                    .expect("ingest");
                assert_eq!(
                    r.status().as_u16(),
                    202,
                    "ingest: {}",
                    r.text().await.unwrap_or_default()
                );
                sent += 1000;
            }
            sent
        }));
    }
    let mut sent = 0u64;
    for c in clients {
        sent += c.await.expect("client");
    }
    println!(
        "backlog: {sent} events accepted in {:.1?} (target 10,000,000; each is in all {DESTS} destinations' backlogs)",
        started.elapsed()
    );
    // A day of samples per destination, written through the store writer.
    let per_day = (24 * 3_600_000 / INTERVAL_MS) as usize;
    let base = t0 - 24 * 3_600_000;
    let mut ops = Vec::with_capacity(10_000);
    for k in 0..per_day {
        for i in 0..DESTS {
            ops.push(DeliveryOp::Sample {
                dest: format!("d{i:03}"),
                sample: Sample {
                    at_ms: base + k as i64 * INTERVAL_MS,
                    error_rate: Some(((k * 7 + i) % 100) as f64 / 400.0),
                    queue_depth: (k * 31 % 5000) as u64,
                    delivered: (k % 300) as u64,
                },
            });
        }
        if ops.len() >= 10_000 {
            d.app
                .intake
                .store
                .delivery(std::mem::take(&mut ops))
                .await
                .expect("samples");
        }
    }
    d.app.intake.store.delivery(ops).await.expect("samples");
    println!("series: {} samples per destination", per_day);

    // Sign in.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirect
        .post(format!("{url}/console/signin"))
        .form(&[("token", "bench")])
        .send()
        .await
        .expect("sign in");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie")
        .to_string();

    // The do-nothing route, served the same way (axum over a local listener).
    let noop = axum::Router::new().route("/noop", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let noop_url = format!("http://{}/noop", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, noop).await;
    });

    let mut base_t = time_get(&http, &noop_url, "", rounds).await;
    let mut over = time_get(&http, &format!("{url}/console/"), &cookie, rounds).await;
    let mut dest = time_get(
        &http,
        &format!("{url}/console/destinations/d042"),
        &cookie,
        rounds,
    )
    .await;
    let b50 = pct(&mut base_t, 0.5);
    let b99 = pct(&mut base_t, 0.99);
    for (name, v) in [("overview", &mut over), ("destination page", &mut dest)] {
        let p50 = pct(v, 0.5);
        let p99 = pct(v, 0.99);
        println!(
            "{name:<17} p50 {p50:>10.2?}  p99 {p99:>10.2?}  ({:.0}× / {:.0}× the do-nothing route)",
            p50.as_secs_f64() / b50.as_secs_f64(),
            p99.as_secs_f64() / b99.as_secs_f64()
        );
    }
    println!("do-nothing route  p50 {b50:>10.2?}  p99 {b99:>10.2?}  ({rounds} requests each)");
    d.shutdown().await;
}
