//! How fast a breach becomes a pause: the time from the clock reaching the evaluation
//! that sees an error rate over the threshold to (a) the paused state committed (as the
//! admin API reports it) and (b) the first alert received by a webhook alert receiver.
//! Target: under 1 s. Run: `cargo bench --bench guardrails`.
//!
//! Each round: a fresh daemon in-process (manual clock) with one webhook destination
//! whose simulator fails 4 of every 10 requests, 20 events sent and answered, then the
//! clock is moved to the next evaluation and the real time is measured.
// Benches measure and print; the pedantic lints the library follows would cost
// them clarity.
#![allow(clippy::pedantic)]

mod support;

use std::time::{Duration, Instant};

use sluice::app::{Daemon, StartOptions};
use sluice::clock::{Clock, ManualClock};
use sluice::config::Platform;
use sluice::sim::{self, Fault, FaultScript, Rule};

const T0: i64 = 1_793_620_800_000;
const ROUNDS: usize = 20;

fn main() {
    let rt = support::serve::runtime("sluice-bench");
    let mut to_state = Vec::new();
    let mut to_alert = Vec::new();
    for round in 0..ROUNDS {
        let (s, a) = rt.block_on(one_round(round));
        to_state.push(s);
        to_alert.push(a);
    }
    to_state.sort();
    to_alert.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!("breach → pause, {ROUNDS} rounds (real time from the clock reaching the evaluation):");
    println!(
        "  paused state committed (the worker's state):   p50 {:?}  p99 {:?}  max {:?}",
        p(&to_state, 0.5),
        p(&to_state, 0.99),
        to_state[to_state.len() - 1]
    );
    println!(
        "  first alert received by the webhook channel:    p50 {:?}  p99 {:?}  max {:?}",
        p(&to_alert, 0.5),
        p(&to_alert, 0.99),
        to_alert[to_alert.len() - 1]
    );
    let ok = to_alert[to_alert.len() - 1] < Duration::from_secs(1);
    println!(
        "  [{}] target: < 1 s (worst round)",
        if ok { "PASS" } else { "MISS" }
    );
}

async fn one_round(round: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let mut script = FaultScript::none();
    for k in 1..=4u64 {
        for base in (0..20u64).step_by(10) {
            script = script.with(Rule::Range {
                from: base + k,
                to: base + k,
                fault: Fault::Transient,
            });
        }
    }
    let any = "127.0.0.1:0".parse().expect("addr");
    let platform = sim::start(Platform::Webhook, any, clock.clone(), script)
        .await
        .expect("sim");
    let alerts = sim::start(Platform::Webhook, any, clock.clone(), FaultScript::none())
        .await
        .expect("sim");
    let mut alert_rx = alerts.subscribe();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "bench"
[storage]
path = "{}"
[platforms.webhook]
concurrency = 20
retry = {{ base = "1m", max = "1h" }}
auto_pause = {{ interval = "1m" }}
[[workspaces]]
id = "w"
plan = "enterprise"
ingest_keys = ["k"]
[[destinations]]
id = "hooks"
workspace = "w"
platform = "webhook"
endpoint = "{}/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
[alerts]
webhook = {{ url = "{}/alerts" }}
"#,
        dir.path().join("s.redb").display(),
        platform.url(),
        alerts.url()
    );
    let cfg =
        sluice::config::parse(&text, Some(&dir.path().join("s.toml")), &|_| None).expect("config");
    let mut opts = StartOptions::new(cfg);
    opts.clock = clock.clone();
    opts.listen = Some(any);
    let d = Daemon::start(opts).await.expect("daemon");
    let url = format!("http://{}", d.addr);
    let http = reqwest::Client::new();
    while !d.app.is_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    clock.advance_ms(10_000);
    let events: Vec<_> = (0..20)
        .map(|i| serde_json::json!({"event_id": format!("r{round}e{i}"), "event_name": "Purchase", "event_time": clock.now_ms() / 1000}))
        .collect();
    let r = http
        .post(format!("{url}/v1/events"))
        .bearer_auth("k")
        .json(&serde_json::json!({"events": events}))
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status(), 202);
    while platform.received().iter().filter(|x| x.status != 0).count() < 20
        || d.app
            .engine
            .snapshot("hooks")
            .is_none_or(|s| s.requests_in_flight > 0)
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The breach: the clock reaches the minute mark's evaluation.
    let start = Instant::now();
    clock.advance_ms(50_000);
    let mut to_state = None;
    let mut to_alert = None;
    while to_state.is_none() || to_alert.is_none() {
        if to_alert.is_none() && alert_rx.try_recv().is_ok() {
            to_alert = Some(start.elapsed());
        }
        if to_state.is_none()
            && d.app
                .engine
                .snapshot("hooks")
                .is_some_and(|s| s.state.mode == sluice::store::codec::DestMode::Paused)
        {
            to_state = Some(start.elapsed());
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no pause within 10 s"
        );
        tokio::task::yield_now().await;
    }
    d.shutdown().await;
    platform.shutdown().await;
    alerts.shutdown().await;
    (to_state.expect("state"), to_alert.expect("alert"))
}
