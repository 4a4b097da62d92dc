//! The dedup index: every accepted `(workspace, event_name, event_id)` digest inside
//! `storage.dedup_window`, exactly, in memory that does not grow with the window.
//!
//! # Layout
//!
//! - **Memtable** (memory): the digests accepted since the last seal, exact
//!   (`digest → `[`Mark`]: accept ms and the event's log sequence, which the event
//!   trace follows). Their durable copy is `dedup_log`, appended by every
//!   ingest commit (key: a commit sequence, value: accept ms and the request's
//!   digests), so a restart rebuilds only the memtable, never the window.
//! - **Runs** (disk, [`runs`]): when the memtable holds [`Tuning::seal_at`] digests, or
//!   its epoch ends, the writer freezes it and writes it as a sorted run, a few
//!   thousand B-tree rows appended in slices across commits, then deletes the
//!   `dedup_log` rows it covers. Each run has a filter ([`filter`]: a binary fuse
//!   filter since format 3, [`fuse`]; a blocked Bloom filter, [`bloom`],
//!   in runs written before) kept in memory and persisted in `dedup_filters`, so
//!   reopening a store of any size loads filters, not entries.
//! - **Epochs**: runs never mix epochs ([`Tuning::epoch_ms`], 12 h by default). Inside
//!   the open epoch, [`Tuning::fan_in`] runs of one level merge into one of the next;
//!   a closed epoch merges its smallest runs into one while they fit. No merge writes
//!   more than [`Tuning::max_run`] digests, which bounds the memory a merge holds (its
//!   new filter beside its sources'). A run is dropped whole once its newest entry
//!   left the window: expiry is a range delete, and the number of filters a look-up
//!   probes stays small (about one per closed epoch plus a few).
//!
//! # Exactness
//!
//! A look-up asks the memtables (exact), then each run's filter; a "maybe" is checked
//! on disk in that run. So "duplicate" is only ever said of a digest stored with an
//! accept time inside the window: never a false duplicate. A digest is in the index
//! from the moment its commit returns (the memtable insert runs on the writer thread
//! before the request is answered) until its run expires, with these hand-overs:
//! memtable → frozen memtable (checked after the live one) → published run (published
//! after the commit that completed it, before the frozen memtable is dropped). A
//! look-up takes its list of runs before it opens its read transaction, and a run's
//! rows are deleted only when no look-up still holds it (the writer keeps a `Weak`
//! and waits for its strong count to reach 0), so every run a look-up probes is whole
//! in its snapshot, and its filter is freed with the last such look-up. A look-up can
//! be split ([`DedupIndex::lookup_runs`], then [`DedupIndex::lookup_rest`]): the second
//! half reads the memtables and the runs published since the first took its list, so
//! a digest committed between the halves is still found.

pub mod bloom;
pub mod feed;
pub mod filter;
pub mod fuse;
pub mod maintain;
pub mod runs;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::StoreError;
use bloom::Bloom;
use filter::Filter;

/// `commit sequence → [LOG_V2][accept ms: i64 LE][first event seq: u64 LE][digest: 16
/// bytes BE]*` (the request's events are consecutive in its workspace's log, in digest
/// order). `LOG_V1` rows (no sequence) are still read.
pub const DEDUP_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("dedup_log");
/// `(run id, row) → a run's filter` in rows of at most [`FILTER_ROW_BYTES`] (row 0:
/// the version and the filter's shape; see [`filter::Filter::write_rows`]): written
/// and read row by row, so no whole copy of a large filter is made (a closed epoch's
/// run holds tens of millions of digests).
pub const DEDUP_FILTERS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("dedup_filters");

/// Bytes of a `dedup_filters` row: 1 MiB.
pub const FILTER_ROW_BYTES: usize = 1 << 20;

/// Deletes run `run`'s filter rows.
pub fn delete_filter(t: &mut redb::Table<(u64, u32), &[u8]>, run: u64) -> Result<(), redb::Error> {
    Ok(t.retain_in((run, 0u32)..=(run, u32::MAX), |_, _| false)?)
}

/// Reads run `run`'s filter rows; None when there are none.
fn read_filter<T: ReadableTable<(u64, u32), &'static [u8]>>(
    t: &T,
    run: u64,
) -> Result<Option<Filter>, redb::Error> {
    let mut rows = t.range((run, 0u32)..=(run, u32::MAX))?;
    let Some(head) = rows.next() else {
        return Ok(None);
    };
    let bad = || redb::Error::Corrupted(format!("dedup run {run}: unreadable filter"));
    let mut rd = Filter::reader(head?.1.value()).ok_or_else(bad)?;
    for row in rows {
        rd.push(row?.1.value()).ok_or_else(bad)?;
    }
    rd.finish().ok_or_else(bad).map(Some)
}

/// `run id → RunMeta` (version byte + postcard).
pub const DEDUP_META: TableDefinition<u64, &[u8]> = TableDefinition::new("dedup_meta");

const LOG_V1: u8 = 1;
const LOG_V2: u8 = 2;
const META_V1: u8 = 1;

/// Sizes and periods of the index (tests make them small).
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Digests in the memtable that trigger a seal. The memtable gets room for this
    /// plus [`Tuning::room`]'s margin at once.
    pub seal_at: usize,
    /// Length of an epoch (ms).
    pub epoch_ms: i64,
    /// Runs of one level that merge into one of the next.
    pub fan_in: usize,
    /// The most digests a merge writes into one run ([`MAX_RUN`] by default): the new
    /// run's filter and its sources' are in memory together until it is live, so this
    /// bounds that peak. A level whose merge would pass it keeps its runs, and a closed
    /// epoch merges its smallest runs while they fit (not always into one run).
    pub max_run: u64,
    /// Entries written (sealed, merged or deleted) per commit by maintenance.
    pub slice: usize,
}

/// The default [`Tuning::seal_at`]: 440 Ki digests, so that with its margin the
/// memtable's hash table has 512 Ki slots (a table holds 7/8 of its slots; entries are
/// 32 bytes): 16.5 MB. At 512 Ki digests the table had 1 Mi slots, 33 MB, half of them
/// never used.
pub const SEAL_AT: usize = 440 * 1024;

/// The default [`Tuning::max_run`]: 32 Mi digests, a filter of about 50 MB. The
/// fourth level of an epoch (four runs of 7 Mi: about 28.9 M digests) fits; a fifth
/// would be 115 M digests, and a closed epoch of 100 M merged whole built a 158 MB
/// filter beside its sources' 165 MB (RSS 338 → 482 MiB in the soak's drain).
pub const MAX_RUN: u64 = 32 * 1024 * 1024;

impl Tuning {
    /// The digests the memtable gets room for at once: [`Tuning::seal_at`] and 1/64
    /// more, for the digests of the commits that land before the seal starts (a seal
    /// starts at the commit after the one that filled the memtable, and waits while the
    /// last seal's filter is written). Past that the table grows, rehashing.
    pub fn room(&self) -> usize {
        self.seal_at + self.seal_at / 64
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            seal_at: SEAL_AT,
            epoch_ms: 12 * 3_600_000,
            fan_in: 4,
            slice: 64 * 1024,
            max_run: MAX_RUN,
        }
    }
}

/// Digests are already uniform: hash them by their low 64 bits.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

pub type DigestMap<V> = HashMap<u128, V, BuildHasherDefault<DigestHasher>>;

/// What the index keeps of one accepted digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// When it was accepted (ms).
    pub ms: i64,
    /// The event's sequence in its workspace's log ([`NO_SEQ`] for entries written
    /// before the index kept it).
    pub seq: u64,
}

/// The sequence of an entry that predates sequences in the index.
pub const NO_SEQ: u64 = u64::MAX;

/// Digests with their accept times, and the epoch of the first one.
#[derive(Debug, Default)]
pub struct Memtable {
    pub map: DigestMap<Mark>,
    pub epoch: Option<i64>,
    /// The last commit sequence whose digests are in.
    pub through_log: u64,
}

/// What a run's record in `dedup_meta` says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Rows being written; not used for look-ups (garbage after a crash).
    Building,
    /// Published: look-ups probe it.
    Live,
    /// Being deleted.
    Dying,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub state: RunState,
    pub epoch: i64,
    pub level: u32,
    pub min_ms: i64,
    pub max_ms: i64,
    pub count: u64,
    /// The last `dedup_log` sequence this run (or the runs merged into it) covers.
    pub through_log: u64,
    /// The encoded filter of a run written before filters moved to `dedup_filters`
    /// (empty for newer runs: their filter is in that table).
    pub filter: serde_bytes::ByteBuf,
}

pub fn encode_meta(m: &RunMeta) -> Vec<u8> {
    let mut out = vec![META_V1];
    postcard::to_io(m, &mut out).expect("postcard to Vec");
    out
}

pub fn decode_meta(b: &[u8]) -> Option<RunMeta> {
    match b.split_first() {
        Some((&META_V1, rest)) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
}

pub fn encode_log(accepted_ms: i64, first_seq: u64, digests: &[u128]) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + digests.len() * 16);
    out.push(LOG_V2);
    out.extend_from_slice(&accepted_ms.to_le_bytes());
    out.extend_from_slice(&first_seq.to_le_bytes());
    for d in digests {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}

/// A `dedup_log` row: accept ms, the first event's sequence ([`NO_SEQ`] in a V1 row)
/// and the digests.
pub fn decode_log(b: &[u8]) -> Option<(i64, u64, Vec<u128>)> {
    let (head, first_seq) = match b.first() {
        Some(&LOG_V1) => (9, NO_SEQ),
        Some(&LOG_V2) if b.len() >= 17 => (17, u64::from_le_bytes(b[9..17].try_into().ok()?)),
        _ => return None,
    };
    if b.len() < head || !(b.len() - head).is_multiple_of(16) {
        return None;
    }
    let ms = i64::from_le_bytes(b[1..9].try_into().ok()?);
    let ds = b[head..]
        .chunks_exact(16)
        .map(|c| u128::from_be_bytes(c.try_into().expect("16 bytes")))
        .collect();
    Some((ms, first_seq, ds))
}

/// The mark of the `i`-th digest of a request whose first event is `first_seq`.
pub fn nth_mark(ms: i64, first_seq: u64, i: usize) -> Mark {
    Mark {
        ms,
        seq: if first_seq == NO_SEQ {
            NO_SEQ
        } else {
            first_seq + i as u64
        },
    }
}

/// A live run as look-ups see it.
#[derive(Debug)]
pub struct Run {
    pub id: u64,
    pub meta: RunMeta,
    pub filter: Filter,
}

/// The memtable being sealed. Its map until the writer has sorted it for its run, then
/// the sorted entries with the run's filter in front of them: half the memory of the
/// map (32 bytes an entry against 66 in a map at seal size), which goes. A frozen
/// memtable lives until its run is published, while the run's rows and filter are
/// written over many commits: the map beside the sorted copy was about 50 MB through
/// every seal of 512 Ki digests, where the sorted entries alone were about 16 MB.
#[derive(Debug)]
enum Frozen {
    Map(Memtable),
    Sorted {
        entries: Arc<Vec<(u128, Mark)>>,
        filter: Filter,
    },
}

impl Frozen {
    fn get(&self, d: u128) -> Option<Mark> {
        match self {
            Frozen::Map(m) => m.map.get(&d).copied(),
            Frozen::Sorted { entries, filter } => {
                if !filter.may_contain(d) {
                    return None;
                }
                entries
                    .binary_search_by_key(&d, |e| e.0)
                    .ok()
                    .map(|i| entries[i].1)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Frozen::Map(m) => m.map.len(),
            Frozen::Sorted { entries, .. } => entries.len(),
        }
    }
}

/// A frozen memtable sorted for its run ([`DedupIndex::freeze_sorted`]).
struct Sealing {
    /// Shared with the frozen memtable, which look-ups ask until the run is published.
    sorted: Arc<Vec<(u128, Mark)>>,
    filter: Filter,
    epoch: Option<i64>,
    /// The last commit sequence whose digests are in.
    through_log: u64,
}

/// The in-memory side of the index, shared by the intake (look-ups) and the writer
/// thread (inserts after each commit, seals, merges, expiry).
#[derive(Debug, Default)]
pub struct DedupIndex {
    active: Mutex<Memtable>,
    frozen: RwLock<Option<Arc<Frozen>>>,
    runs: ArcSwap<Vec<Arc<Run>>>,
    /// The window in force (ms), for expiry; look-ups get theirs from the caller.
    window_ms: AtomicI64,
}

/// What a look-up found for one digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not accepted inside the window.
    No,
    /// Accepted at this time (ms), inside the window.
    At(i64),
}

impl DedupIndex {
    pub fn new(window_ms: i64) -> Arc<Self> {
        let idx = DedupIndex::default();
        idx.window_ms.store(window_ms, Ordering::Relaxed);
        Arc::new(idx)
    }

    /// A reload changed `storage.dedup_window`: runs expire by the new one.
    pub fn set_window(&self, window_ms: i64) {
        self.window_ms.store(window_ms, Ordering::Relaxed);
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms.load(Ordering::Relaxed)
    }

    /// Records digests whose commit just returned (on the writer thread); the events
    /// are `first_seq`, `first_seq + 1`, … of their workspace's log. The memtable gets
    /// room for [`Tuning::room`] digests at once (growing it rehashed every digest in
    /// it, with the lock held, look-ups waiting, on each doubling) — once no frozen
    /// memtable is alive, so the two are never both full size.
    pub fn insert(
        &self,
        digests: &[u128],
        accepted_ms: i64,
        first_seq: u64,
        tuning: &Tuning,
        log_seq: u64,
    ) {
        let mut m = self.active.lock().expect("memtable lock");
        if m.map.is_empty() {
            m.epoch = Some(accepted_ms.div_euclid(tuning.epoch_ms.max(1)));
        }
        if m.map.capacity() < tuning.room() && self.frozen.read().expect("frozen lock").is_none() {
            let room = tuning.room().saturating_sub(m.map.len());
            m.map.reserve(room);
        }
        m.map.reserve(digests.len());
        for (i, d) in digests.iter().enumerate() {
            m.map.insert(*d, nth_mark(accepted_ms, first_seq, i));
        }
        m.through_log = m.through_log.max(log_seq);
    }

    /// Looks up `digests`, answering each with when it was accepted if that is after
    /// `cutoff_ms`. `view` opens a read transaction, asked only for a filter's "maybe".
    pub fn lookup(
        &self,
        digests: &[u128],
        cutoff_ms: i64,
        view: impl FnOnce() -> Result<super::View, StoreError>,
    ) -> Result<Vec<Seen>, StoreError> {
        Ok(seen(self.marks(digests, cutoff_ms, view)?))
    }

    /// The first half of a look-up split in two, for a caller that must not let a
    /// commit slip between its look-up and what it does next (the intake, which
    /// reserves the new digests under its workspace lock): the published runs are asked
    /// here, outside that lock, since their filters' probes and the disk checks of
    /// their "maybe"s are most of a look-up's time; [`DedupIndex::lookup_rest`] then
    /// asks, under the lock, what can have changed since. The same as
    /// [`DedupIndex::probe_runs`], then [`RunsProbe::check`].
    pub fn lookup_runs(
        &self,
        digests: &[u128],
        cutoff_ms: i64,
        view: impl FnOnce() -> Result<super::View, StoreError>,
    ) -> Result<RunsAnswer, StoreError> {
        self.probe_runs(digests, cutoff_ms).check(view)
    }

    /// The published runs' filters asked for `digests`, without reading the disk: what
    /// [`RunsProbe::check`] must then look up in which run. A caller on an async
    /// worker checks the "maybe"s elsewhere ([`RunsProbe::needs_disk`]): a check can
    /// miss the page cache and wait for the disk.
    pub fn probe_runs(&self, digests: &[u128], cutoff_ms: i64) -> RunsProbe {
        let runs = self.runs.load_full();
        let maybes = filter_pass(&runs, digests, cutoff_ms, &vec![None; digests.len()]);
        RunsProbe {
            runs,
            maybes,
            len: digests.len(),
            cutoff_ms,
        }
    }

    /// The second half of [`DedupIndex::lookup_runs`]: the memtables, then the runs
    /// published since it took its list (a seal of digests committed since, or a merge),
    /// then what the runs of that list answered. A digest committed at any time before
    /// this call is in one of them: it enters the memtable before its request's
    /// reservation is released, and moves from there to the frozen memtable, then to a
    /// published run, in the order this reads them.
    pub fn lookup_rest(
        &self,
        digests: &[u128],
        cutoff_ms: i64,
        before: &RunsAnswer,
        view: impl FnOnce() -> Result<super::View, StoreError>,
    ) -> Result<Vec<Seen>, StoreError> {
        let mut out = self.memtables(digests, cutoff_ms);
        let runs = self.runs.load_full();
        if !Arc::ptr_eq(&runs, &before.runs) {
            let new: Vec<Arc<Run>> = runs
                .iter()
                .filter(|r| !before.runs.iter().any(|b| b.id == r.id))
                .cloned()
                .collect();
            probe(&new, digests, cutoff_ms, &mut out, view)?;
        }
        for (o, b) in out.iter_mut().zip(&before.marks) {
            if o.is_none() {
                *o = *b;
            }
        }
        Ok(seen(out))
    }

    /// The marks of `digests` accepted after `cutoff_ms` (the newest where a digest
    /// was accepted again after an earlier acceptance left the window).
    pub fn marks(
        &self,
        digests: &[u128],
        cutoff_ms: i64,
        view: impl FnOnce() -> Result<super::View, StoreError>,
    ) -> Result<Vec<Option<Mark>>, StoreError> {
        let mut out = self.memtables(digests, cutoff_ms);
        // The runs before the read transaction: every run in this list is whole in it.
        let runs = self.runs.load_full();
        probe(&runs, digests, cutoff_ms, &mut out, view)?;
        Ok(out)
    }

    /// What the live memtable, then the frozen one, hold of `digests` inside the window.
    fn memtables(&self, digests: &[u128], cutoff_ms: i64) -> Vec<Option<Mark>> {
        let fresh = |m: Mark| (m.ms > cutoff_ms).then_some(m);
        let mut out: Vec<Option<Mark>> = {
            let m = self.active.lock().expect("memtable lock");
            digests
                .iter()
                .map(|d| m.map.get(d).and_then(|k| fresh(*k)))
                .collect()
        };
        let frozen = self.frozen.read().expect("frozen lock").clone();
        if let Some(f) = frozen {
            for (o, d) in out.iter_mut().zip(digests) {
                if o.is_none() {
                    *o = f.get(*d).and_then(fresh);
                }
            }
        }
        out
    }

    /// Digests in the live memtable.
    pub fn active_len(&self) -> usize {
        self.active.lock().expect("memtable lock").map.len()
    }

    /// The digests of each published run, oldest first (tests and benches).
    pub fn run_sizes(&self) -> Vec<u64> {
        self.runs.load().iter().map(|r| r.meta.count).collect()
    }

    /// Figures for tests and benches: (memtable digests, runs, filter bytes).
    pub fn stats(&self) -> (usize, usize, usize) {
        let runs = self.runs.load();
        (
            self.active_len()
                + self
                    .frozen
                    .read()
                    .expect("frozen lock")
                    .as_ref()
                    .map_or(0, |f| f.len()),
            runs.len(),
            runs.iter().map(|r| r.filter.bytes()).sum(),
        )
    }

    /// Replaces the whole in-memory state with what the file holds (at every open).
    pub fn load(
        &self,
        txn: &redb::WriteTransaction,
        tuning: &Tuning,
    ) -> Result<Loaded, redb::Error> {
        let meta = txn.open_table(DEDUP_META)?;
        let filters = txn.open_table(DEDUP_FILTERS)?;
        let mut live = Vec::new();
        let mut garbage = Vec::new();
        let mut next_run = 1u64;
        let mut through = 0u64;
        for row in meta.iter()? {
            let (k, v) = row?;
            let id = k.value();
            next_run = next_run.max(id + 1);
            match decode_meta(v.value()) {
                Some(m) if m.state == RunState::Live => {
                    through = through.max(m.through_log);
                    let filter = if m.filter.is_empty() {
                        read_filter(&filters, id)?
                    } else {
                        Bloom::decode(&m.filter).map(Filter::Bloom)
                    }
                    .ok_or_else(|| {
                        redb::Error::Corrupted(format!("dedup run {id}: unreadable filter"))
                    })?;
                    live.push(Arc::new(Run {
                        id,
                        meta: RunMeta {
                            filter: serde_bytes::ByteBuf::new(),
                            ..m
                        },
                        filter,
                    }));
                }
                Some(m) => {
                    if m.state == RunState::Dying {
                        through = through.max(m.through_log);
                    }
                    garbage.push(id);
                }
                None => garbage.push(id),
            }
        }
        live.sort_by_key(|r| (r.meta.max_ms, r.id));
        let log = txn.open_table(DEDUP_LOG)?;
        let mut mem = Memtable::default();
        let mut next_log = through + 1;
        for row in log.range(through + 1..)? {
            let (k, v) = row?;
            let seq = k.value();
            next_log = seq + 1;
            let (ms, first, ds) = decode_log(v.value())
                .ok_or_else(|| redb::Error::Corrupted(format!("dedup log row {seq}")))?;
            if mem.epoch.is_none() {
                mem.epoch = Some(ms.div_euclid(tuning.epoch_ms.max(1)));
            }
            for (i, d) in ds.into_iter().enumerate() {
                mem.map.insert(d, nth_mark(ms, first, i));
            }
            mem.through_log = seq;
        }
        if let Some((k, _)) = log.last()? {
            next_log = next_log.max(k.value() + 1);
        }
        drop(meta);
        drop(filters);
        drop(log);
        let n = mem.map.len();
        *self.active.lock().expect("memtable lock") = mem;
        *self.frozen.write().expect("frozen lock") = None;
        self.runs.store(Arc::new(live));
        Ok(Loaded {
            next_run,
            next_log,
            garbage,
            memtable: n,
            covered: through,
        })
    }

    /// Moves the live memtable aside (the writer seals it into a run). The memtable
    /// stays locked until the frozen one is in place: a look-up checks the memtable,
    /// then the frozen one, so in between it would find the digests in neither.
    fn freeze(&self) -> Arc<Frozen> {
        let mut active = self.active.lock().expect("memtable lock");
        let m = Arc::new(Frozen::Map(std::mem::take(&mut *active)));
        *self.frozen.write().expect("frozen lock") = Some(m.clone());
        drop(active);
        m
    }

    /// Freezes the live memtable and sorts it for run `run` (its filter seeded with the
    /// run's id): look-ups ask the sorted entries, behind the filter, from then on, and
    /// the map goes once no look-up holds it.
    fn freeze_sorted(&self, run: u64) -> Sealing {
        let frozen = self.freeze();
        let Frozen::Map(mem) = &*frozen else {
            unreachable!("a memtable is frozen as its map")
        };
        let mut sorted: Vec<(u128, Mark)> = mem.map.iter().map(|(d, m)| (*d, *m)).collect();
        sorted.sort_unstable_by_key(|e| e.0);
        let mut filter = Filter::for_run(sorted.len() as u64, run);
        for (d, _) in &sorted {
            filter.insert(*d);
        }
        filter.finish();
        let sealing = Sealing {
            sorted: Arc::new(sorted),
            filter,
            epoch: mem.epoch,
            through_log: mem.through_log,
        };
        *self.frozen.write().expect("frozen lock") = Some(Arc::new(Frozen::Sorted {
            entries: sealing.sorted.clone(),
            filter: sealing.filter.clone(),
        }));
        sealing
    }

    /// The live memtable's epoch and size.
    fn active_shape(&self) -> (Option<i64>, usize) {
        let m = self.active.lock().expect("memtable lock");
        (m.epoch, m.map.len())
    }

    /// A sealed run is on disk: look-ups use it from now on, then forget the frozen
    /// memtable it came from.
    fn publish_seal(&self, run: Arc<Run>) {
        let mut runs = (*self.runs.load_full()).clone();
        runs.push(run);
        runs.sort_by_key(|r| (r.meta.max_ms, r.id));
        self.runs.store(Arc::new(runs));
        *self.frozen.write().expect("frozen lock") = None;
    }

    /// Replaces runs `gone` by `new` (a merge), or drops them (expiry, `new` None).
    fn replace(&self, gone: &[u64], new: Option<Arc<Run>>) {
        let mut runs: Vec<Arc<Run>> = self
            .runs
            .load()
            .iter()
            .filter(|r| !gone.contains(&r.id))
            .cloned()
            .collect();
        runs.extend(new);
        runs.sort_by_key(|r| (r.meta.max_ms, r.id));
        self.runs.store(Arc::new(runs));
    }

    fn runs(&self) -> Arc<Vec<Arc<Run>>> {
        self.runs.load_full()
    }
}

/// What [`DedupIndex::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub next_run: u64,
    pub next_log: u64,
    /// Runs to delete (unfinished, or already dying).
    pub garbage: Vec<u64>,
    pub memtable: usize,
    /// `dedup_log` rows up to here are in runs (and may be trimmed).
    pub covered: u64,
}

/// What the published runs answered for some digests ([`DedupIndex::lookup_runs`]),
/// with the list of runs asked.
pub struct RunsAnswer {
    runs: Arc<Vec<Arc<Run>>>,
    marks: Vec<Option<Mark>>,
}

/// What the published runs' filters said of some digests ([`DedupIndex::probe_runs`]):
/// the list of runs asked, and each "maybe" in the order to check them, newest run
/// first. It holds what its check needs (the digests said "maybe" for, the cutoff), so
/// the check can move to another thread on its own.
pub struct RunsProbe {
    runs: Arc<Vec<Arc<Run>>>,
    maybes: Vec<Maybe>,
    /// How many digests were asked about.
    len: usize,
    cutoff_ms: i64,
}

impl RunsProbe {
    /// Whether some filter said "maybe", so [`RunsProbe::check`] reads the disk.
    pub fn needs_disk(&self) -> bool {
        !self.maybes.is_empty()
    }

    /// The runs' answer: each "maybe" looked up in its run (`view` opened for the
    /// first), newest run first, until the digest is found accepted after the probe's
    /// cutoff.
    pub fn check(
        self,
        view: impl FnOnce() -> Result<super::View, StoreError>,
    ) -> Result<RunsAnswer, StoreError> {
        let mut marks = vec![None; self.len];
        check_pass(&self.runs, self.cutoff_ms, &self.maybes, &mut marks, view)?;
        Ok(RunsAnswer {
            runs: self.runs,
            marks,
        })
    }
}

fn seen(marks: Vec<Option<Mark>>) -> Vec<Seen> {
    marks
        .into_iter()
        .map(|m| m.map_or(Seen::No, |m| Seen::At(m.ms)))
        .collect()
}

/// A read transaction opened the first time a filter says "maybe".
struct Lazy<F> {
    open: Option<F>,
    view: Option<super::View>,
}

impl<F: FnOnce() -> Result<super::View, StoreError>> Lazy<F> {
    fn new(open: F) -> Self {
        Lazy {
            open: Some(open),
            view: None,
        }
    }

    fn get(&mut self) -> Result<&super::View, StoreError> {
        if self.view.is_none() {
            let open = self.open.take().expect("opened once");
            self.view = Some(open()?);
        }
        Ok(self.view.as_ref().expect("opened"))
    }
}

/// Asks `runs` (taken before `view` opens, so each is whole in it) for the digests
/// `out` has no mark for yet, filling `out` with marks inside the window; `view` is
/// opened the first time a filter says "maybe". [`filter_pass`], then [`check_pass`].
fn probe(
    runs: &[Arc<Run>],
    digests: &[u128],
    cutoff_ms: i64,
    out: &mut [Option<Mark>],
    view: impl FnOnce() -> Result<super::View, StoreError>,
) -> Result<(), StoreError> {
    let maybes = filter_pass(runs, digests, cutoff_ms, out);
    check_pass(runs, cutoff_ms, &maybes, out, view)
}

/// A filter's "maybe": the digest's index in the look-up, the digest, and the run's
/// index in the list asked.
type Maybe = (usize, u128, usize);

/// Look-ups of fewer digests than this load every run's blocks before asking any run
/// ([`filter_pass`]); larger ones load and ask run by run.
const TOUCH_ALL_BELOW: usize = 32;

/// Each run's filter asked for the digests `out` has no mark for, newest run first:
/// the [`Maybe`]s, grouped by run in that order. A pass that only
/// loads each digest's block ([`Filter::touch`]) comes before the asking: the loads do
/// not depend on each other, so the filters' cache misses overlap, and the asking
/// finds the blocks in the cache. A look-up of many digests has enough misses in flight
/// within one run, so it loads and asks run by run (about 185 ns a digest for the nine
/// filters of a 100 M window in a 100-digest look-up, against 275 asking in one pass
/// and 195 loading every run first); one of fewer than [`TOUCH_ALL_BELOW`] (a
/// single-event request's) loads every run's blocks first (about 330 ns for one
/// digest against 590 run by run). Those are the Bloom filters' figures; a fuse
/// filter's probe is its loads ([`Filter::wants_touch`]), so it is asked in one pass
/// (about 446 ns a digest for the nine fuse filters of a 100 M window, 568 for one
/// digest). `cargo bench --bench probe`. No disk is read.
fn filter_pass(
    runs: &[Arc<Run>],
    digests: &[u128],
    cutoff_ms: i64,
    out: &[Option<Mark>],
) -> Vec<Maybe> {
    let open: Vec<usize> = (0..digests.len()).filter(|&i| out[i].is_none()).collect();
    let mut maybes = Vec::new();
    if open.is_empty() {
        return maybes;
    }
    let live: Vec<usize> = (0..runs.len())
        .rev()
        .filter(|&r| runs[r].meta.max_ms > cutoff_ms)
        .collect();
    let touch = |r: usize, a: u64| {
        if !runs[r].filter.wants_touch() {
            return a;
        }
        open.iter()
            .fold(a, |a, &i| a ^ runs[r].filter.touch(digests[i]))
    };
    let touch_all = open.len() < TOUCH_ALL_BELOW;
    if touch_all {
        std::hint::black_box(live.iter().fold(0u64, |a, &r| touch(r, a)));
    }
    for &r in &live {
        if !touch_all {
            std::hint::black_box(touch(r, 0));
        }
        maybes.extend(
            open.iter()
                .copied()
                .filter(|&i| runs[r].filter.may_contain(digests[i]))
                .map(|i| (i, digests[i], r)),
        );
    }
    maybes
}

/// The disk checks of [`filter_pass`]'s "maybe"s, in its order (newest run first): a
/// digest is looked up in its run unless an earlier check found it accepted after
/// `cutoff_ms`. `view` is opened for the first check.
fn check_pass(
    runs: &[Arc<Run>],
    cutoff_ms: i64,
    maybes: &[Maybe],
    out: &mut [Option<Mark>],
    view: impl FnOnce() -> Result<super::View, StoreError>,
) -> Result<(), StoreError> {
    let mut view = Lazy::new(view);
    for &(i, d, r) in maybes {
        if out[i].is_some() {
            continue;
        }
        if let Some(k) = view.get()?.dedup_find(runs[r].id, d)?
            && k.ms > cutoff_ms
        {
            out[i] = Some(k);
        }
    }
    Ok(())
}

/// The mark of `d` in run `run` (for [`super::View`]).
pub(crate) fn find_in<T: ReadableTable<(u64, u128), &'static [u8]>>(
    t: &T,
    run: u64,
    d: u128,
) -> Result<Option<Mark>, redb::Error> {
    runs::find(t, run, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After an upgrade a store holds runs of both kinds: filters written before
    /// format 3 (Bloom filters) and since (fuse filters) are read back from
    /// their `dedup_filters` rows, each as the kind it was written, whatever the rows'
    /// size.
    #[test]
    fn filters_of_both_kinds_are_read_back_from_their_rows() {
        use redb::ReadableDatabase;
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("f.redb")).unwrap();
        let mut keys: Vec<u128> = (1..=5_000u128)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
            .collect();
        keys.sort_unstable();
        let mut bloom = Bloom::with_capacity(5_000, 5);
        let mut sorted = Filter::for_run(5_000, 6);
        for &d in &keys {
            bloom.insert(d);
            sorted.insert(d);
        }
        sorted.finish();
        let bloom = Filter::Bloom(bloom);
        assert!(matches!(sorted, Filter::Fuse(_)));
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(DEDUP_FILTERS).unwrap();
            for (run, f) in [(5u64, &bloom), (6, &sorted)] {
                let mut next = Some(0);
                while let Some(from) = next {
                    next = f
                        .write_rows(4_096, from, 2, |i, row| {
                            t.insert((run, i), row)?;
                            Ok(())
                        })
                        .unwrap();
                }
            }
        }
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let t = read.open_table(DEDUP_FILTERS).unwrap();
        assert_eq!(read_filter(&t, 5).unwrap(), Some(bloom));
        let back = read_filter(&t, 6).unwrap().expect("run 6's filter");
        assert!(keys.iter().all(|&d| back.may_contain(d)));
        assert_eq!(back, sorted);
        assert_eq!(read_filter(&t, 7).unwrap(), None);
    }

    /// The default memtable is sized once for a seal and its margin, in a table of
    /// 512 Ki slots (16.5 MB): it does not grow (rehashing) on the way to a seal, and
    /// it is not the 1 Mi-slot table (33 MB) that 512 Ki digests needed.
    #[test]
    fn the_default_memtable_fills_to_its_seal_in_a_table_of_512_ki_slots() {
        let idx = DedupIndex::new(3_600_000);
        let tuning = Tuning::default();
        let slots_7_8 = 7 * (1usize << 19) / 8;
        let digests: Vec<u128> = (1..=tuning.room() as u128)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
            .collect();
        for (k, chunk) in digests.chunks(1_000).enumerate() {
            idx.insert(chunk, 1_000, 1_000 * k as u64 + 1, &tuning, k as u64 + 1);
            let cap = idx.active.lock().expect("memtable lock").map.capacity();
            assert_eq!(cap, slots_7_8, "after {} digests", (k + 1) * 1_000);
        }
        assert_eq!(idx.active_len(), tuning.room());
        assert!(tuning.seal_at < tuning.room());
    }

    /// Once the writer has sorted the frozen memtable for its run, look-ups answer from
    /// the sorted entries exactly as they did from the map: each digest with its own
    /// mark, nothing for a digest that is not in it.
    #[test]
    fn a_frozen_memtable_sorted_for_its_run_answers_like_its_map() {
        let idx = DedupIndex::new(3_600_000);
        let tuning = Tuning {
            seal_at: 1 << 20,
            epoch_ms: 3_600_000,
            ..Tuning::default()
        };
        let digests: Vec<u128> = (1..=5_000u128)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
            .collect();
        for (k, chunk) in digests.chunks(100).enumerate() {
            let k = k as i64;
            idx.insert(chunk, 1_000 + k, 100 * k as u64 + 1, &tuning, k as u64 + 1);
        }
        let none = || -> Result<super::super::View, StoreError> { unreachable!("no run") };
        let before = idx.marks(&digests, 0, none).expect("look-up");
        assert!(before.iter().all(Option::is_some));
        let sealing = idx.freeze_sorted(7);
        assert_eq!(idx.active_len(), 0, "the live memtable starts empty");
        assert!(matches!(
            idx.frozen.read().expect("frozen").as_deref(),
            Some(Frozen::Sorted { .. })
        ));
        assert_eq!(sealing.sorted.len(), digests.len());
        assert_eq!(idx.marks(&digests, 0, none).expect("look-up"), before);
        // Absent digests: none found (the filter's rare "maybe" goes to the search).
        let absent: Vec<u128> = digests.iter().map(|d| !d).collect();
        let found = idx.marks(&absent, 0, none).expect("look-up");
        assert!(found.iter().all(Option::is_none));
        assert_eq!(idx.stats().0, digests.len());
    }

    /// A look-up while the writer freezes the memtable must find a committed digest
    /// either in the memtable or in the frozen one: never in neither.
    #[test]
    fn a_look_up_during_a_freeze_always_finds_a_committed_digest() {
        let d = 0xABCD_u128;
        let rounds = 100_000;
        let idx = std::sync::RwLock::new(DedupIndex::new(3_600_000));
        let start = std::sync::Barrier::new(2);
        let end = std::sync::Barrier::new(2);
        let misses = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut misses = 0u64;
                for _ in 0..rounds {
                    start.wait();
                    let idx = idx.read().expect("index").clone();
                    for _ in 0..20 {
                        let got = idx
                            .lookup(&[d], 0, || unreachable!("no run, no view"))
                            .expect("look-up");
                        misses += u64::from(got[0] == Seen::No);
                    }
                    end.wait();
                }
                misses
            });
            for _ in 0..rounds {
                // A committed digest in a fresh memtable, frozen while the reader looks.
                let fresh = DedupIndex::new(3_600_000);
                let tuning = Tuning {
                    seal_at: 16,
                    epoch_ms: 3_600_000,
                    ..Tuning::default()
                };
                fresh.insert(&[d], 1_000, 1, &tuning, 1);
                *idx.write().expect("index") = fresh.clone();
                start.wait();
                fresh.freeze();
                end.wait();
            }
            reader.join().expect("reader")
        });
        assert_eq!(misses, 0, "look-ups that missed a committed digest");
    }
}
