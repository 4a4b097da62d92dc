//! Alerts (SPEC §5): pause, probe-failure, resume and backpressure notices sent to the
//! channels configured under `[alerts]` — Slack incoming webhook, SMTP email, a generic
//! JSON webhook and PagerDuty Events API v2.
//!
//! [`Alerter::send`] returns at once. Each configured channel delivers in its own task;
//! a channel that fails is retried with backoff 1, 2, 4, … s capped at 60 s, on the
//! injected clock, for up to 15 minutes from its first attempt (the last retry is moved
//! to the end of the budget when the backoff would overshoot it), then gives up. A
//! channel never waits on another, and nothing here blocks delivery of events. Each
//! channel's final result is handed once to the owner's outcome callback, which records
//! it as an `alert_sent` / `alert_failed` audit event.
//!
//! What is retried: transport errors, timeouts (10 s per attempt on the injected clock),
//! HTTP 408, 425, 429 and 5xx, and SMTP transient (4yz) or connection failures. What is
//! not: any other HTTP status (a 400 from PagerDuty means the event itself is invalid;
//! a 403/404 from Slack means the webhook was revoked — the same request gets the same
//! answer for 15 minutes) and SMTP permanent (5yz) replies. Those are reported as failed
//! at once, with the attempt count so far.
//!
//! Secrets (webhook URLs, the routing key, the SMTP password) never appear in alert
//! text, logs or outcome errors: errors are built without URLs and pass through
//! [`crate::platforms::redact`] with every secret of the channel.
//!
//! [`Alerter::reconfigure`] swaps the channel set for alerts sent afterwards; deliveries
//! already under way keep the settings they started with. [`Alerter::shutdown`] ends
//! pending retries (each reports failure) so the daemon can stop promptly.
//! [`backpressure::BackpressureTracker`] holds the fire-once / resolve-below-80% rule
//! for the owner's 30-second backpressure check.

pub mod backpressure;
mod email;
mod http;
mod text;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::SharedClock;
use crate::config::AlertsConfig;

pub use text::REASON_PLACEHOLDER;

/// First retry delay.
pub const BACKOFF_BASE_MS: i64 = 1_000;
/// Longest retry delay.
pub const BACKOFF_MAX_MS: i64 = 60_000;
/// How long a channel keeps retrying one alert, from its first attempt.
pub const RETRY_BUDGET_MS: i64 = 15 * 60_000;
/// One attempt's time limit (connect, send, answer), on the injected clock.
pub const ATTEMPT_TIMEOUT_MS: i64 = 10_000;

/// What happened to the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertKind {
    /// Paused (error rate, credentials, endpoint gone, manual).
    Pause,
    /// A probe after auto-clear failed; the destination stays paused.
    ProbeFailed,
    /// Active again (auto-clear or manual resume).
    Resume,
    /// A backpressure metric crossed its limit.
    Backpressure {
        metric: String,
        value: String,
        limit: String,
    },
    /// A backpressure metric fell below 80% of its limit.
    BackpressureResolved {
        metric: String,
        value: String,
        limit: String,
    },
    /// A config reload (SIGHUP, `sluice reload`) failed: the running config stays.
    ReloadFailed {
        /// What is wrong (the key path and line, as `sluice config check` says it).
        error: String,
        /// The config file, when known.
        path: Option<String>,
    },
    /// A watch (issue 18) fired or resolved.
    Watch(WatchNotice),
}

/// What a watch says (issue 18): silent source, falling behind, expiry risk, accuracy,
/// the error-rate warning before a pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchNotice {
    /// `silent_source`, `falling_behind`, `expiry_risk`, `accuracy` or
    /// `error_rate_warning`.
    pub watch: &'static str,
    /// The alert's name: the watch, or `<watch>_resolved`.
    pub name: &'static str,
    /// What is watched: the workspace, `<workspace>/<event name>`, or the destination.
    pub subject: String,
    pub resolved: bool,
    /// One line: what is wrong (or right again), with its figures.
    pub summary: String,
    /// The operator's next step.
    pub action: String,
}

impl AlertKind {
    /// The webhook `type` and the name in outcomes: `destination_paused`,
    /// `destination_probe_failed`, `destination_resumed`, `backpressure`,
    /// `backpressure_resolved`.
    pub fn name(&self) -> &'static str {
        match self {
            AlertKind::Pause => "destination_paused",
            AlertKind::ProbeFailed => "destination_probe_failed",
            AlertKind::Resume => "destination_resumed",
            AlertKind::Backpressure { .. } => "backpressure",
            AlertKind::BackpressureResolved { .. } => "backpressure_resolved",
            AlertKind::ReloadFailed { .. } => "config_reload_failed",
            AlertKind::Watch(w) => w.name,
        }
    }
}

/// One notice. Holds no secret: everything here may be shown to anyone on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    pub merchant_id: String,
    pub destination_id: String,
    pub platform: String,
    /// e.g. `31.2%`; None when the change has no error rate (auth failure, manual).
    pub error_rate: Option<String>,
    /// e.g. `25%`.
    pub threshold: String,
    /// RFC 3339, or None (shown as `none`).
    pub auto_clear_at: Option<String>,
    /// The pause reason (`error_rate_31.2%`, `auth_failed`, `manual`, …) or the resume
    /// reason (`auto_clear_4h_window`, `ops_intervention`).
    pub reason: String,
    /// RFC 3339 time of the change.
    pub at: String,
    /// Who made the change (`system_worker`, `api_user`, `cli`); None for backpressure.
    pub actor: Option<String>,
    /// The operator's reason of a manual pause or resume, at most [`NOTE_MAX_CHARS`]
    /// characters (operator text: shown as given, escaped by each channel's format).
    pub note: Option<String>,
    /// Named figures shown after the standard lines (a resume's backlog and its
    /// estimated drain time, issue 18).
    pub figures: Vec<(String, String)>,
}

impl Alert {
    /// The alert for a failed config reload: no destination; `destination_id` is
    /// `config` (the audit resource) and the merchant and platform are empty.
    pub fn reload_failed(error: &str, path: Option<&std::path::Path>, at_ms: i64) -> Alert {
        Alert {
            kind: AlertKind::ReloadFailed {
                error: error.to_string(),
                path: path.map(|p| p.display().to_string()),
            },
            merchant_id: String::new(),
            destination_id: "config".into(),
            platform: String::new(),
            error_rate: None,
            threshold: String::new(),
            auto_clear_at: None,
            reason: "config_reload_failed".into(),
            at: crate::clock::rfc3339_ms(at_ms),
            actor: None,
            note: None,
            figures: Vec::new(),
        }
    }
}

impl Alert {
    /// A watch's alert with its named figures: `merchant` is the workspace,
    /// `destination` empty for a workspace's watch.
    pub fn watch(
        w: WatchNotice,
        figures: Vec<(String, String)>,
        merchant: &str,
        destination: &str,
        platform: &str,
        at_ms: i64,
    ) -> Alert {
        Alert {
            reason: w.name.to_string(),
            kind: AlertKind::Watch(w),
            merchant_id: merchant.to_string(),
            destination_id: destination.to_string(),
            platform: platform.to_string(),
            error_rate: None,
            threshold: String::new(),
            auto_clear_at: None,
            at: crate::clock::rfc3339_ms(at_ms),
            actor: None,
            note: None,
            figures,
        }
    }
}

/// The most characters of an operator's note an alert or a log line carries.
pub const NOTE_MAX_CHARS: usize = 500;

/// `note` cut to [`NOTE_MAX_CHARS`] characters (`…` marks a cut).
pub fn bounded_note(note: &str) -> String {
    if note.chars().count() > NOTE_MAX_CHARS {
        note.chars().take(NOTE_MAX_CHARS - 1).collect::<String>() + "…"
    } else {
        note.to_string()
    }
}

/// The final result of one alert on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertOutcome {
    /// `slack`, `email`, `webhook` or `pagerduty`.
    pub channel: &'static str,
    /// [`AlertKind::name`].
    pub alert_kind: &'static str,
    pub merchant_id: String,
    pub destination_id: String,
    pub ok: bool,
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// The last error, redacted; None when sent.
    pub error: Option<String>,
}

pub type OutcomeFn = Arc<dyn Fn(AlertOutcome) + Send + Sync>;

/// What the alerter is doing (for tests and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertActivity {
    /// Deliveries (alert × channel) not yet finished.
    pub in_flight: usize,
    /// Of those, the ones waiting for a retry.
    pub waiting: usize,
    /// Retries scheduled since start.
    pub retries_scheduled: u64,
    /// The earliest time (clock ms) a waiting delivery will try again.
    pub next_retry_at_ms: Option<i64>,
}

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Already redacted.
    pub message: String,
    pub retryable: bool,
}

/// One configured channel, with its settings as of the alert's send.
#[derive(Clone)]
enum Channel {
    Slack(Arc<http::JsonHook>),
    Email(Arc<email::Email>),
    Webhook(Arc<http::JsonHook>),
    PagerDuty(Arc<http::PagerDuty>),
}

impl Channel {
    fn name(&self) -> &'static str {
        match self {
            Channel::Slack(_) => "slack",
            Channel::Email(_) => "email",
            Channel::Webhook(_) => "webhook",
            Channel::PagerDuty(_) => "pagerduty",
        }
    }

    async fn attempt(&self, inner: &Inner, alert: &Alert) -> Result<(), Failure> {
        match self {
            Channel::Slack(c) => c.send(&inner.http, alert).await,
            Channel::Webhook(c) => c.send(&inner.http, alert).await,
            Channel::PagerDuty(c) => c.send(&inner.http, alert).await,
            Channel::Email(c) => c.send(&inner.clock, alert).await,
        }
    }
}

fn channels(cfg: &AlertsConfig) -> Vec<Channel> {
    let mut out = Vec::new();
    if let Some(s) = &cfg.slack {
        out.push(Channel::Slack(Arc::new(http::JsonHook::slack(s))));
    }
    if let Some(e) = &cfg.email {
        out.push(Channel::Email(Arc::new(email::Email::new(e))));
    }
    if let Some(w) = &cfg.webhook {
        out.push(Channel::Webhook(Arc::new(http::JsonHook::webhook(w))));
    }
    if let Some(p) = &cfg.pagerduty {
        out.push(Channel::PagerDuty(Arc::new(http::PagerDuty::new(p))));
    }
    out
}

struct Inner {
    clock: SharedClock,
    on_outcome: OutcomeFn,
    http: reqwest::Client,
    channels: Mutex<Arc<Vec<Channel>>>,
    activity: watch::Sender<AlertActivity>,
    /// Retry deadlines of waiting deliveries, by delivery id.
    waiting: Mutex<BTreeMap<u64, i64>>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Handle>,
}

/// Sends alerts to every configured channel. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Alerter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.channel_snapshot().iter().map(Channel::name).collect();
        f.debug_struct("Alerter").field("channels", &names).finish()
    }
}

impl Alerter {
    /// `on_outcome` is called once per alert and channel with the final result.
    /// Create it inside a Tokio runtime (or call [`Alerter::send`] from one).
    pub fn new(cfg: &AlertsConfig, clock: SharedClock, on_outcome: OutcomeFn) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client");
        Self {
            inner: Arc::new(Inner {
                clock,
                on_outcome,
                http,
                channels: Mutex::new(Arc::new(channels(cfg))),
                activity: watch::Sender::new(AlertActivity::default()),
                waiting: Mutex::new(BTreeMap::new()),
                next_id: AtomicU64::new(0),
                shutdown: watch::Sender::new(false),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }

    /// Applies a reloaded `[alerts]` section to alerts sent from now on.
    pub fn reconfigure(&self, cfg: &AlertsConfig) {
        *self.inner.channels.lock().expect("alerts lock") = Arc::new(channels(cfg));
    }

    /// The names of the configured channels.
    pub fn channel_names(&self) -> Vec<&'static str> {
        self.channel_snapshot().iter().map(Channel::name).collect()
    }

    fn channel_snapshot(&self) -> Arc<Vec<Channel>> {
        self.inner.channels.lock().expect("alerts lock").clone()
    }

    /// Queues `alert` on every configured channel and returns at once.
    pub fn send(&self, alert: Alert) {
        drop(self.dispatch(alert));
    }

    /// Like [`Alerter::send`], returning one task per channel, each ending with that
    /// channel's outcome (also given to the callback).
    pub fn dispatch(&self, alert: Alert) -> Vec<JoinHandle<AlertOutcome>> {
        let channels = self.channel_snapshot();
        if channels.is_empty() {
            return Vec::new();
        }
        let Some(rt) = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.inner.runtime.clone())
        else {
            tracing::error!(
                destination = %alert.destination_id,
                "alerts: no async runtime to send on; alert dropped"
            );
            return Vec::new();
        };
        let alert = Arc::new(alert);
        channels
            .iter()
            .map(|ch| {
                let inner = self.inner.clone();
                let ch = ch.clone();
                let alert = alert.clone();
                inner.activity.send_modify(|a| a.in_flight += 1);
                // Made before the task so that a task dropped unpolled still counts out.
                let guard = InFlight(inner.clone());
                rt.spawn(async move {
                    let outcome = deliver(&inner, &ch, &alert).await;
                    (inner.on_outcome)(outcome.clone());
                    drop(guard);
                    outcome
                })
            })
            .collect()
    }

    /// Resolves when no alert is being delivered or waiting to be retried.
    pub async fn idle(&self) {
        let mut rx = self.inner.activity.subscribe();
        let _ = rx.wait_for(|a| a.in_flight == 0).await;
    }

    /// Watches what the alerter is doing.
    pub fn activity(&self) -> watch::Receiver<AlertActivity> {
        self.inner.activity.subscribe()
    }

    /// Ends pending retries: each waiting delivery reports failure now. Later alerts
    /// get one attempt each.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

/// Counts a delivery out when its task ends (or is dropped with its runtime).
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.activity.send_modify(|a| a.in_flight -= 1);
    }
}

/// The delay before retry number `n` (1-based): 1, 2, 4, … s, at most 60 s.
pub fn backoff_ms(n: u32) -> i64 {
    let shift = n.saturating_sub(1).min(16);
    (BACKOFF_BASE_MS << shift).min(BACKOFF_MAX_MS)
}

async fn deliver(inner: &Inner, ch: &Channel, alert: &Alert) -> AlertOutcome {
    let clock = &inner.clock;
    let start = clock.now_ms();
    let give_up_at = start + RETRY_BUDGET_MS;
    let mut shutdown = inner.shutdown.subscribe();
    let mut attempts = 0u32;
    let error = loop {
        attempts += 1;
        let result = tokio::select! {
            r = ch.attempt(inner, alert) => r,
            () = clock.sleep_ms(ATTEMPT_TIMEOUT_MS) => Err(Failure {
                message: format!("no answer within {} s", ATTEMPT_TIMEOUT_MS / 1000),
                retryable: true,
            }),
        };
        let failure = match result {
            Ok(()) => {
                tracing::info!(
                    channel = ch.name(),
                    alert = alert.kind.name(),
                    destination = %alert.destination_id,
                    attempts,
                    "alert sent"
                );
                break None;
            }
            Err(f) => f,
        };
        let now = clock.now_ms();
        let stopping = *shutdown.borrow();
        if !failure.retryable || now >= give_up_at || stopping {
            break Some(failure.message);
        }
        let retry_at = (now + backoff_ms(attempts)).min(give_up_at);
        tracing::warn!(
            channel = ch.name(),
            alert = alert.kind.name(),
            destination = %alert.destination_id,
            attempts,
            retry_in_ms = retry_at - now,
            error = %failure.message,
            "alert not delivered; will retry"
        );
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        set_waiting(inner, id, Some(retry_at), true);
        let stopped = tokio::select! {
            () = clock.sleep_until(retry_at) => false,
            _ = shutdown.wait_for(|s| *s) => true,
        };
        set_waiting(inner, id, None, false);
        if stopped {
            break Some(format!(
                "{} (sluice is shutting down; no more retries)",
                failure.message
            ));
        }
    };
    if let Some(e) = &error {
        tracing::warn!(
            channel = ch.name(),
            alert = alert.kind.name(),
            destination = %alert.destination_id,
            attempts,
            error = %e,
            "alert failed"
        );
    }
    AlertOutcome {
        channel: ch.name(),
        alert_kind: alert.kind.name(),
        merchant_id: alert.merchant_id.clone(),
        destination_id: alert.destination_id.clone(),
        ok: error.is_none(),
        attempts,
        error,
    }
}

fn set_waiting(inner: &Inner, id: u64, deadline: Option<i64>, scheduled: bool) {
    let mut w = inner.waiting.lock().expect("alerts lock");
    match deadline {
        Some(d) => w.insert(id, d),
        None => w.remove(&id),
    };
    let next = w.values().min().copied();
    let waiting = w.len();
    inner.activity.send_modify(|a| {
        a.next_retry_at_ms = next;
        a.waiting = waiting;
        if scheduled {
            a.retries_scheduled += 1;
        }
    });
}

/// An error and its sources, one after the other (reqwest's and lettre's own Display
/// is terse).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}
