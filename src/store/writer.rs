//! The writer thread: the only code that opens write transactions (see the module doc of
//! [`super`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};
use tracing::{error, info, warn};

use super::codec::encode_record;
use super::history::{self, HistoryFate};

use super::backlog::{BACKLOG, BACKLOG_SECONDS, Backlogs, Tables as BacklogTables};
use super::dedup::maintain::Maintainer;
use super::dedup::{DEDUP_LOG, DedupIndex, Loaded};
use super::journal::{self, Journal};
use super::{
    AUTO_PAUSE_EVENTS, CLOSED, CURSORS, Cmd, DEST_STATE, DLQ, DeliveryOp, EVENTS, META, MONTHLY,
    OPENING, OUTCOMES, READY, RECOVERING, REQUEST_LOG, RETRIES, Recovered, SCHEMA_VERSION, SETTLED,
    Shared, StoreError, StoreOptions,
};

/// Most events one transaction takes; the rest wait for the next commit.
const MAX_EVENTS_PER_COMMIT: usize = 20_000;
/// Most ingested events a transaction takes when delivery work is in it too (2,000:
/// with intake twice as fast as when this was 4,000, a burst of batches otherwise
/// takes most of each commit from settlements; see the delivery bench's `burst`).
const INGEST_BESIDE_DELIVERY: usize = 2_000;
/// While ingest runs on the journal's word, a durable commit at least this often (ms):
/// it bounds what a restart replays and how far the file lags, and each one holds
/// the writer for the pages dirtied since the last (a few ms at this interval).
const CHECKPOINT_MS: i64 = 250;
/// ... or once the journal is this long.
const JOURNAL_MAX: u64 = 64 << 20;
/// How long the writer waits for work after a commit the journal holds before it makes
/// a durable one (the journal is then emptied).
const IDLE_CHECKPOINT: Duration = Duration::from_millis(100);
/// Groups of this many events or more skip the journal (batch requests).
const JOURNAL_GROUP_MAX: usize = 1_000;

type Reply = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

pub(super) fn run(mut opts: StoreOptions, rx: Receiver<Cmd>, shared: Arc<Shared>) {
    let mut w = Writer {
        seq_heads: HashMap::new(),
        names: HashMap::new(),
        maint: Maintainer::new(&Loaded::default(), opts.dedup_tuning),
        index: opts.dedup.clone(),
        backlogs: Backlogs::new(opts.routing.clone()),
        trims: HashMap::new(),
        journal: None,
        next_record: 1,
        dirty: false,
        last_durable_ms: opts.clock.now_ms(),
        delivery_ms: i64::MIN / 2,
    };
    let Some(mut db) = open_until_ok(&mut w, &mut opts, &rx, &shared, OPENING) else {
        return;
    };
    // Ingest batches received but not yet committed: delivery work goes first.
    let mut waiting: VecDeque<(super::IngestBatch, Reply)> = VecDeque::new();
    loop {
        // Maintenance with work left (a seal or merge under way) or ingest waiting goes
        // on between commands; otherwise wait for one. Commits made durable only by the
        // journal are followed by a durable one once the writer has been idle a while.
        let busy =
            w.maint.busy() || w.backlogs.busy() || !w.trims.is_empty() || !waiting.is_empty();
        let first = if busy {
            match rx.try_recv() {
                Ok(c) => Some(c),
                Err(std::sync::mpsc::TryRecvError::Empty) => None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            }
        } else if w.dirty {
            match rx.recv_timeout(IDLE_CHECKPOINT) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            let Ok(c) = rx.recv() else {
                break;
            };
            Some(c)
        };
        let mut delivery = Vec::new();
        let mut shutdown = None;
        let mut n_ops = 0;
        let mut take = |c: Cmd, shutdown: &mut Option<_>, n_ops: &mut usize| match c {
            Cmd::Shutdown(done) => *shutdown = Some(done),
            Cmd::Ingest(b, reply) => {
                waiting.push_back((b, reply));
            }
            Cmd::Delivery(ops, reply) => {
                *n_ops += ops.len();
                delivery.push((ops, reply));
            }
        };
        let idle = first.is_none();
        if let Some(first) = first {
            take(first, &mut shutdown, &mut n_ops);
        }
        // Everything queued: settlements never wait behind a pile of ingest.
        while shutdown.is_none() && n_ops < MAX_EVENTS_PER_COMMIT {
            match rx.try_recv() {
                Ok(c) => take(c, &mut shutdown, &mut n_ops),
                Err(_) => break,
            }
        }
        // This commit's ingest: a full share when nothing else waits, a smaller one
        // beside delivery work so its commit returns soon; all of it at shutdown.
        let budget = if shutdown.is_some() {
            usize::MAX
        } else if delivery.is_empty() {
            MAX_EVENTS_PER_COMMIT
        } else {
            INGEST_BESIDE_DELIVERY
        };
        let mut ingest = Vec::new();
        let mut n_events = 0usize;
        while let Some((b, _)) = waiting.front() {
            let n = b.digests.len();
            if !ingest.is_empty() && n_events + n > budget {
                break;
            }
            n_events += n;
            ingest.push(waiting.pop_front().expect("front"));
        }
        let maintenance_only = idle && ingest.is_empty() && delivery.is_empty();
        let now = opts.clock.now_ms();
        let (batches, replies): (Vec<_>, Vec<_>) = ingest.into_iter().unzip();
        let events: usize = batches.iter().map(|b| b.digests.len()).sum();
        // Durable: delivery or operator work (acted on once answered), shutdown, the
        // writer idle after commits only the journal holds, a checkpoint due, and a
        // large group (its own commit costs little per event; the journal would write
        // it twice), and while delivery commits come anyway (each is durable: the
        // journal would only add a sync). Else small groups of ingest alone go
        // through the journal.
        let durable = !delivery.is_empty()
            || shutdown.is_some()
            || (maintenance_only && !busy)
            || w.checkpoint_due(now)
            || events >= JOURNAL_GROUP_MAX
            || now - w.delivery_ms < CHECKPOINT_MS;
        // A stop after commits only the journal holds makes them durable and empties it.
        let last = shutdown.is_some() && w.dirty;
        if maintenance_only || last || !batches.is_empty() || !delivery.is_empty() {
            let mut plan = w.plan(durable, &batches);
            match w.commit(&db, &batches, &delivery, now, &mut plan) {
                Ok(()) => {
                    w.committed(plan.durable, now);
                    if n_ops > 0 {
                        w.delivery_ms = now;
                    }
                    for (mut b, reply) in batches.into_iter().zip(replies) {
                        if let Some(f) = b.on_done.take() {
                            f(true);
                        }
                        let _ = reply.send(Ok(()));
                    }
                    for (_, reply) in delivery {
                        let _ = reply.send(Ok(()));
                    }
                }
                Err(e) => {
                    // Its record goes too: its requests are answered with an error.
                    w.abandon(&mut plan);
                    fail(
                        &mut w,
                        &e,
                        &shared,
                        batches.into_iter().zip(replies).collect(),
                        delivery,
                        &mut waiting,
                    );
                    match reopen(&mut w, db, &mut opts, &rx, &shared) {
                        Some(d) => db = d,
                        None => return,
                    }
                }
            }
        }
        if let Some(done) = shutdown {
            shared.status.store(CLOSED, Ordering::SeqCst);
            shared.db.store(None);
            // A merge's source reader holds the database too.
            w.maint.close();
            drop(db);
            info!("store closed");
            let _ = done.send(());
            return;
        }
    }
    shared.status.store(CLOSED, Ordering::SeqCst);
}

/// After a failed commit: not ready from before anyone hears of it; `new` (ingest not
/// answered yet), `delivery` and everything waiting are answered `Unavailable`.
fn fail(
    w: &mut Writer,
    e: &redb::Error,
    shared: &Shared,
    new: Vec<(super::IngestBatch, Reply)>,
    delivery: Vec<(Vec<DeliveryOp>, Reply)>,
    waiting: &mut VecDeque<(super::IngestBatch, Reply)>,
) {
    error!(error = %e, "commit failed; reopening the store");
    shared.status.store(RECOVERING, Ordering::SeqCst);
    let msg = e.to_string();
    for (mut b, reply) in new.into_iter().chain(waiting.drain(..)) {
        if let Some(f) = b.on_done.take() {
            f(false);
        }
        let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
    }
    for (_, reply) in delivery {
        let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
    }
    w.maint.failed();
    w.backlogs.abort();
}

fn reopen(
    w: &mut Writer,
    db: Arc<Database>,
    opts: &mut StoreOptions,
    rx: &Receiver<Cmd>,
    shared: &Shared,
) -> Option<Arc<Database>> {
    shared.status.store(RECOVERING, Ordering::SeqCst);
    shared.db.store(None);
    drop(db);
    open_until_ok(w, opts, rx, shared, RECOVERING)
}

struct Writer {
    /// Next sequence number per workspace, read from the file on first use.
    seq_heads: HashMap<Arc<str>, u64>,
    /// Event names seen per workspace (`event_names`), read from the file on first use.
    names: HashMap<Arc<str>, std::collections::HashSet<String>>,
    /// The dedup index's upkeep (seals, merges, expiry), a slice per commit.
    maint: Maintainer,
    index: Arc<DedupIndex>,
    /// Destinations' backlog summaries, kept by the commits that change them.
    backlogs: Backlogs,
    /// Log trimming still to do: workspace → delete the chunks wholly below this.
    trims: HashMap<String, u64>,
    /// The ingest journal ([`super::journal`]); None until the store is open.
    journal: Option<Journal>,
    /// The number the next ingest commit's journal record gets.
    next_record: u64,
    /// Commits made since the last durable one (their ingest is in the journal).
    dirty: bool,
    /// When the last durable commit was made (the injected clock).
    last_durable_ms: i64,
    /// When the last commit with delivery work was made.
    delivery_ms: i64,
}

/// How one commit is made durable.
struct Plan {
    /// A durable redb commit (else one the journal holds, or that answers nothing).
    durable: bool,
    /// The journal record number its ingest has (`journal_applied`).
    record: Option<u64>,
    /// Its journal record, syncing while the group is applied; the commit waits for
    /// it before the group becomes visible.
    pending: Option<journal::Pending>,
}

impl Plan {
    fn new(durable: bool, record: Option<u64>) -> Plan {
        Plan {
            durable,
            record,
            pending: None,
        }
    }
}

impl Writer {
    /// Forgets what it knew of the file, for a (re)open that loaded `maint`.
    fn reset(&mut self, maint: Maintainer) {
        self.seq_heads.clear();
        self.names.clear();
        self.backlogs.reset();
        self.trims.clear();
        self.maint = maint;
        self.journal = None;
        self.dirty = false;
    }

    /// Whether a durable commit is due whatever the commit holds: [`CHECKPOINT_MS`]
    /// since the last one, or a journal grown past [`JOURNAL_MAX`].
    fn checkpoint_due(&self, now_ms: i64) -> bool {
        now_ms - self.last_durable_ms >= CHECKPOINT_MS
            || self
                .journal
                .as_ref()
                .is_some_and(|j| j.len() >= JOURNAL_MAX)
    }

    /// Decides how a commit holding `batches` is made durable. Not durable: its
    /// journal record is written and its sync started (on the journal's sync thread,
    /// while the commit applies the group). A journal that cannot be written makes the
    /// commit durable instead: the answer waits longer, nothing is lost.
    fn plan(&mut self, durable: bool, batches: &[super::IngestBatch]) -> Plan {
        if batches.is_empty() {
            return Plan::new(durable, None);
        }
        let no = self.next_record;
        self.next_record += 1;
        let mut plan = Plan::new(true, Some(no));
        if durable {
            return plan;
        }
        if let Some(j) = self.journal.as_mut().filter(|j| j.usable()) {
            match j.write(no, batches.iter()) {
                Ok(p) => {
                    plan.durable = false;
                    plan.pending = Some(p);
                }
                Err(e) => {
                    warn!(error = %e, path = %j.path().display(), "cannot write the ingest journal; these events are committed durably instead");
                }
            }
        }
        plan
    }

    /// Waits for the plan's journal record to be synced, if one is syncing; a failed
    /// sync makes the commit durable instead.
    fn settle_journal(&mut self, plan: &mut Plan) {
        let (Some(p), Some(j)) = (plan.pending.take(), self.journal.as_mut()) else {
            return;
        };
        if let Err(e) = j.finish(p) {
            warn!(error = %e, path = %j.path().display(), "cannot sync the ingest journal; these events are committed durably instead");
            plan.durable = true;
        }
    }

    /// After a failed commit: its journal record (if it got one) goes, since its
    /// requests are answered with an error.
    fn abandon(&mut self, plan: &mut Plan) {
        self.settle_journal(plan);
        if !plan.durable
            && let Some(j) = self.journal.as_mut()
        {
            j.drop_last();
        }
    }

    /// After a successful commit: a durable one covers every journal record.
    fn committed(&mut self, durable: bool, now_ms: i64) {
        if durable {
            self.dirty = false;
            self.last_durable_ms = now_ms;
            if let Some(j) = self.journal.as_mut() {
                j.clear();
            }
        } else {
            self.dirty = true;
        }
    }

    /// At (re)open: commits again every journal record the file's durable state does
    /// not hold (`journal_applied` below it), in order, the last commit durable, and
    /// empties the journal. Then reads what the intake recovers from the file.
    fn recover(
        &mut self,
        db: &Arc<Database>,
        opts: &StoreOptions,
        epoch: u64,
        applied: u64,
    ) -> Result<Recovered, anyhow::Error> {
        let (journal, records, torn) = Journal::open(&opts.path, epoch, opts.faults.clone())?;
        if let Some(t) = torn {
            // Normal: the file is reused from its start, so an earlier lap's records
            // (or one cut short, never answered) follow this lap's.
            tracing::debug!(
                path = %journal.path().display(),
                at = t.at,
                len = t.len,
                "the ingest journal's records end here; what follows is from an earlier lap or was never answered"
            );
        }
        self.journal = Some(journal);
        let last = records.iter().map(|r| r.no).fold(applied, u64::max);
        let now = opts.clock.now_ms();
        let (mut n_records, mut n_events) = (0usize, 0usize);
        let mut group: Vec<super::IngestBatch> = Vec::new();
        let mut group_events = 0;
        let mut group_no = applied;
        // Another epoch: records of another store (this one restored from a backup).
        for r in records
            .into_iter()
            .filter(|r| r.epoch == epoch && r.no > applied)
        {
            let events: usize = r.batches.iter().map(|b| b.digests.len()).sum();
            if !group.is_empty() && group_events + events > MAX_EVENTS_PER_COMMIT {
                self.commit(db, &group, &[], now, &mut Plan::new(false, Some(group_no)))?;
                group.clear();
                group_events = 0;
            }
            n_records += 1;
            n_events += events;
            group_events += events;
            group_no = r.no;
            group.extend(r.batches);
        }
        if n_records > 0 {
            self.commit(db, &group, &[], now, &mut Plan::new(true, Some(group_no)))?;
            info!(
                records = n_records,
                events = n_events,
                "ingest journal replayed: events answered before the stop are in the store"
            );
        }
        self.committed(true, now);
        self.next_record = last + 1;
        let mut rec = Recovered::default();
        let read = db.begin_read()?;
        let monthly = read.open_table(MONTHLY)?;
        for row in monthly.iter()? {
            let (k, v) = row?;
            let (ws, month) = k.value();
            rec.monthly.push((ws.to_string(), month, v.value()));
        }
        Ok(rec)
    }

    /// Records event names a workspace has not used before (at most
    /// [`history::MAX_NAMES`] per workspace): the trace looks an id up under each.
    fn note_names(
        &mut self,
        t: &mut redb::Table<(&str, &str), ()>,
        ws: &Arc<str>,
        metas: &[super::backlog::EventMeta],
    ) -> Result<(), redb::Error> {
        if !self.names.contains_key(ws) {
            let known = history::names(t, ws)?;
            self.names.insert(ws.clone(), known.into_iter().collect());
        }
        let set = self.names.get_mut(ws).expect("just loaded");
        for m in metas {
            if set.len() < history::MAX_NAMES && !set.contains(&m.name) {
                t.insert((&**ws, m.name.as_str()), ())?;
                set.insert(m.name.clone());
            }
        }
        Ok(())
    }

    /// Applies one group in one transaction, durable as `plan` says: else one the
    /// journal holds (its ingest is in record `plan.record`, synced before the commit
    /// makes it visible) or that holds nothing answered. Every commit that answers a
    /// delivery's settlement or a state change is durable: it is on disk before anyone
    /// acts on it (SPEC §3: after a crash only requests that were in flight are sent
    /// again). Group commit shares the fsync.
    fn commit(
        &mut self,
        db: &Arc<Database>,
        batch: &[super::IngestBatch],
        delivery: &[(Vec<DeliveryOp>, Reply)],
        now_ms: i64,
        plan: &mut Plan,
    ) -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        if let Some(no) = plan.record {
            txn.open_table(META)?
                .insert(journal::APPLIED_KEY, no.to_le_bytes().as_slice())?;
        }
        let events: usize = batch.iter().map(|b| b.digests.len()).sum();
        let alone = batch.is_empty() && delivery.is_empty();
        let mut heads = HashMap::new();
        // The commit sequence of each batch's digests in `dedup_log`.
        let mut logged = Vec::with_capacity(batch.len());
        {
            let mut t = Tables {
                b: BacklogTables {
                    events: txn.open_table(EVENTS)?,
                    cursors: txn.open_table(CURSORS)?,
                    settled: txn.open_table(SETTLED)?,
                    dlq: txn.open_table(DLQ)?,
                    summary: txn.open_table(BACKLOG)?,
                    seconds: txn.open_table(BACKLOG_SECONDS)?,
                },
            };
            self.backlogs.begin(&mut t.b)?;
            let mut tally = super::watch::Tally::default();
            if !delivery.is_empty() {
                apply_delivery(
                    &txn,
                    &mut t,
                    &mut self.backlogs,
                    &mut self.trims,
                    &mut tally,
                    delivery,
                )?;
            }
            let routing = self.backlogs.routing.load_full();
            super::trim::slice(
                &mut t.b.events,
                &mut self.trims,
                super::trim::Budget::for_commit(events, batch.len(), alone),
            )?;
            let mut dlog = txn.open_table(DEDUP_LOG)?;
            let mut monthly_add: HashMap<(Arc<str>, u32), u64> = HashMap::new();
            let mut names_t = txn.open_table(history::EVENT_NAMES)?;
            for b in batch {
                let ws: &str = &b.workspace;
                let next = match heads.get(&b.workspace).or(self.seq_heads.get(&b.workspace)) {
                    Some(n) => *n,
                    None => super::log::head(&t.b.events, ws)?,
                };
                let n = b.digests.len() as u64;
                if n == 0 {
                    logged.push(None);
                    continue;
                }
                t.b.events.insert((ws, next), b.chunk.as_slice())?;
                self.note_names(&mut names_t, &b.workspace, &b.metas)?;
                let routed = self
                    .backlogs
                    .on_append(&t.b, ws, next, b.accepted_ms, &b.metas)?;
                tally.appended(&routing, ws, b.accepted_ms, &b.metas, routed);
                logged.push(Some((
                    next,
                    self.maint.log(&mut dlog, b.accepted_ms, next, &b.digests)?,
                )));
                heads.insert(b.workspace.clone(), next + n);
                *monthly_add
                    .entry((b.workspace.clone(), b.month))
                    .or_default() += n;
            }
            let mut monthly = txn.open_table(MONTHLY)?;
            for ((ws, month), n) in monthly_add {
                let cur = monthly.get((&*ws, month))?.map_or(0, |v| v.value());
                monthly.insert((&*ws, month), cur + n)?;
            }
            if !tally.is_empty() {
                tally.write(
                    &mut txn.open_table(super::watch::SOURCE_COUNTS)?,
                    &mut txn.open_table(super::watch::ACCURACY)?,
                )?;
            }
            self.backlogs.walk(&mut t.b)?;
            self.backlogs.finish(&mut t.b)?;
        }
        let budget = self.maint.budget(events, alone);
        self.maint.step(&txn, db, &self.index, now_ms, budget)?;
        // Visible to readers only once its journal record is synced.
        self.settle_journal(plan);
        if !plan.durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        }
        txn.commit()?;
        self.seq_heads.extend(heads);
        self.maint.committed(&self.index);
        // In the index before anyone is answered: a retry of this request is a
        // duplicate from now on.
        let tuning = self.maint.tuning();
        for (b, seq) in batch.iter().zip(logged) {
            if let Some((first, seq)) = seq {
                self.index
                    .insert(&b.digests, b.accepted_ms, first, tuning, seq);
            }
        }
        Ok(())
    }
}

/// The tables every commit opens once.
struct Tables<'t> {
    b: BacklogTables<'t>,
}

/// The `meta` key of the next event history row number.
const HISTORY_NEXT_ROW: &str = "history_next_row";

/// A `meta` row holding a u64 (LE); None when absent or not 8 bytes.
fn meta_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, redb::Error> {
    Ok(meta
        .get(key)?
        .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map(u64::from_le_bytes))
}

fn apply_delivery(
    txn: &redb::WriteTransaction,
    t: &mut Tables,
    backlogs: &mut Backlogs,
    trims: &mut HashMap<String, u64>,
    tally: &mut super::watch::Tally,
    delivery: &[(Vec<DeliveryOp>, Reply)],
) -> Result<(), redb::Error> {
    let mut retries = txn.open_table(RETRIES)?;
    let mut state = txn.open_table(DEST_STATE)?;
    let mut meta = txn.open_table(META)?;
    let mut outcomes = txn.open_table(OUTCOMES)?;
    let mut ap_events = txn.open_table(AUTO_PAUSE_EVENTS)?;
    let mut hist = txn.open_table(history::RUNS)?;
    let mut hist_row: Option<u64> = None;
    let mut requests = txn.open_table(REQUEST_LOG)?;
    let mut series = txn.open_table(super::series::SERIES)?;
    let mut next_id = meta_u64(&meta, "dlq_next_id")?.unwrap_or(1);
    let start_id = next_id;
    for (ops, _) in delivery {
        for op in ops {
            match op {
                DeliveryOp::Cursor { dest, next_seq } => {
                    backlogs.on_cursor(&mut t.b, dest, *next_seq)?;
                    t.b.cursors.insert(dest.as_str(), *next_seq)?;
                }
                DeliveryOp::RetryPut {
                    dest,
                    due_ms,
                    seq,
                    record,
                } => {
                    retries.insert(
                        (dest.as_str(), *due_ms, *seq),
                        encode_record(record).as_slice(),
                    )?;
                }
                DeliveryOp::RetryDel { dest, due_ms, seq } => {
                    retries.remove((dest.as_str(), *due_ms, *seq))?;
                }
                DeliveryOp::DlqPut { dest, record } => {
                    t.b.dlq
                        .insert((dest.as_str(), next_id), encode_record(record).as_slice())?;
                    next_id += 1;
                    backlogs.on_dlq(&t.b, dest, 1)?;
                }
                DeliveryOp::DlqDel { dest, id } => {
                    if t.b.dlq.remove((dest.as_str(), *id))?.is_some() {
                        backlogs.on_dlq(&t.b, dest, -1)?;
                    }
                }
                DeliveryOp::State { dest, record } => {
                    state.insert(dest.as_str(), encode_record(record).as_slice())?;
                }
                DeliveryOp::SettledAbove { dest, seqs } => {
                    backlogs.on_settled_above(&mut t.b, dest, seqs)?;
                    for seq in seqs {
                        t.b.settled.insert((dest.as_str(), *seq), ())?;
                    }
                }
                DeliveryOp::SettledBelow { dest, below } => {
                    t.b.settled
                        .retain_in((dest.as_str(), 0u64)..(dest.as_str(), *below), |_, ()| {
                            false
                        })?;
                }
                DeliveryOp::Outcome { dest, slot, record } => {
                    outcomes.insert((dest.as_str(), *slot), encode_record(record).as_slice())?;
                }
                DeliveryOp::OutcomesClear { dest } => {
                    outcomes
                        .retain_in((dest.as_str(), 0u32)..=(dest.as_str(), u32::MAX), |_, _| {
                            false
                        })?;
                }
                DeliveryOp::Purge { dest } => {
                    let d = dest.as_str();
                    backlogs.on_purge(&mut t.b, d)?;
                    t.b.cursors.remove(d)?;
                    state.remove(d)?;
                    retries.retain_in((d, 0u64, 0u64)..=(d, u64::MAX, u64::MAX), |_, _| false)?;
                    t.b.dlq.retain_in((d, 0u64)..=(d, u64::MAX), |_, _| false)?;
                    t.b.settled
                        .retain_in((d, 0u64)..=(d, u64::MAX), |_, ()| false)?;
                    outcomes.retain_in((d, 0u32)..=(d, u32::MAX), |_, _| false)?;
                    requests.retain_in((d, 0u64)..=(d, u64::MAX), |_, _| false)?;
                    super::series::purge(&mut series, d)?;
                }
                DeliveryOp::AutoPauseEvent { row } => {
                    let next = ap_events.last()?.map_or(1, |(k, _)| k.value() + 1);
                    let mut row = row.clone();
                    row["id"] = serde_json::Value::String(format!("ap_{next:012}"));
                    let mut bytes = vec![1u8];
                    bytes.extend_from_slice(&serde_json::to_vec(&row).unwrap_or_default());
                    ap_events.insert(next, bytes.as_slice())?;
                }
                DeliveryOp::Audit(entry) => {
                    crate::audit::append(txn, entry)?;
                }
                DeliveryOp::History { dest, batch } => {
                    use super::watch::Settled;
                    for e in &batch.entries {
                        let kind = match (&e.fate, e.replayed) {
                            (HistoryFate::Delivered, false) => Settled::Delivered,
                            (HistoryFate::Delivered, true) => Settled::Recovered,
                            // Dead-lettered again after a replay: counted the first time.
                            (HistoryFate::DeadLettered { class, .. }, false) => {
                                Settled::DeadLettered(class.name())
                            }
                            _ => continue,
                        };
                        tally.settled(dest, e.accepted_ms, kind);
                    }
                    let puts = batch.entries.iter().filter(|e| e.dlq_put).count() as u64;
                    let row = match &mut hist_row {
                        Some(n) => n,
                        None => hist_row.insert(meta_u64(&meta, HISTORY_NEXT_ROW)?.unwrap_or(1)),
                    };
                    history::write(&mut hist, dest, batch, next_id - puts..next_id, row)?;
                }
                DeliveryOp::TrimHistory { cutoff_ms } => {
                    // The table before runs: opened only here, where it is trimmed.
                    let mut legacy = txn.open_table(history::LEGACY)?;
                    let n = history::trim(&mut hist, &mut legacy, *cutoff_ms, history::TRIM_SLICE)?;
                    if n > 0 {
                        tracing::debug!(rows = n, "history trimmed");
                    }
                }
                DeliveryOp::TrimLog { workspace, below } => {
                    // Done a slice per commit ([`super::trim::slice`]), so trimming a large
                    // log never stalls the commits that answer requests.
                    let goal = trims.entry(workspace.clone()).or_insert(0);
                    *goal = (*goal).max(*below);
                }
                DeliveryOp::RequestLog { dest, keep, record } => {
                    append_request(&mut requests, dest, *keep, record)?;
                }
                DeliveryOp::Sample { dest, sample } => {
                    super::series::append(&mut series, dest, sample)?;
                }
            }
        }
    }
    if next_id != start_id {
        meta.insert("dlq_next_id", next_id.to_le_bytes().as_slice())?;
    }
    if let Some(n) = hist_row {
        meta.insert(HISTORY_NEXT_ROW, n.to_le_bytes().as_slice())?;
    }
    Ok(())
}

/// Appends a request to `dest`'s request log as its next number and deletes the rows
/// older than the newest `keep` (a range at the low end of its keys: few rows, as each
/// append trims).
fn append_request(
    table: &mut redb::Table<(&str, u64), &[u8]>,
    dest: &str,
    keep: u32,
    record: &super::codec::RequestRecord,
) -> Result<(), redb::Error> {
    if keep == 0 {
        return Ok(());
    }
    let n = table
        .range((dest, 0u64)..=(dest, u64::MAX))?
        .next_back()
        .transpose()?
        .map_or(1, |(k, _)| k.value().1 + 1);
    table.insert((dest, n), encode_record(record).as_slice())?;
    let below = n.saturating_sub(u64::from(keep) - 1);
    if below > 1 {
        table.retain_in((dest, 0u64)..(dest, below), |_, _| false)?;
    }
    Ok(())
}

/// Opens the database, retrying with backoff; answers writes `Unavailable` meanwhile.
/// Returns None when asked to shut down first.
fn open_until_ok(
    w: &mut Writer,
    opts: &mut StoreOptions,
    rx: &Receiver<Cmd>,
    shared: &Shared,
    status: u8,
) -> Option<Arc<Database>> {
    shared.status.store(status, Ordering::SeqCst);
    let mut backoff = Duration::from_millis(50);
    loop {
        let opened = open(opts).and_then(|(db, maint, (epoch, applied))| {
            w.reset(maint);
            let db = Arc::new(db);
            match w.recover(&db, opts, epoch, applied) {
                Ok(recovered) => Ok((db, recovered)),
                Err(e) => {
                    // A merge the replay started reads through the database too: it
                    // must let go before the next attempt opens the file.
                    w.maint.close();
                    Err(e)
                }
            }
        });
        match opened {
            Ok((db, recovered)) => {
                (opts.on_open)(recovered);
                shared.db.store(Some(db.clone()));
                shared.status.store(READY, Ordering::SeqCst);
                info!(path = %opts.path.display(), "store open");
                return Some(db);
            }
            Err(e) => {
                warn!(error = %e, path = %opts.path.display(), "cannot open the store; retrying");
            }
        }
        // Wait out the backoff while answering whatever arrives.
        let deadline = std::time::Instant::now() + backoff;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(Cmd::Ingest(_, reply) | Cmd::Delivery(_, reply)) => {
                    let _ = reply.send(Err(StoreError::Unavailable(
                        "the store is being reopened".into(),
                    )));
                }
                Ok(Cmd::Shutdown(done)) => {
                    shared.status.store(CLOSED, Ordering::SeqCst);
                    let _ = done.send(());
                    return None;
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Creates each table it visits (opening a table in a write transaction creates it).
struct Create<'t>(&'t redb::WriteTransaction);

impl super::TableVisitor for Create<'_> {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        def: redb::TableDefinition<K, V>,
    ) -> Result<(), redb::Error> {
        self.0.open_table(def)?;
        Ok(())
    }
}

/// The mode of a store file sluice creates: the owner alone reads and writes it.
pub const STORE_MODE: u32 = 0o600;

/// Creates the store file, mode 0600 whatever the umask, when there is none yet; an
/// existing file keeps the mode its operator gave it.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(STORE_MODE)
        .open(path)
    {
        Ok(f) => f.set_permissions(std::fs::Permissions::from_mode(STORE_MODE)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens the file (creating it and its tables), checks and upgrades its schema and
/// loads the dedup index. Returns the database, the index's upkeep, and its journal
/// epoch and the number of the last journal record its durable state holds.
fn open(opts: &StoreOptions) -> Result<(Database, Maintainer, (u64, u64)), anyhow::Error> {
    if let Some(dir) = opts.path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    create_private(&opts.path)?;
    let mut builder = Database::builder();
    builder.set_cache_size(opts.cache_size);
    // redb reports repair progress several times: one line per open.
    let said = std::sync::atomic::AtomicBool::new(false);
    builder.set_repair_callback(move |_| {
        if !said.swap(true, Ordering::Relaxed) {
            info!("repairing the store after an unclean shutdown");
        }
    });
    let db = match &opts.faults {
        None => builder.create(&opts.path)?,
        Some(switch) => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&opts.path)?;
            let backend = redb::backends::FileBackend::new(file)?;
            builder
                .create_with_backend(super::fault::FaultyBackend::new(backend, switch.clone()))?
        }
    };
    // Create every table, check the schema version, upgrade an older one.
    let txn = db.begin_write()?;
    let (found, journal) = {
        let mut meta = txn.open_table(META)?;
        let found = meta
            .get("schema_version")?
            .map(|v| v.value().to_vec())
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0xff; 4])));
        if let Some(v) = found
            && v > SCHEMA_VERSION
        {
            anyhow::bail!(
                "the store was written by a newer sluice (schema {v}, this build knows {SCHEMA_VERSION}); upgrade sluice"
            );
        }
        meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
        // A real durable write: the store only reports ready once it can commit.
        let now = opts.clock.now_ms();
        meta.insert("opened_at_ms", now.to_le_bytes().as_slice())?;
        let epoch = match meta_u64(&meta, journal::EPOCH_KEY)? {
            Some(e) => e,
            None => {
                let e = journal::new_epoch();
                meta.insert(journal::EPOCH_KEY, e.to_le_bytes().as_slice())?;
                e
            }
        };
        let applied = meta_u64(&meta, journal::APPLIED_KEY)?.unwrap_or(0);
        (found, (epoch, applied))
    };
    // Every table exists from the first open on.
    super::visit_tables(&mut Create(&txn))?;
    if found == Some(1) {
        upgrade_dedup_v1(&txn)?;
    }
    let loaded = opts.dedup.load(&txn, &opts.dedup_tuning)?;
    txn.commit()?;
    info!(
        runs = opts.dedup.stats().1,
        memtable = loaded.memtable,
        "dedup index loaded"
    );
    let maint = Maintainer::new(&loaded, opts.dedup_tuning);
    Ok((db, maint, journal))
}

/// Schema 1 kept the dedup window as `(accept ms, first digest) → workspace, digests`:
/// its rows become `dedup_log` rows in accept order (the memtable rebuilds from them
/// and seals them into runs), and the old table goes.
fn upgrade_dedup_v1(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let old: redb::TableDefinition<(u64, u128), &[u8]> =
        redb::TableDefinition::new(super::DEDUP_V1_TABLE);
    let exists = txn
        .list_tables()?
        .any(|t| t.name() == super::DEDUP_V1_TABLE);
    if !exists {
        return Ok(());
    }
    let mut n = 0u64;
    {
        let table = txn.open_table(old)?;
        let mut log = txn.open_table(DEDUP_LOG)?;
        let mut seq = log.last()?.map_or(1, |(k, _)| k.value() + 1);
        for row in table.iter()? {
            let (k, v) = row?;
            let ms = k.value().0 as i64;
            let Ok((_, digests)) = super::log::decode_dedup(v.value()) else {
                continue;
            };
            n += digests.len() as u64;
            log.insert(
                seq,
                super::dedup::encode_log(ms, super::dedup::NO_SEQ, &digests).as_slice(),
            )?;
            seq += 1;
        }
    }
    txn.delete_table(old)?;
    info!(
        digests = n,
        "store upgraded from schema 1: dedup index moved"
    );
    Ok(())
}
