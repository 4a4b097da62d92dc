//! The writer's side of the dedup index: each commit does one slice of what is due —
//! sealing a frozen memtable into a run, merging runs, deleting expired or abandoned
//! runs, trimming `dedup_log` — so no commit stalls ingest for long. What a commit
//! made visible is published to the in-memory index only after it returned
//! ([`Maintainer::committed`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableTable, WriteTransaction};
use tracing::{debug, info};

use super::feed::Feed;
use super::filter::Filter;
use super::runs::{self, BLOCK, DEDUP_RUNS};
use super::{
    DEDUP_FILTERS, DEDUP_LOG, DEDUP_META, DedupIndex, FILTER_ROW_BYTES, Loaded, Mark, Run, RunMeta,
    RunState, Tuning, delete_filter, encode_log, encode_meta,
};

/// Filter rows written per this many entries of a commit's budget (a row is
/// [`FILTER_ROW_BYTES`], 1 MiB).
const FILTER_ENTRIES_PER_ROW: usize = 4_096;

struct SealJob {
    run: u64,
    /// Shared with the frozen memtable, which look-ups ask until the run is published.
    sorted: Arc<Vec<(u128, Mark)>>,
    pos: usize,
    meta: RunMeta,
    filter: Filter,
}

struct Source {
    run: Arc<Run>,
    buf: VecDeque<(u128, Mark)>,
    /// Read to the end.
    done: bool,
}

struct MergeJob {
    out: u64,
    sources: Vec<Source>,
    /// Reads the sources ahead, off the writer's thread.
    feed: Feed,
    meta: RunMeta,
    filter: Filter,
    /// Entries merged but not yet written (a partial block).
    pending: Vec<(u128, Mark)>,
}

enum After {
    Seal(Arc<Run>),
    Replace {
        gone: Vec<Arc<Run>>,
        new: Option<Arc<Run>>,
    },
}

/// A run whose blocks are all written: its filter goes to `dedup_filters` a few rows
/// per commit (a large run's filter is tens of MB, too much for one commit that answers
/// requests), then it goes live.
struct Finish {
    run: u64,
    filter: Filter,
    /// Its record as it will be, `Live`.
    meta: RunMeta,
    next_row: u32,
    /// The runs a merge replaces (None: a seal).
    sources: Option<Vec<Arc<Run>>>,
    /// How long the writer waited for a merge's sources to be read.
    waited: Duration,
}

/// A run whose rows are being deleted, once no look-up still uses it (`run`'s strong
/// count is 0). A weak reference: a look-up's snapshot of the run list is the only
/// owner left, so the run's filter goes as soon as the last look-up that holds it ends,
/// not after its rows are deleted (hundreds of commits for a large run, while the run
/// that replaced it and its filter are already in memory).
struct Dying {
    id: u64,
    run: Option<std::sync::Weak<Run>>,
}

pub struct Maintainer {
    tuning: Tuning,
    next_run: u64,
    next_log: u64,
    seal: Option<SealJob>,
    merge: Option<MergeJob>,
    finishing: VecDeque<Finish>,
    dying: VecDeque<Dying>,
    /// `dedup_log` rows up to here are covered by runs and may go.
    log_covered: u64,
    after: Vec<After>,
}

impl Maintainer {
    pub fn new(loaded: &Loaded, tuning: Tuning) -> Self {
        Maintainer {
            tuning,
            next_run: loaded.next_run,
            next_log: loaded.next_log,
            seal: None,
            merge: None,
            finishing: VecDeque::new(),
            dying: loaded
                .garbage
                .iter()
                .map(|id| Dying { id: *id, run: None })
                .collect(),
            log_covered: loaded.covered,
            after: Vec::new(),
        }
    }

    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// Appends one request's digests to `dedup_log`; returns the commit sequence the
    /// memtable insert carries after the commit.
    pub fn log(
        &mut self,
        table: &mut redb::Table<u64, &[u8]>,
        accepted_ms: i64,
        first_seq: u64,
        digests: &[u128],
    ) -> Result<u64, redb::Error> {
        let seq = self.next_log;
        table.insert(seq, encode_log(accepted_ms, first_seq, digests).as_slice())?;
        self.next_log += 1;
        Ok(seq)
    }

    /// One slice of what is due, in the commit's transaction: at most `budget` entries
    /// sealed, merged or deleted (see [`Maintainer::budget`]).
    pub fn step(
        &mut self,
        txn: &WriteTransaction,
        db: &Arc<Database>,
        index: &DedupIndex,
        now_ms: i64,
        budget: usize,
    ) -> Result<(), redb::Error> {
        let t = self.tuning;
        let epoch_now = now_ms.div_euclid(t.epoch_ms.max(1));
        let cutoff = now_ms - index.window_ms();
        let mut meta = txn.open_table(DEDUP_META)?;
        let mut filters = txn.open_table(DEDUP_FILTERS)?;
        let mut rows = txn.open_table(DEDUP_RUNS)?;

        // Expiry: a run whose newest entry left the window goes whole.
        let expired: Vec<Arc<Run>> = index
            .runs()
            .iter()
            .filter(|r| r.meta.max_ms <= cutoff)
            .filter(|r| {
                self.merge
                    .as_ref()
                    .is_none_or(|m| !m.sources.iter().any(|s| s.run.id == r.id))
                    && !self.finishing.iter().any(|f| {
                        f.sources
                            .as_ref()
                            .is_some_and(|ss| ss.iter().any(|s| s.id == r.id))
                    })
            })
            .cloned()
            .collect();
        if !expired.is_empty() {
            for r in &expired {
                let m = RunMeta {
                    state: RunState::Dying,
                    ..r.meta.clone()
                };
                meta.insert(r.id, encode_meta(&m).as_slice())?;
            }
            debug!(runs = expired.len(), "dedup runs expired");
            self.after.push(After::Replace {
                gone: expired,
                new: None,
            });
        }

        // Seal the memtable when it is full or its epoch ended; not while the last seal's
        // filter is still being written (its memtable stays frozen, looked up, until then).
        if self.seal.is_none() && !self.finishing.iter().any(|f| f.sources.is_none()) {
            let (epoch, len) = index.active_shape();
            if len >= t.seal_at || (len > 0 && epoch.is_some_and(|e| e < epoch_now)) {
                self.start_seal(&mut meta, index)?;
            }
        }
        let full_budget = budget;
        let mut budget = budget;
        if let Some(job) = self.seal.as_mut() {
            let end = (job.pos + budget).min(job.sorted.len());
            runs::write_blocks(&mut rows, job.run, &job.sorted[job.pos..end])?;
            budget -= end - job.pos;
            job.pos = end;
            if job.pos == job.sorted.len() {
                let job = self.seal.take().expect("seal job");
                debug!(
                    run = job.run,
                    entries = job.sorted.len(),
                    "dedup run written"
                );
                self.finishing.push_back(Finish {
                    run: job.run,
                    filter: job.filter,
                    meta: RunMeta {
                        state: RunState::Live,
                        ..job.meta
                    },
                    next_row: 0,
                    sources: None,
                    waited: Duration::ZERO,
                });
            }
        }

        // Merge runs, one merge at a time.
        // Not while a run waits to go live: a merge picks from the runs in the index.
        if self.merge.is_none() && self.seal.is_none() && self.finishing.is_empty() {
            self.start_merge(&mut meta, db, index, epoch_now, cutoff)?;
        }
        if budget > 0
            && let Some(job) = self.merge.as_mut()
        {
            let done = merge_slice(job, &mut rows, budget)?;
            if done {
                let mut job = self.merge.take().expect("merge job");
                job.filter.finish();
                let waited = job.feed.waited();
                self.finishing.push_back(Finish {
                    run: job.out,
                    filter: job.filter,
                    meta: RunMeta {
                        state: RunState::Live,
                        ..job.meta
                    },
                    next_row: 0,
                    sources: Some(job.sources.into_iter().map(|s| s.run).collect()),
                    waited,
                });
            }
        }

        // Filters of written runs, a few rows per commit; then the run goes live. A
        // seal's first: until it is live the memtable cannot be sealed again.
        let mut rows_left = (full_budget / FILTER_ENTRIES_PER_ROW).max(1) as u32;
        while rows_left > 0 {
            let at = self
                .finishing
                .iter()
                .position(|f| f.sources.is_none())
                .unwrap_or(0);
            let Some(f) = self.finishing.get_mut(at) else {
                break;
            };
            let mut written = 0u32;
            let next = f
                .filter
                .write_rows(FILTER_ROW_BYTES, f.next_row, rows_left, |i, row| {
                    filters.insert((f.run, i), row)?;
                    written += 1;
                    Ok(())
                })?;
            rows_left -= written;
            match next {
                Some(n) => {
                    f.next_row = n;
                    break;
                }
                None => {
                    let f = self.finishing.remove(at).expect("finishing");
                    self.go_live(&mut meta, f)?;
                }
            }
        }

        // Delete what no look-up still uses.
        let mut blocks = (full_budget / BLOCK).max(1);
        while blocks > 0 {
            let Some(d) = self.dying.front() else {
                break;
            };
            if d.run.as_ref().is_some_and(|r| r.strong_count() > 0) {
                break;
            }
            let n = runs::delete_blocks(&mut rows, d.id, blocks)?;
            if n < blocks {
                meta.remove(d.id)?;
                delete_filter(&mut filters, d.id)?;
                self.dying.pop_front();
            }
            blocks = blocks.saturating_sub(n.max(1));
        }

        // Trim the log the runs cover.
        if self.log_covered > 0 {
            let mut log = txn.open_table(DEDUP_LOG)?;
            let keys: Vec<u64> = log
                .range(..=self.log_covered)?
                .take(full_budget / 16 + 1)
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for k in keys {
                log.remove(k)?;
            }
        }
        Ok(())
    }

    /// A run whose filter is written goes live (a merge's sources start dying), in
    /// the index once the commit returns.
    fn go_live(
        &mut self,
        meta: &mut redb::Table<u64, &[u8]>,
        f: Finish,
    ) -> Result<(), redb::Error> {
        meta.insert(f.run, encode_meta(&f.meta).as_slice())?;
        self.log_covered = self.log_covered.max(f.meta.through_log);
        let run = Arc::new(Run {
            id: f.run,
            meta: f.meta,
            filter: f.filter,
        });
        match f.sources {
            None => {
                debug!(run = run.id, entries = run.meta.count, "dedup run sealed");
                self.after.push(After::Seal(run));
            }
            Some(sources) => {
                for s in &sources {
                    let m = RunMeta {
                        state: RunState::Dying,
                        ..s.meta.clone()
                    };
                    meta.insert(s.id, encode_meta(&m).as_slice())?;
                }
                info!(
                    run = run.id,
                    merged = sources.len(),
                    entries = run.meta.count,
                    level = run.meta.level,
                    source_wait_ms = f.waited.as_millis() as u64,
                    "dedup runs merged"
                );
                self.after.push(After::Replace {
                    gone: sources,
                    new: Some(run),
                });
            }
        }
        Ok(())
    }

    /// The slice a commit carries: the whole [`Tuning::slice`] in a commit of its own;
    /// beside requests (`events` ingested, or delivery work), a share in proportion to
    /// the ingest, at least [`Tuning::slice`] / 16, so a commit that answers requests
    /// stays short. Seals and merges rewrite each digest a few times in all (once per
    /// level), so eight entries per ingested digest keep up with any rate of ingest.
    pub fn budget(&self, events: usize, alone: bool) -> usize {
        let s = self.tuning.slice;
        if alone {
            s
        } else {
            events.saturating_mul(8).clamp((s / 16).max(1), s)
        }
    }

    fn start_seal(
        &mut self,
        meta: &mut redb::Table<u64, &[u8]>,
        index: &DedupIndex,
    ) -> Result<(), redb::Error> {
        let run = self.next_run;
        self.next_run += 1;
        let super::Sealing {
            sorted,
            filter,
            epoch,
            through_log,
        } = index.freeze_sorted(run);
        let m = RunMeta {
            state: RunState::Building,
            epoch: epoch.unwrap_or(0),
            level: 0,
            min_ms: sorted.iter().map(|e| e.1.ms).min().unwrap_or(0),
            max_ms: sorted.iter().map(|e| e.1.ms).max().unwrap_or(0),
            count: sorted.len() as u64,
            through_log,
            filter: serde_bytes::ByteBuf::new(),
        };
        meta.insert(run, encode_meta(&m).as_slice())?;
        self.seal = Some(SealJob {
            run,
            sorted,
            pos: 0,
            meta: m,
            filter,
        });
        Ok(())
    }

    /// A closed epoch merges its smallest runs, as many as fit in [`Tuning::max_run`]
    /// (two at least); in the open epoch, the oldest `fan_in` runs of a level with that
    /// many merge into the next level, when they fit.
    fn start_merge(
        &mut self,
        meta: &mut redb::Table<u64, &[u8]>,
        db: &Arc<Database>,
        index: &DedupIndex,
        epoch_now: i64,
        cutoff: i64,
    ) -> Result<(), redb::Error> {
        let runs = index.runs();
        let mut by_epoch: BTreeMap<i64, Vec<&Arc<Run>>> = BTreeMap::new();
        // Runs expiring now are not merged (their rows are about to go).
        for r in runs.iter().filter(|r| r.meta.max_ms > cutoff) {
            by_epoch.entry(r.meta.epoch).or_default().push(r);
        }
        let max_run = self.tuning.max_run;
        let mut pick: Option<Vec<Arc<Run>>> = None;
        for (epoch, rs) in &by_epoch {
            if *epoch < epoch_now {
                // A closed epoch: its smallest runs, as many as fit in one run.
                let mut rs: Vec<Arc<Run>> = rs.iter().map(|r| (*r).clone()).collect();
                rs.sort_by_key(|r| (r.meta.count, r.id));
                let mut total = 0u64;
                let fit = rs
                    .iter()
                    .take_while(|r| {
                        total = total.saturating_add(r.meta.count);
                        total <= max_run
                    })
                    .count();
                if fit > 1 {
                    rs.truncate(fit);
                    rs.sort_by_key(|r| r.id);
                    pick = Some(rs);
                    break;
                }
                continue;
            }
            let mut levels: BTreeMap<u32, Vec<&Arc<Run>>> = BTreeMap::new();
            for r in rs {
                levels.entry(r.meta.level).or_default().push(r);
            }
            let fits = |rs: &[Arc<Run>]| rs.iter().map(|r| r.meta.count).sum::<u64>() <= max_run;
            if let Some(rs) = levels
                .values()
                .filter(|rs| rs.len() >= self.tuning.fan_in)
                .find_map(|rs| {
                    let mut rs: Vec<Arc<Run>> = rs.iter().map(|r| (*r).clone()).collect();
                    rs.sort_by_key(|r| r.id);
                    rs.truncate(self.tuning.fan_in);
                    fits(&rs).then_some(rs)
                })
            {
                pick = Some(rs);
                break;
            }
        }
        let Some(sources) = pick else {
            return Ok(());
        };
        let out = self.next_run;
        self.next_run += 1;
        let count: u64 = sources.iter().map(|r| r.meta.count).sum();
        let m = RunMeta {
            state: RunState::Building,
            epoch: sources[0].meta.epoch,
            level: sources.iter().map(|r| r.meta.level).max().unwrap_or(0) + 1,
            min_ms: sources.iter().map(|r| r.meta.min_ms).min().unwrap_or(0),
            max_ms: sources.iter().map(|r| r.meta.max_ms).max().unwrap_or(0),
            count: 0,
            through_log: sources
                .iter()
                .map(|r| r.meta.through_log)
                .max()
                .unwrap_or(0),
            filter: serde_bytes::ByteBuf::new(),
        };
        meta.insert(out, encode_meta(&m).as_slice())?;
        let feed = Feed::start(db.clone(), sources.iter().map(|r| r.id).collect())
            .map_err(redb::Error::Io)?;
        self.merge = Some(MergeJob {
            out,
            filter: Filter::for_run(count, out),
            sources: sources
                .into_iter()
                .map(|run| Source {
                    run,
                    buf: VecDeque::new(),
                    done: false,
                })
                .collect(),
            feed,
            meta: m,
            pending: Vec::new(),
        });
        Ok(())
    }

    /// The commit that held the last step returned: publish what it completed.
    pub fn committed(&mut self, index: &DedupIndex) {
        for a in self.after.drain(..) {
            match a {
                After::Seal(run) => index.publish_seal(run),
                After::Replace { gone, new } => {
                    let ids: Vec<u64> = gone.iter().map(|r| r.id).collect();
                    index.replace(&ids, new);
                    self.dying.extend(gone.into_iter().map(|r| Dying {
                        id: r.id,
                        run: Some(Arc::downgrade(&r)),
                    }));
                }
            }
        }
    }

    /// The store closes: a merge under way stops reading its sources (it starts over
    /// from the file at the next open).
    pub fn close(&mut self) {
        self.merge = None;
    }

    /// The commit failed: the store reopens and the index is loaded again.
    pub fn failed(&mut self) {
        self.after.clear();
        self.seal = None;
        self.merge = None;
        self.finishing.clear();
    }

    /// Whether maintenance has work left that is not waiting on anything (tests).
    pub fn busy(&self) -> bool {
        self.seal.is_some()
            || self.merge.is_some()
            || !self.finishing.is_empty()
            || self
                .dying
                .front()
                .is_some_and(|d| d.run.as_ref().is_none_or(|r| r.strong_count() == 0))
    }
}

/// Merges up to `budget` entries; true when every source is exhausted and written.
fn merge_slice(
    job: &mut MergeJob,
    rows: &mut redb::Table<(u64, u128), &[u8]>,
    budget: usize,
) -> Result<bool, redb::Error> {
    let mut out: Vec<(u128, Mark)> = std::mem::take(&mut job.pending);
    let mut taken = 0usize;
    loop {
        // Refill empty buffers.
        for (i, s) in job.sources.iter_mut().enumerate() {
            if s.buf.is_empty() && !s.done {
                match job.feed.next(i)? {
                    Some(entries) => s.buf.extend(entries),
                    None => s.done = true,
                }
            }
        }
        // The smallest digest across sources; equal ones keep the newest time.
        let Some(min) = job
            .sources
            .iter()
            .filter_map(|s| s.buf.front().map(|e| e.0))
            .min()
        else {
            break;
        };
        let mut mark: Option<Mark> = None;
        for s in &mut job.sources {
            if s.buf.front().is_some_and(|e| e.0 == min) {
                let m = s.buf.pop_front().expect("front").1;
                if mark.is_none_or(|k| m.ms > k.ms) {
                    mark = Some(m);
                }
            }
        }
        let mark = mark.expect("a source held the smallest digest");
        job.filter.insert(min);
        job.meta.count += 1;
        out.push((min, mark));
        taken += 1;
        if out.len() == BLOCK {
            runs::write_blocks(rows, job.out, &out)?;
            out.clear();
        }
        if taken >= budget {
            job.pending = out;
            return Ok(false);
        }
    }
    if !out.is_empty() {
        runs::write_blocks(rows, job.out, &out)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: u64) -> Arc<Run> {
        Arc::new(Run {
            id,
            meta: RunMeta {
                state: RunState::Live,
                epoch: 0,
                level: 2,
                min_ms: 1,
                max_ms: 2,
                count: 1_000_000,
                through_log: 1,
                filter: serde_bytes::ByteBuf::new(),
            },
            filter: Filter::Bloom(crate::store::dedup::bloom::Bloom::with_capacity(
                1_000_000, id,
            )),
        })
    }

    /// A run a merge replaced (or that expired) keeps its filter in memory only while a
    /// look-up still holds it, not while its rows are deleted over many commits; and
    /// its rows wait for that look-up.
    #[test]
    fn a_replaced_run_is_freed_when_the_last_look_up_ends_not_when_its_rows_are_gone() {
        let index = DedupIndex::new(3_600_000);
        let mut m = Maintainer::new(&Loaded::default(), Tuning::default());
        let old = run(1);
        index.publish_seal(old.clone());
        let weak = Arc::downgrade(&old);
        // A look-up's snapshot of the run list, taken before the replace.
        let looking = index.runs();
        m.after.push(After::Replace {
            gone: vec![old],
            new: Some(run(2)),
        });
        m.committed(&index);
        assert_eq!(index.runs().iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
        assert!(weak.upgrade().is_some(), "held by the look-up");
        assert!(!m.busy(), "its rows wait while a look-up holds it");
        drop(looking);
        assert!(weak.upgrade().is_none(), "freed with the last look-up");
        assert!(m.busy(), "its rows are to be deleted now");
        assert_eq!(m.dying.len(), 1);
    }
}
