//! Fan-out end to end (issue 7): one stream fanned out to every platform, each on its own
//! simulator, two of them failing the whole time (TikTok answering its transient error,
//! Pinterest refusing the credentials). Under the controlled clock:
//!
//! - the twelve healthy destinations take every event exactly once, before the clock
//!   moves at all (the broken ones delay nothing), in an exact number of requests;
//! - TikTok's events are retried on the backoff schedule (1 s, 2 s, 4 s, 8 s, …) in
//!   one request per step and stay queued; Pinterest is held one second after each
//!   refusal and paused (`auth_failed`) at the third, after which it sends nothing;
//! - the healthy ones get nothing more while the clock runs (no duplicates);
//! - healed, TikTok delivers at its next retry's due time and not before, Pinterest
//!   as soon as it is resumed: each also exactly once, and nothing is left queued or
//!   dead-lettered anywhere.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::config::Platform;
use sluice::sim::{self, Fault, FaultScript, SimServer};

const ADMIN: &str = "admin_fanout_token";
/// The stream: `SLICES` ingest requests of `PER` events.
const SLICES: usize = 6;
const PER: usize = 10;
const N: usize = SLICES * PER;
const PII_KEY: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";

/// Failing with the platform's transient error (retried with backoff).
const TRANSIENT: Platform = Platform::Tiktok;
/// Failing with refused credentials (held, then paused).
const AUTH: Platform = Platform::Pinterest;

fn dest_id(p: Platform) -> String {
    format!("{}_fan", p.name())
}

/// Platforms that carry one event per request.
fn single(p: Platform) -> bool {
    sluice::config::max_batch_limit(p) == 1
}

/// The `[[destinations]]` entry of `p` against its simulator at `url`.
fn destination(p: Platform, url: &str) -> String {
    let rest = match p {
        Platform::Webhook => format!(
            "endpoint = \"{url}/hook\"\ncredentials = {{ signing_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }}"
        ),
        Platform::Meta => "params = { pixel_id = \"1234567890\" }\ncredentials = { access_token = \"meta-token\" }".into(),
        Platform::Tiktok => "params = { pixel_code = \"C1234567890\" }\ncredentials = { access_token = \"tiktok-token\" }".into(),
        Platform::Klaviyo => "credentials = { api_key = \"pk_fanout_key\" }".into(),
        Platform::GoogleAds => "events = [\"Purchase\"]\nparams = { customer_id = \"123-456-7890\", conversion_action_id = \"555\" }\ncredentials = { developer_token = \"dev-token-abc\", access_token = \"ya29.static-access-token\" }".into(),
        Platform::Linkedin => "events = [\"Purchase\"]\nparams = { conversion_rule_id = \"104004\" }\ncredentials = { access_token = \"li-conv-token\" }".into(),
        Platform::Pinterest => "params = { ad_account_id = \"549755885175\" }\ncredentials = { access_token = \"pina_conv_token\" }".into(),
        Platform::Snapchat => "params = { pixel_id = \"a1b2c3d4-pixel\" }\ncredentials = { access_token = \"snap-token\" }".into(),
        Platform::Reddit => "params = { ad_account_id = \"t2_abc\" }\ncredentials = { access_token = \"rdt-token\" }".into(),
        Platform::X => "events = [\"Purchase\"]\nparams = { pixel_id = \"o8z6j\", event_id = \"tw-o8z6j-o8z6k\" }\ncredentials = { access_token = \"x-token\" }".into(),
        Platform::MicrosoftAds => "events = [\"Purchase\"]\nparams = { customer_id = \"1111\", account_id = \"2222\", conversion_name = \"Offline Purchase\" }\ncredentials = { developer_token = \"BBD37VB98\", access_token = \"EwBQA-static-access-token\" }".into(),
        Platform::Taboola => "params = { account_id = \"1234567\" }\nevent_map = { Purchase = \"make_purchase\" }".into(),
        Platform::Outbrain => "event_map = { Purchase = \"Purchase Complete\" }".into(),
        Platform::Criteo => "params = { account_id = \"12345\" }".into(),
    };
    // Webhook's endpoint is the whole URL; the others' replaces the API's host.
    let endpoint = if p == Platform::Webhook {
        String::new()
    } else {
        format!("endpoint = \"{url}\"\n")
    };
    format!(
        "\n[[destinations]]\nid = \"{id}\"\nworkspace = \"glasshouse\"\nplatform = \"{name}\"\n{endpoint}{rest}\n",
        id = dest_id(p),
        name = p.name(),
    )
}

fn config(dir: &Path, sims: &[(Platform, SimServer)]) -> String {
    let mut t = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"

[storage]
path = "{store}"
pii_key_file = "{key}"

[[workspaces]]
id = "glasshouse"
plan = "enterprise"
ingest_keys = ["{KEY}"]
"#,
        store = dir.join("sluice.redb").display(),
        key = dir.join("pii.key").display(),
    );
    // Partial batches go at once: nothing waits for the clock to move.
    for p in Platform::ALL {
        t.push_str(&format!("\n[platforms.{}]\nlinger = \"0s\"\n", p.name()));
    }
    for (p, s) in sims {
        t.push_str(&destination(*p, &s.url()));
    }
    t
}

/// An event every platform can send: email and phone, IP and user agent, and each
/// platform's click id. The Microsoft click id is the event id (Microsoft's dedup key,
/// which its simulator counts).
fn fan_event(id: &str, i: usize, now_ms: i64) -> Value {
    json!({
        "event_id": id,
        "event_name": "Purchase",
        "event_time": now_ms / 1000,
        "action_source": "website",
        "event_source_url": "https://shop.example/checkout/thanks",
        "user_data": {
            "email": format!("buyer{i}@example.com"),
            "phone": format!("+1 415 555 {:04}", 100 + i),
            "client_ip_address": "203.0.113.9",
            "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "gclid": format!("Cj0-{id}"),
            "msclkid": id,
            "li_fat_id": format!("li-{id}"),
            "twclid": format!("tw-{id}"),
            "rdt_cid": format!("rdt-{id}"),
            "ttclid": format!("tt-{id}"),
            "sccid": format!("sc-{id}"),
            "epik": format!("epik-{id}"),
            "tblci": format!("GiDxLZcEVjwEqkGfKQMQndUY-{id}"),
            "ob_click_id": format!("ob-{id}"),
        },
        "custom_data": {"currency": "EUR", "value": 42.5, "order_id": format!("order-{id}")}
    })
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
fn accepted(s: &SimServer) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in s.received().iter().filter(|r| r.accepted) {
        for id in sim::event_ids(s.platform, &r.body) {
            *m.entry(id).or_insert(0) += 1;
        }
    }
    m
}

fn accepted_total(s: &SimServer) -> usize {
    accepted(s).values().sum()
}

/// Requests the simulator has answered.
fn answered(s: &SimServer) -> usize {
    s.received().iter().filter(|r| r.status != 0).count()
}

struct Rig {
    d: TestDaemon,
    clock: Arc<ManualClock>,
    sims: Vec<(Platform, SimServer)>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn sim(&self, p: Platform) -> &SimServer {
        &self.sims.iter().find(|(q, _)| *q == p).unwrap().1
    }

    fn healthy(&self) -> impl Iterator<Item = &(Platform, SimServer)> {
        self.sims
            .iter()
            .filter(|(p, _)| *p != TRANSIENT && *p != AUTH)
    }

    /// The worker's (requests in flight, events held in memory).
    fn worker(&self, p: Platform) -> (usize, usize) {
        let s = self
            .d
            .daemon
            .as_ref()
            .unwrap()
            .app
            .engine
            .snapshot(&dest_id(p))
            .unwrap_or_else(|| panic!("no worker for {}", p.name()));
        (s.requests_in_flight, s.in_memory)
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

    async fn dest(&self, p: Platform) -> Value {
        let (s, v) = self
            .admin("GET", &format!("/v1/destinations/{}", dest_id(p)), None)
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Asserts (state, queue_depth, dlq_depth) of `p`'s destination.
    async fn assert_dest(&self, p: Platform, state: &str, queue: usize, dlq: usize) {
        let v = self.dest(p).await;
        assert_eq!(
            (
                v["state"].as_str(),
                v["queue_depth"].as_u64(),
                v["dlq_depth"].as_u64()
            ),
            (Some(state), Some(queue as u64), Some(dlq as u64)),
            "{}: {v}",
            p.name()
        );
    }

    /// Waits until the failing destinations have answered `tiktok` and `pinterest`
    /// requests and settled them, then lets any request that should not happen show.
    async fn settle_failing(&self, tiktok: usize, pinterest: usize) {
        let (t, p) = (self.sim(TRANSIENT), self.sim(AUTH));
        until(
            &format!("{tiktok} tiktok and {pinterest} pinterest answers settled"),
            || {
                let ok = answered(t) == tiktok
                    && answered(p) == pinterest
                    && self.worker(TRANSIENT) == (0, 0)
                    && self.worker(AUTH).0 == 0;
                async move { ok }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(t.count(), tiktok, "tiktok sent nothing more");
        assert_eq!(p.count(), pinterest, "pinterest sent nothing more");
    }
}

/// The requests of `s` after the first `skip`: (arrival, event ids, accepted).
fn requests(s: &SimServer, skip: usize) -> Vec<(i64, Vec<String>, bool)> {
    s.received()
        .iter()
        .skip(skip)
        .map(|r| (r.at_ms, sim::event_ids(s.platform, &r.body), r.accepted))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stream_to_every_platform_two_failing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pii.key"), format!("{PII_KEY}\n")).unwrap();
    let clock = ManualClock::new(T0_MS);
    let mut sims = Vec::new();
    for p in Platform::ALL {
        let script = match p {
            TRANSIENT => FaultScript::always(Fault::Transient),
            AUTH => FaultScript::always(Fault::Auth),
            _ => FaultScript::none(),
        };
        let s = sim::start(p, "127.0.0.1:0".parse().unwrap(), clock.clone(), script)
            .await
            .unwrap();
        sims.push((p, s));
    }
    assert_eq!(sims.len(), 14);
    let text = config(dir.path(), &sims);
    let d = TestDaemon::start_with(dir.path(), &text, clock.clone(), None).await;
    let r = Rig {
        d,
        clock: clock.clone(),
        sims,
        _dir: dir,
    };

    // 1. The stream, at T0: six requests of ten. Each slice is delivered by every
    //    healthy destination (and answered by the failing ones) before the next is sent.
    let ids: Vec<String> = (0..N).map(|i| format!("fan-{i:02}")).collect();
    for k in 0..SLICES {
        let slice: Vec<Value> = (k * PER..(k + 1) * PER)
            .map(|i| fan_event(&ids[i], i, T0_MS))
            .collect();
        let (s, v) = r.d.post(&json!({ "events": slice })).await;
        assert_eq!((s, v["accepted"].as_u64()), (202, Some(PER as u64)), "{v}");
        let upto = (k + 1) * PER;
        for (p, s) in r.healthy() {
            until(&format!("{} delivers slice {k}", p.name()), || {
                let ok = accepted_total(s) >= upto && r.worker(*p) == (0, 0);
                async move { ok }
            })
            .await;
        }
        // TikTok fails each slice once (retry due at T0 + 1 s); Pinterest's one refusal
        // holds it for a second, so later slices only queue up in memory.
        let (t, pin) = (r.sim(TRANSIENT), r.sim(AUTH));
        until(&format!("the failing ones answer slice {k}"), || {
            let ok = answered(t) == k + 1
                && r.worker(TRANSIENT) == (0, 0)
                && answered(pin) == 1
                && r.worker(AUTH) == (0, upto);
            async move { ok }
        })
        .await;
    }
    assert_eq!(r.d.clock_ms(), T0_MS, "the clock has not moved");

    // Every healthy platform: each event exactly once, all at T0, in an exact number of
    // requests (one per event, or one per slice for the batching platforms).
    let mut healthy_counts = HashMap::new();
    for (p, s) in r.healthy() {
        let got = accepted(s);
        assert_eq!(got.len(), N, "{}: {got:?}", p.name());
        for id in &ids {
            assert_eq!(got.get(id), Some(&1), "{}: {id}", p.name());
        }
        let reqs = requests(s, 0);
        let want = if single(*p) { N } else { SLICES };
        assert_eq!(reqs.len(), want, "{} requests", p.name());
        for (at, evs, ok) in &reqs {
            assert!(*ok, "{}: every request accepted", p.name());
            assert_eq!(*at, T0_MS, "{}: delivered before the clock moved", p.name());
            assert_eq!(evs.len(), if single(*p) { 1 } else { PER }, "{}", p.name());
        }
        r.assert_dest(*p, "active", 0, 0).await;
        healthy_counts.insert(*p, s.count());
    }
    // The failing ones: nothing accepted, everything held.
    let (t, pin) = (r.sim(TRANSIENT), r.sim(AUTH));
    let treqs = requests(t, 0);
    assert_eq!(treqs.len(), SLICES);
    for (k, (at, evs, ok)) in treqs.iter().enumerate() {
        assert_eq!((*at, *ok), (T0_MS, false));
        assert_eq!(evs, &ids[k * PER..(k + 1) * PER]);
    }
    assert_eq!(requests(pin, 0), vec![(T0_MS, ids[..PER].to_vec(), false)]);
    assert_eq!(pin.received()[0].status, 401);
    r.assert_dest(TRANSIENT, "active", N, 0).await;
    r.assert_dest(AUTH, "active", N, 0).await;

    // 2. The clock runs through TikTok's retry steps: 1 s, 2 s, 4 s, 8 s after each
    //    failure. Each step is one request of every event, refused again. Pinterest,
    //    held 1 s after each refusal, sends everything at T0+1 s, again at T0+3 s, and
    //    that third refusal pauses it: it sends nothing after that.
    let steps: [(i64, usize); 4] = [(1_000, 2), (2_000, 3), (4_000, 3), (8_000, 3)];
    let mut at = T0_MS;
    for (n, (step, pin_answers)) in steps.into_iter().enumerate() {
        r.clock.advance_ms(step);
        at += step;
        r.settle_failing(SLICES + n + 1, pin_answers).await;
        let last = requests(t, SLICES + n);
        assert_eq!(
            last,
            vec![(at, ids.clone(), false)],
            "tiktok retry {}",
            n + 1
        );
        if pin_answers == n + 2 {
            assert_eq!(
                requests(pin, pin_answers - 1),
                vec![(at, ids.clone(), false)],
                "pinterest at step {}",
                n + 1
            );
        }
        for (p, s) in r.healthy() {
            assert_eq!(s.count(), healthy_counts[p], "{}: nothing more", p.name());
        }
        if n == 0 {
            r.assert_dest(AUTH, "active", N, 0).await;
        }
    }
    assert_eq!(at, T0_MS + 15_000);
    assert!(pin.received().iter().all(|x| x.status == 401));
    assert!(t.received().iter().all(|x| x.status == 200 && !x.accepted));
    r.assert_dest(TRANSIENT, "active", N, 0).await;
    let v = r.dest(AUTH).await;
    assert_eq!(
        (
            v["state"].as_str(),
            v["paused_reason"].as_str(),
            v["queue_depth"].as_u64(),
            v["dlq_depth"].as_u64(),
        ),
        (Some("paused"), Some("auth_failed"), Some(N as u64), Some(0)),
        "{v}"
    );
    assert_eq!(v["paused_at"], "2026-11-02T12:00:03.000Z", "{v}");

    // 3. Healed. TikTok's fifth retry is due 16 s after the fourth failure (T0+31 s):
    //    nothing goes before then; Pinterest stays paused until resumed.
    t.set_script(FaultScript::none());
    pin.set_script(FaultScript::none());
    r.clock.advance_ms(15_999);
    r.settle_failing(SLICES + 4, 3).await;
    assert_eq!(accepted_total(t), 0);
    let (s, v) = r
        .admin(
            "POST",
            &format!("/v1/destinations/{}/resume", dest_id(AUTH)),
            Some(json!({"reason": "token rotated"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["previous_pause_reason"], "auth_failed", "{v}");
    until("pinterest delivers its backlog once resumed", || {
        let ok = accepted_total(pin) >= N && r.worker(AUTH) == (0, 0);
        async move { ok }
    })
    .await;
    assert_eq!(
        requests(pin, 3),
        vec![(T0_MS + 30_999, ids.clone(), true)],
        "pinterest: the whole backlog in one request at the resume"
    );
    assert_eq!(t.count(), SLICES + 4, "tiktok's retry is not due yet");
    r.clock.advance_ms(1);
    until("tiktok delivers at its retry's due time", || {
        let ok = accepted_total(t) >= N && r.worker(TRANSIENT) == (0, 0);
        async move { ok }
    })
    .await;
    assert_eq!(
        requests(t, SLICES + 4),
        vec![(T0_MS + 31_000, ids.clone(), true)]
    );

    // 4. Everything everywhere exactly once; nothing queued or dead-lettered. Another
    //    two minutes (past the longest backoff, short of an auto-pause evaluation)
    //    send nothing more.
    r.clock.advance_ms(130_000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (p, s) in &r.sims {
        let got = accepted(s);
        assert_eq!(got.len(), N, "{}", p.name());
        assert!(
            ids.iter().all(|id| got.get(id) == Some(&1)),
            "{}: each event exactly once: {got:?}",
            p.name()
        );
        r.assert_dest(*p, "active", 0, 0).await;
    }
    for (p, s) in r.healthy() {
        assert_eq!(s.count(), healthy_counts[p], "{}", p.name());
    }
    assert_eq!(t.count(), SLICES + 5);
    assert_eq!(pin.count(), 4);
    r.d.shutdown().await;
    for (_, s) in r.sims {
        s.shutdown().await;
    }
}
