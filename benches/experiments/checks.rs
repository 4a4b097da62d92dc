//! Throwaway bench (not built: copy it to `benches/` with a `[[bench]]` entry, harness
//! false): the cost of one dedup check (a filter's "maybe") against runs of a 100 M
//! window in a real redb file. Writes nine runs shaped as the soak's (3.7 GB) to
//! `checks.redb` in `SLUICE_CHECKS_DIR` (the system temp dir), keeps the file for the
//! next run (delete it after), then times `SLUICE_CHECKS_N` (200,000) checks of
//! digests in no run, three rounds: each with a read transaction of its own, 100 to a
//! transaction, and the transaction alone. `SLUICE_CHECKS_CACHE` sets redb's cache
//! (64 MiB, the daemon's default); `SLUICE_CHECKS_WRITER=1` commits 100 rows of 400
//! bytes in a loop on another thread meanwhile. Wall time and the checking thread's CPU
//! time (`/proc/thread-self/stat`) per check.

#![allow(clippy::pedantic)]

use std::time::Instant;

use redb::{Database, ReadableDatabase};
use sluice::store::dedup::Mark;
use sluice::store::dedup::runs::{DEDUP_RUNS, find, write_blocks};

mod support;

use support::{RUNS_100M as RUNS, Stream};

fn main() {
    if support::filters().iter().any(|f| f == "--list") {
        return;
    }
    let scale: u64 = support::num("SLUICE_CHECKS_SCALE", 1u64);
    let cache: usize = support::num("SLUICE_CHECKS_CACHE", 64usize << 20);
    let dir = std::env::var("SLUICE_CHECKS_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().to_string_lossy().into_owned());
    let path = std::path::Path::new(&dir).join("checks.redb");
    let exists = path.exists();
    let db = Database::builder()
        .set_cache_size(cache)
        .create(&path)
        .expect("db");
    let mut s = Stream(0x1234_5678_9ABC_DEF0_0FED_CBA9_8765_4321);
    if !exists {
        let t = Instant::now();
        for (j, &n) in RUNS.iter().enumerate() {
            let n = n / scale;
            let mut v: Vec<u128> = (0..n).map(|_| s.next()).collect();
            v.sort_unstable();
            let entries: Vec<(u128, Mark)> = v
                .into_iter()
                .map(|d| (d, Mark { ms: 1, seq: 1 }))
                .collect();
            for chunk in entries.chunks(120 * 4096) {
                let w = db.begin_write().expect("w");
                {
                    let mut t = w.open_table(DEDUP_RUNS).expect("t");
                    write_blocks(&mut t, j as u64 + 1, chunk).expect("write");
                }
                w.commit().expect("commit");
            }
            println!("run {} written ({:.1} s)", j + 1, t.elapsed().as_secs_f64());
        }
    }
    let n: usize = support::num("SLUICE_CHECKS_N", 200_000usize);
    let asks: Vec<(u64, u128)> = (0..n)
        .map(|i| ((i % RUNS.len()) as u64 + 1, s.next()))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let db = std::sync::Arc::new(db);
    let writer = support::flag("SLUICE_CHECKS_WRITER").then(|| {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            const EV: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("ev");
            let mut k = 0u64;
            let mut commits = 0u64;
            let body = vec![7u8; 400];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let w = db.begin_write().expect("w");
                {
                    let mut t = w.open_table(EV).expect("t");
                    for _ in 0..100 {
                        t.insert(k, body.as_slice()).expect("i");
                        k += 1;
                    }
                }
                w.commit().expect("c");
                commits += 1;
            }
            commits
        })
    });
    let cpu = || {
        let st = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        let f: Vec<u64> = st
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_default();
        (f[10] + f[11]) as f64 * 1e7
    };
    for round in 0..3 {
        let c0 = cpu();
        // One read transaction and table per check.
        let t = Instant::now();
        let mut found = 0;
        for &(r, d) in &asks {
            let txn = db.begin_read().expect("r");
            let tab = txn.open_table(DEDUP_RUNS).expect("t");
            found += usize::from(find(&tab, r, d).expect("find").is_some());
        }
        let per = t.elapsed().as_nanos() as f64 / n as f64;
        let per_cpu = (cpu() - c0) / n as f64;
        // One per 100 checks.
        let t = Instant::now();
        for c in asks.chunks(100) {
            let txn = db.begin_read().expect("r");
            let tab = txn.open_table(DEDUP_RUNS).expect("t");
            for &(r, d) in c {
                found += usize::from(find(&tab, r, d).expect("find").is_some());
            }
        }
        let batched = t.elapsed().as_nanos() as f64 / n as f64;
        // Transaction alone.
        let t = Instant::now();
        for _ in 0..n {
            let txn = db.begin_read().expect("r");
            let _tab = txn.open_table(DEDUP_RUNS).expect("t");
        }
        let txn_only = t.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "round {round}: {per:.0} ns ({per_cpu:.0} ns cpu) a check with its own txn; {batched:.0} ns in txns of 100; txn+open alone {txn_only:.0} ns; found {found}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(w) = writer {
        println!("writer commits: {}", w.join().expect("writer"));
    }
}

