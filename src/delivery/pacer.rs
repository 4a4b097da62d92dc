//! Pacing per scope (SPEC §3): a sliding window per rate, counted at send time.
//!
//! Each rate keeps a log of `(send time, units)`; a send of `u` units is allowed when the
//! units inside the last `per` plus `u` stay within the target, 98% of `limit` (rounded
//! down, at least 1). A token bucket would let twice the limit through in the first
//! window and trip platforms that enforce sliding windows (TikTok); a log never can.
//! Throttle signals hold the whole scope until a given time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::config::{Rate, RateUnit};

#[derive(Debug)]
struct Window {
    per_ms: i64,
    target: u64,
    unit: RateUnit,
    log: VecDeque<(i64, u64)>,
    used: u64,
}

impl Window {
    fn expire(&mut self, now_ms: i64) {
        while let Some(&(t, u)) = self.log.front() {
            if t > now_ms - self.per_ms {
                break;
            }
            self.log.pop_front();
            self.used -= u;
        }
    }

    /// The time at which `units` more would fit (`now_ms` if they fit now).
    fn fits_at(&self, now_ms: i64, units: u64) -> i64 {
        if self.used + units <= self.target {
            return now_ms;
        }
        let mut need = self.used + units - self.target;
        for &(t, u) in &self.log {
            if u >= need {
                return t + self.per_ms;
            }
            need -= u;
        }
        // More units than one window allows: never (callers cap batches first).
        i64::MAX
    }
}

/// The budget of one scope (a pixel, an ad account, a token…), shared by every
/// destination whose scope key is the same.
#[derive(Debug)]
pub struct ScopePacer {
    windows: Vec<Window>,
    hold_until_ms: i64,
}

/// What may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Send one request with at most this many events.
    Send(usize),
    /// Nothing fits before this time.
    WaitUntil(i64),
}

impl ScopePacer {
    pub fn new(rates: &[Rate]) -> Self {
        let windows = rates
            .iter()
            .filter(|r| r.limit > 0)
            .map(|r| Window {
                per_ms: r.per.as_millis() as i64,
                target: ((r.limit as f64 * 0.98).floor() as u64).max(1),
                unit: r.unit,
                log: VecDeque::new(),
                used: 0,
            })
            .collect();
        Self {
            windows,
            hold_until_ms: 0,
        }
    }

    /// Most events one request may carry under these rates (one window's worth).
    pub fn max_events_per_request(&self) -> usize {
        self.windows
            .iter()
            .filter(|w| w.unit == RateUnit::Events)
            .map(|w| w.target as usize)
            .min()
            .unwrap_or(usize::MAX)
    }

    pub fn hold_until(&mut self, until_ms: i64) {
        self.hold_until_ms = self.hold_until_ms.max(until_ms);
    }

    pub fn held_until(&self) -> i64 {
        self.hold_until_ms
    }

    /// How many of `wanted` events may go in one request now, or when to ask again.
    pub fn grant(&mut self, now_ms: i64, wanted: usize) -> Grant {
        if now_ms < self.hold_until_ms {
            return Grant::WaitUntil(self.hold_until_ms);
        }
        let mut n = wanted.min(self.max_events_per_request()).max(1);
        let mut wait = now_ms;
        for w in &mut self.windows {
            w.expire(now_ms);
            match w.unit {
                RateUnit::Requests => wait = wait.max(w.fits_at(now_ms, 1)),
                RateUnit::Events => {
                    let room = w.target.saturating_sub(w.used) as usize;
                    if room == 0 {
                        wait = wait.max(w.fits_at(now_ms, 1));
                    } else {
                        n = n.min(room);
                    }
                }
            }
        }
        if wait > now_ms {
            Grant::WaitUntil(wait)
        } else {
            Grant::Send(n)
        }
    }

    /// Records a send of `events` events in one request at `now_ms`.
    pub fn record(&mut self, now_ms: i64, events: usize) {
        for w in &mut self.windows {
            let u = match w.unit {
                RateUnit::Requests => 1,
                RateUnit::Events => events as u64,
            };
            w.log.push_back((now_ms, u));
            w.used += u;
        }
    }
}

/// Every scope's pacer, by scope key. Destinations sharing a key share the pacer.
#[derive(Default)]
pub struct Pacers {
    map: Mutex<HashMap<String, Arc<Mutex<ScopePacer>>>>,
}

impl Pacers {
    /// The pacer of a scope key; a changed rate list replaces its windows (on reload).
    pub fn get(&self, key: &str, rates: &[Rate]) -> Arc<Mutex<ScopePacer>> {
        let mut m = self.map.lock().expect("pacers lock");
        let p = m
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(ScopePacer::new(rates))))
            .clone();
        drop(m);
        {
            let mut g = p.lock().expect("pacer lock");
            let same = g.windows.len() == rates.iter().filter(|r| r.limit > 0).count()
                && g.windows
                    .iter()
                    .zip(rates.iter().filter(|r| r.limit > 0))
                    .all(|(w, r)| {
                        w.per_ms == r.per.as_millis() as i64
                            && w.unit == r.unit
                            && w.target == ((r.limit as f64 * 0.98).floor() as u64).max(1)
                    });
            if !same {
                let hold = g.hold_until_ms;
                *g = ScopePacer::new(rates);
                g.hold_until_ms = hold;
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateScope;
    use std::time::Duration;

    fn rate(limit: u64, per_s: u64, unit: RateUnit) -> Rate {
        Rate {
            limit,
            per: Duration::from_secs(per_s),
            unit,
            scope: RateScope::Destination,
        }
    }

    #[test]
    fn requests_window_never_exceeds_target_in_any_window() {
        let mut p = ScopePacer::new(&[rate(600, 60, RateUnit::Requests)]);
        let mut sends = Vec::new();
        let mut now = 0;
        while now < 300_000 {
            match p.grant(now, 10) {
                Grant::Send(n) => {
                    assert_eq!(n, 10);
                    p.record(now, n);
                    sends.push(now);
                }
                Grant::WaitUntil(t) => now = t,
            }
        }
        // 588 = 98% of 600 in every window of 60 s.
        for (i, &t) in sends.iter().enumerate() {
            let in_window = sends[i..].iter().take_while(|&&s| s < t + 60_000).count();
            assert!(in_window <= 588, "{in_window} sends in the window from {t}");
        }
        assert_eq!(sends.len(), 588 * 5);
    }

    #[test]
    fn events_window_caps_batch_and_waits() {
        let mut p = ScopePacer::new(&[rate(1000, 60, RateUnit::Events)]);
        assert_eq!(p.max_events_per_request(), 980);
        assert_eq!(p.grant(0, 5000), Grant::Send(980));
        p.record(0, 900);
        assert_eq!(p.grant(1, 5000), Grant::Send(80));
        p.record(1, 80);
        assert_eq!(p.grant(2, 10), Grant::WaitUntil(60_000));
        assert_eq!(p.grant(60_000, 5000), Grant::Send(900));
    }

    #[test]
    fn hold_blocks_until_its_time() {
        let mut p = ScopePacer::new(&[]);
        assert_eq!(p.grant(0, 3), Grant::Send(3));
        p.hold_until(5_000);
        assert_eq!(p.grant(10, 3), Grant::WaitUntil(5_000));
        assert_eq!(p.grant(5_000, 3), Grant::Send(3));
    }
}
