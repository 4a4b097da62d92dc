//! The store: one redb file holding everything sluice must not lose.
//!
//! # Tables
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `&str` name | raw bytes; `schema_version` → u32 LE, `dlq_next_id` → u64 LE, `journal_epoch` and `journal_applied` → u64 LE ([`journal`]) |
//! | `events` | `(workspace: &str, first seq: u64)` | a chunk of the events one request committed ([`log`]): each a [`codec::StoredEvent`] (version byte + postcard). Written once per event whatever the number of destinations; a workspace's events are one contiguous key range, read without touching another workspace's. `seq` starts at 1 per workspace. |
//! | `dedup` | `(accepted_ms: u64, first digest: u128)` | the workspace and the digests of one request's accepted events ([`log`]). Time-ordered, so hot-path inserts append at the right edge of the B-tree instead of dirtying a random page per insert; expired entries are a prefix, trimmed by range. A digest is the first 128 bits of SHA-256 over the length-prefixed `workspace`, `event_name`, `event_id`. The exact in-memory index of the window ([`crate::ingest::intake`]) is rebuilt from this table at every open. |
//! | `monthly` | `(workspace: &str, yyyymm: u32)` | accepted events that calendar month (UTC) |
//! | `cursors` | destination id | the next log sequence to read: every event of the destination's workspace below it has its fate committed (delivered, retry scheduled, dead-lettered, or not routed here). Moves only over a finished prefix; what is in flight lives in memory, so a crash re-sends at most that. |
//! | `settled` | `(destination, seq)` | events settled above the cursor while a lower one was still in flight; skipped when the log is read again after a restart, deleted as the cursor passes them |
//! | `retries` | `(destination, due_ms: u64, seq: u64)` | [`codec::RetryRecord`]: retry count, first seen, last error; a replayed DLQ entry carries its own copy of the event |
//! | `dlq` | `(destination, id: u64)` | [`codec::DlqRecord`]: a copy of the event, class, last status and response, retries, times |
//! | `dest_state` | destination id | [`codec::DestState`]: active, paused or probing; since when, why, auto-clear time, evaluation window, ring position |
//! | `outcomes` | `(destination, slot: u32)` | [`codec::OutcomeRecord`]: one attempt of the ring buffer (`slot = n % sample`), so error rates survive restarts |
//! | `auto_pause_events` | `seq: u64` | one `auto_pause_events` row as JSON (version byte + JSON) |
//! | `request_log` | `(destination, n: u64)` | [`codec::RequestRecord`]: one request the destination sent (`n` counts its requests from 1), the last `storage.request_log` of them; written and trimmed by the settlement commits |
//! | `audit` | `seq: u64` | one audit chain record ([`crate::audit`]) |
//!
//! # Writes
//!
//! redb has one writer at a time and blocks, so every write goes through one thread
//! (`writer`), fed by one queue. The thread takes everything queued, applies it in one
//! write transaction and commits once with `Durability::Immediate` (one fsync for many
//! requests: group commit); each request is answered when the commit that holds it
//! returns. A small group of ingest alone is made durable by a record of the ingest
//! [`journal`] instead, synced while the group is applied, and committed with
//! `Durability::None`; a durable commit at least every 250 ms covers those commits,
//! and every open commits again what the journal holds beyond the file. After an I/O error redb refuses further use until the database is reopened:
//! the writer answers `Unavailable` and reopens it by itself, with backoff, and then
//! rebuilds the in-memory indexes from what the file really holds.
//!
//! Opening (with a repair after an unclean stop, which can be long) happens on the writer
//! thread too, so the process listens before the store is ready; until then the store
//! reports not ready and every write answers `Unavailable`.

pub mod backlog;
pub mod backup;
pub mod codec;
pub mod dedup;
pub mod fault;
pub mod history;
pub mod journal;
pub mod log;
pub mod series;
mod trim;
pub mod view;
pub mod watch;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use redb::{ReadableDatabase, TableDefinition};
use tokio::sync::oneshot;

pub use fault::FaultSwitch;
pub use view::View;

use crate::clock::SharedClock;

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// The dedup table of schema 1 (`(accepted ms, first digest) → workspace, digests`),
/// moved into `dedup_log` when such a store is opened.
const DEDUP_V1_TABLE: &str = "dedup";
pub const MONTHLY: TableDefinition<(&str, u32), u64> = TableDefinition::new("monthly");
pub const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
pub const RETRIES: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("retries");
pub const DLQ: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dlq");
pub const DEST_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("dest_state");
pub const SETTLED: TableDefinition<(&str, u64), ()> = TableDefinition::new("settled");
pub const OUTCOMES: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("outcomes");
pub const AUTO_PAUSE_EVENTS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("auto_pause_events");
pub const REQUEST_LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("request_log");

/// Something done to every table of the store, whatever its key and value types.
pub trait TableVisitor {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<(), redb::Error>;
}

/// Every table of the store, once: what opening creates and what a backup copies.
pub fn visit_tables(v: &mut impl TableVisitor) -> Result<(), redb::Error> {
    v.visit(META)?;
    v.visit(EVENTS)?;
    v.visit(dedup::DEDUP_LOG)?;
    v.visit(dedup::DEDUP_META)?;
    v.visit(dedup::DEDUP_FILTERS)?;
    v.visit(dedup::runs::DEDUP_RUNS)?;
    v.visit(MONTHLY)?;
    v.visit(CURSORS)?;
    v.visit(RETRIES)?;
    v.visit(DLQ)?;
    v.visit(DEST_STATE)?;
    v.visit(OUTCOMES)?;
    v.visit(SETTLED)?;
    v.visit(AUTO_PAUSE_EVENTS)?;
    v.visit(REQUEST_LOG)?;
    v.visit(backlog::BACKLOG)?;
    v.visit(backlog::BACKLOG_SECONDS)?;
    v.visit(history::RUNS)?;
    v.visit(history::LEGACY)?;
    v.visit(history::EVENT_NAMES)?;
    v.visit(series::SERIES)?;
    v.visit(watch::SOURCE_COUNTS)?;
    v.visit(watch::ACCURACY)?;
    v.visit(crate::audit::AUDIT)
}

/// The schema this build writes. A file with a newer version is refused; an older one
/// is upgraded when opened (2: the dedup index became a log plus sorted runs; 3: new
/// runs' filters are binary fuse filters, which a build of schema 2 cannot read — runs
/// written before keep their Bloom filters, so opening a schema-2 store changes nothing
/// but the version).
pub const SCHEMA_VERSION: u32 = 3;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is not available: {0}")]
    Unavailable(String),
}

/// What the writer found in the file at (re)open; the intake takes its counters from
/// it (the dedup index is loaded by the writer itself, [`dedup`]).
#[derive(Debug, Default)]
pub struct Recovered {
    /// `(workspace, yyyymm, count)`.
    pub monthly: Vec<(String, u32, u64)>,
}

/// A group of events of one workspace, already encoded, to commit together.
pub struct IngestBatch {
    pub workspace: Arc<str>,
    pub month: u32,
    pub accepted_ms: i64,
    /// Dedup digests, in event order.
    pub digests: Vec<u128>,
    /// What each event contributes to its destinations' backlog summaries.
    pub metas: Vec<backlog::EventMeta>,
    /// The encoded events ([`log::encode_chunk`]).
    pub chunk: Vec<u8>,
    /// Runs on the writer thread once the commit's outcome is known (true: durable),
    /// before the request is answered; a client hanging up cannot skip it.
    pub on_done: Option<Box<dyn FnOnce(bool) + Send>>,
}

impl Drop for IngestBatch {
    /// A batch that never reached a commit (store closed, or being reopened) settles as
    /// failed, so its reservations are released.
    fn drop(&mut self) {
        if let Some(f) = self.on_done.take() {
            f(false);
        }
    }
}

pub struct StoreOptions {
    pub path: PathBuf,
    /// The dedup index the writer keeps (shared with the intake; it knows the window).
    pub dedup: Arc<dedup::DedupIndex>,
    pub dedup_tuning: dedup::Tuning,
    /// Destinations' routing, for their backlog summaries (set by the delivery engine).
    pub routing: backlog::SharedRouting,
    /// redb's page cache, bytes (`storage.cache_size`).
    pub cache_size: usize,
    pub clock: SharedClock,
    /// Test hook: wraps the file backend so I/O can be made to fail.
    pub faults: Option<Arc<FaultSwitch>>,
    /// Called on the writer thread after every successful (re)open, before the store
    /// reports ready.
    pub on_open: Box<dyn FnMut(Recovered) + Send>,
}

const OPENING: u8 = 0;
const READY: u8 = 1;
const RECOVERING: u8 = 2;
const CLOSED: u8 = 3;

/// One change to delivery state. A list of them commits atomically. Records travel
/// typed; the writer encodes them.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOp {
    Cursor {
        dest: String,
        next_seq: u64,
    },
    RetryPut {
        dest: String,
        due_ms: u64,
        seq: u64,
        record: codec::RetryRecord,
    },
    RetryDel {
        dest: String,
        due_ms: u64,
        seq: u64,
    },
    /// The writer assigns the id (a global counter).
    DlqPut {
        dest: String,
        record: codec::DlqRecord,
    },
    DlqDel {
        dest: String,
        id: u64,
    },
    State {
        dest: String,
        record: codec::DestState,
    },
    /// Events settled above the destination's cursor (out of order).
    SettledAbove {
        dest: String,
        seqs: Vec<u64>,
    },
    /// Forgets settled marks below the destination's new cursor.
    SettledBelow {
        dest: String,
        below: u64,
    },
    /// One attempt into a destination's outcome ring.
    Outcome {
        dest: String,
        slot: u32,
        record: codec::OutcomeRecord,
    },
    /// Clears a destination's outcome ring (its `sample` changed).
    OutcomesClear {
        dest: String,
    },
    /// Drops everything a (removed) destination holds: position, retries, DLQ, settled
    /// marks, health state, outcome ring, request log and time series. Its timeline rows and audit
    /// events stay.
    Purge {
        dest: String,
    },
    /// Appends an `auto_pause_events` row; the writer assigns `id` (`ap_…`).
    AutoPauseEvent {
        row: serde_json::Value,
    },
    /// Appends an audit event to the chain.
    Audit(crate::audit::NewAuditEvent),
    /// The fates `dest` settled in this commit ([`history`]). Its entries flagged
    /// `dlq_put` take, in order, the ids the writer gave the op list's last `DlqPut`s.
    History {
        dest: String,
        batch: history::Batch,
    },
    /// Deletes history rows of events accepted at or before `cutoff_ms` (a slice).
    TrimHistory {
        cutoff_ms: i64,
    },
    /// Deletes the workspace's log chunks that lie wholly below `below`.
    TrimLog {
        workspace: String,
        below: u64,
    },
    /// Appends one request to a destination's request log; the writer numbers it (the
    /// destination's last number + 1) and deletes what falls beyond the newest `keep`.
    RequestLog {
        dest: String,
        keep: u32,
        record: codec::RequestRecord,
    },
    /// Appends a sample to a destination's time series and trims it to
    /// [`series::KEEP_MS`] (the console's charts, issue 16).
    Sample {
        dest: String,
        sample: series::Sample,
    },
}

enum Cmd {
    Ingest(IngestBatch, oneshot::Sender<Result<(), StoreError>>),
    /// Delivery bookkeeping, committed durably together with whatever else is queued.
    Delivery(Vec<DeliveryOp>, oneshot::Sender<Result<(), StoreError>>),
    Shutdown(oneshot::Sender<()>),
}

struct Shared {
    status: AtomicU8,
    db: arc_swap::ArcSwapOption<redb::Database>,
    space: SpaceCheck,
}

/// Free space under this on the store's filesystem: not ready (a commit could fail
/// half way through a burst; new events are refused with 503 before that happens).
pub const MIN_FREE_BYTES: u64 = 32 << 20;

/// Whether the store's filesystem has room, checked at most once a second.
struct SpaceCheck {
    dir: PathBuf,
    faults: Option<Arc<FaultSwitch>>,
    checked: Mutex<Option<(std::time::Instant, bool)>>,
}

impl SpaceCheck {
    fn has_room(&self) -> bool {
        let mut c = self.checked.lock().expect("space check lock");
        if let Some((at, ok)) = *c
            && at.elapsed() < std::time::Duration::from_secs(1)
        {
            return ok;
        }
        let free = match self.faults.as_ref().and_then(|f| f.free_bytes()) {
            Some(b) => Some(b),
            None => rustix::fs::statvfs(&self.dir)
                .ok()
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize)),
        };
        // A filesystem that cannot say is taken to have room.
        let ok = free.is_none_or(|b| b >= MIN_FREE_BYTES);
        if !ok && c.is_none_or(|(_, was)| was) {
            tracing::warn!(
                path = %self.dir.display(),
                free_bytes = free.unwrap_or(0),
                "the store's disk is nearly full: not ready, new events are refused until space is freed"
            );
        }
        *c = Some((std::time::Instant::now(), ok));
        ok
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std::sync::mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Store {
    /// Starts the writer thread, which opens (and if needed repairs) the file in the
    /// background. Returns at once.
    pub fn start(opts: StoreOptions) -> Store {
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = match opts.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let shared = Arc::new(Shared {
            status: AtomicU8::new(OPENING),
            db: arc_swap::ArcSwapOption::empty(),
            space: SpaceCheck {
                dir,
                faults: opts.faults.clone(),
                checked: Mutex::new(None),
            },
        });
        let s2 = shared.clone();
        let handle = std::thread::Builder::new()
            .name("sluice-writer".into())
            .spawn(move || writer::run(opts, rx, s2))
            .expect("spawn writer thread");
        Store {
            tx,
            shared,
            thread: Arc::new(Mutex::new(Some(handle))),
        }
    }

    /// The store is open, its last commit succeeded, and its disk has room for more
    /// ([`MIN_FREE_BYTES`]): a durable write works.
    pub fn is_ready(&self) -> bool {
        self.is_open() && self.shared.space.has_room()
    }

    /// The store is open and its last commit succeeded (delivery goes on while the
    /// disk is nearly full: it frees space).
    pub fn is_open(&self) -> bool {
        self.shared.status.load(Ordering::SeqCst) == READY
    }

    /// Commits a batch durably (fsync) together with whatever else is queued.
    pub async fn ingest(&self, batch: IngestBatch) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Ingest(batch, tx))
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the writer stopped".into())))
    }

    /// Commits delivery bookkeeping atomically (see [`DeliveryOp`]).
    pub async fn delivery(&self, ops: Vec<DeliveryOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Delivery(ops, tx))
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the writer stopped".into())))
    }

    /// Runs a commit with nothing queued, so the dedup index's upkeep (seals at an
    /// epoch's end, expiry) goes on while no event arrives. Housekeeping calls it.
    pub async fn maintain(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Delivery(Vec::new(), tx))
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the writer stopped".into())))
    }

    /// A consistent snapshot of the store to read with typed queries.
    pub fn view(&self) -> Result<View, StoreError> {
        let db = self
            .shared
            .db
            .load_full()
            .ok_or_else(|| StoreError::Unavailable("the store is not open".into()))?;
        let txn = db
            .begin_read()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(View::new(txn))
    }

    /// Runs `f` on a read transaction of the open database (for the modules that own
    /// their tables: the audit chain, backups; everything else reads through [`View`]).
    pub fn read<R>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<R, redb::Error>,
    ) -> Result<R, StoreError> {
        let db = self
            .shared
            .db
            .load_full()
            .ok_or_else(|| StoreError::Unavailable("the store is not open".into()))?;
        let txn = db
            .begin_read()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        f(&txn).map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Finishes queued writes, closes the file and stops the writer thread.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// The dedup digest of an event key: 128 bits of SHA-256, collision odds negligible.
pub fn dedup_digest(workspace: &str, event_name: &str, event_id: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [workspace, event_name, event_id] {
        h.update((part.len() as u32).to_le_bytes());
        h.update(part.as_bytes());
    }
    let out = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&out[..16]);
    u128::from_be_bytes(first)
}
