//! Backpressure alerts (SPEC §5): the fire-once / resolve-below-80% rule as a pure
//! state machine ([`BackpressureTracker`]), and the task ([`run`]) that samples each
//! destination's gauges every 30 s, feeds them to [`BackpressureTracker::observe`] and
//! sends an [`super::AlertKind::Backpressure`] or
//! [`super::AlertKind::BackpressureResolved`] alert for each transition it returns.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tracing::{info, warn};

use super::Alerter;
use crate::delivery::Engine;

/// Names of the metrics under `[alerts.backpressure]`.
pub const QUEUE_DEPTH: &str = "queue_depth";
pub const CONSUMER_LAG: &str = "consumer_lag";
pub const DLQ_GROWTH_PER_MIN: &str = "dlq_growth_per_min";

/// A metric resolves once it is below this share of its limit.
pub const RESOLVE_BELOW: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The metric went over its limit: send a backpressure alert.
    Fire,
    /// The metric fell below 80% of its limit: send a resolved alert.
    Resolve,
}

/// Which (destination, metric) pairs are currently over their limit.
#[derive(Debug, Default)]
pub struct BackpressureTracker {
    firing: HashSet<(String, String)>,
}

impl BackpressureTracker {
    /// One sample. Fires when `value` exceeds `limit` and the pair is not already
    /// firing; resolves when a firing pair drops below 80% of `limit`. Between 80% and
    /// the limit nothing changes (hysteresis), so a metric hovering at the limit
    /// alerts once.
    pub fn observe(
        &mut self,
        destination: &str,
        metric: &str,
        value: f64,
        limit: f64,
    ) -> Option<Transition> {
        let key = (destination.to_string(), metric.to_string());
        let firing = self.firing.contains(&key);
        if !firing && value > limit {
            self.firing.insert(key);
            Some(Transition::Fire)
        } else if firing && value < limit * RESOLVE_BELOW {
            self.firing.remove(&key);
            Some(Transition::Resolve)
        } else {
            None
        }
    }

    /// Whether the pair is over its limit.
    pub fn is_firing(&self, destination: &str, metric: &str) -> bool {
        self.firing
            .contains(&(destination.to_string(), metric.to_string()))
    }

    /// Drops a destination's state (removed from the config, or its limit unset):
    /// returns the metrics that were firing, for the owner to resolve if it wishes.
    pub fn forget(&mut self, destination: &str) -> Vec<String> {
        let gone: Vec<(String, String)> = self
            .firing
            .iter()
            .filter(|(d, _)| d == destination)
            .cloned()
            .collect();
        for k in &gone {
            self.firing.remove(k);
        }
        let mut metrics: Vec<String> = gone.into_iter().map(|(_, m)| m).collect();
        metrics.sort();
        metrics
    }
}

/// SPEC §5: every 30 s (on the clock's 30 s marks), each destination's queue depth,
/// consumer lag and DLQ growth against `[alerts.backpressure]`; an alert when one
/// crosses its limit, another when it falls below 80% of it.
pub async fn run(
    engine: Arc<Engine>,
    alerter: Alerter,
    passes: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    const EVERY_MS: i64 = 30_000;
    let clock = engine.clock.clone();
    let mut tracker = BackpressureTracker::default();
    loop {
        let now = clock.now_ms();
        let next = (now.div_euclid(EVERY_MS) + 1) * EVERY_MS;
        tokio::select! {
            () = clock.sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(cfg) = engine.config() else {
            continue;
        };
        let limits = cfg.alerts.backpressure.clone();
        let (e2, c2) = (engine.clone(), cfg.clone());
        let gauges = match &limits {
            Some(_) => tokio::task::spawn_blocking(move || e2.gauges(&c2))
                .await
                .unwrap_or_else(|e| Err(crate::store::StoreError::Unavailable(e.to_string()))),
            None => Ok(Vec::new()),
        };
        let gauges = match gauges {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "backpressure: cannot read the backlogs; skipped this pass");
                passes.fetch_add(1, Ordering::SeqCst);
                continue;
            }
        };
        let Some(limits) = limits else {
            // No limits: nothing is firing any more.
            tracker = BackpressureTracker::default();
            passes.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        let at = clock.now_ms();
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
                            super::AlertKind::Backpressure {
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
                            super::AlertKind::BackpressureResolved {
                                metric: metric.to_string(),
                                value: value_s,
                                limit: limit_s,
                            },
                            format!("backpressure_{metric}_resolved"),
                        )
                    }
                };
                let state = engine.snapshot(&d.id).map(|s| s.state);
                alerter.send(super::Alert {
                    kind,
                    merchant_id: d.workspace.clone(),
                    destination_id: d.id.clone(),
                    platform: d.platform.name().to_string(),
                    // A paused destination is not evaluated: its last rate is stale
                    // (a manual pause may have nothing to do with errors).
                    error_rate: state
                        .as_ref()
                        .filter(|s| s.mode == crate::store::codec::DestMode::Active)
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
                    actor: None,
                    note: None,
                    figures: Vec::new(),
                    at: crate::clock::rfc3339_ms(at),
                });
            }
        }
        passes.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_and_resolves_below_eighty_percent() {
        let mut t = BackpressureTracker::default();
        assert_eq!(t.observe("d", QUEUE_DEPTH, 100.0, 100.0), None);
        assert_eq!(
            t.observe("d", QUEUE_DEPTH, 101.0, 100.0),
            Some(Transition::Fire)
        );
        assert_eq!(t.observe("d", QUEUE_DEPTH, 500.0, 100.0), None);
        assert_eq!(t.observe("d", QUEUE_DEPTH, 80.0, 100.0), None);
        assert!(t.is_firing("d", QUEUE_DEPTH));
        assert!(!t.is_firing("d", CONSUMER_LAG));
        assert_eq!(
            t.observe("other", QUEUE_DEPTH, 500.0, 100.0),
            Some(Transition::Fire)
        );
        assert_eq!(
            t.observe("d", QUEUE_DEPTH, 79.9, 100.0),
            Some(Transition::Resolve)
        );
        assert_eq!(t.observe("d", QUEUE_DEPTH, 10.0, 100.0), None);
        assert_eq!(
            t.observe("d", QUEUE_DEPTH, 101.0, 100.0),
            Some(Transition::Fire)
        );
        assert_eq!(t.forget("d"), [QUEUE_DEPTH]);
        assert!(!t.is_firing("d", QUEUE_DEPTH));
        assert!(t.is_firing("other", QUEUE_DEPTH));
    }
}
