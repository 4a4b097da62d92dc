//! The watches' judgements as pure functions and one fire/resolve tracker, so each
//! rule is tested without a clock or a store.

use std::collections::HashSet;

/// The median of `days` (the mean of the middle two, rounded down, for an even count);
/// None for none.
pub fn median(mut days: Vec<u64>) -> Option<u64> {
    if days.is_empty() {
        return None;
    }
    days.sort_unstable();
    let n = days.len();
    Some(if n % 2 == 1 {
        days[n / 2]
    } else {
        u64::midpoint(days[n / 2 - 1], days[n / 2])
    })
}

/// The silent-source rule: too few events against the baseline (while the baseline is
/// at least `min_baseline`), or against a fixed minimum (`min_events` > 0, once the
/// window has been watched whole).
pub fn silent(
    count: u64,
    baseline: Option<u64>,
    min_ratio: f64,
    min_baseline: u64,
    min_events: u64,
    watched_whole_window: bool,
) -> bool {
    let low_vs_baseline = baseline
        .is_some_and(|b| b >= min_baseline && b > 0 && (count as f64) < min_ratio * b as f64);
    let low_vs_minimum = min_events > 0 && watched_whole_window && count < min_events;
    low_vs_baseline || low_vs_minimum
}

/// Whether half of a backlog would expire before it is delivered at the current drain
/// rate: the event in the middle of the queue is about half as old as the oldest
/// (arrivals spread evenly) and is reached after half the projected drain time; it
/// expires once `limit_s` old. With no drain at all (`drain_s` infinite) the answer is
/// yes once that middle event is past half its life.
pub fn half_would_expire(depth: u64, oldest_age_s: f64, drain_s: f64, limit_s: f64) -> bool {
    if depth == 0 || limit_s <= 0.0 {
        return false;
    }
    let middle_age = oldest_age_s / 2.0;
    if drain_s.is_infinite() {
        return middle_age >= limit_s / 2.0;
    }
    middle_age + drain_s / 2.0 >= limit_s
}

/// A condition counts as true only on its second true look in a row.
#[derive(Debug, Default)]
pub struct Twice {
    seen: HashSet<String>,
}

impl Twice {
    pub fn confirm(&mut self, key: &str, bad: bool) -> bool {
        if !bad {
            self.seen.remove(key);
            return false;
        }
        !self.seen.insert(key.to_string())
    }
}

/// Fire once when a condition turns true, resolve once when it turns false.
#[derive(Debug, Default)]
pub struct Tracker {
    firing: HashSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Fire,
    Resolve,
}

impl Tracker {
    pub fn observe(&mut self, key: &str, bad: bool) -> Option<Step> {
        match (bad, self.firing.contains(key)) {
            (true, false) => {
                self.firing.insert(key.to_string());
                Some(Step::Fire)
            }
            (false, true) => {
                self.firing.remove(key);
                Some(Step::Resolve)
            }
            _ => None,
        }
    }

    /// Forgets keys that are no longer watched (removed, or their watch turned off).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.firing.retain(|k| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(vec![5, 1, 9]), Some(5));
        assert_eq!(median(vec![4, 1, 9, 6]), Some(5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn silent_needs_a_big_enough_baseline_or_a_fixed_minimum() {
        // 200 usual, 20 now, alert below 20 % (40).
        assert!(silent(20, Some(200), 0.2, 100, 0, true));
        assert!(!silent(40, Some(200), 0.2, 100, 0, true));
        // A quiet hour: the baseline is under min_baseline.
        assert!(!silent(0, Some(50), 0.2, 100, 0, true));
        // No baseline yet.
        assert!(!silent(0, None, 0.2, 100, 0, true));
        // A fixed minimum, once the window was watched whole.
        assert!(silent(3, None, 0.2, 100, 5, true));
        assert!(!silent(3, None, 0.2, 100, 5, false));
        assert!(!silent(5, None, 0.2, 100, 5, true));
    }

    #[test]
    fn half_expires_when_the_middle_event_is_reached_too_late() {
        let day = 86_400.0;
        // Oldest 20 h, drain 10 h: middle event 10 h old + 5 h = 15 h < 24 h.
        assert!(!half_would_expire(1000, 20.0 * 3600.0, 10.0 * 3600.0, day));
        // Drain 30 h: 10 h + 15 h ≥ 24 h.
        assert!(half_would_expire(1000, 20.0 * 3600.0, 30.0 * 3600.0, day));
        // Nothing drains: past half its life.
        assert!(!half_would_expire(1000, 20.0 * 3600.0, f64::INFINITY, day));
        assert!(half_would_expire(1000, 24.0 * 3600.0, f64::INFINITY, day));
        assert!(!half_would_expire(0, 48.0 * 3600.0, f64::INFINITY, day));
    }

    #[test]
    fn twice_needs_two_true_looks_in_a_row() {
        let mut t = Twice::default();
        assert!(!t.confirm("a", true));
        assert!(t.confirm("a", true));
        assert!(t.confirm("a", true));
        assert!(!t.confirm("a", false));
        assert!(!t.confirm("a", true));
        assert!(!t.confirm("b", false));
    }

    #[test]
    fn tracker_fires_and_resolves_once() {
        let mut t = Tracker::default();
        assert_eq!(t.observe("a", false), None);
        assert_eq!(t.observe("a", true), Some(Step::Fire));
        assert_eq!(t.observe("a", true), None);
        assert_eq!(t.observe("a", false), Some(Step::Resolve));
        assert_eq!(t.observe("a", false), None);
        t.observe("b", true);
        t.retain(|k| k != "b");
        assert_eq!(t.observe("b", true), Some(Step::Fire));
    }
}
