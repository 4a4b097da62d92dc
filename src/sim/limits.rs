//! The rate limits a simulator enforces: sliding or fixed windows per (limit, key),
//! read from the simulator's clock.

use std::collections::{HashMap, VecDeque};

/// A platform limit the simulator enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub per_ms: i64,
    /// Count events (Meta-style) rather than requests.
    pub events: bool,
    /// Fixed windows aligned to multiples of `per_ms` (Klaviyo) instead of sliding.
    pub fixed: bool,
}

impl RateLimit {
    pub const fn sliding(limit: u64, per_ms: i64) -> Self {
        Self {
            limit,
            per_ms,
            events: false,
            fixed: false,
        }
    }

    pub const fn fixed(limit: u64, per_ms: i64) -> Self {
        Self {
            limit,
            per_ms,
            events: false,
            fixed: true,
        }
    }
}

/// Sliding or fixed windows per (limit, key).
#[derive(Default)]
pub(super) struct Limiter {
    sliding: HashMap<(usize, String), VecDeque<(i64, u64)>>,
    fixed: HashMap<(usize, String), (i64, u64)>,
}

impl Limiter {
    /// Admits `cost` units for `key` at `now`, or says how many ms until it could.
    pub(super) fn admit(
        &mut self,
        limits: &[RateLimit],
        key: &str,
        cost: u64,
        now: i64,
    ) -> Result<(), i64> {
        let mut wait = 0i64;
        for (i, l) in limits.iter().enumerate() {
            let cost = if l.events { cost } else { 1 };
            if l.limit == 0 {
                continue;
            }
            if l.fixed {
                let start = now - now.rem_euclid(l.per_ms);
                let e = self.fixed.entry((i, key.to_string())).or_insert((start, 0));
                if e.0 != start {
                    *e = (start, 0);
                }
                if e.1 + cost > l.limit {
                    wait = wait.max(start + l.per_ms - now);
                }
            } else {
                let q = self.sliding.entry((i, key.to_string())).or_default();
                while q.front().is_some_and(|(t, _)| *t <= now - l.per_ms) {
                    q.pop_front();
                }
                let used: u64 = q.iter().map(|(_, c)| c).sum();
                if used + cost > l.limit {
                    // The earliest time enough units have left the window.
                    let mut freed = 0;
                    let need = used + cost - l.limit;
                    for (t, c) in q.iter() {
                        freed += c;
                        if freed >= need {
                            wait = wait.max(t + l.per_ms - now);
                            break;
                        }
                    }
                    wait = wait.max(1);
                }
            }
        }
        if wait > 0 {
            return Err(wait);
        }
        for (i, l) in limits.iter().enumerate() {
            let cost = if l.events { cost } else { 1 };
            if l.limit == 0 {
                continue;
            }
            if l.fixed {
                if let Some(e) = self.fixed.get_mut(&(i, key.to_string())) {
                    e.1 += cost;
                }
            } else if let Some(q) = self.sliding.get_mut(&(i, key.to_string())) {
                q.push_back((now, cost));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_frees_as_it_slides() {
        let mut l = Limiter::default();
        let lim = [RateLimit::sliding(2, 1000)];
        assert!(l.admit(&lim, "k", 1, 0).is_ok());
        assert!(l.admit(&lim, "k", 1, 500).is_ok());
        assert_eq!(l.admit(&lim, "k", 1, 900), Err(100));
        assert!(l.admit(&lim, "other", 1, 900).is_ok());
        assert!(l.admit(&lim, "k", 1, 1000).is_ok());
        assert_eq!(l.admit(&lim, "k", 1, 1200), Err(300));
    }

    #[test]
    fn fixed_window_resets_on_the_boundary() {
        let mut l = Limiter::default();
        let lim = [RateLimit::fixed(1, 1000)];
        assert!(l.admit(&lim, "k", 1, 10).is_ok());
        assert_eq!(l.admit(&lim, "k", 1, 990), Err(10));
        assert!(l.admit(&lim, "k", 1, 1000).is_ok());
    }
}
