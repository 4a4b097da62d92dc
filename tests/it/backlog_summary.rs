//! The persisted backlog summary against a whole read of the backlog, after every step
//! of seeded random sequences of ingest (with event filters and per-event destination
//! lists), delivery, failures that schedule retries and dead-letter, DLQ replays,
//! pauses, reloads that change routing or age limits, and restarts. Both figures are
//! read in the same read transaction, so they must be equal to the event, always.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::{Clock, ManualClock};
use sluice::config::Platform;
use sluice::delivery::backlog::{read, read_whole, route_of};
use sluice::sim::{self, Fault, FaultScript, SimServer};

const ADMIN: &str = "admin_summary_token";
const DESTS: [&str; 2] = ["hooks", "hooks_p"];

fn config(dir: &std::path::Path, hook_url: &str, filter: &str, age: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"

[storage]
path = "{store}"
max_backlog_age = "2h"

[platforms.webhook]
concurrency = 2
max_batch = 1
retry = {{ base = "10s", max = "1m", max_retries = 2 }}

[[workspaces]]
id = "glasshouse"
plan = "enterprise"
ingest_keys = ["{KEY}"]

[[destinations]]
id = "hooks"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{hook_url}/hook"
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}

[[destinations]]
id = "hooks_p"
workspace = "glasshouse"
platform = "webhook"
endpoint = "{hook_url}/hook"
events = {filter}
credentials = {{ signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}
policy = {{ age_limit = "{age}" }}
"#,
        store = dir.join("sluice.redb").display()
    )
}

/// A small deterministic generator (no dependency on a random source).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

struct Rig {
    d: TestDaemon,
    hook: SimServer,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    filter: &'static str,
    age: &'static str,
}

impl Rig {
    fn text(&self) -> String {
        config(&self.d.dir, &self.hook.url(), self.filter, self.age)
    }

    /// Summary and whole read in one snapshot, for every destination.
    fn check(&self, step: &str) {
        let app = self.d.daemon.as_ref().unwrap().app.clone();
        let rt = app.runtime();
        let cfg = &rt.config;
        let now = self.clock.now_ms();
        let max_age = cfg.storage.max_backlog_age.as_millis() as i64;
        let view = app.intake.store.view().unwrap();
        for d in &cfg.destinations {
            let s = read(&view, d, now, 3_600_000, max_age).unwrap();
            let w = read_whole(&view, d, None, now, 3_600_000, max_age).unwrap();
            assert_eq!(
                (s.depth, s.expiring_soon, s.dlq_depth),
                (w.depth, w.expiring_soon, w.dlq_depth),
                "{step}: {} summary vs whole read (summary {:?}, cursor {:?}, head {:?}, retries {})",
                d.id,
                view.backlog_summary(&d.id).unwrap(),
                view.cursor(&d.id).unwrap(),
                view.head(&d.workspace).unwrap(),
                view.retry_count(&d.id).unwrap(),
            );
            assert_eq!(
                s.oldest_accepted_ms, w.oldest_accepted_ms,
                "{step}: {} oldest",
                d.id
            );
        }
    }

    /// Waits until every summary is counted (no walk under way) and checks it is used.
    async fn settled(&self, step: &str) {
        let app = self.d.daemon.as_ref().unwrap().app.clone();
        for _ in 0..400 {
            let rt = app.runtime();
            let view = app.intake.store.view().unwrap();
            let ready = rt.config.destinations.iter().all(|d| {
                view.cursor(&d.id).unwrap().is_none()
                    || view
                        .backlog_summary(&d.id)
                        .unwrap()
                        .is_some_and(|s| s.walk.is_none() && s.routing == route_of(d).key())
            });
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{step}: a summary was never counted");
    }

    async fn admin(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .d
            .http
            .post(format!("{}{path}", self.d.url))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

async fn run(seed: u64, steps: usize) {
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
    let filter = "[\"Purchase\", \"Lead\"]";
    let age = "none";
    let text = config(dir.path(), &hook.url(), filter, age);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let mut r = Rig {
        d,
        hook,
        clock,
        _dir: dir,
        filter,
        age,
    };
    let mut rng = Lcg(seed);
    let mut n = 0u64;
    let names = ["Purchase", "Lead", "PageView"];
    for i in 0..steps {
        let step = match rng.next(10) {
            0..=3 => {
                let k = 1 + rng.next(12);
                let now = r.clock.now_ms();
                let events: Vec<Value> = (0..k)
                    .map(|_| {
                        n += 1;
                        let mut e = event(&format!("s{seed}-e{n}"), now);
                        e["event_name"] = json!(names[rng.next(3) as usize]);
                        // Event times spread over the last days: some near the age limit.
                        e["event_time"] = json!(now / 1000 - rng.next(8 * 86_400) as i64);
                        if rng.next(4) == 0 {
                            e["destinations"] = json!([DESTS[rng.next(2) as usize]]);
                        }
                        e
                    })
                    .collect();
                let (s, v) = r.d.post(&json!({ "events": events })).await;
                assert_eq!(s, 202, "{v}");
                format!("ingest {k}")
            }
            4 => {
                let f = match rng.next(3) {
                    0 => FaultScript::none(),
                    1 => FaultScript::always(Fault::Transient),
                    _ => FaultScript::every(2, Fault::Invalid),
                };
                r.hook.set_script(f);
                "faults".into()
            }
            5 => {
                let ms = rng.next(90_000) as i64;
                r.clock.advance_ms(ms);
                format!("advance {ms} ms")
            }
            6 => {
                let dest = DESTS[rng.next(2) as usize];
                let what = if rng.next(2) == 0 { "pause" } else { "resume" };
                r.admin(
                    &format!("/v1/destinations/{dest}/{what}"),
                    json!({"reason": "test"}),
                )
                .await;
                format!("{what} {dest}")
            }
            7 => {
                let dest = DESTS[rng.next(2) as usize];
                r.admin("/v1/dlq/replay", json!({"destination": dest}))
                    .await;
                format!("replay {dest}")
            }
            8 => {
                r.filter = if r.filter.contains("Lead") {
                    "[\"Purchase\"]"
                } else {
                    "[\"Purchase\", \"Lead\"]"
                };
                r.age = if rng.next(2) == 0 { "none" } else { "7d" };
                std::fs::write(r.d.dir.join("sluice.toml"), r.text()).unwrap();
                let (s, v) = r.admin("/v1/admin/reload", json!({})).await;
                assert_eq!(s, 200, "{v}");
                format!("reload {} age {}", r.filter, r.age)
            }
            _ => {
                let text = r.text();
                r.d = r.d.restart(&text).await;
                "restart".into()
            }
        };
        let step = format!("seed {seed} step {i}: {step}");
        // Mid-flight: still equal (one snapshot).
        r.check(&step);
        tokio::time::sleep(Duration::from_millis(20)).await;
        r.settled(&step).await;
        r.check(&step);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_equals_a_whole_read_after_every_step() {
    for seed in [1, 2, 3] {
        run(seed, 45).await;
    }
}

/// Regression: once every destination had delivered everything, housekeeping trimmed
/// the whole log; after a restart the log's head was read from an empty log, new
/// events were numbered from 1 again, below every cursor, and were never delivered
/// (found by the random sequence above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_log_keeps_its_numbering_across_a_restart() {
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
    let text = config(dir.path(), &hook.url(), "[\"Purchase\"]", "none");
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let send = |prefix: &'static str| {
        let now = clock.now_ms();
        batch((0..3).map(move |i| format!("{prefix}{i}")), now)
    };
    assert_eq!(d.post(&send("before")).await.0, 202);
    eventually("3 delivered to each", || hook.count() == 6).await;
    // A housekeeping pass trims everything below the cursors.
    let app = d.daemon.as_ref().unwrap().app.clone();
    let passes = app
        .engine
        .housekeeping_passes
        .load(std::sync::atomic::Ordering::SeqCst);
    clock.advance_ms(61_000);
    eventually("a housekeeping pass", || {
        app.engine
            .housekeeping_passes
            .load(std::sync::atomic::Ordering::SeqCst)
            > passes
    })
    .await;
    let d = d.restart(&text).await;
    assert_eq!(d.post(&send("after")).await.0, 202);
    eventually("the new events delivered too", || hook.count() == 12).await;
    for i in 0..3 {
        assert_eq!(hook.accepted_event(&format!("after{i}")), 2, "after{i}");
    }
    d.shutdown().await;
}
