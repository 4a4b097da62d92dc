//! Settling: what each answer means for each of its events ([`decide`], pure and
//! unit-tested), the retry ladder ([`retry_fate`], [`backoff_ms`]), and the request log
//! row of each answer. What is settled waits in [`Settlement`] for the commit that
//! records it (`commit`).

use std::sync::Arc;

use tracing::{debug, info, warn};

use super::send::Sent;
use super::{Item, Last, Worker};
use crate::config::PlatformPolicy;
use crate::delivery::request_log;
use crate::health::Change;
use crate::health::machine::AttemptKind;
use crate::metrics::Outcome;
use crate::platforms::{Class, Verdict, redact, retry_after_ms};
use crate::store::DeliveryOp;
use crate::store::codec::{ErrorClass, OutcomeRecord, RequestRecord};
use crate::store::history;

/// The hold after a throttle answer without a hint.
const DEFAULT_HOLD_MS: i64 = 60_000;
/// First bytes of a response kept in a DLQ entry.
const BODY_KEEP: usize = 4096;

/// The settled fate of one event.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fate {
    Done,
    Retry {
        due_ms: u64,
        status: Option<u16>,
    },
    Dlq {
        class: ErrorClass,
        status: Option<u16>,
        body: String,
    },
}

/// What happens to one event of an answered request.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    Settle(Fate),
    /// Back to the front of the queue, its retry count unchanged (throttled, auth,
    /// gone: the pipe's problem, not the event's).
    Requeue,
    /// Sent again at once in a batch of its own with the other rows of the same group
    /// (rows a platform did not reject; the halves of a bisection, group 0 first).
    Resend {
        group: u8,
    },
}

/// What is settled and not yet committed.
#[derive(Default)]
pub(super) struct Settlement {
    pub settled: Vec<(Item, Fate)>,
    pub extra: Vec<DeliveryOp>,
    pub changes: Vec<Change>,
    pub now: i64,
}

/// `min(base · 2^(n-1), max)`, spread by `jitter`.
pub(super) fn backoff_ms(policy: &PlatformPolicy, n: u32) -> i64 {
    let base = policy.retry.base.as_millis() as f64;
    let max = policy.retry.max.as_millis() as f64;
    let mut d = (base * 2f64.powi(n.saturating_sub(1).min(40) as i32)).min(max);
    if policy.retry.jitter > 0.0 {
        let mut b = [0u8; 8];
        let _ = getrandom::getrandom(&mut b);
        let u = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
        d *= 1.0 + policy.retry.jitter * (2.0 * u - 1.0);
    }
    d.round() as i64
}

/// A retryable failure of an event that has had `retries` retries: retried after its
/// backoff (at least `hint`), or dead-lettered as `retries_exhausted` once it has used
/// every retry.
pub(super) fn retry_fate(
    policy: &PlatformPolicy,
    retries: u32,
    now: i64,
    hint: Option<i64>,
    status: Option<u16>,
    body: &str,
) -> Fate {
    if retries >= policy.retry.max_retries {
        Fate::Dlq {
            class: ErrorClass::RetriesExhausted,
            status,
            body: body.to_string(),
        }
    } else {
        let delay = backoff_ms(policy, retries + 1).max(hint.unwrap_or(0));
        Fate::Retry {
            due_ms: (now + delay).max(0) as u64,
            status,
        }
    }
}

/// What an answer means for each of its events (`retries[i]`: retries event `i` has
/// had). Rejections go to the DLQ; retryable failures climb the ladder; throttle, auth
/// and gone answers requeue; named rows split a batch; an unnamed rejection bisects.
pub(super) fn decide(
    verdict: &Verdict,
    retries: &[u32],
    policy: &PlatformPolicy,
    now: i64,
    hint: Option<i64>,
    status: Option<u16>,
    body: &str,
) -> Vec<Action> {
    let n = retries.len();
    let rejected = || {
        Action::Settle(Fate::Dlq {
            class: ErrorClass::Rejected,
            status,
            body: body.to_string(),
        })
    };
    let retry = |r: u32, hint| Action::Settle(retry_fate(policy, r, now, hint, status, body));
    match verdict {
        Verdict::Whole(Class::Delivered) => vec![Action::Settle(Fate::Done); n],
        Verdict::Whole(Class::Retryable) => retries.iter().map(|r| retry(*r, hint)).collect(),
        Verdict::Whole(Class::Throttled { .. } | Class::Auth | Class::Gone(_)) => {
            vec![Action::Requeue; n]
        }
        Verdict::Whole(Class::Rejected) => (0..n).map(|_| rejected()).collect(),
        // Rows named that are not in the request: rejected whole rather than resent
        // forever.
        Verdict::RowsRejected(rows) if !rows.iter().any(|r| *r < n) => {
            (0..n).map(|_| rejected()).collect()
        }
        Verdict::RowsRejected(rows) => (0..n)
            .map(|i| {
                if rows.contains(&i) {
                    rejected()
                } else {
                    Action::Resend { group: 0 }
                }
            })
            .collect(),
        // The request itself succeeded: each row has its own fate. A row without a
        // class (a short answer) is taken as delivered only when the platform named
        // every failure; adapters give one class per event.
        Verdict::PerRow(classes) => retries
            .iter()
            .enumerate()
            .map(|(i, r)| match classes.get(i).unwrap_or(&Class::Delivered) {
                Class::Delivered => Action::Settle(Fate::Done),
                Class::Rejected => rejected(),
                Class::Retryable | Class::Throttled { .. } | Class::Auth | Class::Gone(_) => {
                    retry(*r, None)
                }
            })
            .collect(),
        Verdict::Bisect if n <= 1 => (0..n).map(|_| rejected()).collect(),
        Verdict::Bisect => (0..n)
            .map(|i| Action::Resend {
                group: u8::from(i >= n / 2),
            })
            .collect(),
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

impl Worker {
    /// Decides the fate of one answer's events and records the attempt; they are
    /// committed with the next commit.
    pub(super) fn settle_sent(&mut self, sent: Sent) {
        let mut acc = std::mem::take(&mut self.queued);
        self.settle_into(sent, &mut acc);
        self.queued = acc;
    }

    fn settle_into(&mut self, sent: Sent, acc: &mut Settlement) {
        let now = sent.at_ms;
        // Nothing was sent: the events' data cannot go into a request. Not an attempt
        // (the pipe is fine); a lone event goes to the DLQ as unsendable, a batch is
        // split until the poison one is alone.
        if let Some(why) = &sent.attempt.unbuildable {
            acc.now = acc.now.max(now);
            let mut items = sent.items;
            if items.len() <= 1 {
                let mut error = format!("the request could not be built: {why}");
                truncate(&mut error, history::ERROR_KEEP);
                let last = Arc::new(Last {
                    sent: false,
                    status: None,
                    request_id: None,
                    error: Some(error),
                });
                for mut item in items {
                    item.last = Some(last.clone());
                    warn!(destination = %self.id, reason = %why, "an event cannot be sent; it goes to the DLQ as unsendable");
                    acc.settled.push((
                        item,
                        Fate::Dlq {
                            class: ErrorClass::Unsendable,
                            status: None,
                            body: format!("the request could not be built: {why}"),
                        },
                    ));
                }
            } else {
                let second = items.split_off(items.len() / 2);
                self.forced.push_front(second);
                self.forced.push_front(items);
            }
            return;
        }
        let metrics = self.engine.metrics.clone();
        metrics.request(&self.labels, sent.items.len() as u64, sent.latency_ms, now);
        acc.now = acc.now.max(now);
        let a = sent.attempt;
        let status = a.response.as_ref().map(|r| r.status);
        // The request log's excerpt is taken from the whole redacted answer, before
        // the DLQ's cut (only while the log is on).
        let logged = self.ctx.request_log > 0;
        let excerpt = |t: &str| {
            if logged {
                request_log::excerpt(t)
            } else {
                String::new()
            }
        };
        let (body, excerpt) = match (&a.response, &a.error) {
            (Some(r), _) => {
                let mut text = String::from_utf8_lossy(&r.body).into_owned();
                text = redact(&text, &a.secrets);
                let excerpt = excerpt(&text);
                truncate(&mut text, BODY_KEEP);
                (text, excerpt)
            }
            (None, Some(e)) => (e.clone(), excerpt(e)),
            (None, None) => (String::new(), String::new()),
        };
        self.log_request(&sent.items, &a, now, sent.latency_ms, excerpt, acc);
        // Every request is an attempt; a rejection is a data problem, not a pipe failure.
        let (kind, gone) = match &a.verdict {
            Verdict::Whole(Class::Auth) => (AttemptKind::Auth, None),
            Verdict::Whole(Class::Gone(reason)) => (AttemptKind::Error, Some(*reason)),
            Verdict::Whole(Class::Retryable | Class::Throttled { .. }) => {
                (AttemptKind::Error, None)
            }
            _ => (AttemptKind::Success, None),
        };
        let outcome = OutcomeRecord {
            at_ms: now,
            error: kind != AttemptKind::Success,
            status,
            latency_ms: sent.latency_ms.clamp(0, i64::from(u32::MAX)) as u32,
        };
        let (mut extra, change) = self.health.on_attempt(&self.id, outcome, kind, gone);
        let policy = &self.ctx.dest.policy;
        match &a.verdict {
            Verdict::Whole(Class::Throttled { hold_ms }) => {
                let until = now + hold_ms.unwrap_or(DEFAULT_HOLD_MS);
                for p in &self.ctx.pacers {
                    p.lock().expect("pacer lock").hold_until(until);
                }
                if self.ctx.pacers.is_empty() {
                    self.dest_hold_until = self.dest_hold_until.max(until);
                }
                info!(destination = %self.id, hold_ms = until - now, "throttled by the platform; holding the scope");
                metrics.outcome(
                    &self.labels,
                    Outcome::Throttled,
                    sent.items.len() as u64,
                    now,
                );
            }
            Verdict::Whole(Class::Auth) => {
                self.dest_hold_until = now + (policy.retry.base.as_millis() as i64).max(1000);
                warn!(destination = %self.id, status, "the platform refused the credentials; events stay queued");
            }
            _ => {}
        }
        let hint = match &a.verdict {
            Verdict::Whole(Class::Retryable) => {
                a.response.as_ref().and_then(|r| retry_after_ms(r, now))
            }
            _ => None,
        };
        let delivered = matches!(a.verdict, Verdict::Whole(Class::Delivered));
        let last = Arc::new(Last {
            sent: true,
            status,
            request_id: a
                .response
                .as_ref()
                .and_then(|r| self.ctx.adapter.request_id(r)),
            error: (!delivered).then(|| {
                let mut e = body.clone();
                truncate(&mut e, history::ERROR_KEEP);
                e
            }),
        });
        let mut items = sent.items;
        for item in &mut items {
            item.last = Some(last.clone());
        }
        let retries: Vec<u32> = items.iter().map(|i| i.retries).collect();
        let actions = decide(&a.verdict, &retries, policy, now, hint, status, &body);
        let (mut requeue, mut groups) = (Vec::new(), [Vec::new(), Vec::new()]);
        for (item, action) in items.into_iter().zip(actions) {
            match action {
                Action::Settle(f) => acc.settled.push((item, f)),
                Action::Requeue => requeue.push(item),
                Action::Resend { group } => groups[usize::from(group.min(1))].push(item),
            }
        }
        self.requeue(requeue);
        for g in groups.into_iter().rev().filter(|g| !g.is_empty()) {
            self.forced.push_front(g);
        }
        acc.extra.append(&mut extra);
        if let Some(c) = change
            && !acc.changes.contains(&c)
        {
            acc.changes.push(c);
        }
    }

    /// One answered request: a debug line, and a row of the request log (when it is
    /// on) that commits with the settlement.
    fn log_request(
        &self,
        items: &[Item],
        a: &super::send::Attempt,
        at_ms: i64,
        latency_ms: i64,
        excerpt: String,
        acc: &mut Settlement,
    ) {
        let keep = self.ctx.request_log;
        // Finding the request id may parse the answer: not done for nothing.
        if keep == 0 && !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let status = a.response.as_ref().map(|r| r.status);
        let request_id = a
            .response
            .as_ref()
            .and_then(|r| self.ctx.adapter.request_id(r));
        let outcome = request_log::outcome(&a.verdict, a.response.is_some(), items.len());
        // The request id is the platform's, cleaned to printable ASCII without spaces.
        debug!(destination = %self.id, events = items.len(), status, latency_ms, outcome = outcome.name(), request_id = request_id.as_deref().unwrap_or("-"), "request answered");
        if keep == 0 {
            return;
        }
        acc.extra.push(DeliveryOp::RequestLog {
            dest: self.id.clone(),
            keep,
            record: RequestRecord {
                sent_ms: at_ms - latency_ms,
                events: u32::try_from(items.len()).unwrap_or(u32::MAX),
                status,
                latency_ms: latency_ms.clamp(0, i64::from(u32::MAX)) as u32,
                outcome,
                request_id,
                excerpt,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PlatformPolicy {
        // max_retries 8, base 1 s, max 128 s, no jitter.
        crate::platforms::testkit::dests()[0].policy.clone()
    }

    fn due(f: &Fate) -> i64 {
        match f {
            Fate::Retry { due_ms, .. } => *due_ms as i64,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_from_base_up_to_max() {
        let p = policy();
        let ladder: Vec<i64> = (1..=10).map(|n| backoff_ms(&p, n)).collect();
        assert_eq!(
            ladder,
            [1, 2, 4, 8, 16, 32, 64, 128, 128, 128].map(|s| s * 1000)
        );
        // Huge attempt numbers do not overflow.
        assert_eq!(backoff_ms(&p, u32::MAX), 128_000);
    }

    #[test]
    fn jitter_spreads_within_its_fraction() {
        let mut p = policy();
        p.retry.jitter = 0.2;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = backoff_ms(&p, 3);
            assert!((3200..=4800).contains(&d), "{d}");
            seen.insert(d);
        }
        assert!(seen.len() > 10, "jitter must spread the delays");
    }

    #[test]
    fn retry_fate_climbs_the_ladder_then_dead_letters() {
        let p = policy();
        let now = 1_000_000;
        assert_eq!(
            due(&retry_fate(&p, 0, now, None, Some(503), "x")),
            now + 1000
        );
        // The fourth try (three retries made) waits 2^3 s.
        assert_eq!(due(&retry_fate(&p, 3, now, None, None, "x")), now + 8_000);
        // A Retry-After longer than the backoff wins; a shorter one does not.
        assert_eq!(
            due(&retry_fate(&p, 0, now, Some(30_000), None, "")),
            now + 30_000
        );
        assert_eq!(
            due(&retry_fate(&p, 5, now, Some(10), None, "")),
            now + 32_000
        );
        assert_eq!(
            retry_fate(&p, 8, now, None, Some(500), "boom"),
            Fate::Dlq {
                class: ErrorClass::RetriesExhausted,
                status: Some(500),
                body: "boom".into()
            }
        );
        match retry_fate(&p, 7, now, None, Some(500), "") {
            Fate::Retry { status, .. } => assert_eq!(status, Some(500)),
            f => panic!("the eighth retry is still a retry: {f:?}"),
        }
    }

    fn rejected() -> Action {
        Action::Settle(Fate::Dlq {
            class: ErrorClass::Rejected,
            status: Some(400),
            body: "bad".into(),
        })
    }

    #[test]
    fn decide_covers_every_verdict() {
        let p = policy();
        let d = |v: Verdict, r: &[u32]| decide(&v, r, &p, 0, None, Some(400), "bad");
        assert_eq!(
            d(Verdict::Whole(Class::Delivered), &[0, 3]),
            vec![Action::Settle(Fate::Done); 2]
        );
        assert_eq!(
            d(Verdict::Whole(Class::Retryable), &[0, 8]),
            vec![
                Action::Settle(Fate::Retry {
                    due_ms: 1000,
                    status: Some(400)
                }),
                Action::Settle(Fate::Dlq {
                    class: ErrorClass::RetriesExhausted,
                    status: Some(400),
                    body: "bad".into()
                }),
            ]
        );
        for v in [
            Class::Throttled { hold_ms: Some(5) },
            Class::Auth,
            Class::Gone("endpoint_gone"),
        ] {
            assert_eq!(d(Verdict::Whole(v), &[2, 2]), vec![Action::Requeue; 2]);
        }
        assert_eq!(d(Verdict::Whole(Class::Rejected), &[0]), vec![rejected()]);
        assert_eq!(
            d(Verdict::RowsRejected(vec![1]), &[0, 0, 0]),
            vec![
                Action::Resend { group: 0 },
                rejected(),
                Action::Resend { group: 0 }
            ]
        );
        // Rows named outside the request: the whole request is rejected.
        assert_eq!(
            d(Verdict::RowsRejected(vec![7]), &[0, 0]),
            vec![rejected(), rejected()]
        );
        assert_eq!(
            d(
                Verdict::PerRow(vec![Class::Delivered, Class::Rejected, Class::Auth]),
                &[0, 0, 1, 0]
            ),
            vec![
                Action::Settle(Fate::Done),
                rejected(),
                Action::Settle(Fate::Retry {
                    due_ms: 2000,
                    status: Some(400)
                }),
                // A row without a class: delivered.
                Action::Settle(Fate::Done),
            ]
        );
        assert_eq!(d(Verdict::Bisect, &[0]), vec![rejected()]);
        assert_eq!(
            d(Verdict::Bisect, &[0, 0, 0, 0, 0]),
            vec![
                Action::Resend { group: 0 },
                Action::Resend { group: 0 },
                Action::Resend { group: 1 },
                Action::Resend { group: 1 },
                Action::Resend { group: 1 },
            ]
        );
    }

    #[test]
    fn body_truncation_keeps_whole_characters() {
        let mut s = "é".repeat(3000);
        truncate(&mut s, BODY_KEEP);
        assert!(s.len() <= BODY_KEEP && s.len() >= BODY_KEEP - 1);
        assert!(s.chars().all(|c| c == 'é'));
    }
}
