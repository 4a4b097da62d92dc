//! The dedup index against a plain model, on the real redb file through the real
//! writer thread: random streams with repeats, across memtable seals, run merges,
//! epoch ends, window expiry, restarts and a reopen after an I/O error. The index is
//! made small (a seal every few digests) so every hand-over happens many times.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use sluice::clock::{Clock, ManualClock};
use sluice::store::dedup::{DedupIndex, Seen, Tuning};
use sluice::store::{FaultSwitch, IngestBatch, Store, StoreOptions, dedup_digest};

const WINDOW: i64 = 30_000;
const T0: i64 = 1_776_000_000_000;

fn tuning() -> Tuning {
    Tuning {
        seal_at: 6,
        epoch_ms: 10_000,
        fan_in: 2,
        slice: 5,
        max_run: u64::MAX,
    }
}

struct Rig {
    path: std::path::PathBuf,
    clock: Arc<ManualClock>,
    faults: Arc<FaultSwitch>,
    tuning: Tuning,
    store: Store,
    index: Arc<DedupIndex>,
}

fn start(
    path: &Path,
    clock: &Arc<ManualClock>,
    faults: &Arc<FaultSwitch>,
    tuning: Tuning,
) -> (Store, Arc<DedupIndex>) {
    let index = DedupIndex::new(WINDOW);
    let store = Store::start(StoreOptions {
        path: path.to_path_buf(),
        dedup: index.clone(),
        dedup_tuning: tuning,
        routing: Default::default(),
        cache_size: 4 << 20,
        clock: clock.clone(),
        faults: Some(faults.clone()),
        on_open: Box::new(|_| {}),
    });
    (store, index)
}

impl Rig {
    async fn new(dir: &Path) -> Rig {
        Rig::with_tuning(dir, tuning()).await
    }

    async fn with_tuning(dir: &Path, tuning: Tuning) -> Rig {
        let path = dir.join("d.redb");
        let clock = ManualClock::new(T0);
        let faults = FaultSwitch::new();
        let (store, index) = start(&path, &clock, &faults, tuning);
        let r = Rig {
            path,
            clock,
            faults,
            tuning,
            store,
            index,
        };
        r.ready().await;
        r
    }

    async fn ready(&self) {
        for _ in 0..2000 {
            if self.store.is_ready() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("store never opened");
    }

    async fn restart(&mut self) {
        self.store.close().await;
        self.reopen().await;
    }

    /// Starts the store again on the file, once it was closed.
    async fn reopen(&mut self) {
        let (store, index) = start(&self.path, &self.clock, &self.faults, self.tuning);
        self.store = store;
        self.index = index;
        self.ready().await;
    }

    /// The log sequences the index remembers for `ds` (None: not in the window).
    fn seqs(&self, ds: &[u128]) -> Vec<Option<u64>> {
        let cutoff = self.clock.now_ms() - WINDOW;
        self.index
            .marks(ds, cutoff, || self.store.view())
            .expect("marks")
            .into_iter()
            .map(|m| m.map(|m| m.seq))
            .collect()
    }

    /// The look-up as the intake makes it: the runs, then the rest (what
    /// [`DedupIndex::lookup`] answers in one go is checked against it).
    fn lookup(&self, ds: &[u128]) -> Vec<Seen> {
        let cutoff = self.clock.now_ms() - WINDOW;
        // The filters first, then the disk checks (elsewhere, in the intake, when some
        // filter said "maybe"): without a "maybe" the check must not open the store.
        let probe = self.index.probe_runs(ds, cutoff);
        let runs = if probe.needs_disk() {
            probe.check(|| self.store.view())
        } else {
            probe.check(|| panic!("the runs' check opened the store with no filter saying maybe"))
        }
        .expect("look-up of the runs");
        let split = self
            .index
            .lookup_rest(ds, cutoff, &runs, || self.store.view())
            .expect("look-up of the rest");
        let whole = self
            .index
            .lookup(ds, cutoff, || self.store.view())
            .expect("lookup");
        assert_eq!(split, whole, "the split look-up answers as the whole one");
        split
    }

    /// Accepts digests 0..12 one request each and waits for the writer to seal them
    /// into runs (the seal is every 6 digests in the rig's tuning): the digests.
    async fn accept_old(&self) -> Vec<u128> {
        let old: Vec<u128> = (0..12u8).map(digest).collect();
        for d in &old {
            self.accept(&[*d]).await.unwrap();
        }
        self.settle().await;
        old
    }

    /// Commits `ds` as one accepted request now, and waits, as the intake's
    /// reservations do, until the writer has put them in the index (the answer can
    /// come first: the ingest journal answers before the group is applied).
    async fn accept(&self, ds: &[u128]) -> Result<(), sluice::store::StoreError> {
        let now = self.clock.now_ms();
        let chunk = sluice::store::log::encode_chunk(
            ds.iter().map(|_| &b"e"[..]).collect::<Vec<_>>().into_iter(),
        );
        let (done, settled) = tokio::sync::oneshot::channel();
        self.store
            .ingest(IngestBatch {
                workspace: Arc::from("ws"),
                month: 202_604,
                accepted_ms: now,
                digests: ds.to_vec(),
                metas: Vec::new(),
                chunk,
                on_done: Some(Box::new(move |ok| {
                    let _ = done.send(ok);
                })),
            })
            .await?;
        assert_eq!(settled.await, Ok(true), "answered, then applied");
        Ok(())
    }

    /// Lets maintenance run to its end (commits with nothing else in them).
    async fn settle(&self) {
        for _ in 0..200 {
            self.store.maintain().await.expect("maintenance commit");
        }
    }
}

fn digest(k: u8) -> u128 {
    dedup_digest("ws", "Purchase", &format!("order-{k}"))
}

/// What the intake must decide for a request of `keys` at `now`, by the model:
/// `Seen::At` for keys accepted inside the window (or earlier in the same request).
fn model_decide(model: &HashMap<u128, i64>, ds: &[u128], now: i64) -> Vec<Seen> {
    ds.iter()
        .map(|d| match model.get(d) {
            Some(ms) if *ms > now - WINDOW => Seen::At(*ms),
            _ => Seen::No,
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Step {
    Request { keys: Vec<u8>, advance_ms: i64 },
    Restart,
    Settle { advance_ms: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (proptest::collection::vec(0u8..60, 1..8), 0i64..6_000)
            .prop_map(|(keys, advance_ms)| Step::Request { keys, advance_ms }),
        1 => Just(Step::Restart),
        1 => (0i64..20_000).prop_map(|advance_ms| Step::Settle { advance_ms }),
    ]
}

async fn run_steps(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Rig::new(dir.path()).await;
    let mut model: HashMap<u128, i64> = HashMap::new();
    // Where each key's newest event is in the workspace's log (the first is 1).
    let mut seqs: HashMap<u128, u64> = HashMap::new();
    let mut next_seq = 1u64;
    for (i, s) in steps.into_iter().enumerate() {
        match s {
            Step::Request { keys, advance_ms } => {
                r.clock.advance_ms(advance_ms);
                let now = r.clock.now_ms();
                let ds: Vec<u128> = keys.iter().map(|k| digest(*k)).collect();
                let got = r.lookup(&ds);
                let want = model_decide(&model, &ds, now);
                assert_eq!(got, want, "step {i}: keys {keys:?} at +{} ms", now - T0);
                // The fresh ones, once each (a repeat inside the request is a duplicate).
                let mut fresh = Vec::new();
                for (d, seen) in ds.iter().zip(&got) {
                    if *seen == Seen::No && !fresh.contains(d) {
                        fresh.push(*d);
                    }
                }
                if !fresh.is_empty() {
                    r.accept(&fresh).await.expect("commit");
                    for d in fresh {
                        model.insert(d, now);
                        seqs.insert(d, next_seq);
                        next_seq += 1;
                    }
                }
            }
            Step::Restart => r.restart().await,
            Step::Settle { advance_ms } => {
                r.clock.advance_ms(advance_ms);
                r.settle().await;
            }
        }
    }
    // Every key the model knows answers as it says.
    r.settle().await;
    let now = r.clock.now_ms();
    let all: Vec<u128> = (0u8..60).map(digest).collect();
    let want = model_decide(&model, &all, now);
    assert_eq!(r.lookup(&all), want, "final");
    // Each key in the window leads to its newest event's place in the log.
    let want_seqs: Vec<Option<u64>> = all
        .iter()
        .zip(&want)
        .map(|(d, w)| (*w != Seen::No).then(|| seqs[d]))
        .collect();
    assert_eq!(r.seqs(&all), want_seqs, "final sequences");
    r.store.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, .. ProptestConfig::default() })]

    /// The index answers exactly as a plain map of accept times would, whatever the
    /// order of requests, seals, merges, expiries and restarts.
    #[test]
    fn the_index_is_exactly_a_map_of_accept_times(steps in proptest::collection::vec(step(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_steps(steps));
    }
}

#[tokio::test]
async fn the_window_edge_is_exact_to_the_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let r = Rig::new(dir.path()).await;
    let d = [digest(1)];
    r.accept(&d).await.unwrap();
    // Sealed into a run and merged: the edge holds on disk too.
    for k in 10..40 {
        r.accept(&[digest(k)]).await.unwrap();
    }
    r.settle().await;
    assert!(r.index.stats().1 > 0, "runs were sealed");
    r.clock.advance_ms(WINDOW - 1);
    assert_eq!(r.lookup(&d), vec![Seen::At(T0)], "one ms inside the window");
    r.clock.advance_ms(1);
    assert_eq!(
        r.lookup(&d),
        vec![Seen::No],
        "at the window's end: new again"
    );
    r.store.close().await;
}

#[tokio::test]
async fn seals_merge_and_expiry_keep_memory_and_disk_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let r = Rig::new(dir.path()).await;
    // 200 digests inside one epoch: sealed every 6, merged pairwise.
    for k in 0..200u32 {
        r.accept(&[dedup_digest("ws", "Lead", &k.to_string())])
            .await
            .unwrap();
    }
    r.settle().await;
    let (mem, runs, bytes) = r.index.stats();
    assert!(mem < 6, "the memtable is sealed at 6: {mem}");
    assert!(runs <= 8, "merges keep the runs few: {runs}");
    assert!(bytes > 0);
    // Every one still a duplicate.
    let all: Vec<u128> = (0..200u32)
        .map(|k| dedup_digest("ws", "Lead", &k.to_string()))
        .collect();
    assert!(r.lookup(&all).iter().all(|s| *s == Seen::At(T0)));
    // The epoch ends: its runs merge into one.
    r.clock.advance_ms(10_000);
    r.settle().await;
    assert_eq!(r.index.stats().1, 1, "a closed epoch is one run");
    // The window passes: the run and its rows go.
    r.clock.advance_ms(WINDOW);
    r.settle().await;
    assert_eq!(r.index.stats(), (0, 0, 0));
    let view = r.store.view().unwrap();
    let rows = view
        .txn()
        .open_table(sluice::store::dedup::runs::DEDUP_RUNS)
        .unwrap();
    use redb::ReadableTableMetadata;
    assert_eq!(rows.len().unwrap(), 0, "every run row deleted");
    let log = view
        .txn()
        .open_table(sluice::store::dedup::DEDUP_LOG)
        .unwrap();
    assert_eq!(log.len().unwrap(), 0, "the covered log trimmed");
    let filters = view
        .txn()
        .open_table(sluice::store::dedup::DEDUP_FILTERS)
        .unwrap();
    assert_eq!(filters.len().unwrap(), 0, "every run's filter rows deleted");
    drop(view);
    assert!(r.lookup(&all).iter().all(|s| *s == Seen::No));
    r.store.close().await;
}

/// The intake asks the published runs outside its workspace lock, then the rest under
/// it. Whatever is committed between the two halves is still found: in the memtable,
/// or in a run sealed (and merged) since the runs were asked, which the first half
/// never saw; and what the first half found in runs merged away since is kept.
#[tokio::test]
async fn what_is_committed_between_the_two_halves_of_a_look_up_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let r = Rig::new(dir.path()).await;
    let cutoff = || r.clock.now_ms() - WINDOW;
    let old = r.accept_old().await;
    assert!(r.index.stats().1 > 0, "the old digests are in runs");
    let late: Vec<u128> = (100..130u8).map(digest).collect();
    let mut all = old.clone();
    all.extend(&late);
    // The first half: the old digests are found in their runs, the late ones are new.
    let runs = r
        .index
        .lookup_runs(&all, cutoff(), || r.store.view())
        .unwrap();
    // Then the late digests are committed, sealed into runs and merged with the old
    // ones (a seal every 6 digests, pairs merged), before the second half.
    for d in &late {
        r.accept(&[*d]).await.unwrap();
    }
    r.settle().await;
    let (mem, _, _) = r.index.stats();
    assert!(
        mem < late.len(),
        "most late digests left the memtable: {mem}"
    );
    let got = r
        .index
        .lookup_rest(&all, cutoff(), &runs, || r.store.view())
        .unwrap();
    let missed: Vec<usize> = (0..all.len()).filter(|&i| got[i] != Seen::At(T0)).collect();
    assert!(missed.is_empty(), "not found as duplicates: {missed:?}");
    r.store.close().await;
}

/// The runs' filters are asked without the disk ([`DedupIndex::probe_runs`]); the
/// probe says whether its check reads the disk, and the check finds every digest in a
/// run. The intake checks on a blocking thread only a probe that needs the disk.
#[tokio::test]
async fn the_filter_pass_says_which_look_ups_need_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let r = Rig::new(dir.path()).await;
    let cutoff = || r.clock.now_ms() - WINDOW;
    let old = r.accept_old().await;
    let (mem, runs, _) = r.index.stats();
    assert!(runs > 0 && mem < old.len(), "the old digests are in runs");
    let in_runs: Vec<u128> = old
        .iter()
        .copied()
        .filter(|d| r.index.probe_runs(&[*d], cutoff()).needs_disk())
        .collect();
    assert!(
        in_runs.len() + mem >= old.len(),
        "every digest that left the memtable needs the disk: {} of {}",
        in_runs.len(),
        old.len() - mem
    );
    let probe = r.index.probe_runs(&in_runs, cutoff());
    assert!(probe.needs_disk());
    let opened = std::cell::Cell::new(0);
    let answer = probe
        .check(|| {
            opened.set(opened.get() + 1);
            r.store.view()
        })
        .unwrap();
    assert_eq!(opened.get(), 1, "one read transaction for all the checks");
    let got = r
        .index
        .lookup_rest(&in_runs, cutoff(), &answer, || {
            panic!("nothing was published since the probe")
        })
        .unwrap();
    assert!(got.iter().all(|s| *s == Seen::At(T0)), "{got:?}");
    // Digests never accepted: a filter can say "maybe" (then the check finds nothing);
    // most need no disk at all.
    let new: Vec<u128> = (0..2000u32)
        .map(|k| u128::from(k) << 64 | 0xfeed)
        .map(|x| x.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
        .collect();
    let needs = new
        .iter()
        .filter(|d| r.index.probe_runs(&[**d], cutoff()).needs_disk())
        .count();
    assert!(
        needs < new.len() / 10,
        "{needs} of {} new digests",
        new.len()
    );
    let answer = r
        .index
        .probe_runs(&new, cutoff())
        .check(|| r.store.view())
        .unwrap();
    let got = r
        .index
        .lookup_rest(&new, cutoff(), &answer, || r.store.view())
        .unwrap();
    assert!(got.iter().all(|s| *s == Seen::No));
    r.store.close().await;
}

/// No merge writes a run larger than `max_run` digests (the new run's filter and its
/// sources' are in memory together until it is live): in the open epoch a level whose
/// merge would pass it keeps its runs, and a closed epoch merges its smallest runs
/// while they fit instead of all of them into one. Nothing is lost either way.
#[tokio::test]
async fn no_merge_writes_a_run_past_max_run_in_or_after_its_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let r = Rig::with_tuning(
        dir.path(),
        Tuning {
            max_run: 20,
            ..tuning()
        },
    )
    .await;
    let all: Vec<u128> = (0..100u32)
        .map(|k| dedup_digest("ws", "Lead", &k.to_string()))
        .collect();
    for d in &all {
        r.accept(&[*d]).await.unwrap();
    }
    r.settle().await;
    // Seals of 6, pairs merged into 12; two of 12 would make 24 > 20, so they stay.
    let open = r.index.run_sizes();
    assert!(open.iter().all(|n| *n <= 20), "open epoch: {open:?}");
    assert!(
        open.iter().filter(|n| **n == 12).count() >= 4,
        "open epoch: {open:?}"
    );
    assert!(r.lookup(&all).iter().all(|s| *s == Seen::At(T0)));
    // The epoch ends: the smallest runs merge while they fit, not all into one.
    r.clock.advance_ms(10_000);
    r.settle().await;
    let closed = r.index.run_sizes();
    assert!(closed.iter().all(|n| *n <= 20), "closed epoch: {closed:?}");
    assert!(closed.len() > 1, "closed epoch: {closed:?}");
    let mut sorted = closed.clone();
    sorted.sort_unstable();
    assert!(
        sorted[0] + sorted[1] > 20,
        "the two smallest would still fit in one run: {closed:?}"
    );
    assert_eq!(closed.iter().sum::<u64>(), 100 - r.index.stats().0 as u64);
    assert!(r.lookup(&all).iter().all(|s| *s == Seen::At(T0)));
    r.store.close().await;
}

#[tokio::test]
async fn a_failed_commit_mid_seal_loses_nothing_and_reopens_whole() {
    let dir = tempfile::tempdir().unwrap();
    let r = Rig::new(dir.path()).await;
    let before: Vec<u128> = (0..20u8).map(digest).collect();
    for d in &before {
        r.accept(&[*d]).await.unwrap();
    }
    // The disk fails while maintenance and a request are under way.
    r.faults.fail();
    assert!(r.accept(&[digest(100)]).await.is_err());
    let _ = r.store.maintain().await;
    r.faults.heal();
    r.ready().await;
    // Everything acknowledged is still a duplicate; the failed one is new.
    assert!(r.lookup(&before).iter().all(|s| *s == Seen::At(T0)));
    assert_eq!(r.lookup(&[digest(100)]), vec![Seen::No]);
    r.accept(&[digest(100)]).await.unwrap();
    r.settle().await;
    assert_eq!(r.lookup(&[digest(100)]), vec![Seen::At(T0)]);
    r.store.close().await;
}

/// The version byte of each run's filter (row 0 of its `dedup_filters` rows).
fn filter_versions(path: &Path) -> Vec<u8> {
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(sluice::store::dedup::DEDUP_FILTERS).unwrap();
    t.iter()
        .unwrap()
        .map(|r| r.unwrap())
        .filter(|(k, _)| k.value().1 == 0)
        .map(|(_, v)| v.value()[0])
        .collect()
}

/// A store written before schema 3 has Bloom filters (format 2; format 1 before it,
/// whose reading the Bloom filter's own tests cover) for its runs.
/// This build opens it (and says schema 3 from then on), answers every digest in those
/// runs as a duplicate through their Bloom filters, gives the runs it writes binary
/// fuse filters (format 3), and a merge of old runs writes a fuse filter in their
/// place. Nothing is lost on the way.
#[tokio::test]
async fn a_store_with_bloom_filters_from_before_schema_3_keeps_answering() {
    use redb::ReadableTable;
    use sluice::store::dedup::bloom::Bloom;
    use sluice::store::dedup::{DEDUP_FILTERS, DEDUP_META, RunState, decode_meta};
    let dir = tempfile::tempdir().unwrap();
    let mut r = Rig::new(dir.path()).await;
    let old: Vec<u128> = (0..40u8).map(digest).collect();
    for d in &old {
        r.accept(&[*d]).await.unwrap();
    }
    r.settle().await;
    r.store.close().await;
    let fuse = filter_versions(&r.path);
    assert!(!fuse.is_empty() && fuse.iter().all(|v| *v == 3), "{fuse:?}");

    // Rewrite the file as a schema-2 build left it: each live run's filter a Bloom
    // filter (of every old digest: a superset only adds "maybe"s, which the disk
    // check answers), and the schema version 2.
    {
        let db = redb::Database::open(&r.path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta = txn.open_table(DEDUP_META).unwrap();
            let live: Vec<u64> = meta
                .iter()
                .unwrap()
                .map(|row| row.unwrap())
                .filter(|(_, v)| decode_meta(v.value()).is_some_and(|m| m.state == RunState::Live))
                .map(|(k, _)| k.value())
                .collect();
            assert!(live.len() > 1, "runs to rewrite: {live:?}");
            let mut filters = txn.open_table(DEDUP_FILTERS).unwrap();
            for run in live {
                filters
                    .retain_in((run, 0u32)..=(run, u32::MAX), |_, _| false)
                    .unwrap();
                let mut b = Bloom::with_capacity(old.len() as u64, run);
                for d in &old {
                    b.insert(*d);
                }
                let mut next = Some(0);
                while let Some(from) = next {
                    next = b
                        .write_rows(1, from, 4, |i, row| {
                            filters.insert((run, i), row)?;
                            Ok(())
                        })
                        .unwrap();
                }
            }
            let mut m = txn.open_table(sluice::store::META).unwrap();
            m.insert("schema_version", 2u32.to_le_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let bloom = filter_versions(&r.path);
    assert!(bloom.iter().all(|v| *v == 2), "{bloom:?}");

    // Opened by this build: every old digest is a duplicate through the Bloom filters.
    r.reopen().await;
    assert!(r.lookup(&old).iter().all(|s| *s == Seen::At(T0)));
    let version = r
        .store
        .read(|txn| {
            let m = txn.open_table(sluice::store::META)?;
            let v = m.get("schema_version")?.expect("a version");
            Ok(u32::from_le_bytes(v.value().try_into().expect("u32")))
        })
        .unwrap();
    assert_eq!(version, 3);

    // New digests seal into runs with fuse filters, beside the old Bloom ones (until
    // merges reach the old runs).
    let kinds = |r: &Rig| {
        r.store
            .read(|txn| {
                let t = txn.open_table(DEDUP_FILTERS)?;
                let mut v: Vec<u8> = Vec::new();
                for row in t.iter()? {
                    let (k, val) = row?;
                    if k.value().1 == 0 {
                        v.push(val.value()[0]);
                    }
                }
                v.sort_unstable();
                v.dedup();
                Ok(v)
            })
            .unwrap()
    };
    let new: Vec<u128> = (100..120u8).map(digest).collect();
    let mut side_by_side = false;
    for d in &new {
        r.accept(&[*d]).await.unwrap();
        r.settle().await;
        side_by_side |= kinds(&r) == vec![2, 3];
    }
    assert!(
        side_by_side,
        "old runs' Bloom filters were never beside new runs' fuse filters"
    );
    let both = r.lookup(&old.iter().chain(&new).copied().collect::<Vec<_>>());
    assert!(both.iter().all(|s| *s == Seen::At(T0)), "{both:?}");
    // The epoch ends: its runs, old and new, merge into one with a fuse filter.
    r.clock.advance_ms(10_000);
    r.settle().await;
    assert_eq!(r.index.stats().1, 1, "a closed epoch is one run");
    r.store.close().await;
    assert_eq!(filter_versions(&r.path), vec![3]);
    r.reopen().await;
    let all: Vec<u128> = old.iter().chain(&new).copied().collect();
    assert!(r.lookup(&all).iter().all(|s| *s == Seen::At(T0)));
    assert_eq!(r.lookup(&[digest(200)]), vec![Seen::No]);
    r.store.close().await;
}
