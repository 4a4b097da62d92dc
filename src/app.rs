//! Wiring: the running configuration, the store, the intake and the HTTP server, plus
//! reload (SIGHUP) and the shutdown order (SPEC §11): stop accepting, let in-flight
//! requests finish for up to 5 s, commit, close the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::alerts::{Alert, AlertKind, AlertOutcome, Alerter};
use crate::audit::{Actor, AuditType, Details, NewAuditEvent};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{self, Config, Platform};
use crate::delivery::Engine;
use crate::health::NoticeKind;
use crate::ingest::intake::{Intake, Ledger, WorkspaceRules};
use crate::store::DeliveryOp;
use crate::store::{FaultSwitch, Store, StoreOptions};
use std::sync::atomic::{AtomicBool, Ordering};

/// Told the new `server.log_level` when a reload changes it (set by the binary, which
/// owns the log subscriber).
type LogLevelHook = Box<dyn Fn(&str) + Send + Sync>;
static LOG_LEVEL_HOOK: std::sync::OnceLock<LogLevelHook> = std::sync::OnceLock::new();

/// Registers what a reload calls with a changed `server.log_level` (once per process).
pub fn on_log_level(f: LogLevelHook) {
    let _ = LOG_LEVEL_HOOK.set(f);
}

/// How long in-flight requests may run on after a stop signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The configuration in force, with lookups derived from it. Swapped whole on reload.
pub struct Runtime {
    pub config: Config,
    /// SHA-256 of each ingest key, with its workspace's rules.
    keys: Vec<([u8; 32], usize)>,
    rules: Vec<WorkspaceRules>,
}

impl Runtime {
    pub fn new(config: Config) -> Self {
        let mut rules = Vec::new();
        let mut keys = Vec::new();
        for (i, ws) in config.workspaces.iter().enumerate() {
            let dests: Vec<_> = config
                .destinations
                .iter()
                .filter(|d| d.workspace == ws.id)
                .collect();
            rules.push(WorkspaceRules {
                id: Arc::from(ws.id.as_str()),
                limits: ws.limits.clone(),
                destination_ids: dests.iter().map(|d| d.id.clone()).collect(),
                keep_plaintext: dests.iter().any(|d| d.platform == Platform::Klaviyo),
            });
            for k in &ws.ingest_keys {
                keys.push((Sha256::digest(k.expose().as_bytes()).into(), i));
            }
        }
        Self {
            config,
            keys,
            rules,
        }
    }

    /// The workspace owning this ingest key. Compares against every key in constant time.
    pub fn authenticate(&self, token: &[u8]) -> Option<&WorkspaceRules> {
        let h: [u8; 32] = Sha256::digest(token).into();
        let mut found = usize::MAX;
        for (k, i) in &self.keys {
            if bool::from(k.ct_eq(&h)) {
                found = *i;
            }
        }
        self.rules.get(found)
    }

    pub fn workspace(&self, id: &str) -> Option<&WorkspaceRules> {
        self.rules.iter().find(|r| &*r.id == id)
    }
}

/// Everything the routes share.
pub struct App {
    runtime: ArcSwap<Runtime>,
    pub intake: Intake,
    pub engine: Arc<Engine>,
    pub alerter: Alerter,
    pub config_path: Option<PathBuf>,
    /// The store is open and every destination has its position: ingest may accept.
    started: AtomicBool,
    /// Backpressure evaluations finished (tests wait on it).
    pub backpressure_passes: std::sync::atomic::AtomicU64,
}

impl App {
    /// Ready to accept events: store open and writable, delivery positioned.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::SeqCst) && self.intake.store.is_ready()
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Validates `new` against what cannot change under a running process, then swaps it
    /// in. Returns the new file's SHA-256.
    pub fn apply(&self, new: Config) -> Result<String, String> {
        let old = self.runtime();
        if new.storage.path != old.config.storage.path {
            warn!("storage.path changed: the new path takes effect at the next restart");
        }
        for d in &new.destinations {
            if let Some(o) = old.config.destinations.iter().find(|o| o.id == d.id)
                && (o.platform != d.platform || o.workspace != d.workspace)
            {
                return Err(format!(
                    "destination {} may not change its platform or workspace; give it a new id",
                    d.id
                ));
            }
        }
        let sha = new.sha256.clone();
        if new.server.log_level != old.config.server.log_level
            && let Some(hook) = LOG_LEVEL_HOOK.get()
        {
            hook(&new.server.log_level);
        }
        self.alerter.reconfigure(&new.alerts);
        if self.started.load(Ordering::SeqCst) {
            self.engine.sync(&new);
        }
        self.runtime.store(Arc::new(Runtime::new(new)));
        info!(config_sha256 = %sha, "configuration reloaded");
        Ok(sha)
    }

    /// [`App::reload`], audited (`config_reloaded` with the file's SHA-256, or
    /// `config_reload_failed` with the error, which never quotes the file).
    pub async fn reload_audited(self: &Arc<Self>, actor: Actor) -> Result<String, String> {
        let app = self.clone();
        let result = tokio::task::spawn_blocking(move || app.reload())
            .await
            .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
        let (event_type, details) = match &result {
            Ok(sha) => (
                AuditType::ConfigReloaded,
                Details::new().str("config_sha256", sha.clone()),
            ),
            Err(e) => (
                AuditType::ConfigReloadFailed,
                Details::new().str("error", e.clone()),
            ),
        };
        let details = match &self.config_path {
            Some(path) => details.str("path", path.display().to_string()),
            None => details,
        };
        let ev = NewAuditEvent::record(
            event_type,
            "config",
            actor,
            details,
            self.intake.clock.now_ms(),
        );
        if let Err(e) = self
            .intake
            .store
            .delivery(vec![DeliveryOp::Audit(ev)])
            .await
        {
            warn!(error = %e, "could not audit the reload");
        }
        result
    }

    /// Re-reads the config file and applies it; an invalid file keeps the running config.
    pub fn reload(&self) -> Result<String, String> {
        let Some(path) = &self.config_path else {
            return Err("this daemon was started without a config file".into());
        };
        match config::load(path) {
            Ok(cfg) => self.apply(cfg),
            Err(e) => {
                error!(error = %e, "reload failed; keeping the running configuration");
                Err(e.to_string())
            }
        }
    }
}

pub struct StartOptions {
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub clock: SharedClock,
    /// Test hook: injected storage failures.
    pub faults: Option<Arc<FaultSwitch>>,
    /// Listen here instead of `server.listen` (tests pass port 0).
    pub listen: Option<SocketAddr>,
}

impl StartOptions {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            config_path: None,
            clock: Arc::new(SystemClock),
            faults: None,
            listen: None,
        }
    }
}

/// A running daemon: HTTP server, store writer.
pub struct Daemon {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Binds, starts serving, and opens the store in the background (SPEC §11: listen
    /// before a long repair finishes; `/readyz` and ingest answer 503 until it is open).
    pub async fn start(opts: StartOptions) -> anyhow::Result<Daemon> {
        let cfg = opts.config;
        let ledger = Ledger::new();
        let l2 = ledger.clone();
        let store = Store::start(StoreOptions {
            path: cfg.storage.path.clone(),
            dedup_window_ms: cfg.storage.dedup_window.as_millis() as i64,
            clock: opts.clock.clone(),
            faults: opts.faults,
            on_open: Box::new(move |rec| l2.recover(rec)),
        });
        let engine = Engine::new(store.clone(), opts.clock.clone(), cfg.storage.pii_key);
        let e2 = engine.clone();
        let intake = Intake {
            clock: opts.clock.clone(),
            store,
            ledger,
            pii_key: cfg.storage.pii_key,
            on_commit: Box::new(move |ws| e2.notify_ingest(ws)),
        };
        // Each alert's final outcome per channel is an audit event.
        let audit_store = intake.store.clone();
        let audit_clock = opts.clock.clone();
        let alerter = Alerter::new(
            &cfg.alerts,
            opts.clock.clone(),
            Arc::new(move |o: AlertOutcome| {
                let store = audit_store.clone();
                let ev = alert_audit(&o, audit_clock.now_ms());
                tokio::spawn(async move {
                    if let Err(e) = store.delivery(vec![DeliveryOp::Audit(ev)]).await {
                        warn!(error = %e, "could not audit an alert outcome");
                    }
                });
            }),
        );
        let a = alerter.clone();
        engine.set_notifier(Arc::new(move |n| a.send(notice_alert(&n))));
        let addr = opts.listen.unwrap_or(cfg.server.listen);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        let app = Arc::new(App {
            runtime: ArcSwap::from_pointee(Runtime::new(cfg)),
            intake,
            engine,
            alerter,
            config_path: opts.config_path,
            started: AtomicBool::new(false),
            backpressure_passes: std::sync::atomic::AtomicU64::new(0),
        });
        let (stop, mut stopped) = watch::channel(false);
        // Once the store is open: position every destination, then accept events.
        let a2 = app.clone();
        let mut stop_logger = stopped.clone();
        tokio::spawn(async move {
            while !a2.intake.store.is_ready() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let rt = a2.runtime();
            a2.engine.sync(&rt.config);
            a2.started.store(true, Ordering::SeqCst);
            tokio::spawn(backpressure_loop(a2.clone(), stop_logger.clone()));
            // The chain's head, at start and hourly, so a truncated tail shows in the journal.
            loop {
                match a2.intake.store.read(crate::audit::head) {
                    Ok((length, head)) => info!(length, %head, "audit chain head"),
                    Err(e) => warn!(error = %e, "cannot read the audit chain head"),
                }
                tokio::select! {
                    _ = a2.intake.clock.sleep_ms(3_600_000) => {}
                    _ = stop_logger.wait_for(|s| *s) => return,
                }
            }
        });
        let router = crate::api::router(app.clone());
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                error!(error = %e, "HTTP server failed");
            }
        });
        info!(%addr, "listening");
        Ok(Daemon {
            addr,
            app,
            stop,
            server,
        })
    }

    /// Stops accepting, lets in-flight requests finish (up to [`DRAIN_TIMEOUT`]), then
    /// commits what is queued and closes the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut server = self.server;
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        // In-flight ingest requests and in-flight sends get the same 5 s.
        let (served, ()) = tokio::join!(
            tokio::time::timeout_at(deadline, &mut server),
            self.app.engine.shutdown(DRAIN_TIMEOUT)
        );
        if served.is_err() {
            warn!("in-flight requests still running after 5 s; abandoning them");
            server.abort();
        }
        // Alerts still retrying end now, each reported (and audited) as failed.
        self.app.alerter.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.app.alerter.idle()).await;
        self.app.intake.store.close().await;
    }
}

/// `sluice serve`: runs until SIGTERM or SIGINT; SIGHUP reloads. `cfg` is the file at
/// `config_path`, already loaded.
pub async fn serve(config_path: PathBuf, cfg: Config) -> anyhow::Result<()> {
    let mut opts = StartOptions::new(cfg);
    opts.config_path = Some(config_path);
    let daemon = Daemon::start(opts).await?;
    use sd_notify::NotifyState;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    // systemd (Type=notify): ready once listening, even while the store still opens.
    // A no-op when NOTIFY_SOCKET is unset.
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configuration");
                let mut reloading = vec![NotifyState::Reloading];
                reloading.extend(NotifyState::monotonic_usec_now().ok());
                let _ = sd_notify::notify(&reloading);
                let _ = daemon.app.reload_audited(Actor::System).await;
                let _ = sd_notify::notify(&[NotifyState::Ready]);
            }
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    daemon.shutdown().await;
    info!("stopped");
    Ok(())
}

/// SPEC §5: every 30 s (on the clock's 30 s marks), each destination's queue depth,
/// consumer lag and DLQ growth against `[alerts.backpressure]`; an alert when one
/// crosses its limit, another when it falls below 80% of it.
async fn backpressure_loop(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    use crate::alerts::backpressure::{
        BackpressureTracker, CONSUMER_LAG, DLQ_GROWTH_PER_MIN, QUEUE_DEPTH, Transition,
    };
    const EVERY_MS: i64 = 30_000;
    let mut tracker = BackpressureTracker::default();
    loop {
        let now = app.intake.clock.now_ms();
        let next = (now.div_euclid(EVERY_MS) + 1) * EVERY_MS;
        tokio::select! {
            _ = app.intake.clock.sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let rt = app.runtime();
        let cfg = &rt.config;
        let limits = cfg.alerts.backpressure.clone();
        let a = app.clone();
        let c2 = rt.clone();
        let gauges = match &limits {
            Some(_) => tokio::task::spawn_blocking(move || a.engine.gauges(&c2.config))
                .await
                .unwrap_or_else(|e| Err(crate::store::StoreError::Unavailable(e.to_string()))),
            None => Ok(Vec::new()),
        };
        let gauges = match gauges {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "backpressure: cannot read the backlogs; skipped this pass");
                app.backpressure_passes.fetch_add(1, Ordering::SeqCst);
                continue;
            }
        };
        let Some(limits) = limits else {
            // No limits: nothing is firing any more.
            tracker = BackpressureTracker::default();
            app.backpressure_passes.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        let at = app.intake.clock.now_ms();
        for g in &gauges {
            let Some(d) = cfg
                .destinations
                .iter()
                .find(|d| d.id == g.labels.destination)
            else {
                continue;
            };
            // (metric, limit, value, unit, decimals shown)
            let checks = [
                (
                    QUEUE_DEPTH,
                    limits.queue_depth.map(|l| l as f64),
                    g.queue_depth as f64,
                    " events",
                    0,
                ),
                (
                    CONSUMER_LAG,
                    limits.consumer_lag.map(|l| l.as_secs_f64()),
                    g.consumer_lag_seconds,
                    " s",
                    0,
                ),
                (
                    DLQ_GROWTH_PER_MIN,
                    limits.dlq_growth_per_min.map(|l| l as f64),
                    g.dlq_growth_per_min,
                    "/min",
                    1,
                ),
            ];
            for (metric, limit, value, unit, decimals) in checks {
                let Some(limit) = limit else { continue };
                let Some(t) = tracker.observe(&d.id, metric, value, limit) else {
                    continue;
                };
                let (value_s, limit_s) = (
                    format!("{value:.decimals$}{unit}"),
                    format!("{limit:.decimals$}{unit}"),
                );
                let (kind, reason) = match t {
                    Transition::Fire => {
                        warn!(destination = %d.id, metric, value = %value_s, limit = %limit_s, "backpressure limit crossed");
                        (
                            AlertKind::Backpressure {
                                metric: metric.to_string(),
                                value: value_s,
                                limit: limit_s,
                            },
                            format!("backpressure_{metric}"),
                        )
                    }
                    Transition::Resolve => {
                        info!(destination = %d.id, metric, value = %value_s, limit = %limit_s, "backpressure resolved");
                        (
                            AlertKind::BackpressureResolved {
                                metric: metric.to_string(),
                                value: value_s,
                                limit: limit_s,
                            },
                            format!("backpressure_{metric}_resolved"),
                        )
                    }
                };
                let state = app.engine.snapshot(&d.id).map(|s| s.state);
                app.alerter.send(Alert {
                    kind,
                    merchant_id: d.workspace.clone(),
                    destination_id: d.id.clone(),
                    platform: d.platform.name().to_string(),
                    error_rate: state
                        .as_ref()
                        .and_then(|s| s.error_rate)
                        .map(|r| format!("{:.1}%", r * 100.0)),
                    threshold: format!(
                        "{}%",
                        (d.policy.auto_pause.threshold * 1000.0).round() / 10.0
                    ),
                    auto_clear_at: state
                        .and_then(|s| s.auto_clear_at_ms)
                        .map(crate::clock::rfc3339_ms),
                    reason,
                    at: crate::clock::rfc3339_ms(at),
                });
            }
        }
        app.backpressure_passes.fetch_add(1, Ordering::SeqCst);
    }
}

/// The alert for a committed state change.
fn notice_alert(n: &crate::health::Notice) -> Alert {
    let kind = match n.kind {
        NoticeKind::ProbeFailed => AlertKind::ProbeFailed,
        NoticeKind::Resume => AlertKind::Resume,
        NoticeKind::Pause => AlertKind::Pause,
    };
    Alert {
        kind,
        merchant_id: n.merchant_id.clone(),
        destination_id: n.destination_id.clone(),
        platform: n.platform.clone(),
        error_rate: n.error_rate.map(|r| format!("{:.1}%", r * 100.0)),
        threshold: format!("{}%", (n.threshold * 1000.0).round() / 10.0),
        auto_clear_at: n.auto_clear_at_ms.map(crate::clock::rfc3339_ms),
        reason: n.reason.clone(),
        at: crate::clock::rfc3339_ms(n.at_ms),
    }
}

/// `alert_sent` / `alert_failed`, naming the channel.
fn alert_audit(o: &AlertOutcome, now_ms: i64) -> NewAuditEvent {
    let details = Details::new()
        .str("channel", o.channel)
        .str("alert", o.alert_kind)
        .str("destination_id", o.destination_id.clone())
        .str("merchant_id", o.merchant_id.clone())
        .int("attempts", i64::from(o.attempts))
        .opt_str("error", o.error.clone());
    let event_type = if o.ok {
        AuditType::AlertSent
    } else {
        AuditType::AlertFailed
    };
    NewAuditEvent::record(
        event_type,
        o.destination_id.clone(),
        Actor::System,
        details,
        now_ms,
    )
}
