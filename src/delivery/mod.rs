//! Delivery (SPEC §3): one worker task per destination reads its workspace's log from
//! its own cursor, routes, paces by scope, batches, sends through the platform adapter,
//! and commits each outcome: cursor moves, retry schedule, DLQ.
//!
//! Isolation: every destination has its own task, its own in-flight limit and its own
//! position in the log, so a slow, paused or throttled destination holds only its own
//! backlog; scopes (pixels, tokens…) are shared only where the platform shares them.
//!
//! Time is read through the injected [`crate::clock::Clock`]: waits, linger, retry due
//! times, throttle holds and request timeouts all run on it, so tests drive a 255 s
//! retry ladder by moving a manual clock.

pub mod backlog;
pub mod dlq;
pub mod housekeeping;
pub mod pacer;
pub mod request_log;
pub mod test_send;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use crate::clock::SharedClock;
use crate::config::{Config, Destination};
use crate::metrics::{DestGauges, DestLabels, Metrics};
use crate::platforms::{self, Adapter};
use crate::store::Store;
use crate::store::backlog::SharedRouting;
use pacer::{Pacers, ScopePacer};

pub use backlog::Backlog;
pub use worker::{Command, CommandReply, DestSnapshot};

/// What a worker needs to know of its destination; replaced on reload.
pub struct DestCtx {
    pub dest: Destination,
    pub adapter: &'static dyn Adapter,
    pub pacers: Vec<Arc<Mutex<ScopePacer>>>,
    /// `storage.max_backlog_age` in ms (the age limit of platforms without one).
    pub max_backlog_age_ms: i64,
    /// `storage.request_log`: requests kept in its request log (0: none recorded).
    pub request_log: u32,
    /// The log head when this destination was added by a reload: it receives events
    /// accepted from then on. None at start-up: the head when the worker first runs.
    pub initial_head: Option<u64>,
    /// Requests are marked as tests ([`Adapter::mark_test`]): only a one-off test send
    /// ([`test_send`]) sets it, never a worker's context.
    pub mark_test: bool,
}

struct WorkerHandle {
    ctx: watch::Sender<Arc<DestCtx>>,
    commands:
        tokio::sync::mpsc::UnboundedSender<(Command, tokio::sync::oneshot::Sender<CommandReply>)>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    snapshot: Arc<Mutex<DestSnapshot>>,
}

/// Told every committed state change (the alerter).
pub type Notifier = Arc<dyn Fn(crate::health::Notice) + Send + Sync>;

pub struct Engine {
    store: Store,
    pub(crate) clock: SharedClock,
    http: reqwest::Client,
    /// OAuth access tokens of the destinations that refresh them (Google, Microsoft).
    oauth: platforms::oauth::TokenCache,
    pacers: Pacers,
    pii_key: Option<[u8; 32]>,
    workers: Mutex<HashMap<String, WorkerHandle>>,
    /// Every destination's routing, for the store's backlog summaries.
    routing: SharedRouting,
    /// The runtime the workers (and their requests) run on, apart from the one that
    /// serves HTTP: a burst of ingest competes with delivery for the CPU as threads do
    /// (the OS shares it), instead of queueing delivery behind request parsing.
    rt: DeliveryRuntime,
    /// Workers of destinations removed by a reload, until they have stopped.
    retired: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    wakes: Mutex<HashMap<String, Arc<Notify>>>,
    /// The configuration of the last sync (housekeeping reads it).
    config: Mutex<Option<Arc<Config>>>,
    housekeeping: Mutex<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>>,
    /// Told every state change after it is committed (alerts).
    notifier: Mutex<Option<Notifier>>,
    /// Housekeeping passes finished (tests wait on it).
    pub housekeeping_passes: std::sync::atomic::AtomicU64,
    /// Delivery counters and windows (SPEC §10).
    pub metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(
        store: Store,
        clock: SharedClock,
        pii_key: Option<[u8; 32]>,
        routing: SharedRouting,
    ) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client");
        Arc::new(Self {
            store,
            clock,
            http,
            oauth: platforms::oauth::TokenCache::default(),
            pacers: Pacers::default(),
            pii_key,
            workers: Mutex::new(HashMap::new()),
            retired: Mutex::new(HashMap::new()),
            routing,
            rt: DeliveryRuntime::new(),
            wakes: Mutex::new(HashMap::new()),
            config: Mutex::new(None),
            housekeeping: Mutex::new(None),
            housekeeping_passes: std::sync::atomic::AtomicU64::new(0),
            notifier: Mutex::new(None),
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// Sets what is told of every committed state change (the alerter).
    pub fn set_notifier(&self, f: Notifier) {
        *self.notifier.lock().expect("notifier lock") = Some(f);
    }

    pub(crate) fn notify(&self, n: crate::health::Notice) {
        let f = self.notifier.lock().expect("notifier lock").clone();
        if let Some(f) = f {
            f(n);
        }
    }

    /// Hands an operator's pause or resume to the destination's worker and waits for
    /// the committed outcome. None when no worker runs for it.
    pub async fn command(&self, dest: &str, cmd: Command) -> Option<CommandReply> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let w = self.workers.lock().expect("workers lock");
            w.get(dest)?.commands.send((cmd, tx)).ok()?;
        }
        rx.await.ok()
    }

    /// The configuration of the last [`Engine::sync`].
    pub fn config(&self) -> Option<Arc<Config>> {
        self.config.lock().expect("config lock").clone()
    }

    /// The wake-up signal of a workspace's workers (new events were committed).
    pub fn wake(&self, workspace: &str) -> Arc<Notify> {
        self.wakes
            .lock()
            .expect("wakes lock")
            .entry(workspace.to_string())
            .or_default()
            .clone()
    }

    pub fn notify_ingest(&self, workspace: &str) {
        self.wake(workspace).notify_waiters();
    }

    /// Starts periodic upkeep ([`housekeeping`]); [`Engine::shutdown`] stops it.
    pub fn start_housekeeping(self: &Arc<Self>) {
        let mut hk = self.housekeeping.lock().expect("housekeeping lock");
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(housekeeping::run(self.clone(), rx));
        if let Some((old_tx, _)) = hk.replace((tx, task)) {
            let _ = old_tx.send(true);
        }
    }

    /// Starts, updates or stops workers to match `cfg`. A removed destination stops
    /// sending and keeps its cursor, retries and DLQ in the store.
    pub fn sync(self: &Arc<Self>, cfg: &Config) {
        tracing::debug!(destinations = cfg.destinations.len(), "delivery sync");
        *self.config.lock().expect("config lock") = Some(Arc::new(cfg.clone()));
        self.set_routing(cfg);
        let mut workers = self.workers.lock().expect("workers lock");
        let wanted: HashMap<&str, &Destination> = cfg
            .destinations
            .iter()
            .map(|d| (d.id.as_str(), d))
            .collect();
        let gone: Vec<String> = workers
            .keys()
            .filter(|k| !wanted.contains_key(k.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(h) = workers.remove(&id) {
                let _ = h.stop.send(true);
                self.retired
                    .lock()
                    .expect("retired lock")
                    .insert(id, h.task);
            }
        }
        let new_ids: Vec<&str> = cfg
            .destinations
            .iter()
            .filter(|d| !workers.contains_key(&d.id))
            .map(|d| d.id.as_str())
            .collect();
        let heads = self.heads_for(cfg, &new_ids);
        for d in &cfg.destinations {
            let Some(adapter) = platforms::adapter(d.platform) else {
                tracing::warn!(destination = %d.id, platform = d.platform.name(), "no adapter for this platform yet; its events wait in the queue");
                continue;
            };
            let ctx = Arc::new(DestCtx {
                pacers: self.pacers_for(d),
                dest: d.clone(),
                adapter,
                max_backlog_age_ms: cfg.storage.max_backlog_age.as_millis() as i64,
                request_log: cfg.storage.request_log,
                initial_head: heads.get(d.id.as_str()).copied(),
                mark_test: false,
            });
            match workers.get(&d.id) {
                Some(h) => {
                    let _ = h.ctx.send(ctx);
                }
                None => {
                    let (ctx_tx, ctx_rx) = watch::channel(ctx);
                    let (stop_tx, stop_rx) = watch::channel(false);
                    let snapshot = Arc::new(Mutex::new(DestSnapshot::default()));
                    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel();
                    let task = self.rt.spawn(worker::run(worker::Env {
                        engine: self.clone(),
                        ctx: ctx_rx,
                        stop: stop_rx,
                        wake: self.wake(&d.workspace),
                        snapshot: snapshot.clone(),
                        commands: cmd_rx,
                    }));
                    workers.insert(
                        d.id.clone(),
                        WorkerHandle {
                            ctx: ctx_tx,
                            stop: stop_tx,
                            commands: cmd_tx,
                            task,
                            snapshot,
                        },
                    );
                }
            }
        }
    }

    /// A destination's backlog in `view` (events expiring within the hour counted).
    pub fn backlog(
        &self,
        view: &crate::store::View,
        d: &Destination,
        now: i64,
        max_backlog_age_ms: i64,
    ) -> Result<Backlog, crate::store::StoreError> {
        const SOON_MS: i64 = 3_600_000;
        backlog::read(view, d, now, SOON_MS, max_backlog_age_ms)
    }

    /// Tells the store how every configured destination routes (its backlog summaries
    /// count by it); a change moves the version, and the store recounts what changed.
    fn set_routing(&self, cfg: &Config) {
        set_routing(&self.routing, cfg);
    }

    /// A destination's pending events now (its backlog summary; a resume's alert).
    pub fn depth(
        &self,
        d: &Destination,
        now: i64,
        max_backlog_age_ms: i64,
    ) -> Result<u64, crate::store::StoreError> {
        let view = self.store.view()?;
        Ok(self.backlog(&view, d, now, max_backlog_age_ms)?.depth)
    }

    /// The SPEC §10 gauges of every configured destination, now: the worker's live
    /// health state (else the stored one), one read transaction over the backlogs, and
    /// the 5-minute send and dead-letter windows.
    pub fn gauges(&self, cfg: &Config) -> Result<Vec<DestGauges>, crate::store::StoreError> {
        let now = self.clock.now_ms();
        let max_age = cfg.storage.max_backlog_age.as_millis() as i64;
        let view = self.store.view()?;
        let mut rows = Vec::with_capacity(cfg.destinations.len());
        for d in &cfg.destinations {
            let b = self.backlog(&view, d, now, max_age)?;
            let stored = view.dest_state(&d.id)?.unwrap_or_default();
            rows.push((d, b, stored));
        }
        drop(view);
        Ok(rows
            .into_iter()
            .map(|(d, b, stored)| {
                let state = self.snapshot(&d.id).map_or(stored, |s| s.state);
                let (sent, dlq_added) = self.metrics.window_sums(&d.id, now);
                let paused = state.mode == crate::store::codec::DestMode::Paused;
                // A paused destination sends nothing until resumed: it never drains.
                let drain = if b.depth == 0 {
                    0.0
                } else if sent == 0 || paused {
                    f64::INFINITY
                } else {
                    b.depth as f64 / (sent as f64 / 300.0)
                };
                DestGauges {
                    labels: DestLabels::of(d),
                    queue_depth: b.depth,
                    consumer_lag_seconds: b
                        .oldest_accepted_ms
                        .map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0),
                    oldest_pending_age_seconds: b
                        .oldest_event_time
                        .map_or(0.0, |t| (now - t * 1000).max(0) as f64 / 1000.0),
                    error_rate: state.error_rate.unwrap_or(0.0),
                    dlq_depth: b.dlq_depth,
                    dlq_growth_per_min: dlq_added as f64 / 5.0,
                    paused,
                    projected_drain_seconds: drain,
                    events_expiring_soon: b.expiring_soon,
                }
            })
            .collect())
    }

    /// Waits (up to `limit`) for the worker of a removed destination to stop, so nothing
    /// it still commits can land after a purge. False when it is still running.
    pub async fn retired_stopped(&self, id: &str, limit: std::time::Duration) -> bool {
        let task = self.retired.lock().expect("retired lock").remove(id);
        match task {
            None => true,
            Some(mut t) => match tokio::time::timeout(limit, &mut t).await {
                Ok(_) => true,
                Err(_) => {
                    self.retired
                        .lock()
                        .expect("retired lock")
                        .insert(id.to_string(), t);
                    false
                }
            },
        }
    }

    /// Whether a worker runs for this destination.
    pub fn is_running(&self, id: &str) -> bool {
        self.workers.lock().expect("workers lock").contains_key(id)
    }

    /// A live view of a destination's worker, if it runs.
    /// None until the worker has read its position and state from the store.
    pub fn snapshot(&self, dest: &str) -> Option<DestSnapshot> {
        let w = self.workers.lock().expect("workers lock");
        w.get(dest)
            .map(|h| h.snapshot.lock().expect("snapshot lock").clone())
            .filter(|s| s.positioned)
    }

    /// Stops every worker; in-flight sends get up to `grace` to finish (abandoned ones
    /// are sent again after a restart).
    pub async fn shutdown(&self, grace: std::time::Duration) {
        let handles: Vec<WorkerHandle> = self
            .workers
            .lock()
            .expect("workers lock")
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in &handles {
            let _ = h.stop.send(true);
        }
        let hk = self.housekeeping.lock().expect("housekeeping lock").take();
        if let Some((tx, task)) = hk {
            let _ = tx.send(true);
            let _ = task.await;
        }
        let all = futures_join(handles.into_iter().map(|h| h.task).collect());
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                "delivery workers still busy at shutdown; their in-flight sends will be retried after restart"
            );
        }
    }

    /// For destinations without a stored position: the log head now, so they receive
    /// events accepted from now on.
    fn heads_for(&self, cfg: &Config, ids: &[&str]) -> HashMap<String, u64> {
        let read = || -> Result<HashMap<String, u64>, crate::store::StoreError> {
            let view = self.store.view()?;
            let mut out = HashMap::new();
            for id in ids {
                if view.cursor(id)?.is_some() {
                    continue;
                }
                let Some(d) = cfg.destinations.iter().find(|d| d.id == *id) else {
                    continue;
                };
                out.insert(id.to_string(), view.head(&d.workspace)?);
            }
            Ok(out)
        };
        read().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read log heads; new destinations start at their first read");
            HashMap::new()
        })
    }

    fn pacers_for(&self, d: &Destination) -> Vec<Arc<Mutex<ScopePacer>>> {
        let mut by_key: Vec<(String, Vec<crate::config::Rate>)> = Vec::new();
        for r in &d.policy.rates {
            let key = d.scope_key(&r.scope);
            match by_key.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(r.clone()),
                None => by_key.push((key, vec![r.clone()])),
            }
        }
        by_key
            .into_iter()
            .map(|(k, rates)| self.pacers.get(&k, &rates))
            .collect()
    }
}

/// Routing (SPEC §3): the destination's `events` filter, and the event's own
/// `destinations` restriction.
pub fn routes_to(dest: &crate::config::Destination, ev: &crate::event::NormalizedEvent) -> bool {
    (ev.destinations.is_empty() || ev.destinations.contains(&dest.id))
        && dest
            .events
            .as_ref()
            .is_none_or(|names| names.contains(&ev.event_name))
}

/// The delivery runtime: as many worker threads as CPUs. Dropped in the background
/// (the engine may be dropped inside another runtime).
struct DeliveryRuntime(Option<tokio::runtime::Runtime>);

impl DeliveryRuntime {
    fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sluice-delivery")
            .enable_all()
            .build()
            .expect("the delivery runtime");
        DeliveryRuntime(Some(rt))
    }

    fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().expect("delivery runtime").spawn(f)
    }
}

impl Drop for DeliveryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// Sets the routing every configured destination's backlog summary counts by (the
/// store's [`crate::store::backlog::Routing`]); a change moves its version, and the
/// store recounts what changed. The daemon sets it before the store opens too, so the
/// ingest a restart replays from the journal is counted like any other.
pub fn set_routing(routing: &SharedRouting, cfg: &Config) {
    let dests: HashMap<String, crate::store::backlog::DestRoute> = cfg
        .destinations
        .iter()
        .map(|d| (d.id.clone(), backlog::route_of(d)))
        .collect();
    let watched: HashMap<String, Vec<String>> = cfg
        .workspaces
        .iter()
        .filter(|w| w.silent_source.enabled && !w.silent_source.event_names.is_empty())
        .map(|w| (w.id.clone(), w.silent_source.event_names.clone()))
        .collect();
    let old = routing.load_full();
    let moved = old.version == 0 || old.dests != dests;
    if !moved && old.watched == watched {
        return;
    }
    routing.store(Arc::new(crate::store::backlog::Routing {
        version: old.version + u64::from(moved),
        dests,
        watched,
    }));
}
