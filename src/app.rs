//! Wiring: builds the store, the intake, the delivery engine, the alerter and the
//! shared [`App`]; serves the routes; starts every background task from one list
//! ([`Daemon::start`]); signals (SIGHUP reloads); and the shutdown order (SPEC §11):
//! stop accepting, let in-flight requests finish for up to 5 s, commit, close the
//! store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::alerts::{Alert, AlertKind, AlertOutcome, Alerter};
use crate::audit::{Actor, AuditType, Details, NewAuditEvent};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::delivery::Engine;
use crate::health::NoticeKind;
use crate::ingest::intake::{Intake, Ledger};
use crate::store::DeliveryOp;
use crate::store::dedup::{DedupIndex, Tuning};
use crate::store::{FaultSwitch, Store, StoreOptions};

pub use crate::state::{App, on_log_level};

/// How long in-flight requests may run on after a stop signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub struct StartOptions {
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub clock: SharedClock,
    /// Test hook: injected storage failures.
    pub faults: Option<Arc<FaultSwitch>>,
    /// Listen here instead of `server.listen` (tests pass port 0).
    pub listen: Option<SocketAddr>,
    /// Sizes of the dedup index (tests make them small to exercise seals and merges).
    pub dedup_tuning: Tuning,
    /// Connection cap and client timeouts.
    pub http_limits: crate::api::serve::Limits,
    /// The nice value of the HTTP threads ([`HTTP_NICE`]; benchmarks compare others).
    pub http_nice: i32,
}

impl StartOptions {
    pub fn new(config: Config) -> Self {
        Self {
            config_path: None,
            clock: Arc::new(SystemClock),
            faults: None,
            listen: None,
            dedup_tuning: Tuning::default(),
            http_limits: crate::api::serve::Limits::of(&config.server),
            http_nice: HTTP_NICE,
            config,
        }
    }
}

/// A running daemon: HTTP server, store writer.
pub struct Daemon {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    /// Serves HTTP (routes, intake) on threads of its own.
    _http_rt: HttpRuntime,
}

/// The runtime that serves HTTP: as many threads as CPUs, each at a lower CPU priority
/// than the delivery runtime's ([`crate::delivery`]): when both want every core (a
/// burst of batch ingest), the OS gives delivery the larger share, so a burst slows
/// intake a little rather than stalling every destination. Dropped in the background.
struct HttpRuntime(Option<tokio::runtime::Runtime>);

/// How much lower the HTTP threads' priority is (nice value; weight 1024 vs 335).
pub const HTTP_NICE: i32 = 5;

impl HttpRuntime {
    fn new(nice: i32) -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sluice-http")
            .on_thread_start(move || {
                // Linux: the calling thread's nice value. Best effort: a failure leaves
                // the thread at the default priority.
                let _ = rustix::process::setpriority_process(None, nice);
            })
            .enable_all()
            .build()?;
        Ok(HttpRuntime(Some(rt)))
    }

    fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().expect("http runtime").spawn(f)
    }
}

impl Drop for HttpRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Daemon {
    /// Binds, starts serving, and opens the store in the background (SPEC §11: listen
    /// before a long repair finishes; `/readyz` and ingest answer 503 until it is open).
    #[allow(
        clippy::unused_async,
        reason = "must be called inside a runtime (the background tasks are spawned on it)"
    )]
    pub async fn start(opts: StartOptions) -> anyhow::Result<Daemon> {
        let cfg = opts.config;
        let ledger = Ledger::new();
        let l2 = ledger.clone();
        let dedup = DedupIndex::new(cfg.storage.dedup_window.as_millis() as i64);
        let routing = crate::store::backlog::SharedRouting::default();
        // Known before the store opens: what it replays from the ingest journal is
        // counted into the backlog summaries as it is committed again.
        crate::delivery::set_routing(&routing, &cfg);
        let store = Store::start(StoreOptions {
            path: cfg.storage.path.clone(),
            dedup: dedup.clone(),
            dedup_tuning: opts.dedup_tuning,
            routing: routing.clone(),
            cache_size: cfg.storage.cache_size,
            clock: opts.clock.clone(),
            faults: opts.faults,
            on_open: Box::new(move |rec| l2.recover(rec)),
        });
        let engine = Engine::new(
            store.clone(),
            opts.clock.clone(),
            cfg.storage.pii_key,
            routing,
        );
        let e2 = engine.clone();
        let intake = Intake {
            clock: opts.clock.clone(),
            store,
            ledger,
            dedup,
            pii_key: cfg.storage.pii_key,
            on_commit: Arc::new(move |ws| e2.notify_ingest(ws)),
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
        let (a, weak, store) = (
            alerter.clone(),
            Arc::downgrade(&engine),
            intake.store.clone(),
        );
        engine.set_notifier(Arc::new(move |mut n: crate::health::Notice| {
            // A resume says what it will drain and how long that should take.
            if n.kind == NoticeKind::Resume
                && let Some(engine) = weak.upgrade()
            {
                n.figures = crate::watch::recovery_figures(&engine, &n.destination_id, n.at_ms);
            }
            let alert = notice_alert(&n);
            crate::watch::audit_alert(&store, &alert, n.at_ms);
            a.send(alert);
        }));
        let addr = opts.listen.unwrap_or(cfg.server.listen);
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut app = App::new(cfg, intake, engine, alerter, opts.config_path);
        app.http_limits = opts.http_limits;
        let app = Arc::new(app);
        let (stop, stopped) = watch::channel(false);
        // Once the store is open: position every destination, start the background
        // tasks (each takes its schedule from the clock as it starts), then accept
        // events: ready means every schedule has started.
        let (a2, s2) = (app.clone(), stopped.clone());
        tokio::spawn(async move {
            while !a2.intake.store.is_open() {
                if *s2.borrow() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            a2.engine.sync(&a2.runtime().config);
            start_background_tasks(&a2, &s2);
            a2.mark_started();
        });
        let router = crate::api::router(app.clone());
        let mut stopped = stopped;
        let limits = opts.http_limits;
        let open = app.open_connections.clone();
        let http_rt = HttpRuntime::new(opts.http_nice)?;
        let server = http_rt.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serve on the listening socket");
                    return;
                }
            };
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            crate::api::serve::serve(listener, router, limits, open, shutdown).await;
        });
        info!(%addr, "listening");
        Ok(Daemon {
            addr,
            app,
            stop,
            server,
            _http_rt: http_rt,
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
    // Crash tests of the real binary: while the file named here exists, every write
    // and fsync of the store fails with ENOSPC (a full disk). Never set in production.
    if let Some(path) = std::env::var_os("SLUICE_FAULT_FILE") {
        let switch = FaultSwitch::new();
        let s2 = switch.clone();
        std::thread::Builder::new()
            .name("sluice-fault-file".into())
            .spawn(move || {
                loop {
                    if std::path::Path::new(&path).exists() {
                        s2.fail();
                    } else {
                        s2.heal();
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })?;
        warn!("SLUICE_FAULT_FILE is set: store failures can be injected (a test hook)");
        opts.faults = Some(switch);
    }
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

/// Starts every background task of a running daemon, once the store is open and every
/// destination has its position. Each ends when `stop` turns true (housekeeping stops
/// with the engine's workers, [`Engine::shutdown`]).
fn start_background_tasks(app: &Arc<App>, stop: &watch::Receiver<bool>) {
    // DLQ retention and log trimming, every minute.
    app.engine.start_housekeeping();
    // Backpressure alerts, every 30 s.
    tokio::spawn(crate::alerts::backpressure::run(
        app.engine.clone(),
        app.alerter.clone(),
        app.backpressure_passes.clone(),
        stop.clone(),
    ));
    // The audit chain's head in the log, hourly.
    tokio::spawn(audit_head(app.clone(), stop.clone()));
    // The watches (silent sources, falling behind, accuracy), every minute.
    tokio::spawn(crate::watch::run(
        app.clone(),
        app.watch_passes.clone(),
        stop.clone(),
    ));
    // The console's time series, a sample of every destination every 30 s.
    tokio::spawn(crate::console::sampler::run(app.clone(), stop.clone()));
}

/// The audit chain's head, at start and hourly, so a truncated tail shows in the
/// journal.
async fn audit_head(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    loop {
        match app.intake.store.read(crate::audit::head) {
            Ok((length, head)) => info!(length, %head, "audit chain head"),
            Err(e) => warn!(error = %e, "cannot read the audit chain head"),
        }
        tokio::select! {
            () = app.intake.clock.sleep_ms(3_600_000) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The alert for a committed state change.
fn notice_alert(n: &crate::health::Notice) -> Alert {
    let kind = match n.kind {
        NoticeKind::ProbeFailed => AlertKind::ProbeFailed,
        NoticeKind::Resume => AlertKind::Resume,
        NoticeKind::Pause => AlertKind::Pause,
        NoticeKind::Warning | NoticeKind::WarningCleared => return crate::watch::warning_alert(n),
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
        actor: Some(n.actor.to_string()),
        note: n.note.as_deref().map(crate::alerts::bounded_note),
        figures: n.figures.clone(),
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
