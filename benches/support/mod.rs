//! What the bench binaries share: settings from the environment, name filters, temp
//! directories, the wall clock and the median of repeated runs; `wrk` and its script
//! ([`wrk`]); the group-fsync writer of the durable peers ([`fsync`]); runtimes and
//! servers on loopback ([`serve`]).
#![allow(dead_code)]

pub mod fsync;
pub mod serve;
pub mod wrk;

use std::path::PathBuf;

/// A number from the environment variable `name`, else `default` (said on stderr when
/// the variable is set but not a number).
pub fn num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a number; using the default");
            default
        }),
        Err(_) => default,
    }
}

/// The nice value of every server's HTTP threads in this run: the daemon's own
/// ([`sluice::app::HTTP_NICE`]) unless `SLUICE_BENCH_HTTP_NICE` says otherwise.
pub fn http_nice() -> i32 {
    num("SLUICE_BENCH_HTTP_NICE", sluice::app::HTTP_NICE)
}

/// Whether the environment variable `name` is `1` or `true`.
pub fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v == "true")
}

/// The name filters of the command line: cargo passes `--bench`; anything not starting
/// with `-` is a filter.
pub fn filters() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect()
}

/// Whether the scenario `name` runs: no filters, or one that `name` contains.
pub fn wants(filters: &[String], name: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// A temp directory, under `dir` when given (`SLUICE_BENCH_DIR`).
pub fn tempdir(dir: &Option<PathBuf>) -> tempfile::TempDir {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).expect("create SLUICE_BENCH_DIR");
            tempfile::tempdir_in(d)
        }
        None => tempfile::tempdir(),
    }
    .expect("create a temp dir")
}

/// The wall clock in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// The wall clock in unix microseconds.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

/// Clock ticks the whole machine spent busy so far: every CPU time of `/proc/stat`'s
/// first line (user to steal) but idle and iowait. Two readings apart give the cores
/// in use between them.
pub fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = cpu.iter().take(8).sum();
    Some(total - (cpu.get(3)? + cpu.get(4)?))
}

/// The median of `v` (the mean of the middle two for an even count); None when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The dedup runs of a 100 M window after the soak's fill (digests per run): the
/// shape the probe bench (and `experiments/checks.rs`) build.
pub const RUNS_100M: [u64; 9] = [
    28_900_000, 28_900_000, 28_900_000, 7_200_000, 7_200_000, 1_800_000, 1_800_000, 450_000,
    450_000,
];

/// A fixed stream of uniform 128-bit values (digests are SHA-256 prefixes).
pub struct Stream(pub u128);

impl Stream {
    pub fn next(&mut self) -> u128 {
        self.0 = self
            .0
            .wrapping_mul(0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645)
            .wrapping_add(0x5851_F42D_4C95_7F2D_1405_7B7E_F767_814F);
        self.0 ^ (self.0 >> 64)
    }
}
