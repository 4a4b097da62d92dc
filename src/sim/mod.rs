//! Local simulators of the destination platforms: real HTTP servers (axum) that answer
//! like the platform does (platforms.md), for tests and for `sluice simulate`. There is
//! no internet here; tests never need it.
//!
//! Each simulator:
//! - answers success in the platform's shape and every error shape of platforms.md
//!   "Classification" (Meta Graph errors, TikTok errors inside HTTP 200, Klaviyo
//!   JSON:API `errors[]`, webhook statuses, LinkedIn's 422 `Index: n`, Pinterest's
//!   failed events and X's short `conversions_processed` inside a 200, Snapchat's
//!   `INVALID`, Google Ads `partialFailureError` and Microsoft Ads `PartialErrors`
//!   inside HTTP 200), with `Retry-After` where scripted;
//! - for Google Ads and Microsoft Ads, also serves the OAuth token endpoint and accepts
//!   only unexpired access tokens (`oauth`);
//! - validates what it receives the way the platform does (Meta: an invalid event, or
//!   one older than 7 days, fails the whole request; Reddit answers an all-or-nothing
//!   400 naming the invalid events in `invalid_events`; Taboola's bulk endpoint answers
//!   204 without validating; Outbrain's pixel takes one GET per conversion; Criteo
//!   answers 200 with `errors`);
//! - enforces the platform's own rate limit (TikTok 600 requests/min sliding, per
//!   token; Klaviyo 350/s and 3,500/min fixed windows, per key; Pinterest 5,000/min per
//!   ad account and X 100,000/15 min per pixel, sliding; the others none),
//!   overridable with [`SimOptions::rate_limits`];
//! - injects faults from a deterministic [`FaultScript`] (never random);
//! - reads time only from the injected [`SharedClock`] (latency, timeouts, rate-limit
//!   windows, event age, the `Date` header), so tests under a manual clock are exact;
//! - honours the platform's test mode where it has one (Meta and TikTok
//!   `test_event_code`, Google Ads `validateOnly`): such a request is answered as usual
//!   and recorded with its [`Received::test_mark`], and never counted as accepted;
//! - records every request ([`Received`]) for tests to inspect: each is parsed once and
//!   kept once (shared with [`SimServer::subscribe`]rs, copied only when a test asks
//!   for [`SimServer::received`]); [`SimServer::set_keep_bodies`]`(false)` keeps only
//!   the event ids of answered requests (for benchmarks).
//!
//! What is common (recording, the script's transport faults — latency, timeout, server
//! error, redirect, gone —, the `Date` header) is here, the rate-limit windows in
//! `limits`; what is the platform's (its answers, its own faults' shapes, where its
//! bodies carry event ids, its default limits, its token endpoint) is its module's one
//! implementation of the `PlatformSim` trait, and `registry` is the one place that
//! picks it by platform.

mod cli;
mod criteo;
mod google_ads;
mod klaviyo;
mod limits;
mod linkedin;
mod meta;
mod microsoft_ads;
mod oauth;
mod outbrain;
mod pinterest;
mod reddit;
mod registry;
mod script;
mod snapchat;
mod taboola;
mod tiktok;
mod webhook;
mod x;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::Value;

pub use cli::{SimulateArgs, run_cli};
pub use limits::RateLimit;
pub use script::{Fault, FaultScript, RetryAfter, Rule, TIMEOUT_HOLD_MS};

use limits::Limiter;
use registry::{Ids, PlatformSim, json_body, sim_for};

use crate::clock::SharedClock;
use crate::config::Platform;

/// One request as the simulator received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// 1-based, over the server's life.
    pub seq: u64,
    /// Arrival, on the simulator's clock.
    pub at_ms: i64,
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body's exact bytes (signatures are computed over these).
    pub raw_body: Vec<u8>,
    /// The status answered (0 while the answer is pending).
    pub status: u16,
    /// Whether the platform took the events (its success answer). A request marked as
    /// a test is never accepted: the platform answers it, and counts nothing.
    pub accepted: bool,
    /// The request's test marker, as the platform reads it: Meta's and TikTok's
    /// `test_event_code`, `validateOnly` for Google Ads' `validateOnly: true`; None for
    /// live requests (and on platforms without a test mode).
    pub test_mark: Option<String>,
    /// The body answered when the status is not 2xx (at most 2,000 bytes, as text):
    /// what `sluice simulate` prints under an error.
    pub error_body: Option<String>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Settings beyond the fault script.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// None: the platform's own limits (see the module doc).
    pub rate_limits: Option<Vec<RateLimit>>,
    /// The credential the simulator expects (Meta/TikTok access token, Klaviyo API key,
    /// webhook `whsec_…` secret, whose signatures it then verifies). None: any non-empty
    /// credential passes and webhook signatures are not checked.
    pub credential: Option<String>,
}

/// The body of `POST /_sim/faults`: what to answer from now on (request numbers start
/// again at 1). Every field is optional; `{}` clears every fault.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultControl {
    /// The fault (as `--fault`: `throttle`, `auth`, `transient`, `status:503`, …);
    /// default `transient` when `fail_every` or `count` is given.
    pub fault: Option<String>,
    /// Answer every N-th request with the fault (the rate).
    pub fail_every: Option<u64>,
    /// Answer the next N requests with the fault, then none (the duration).
    pub count: Option<u64>,
    /// `Retry-After` seconds of the throttle fault.
    pub retry_after: Option<u64>,
    /// Delay before every answer, ms.
    pub latency_ms: Option<i64>,
}

impl FaultControl {
    /// The script this asks for.
    pub fn script(&self) -> Result<FaultScript, String> {
        let mut s = FaultScript::none().with_latency(self.latency_ms.unwrap_or(0).max(0));
        let fault = || {
            Fault::parse(
                self.fault.as_deref().unwrap_or("transient"),
                self.retry_after,
            )
        };
        match (self.fail_every, self.count) {
            (Some(0), _) => return Err("fail_every must be at least 1".into()),
            (_, Some(0)) => return Err("count must be at least 1".into()),
            (Some(n), None) => s = s.with(Rule::Every { n, fault: fault()? }),
            (None, Some(to)) => {
                s = s.with(Rule::Range {
                    from: 1,
                    to,
                    fault: fault()?,
                });
            }
            (Some(_), Some(_)) => return Err("give fail_every or count, not both".into()),
            (None, None) if self.fault.is_some() => s = s.with(Rule::Always(fault()?)),
            (None, None) => {}
        }
        Ok(s)
    }
}

/// The platform's default limits.
pub fn default_rate_limits(p: Platform) -> Vec<RateLimit> {
    sim_for(p).limits()
}

/// One recorded request.
struct Slot {
    rec: Arc<Received>,
    /// The event ids of the body, once the body itself was dropped (bodies not kept).
    ids: Option<Box<[Box<str>]>>,
}

impl Slot {
    /// The request as [`SimServer::received`] shows it: with a body of just its event
    /// ids (in the platform's shape) when the body was not kept.
    fn to_received(&self, p: Ids) -> Received {
        match &self.ids {
            None => (*self.rec).clone(),
            Some(ids) => Received {
                seq: self.rec.seq,
                at_ms: self.rec.at_ms,
                method: self.rec.method.clone(),
                path: self.rec.path.clone(),
                headers: self.rec.headers.clone(),
                body: p.body(ids),
                raw_body: Vec::new(),
                status: self.rec.status,
                accepted: self.rec.accepted,
                test_mark: self.rec.test_mark.clone(),
                error_body: self.rec.error_body.clone(),
            },
        }
    }

    /// Calls `f` with each event id the request carried.
    fn for_each_id(&self, p: Ids, mut f: impl FnMut(&str)) {
        match &self.ids {
            Some(ids) => ids.iter().for_each(|id| f(id)),
            None => p.for_each(&self.rec.body, f),
        }
    }
}

struct Shared {
    /// Serve `POST /_sim/faults` ([`SimServer::enable_control`]).
    control: AtomicBool,
    sim: &'static dyn PlatformSim,
    clock: SharedClock,
    /// The script and how many requests it has seen.
    script: Mutex<(FaultScript, u64)>,
    received: Mutex<Vec<Slot>>,
    /// Whether answered requests keep their bodies (else only their event ids).
    keep_bodies: AtomicBool,
    limiter: Mutex<Limiter>,
    limits: Vec<RateLimit>,
    /// When (simulator clock) the rate limit refused a request: `sluice drill` tells
    /// these throttles, caused by the sender's pacing, from scripted ones.
    limited: Mutex<Vec<i64>>,
    credential: Option<String>,
    seq: AtomicU64,
    shutdown: tokio::sync::watch::Sender<bool>,
    events: tokio::sync::broadcast::Sender<Arc<Received>>,
}

/// What a platform module answers.
pub(crate) struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    accepted: bool,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(v).unwrap_or_default(),
            accepted: false,
        }
    }

    fn plain(status: u16, text: &str) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: text.as_bytes().to_vec(),
            accepted: false,
        }
    }

    fn accepted(mut self) -> Self {
        self.accepted = true;
        self
    }

    fn header(mut self, k: &str, v: String) -> Self {
        self.headers.push((k.into(), v));
        self
    }

    fn retry_after(self, ra: Option<RetryAfter>, now_ms: i64) -> Self {
        match ra {
            None => self,
            Some(RetryAfter::Seconds(s)) => self.header("retry-after", s.to_string()),
            Some(RetryAfter::HttpDate { in_secs }) => {
                self.header("retry-after", http_date(now_ms + in_secs * 1000))
            }
        }
    }
}

/// The request as a platform module sees it.
pub(crate) struct Req<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a Value,
    pub raw: &'a [u8],
    pub now_ms: i64,
    pub seq: u64,
}

impl Req<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| percent_decode(v))
        })
    }
}

impl Shared {
    fn admit(&self, key: &str, cost: u64, now: i64) -> Result<(), i64> {
        let r = self
            .limiter
            .lock()
            .unwrap()
            .admit(&self.limits, key, cost, now);
        if r.is_err() {
            self.limited.lock().unwrap().push(now);
        }
        r
    }
}

/// A running simulator.
pub struct SimServer {
    pub addr: SocketAddr,
    pub platform: Platform,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the simulator of `platform` on `listen` (port 0: any free port; see
/// [`SimServer::addr`]) with the platform's own limits.
pub async fn start(
    platform: Platform,
    listen: SocketAddr,
    clock: SharedClock,
    script: FaultScript,
) -> anyhow::Result<SimServer> {
    start_with(platform, listen, clock, script, SimOptions::default()).await
}

/// [`start`] with options.
pub async fn start_with(
    platform: Platform,
    listen: SocketAddr,
    clock: SharedClock,
    script: FaultScript,
    opts: SimOptions,
) -> anyhow::Result<SimServer> {
    let sim = sim_for(platform);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        sim,
        clock,
        script: Mutex::new((script, 0)),
        received: Mutex::new(Vec::new()),
        keep_bodies: AtomicBool::new(true),
        limiter: Mutex::new(Limiter::default()),
        limits: opts.rate_limits.unwrap_or_else(|| sim.limits()),
        limited: Mutex::new(Vec::new()),
        credential: opts.credential,
        control: AtomicBool::new(false),
        seq: AtomicU64::new(0),
        shutdown,
        events: tokio::sync::broadcast::channel(1024).0,
    });
    let app = Router::new().fallback(handle).with_state(shared.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.wait_for(|v| *v).await;
            })
            .await;
    });
    Ok(SimServer {
        addr,
        platform,
        shared,
        task: Some(task),
    })
}

impl SimServer {
    /// `http://<addr>`: the destination `endpoint` for meta/tiktok/klaviyo.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `POST /_sim/faults` from now on (`sluice simulate`): a [`FaultControl`]
    /// body replaces the fault script at run time. Off by default: an embedded
    /// simulator's every path is the platform's.
    pub fn enable_control(&self) {
        self.shared.control.store(true, Ordering::Relaxed);
    }

    /// Replaces the script; its request numbers start again at 1.
    pub fn set_script(&self, script: FaultScript) {
        *self.shared.script.lock().unwrap() = (script, 0);
    }

    /// Every request received so far, in arrival order (a copy: tests only).
    pub fn received(&self) -> Vec<Received> {
        let p = self.shared.sim.ids();
        self.shared
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.to_received(p))
            .collect()
    }

    /// Whether answered requests keep their body (default true). With false only their
    /// event ids are kept: [`SimServer::received`] then shows each body as just those
    /// ids in the platform's shape (what [`event_ids`] reads) and `raw_body` empty,
    /// [`SimServer::count_event`] and [`SimServer::accepted_event`] work as before, and
    /// [`SimServer::subscribe`]rs see `body` `Null`. For benchmarks, whose simulators
    /// would otherwise hold every body in memory.
    pub fn set_keep_bodies(&self, keep: bool) {
        self.shared.keep_bodies.store(keep, Ordering::Relaxed);
    }

    /// When (simulator clock) the platform's rate limit refused a request, in order:
    /// throttles the sender's own pacing caused, not the fault script's.
    pub fn rate_limited(&self) -> Vec<i64> {
        self.shared.limited.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// How many received requests carried this `event_id` (the platform's dedup field).
    pub fn count_event(&self, event_id: &str) -> usize {
        self.count_where(event_id, false)
    }

    /// How many requests carrying this `event_id` the platform accepted.
    pub fn accepted_event(&self, event_id: &str) -> usize {
        self.count_where(event_id, true)
    }

    fn count_where(&self, event_id: &str, accepted_only: bool) -> usize {
        let p = self.shared.sim.ids();
        let mut n = 0;
        for s in self.shared.received.lock().unwrap().iter() {
            if !accepted_only || s.rec.accepted {
                s.for_each_id(p, |id| n += usize::from(id == event_id));
            }
        }
        n
    }

    /// Forgets what was received (the script's count is kept).
    pub fn clear_received(&self) {
        self.shared.received.lock().unwrap().clear();
    }

    /// Each request once answered.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Received>> {
        self.shared.events.subscribe()
    }

    /// Stops accepting, releases requests held by `Timeout`/latency, and waits for the
    /// server to finish.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// The dedup ids (`event_id`s) a request body carries, per platform.
pub fn event_ids(p: Platform, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    sim_for(p)
        .ids()
        .for_each(body, |id| out.push(id.to_string()));
    out
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if s.control.load(Ordering::Relaxed) && uri.path() == "/_sim/faults" && method == Method::POST {
        let set = serde_json::from_slice::<FaultControl>(&raw)
            .map_err(|e| e.to_string())
            .and_then(|c| c.script());
        let (status, body) = match set {
            Ok(script) => {
                let shown = format!("{script:?}");
                *s.script.lock().unwrap() = (script, 0);
                (200, serde_json::json!({"ok": true, "script": shown}))
            }
            Err(e) => (400, serde_json::json!({"ok": false, "error": e})),
        };
        return Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap_or_else(|_| Response::new(Body::empty()));
    }
    let now_ms = s.clock.now_ms();
    let seq = s.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let keep = s.keep_bodies.load(Ordering::Relaxed);
    // Parsed once; the record shares it with the platform module and subscribers.
    let body = s.sim.body(&raw, uri.query());
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
    let test_mark = s.sim.test_mark(&body);
    let rec = Arc::new(Received {
        seq,
        at_ms: now_ms,
        method: method.as_str().to_string(),
        path,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        raw_body: if keep { raw.to_vec() } else { Vec::new() },
        status: 0,
        accepted: false,
        test_mark,
        error_body: None,
    });
    let index = {
        let mut rec_list = s.received.lock().unwrap();
        rec_list.push(Slot {
            rec: rec.clone(),
            ids: None,
        });
        rec_list.len() - 1
    };
    // OAuth token requests are not the API: the script neither faults nor counts them.
    let token_req = s.sim.is_token_path(uri.path());
    let (fault, latency) = {
        let mut g = s.script.lock().unwrap();
        if token_req {
            (None, 0)
        } else {
            g.1 += 1;
            (g.0.fault_for(g.1).cloned(), g.0.latency_ms)
        }
    };

    let mut reply = None;
    if latency > 0 && !sleep_or_shutdown(&s, latency).await {
        reply = Some(Reply::plain(503, "simulator shutting down"));
    }
    if reply.is_none() {
        reply = match &fault {
            Some(Fault::Latency(ms)) => {
                if sleep_or_shutdown(&s, *ms).await {
                    None
                } else {
                    Some(Reply::plain(503, "simulator shutting down"))
                }
            }
            Some(Fault::Timeout) => {
                sleep_or_shutdown(&s, TIMEOUT_HOLD_MS).await;
                Some(Reply::plain(504, "Gateway Timeout"))
            }
            Some(Fault::ServerError(st)) => Some(Reply::plain(*st, "Server Error")),
            Some(Fault::Redirect) => {
                Some(Reply::plain(307, "").header("location", "/moved".into()))
            }
            Some(Fault::Gone) => Some(Reply::plain(410, "Gone")),
            Some(f) => Some(s.sim.fault(f, now_ms, seq, &rec.body)),
            None => None,
        };
    }
    let reply = match reply {
        Some(r) => r,
        None => {
            // The clock may have moved during latency.
            let now_ms = s.clock.now_ms();
            let (p, q) = (uri.path(), uri.query());
            let req = Req {
                method: method.as_str(),
                path: p,
                query: q,
                headers: &headers,
                body: &rec.body,
                raw: &raw,
                now_ms,
                seq,
            };
            s.sim.handle(&s, &req)
        }
    };

    // Without bodies, only the ids stay (taken before the lock).
    let ids = (!keep).then(|| {
        let mut ids = Vec::new();
        s.sim
            .ids()
            .for_each(&rec.body, |id| ids.push(Box::<str>::from(id)));
        ids.into_boxed_slice()
    });
    // The record is now only in the list (and in no subscriber's hands yet), so it is
    // updated in place, not copied.
    drop(rec);
    let mut dropped = Value::Null;
    let done = {
        let mut list = s.received.lock().unwrap();
        // `clear_received` may have moved it meanwhile.
        let at = if list.get(index).is_some_and(|x| x.rec.seq == seq) {
            Some(index)
        } else {
            list.iter().rposition(|x| x.rec.seq == seq)
        };
        at.map(|i| {
            let slot = &mut list[i];
            let r = Arc::make_mut(&mut slot.rec);
            r.status = reply.status;
            r.accepted = reply.accepted && r.test_mark.is_none();
            if !(200..300).contains(&reply.status) {
                let cut = reply.body.len().min(2000);
                r.error_body = Some(String::from_utf8_lossy(&reply.body[..cut]).into_owned());
            }
            if let Some(ids) = ids {
                dropped = std::mem::take(&mut r.body);
                slot.ids = Some(ids);
            }
            slot.rec.clone()
        })
    };
    drop(dropped);
    if let Some(r) = done
        && s.events.receiver_count() > 0
    {
        let _ = s.events.send(r);
    }
    let mut b = Response::builder()
        .status(reply.status)
        .header("date", http_date(s.clock.now_ms()));
    for (k, v) in &reply.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    // Every answer carries an id of its request, as the platforms do (Meta and TikTok
    // also put theirs in the body): what sluice's request log and trace show.
    if let Some(h) = s.sim.request_id_header()
        && !reply.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(h))
    {
        b = b.header(h, format!("sim-{seq:08}"));
    }
    b.body(Body::from(reply.body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Sleeps `ms` on the simulator's clock; false if shutdown came first.
async fn sleep_or_shutdown(s: &Shared, ms: i64) -> bool {
    let mut rx = s.shutdown.subscribe();
    tokio::select! {
        () = s.clock.sleep_ms(ms) => true,
        _ = rx.wait_for(|v| *v) => false,
    }
}

/// IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`), as `Date` and `Retry-After` carry.
pub fn http_date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_kept_or_only_ids() {
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let server = start_with(
            Platform::Tiktok,
            "127.0.0.1:0".parse().unwrap(),
            clock,
            FaultScript::default(),
            SimOptions {
                rate_limits: Some(vec![]),
                credential: None,
            },
        )
        .await
        .unwrap();
        let mut rx = server.subscribe();
        let body = serde_json::json!({"event_source": "web", "event_source_id": "P",
            "data": [{"event": "X", "event_time": 1, "event_id": "e1"},
                     {"event": "X", "event_time": 1, "event_id": "e2"}]});
        let post = || async {
            reqwest::Client::new()
                .post(format!("{}{}", server.url(), tiktok::PATH))
                .header("access-token", "t")
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        };
        assert_eq!(post().await, 200);
        let seen = rx.recv().await.unwrap();
        assert_eq!((seen.seq, seen.status, seen.accepted), (1, 200, true));
        assert_eq!(seen.body, body);
        server.set_keep_bodies(false);
        assert_eq!(post().await, 200);
        let got = server.received();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].body, body);
        assert_eq!(
            serde_json::from_slice::<Value>(&got[0].raw_body).unwrap(),
            body
        );
        assert_eq!(event_ids(Platform::Tiktok, &got[1].body), ["e1", "e2"]);
        assert!(got[1].raw_body.is_empty() && got[1].accepted && got[1].status == 200);
        assert_eq!(got[1].header("access-token"), Some("t"));
        assert_eq!(server.count_event("e2"), 2);
        assert_eq!(server.accepted_event("e1"), 2);
        assert_eq!(server.count_event("e3"), 0);
        server.shutdown().await;
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            http_date(1_445_412_480_000),
            "Wed, 21 Oct 2015 07:28:00 GMT"
        );
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
    }
}
