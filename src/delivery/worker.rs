//! One destination's delivery loop. See the module doc of [`super`].
//!
//! In memory: the events read but not yet settled (`ready`, `forced` batches, requests
//! in flight) and the set of log sequences taken (`inflight_log`). The persisted cursor
//! only moves over a finished prefix: `min(inflight_log)`, or the read position when
//! nothing is taken. Every settlement (delivered, retry scheduled, dead-lettered) commits
//! together with the cursor move it allows; only then is memory updated, so a failed
//! commit leaves the events to be sent again rather than lost.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::pacer::Grant;
use super::{DestCtx, Engine};
use crate::health::{AUTH_STREAK, Actor, Change, Ring};
use crate::ingest::event::PlainField;
use crate::metrics::Outcome;
use crate::platforms::{Class, HttpResponse, OutEvent, Verdict, oauth, redact, retry_after_ms};
use crate::store::codec::{DestMode, OutcomeRecord};
use crate::store::codec::{
    DestState, DlqRecord, ErrorClass, RetryRecord, StoredEvent, decode_event, decode_record,
    encode_record, pii_aad,
};
use crate::store::{CURSORS, DEST_STATE, DeliveryOp, EVENTS, OUTCOMES, RETRIES, SETTLED, log};

/// The hold after a throttle answer without a hint.
const DEFAULT_HOLD_MS: i64 = 60_000;
/// Events within this much of the age limit are expired instead of sent.
const AGE_MARGIN_MS: i64 = 10 * 60_000;
/// How often a paused destination's backlog is swept for expired events.
const PAUSED_SWEEP_MS: i64 = 60_000;
/// First bytes of a response kept in a DLQ entry.
const BODY_KEEP: usize = 4096;

pub(super) struct Env {
    pub engine: Arc<Engine>,
    pub ctx: watch::Receiver<Arc<DestCtx>>,
    pub stop: watch::Receiver<bool>,
    pub wake: Arc<Notify>,
    pub snapshot: Arc<Mutex<DestSnapshot>>,
    pub commands: mpsc::UnboundedReceiver<(Command, oneshot::Sender<CommandReply>)>,
}

/// An operator's request to a destination (SPEC §4).
#[derive(Debug, Clone)]
pub enum Command {
    Pause { note: String, actor: Actor },
    Resume { note: String, actor: Actor },
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommandReply {
    Paused {
        paused_at_ms: i64,
    },
    Resumed {
        resumed_at_ms: i64,
        previous_pause_reason: Option<String>,
        paused_at_ms: Option<i64>,
    },
    AlreadyPaused,
    NotPaused,
    Unavailable(String),
}

/// A live view of a worker for the admin API and metrics.
#[derive(Debug, Clone, Default)]
pub struct DestSnapshot {
    pub cursor: u64,
    pub in_memory: usize,
    pub requests_in_flight: usize,
    /// The persisted health state (mode, pause reason and times, last evaluation).
    pub state: DestState,
    /// The worker has read its position and state (until then the fields above are
    /// defaults, not the destination's).
    pub positioned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Log,
    Retry { due_ms: u64 },
}

struct Item {
    seq: u64,
    /// Decoded, with sealed plaintext opened when the key allows.
    stored: StoredEvent,
    /// The encoded event as stored (never holds plaintext): what the DLQ keeps.
    raw: Vec<u8>,
    retries: u32,
    first_seen_ms: i64,
    origin: Origin,
    dlq_id: Option<u64>,
    /// The retry record carried its own copy (a replay): keep carrying it.
    own_copy: bool,
}

enum Fate {
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

struct Sent {
    items: Vec<Item>,
    verdict: Verdict,
    response: Option<HttpResponse>,
    error: Option<String>,
    secrets: Vec<String>,
    at_ms: i64,
    latency_ms: i64,
}

struct State {
    ws: String,
    id: String,
    /// This destination's metric labels.
    labels: crate::metrics::DestLabels,
    next_read: u64,
    cursor: u64,
    inflight_log: BTreeSet<u64>,
    ready: VecDeque<Item>,
    forced: VecDeque<Vec<Item>>,
    taken_retries: HashSet<(u64, u64)>,
    requests_in_flight: usize,
    dest_hold_until: i64,
    /// Settled before a restart although above the cursor (see `settled` table).
    settled_above: BTreeSet<u64>,
    health: DestState,
    ring: Ring,
    auth_streak: u32,
    next_eval: i64,
    probe: Option<Probe>,
}

#[derive(Debug, Default)]
struct Probe {
    sent: u32,
    answered: u32,
    errors: u32,
}

impl State {
    fn is_paused(&self) -> bool {
        self.health.mode == DestMode::Paused
    }
}

pub(super) async fn run(mut env: Env) {
    let engine = env.engine.clone();
    debug!(destination = %env.ctx.borrow().dest.id, "delivery worker starting");
    // The store opens in the background: wait for it.
    while !engine.store.is_ready() {
        if *env.stop.borrow() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ctx = env.ctx.borrow().clone();
    let mut st = match init(&engine, &ctx).await {
        Ok(s) => s,
        Err(e) => {
            warn!(destination = %ctx.dest.id, error = %e, "cannot read the destination's position; delivery stopped for it");
            return;
        }
    };
    debug!(destination = %st.id, cursor = st.cursor, "delivery worker positioned");
    let (res_tx, mut res_rx) = mpsc::unbounded_channel::<Sent>();
    let mut stopping = false;
    let mut next_sweep = i64::MIN;
    loop {
        let ctx = env.ctx.borrow().clone();
        let notified = env.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = engine.clock.now_ms();
        let mut wake_at = i64::MAX;
        if !stopping {
            housekeep_health(&engine, &ctx, &mut st, now).await;
            wake_at = wake_at.min(health_wake(&st));
        }
        if !stopping && st.is_paused() {
            if now >= next_sweep {
                if let Err(e) = sweep_paused(&engine, &ctx, &mut st, now).await {
                    warn!(destination = %st.id, error = %e, "sweeping expired events failed; retrying later");
                }
                next_sweep = now + PAUSED_SWEEP_MS;
            }
            wake_at = wake_at.min(next_sweep);
        } else if !stopping {
            match fill(&engine, &ctx, &mut st, now).await {
                Ok(next_due) => wake_at = wake_at.min(next_due),
                Err(e) => {
                    warn!(destination = %st.id, error = %e, "reading the queue failed; retrying in 1 s");
                    wake_at = wake_at.min(now + 1000);
                }
            }
            if st.health.mode == DestMode::Probing {
                finish_probe_if_done(&engine, &ctx, &mut st, now).await;
            }
            while st.requests_in_flight < ctx.dest.policy.concurrency as usize {
                match next_batch(&ctx, &mut st, now) {
                    Next::Send(batch) => {
                        st.requests_in_flight += 1;
                        tokio::spawn(send(
                            engine.clone(),
                            ctx.clone(),
                            st.ws.clone(),
                            batch,
                            res_tx.clone(),
                        ));
                    }
                    Next::Wait(t) => {
                        wake_at = wake_at.min(t);
                        break;
                    }
                    Next::Idle => break,
                }
            }
        }
        // A state change in this pass (a probe's verdict, a pause) moves the next wake-up.
        if !stopping {
            wake_at = wake_at.min(health_wake(&st));
            if st.is_paused() {
                wake_at = wake_at.min(next_sweep.max(now));
            }
        }
        publish(&env.snapshot, &st);
        debug!(destination = %st.id, now, wake_at, ready = st.ready.len(), next_read = st.next_read, in_flight = st.requests_in_flight, "delivery loop");
        if stopping && st.requests_in_flight == 0 {
            break;
        }
        tokio::select! {
            Some(sent) = res_rx.recv() => {
                // Settle every answer that is in, in one commit.
                let mut batch = Settlement::default();
                let mut next = Some(sent);
                while let Some(sent) = next {
                    st.requests_in_flight -= 1;
                    settle_sent(&ctx, &mut st, sent, &mut batch, &engine.metrics);
                    next = res_rx.try_recv().ok();
                }
                let now = batch.now;
                if !batch.settled.is_empty() || !batch.extra.is_empty() {
                    commit(&engine, &mut st, batch.settled, batch.extra, now).await;
                }
                for c in batch.changes {
                    transition(&engine, &ctx, &mut st, c, now).await;
                }
            }
            _ = &mut notified, if !stopping => {}
            _ = engine.clock.sleep_until(wake_at), if !stopping && wake_at != i64::MAX => {}
            _ = env.ctx.changed(), if !stopping => {}
            _ = env.stop.changed(), if !stopping => { stopping = true; }
            Some((cmd, reply)) = env.commands.recv() => {
                let now = engine.clock.now_ms();
                let answer = command(&engine, &ctx, &mut st, cmd, now).await;
                let _ = reply.send(answer);
            }
        }
    }
    publish(&env.snapshot, &st);
    debug!(destination = %st.id, "delivery worker stopped");
}

fn publish(snap: &Mutex<DestSnapshot>, st: &State) {
    if let Ok(mut s) = snap.lock() {
        s.cursor = st.cursor;
        s.in_memory = st.ready.len() + st.forced.iter().map(Vec::len).sum::<usize>();
        s.requests_in_flight = st.requests_in_flight;
        s.state = st.health.clone();
        s.positioned = true;
    }
}

async fn init(engine: &Engine, ctx: &DestCtx) -> Result<State, crate::store::StoreError> {
    let id = ctx.dest.id.clone();
    let ws = ctx.dest.workspace.clone();
    let (cursor, head, state, ring_rows, settled_above) = engine.store.read(|txn| {
        let cursors = txn.open_table(CURSORS)?;
        let cursor = cursors.get(id.as_str())?.map(|v| v.value());
        let events = txn.open_table(EVENTS)?;
        let head = log::head(&events, &ws)?;
        let states = txn.open_table(DEST_STATE)?;
        let state = states
            .get(id.as_str())?
            .and_then(|v| decode_record::<DestState>(v.value()).ok());
        let settled = txn.open_table(SETTLED)?;
        let from = cursor.unwrap_or(0);
        let mut above = BTreeSet::new();
        for row in settled.range((id.as_str(), from)..=(id.as_str(), u64::MAX))? {
            above.insert(row?.0.value().1);
        }
        let outcomes = txn.open_table(OUTCOMES)?;
        let mut ring = Vec::new();
        for row in outcomes.range((id.as_str(), 0u32)..=(id.as_str(), u32::MAX))? {
            let (k, v) = row?;
            if let Ok(o) = decode_record::<OutcomeRecord>(v.value()) {
                ring.push((k.value().1, o));
            }
        }
        Ok((cursor, head, state, ring, above))
    })?;
    // A destination without a position receives events accepted from now on: from the
    // head at the time it was configured (captured at sync), else the head now.
    let fresh = cursor.is_none() || state.as_ref().is_none_or(|s| s.workspace.is_empty());
    let cursor = cursor.unwrap_or(ctx.initial_head.unwrap_or(head));
    let mut health = state.unwrap_or_default();
    if let Some(reason) = &health.paused_reason {
        info!(destination = %id, %reason, state = health.mode.name(), "destination is not active");
    }
    // Rebuild the ring in attempt order: slot = n % size, the oldest at `attempts`.
    let sample = ctx.dest.policy.auto_pause.sample;
    let mut ring = Ring::new(sample);
    let mut reset_ring = false;
    if health.ring_size == sample {
        let size = sample as u64;
        let mut rows = ring_rows;
        rows.sort_by_key(|(slot, _)| (*slot as u64 + size - health.attempts % size) % size);
        for (_, o) in rows {
            ring.push(o);
        }
    } else {
        reset_ring = !ring_rows.is_empty();
        health.ring_size = sample;
        health.attempts = 0;
    }
    // A probe interrupted by a restart starts again.
    let fresh = fresh || reset_ring;
    if fresh {
        // Record the position and ownership at once: log trimming counts on them.
        health.workspace = ws.clone();
        health.platform = ctx.dest.platform.name().to_string();
        let record = encode_record(&health);
        engine
            .store
            .delivery(vec![
                DeliveryOp::OutcomesClear { dest: id.clone() },
                DeliveryOp::Cursor {
                    dest: id.clone(),
                    next_seq: cursor,
                },
                DeliveryOp::State {
                    dest: id.clone(),
                    record,
                },
            ])
            .await?;
    }
    let now = engine.clock.now_ms();
    let probe = (health.mode == DestMode::Probing).then(Probe::default);
    Ok(State {
        labels: crate::metrics::DestLabels::of(&ctx.dest),
        ws,
        id,
        next_read: cursor,
        cursor,
        inflight_log: BTreeSet::new(),
        ready: VecDeque::new(),
        forced: VecDeque::new(),
        taken_retries: HashSet::new(),
        requests_in_flight: 0,
        dest_hold_until: 0,
        settled_above,
        health,
        ring,
        auth_streak: 0,
        next_eval: next_evaluation(now, ctx),
        probe,
    })
}

/// Reads due retries and new log events into memory; settles what is expired or
/// unsendable. Returns when the next retry falls due (or `i64::MAX`).
async fn fill(
    engine: &Engine,
    ctx: &DestCtx,
    st: &mut State,
    now: i64,
) -> Result<i64, crate::store::StoreError> {
    if st.is_paused() {
        return Ok(i64::MAX);
    }
    let max_batch = ctx.dest.policy.max_batch as usize;
    let cap = (max_batch * (ctx.dest.policy.concurrency as usize + 1)).max(max_batch);
    let held = st.ready.len() + st.forced.iter().map(Vec::len).sum::<usize>();
    if held >= cap {
        return Ok(i64::MAX);
    }
    let want = cap - held;
    let id = st.id.clone();
    let ws = st.ws.clone();
    let next_read = st.next_read;
    let taken = &st.taken_retries;
    let (retries, log, next_due) = engine.store.read(|txn| {
        let rt = txn.open_table(RETRIES)?;
        let ev = txn.open_table(EVENTS)?;
        let mut retries = Vec::new();
        let mut next_due = i64::MAX;
        for row in rt.range((id.as_str(), 0u64, 0u64)..=(id.as_str(), u64::MAX, u64::MAX))? {
            let (k, v) = row?;
            let (_, due, seq) = k.value();
            if taken.contains(&(due, seq)) {
                continue;
            }
            if due as i64 > now {
                next_due = due as i64;
                break;
            }
            if retries.len() >= want {
                next_due = now;
                break;
            }
            let Ok(rec) = decode_record::<RetryRecord>(v.value()) else {
                warn!(destination = %id, seq, "unreadable retry record skipped");
                continue;
            };
            let Some(raw) = retry_event(&ev, &ws, seq, &rec)? else {
                warn!(destination = %id, seq, "retry for an event no longer in the log skipped");
                continue;
            };
            retries.push((due, seq, rec, raw));
        }
        let room = want.saturating_sub(retries.len());
        let log = log::read(&ev, &ws, next_read, room)?;
        // A full page may be followed by more: read again at once, even when none of
        // this page routes here (an `events` filter), or the rest would wait for the
        // next ingest.
        if room > 0 && log.len() == room {
            next_due = now;
        }
        Ok((retries, log, next_due))
    })?;

    let mut fresh = Vec::new();
    for (due, seq, rec, raw) in retries {
        st.taken_retries.insert((due, seq));
        if let Some(item) = retry_item(engine, &ws, due, seq, &rec, raw) {
            fresh.push(item);
        }
    }
    for (seq, raw) in log {
        st.next_read = seq + 1;
        if st.settled_above.contains(&seq) {
            continue;
        }
        let Some(stored) = open_event(engine, &ws, &raw) else {
            continue;
        };
        if !routes_to(&ctx.dest, &stored.event) {
            continue;
        }
        st.inflight_log.insert(seq);
        fresh.push(Item {
            seq,
            first_seen_ms: stored.accepted_ms,
            stored,
            raw,
            retries: 0,
            origin: Origin::Log,
            dlq_id: None,
            own_copy: false,
        });
    }
    // Expired or unsendable events never reach the platform.
    let mut settled = Vec::new();
    for item in fresh {
        if expired(ctx, &item, now) {
            let body = "the event is within 10 minutes of the platform's age limit".to_string();
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
            merchant_id: &ws,
            accepted_ms: item.stored.accepted_ms,
        };
        match ctx.adapter.check(&ctx.dest, &out) {
            Ok(()) => st.ready.push_back(item),
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
    if !settled.is_empty() || lowest_unsettled(st) != st.cursor {
        commit(engine, st, settled, Vec::new(), now).await;
    }
    Ok(next_due)
}

/// The event a retry is for: its own copy (a replayed DLQ entry) or the log's.
pub(super) fn retry_event<T: redb::ReadableTable<(&'static str, u64), &'static [u8]>>(
    events: &T,
    ws: &str,
    seq: u64,
    rec: &RetryRecord,
) -> Result<Option<Vec<u8>>, redb::Error> {
    match &rec.event_copy {
        Some(c) => Ok(Some(c.to_vec())),
        None => log::get(events, ws, seq),
    }
}

/// A scheduled retry as an item to send (None when the event cannot be read).
fn retry_item(
    engine: &Engine,
    ws: &str,
    due: u64,
    seq: u64,
    rec: &RetryRecord,
    raw: Vec<u8>,
) -> Option<Item> {
    Some(Item {
        seq,
        stored: open_event(engine, ws, &raw)?,
        raw,
        retries: rec.retries,
        first_seen_ms: rec.first_seen_ms,
        origin: Origin::Retry { due_ms: due },
        dlq_id: rec.dlq_id,
        own_copy: rec.event_copy.is_some(),
    })
}

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

/// Routing (SPEC §3): the destination's `events` filter, and the event's own
/// `destinations` restriction.
pub fn routes_to(
    dest: &crate::config::Destination,
    ev: &crate::ingest::event::NormalizedEvent,
) -> bool {
    (ev.destinations.is_empty() || ev.destinations.contains(&dest.id))
        && dest
            .events
            .as_ref()
            .is_none_or(|names| names.contains(&ev.event_name))
}

fn expired(ctx: &DestCtx, item: &Item, now: i64) -> bool {
    match ctx.dest.policy.age_limit {
        Some(limit) => {
            now - item.stored.event.event_time * 1000 > limit.as_millis() as i64 - AGE_MARGIN_MS
        }
        None => now - item.stored.accepted_ms > ctx.max_backlog_age_ms,
    }
}

enum Next {
    Send(Vec<Item>),
    Wait(i64),
    Idle,
}

fn next_batch(ctx: &DestCtx, st: &mut State, now: i64) -> Next {
    if st.is_paused() {
        return Next::Idle;
    }
    // Probing: one event per request, `probe_requests` requests in all.
    let probe_cap = match &st.probe {
        Some(p) if st.health.mode == DestMode::Probing => {
            if p.sent >= ctx.dest.policy.auto_pause.probe_requests {
                return Next::Idle;
            }
            Some(1)
        }
        _ => None,
    };
    if st.dest_hold_until > now {
        return Next::Wait(st.dest_hold_until);
    }
    let max_batch = ctx.dest.policy.max_batch as usize;
    let wanted = match st.forced.front() {
        Some(b) => b.len(),
        None => {
            let Some(first) = st.ready.front() else {
                return Next::Idle;
            };
            if st.ready.len() < max_batch && first.origin == Origin::Log {
                let due = first.stored.accepted_ms + ctx.dest.policy.linger.as_millis() as i64;
                if due > now {
                    return Next::Wait(due);
                }
            }
            st.ready.len().min(max_batch)
        }
    };
    let wanted = probe_cap.map_or(wanted, |c| wanted.min(c));
    let mut n = wanted;
    let mut wait = now;
    for p in &ctx.pacers {
        match p.lock().expect("pacer lock").grant(now, wanted) {
            Grant::Send(k) => n = n.min(k),
            Grant::WaitUntil(t) => wait = wait.max(t),
        }
    }
    if wait > now {
        return Next::Wait(wait);
    }
    for p in &ctx.pacers {
        p.lock().expect("pacer lock").record(now, n);
    }
    let batch = match st.forced.pop_front() {
        Some(mut b) => {
            if n < b.len() {
                let rest = b.split_off(n);
                st.forced.push_front(rest);
            }
            b
        }
        None => st.ready.drain(..n).collect(),
    };
    if let Some(p) = st.probe.as_mut() {
        p.sent += 1;
    }
    Next::Send(batch)
}

/// The adapter's view of a batch.
fn outs<'a>(items: &'a [Item], ws: &'a str) -> Vec<OutEvent<'a>> {
    items
        .iter()
        .map(|i| OutEvent {
            event: &i.stored.event,
            merchant_id: ws,
            accepted_ms: i.stored.accepted_ms,
        })
        .collect()
}

async fn send(
    engine: Arc<Engine>,
    ctx: Arc<DestCtx>,
    ws: String,
    items: Vec<Item>,
    tx: mpsc::UnboundedSender<Sent>,
) {
    let now = engine.clock.now_ms();
    let (verdict, response, error, secrets) =
        send_with_token(&engine, &ctx, &ws, &items, now).await;
    let at_ms = engine.clock.now_ms();
    let _ = tx.send(Sent {
        items,
        verdict,
        response,
        error,
        secrets,
        latency_ms: at_ms - now,
        at_ms,
    });
}

/// What one request came to: the verdict, the answer or the (redacted) error, and the
/// strings to redact.
type Attempt = (Verdict, Option<HttpResponse>, Option<String>, Vec<String>);

/// OAuth (Google Ads, Microsoft Ads): sends with a current access token; a 401 to a
/// cached one refreshes it once and sends again; a failed refresh is the attempt's
/// outcome (platforms::oauth). Other destinations send as configured.
async fn send_with_token(
    engine: &Engine,
    ctx: &DestCtx,
    ws: &str,
    items: &[Item],
    now: i64,
) -> Attempt {
    let Some(cfg) = oauth::refresh_config(&ctx.dest) else {
        return attempt(engine, ctx, &ctx.dest, ws, items, now).await;
    };
    let timeout = ctx.dest.policy.timeout.as_millis() as i64;
    let mut stale: Option<String> = None;
    loop {
        let t = match engine
            .oauth
            .token(
                &engine.http,
                &*engine.clock,
                &ctx.dest.id,
                &cfg,
                stale.as_deref(),
                timeout,
            )
            .await
        {
            Ok(t) => t,
            Err(e) => {
                return (
                    Verdict::Whole(e.class),
                    None,
                    Some(e.message),
                    cfg.secrets(),
                );
            }
        };
        let dest = oauth::with_access_token(&ctx.dest, &t.access_token);
        let mut r = attempt(engine, ctx, &dest, ws, items, now).await;
        if !t.fresh && stale.is_none() && r.0 == Verdict::Whole(Class::Auth) {
            stale = Some(t.access_token);
            continue;
        }
        r.3.extend(cfg.secrets());
        return r;
    }
}

async fn attempt(
    engine: &Engine,
    ctx: &DestCtx,
    dest: &crate::config::Destination,
    ws: &str,
    items: &[Item],
    now: i64,
) -> Attempt {
    let req = ctx.adapter.build(dest, &outs(items, ws), now);
    let mut secrets = req.secrets.clone();
    for i in items {
        for (f, text) in &i.stored.event.plaintext {
            secrets.push(text.clone());
            if *f == PlainField::PhoneE164 {
                secrets.push(text.trim_start_matches('+').to_string());
            }
        }
    }
    let timeout = ctx.dest.policy.timeout.as_millis() as i64;
    let result = tokio::select! {
        r = crate::platforms::execute(&engine.http, req) => r,
        _ = engine.clock.sleep_ms(timeout) => Err(format!("timed out after {timeout} ms")),
    };
    match result {
        Ok(resp) => (
            ctx.adapter.classify_events(dest, &outs(items, ws), &resp),
            Some(resp),
            None,
            secrets,
        ),
        Err(e) => {
            let e = redact(&e, &secrets);
            (Verdict::Whole(Class::Retryable), None, Some(e), secrets)
        }
    }
}

/// The outcomes of answers settled together.
#[derive(Default)]
struct Settlement {
    settled: Vec<(Item, Fate)>,
    extra: Vec<DeliveryOp>,
    changes: Vec<Change>,
    now: i64,
}

/// Decides the fate of one answer's events; the caller commits the settlement.
fn settle_sent(
    ctx: &DestCtx,
    st: &mut State,
    sent: Sent,
    acc: &mut Settlement,
    metrics: &crate::metrics::Metrics,
) {
    let now = sent.at_ms;
    metrics.request(&st.labels, sent.items.len() as u64, sent.latency_ms, now);
    acc.now = acc.now.max(now);
    let status = sent.response.as_ref().map(|r| r.status);
    let body = match (&sent.response, &sent.error) {
        (Some(r), _) => {
            let mut text = String::from_utf8_lossy(&r.body).into_owned();
            text = redact(&text, &sent.secrets);
            truncate(&mut text, BODY_KEEP);
            text
        }
        (None, Some(e)) => e.clone(),
        (None, None) => String::new(),
    };
    let policy = &ctx.dest.policy;
    let mut settled = Vec::new();
    // Every request is an attempt; a rejection is a data problem, not a pipe failure.
    let error = matches!(
        sent.verdict,
        Verdict::Whole(Class::Retryable | Class::Throttled { .. } | Class::Auth | Class::Gone(_))
    );
    let mut extra = record_attempt(st, status, error, sent.latency_ms, now);
    if let Some(p) = st.probe.as_mut() {
        p.answered += 1;
        p.errors += error as u32;
    }
    let mut change = None;
    if matches!(sent.verdict, Verdict::Whole(Class::Auth)) {
        st.auth_streak += 1;
        if st.auth_streak >= AUTH_STREAK && !st.is_paused() {
            change = Some(Change::AuthFailed);
        }
    } else {
        st.auth_streak = 0;
    }
    let rejected = || Fate::Dlq {
        class: ErrorClass::Rejected,
        status,
        body: body.clone(),
    };
    match sent.verdict {
        Verdict::Whole(Class::Delivered) => {
            settled = sent.items.into_iter().map(|i| (i, Fate::Done)).collect();
        }
        Verdict::Whole(Class::Retryable) => {
            let hint = sent.response.as_ref().and_then(|r| retry_after_ms(r, now));
            for item in sent.items {
                let fate = retry_fate(policy, &item, now, hint, status, &body);
                settled.push((item, fate));
            }
        }
        Verdict::Whole(Class::Throttled { hold_ms }) => {
            let until = now + hold_ms.unwrap_or(DEFAULT_HOLD_MS);
            for p in &ctx.pacers {
                p.lock().expect("pacer lock").hold_until(until);
            }
            if ctx.pacers.is_empty() {
                st.dest_hold_until = st.dest_hold_until.max(until);
            }
            info!(destination = %st.id, hold_ms = until - now, "throttled by the platform; holding the scope");
            metrics.outcome(&st.labels, Outcome::Throttled, sent.items.len() as u64, now);
            requeue(st, sent.items);
        }
        Verdict::Whole(Class::Auth) => {
            st.dest_hold_until = now + (policy.retry.base.as_millis() as i64).max(1000);
            warn!(destination = %st.id, status = ?status, "the platform refused the credentials; events stay queued");
            requeue(st, sent.items);
        }
        Verdict::Whole(Class::Rejected) => {
            settled = sent.items.into_iter().map(|i| (i, rejected())).collect();
        }
        Verdict::Whole(Class::Gone(reason)) => {
            requeue(st, sent.items);
            if !st.is_paused() {
                change = Some(Change::Gone(reason));
            }
        }
        Verdict::RowsRejected(rows) if !rows.iter().any(|r| *r < sent.items.len()) => {
            // Rows named that are not in the request: rejected whole rather than resent
            // forever.
            settled = sent.items.into_iter().map(|i| (i, rejected())).collect();
        }
        Verdict::RowsRejected(rows) => {
            let mut rest = Vec::new();
            for (i, item) in sent.items.into_iter().enumerate() {
                if rows.contains(&i) {
                    settled.push((item, rejected()));
                } else {
                    rest.push(item);
                }
            }
            if !rest.is_empty() {
                st.forced.push_front(rest);
            }
        }
        Verdict::PerRow(classes) => {
            // The request itself succeeded: each row has its own fate. A row without a
            // class (a short answer) is taken as delivered only when the platform named
            // every failure; adapters give one class per event.
            for (i, item) in sent.items.into_iter().enumerate() {
                let fate = match classes.get(i).unwrap_or(&Class::Delivered) {
                    Class::Delivered => Fate::Done,
                    Class::Rejected => rejected(),
                    Class::Retryable | Class::Throttled { .. } | Class::Auth | Class::Gone(_) => {
                        retry_fate(policy, &item, now, None, status, &body)
                    }
                };
                settled.push((item, fate));
            }
        }
        Verdict::Bisect => {
            let mut first = sent.items;
            if first.len() <= 1 {
                settled = first.into_iter().map(|i| (i, rejected())).collect();
            } else {
                let second = first.split_off(first.len() / 2);
                st.forced.push_front(second);
                st.forced.push_front(first);
            }
        }
    }
    acc.settled.append(&mut settled);
    acc.extra.append(&mut extra);
    if let Some(c) = change
        && !acc.changes.contains(&c)
    {
        acc.changes.push(c);
    }
}

/// A retryable failure of one event: retried after its backoff (at least `hint`), or
/// dead-lettered as `retries_exhausted` once it has used every retry.
fn retry_fate(
    policy: &crate::config::PlatformPolicy,
    item: &Item,
    now: i64,
    hint: Option<i64>,
    status: Option<u16>,
    body: &str,
) -> Fate {
    if item.retries >= policy.retry.max_retries {
        Fate::Dlq {
            class: ErrorClass::RetriesExhausted,
            status,
            body: body.to_string(),
        }
    } else {
        let delay = backoff_ms(policy, item.retries + 1).max(hint.unwrap_or(0));
        Fate::Retry {
            due_ms: (now + delay).max(0) as u64,
            status,
        }
    }
}

/// While paused, nothing is held in memory: the backlog is the log from the cursor and
/// the retries table, read again on resume.
fn forget_unsent(st: &mut State) {
    st.ready.clear();
    st.forced.clear();
    st.inflight_log.clear();
    st.taken_retries.clear();
    st.next_read = st.cursor;
}

/// Age limits apply whatever the state (SPEC §3): while paused, expired events move
/// from the backlog to the DLQ. The log is swept over its prefix of expired (or
/// not-routed) events, so the cursor can follow; retries are swept one by one.
async fn sweep_paused(
    engine: &Engine,
    ctx: &DestCtx,
    st: &mut State,
    now: i64,
) -> Result<(), crate::store::StoreError> {
    const PAGE: usize = 5000;
    let (id, ws, from) = (st.id.clone(), st.ws.clone(), st.cursor);
    let (log_rows, retry_rows) = engine.store.read(|txn| {
        let ev = txn.open_table(EVENTS)?;
        let rt = txn.open_table(RETRIES)?;
        let log_rows = log::read(&ev, &ws, from, PAGE)?;
        let mut retry_rows = Vec::new();
        for row in rt
            .range((id.as_str(), 0u64, 0u64)..=(id.as_str(), u64::MAX, u64::MAX))?
            .take(PAGE)
        {
            let (k, v) = row?;
            let (_, due, seq) = k.value();
            if let Ok(rec) = decode_record::<RetryRecord>(v.value())
                && let Some(raw) = retry_event(&ev, &ws, seq, &rec)?
            {
                retry_rows.push((due, seq, rec, raw));
            }
        }
        Ok((log_rows, retry_rows))
    })?;
    let mut settled = Vec::new();
    let mut next_read = st.next_read;
    for (seq, raw) in log_rows {
        if st.settled_above.contains(&seq) {
            next_read = seq + 1;
            continue;
        }
        let Some(stored) = open_event(engine, &ws, &raw) else {
            next_read = seq + 1;
            continue;
        };
        if routes_to(&ctx.dest, &stored.event) {
            let item = Item {
                seq,
                first_seen_ms: stored.accepted_ms,
                stored,
                raw,
                retries: 0,
                origin: Origin::Log,
                dlq_id: None,
                own_copy: false,
            };
            if !expired(ctx, &item, now) {
                break;
            }
            st.inflight_log.insert(seq);
            settled.push(item);
        }
        next_read = seq + 1;
    }
    st.next_read = next_read;
    for (due, seq, rec, raw) in retry_rows {
        let Some(item) = retry_item(engine, &ws, due, seq, &rec, raw) else {
            continue;
        };
        if expired(ctx, &item, now) {
            st.taken_retries.insert((due, seq));
            settled.push(item);
        }
    }
    let fates = settled
        .into_iter()
        .map(|i| {
            let body = "the event passed the platform's age limit while the destination was paused"
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
    if !fates.is_empty() || st.next_read != st.cursor {
        commit(engine, st, fates, Vec::new(), now).await;
    }
    Ok(())
}

fn requeue(st: &mut State, items: Vec<Item>) {
    for item in items.into_iter().rev() {
        st.ready.push_front(item);
    }
}

/// `min(base · 2^(n-1), max)`, spread by `jitter`.
fn backoff_ms(policy: &crate::config::PlatformPolicy, n: u32) -> i64 {
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

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

fn lowest_unsettled(st: &State) -> u64 {
    st.inflight_log.first().copied().unwrap_or(st.next_read)
}

/// Commits the fates of settled items with the cursor move they allow; memory follows
/// only a successful commit. On failure the items go back to be sent again.
async fn commit(
    engine: &Engine,
    st: &mut State,
    settled: Vec<(Item, Fate)>,
    extra: Vec<DeliveryOp>,
    now: i64,
) {
    let mut ops = extra;
    for (item, fate) in &settled {
        if let Origin::Retry { due_ms } = item.origin {
            ops.push(DeliveryOp::RetryDel {
                dest: st.id.clone(),
                due_ms,
                seq: item.seq,
            });
        }
        match fate {
            Fate::Done => {}
            Fate::Retry { due_ms, status } => ops.push(DeliveryOp::RetryPut {
                dest: st.id.clone(),
                due_ms: *due_ms,
                seq: item.seq,
                record: encode_record(&RetryRecord {
                    retries: item.retries + 1,
                    first_seen_ms: item.first_seen_ms,
                    last_attempt_ms: now,
                    last_status: *status,
                    event_copy: item
                        .own_copy
                        .then(|| serde_bytes::ByteBuf::from(item.raw.clone())),
                    dlq_id: item.dlq_id,
                }),
            }),
            Fate::Dlq {
                class,
                status,
                body,
            } => ops.push(DeliveryOp::DlqPut {
                dest: st.id.clone(),
                record: encode_record(&DlqRecord {
                    workspace: st.ws.clone(),
                    seq: item.seq,
                    event: serde_bytes::ByteBuf::from(item.raw.clone()),
                    error_class: *class,
                    status: *status,
                    response_body: body.clone(),
                    retries: item.retries,
                    first_seen_ms: item.first_seen_ms,
                    last_attempt_ms: now,
                }),
            }),
        }
    }
    let mut after = st.inflight_log.clone();
    for (item, _) in &settled {
        if item.origin == Origin::Log {
            after.remove(&item.seq);
        }
    }
    let new_cursor = after.first().copied().unwrap_or(st.next_read);
    // Settled above a lower event still in flight: remembered, so a restart does not
    // send them again.
    let above: Vec<u64> = settled
        .iter()
        .filter(|(i, _)| i.origin == Origin::Log && i.seq >= new_cursor)
        .map(|(i, _)| i.seq)
        .collect();
    if !above.is_empty() {
        ops.push(DeliveryOp::SettledAbove {
            dest: st.id.clone(),
            seqs: above,
        });
    }
    if new_cursor > st.cursor {
        ops.push(DeliveryOp::SettledBelow {
            dest: st.id.clone(),
            below: new_cursor,
        });
    }
    if new_cursor != st.cursor {
        ops.push(DeliveryOp::Cursor {
            dest: st.id.clone(),
            next_seq: new_cursor,
        });
    }
    match engine.store.delivery(ops).await {
        Ok(()) => {
            count_fates(&engine.metrics, &st.labels, &settled, now);
            st.inflight_log = after;
            st.cursor = new_cursor;
            st.settled_above.retain(|s| *s >= new_cursor);
            for (item, fate) in &settled {
                if let Origin::Retry { due_ms } = item.origin {
                    st.taken_retries.remove(&(due_ms, item.seq));
                }
                if let Fate::Dlq { class, .. } = fate {
                    info!(destination = %st.id, event_id = %item.stored.event.event_id, class = class.name(), "dead-lettered");
                }
            }
        }
        Err(e) => {
            warn!(destination = %st.id, error = %e, "could not record delivery outcomes; the events will be sent again");
            st.dest_hold_until = st.dest_hold_until.max(now + 1000);
            requeue(st, settled.into_iter().map(|(i, _)| i).collect());
        }
    }
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

/// Records one attempt in the ring; returns the write that persists it.
fn record_attempt(
    st: &mut State,
    status: Option<u16>,
    error: bool,
    latency_ms: i64,
    now: i64,
) -> Vec<DeliveryOp> {
    let o = OutcomeRecord {
        at_ms: now,
        error,
        status,
        latency_ms: latency_ms.clamp(0, u32::MAX as i64) as u32,
    };
    st.ring.push(o);
    let size = st.health.ring_size.max(1) as u64;
    let slot = (st.health.attempts % size) as u32;
    st.health.attempts += 1;
    vec![
        DeliveryOp::Outcome {
            dest: st.id.clone(),
            slot,
            record: encode_record(&o),
        },
        DeliveryOp::State {
            dest: st.id.clone(),
            record: encode_record(&st.health),
        },
    ]
}

/// Evaluations run on the interval's round times (every 5 minutes on the 5-minute
/// marks), so when one happens does not depend on when the worker started.
fn next_evaluation(now: i64, ctx: &DestCtx) -> i64 {
    let every = (ctx.dest.policy.auto_pause.interval.as_millis() as i64).max(1);
    (now.div_euclid(every) + 1) * every
}

/// The next time the health state machine needs the worker.
fn health_wake(st: &State) -> i64 {
    match st.health.mode {
        DestMode::Active => st.next_eval,
        DestMode::Paused => st.health.auto_clear_at_ms.unwrap_or(i64::MAX),
        DestMode::Probing => i64::MAX,
    }
}

/// Evaluations on their interval, the auto-clear that starts a probe, and a reload
/// that changed the ring's size.
async fn housekeep_health(engine: &Engine, ctx: &DestCtx, st: &mut State, now: i64) {
    let ap = &ctx.dest.policy.auto_pause;
    if ap.sample != st.health.ring_size {
        st.ring = Ring::new(ap.sample);
        st.health.ring_size = ap.sample;
        st.health.attempts = 0;
        let ops = vec![
            DeliveryOp::OutcomesClear {
                dest: st.id.clone(),
            },
            DeliveryOp::State {
                dest: st.id.clone(),
                record: encode_record(&st.health),
            },
        ];
        if let Err(e) = engine.store.delivery(ops).await {
            warn!(destination = %st.id, error = %e, "could not reset the outcome ring");
        }
    }
    match st.health.mode {
        DestMode::Active if now >= st.next_eval => {
            st.next_eval = next_evaluation(now, ctx);
            let rate = st.ring.error_rate(
                now,
                ap.window.as_millis() as i64,
                st.health.window_start_ms,
                ap.min_samples,
            );
            st.health.last_checked_ms = Some(now);
            if let Some(r) = rate {
                st.health.error_rate = Some(r);
            }
            match rate {
                Some(r) if r > ap.threshold => {
                    transition(engine, ctx, st, Change::RateExceeded { rate: r }, now).await
                }
                _ => {
                    let op = DeliveryOp::State {
                        dest: st.id.clone(),
                        record: encode_record(&st.health),
                    };
                    let _ = engine.store.delivery(vec![op]).await;
                }
            }
        }
        DestMode::Paused if st.health.auto_clear_at_ms.is_some_and(|t| now >= t) => {
            let empty = engine
                .store
                .read(|txn| {
                    engine
                        .backlog(txn, &ctx.dest, now, ctx.max_backlog_age_ms)
                        .map(|b| b.depth == 0)
                })
                .unwrap_or(false);
            if empty {
                transition(engine, ctx, st, Change::AutoResume { rate: None }, now).await;
            } else {
                info!(destination = %st.id, "auto-clear: probing");
                st.health.mode = DestMode::Probing;
                st.probe = Some(Probe::default());
                let op = DeliveryOp::State {
                    dest: st.id.clone(),
                    record: encode_record(&st.health),
                };
                let _ = engine.store.delivery(vec![op]).await;
            }
        }
        _ => {}
    }
}

/// Ends a probe once every probe request is answered (or the backlog ran out).
async fn finish_probe_if_done(engine: &Engine, ctx: &DestCtx, st: &mut State, now: i64) {
    let Some(p) = &st.probe else {
        return;
    };
    let wanted = ctx.dest.policy.auto_pause.probe_requests;
    let out_of_events = st.ready.is_empty() && st.forced.is_empty() && st.requests_in_flight == 0;
    if p.answered < p.sent || (p.sent < wanted && !out_of_events) {
        return;
    }
    if p.sent == 0 {
        // Nothing left to probe with: an empty backlog resumes at once.
        transition(engine, ctx, st, Change::AutoResume { rate: None }, now).await;
        return;
    }
    let rate = p.errors as f64 / p.answered as f64;
    let change = if rate <= ctx.dest.policy.auto_pause.threshold {
        Change::AutoResume { rate: Some(rate) }
    } else {
        Change::ProbeFailed { rate }
    };
    transition(engine, ctx, st, change, now).await;
}

/// One state change: state, row and audit event in one commit; then memory, the log
/// line and the alert.
async fn transition(engine: &Engine, ctx: &DestCtx, st: &mut State, change: Change, now: i64) {
    let applies = match change {
        Change::RateExceeded { .. } | Change::AuthFailed | Change::Gone(_) => !st.is_paused(),
        Change::ManualPause { .. } => !st.is_paused(),
        Change::ProbeFailed { .. } => st.health.mode == DestMode::Probing,
        Change::AutoResume { .. } => st.health.mode != DestMode::Active,
        Change::ManualResume { .. } => st.health.mode != DestMode::Active,
    };
    if !applies {
        return;
    }
    let mut next = st.health.clone();
    let (ops, notice) = crate::health::apply(
        &ctx.dest,
        &mut next,
        &ctx.dest.policy.auto_pause,
        &change,
        now,
    );
    if let Err(e) = engine.store.delivery(ops).await {
        warn!(destination = %st.id, error = %e, ?change, "could not record a state change; will retry");
        return;
    }
    st.health = next;
    st.probe = None;
    match st.health.mode {
        DestMode::Paused => {
            warn!(destination = %st.id, merchant = %ctx.dest.workspace, platform = ctx.dest.platform.name(), reason = %notice.reason, kind = notice.kind, "destination paused");
            forget_unsent(st);
        }
        _ => {
            info!(destination = %st.id, merchant = %ctx.dest.workspace, platform = ctx.dest.platform.name(), "destination resumed");
            st.auth_streak = 0;
            st.dest_hold_until = 0;
            st.next_eval = next_evaluation(now, ctx);
        }
    }
    engine.notify(notice);
}

async fn command(
    engine: &Engine,
    ctx: &DestCtx,
    st: &mut State,
    cmd: Command,
    now: i64,
) -> CommandReply {
    match cmd {
        Command::Pause { note, actor } => {
            if st.is_paused() {
                return CommandReply::AlreadyPaused;
            }
            transition(engine, ctx, st, Change::ManualPause { note, actor }, now).await;
            if st.is_paused() {
                CommandReply::Paused { paused_at_ms: now }
            } else {
                CommandReply::Unavailable("the store could not record the pause".into())
            }
        }
        Command::Resume { note, actor } => {
            if st.health.mode == DestMode::Active {
                return CommandReply::NotPaused;
            }
            let previous_pause_reason = st.health.paused_reason.clone();
            let paused_at_ms = st.health.paused_at_ms;
            transition(engine, ctx, st, Change::ManualResume { note, actor }, now).await;
            if st.health.mode == DestMode::Active {
                CommandReply::Resumed {
                    resumed_at_ms: now,
                    previous_pause_reason,
                    paused_at_ms,
                }
            } else {
                CommandReply::Unavailable("the store could not record the resume".into())
            }
        }
    }
}
