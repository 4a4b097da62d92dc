//! One destination's delivery loop. See the module doc of [`super`].
//!
//! A [`Worker`] owns its destination's context and everything in flight; each phase is
//! its own room:
//! - [`read`]: due retries and new log events into memory (one [`Item`] per event),
//!   expired and unsendable events settled at once, and the paused sweep;
//! - [`batch`]: the next batch, paced by every scope of the destination;
//! - [`send`]: one request through the adapter (with OAuth), as an [`send::Attempt`];
//! - [`settle`]: each answer's fate per event (done, retry, DLQ) and the commit that
//!   records it with the cursor move it allows.
//!
//! In memory: the events read but not yet settled (`ready`, `forced` batches, requests
//! in flight) and the set of log sequences taken (`inflight_log`). The persisted cursor
//! only moves over a finished prefix: `min(inflight_log)`, or the read position when
//! nothing is taken. Every settlement commits together with the cursor move it allows;
//! only then is memory updated, so a failed commit leaves the events to be sent again
//! rather than lost. Health (pauses, probes, evaluations) is the worker's
//! [`Machine`]; the worker commits what it plans.

mod batch;
mod commit;
mod read;
pub(super) mod send;
mod settle;
mod warn;

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{DestCtx, Engine};
use crate::health::machine::{Machine, Tick};
use crate::health::{Actor, Change};
use crate::store::codec::{DestMode, DestState, RetryRecord, StoredEvent};
use crate::store::{DeliveryOp, StoreError};
use batch::Next;
use commit::{Committing, StoreHold};
use send::Sent;
use settle::Settlement;

/// How often a paused destination's backlog is swept for expired events.
const PAUSED_SWEEP_MS: i64 = 60_000;

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
    /// Events below this were read from the log (the ones above the cursor and not
    /// settled are in flight).
    pub next_read: u64,
    pub in_memory: usize,
    /// Requests sent and not yet answered (or given up on); a request is counted here
    /// before it starts.
    pub requests_in_flight: usize,
    /// Outcomes received and not yet durably committed (a test waits for 0 before it
    /// reads what the store says).
    pub unsettled: usize,
    /// The persisted health state (mode, pause reason and times, last evaluation).
    pub state: DestState,
    /// The clock time the worker next wakes at on its own (a retry or batch due, pacing,
    /// an evaluation, the auto-clear; `i64::MAX`: none), as of the end of its last pass:
    /// while the clock reads this or later, the worker has work due that it has not
    /// done yet.
    pub wake_at_ms: i64,
    /// The worker has read its position and state (until then the fields above are
    /// defaults, not the destination's).
    pub positioned: bool,
}

/// Where an item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Log,
    Retry { due_ms: u64 },
}

/// The answer an event last got, shared by the events of one request.
#[derive(Debug)]
struct Last {
    /// A request was sent (false: it could not be built).
    sent: bool,
    status: Option<u16>,
    request_id: Option<String>,
    /// The error, shortened and redacted (None for a success).
    error: Option<String>,
}

/// One event taken for sending.
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
    /// What the last request that carried it got (for the event's history row).
    last: Option<Arc<Last>>,
}

impl Item {
    /// An event read from the log (`retry` None) or from a scheduled retry.
    fn new(
        seq: u64,
        stored: StoredEvent,
        raw: Vec<u8>,
        retry: Option<(u64, &RetryRecord)>,
    ) -> Item {
        match retry {
            None => Item {
                seq,
                first_seen_ms: stored.accepted_ms,
                stored,
                raw,
                retries: 0,
                origin: Origin::Log,
                dlq_id: None,
                own_copy: false,
                last: None,
            },
            Some((due_ms, rec)) => Item {
                seq,
                stored,
                raw,
                retries: rec.retries,
                first_seen_ms: rec.first_seen_ms,
                origin: Origin::Retry { due_ms },
                dlq_id: rec.dlq_id,
                own_copy: rec.event_copy.is_some(),
                last: None,
            },
        }
    }
}

/// One destination's worker: its context, its position and what it holds in memory.
pub(super) struct Worker {
    engine: Arc<Engine>,
    ctx: Arc<DestCtx>,
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
    health: Machine,
    /// Settled, waiting for the next commit.
    queued: Settlement,
    /// The commit in flight (one at a time; sending goes on meanwhile).
    committing: Option<Committing>,
    /// Set while the store refuses commits: nothing is sent, commits are retried.
    store_hold: StoreHold,
    /// The warning before a pause (issue 18).
    warn: warn::WarnState,
}

pub(super) async fn run(mut env: Env) {
    let engine = env.engine.clone();
    debug!(destination = %env.ctx.borrow().dest.id, "delivery worker starting");
    // The store opens in the background: wait for it.
    while !engine.store.is_open() {
        if *env.stop.borrow() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ctx = env.ctx.borrow().clone();
    let mut w = match Worker::init(engine.clone(), ctx.clone()).await {
        Ok(w) => w,
        Err(e) => {
            warn!(destination = %ctx.dest.id, error = %e, "cannot read the destination's position; delivery stopped for it");
            return;
        }
    };
    debug!(destination = %w.id, cursor = w.cursor, "delivery worker positioned");
    let (res_tx, mut res_rx) = mpsc::unbounded_channel::<Sent>();
    let mut stopping = false;
    let mut next_sweep = i64::MIN;
    loop {
        w.ctx = env.ctx.borrow().clone();
        let notified = env.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = engine.clock.now_ms();
        let mut wake_at = i64::MAX;
        if !stopping {
            w.housekeep_health(now).await;
            wake_at = wake_at.min(w.health.wake_at());
        }
        if !stopping && w.health.is_paused() {
            if now >= next_sweep {
                if let Err(e) = w.sweep_paused(now) {
                    warn!(destination = %w.id, error = %e, "sweeping expired events failed; retrying later");
                }
                next_sweep = now + PAUSED_SWEEP_MS;
            }
            wake_at = wake_at.min(next_sweep);
        } else if !stopping {
            match w.fill(now) {
                Ok(next_due) => wake_at = wake_at.min(next_due),
                Err(e) => {
                    warn!(destination = %w.id, error = %e, "reading the queue failed; retrying in 1 s");
                    wake_at = wake_at.min(now + 1000);
                }
            }
            if w.health.mode() == DestMode::Probing {
                w.finish_probe_if_done(now).await;
            }
            let mut batches = Vec::new();
            while w.requests_in_flight < w.ctx.dest.policy.concurrency as usize {
                match w.next_batch(now) {
                    Next::Send(batch) => {
                        w.requests_in_flight += 1;
                        batches.push(batch);
                    }
                    Next::Wait(t) => {
                        wake_at = wake_at.min(t);
                        break;
                    }
                    Next::Idle => break,
                }
            }
            // Readers see a request in flight before it starts (and its timeout with
            // it): `sluice drill` holds its clock while requests are in flight, and one
            // sent unseen could time out on a clock that moved on meanwhile.
            if !batches.is_empty() {
                w.publish(&env.snapshot);
            }
            for batch in batches {
                tokio::spawn(send::send(
                    engine.clone(),
                    w.ctx.clone(),
                    w.ws.clone(),
                    batch,
                    res_tx.clone(),
                ));
            }
        }
        // Fates settled in this pass (expired, unsendable, answers) and cursor moves go
        // to the store, one commit at a time.
        if w.commit_due() {
            w.start_commit();
        }
        if w.store_hold.holding(now) {
            wake_at = wake_at.min(w.store_hold.until);
        }
        // A state change in this pass (a probe's verdict, a pause) moves the next wake-up.
        if !stopping {
            wake_at = wake_at.min(w.health.wake_at());
            if w.health.is_paused() {
                wake_at = wake_at.min(next_sweep.max(now));
            }
        }
        w.publish(&env.snapshot);
        if let Ok(mut s) = env.snapshot.lock() {
            s.wake_at_ms = if stopping { i64::MAX } else { wake_at };
        }
        debug!(destination = %w.id, now, wake_at, ready = w.ready.len(), next_read = w.next_read, in_flight = w.requests_in_flight, "delivery loop");
        if stopping && w.requests_in_flight == 0 && w.committing.is_none() && !w.commit_due() {
            break;
        }
        let has_commit = w.committing.is_some();
        let committing = w.committing.as_mut().map(|c| c.fut.as_mut());
        tokio::select! {
            r = async { committing.expect("a commit in flight").await }, if has_commit => {
                w.finish_commit(r).await;
            }
            Some(sent) = res_rx.recv() => {
                // Settle every answer that is in; the next commit records them.
                let mut next = Some(sent);
                while let Some(sent) = next {
                    w.requests_in_flight -= 1;
                    w.settle_sent(sent);
                    next = res_rx.try_recv().ok();
                }
            }
            () = &mut notified, if !stopping => {}
            () = engine.clock.sleep_until(wake_at), if !stopping && wake_at != i64::MAX => {}
            _ = env.ctx.changed(), if !stopping => {}
            _ = env.stop.changed(), if !stopping => { stopping = true; }
            Some((cmd, reply)) = env.commands.recv() => {
                let now = engine.clock.now_ms();
                let answer = w.command(cmd, now).await;
                // What the answer says is what every reader sees from now on.
                w.publish(&env.snapshot);
                let _ = reply.send(answer);
            }
        }
    }
    w.publish(&env.snapshot);
    debug!(destination = %w.id, "delivery worker stopped");
}

impl Worker {
    /// Reads the destination's position, health state and ring; a destination without
    /// a position records one at once (log trimming counts on it).
    async fn init(engine: Arc<Engine>, ctx: Arc<DestCtx>) -> Result<Worker, StoreError> {
        let id = ctx.dest.id.clone();
        let ws = ctx.dest.workspace.clone();
        let view = engine.store.view()?;
        let cursor = view.cursor(&id)?;
        let head = view.head(&ws)?;
        let state = view.dest_state(&id)?;
        let settled_above = view.settled_from(&id, cursor.unwrap_or(0))?;
        let ring_rows = view.outcomes(&id)?;
        drop(view);
        // A destination without a position receives events accepted from now on: from
        // the head at the time it was configured (captured at sync), else the head now.
        let fresh = cursor.is_none() || state.as_ref().is_none_or(|s| s.workspace.is_empty());
        let cursor = cursor.unwrap_or(ctx.initial_head.unwrap_or(head));
        let state = state.unwrap_or_default();
        if let Some(reason) = &state.paused_reason {
            info!(destination = %id, %reason, state = state.mode.name(), "destination is not active");
        }
        let now = engine.clock.now_ms();
        let (mut health, reset_ring) =
            Machine::restore(state, ring_rows, &ctx.dest.policy.auto_pause, now);
        if fresh || reset_ring {
            health.set_owner(&ws, ctx.dest.platform.name());
            engine
                .store
                .delivery(vec![
                    DeliveryOp::OutcomesClear { dest: id.clone() },
                    DeliveryOp::Cursor {
                        dest: id.clone(),
                        next_seq: cursor,
                    },
                    health.state_op(&id),
                ])
                .await?;
        }
        Ok(Worker {
            labels: crate::metrics::DestLabels::of(&ctx.dest),
            engine,
            ctx,
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
            queued: Settlement::default(),
            committing: None,
            store_hold: StoreHold::default(),
            warn: warn::WarnState::default(),
        })
    }

    fn publish(&self, snap: &Mutex<DestSnapshot>) {
        if let Ok(mut s) = snap.lock() {
            s.cursor = self.cursor;
            s.next_read = self.next_read;
            s.in_memory = self.held() + self.settling();
            s.requests_in_flight = self.requests_in_flight;
            s.unsettled = self.settling();
            s.state = self.health.state().clone();
            s.positioned = true;
        }
    }

    /// Events read and not yet sent.
    fn held(&self) -> usize {
        self.ready.len() + self.forced.iter().map(Vec::len).sum::<usize>()
    }

    /// Events read and settled, not yet committed (they count against the read-ahead);
    /// a commit in flight counts at least one (it may only move the cursor).
    fn settling(&self) -> usize {
        self.queued.settled.len() + self.committing.as_ref().map_or(0, |c| c.len().max(1))
    }

    /// A reload that changed the ring's size, evaluations on their interval, and the
    /// auto-clear that starts a probe (or resumes a destination with nothing pending).
    async fn housekeep_health(&mut self, now: i64) {
        let policy = &self.ctx.dest.policy.auto_pause;
        if let Some(ops) = self.health.resize(&self.id, policy)
            && let Err(e) = self.engine.store.delivery(ops).await
        {
            warn!(destination = %self.id, error = %e, "could not reset the outcome ring");
        }
        let (engine, ctx) = (self.engine.clone(), self.ctx.clone());
        let was = self.health.mode();
        let tick = self
            .health
            .tick(&self.id, &ctx.dest.policy.auto_pause, now, || {
                engine
                    .store
                    .view()
                    .and_then(|v| {
                        engine
                            .backlog(&v, &ctx.dest, now, ctx.max_backlog_age_ms)
                            .map(|b| b.depth == 0)
                    })
                    .unwrap_or(false)
            });
        match tick {
            Tick::Nothing => {}
            Tick::Persist(ops) => {
                if was != DestMode::Probing && self.health.mode() == DestMode::Probing {
                    info!(destination = %self.id, "auto-clear: probing");
                }
                if let Err(e) = self.engine.store.delivery(ops).await {
                    warn!(destination = %self.id, error = %e, "could not record an evaluation");
                }
                self.after_evaluation(now);
            }
            Tick::Change(c) => self.transition(c, now).await,
        }
    }

    /// Ends a probe once every probe request is answered (or the backlog ran out).
    async fn finish_probe_if_done(&mut self, now: i64) {
        let out_of_events =
            self.ready.is_empty() && self.forced.is_empty() && self.requests_in_flight == 0;
        if let Some(c) = self
            .health
            .probe_verdict(&self.ctx.dest.policy.auto_pause, out_of_events)
        {
            self.transition(c, now).await;
        }
    }

    /// One state change: state, row and audit event in one commit; then memory, the
    /// log line and the alert.
    async fn transition(&mut self, change: Change, now: i64) {
        let Some(plan) = self.health.plan(&self.ctx.dest, &change, now) else {
            return;
        };
        // What a commit in flight settles lands in memory before a pause resets it.
        self.drain_commit().await;
        if let Err(e) = self.engine.store.delivery(plan.ops.clone()).await {
            warn!(destination = %self.id, error = %e, change = change.kind(), "could not record a state change; will retry");
            return;
        }
        let notice = self
            .health
            .accept(plan, &self.ctx.dest.policy.auto_pause, now);
        let dest = &self.ctx.dest;
        // The note is the operator's text: bounded, and escaped (Debug) so no character
        // of it can end the line or forge another.
        let note = notice.note.as_deref().map(crate::alerts::bounded_note);
        if self.health.is_paused() {
            warn!(destination = %self.id, merchant = %dest.workspace, platform = dest.platform.name(), reason = %notice.reason, kind = notice.kind.name(), actor = notice.actor, note = ?note.as_deref().unwrap_or(""), "destination paused");
            self.forget_unsent();
        } else {
            info!(destination = %self.id, merchant = %dest.workspace, platform = dest.platform.name(), reason = %notice.reason, actor = notice.actor, note = ?note.as_deref().unwrap_or(""), "destination resumed");
            self.dest_hold_until = 0;
        }
        self.engine.notify(notice);
        self.after_transition(now);
    }

    /// While paused, nothing is held in memory: the backlog is the log from the cursor
    /// and the retries table, read again on resume.
    fn forget_unsent(&mut self) {
        self.ready.clear();
        self.forced.clear();
        self.inflight_log.clear();
        self.taken_retries.clear();
        self.next_read = self.cursor;
    }

    async fn command(&mut self, cmd: Command, now: i64) -> CommandReply {
        match cmd {
            Command::Pause { note, actor } => {
                if self.health.is_paused() {
                    return CommandReply::AlreadyPaused;
                }
                self.transition(Change::ManualPause { note, actor }, now)
                    .await;
                if self.health.is_paused() {
                    CommandReply::Paused { paused_at_ms: now }
                } else {
                    CommandReply::Unavailable("the store could not record the pause".into())
                }
            }
            Command::Resume { note, actor } => {
                if self.health.mode() == DestMode::Active {
                    return CommandReply::NotPaused;
                }
                let previous_pause_reason = self.health.state().paused_reason.clone();
                let paused_at_ms = self.health.state().paused_at_ms;
                self.transition(Change::ManualResume { note, actor }, now)
                    .await;
                if self.health.mode() == DestMode::Active {
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
}
