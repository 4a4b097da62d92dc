//! The fire-once / resolve-below-80% rule of backpressure alerts (SPEC §5), as a pure
//! state machine. The owner samples each destination's metrics every 30 s, feeds them
//! to [`BackpressureTracker::observe`] and sends an [`super::AlertKind::Backpressure`]
//! or [`super::AlertKind::BackpressureResolved`] alert for each transition it returns.

use std::collections::HashSet;

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
