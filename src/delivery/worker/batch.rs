//! Batching and pacing: the next batch to send, no larger than `max_batch`, held back
//! by `linger` while a batch could still fill, and granted by every pacing scope of the
//! destination (the smallest grant wins; any scope that must wait holds the batch).

use super::{Item, Origin, Worker};
use crate::delivery::pacer::Grant;

pub(super) enum Next {
    Send(Vec<Item>),
    Wait(i64),
    Idle,
}

impl Worker {
    pub(super) fn next_batch(&mut self, now: i64) -> Next {
        // Paused, or a state change (auth refused three times, endpoint gone) waits for
        // the commit of the answers that called for it: nothing more goes out.
        if self.health.is_paused() || self.change_pending() {
            return Next::Idle;
        }
        let policy = &self.ctx.dest.policy;
        // Probing: one event per request, `probe_requests` requests in all.
        let probing = self.health.probe().is_some();
        if probing && !self.health.probe_may_send(&policy.auto_pause) {
            return Next::Idle;
        }
        if self.dest_hold_until > now {
            return Next::Wait(self.dest_hold_until);
        }
        // The store refused to record outcomes: nothing goes out until it takes them.
        if self.store_hold.holding(now) {
            return Next::Wait(self.store_hold.until);
        }
        let max_batch = policy.max_batch as usize;
        let wanted = match self.forced.front() {
            Some(b) => b.len(),
            None => {
                let Some(first) = self.ready.front() else {
                    return Next::Idle;
                };
                if self.ready.len() < max_batch && first.origin == Origin::Log {
                    let due = first.stored.accepted_ms + policy.linger.as_millis() as i64;
                    if due > now {
                        return Next::Wait(due);
                    }
                }
                self.ready.len().min(max_batch)
            }
        };
        let wanted = if probing { wanted.min(1) } else { wanted };
        let mut n = wanted;
        let mut wait = now;
        for p in &self.ctx.pacers {
            match p.lock().expect("pacer lock").grant(now, wanted) {
                Grant::Send(k) => n = n.min(k),
                Grant::WaitUntil(t) => wait = wait.max(t),
            }
        }
        if wait > now {
            return Next::Wait(wait);
        }
        for p in &self.ctx.pacers {
            p.lock().expect("pacer lock").record(now, n);
        }
        let batch = match self.forced.pop_front() {
            Some(mut b) => {
                if n < b.len() {
                    let rest = b.split_off(n);
                    self.forced.push_front(rest);
                }
                b
            }
            None => self.ready.drain(..n).collect(),
        };
        self.health.probe_sent();
        Next::Send(batch)
    }

    /// Puts items back at the front of the queue, in their order.
    pub(super) fn requeue(&mut self, items: Vec<Item>) {
        for item in items.into_iter().rev() {
            self.ready.push_front(item);
        }
    }
}
