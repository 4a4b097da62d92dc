//! Reading: due retries and new log events into memory, each as one [`Item`]; events
//! past their age limit or that the adapter cannot express are settled at once, never
//! sent. While paused, the sweep moves expired events from the backlog to the DLQ.

use tracing::warn;

use super::settle::Fate;
use super::{Item, Worker};
use crate::delivery::{DestCtx, Engine, routes_to};
use crate::platforms::OutEvent;
use crate::store::StoreError;
use crate::store::codec::{ErrorClass, StoredEvent, decode_event, pii_aad};

/// Outcomes not yet committed a worker may hold, in read-ahead caps.
pub(super) const SETTLING_ROOM: usize = 3;

/// Events within this much of the age limit are expired instead of sent.
pub(super) const AGE_MARGIN_MS: i64 = 10 * 60_000;

impl Worker {
    /// Reads due retries and new log events into memory; settles what is expired or
    /// unsendable. Returns when the next retry falls due (or `i64::MAX`).
    pub(super) fn fill(&mut self, now: i64) -> Result<i64, StoreError> {
        if self.health.is_paused() {
            return Ok(i64::MAX);
        }
        let policy = &self.ctx.dest.policy;
        let max_batch = policy.max_batch as usize;
        // Read ahead: a batch per request slot and one more. Outcomes waiting for their
        // commit have a room of their own (SETTLING_ROOM caps), so a commit in flight
        // does not stop the reading and sending (it did: delivery then ran at one cap per
        // commit latency); what a crash can send again is what is in flight plus that
        // room: `(4c + 3) · max_batch` (docs, the crash test).
        let cap = (max_batch * (policy.concurrency as usize + 1)).max(max_batch);
        let held = self.held();
        if held >= cap || self.settling() >= SETTLING_ROOM * cap {
            return Ok(i64::MAX);
        }
        let want = cap - held;
        let view = self.engine.store.view()?;
        let due = view.due_retries(&self.id, &self.ws, now, &self.taken_retries, want)?;
        let mut next_due = due.next_due;
        let room = want.saturating_sub(due.rows.len());
        let log = view.log(&self.ws, self.next_read, room)?;
        drop(view);
        // A full page may be followed by more: read again at once, even when none of
        // this page routes here (an `events` filter), or the rest would wait for the
        // next ingest.
        if room > 0 && log.len() == room {
            next_due = now;
        }

        let mut fresh = Vec::new();
        for (row, raw) in due.rows {
            self.taken_retries.insert((row.due_ms, row.seq));
            if let Some(stored) = open_event(&self.engine, &self.ws, &raw) {
                fresh.push(Item::new(
                    row.seq,
                    stored,
                    raw,
                    Some((row.due_ms, &row.record)),
                ));
            }
        }
        for (seq, raw) in log {
            self.next_read = seq + 1;
            if self.settled_above.contains(&seq) {
                continue;
            }
            let Some(stored) = open_event(&self.engine, &self.ws, &raw) else {
                continue;
            };
            if !routes_to(&self.ctx.dest, &stored.event) {
                continue;
            }
            self.inflight_log.insert(seq);
            fresh.push(Item::new(seq, stored, raw, None));
        }
        // Expired or unsendable events never reach the platform.
        let mut settled = Vec::new();
        for item in fresh {
            if expired(&self.ctx, &item, now) {
                let body = expired_why(&self.ctx, &item, now);
                if stale_on_arrival(&self.ctx, &item) {
                    self.engine.metrics.stale_on_arrival(&self.labels, 1);
                }
                settled.push((
                    item,
                    Fate::Dlq {
                        class: ErrorClass::Expired,
                        status: None,
                        body,
                    },
                ));
                continue;
            }
            let out = OutEvent {
                event: &item.stored.event,
                merchant_id: &self.ws,
                accepted_ms: item.stored.accepted_ms,
            };
            match self.ctx.adapter.check(&self.ctx.dest, &out) {
                Ok(()) => self.ready.push_back(item),
                Err(u) => settled.push((
                    item,
                    Fate::Dlq {
                        class: ErrorClass::Unsendable,
                        status: None,
                        body: u.0,
                    },
                )),
            }
        }
        self.queue_settled(settled, now);
        Ok(next_due)
    }

    /// Age limits apply whatever the state (SPEC §3): while paused, expired events move
    /// from the backlog to the DLQ. The log is swept over its prefix of expired (or
    /// not-routed) events, so the cursor can follow; retries are swept one by one.
    pub(super) fn sweep_paused(&mut self, now: i64) -> Result<(), StoreError> {
        const PAGE: usize = 5000;
        let view = self.engine.store.view()?;
        let log_rows = view.log(&self.ws, self.cursor, PAGE)?;
        let mut retry_rows = Vec::new();
        for row in view.retries(&self.id, PAGE)? {
            if let Some(raw) = view.retry_event(&self.ws, row.seq, &row.record)? {
                retry_rows.push((row, raw));
            }
        }
        drop(view);
        let mut settled = Vec::new();
        let mut next_read = self.next_read;
        for (seq, raw) in log_rows {
            if self.settled_above.contains(&seq) {
                next_read = seq + 1;
                continue;
            }
            let Some(stored) = open_event(&self.engine, &self.ws, &raw) else {
                next_read = seq + 1;
                continue;
            };
            if routes_to(&self.ctx.dest, &stored.event) {
                let item = Item::new(seq, stored, raw, None);
                if !expired(&self.ctx, &item, now) {
                    break;
                }
                self.inflight_log.insert(seq);
                settled.push(item);
            }
            next_read = seq + 1;
        }
        self.next_read = next_read;
        for (row, raw) in retry_rows {
            let Some(stored) = open_event(&self.engine, &self.ws, &raw) else {
                continue;
            };
            let item = Item::new(row.seq, stored, raw, Some((row.due_ms, &row.record)));
            if expired(&self.ctx, &item, now) {
                self.taken_retries.insert((row.due_ms, row.seq));
                settled.push(item);
            }
        }
        let fates = settled
            .into_iter()
            .map(|i| {
                let body =
                    "the event passed the platform's age limit while the destination was paused"
                        .to_string();
                (
                    i,
                    Fate::Dlq {
                        class: ErrorClass::Expired,
                        status: None,
                        body,
                    },
                )
            })
            .collect::<Vec<_>>();
        self.queue_settled(fates, now);
        Ok(())
    }

    /// Fates settled without a request (expired, unsendable): the next commit records
    /// them with the cursor move they allow.
    fn queue_settled(&mut self, settled: Vec<(Item, Fate)>, now: i64) {
        self.queued.settled.extend(settled);
        self.queued.now = self.queued.now.max(now);
    }

    /// Where the cursor may move: the lowest log event still taken, else the read
    /// position.
    pub(super) fn lowest_unsettled(&self) -> u64 {
        self.inflight_log.first().copied().unwrap_or(self.next_read)
    }
}

/// Decodes a stored event and opens its sealed plaintext when the key allows.
fn open_event(engine: &Engine, ws: &str, raw: &[u8]) -> Option<StoredEvent> {
    let mut stored = match decode_event(raw) {
        Ok(s) => s,
        Err(e) => {
            warn!(workspace = %ws, error = %e, "unreadable event skipped");
            return None;
        }
    };
    if let Some(key) = &engine.pii_key
        && !stored.sealed.is_empty()
    {
        let aad = pii_aad(ws, &stored.event.event_name, &stored.event.event_id);
        for (field, sealed) in std::mem::take(&mut stored.sealed) {
            if let Ok(p) = crate::ingest::pii::open(key, &aad, &sealed)
                && let Ok(text) = String::from_utf8(p)
            {
                stored.event.plaintext.push((field, text));
            }
        }
    }
    Some(stored)
}

/// Why an event is expired instead of sent: how far past the platform's age limit it
/// is (or that it is within the margin of it), or that it waited longer than
/// `storage.max_backlog_age`.
fn expired_why(ctx: &DestCtx, item: &Item, now: i64) -> String {
    use crate::config::format_duration;
    match ctx.dest.policy.age_limit {
        Some(limit) => {
            let limit_ms = limit.as_millis() as i64;
            let past = now - item.stored.event.event_time * 1000 - limit_ms;
            let limit = format_duration(limit);
            if past > 0 {
                format!(
                    "the event is {} past the platform's age limit ({limit} after event_time)",
                    span(past)
                )
            } else {
                format!(
                    "the event is within {} of the platform's age limit ({limit} after event_time): it would arrive too late",
                    span(AGE_MARGIN_MS)
                )
            }
        }
        None => format!(
            "the event waited {} since it was accepted, longer than storage.max_backlog_age",
            span(now - item.stored.accepted_ms)
        ),
    }
}

/// A span of time for a message: `3d 4h 10m`, `25m`, `40s` (rounded down to whole
/// minutes from one minute on).
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 60 {
        return format!("{s}s");
    }
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    parts.join(" ")
}

/// Already past the platform's age limit (less the margin) when sluice accepted it: the
/// sender's problem, not a backlog's.
fn stale_on_arrival(ctx: &DestCtx, item: &Item) -> bool {
    ctx.dest.policy.age_limit.is_some_and(|limit| {
        item.stored.accepted_ms - item.stored.event.event_time * 1000
            > limit.as_millis() as i64 - AGE_MARGIN_MS
    })
}

/// Past the platform's age limit (less the margin), or `storage.max_backlog_age` for
/// platforms without one.
fn expired(ctx: &DestCtx, item: &Item, now: i64) -> bool {
    match ctx.dest.policy.age_limit {
        Some(limit) => {
            now - item.stored.event.event_time * 1000 > limit.as_millis() as i64 - AGE_MARGIN_MS
        }
        None => now - item.stored.accepted_ms > ctx.max_backlog_age_ms,
    }
}
