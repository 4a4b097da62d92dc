//! Committing what was settled: one commit at a time carries every settled fate (retry
//! and DLQ writes, history rows, outcome records) with the cursor move they allow, so
//! the worker goes on sending while it is in flight. Memory follows only a successful
//! commit; after a failed one the events go back to be sent again, and the store is
//! given a hold ([`StoreHold`]) before the next try.

use tracing::{info, warn};

use super::settle::{Fate, Settlement};
use std::sync::Arc;

use super::{Item, Last, Origin, Worker};
use crate::health::Change;
use crate::metrics::Outcome;
use crate::store::codec::{DlqRecord, ErrorClass, RetryRecord};
use crate::store::history::{self, HistoryFate};
use crate::store::{DeliveryOp, StoreError};

impl Worker {
    /// Whether answers called for a state change not yet made.
    pub(super) fn change_pending(&self) -> bool {
        !self.queued.changes.is_empty()
            || self
                .committing
                .as_ref()
                .is_some_and(|c| !c.job.changes.is_empty())
    }

    /// Whether a commit should start now: none is in flight, and there are fates to
    /// record or the cursor can move.
    pub(super) fn commit_due(&self) -> bool {
        self.committing.is_none()
            && self.engine.clock.now_ms() >= self.store_hold.until
            && (!self.queued.settled.is_empty()
                || !self.queued.extra.is_empty()
                || !self.queued.changes.is_empty()
                || self.lowest_unsettled() != self.cursor)
    }

    /// Starts the commit of everything settled so far with the cursor move it allows.
    /// Only one commit is in flight at a time; the worker goes on sending while it is
    /// (what settles meanwhile waits for the next one). Its events stay taken (the
    /// cursor never passes them) until the commit returns.
    pub(super) fn start_commit(&mut self) {
        let Settlement {
            settled,
            extra,
            changes,
            now,
        } = std::mem::take(&mut self.queued);
        let now = now.max(self.engine.clock.now_ms());
        let kept_extra = extra.clone();
        let mut ops = extra;
        // Outcome records need the state's attempt count with them: the state as it is
        // now (a change made since they were recorded is in it).
        if ops.iter().any(|o| matches!(o, DeliveryOp::Outcome { .. })) {
            ops.push(self.health.state_op(&self.id));
        }
        let mut hist = HistoryBatch::new(now, settled.len());
        for (item, fate) in &settled {
            if let Origin::Retry { due_ms } = item.origin {
                ops.push(DeliveryOp::RetryDel {
                    dest: self.id.clone(),
                    due_ms,
                    seq: item.seq,
                });
            }
            let (hfate, after_dlq_put) = match fate {
                Fate::Done => (HistoryFate::Delivered, false),
                Fate::Retry { due_ms, .. } => (HistoryFate::Retrying { due_ms: *due_ms }, false),
                Fate::Dlq { class, .. } => (
                    HistoryFate::DeadLettered {
                        class: *class,
                        dlq_id: None,
                    },
                    true,
                ),
            };
            match fate {
                Fate::Done => {}
                Fate::Retry { due_ms, status } => ops.push(DeliveryOp::RetryPut {
                    dest: self.id.clone(),
                    due_ms: *due_ms,
                    seq: item.seq,
                    record: RetryRecord {
                        retries: item.retries + 1,
                        first_seen_ms: item.first_seen_ms,
                        last_attempt_ms: now,
                        last_status: *status,
                        event_copy: item
                            .own_copy
                            .then(|| serde_bytes::ByteBuf::from(item.raw.clone())),
                        dlq_id: item.dlq_id,
                    },
                }),
                Fate::Dlq {
                    class,
                    status,
                    body,
                } => ops.push(DeliveryOp::DlqPut {
                    dest: self.id.clone(),
                    record: DlqRecord {
                        workspace: self.ws.clone(),
                        seq: item.seq,
                        event: serde_bytes::ByteBuf::from(item.raw.clone()),
                        error_class: *class,
                        status: *status,
                        response_body: body.clone(),
                        retries: item.retries,
                        first_seen_ms: item.first_seen_ms,
                        last_attempt_ms: now,
                    },
                }),
            }
            hist.push(item, hfate, after_dlq_put);
        }
        if !hist.batch.entries.is_empty() {
            // After the DlqPuts: its flagged entries take the ids the writer gives them.
            ops.push(DeliveryOp::History {
                dest: self.id.clone(),
                batch: hist.batch,
            });
        }
        let done: Vec<u64> = settled
            .iter()
            .filter(|(i, _)| i.origin == Origin::Log)
            .map(|(i, _)| i.seq)
            .collect();
        let new_cursor = self
            .inflight_log
            .iter()
            .find(|s| !done.contains(s))
            .copied()
            .unwrap_or(self.next_read);
        // Settled above a lower event still in flight: remembered, so a restart does not
        // send them again.
        let above: Vec<u64> = done.iter().copied().filter(|s| *s >= new_cursor).collect();
        if !above.is_empty() {
            ops.push(DeliveryOp::SettledAbove {
                dest: self.id.clone(),
                seqs: above,
            });
        }
        // The cursor move first: the backlog summary subtracts what it passes that is
        // not marked settled, and the marks it passes go after it.
        if new_cursor != self.cursor {
            ops.push(DeliveryOp::Cursor {
                dest: self.id.clone(),
                next_seq: new_cursor,
            });
        }
        if new_cursor > self.cursor {
            ops.push(DeliveryOp::SettledBelow {
                dest: self.id.clone(),
                below: new_cursor,
            });
        }
        let store = self.engine.store.clone();
        self.committing = Some(Committing {
            fut: Box::pin(async move { store.delivery(ops).await }),
            job: Job {
                settled,
                extra: kept_extra,
                done,
                new_cursor,
                changes,
                now,
            },
        });
    }

    /// The commit in flight returned: memory follows a success; after a failure the
    /// events go back to be sent again. Returns the state changes the answers called
    /// for, to make now that their outcome records are committed.
    pub(super) fn apply_commit(&mut self, result: Result<(), StoreError>) -> (Vec<Change>, i64) {
        let Some(c) = self.committing.take() else {
            return (Vec::new(), 0);
        };
        let Job {
            settled,
            extra,
            done,
            new_cursor,
            changes,
            now,
        } = c.job;
        match result {
            Ok(()) => {
                self.store_hold = StoreHold::default();
                count_fates(&self.engine.metrics, &self.labels, &settled, now);
                for s in &done {
                    self.inflight_log.remove(s);
                }
                self.cursor = new_cursor;
                // Settled above the cursor: never read again in this run either (a pause
                // makes the worker read again from the cursor).
                self.settled_above.retain(|s| *s >= new_cursor);
                self.settled_above
                    .extend(done.iter().copied().filter(|s| *s >= new_cursor));
                for (item, fate) in &settled {
                    if let Origin::Retry { due_ms } = item.origin {
                        self.taken_retries.remove(&(due_ms, item.seq));
                    }
                    if let Fate::Dlq { class, status, .. } = fate {
                        // The id comes from outside: escaped (Debug), so no character of it can
                        // end the line or forge another.
                        info!(destination = %self.id, event_id = ?item.stored.event.event_id, class = class.name(), status, retries = item.retries, "dead-lettered");
                    }
                }
            }
            Err(e) => {
                // The fates are known: keep them and commit them again once the store
                // takes writes; send nothing meanwhile (a re-send would only repeat
                // what the platform already has). Backoff 1 s doubling up to 30 s.
                let wait = self.store_hold.fail();
                warn!(destination = %self.id, error = %e, events = settled.len(), retry_in_ms = wait, "could not record delivery outcomes; holding them and sending nothing until the store takes writes again");
                self.store_hold.until = self.engine.clock.now_ms() + wait;
                let mut q = std::mem::take(&mut self.queued);
                let mut again = Settlement {
                    settled,
                    extra,
                    changes: Vec::new(),
                    now,
                };
                again.settled.append(&mut q.settled);
                again.extra.append(&mut q.extra);
                again.changes = q.changes;
                again.now = again.now.max(q.now);
                self.queued = again;
                // The changes wait for a commit that carries their outcome records.
                self.queued.changes.extend(changes);
                return (Vec::new(), now);
            }
        }
        (changes, now)
    }

    /// [`Worker::apply_commit`], then the state changes.
    pub(super) async fn finish_commit(&mut self, result: Result<(), StoreError>) {
        let (changes, now) = self.apply_commit(result);
        for c in changes {
            self.transition(c, now).await;
        }
    }

    /// Commits everything settled so far and waits for it (before memory is reset by a
    /// pause); the changes it calls for wait for the next commit.
    pub(super) async fn drain_commit(&mut self) {
        loop {
            if let Some(c) = self.committing.as_mut() {
                let r = c.fut.as_mut().await;
                let (changes, _) = self.apply_commit(r);
                self.queued.changes.extend(changes);
            }
            // Done, or the store refuses writes (what is settled waits for it).
            let now = self.engine.clock.now_ms();
            if (self.queued.settled.is_empty() && self.queued.extra.is_empty())
                || self.store_hold.holding(now)
            {
                return;
            }
            let changes = std::mem::take(&mut self.queued.changes);
            self.start_commit();
            if let Some(c) = self.committing.as_mut() {
                // Made by the caller (it is the change being made) or after.
                c.job.changes.clear();
            }
            self.queued.changes = changes;
        }
    }
}

/// The history of one commit's fates, built as they are recorded: one answer per
/// request, shared by the events it carried.
struct HistoryBatch {
    batch: history::Batch,
    /// Answers already in the batch, by the request's shared [`Last`].
    seen: std::collections::HashMap<*const Last, u32>,
}

impl HistoryBatch {
    fn new(at_ms: i64, events: usize) -> HistoryBatch {
        HistoryBatch {
            batch: history::Batch {
                at_ms,
                answers: Vec::new(),
                entries: Vec::with_capacity(events),
            },
            seen: std::collections::HashMap::new(),
        }
    }

    fn push(&mut self, item: &Item, fate: HistoryFate, dlq_put: bool) {
        let last = item.last.as_ref();
        let answer = last.map(|l| {
            *self.seen.entry(Arc::as_ptr(l)).or_insert_with(|| {
                self.batch.answers.push(history::Answer {
                    status: l.status,
                    request_id: l.request_id.clone(),
                    error: l.error.clone(),
                });
                (self.batch.answers.len() - 1) as u32
            })
        });
        self.batch.entries.push(history::Entry {
            seq: item.seq,
            fate,
            accepted_ms: item.stored.accepted_ms,
            event_time: item.stored.event.event_time,
            attempts: item.retries + u32::from(last.is_some_and(|l| l.sent)),
            answer,
            dlq_put,
            replayed: item.dlq_id.is_some(),
        });
    }
}

/// A commit in flight: the store's answer to come, and what it settles.
pub(super) struct Committing {
    pub fut: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>,
    job: Job,
}

/// Sends and commits held after the store refused a commit.
#[derive(Debug, Default)]
pub(super) struct StoreHold {
    pub until: i64,
    failures: u32,
}

impl StoreHold {
    /// One more refusal: how long to wait before the next try (ms).
    fn fail(&mut self) -> i64 {
        self.failures += 1;
        (1000i64 << (self.failures - 1).min(5)).min(30_000)
    }

    pub fn holding(&self, now: i64) -> bool {
        now < self.until
    }
}

impl Committing {
    /// Events it settles.
    pub fn len(&self) -> usize {
        self.job.settled.len()
    }
}

/// What a commit in flight settles and the state it leads to.
struct Job {
    settled: Vec<(Item, Fate)>,
    /// The outcome records it carries (kept to commit again after a failure).
    extra: Vec<DeliveryOp>,
    /// Log sequences it settles (leave the taken set on success).
    done: Vec<u64>,
    new_cursor: u64,
    /// State changes the answers called for, made once the commit returned (after the
    /// outcome records it carries).
    changes: Vec<Change>,
    now: i64,
}

/// `sluice_deliveries_total` for committed fates.
fn count_fates(
    metrics: &crate::metrics::Metrics,
    labels: &crate::metrics::DestLabels,
    settled: &[(Item, Fate)],
    now: i64,
) {
    let (mut done, mut retried, mut dead, mut expired) = (0, 0, 0, 0);
    for (_, fate) in settled {
        match fate {
            Fate::Done => done += 1,
            Fate::Retry { .. } => retried += 1,
            Fate::Dlq {
                class: ErrorClass::Expired,
                ..
            } => expired += 1,
            Fate::Dlq { .. } => dead += 1,
        }
    }
    metrics.outcome(labels, Outcome::Delivered, done, now);
    metrics.outcome(labels, Outcome::Retried, retried, now);
    metrics.outcome(labels, Outcome::DeadLettered, dead, now);
    metrics.outcome(labels, Outcome::Expired, expired, now);
}
