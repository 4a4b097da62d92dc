//! The watches (issue 18): the failures an error rate cannot see.
//!
//! - **Silent source** (per workspace, and per event name it lists): the events
//!   accepted over the last `silent_source.window` against a baseline — the median of
//!   the same window at the same time of day over the last 7 days — or a fixed
//!   minimum. Counts per minute are kept in the store ([`crate::store::watch`]), so a
//!   restart keeps the baseline; the last look is in `/metrics`.
//! - **Falling behind** (per destination): the oldest queued event of an active
//!   destination is older than `watch.max_lag`; and, separately, half its backlog would
//!   expire before delivery at the current drain rate (`expiry_risk`). Both must hold at
//!   two looks in a row. A DLQ replay queues old events again: until it drains, the
//!   destination is behind by their age, and says so.
//! - **Delivery accuracy** (per destination and hour): routed vs delivered vs
//!   dead-lettered, counted by the commits ([`crate::store::watch`]); a finished hour
//!   whose share delivered is under `watch.min_accuracy` alerts.
//! - The **warning before a pause** is the delivery worker's (it sees every
//!   evaluation); its alert is built here ([`warning_alert`]).
//!
//! [`run`] looks once a minute (2 s past the minute, so the minute before is whole).
//! Each watch fires once when its condition turns true and resolves once when it turns
//! false ([`judge::Tracker`]); every alert goes through the configured channels
//! (PagerDuty `dedup_key` `<workspace>:<watch>[:<what>]`), is audited (`watch_alert`)
//! and names the operator's next step. Firing state is in memory: after a restart a
//! condition still true alerts once more.

pub mod accuracy;
pub mod judge;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::alerts::{Alert, AlertKind, WatchNotice};
use crate::audit::{Actor, AuditType, Details, NewAuditEvent};
use crate::config::{Config, Destination, RateUnit};
use crate::delivery::Engine;
use crate::health::{Notice, NoticeKind};
use crate::state::App;
use crate::store::watch::{hour_of, minute_of, source_first_minute, source_sum};
use crate::store::{DeliveryOp, Store};
use judge::{Step, Tracker};

const MINUTE_MS: i64 = 60_000;
const DAY_MINUTES: i64 = 1440;

/// The watch task: one look a minute until `stop`.
pub async fn run(app: Arc<App>, passes: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) {
    let clock = app.engine.clock.clone();
    let started_ms = clock.now_ms();
    let mut w = Watches {
        started_ms,
        tracker: Tracker::default(),
        twice: judge::Twice::default(),
        judged: HashMap::new(),
    };
    // A first look at start, then one a minute.
    loop {
        if let Some(cfg) = app.engine.config() {
            w.pass(&app, &cfg, clock.now_ms()).await;
        }
        passes.fetch_add(1, Ordering::SeqCst);
        let now = clock.now_ms();
        let next = (now.div_euclid(MINUTE_MS) + 1) * MINUTE_MS + 2_000;
        let next = if next - MINUTE_MS > now {
            next - MINUTE_MS
        } else {
            next
        };
        tokio::select! {
            () = clock.sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

struct Watches {
    started_ms: i64,
    tracker: Tracker,
    /// The destination watches fire on the second look in a row.
    twice: judge::Twice,
    /// Per destination, the last hour whose accuracy was judged.
    judged: HashMap<String, i64>,
}

impl Watches {
    async fn pass(&mut self, app: &Arc<App>, cfg: &Arc<Config>, now: i64) {
        let (a, c) = (app.clone(), cfg.clone());
        let started = self.started_ms;
        let looked = tokio::task::spawn_blocking(move || look(&a, &c, now, started)).await;
        let looks = match looked {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                warn!(error = %e, "watches: cannot read the store; skipped this pass");
                return;
            }
            Err(e) => {
                warn!(error = %e, "watches: the pass failed");
                return;
            }
        };
        let mut keys = Vec::new();
        for l in looks.sources {
            app.engine
                .metrics
                .source(&l.workspace, &l.name, l.count, l.baseline);
            keys.push(l.key());
            if let Some(step) = self.tracker.observe(&l.key(), l.silent) {
                announce(app, l.alert(step, now), now);
            }
        }
        for l in looks.dests {
            for (watch, bad) in [("falling_behind", l.behind), ("expiry_risk", l.expiring)] {
                let key = format!("{watch}/{}", l.dest.id);
                keys.push(key.clone());
                // A paused destination already alerted; its watch waits for the resume.
                let Some(bad) = bad else { continue };
                // Two looks in a row: a queue old for a moment only (a burst drained
                // within the minute) is not a destination falling behind.
                let bad = self.twice.confirm(&key, bad);
                if let Some(step) = self.tracker.observe(&key, bad) {
                    announce(app, l.alert(watch, step, now), now);
                }
            }
        }
        self.accuracy(app, cfg, now, &mut keys);
        self.tracker.retain(|k| keys.iter().any(|x| x == k));
    }

    /// Judges each destination's finished hours in order, once each.
    fn accuracy(&mut self, app: &Arc<App>, cfg: &Config, now: i64, keys: &mut Vec<String>) {
        for d in &cfg.destinations {
            let Some(min) = d.policy.watch.min_accuracy else {
                continue;
            };
            let key = format!("accuracy/{}", d.id);
            keys.push(key.clone());
            let last = *self
                .judged
                .entry(d.id.clone())
                .or_insert(hour_of(self.started_ms) - 2);
            let rows =
                match app.intake.store.read(|txn| {
                    crate::store::watch::accuracy_rows(txn, &d.id, last + 1, hour_of(now))
                }) {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(destination = %d.id, error = %e, "accuracy: cannot read the counts");
                        continue;
                    }
                };
            // Hours are judged in order; one with nothing routed has no row.
            let mut judged = hour_of(now) - 1;
            for (hour, row) in rows {
                let end_ms = (hour + 1) * 3_600_000;
                // Finished: nothing of it pending, or an hour past its end.
                if row.pending() > 0 && now < end_ms + 3_600_000 {
                    judged = hour - 1;
                    break;
                }
                let Some(share) = row.share_delivered() else {
                    continue;
                };
                if let Some(step) = self.tracker.observe(&key, share < min) {
                    announce(app, accuracy::alert(d, hour, &row, min, step, now), now);
                }
            }
            self.judged.insert(d.id.clone(), judged.max(last));
        }
    }
}

/// What one pass read, off the runtime.
struct Looks {
    sources: Vec<SourceLook>,
    dests: Vec<DestLook>,
}

struct SourceLook {
    workspace: String,
    /// `""` for all events.
    name: String,
    count: u64,
    baseline: Option<u64>,
    window_min: i64,
    silent: bool,
}

impl SourceLook {
    fn subject(&self) -> String {
        if self.name.is_empty() {
            self.workspace.clone()
        } else {
            format!("{}/{}", self.workspace, self.name)
        }
    }

    fn key(&self) -> String {
        format!("silent_source/{}", self.subject())
    }

    fn alert(&self, step: Step, now: i64) -> Alert {
        let what = if self.name.is_empty() {
            format!("workspace {}", self.workspace)
        } else {
            format!("{} events of workspace {}", self.name, self.workspace)
        };
        let usual = self
            .baseline
            .map_or("no baseline yet".to_string(), |b| format!("{b} usually"));
        let (name, summary, action) = match step {
            Step::Fire => (
                "silent_source",
                format!(
                    "{what}: {} events in the last {} min ({usual})",
                    self.count, self.window_min
                ),
                format!(
                    "Events stopped arriving, so nothing errors: check the source (the site's tag, the checkout page, the server-side sender, its credentials for POST /v1/events) and its recent deploys.{}",
                    if self.name.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " Other event names still arrive, so look at what sends {} (a broken checkout tag).",
                            self.name
                        )
                    }
                ),
            ),
            Step::Resolve => (
                "silent_source_resolved",
                format!(
                    "{what}: {} events in the last {} min ({usual}), arriving again",
                    self.count, self.window_min
                ),
                "Nothing to do: events arrive again.".to_string(),
            ),
        };
        let mut figures = vec![(
            format!("Events, last {} min", self.window_min),
            self.count.to_string(),
        )];
        if let Some(b) = self.baseline {
            figures.push(("Baseline (7-day median)".into(), b.to_string()));
        }
        Alert::watch(
            WatchNotice {
                watch: "silent_source",
                name,
                subject: self.subject(),
                resolved: step == Step::Resolve,
                summary,
                action,
            },
            figures,
            &self.workspace,
            "",
            "",
            now,
        )
    }
}

struct DestLook {
    dest: Destination,
    lag_s: f64,
    depth: u64,
    drain_s: f64,
    limit_s: f64,
    /// None while paused (not judged).
    behind: Option<bool>,
    expiring: Option<bool>,
}

impl DestLook {
    fn alert(&self, watch: &'static str, step: Step, now: i64) -> Alert {
        let d = &self.dest;
        let lag = crate::config::format_duration(std::time::Duration::from_secs(self.lag_s as u64));
        let drain = if self.drain_s.is_finite() {
            crate::config::format_duration(std::time::Duration::from_secs(self.drain_s as u64))
        } else {
            "never (nothing delivered in 5 min)".into()
        };
        let max_lag = d
            .policy
            .watch
            .max_lag
            .map_or("none".into(), crate::config::format_duration);
        let resolved = step == Step::Resolve;
        let (name, summary, action) = match (watch, resolved) {
            ("falling_behind", false) => (
                "falling_behind",
                format!(
                    "destination {}: the oldest queued event is {lag} old (max_lag {max_lag}) while it is active",
                    d.id
                ),
                format!(
                    "Deliveries fall behind: look at its pacing and answers (sluice destinations status; sluice destinations requests --id {}). If the platform throttles, the backlog drains at its limit; if events are routed here that it never takes, fix the destination's `events`.",
                    d.id
                ),
            ),
            ("falling_behind", true) => (
                "falling_behind_resolved",
                format!(
                    "destination {}: caught up (oldest queued event {lag} old)",
                    d.id
                ),
                "Nothing to do.".into(),
            ),
            (_, false) => (
                "expiry_risk",
                format!(
                    "destination {}: at the current drain rate half of its {} queued events would expire before delivery",
                    d.id, self.depth
                ),
                format!(
                    "Events will be lost to expiry: raise the platform's pacing if its limits allow, or pause sources routed here that matter less. Expired events go to the DLQ with reason expired (sluice dlq list --destination {}).",
                    d.id
                ),
            ),
            (_, true) => (
                "expiry_risk_resolved",
                format!("destination {}: its backlog drains before it expires", d.id),
                "Nothing to do.".into(),
            ),
        };
        let figures = vec![
            ("Oldest queued".into(), lag),
            ("Queued".into(), self.depth.to_string()),
            ("Drain estimate".into(), drain),
            (
                "Expires after".into(),
                crate::config::format_duration(std::time::Duration::from_secs(self.limit_s as u64)),
            ),
        ];
        Alert::watch(
            WatchNotice {
                watch,
                name,
                subject: d.id.clone(),
                resolved,
                summary,
                action,
            },
            figures,
            &d.workspace,
            &d.id,
            d.platform.name(),
            now,
        )
    }
}

/// Reads what the watches judge (blocking: store reads).
fn look(
    app: &App,
    cfg: &Config,
    now: i64,
    started_ms: i64,
) -> Result<Looks, crate::store::StoreError> {
    let this_minute = minute_of(now);
    let mut sources = Vec::new();
    for ws in cfg.workspaces.iter().filter(|w| w.silent_source.enabled) {
        let s = &ws.silent_source;
        let window_min = (s.window.as_secs() / 60) as i64;
        let names = std::iter::once(String::new()).chain(s.event_names.iter().cloned());
        for name in names {
            let (count, baseline) = app.intake.store.read(|txn| {
                let count = source_sum(txn, &ws.id, &name, this_minute - window_min, this_minute)?;
                let first = source_first_minute(txn, &ws.id, &name)?;
                let mut days = Vec::new();
                for d in 1..=7 {
                    let end = this_minute - d * DAY_MINUTES;
                    // Only days whose window was counted whole.
                    if first.is_some_and(|f| f <= end - window_min) {
                        days.push(source_sum(txn, &ws.id, &name, end - window_min, end)?);
                    }
                }
                Ok((count, judge::median(days)))
            })?;
            let whole = now - started_ms >= s.window.as_millis() as i64;
            let silent = judge::silent(
                count,
                baseline,
                s.min_ratio,
                s.min_baseline,
                s.min_events,
                whole,
            );
            sources.push(SourceLook {
                workspace: ws.id.clone(),
                name,
                count,
                baseline,
                window_min,
                silent,
            });
        }
    }
    let gauges = app.engine.gauges(cfg)?;
    let max_age_s = cfg.storage.max_backlog_age.as_secs_f64();
    let mut dests = Vec::new();
    for g in gauges {
        let Some(d) = cfg
            .destinations
            .iter()
            .find(|d| d.id == g.labels.destination)
        else {
            continue;
        };
        let limit_s = match d.policy.age_limit {
            Some(a) => max_age_s.min(a.as_secs_f64() - 600.0),
            None => max_age_s,
        };
        let active = !g.paused;
        dests.push(DestLook {
            dest: d.clone(),
            lag_s: g.consumer_lag_seconds,
            depth: g.queue_depth,
            drain_s: g.projected_drain_seconds,
            limit_s,
            behind: d
                .policy
                .watch
                .max_lag
                .filter(|_| active)
                .map(|m| g.queue_depth > 0 && g.consumer_lag_seconds > m.as_secs_f64()),
            expiring: active.then(|| {
                judge::half_would_expire(
                    g.queue_depth,
                    g.consumer_lag_seconds,
                    g.projected_drain_seconds,
                    limit_s,
                )
            }),
        });
    }
    Ok(Looks { sources, dests })
}

/// Sends a watch's alert and audits it.
fn announce(app: &App, alert: Alert, now: i64) {
    if let AlertKind::Watch(w) = &alert.kind {
        if w.resolved {
            info!(watch = w.watch, subject = %w.subject, "watch resolved");
        } else {
            warn!(watch = w.watch, subject = %w.subject, summary = %w.summary, "watch fired");
        }
    }
    audit_alert(&app.intake.store, &alert, now);
    app.alerter.send(alert);
}

/// Audits a watch's alert (`watch_alert`); other alerts are audited by their change.
pub fn audit_alert(store: &Store, alert: &Alert, now: i64) {
    let AlertKind::Watch(w) = &alert.kind else {
        return;
    };
    let details = Details::new()
        .str("watch", w.watch)
        .str("alert", w.name)
        .str("merchant_id", alert.merchant_id.clone())
        .str("subject", w.subject.clone())
        .bool("resolved", w.resolved)
        .str("summary", w.summary.clone());
    let ev = NewAuditEvent::record(
        AuditType::WatchAlert,
        w.subject.clone(),
        Actor::System,
        details,
        now,
    );
    let store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.delivery(vec![DeliveryOp::Audit(ev)]).await {
            warn!(error = %e, "could not audit a watch alert");
        }
    });
}

/// The alert of the worker's error-rate warning (or its clearing).
pub fn warning_alert(n: &Notice) -> Alert {
    let rate = n.error_rate.map_or("-".to_string(), percent);
    let threshold = percent(n.threshold);
    let resolved = n.kind == NoticeKind::WarningCleared;
    let d = &n.destination_id;
    let (name, summary, action) = if resolved {
        (
            "error_rate_warning_resolved",
            match &n.note {
                Some(why) => format!("destination {d}: {why}"),
                None => format!("destination {d}: error rate {rate}, back under the warning level"),
            },
            "Nothing to do.".to_string(),
        )
    } else {
        (
            "error_rate_warning",
            format!("destination {d}: error rate {rate}, nearing its pause threshold {threshold}"),
            format!(
                "sluice pauses it if the rate passes {threshold}. Look at its last answers (sluice destinations requests --id {d}) and the platform's status; to hold its events now: sluice destinations pause --id {d} --reason \"…\""
            ),
        )
    };
    let mut figures = vec![
        ("Error rate".to_string(), rate),
        ("Threshold".to_string(), threshold),
    ];
    figures.extend(n.figures.iter().cloned());
    Alert::watch(
        WatchNotice {
            watch: "error_rate_warning",
            name,
            subject: d.clone(),
            resolved,
            summary,
            action,
        },
        figures,
        &n.merchant_id,
        d,
        &n.platform,
        n.at_ms,
    )
}

/// A resume's figures: the backlog it will drain and how long that takes at the
/// destination's pacing (unpaced: as fast as the platform answers).
pub fn recovery_figures(engine: &Engine, dest_id: &str, now: i64) -> Vec<(String, String)> {
    let Some(cfg) = engine.config() else {
        return Vec::new();
    };
    let Some(d) = cfg.destinations.iter().find(|d| d.id == dest_id) else {
        return Vec::new();
    };
    let Ok(depth) = engine.depth(d, now, cfg.storage.max_backlog_age.as_millis() as i64) else {
        return Vec::new();
    };
    let eta = match pace_events_per_sec(d) {
        Some(r) if depth > 0 => crate::config::format_duration(std::time::Duration::from_secs(
            (depth as f64 / r).ceil() as u64,
        )),
        Some(_) => "0s".into(),
        None => "unpaced: as fast as the platform answers".into(),
    };
    vec![
        ("Backlog".into(), format!("{depth} events")),
        ("Drain estimate".into(), eta),
    ]
}

/// `0.312` → `31.2%`.
pub fn percent(r: f64) -> String {
    format!("{:.1}%", r * 100.0)
}

/// The tightest of the destination's pacing limits, in events per second.
pub fn pace_events_per_sec(d: &Destination) -> Option<f64> {
    d.policy
        .rates
        .iter()
        .filter(|r| r.limit > 0)
        .map(|r| {
            let per_request = match r.unit {
                RateUnit::Events => 1.0,
                RateUnit::Requests => f64::from(d.policy.max_batch),
            };
            r.limit as f64 * per_request / r.per.as_secs_f64()
        })
        .min_by(f64::total_cmp)
}
