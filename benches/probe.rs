//! How fast a dedup look-up asks the runs' filters with a full window: the filters of a
//! 100 M-digest window in memory (the shape the soak ends with: three runs of 28.9 M
//! digests, two of 7.2 M, two of 1.8 M, two of 450 k), asked for batches of 100
//! digests that are in none of them, as a 100-event request's look-up asks them. Both
//! kinds of filter, built from the same sorted digests: the blocked Bloom filters of
//! format 2 (12, 14 and 18 bits a key by run size) and the binary fuse filters of
//! format 3 (10-, 12- and 15-bit fingerprints), each with its memory and the time it
//! took to build (a seal's and a merge's filter is built on the writer's thread).
//!
//! The ways of asking, each over the same batches, newest filter first:
//! - `floor`: only the pass that loads what each digest's probe reads first
//!   ([`Filter::touch`]): the cache misses alone, nothing tested. The ceiling the others
//!   are measured against.
//! - `one pass`: [`Filter::may_contain`] for every digest, filter by filter.
//! - `touch, then probe, filter by filter`: each filter's loading pass, then its
//!   `may_contain`, one filter after the other: what the index's look-up does for
//!   many digests (a fuse filter skips the loading pass: [`Filter::wants_touch`]).
//! - `touch all, then probe`: the loading pass over every filter, then `may_contain`
//!   filter by filter.
//! - The last two again for one-digest look-ups (a single-event request), where
//!   loading filter by filter leaves one cache miss in flight at a time: the index
//!   loads every filter first for a look-up of fewer than 32 digests.
//!
//! It prints nanoseconds per digest (all nine filters asked), the ratio of each to the
//! floor, the share of digests some filter said "maybe" for (each is a disk check in a
//! look-up), and the CPU other processes took meanwhile (over 0.1 cores skews it).
//!
//! `cargo bench --bench probe`. Environment: `SLUICE_PROBE_BATCHES` (20,000) batches.

#![allow(clippy::pedantic)]

use std::hint::black_box;
use std::time::Instant;

use sluice::store::dedup::bloom::Bloom;
use sluice::store::dedup::filter::Filter;

mod support;

use support::{RUNS_100M as RUNS, Stream};

/// Busy ticks of the whole machine and of this process (clock ticks).
fn ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let all: u64 = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| ![3, 4].contains(i)) // idle, iowait
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = me
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let own = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    (all, own)
}

fn main() {
    if support::filters().iter().any(|f| f == "--list") {
        return;
    }
    let batches_n: usize = support::num("SLUICE_PROBE_BATCHES", 20_000usize).max(1);
    let mut s = Stream(0x1234_5678_9ABC_DEF0_0FED_CBA9_8765_4321);
    let t = Instant::now();
    // Each run's digests, sorted as a seal's and a merge's come, into both kinds.
    let mut kinds: Vec<(&str, Vec<Filter>)> = vec![
        ("Bloom filters (format 2)", Vec::new()),
        ("binary fuse filters (format 3)", Vec::new()),
    ];
    let mut built = [0f64; 2];
    for (j, &n) in RUNS.iter().enumerate() {
        let mut keys: Vec<u128> = (0..n).map(|_| s.next()).collect();
        keys.sort_unstable();
        let seed = j as u64 + 1;
        let t = Instant::now();
        let mut bloom = Filter::Bloom(Bloom::with_capacity(n, seed));
        for &d in &keys {
            bloom.insert(d);
        }
        built[0] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut sorted = Filter::for_run(n, seed);
        for &d in &keys {
            sorted.insert(d);
        }
        sorted.finish();
        built[1] += t.elapsed().as_secs_f64();
        kinds[0].1.push(bloom);
        kinds[1].1.push(sorted);
    }
    println!(
        "sluice probe: {} runs, {} digests (built in {:.1} s); {} batches of 100 new digests",
        RUNS.len(),
        RUNS.iter().sum::<u64>(),
        t.elapsed().as_secs_f64(),
        batches_n
    );
    let batches: Vec<Vec<u128>> = (0..batches_n)
        .map(|_| (0..100).map(|_| s.next()).collect())
        .collect();
    let digests = (batches_n * 100) as f64;

    // `size` digests a look-up; `touch_first`: every filter's blocks loaded before any
    // is asked (the look-up now), else each filter's loaded, then asked, in turn.
    let run = |filters: &[Filter],
               touch: bool,
               probe: bool,
               touch_first: bool,
               size: usize|
     -> (f64, usize) {
        let t = Instant::now();
        let mut maybes = 0usize;
        for b in batches.iter().flat_map(|b| b.chunks(size)) {
            let open: Vec<usize> = (0..b.len()).collect();
            if touch && touch_first {
                black_box(
                    filters
                        .iter()
                        .rev()
                        .fold(0u64, |a, f| open.iter().fold(a, |a, &i| a ^ f.touch(b[i]))),
                );
            }
            for f in filters.iter().rev() {
                if touch && !touch_first && (f.wants_touch() || !probe) {
                    black_box(open.iter().fold(0u64, |a, &i| a ^ f.touch(b[i])));
                }
                if probe {
                    let maybe: Vec<usize> = open
                        .iter()
                        .copied()
                        .filter(|&i| f.may_contain(b[i]))
                        .collect();
                    maybes += maybe.len();
                }
            }
        }
        (t.elapsed().as_nanos() as f64 / digests, maybes)
    };

    for (k, (kind, filters)) in kinds.iter().enumerate() {
        let bytes: usize = filters.iter().map(Filter::bytes).sum();
        let keys = RUNS.iter().sum::<u64>() as f64;
        println!(
            "\n{kind}: {:.1} MB, built in {:.1} ns a key",
            bytes as f64 / 1e6,
            built[k] * 1e9 / keys
        );
        measure(filters, &run, digests);
    }
}

type Pass<'a> = dyn Fn(&[Filter], bool, bool, bool, usize) -> (f64, usize) + 'a;

/// Every way of asking, three times each over the same batches: the medians, each
/// against the floor, and the share of "maybe"s.
fn measure(filters: &[Filter], run: &Pass<'_>, digests: f64) {
    let measured = Instant::now();
    let (all0, own0) = ticks();
    let mut rows: Vec<(&str, Vec<f64>, usize)> = vec![
        ("floor (touch only)", Vec::new(), 0),
        ("one pass (may_contain)", Vec::new(), 0),
        ("touch, then probe, filter by filter", Vec::new(), 0),
        ("touch all, then probe", Vec::new(), 0),
        ("1-digest: filter by filter", Vec::new(), 0),
        ("1-digest: touch all, then probe", Vec::new(), 0),
    ];
    let modes = [
        (true, false, false, 100),
        (false, true, false, 100),
        (true, true, false, 100),
        (true, true, true, 100),
        (true, true, false, 1),
        (true, true, true, 1),
    ];
    for _ in 0..3 {
        for (k, (touch, probe, first, size)) in modes.into_iter().enumerate() {
            let (ns, maybes) = run(filters, touch, probe, first, size);
            rows[k].1.push(ns);
            rows[k].2 = maybes;
        }
    }
    let (all1, own1) = ticks();
    let secs = measured.elapsed().as_secs_f64().max(1e-9);
    let others = (all1 - all0).saturating_sub(own1 - own0) as f64 / 100.0 / secs;
    let median = |v: &[f64]| support::median(v).expect("three runs");
    let floor = median(&rows[0].1);
    for (name, ns, maybes) in &rows {
        let m = median(ns);
        let maybe_note = if *maybes > 0 {
            format!(
                "; a \"maybe\" for {:.2}% of digests",
                100.0 * *maybes as f64 / digests
            )
        } else {
            String::new()
        };
        println!(
            "  {name:<37} {m:>7.1} ns per digest (median of 3: {}), {:.2} x the floor{maybe_note}",
            ns.iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(" / "),
            m / floor
        );
    }
    println!("  other processes: {others:.2} cores (over 0.1 skews the figures)");
}
