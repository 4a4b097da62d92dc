//! Soak benchmark (issue 12, "Bounded memory"): the release daemon's memory, restart time
//! and first answers, ingest rate and delivery drain with a full dedup window and a large
//! backlog for one paused destination.
//!
//! Run: `cargo bench --bench soak` (the full run: 100 M events; at the rates seen on a
//! 2-core box 5–8 minutes of fill, about 15 of rate windows and rounds, 6–10 of drain,
//! and about 10 GB of disk, checked as it goes). For a quick look:
//! `SLUICE_SOAK_EVENTS=2000000 SLUICE_SOAK_BACKLOG=200000 cargo bench --bench soak`.
//!
//! The daemon is the real release binary (`sluice serve --config <tmp>/sluice.toml`) run
//! as a child process on a temp dir, so `VmRSS` and `VmHWM` of `/proc/<pid>/status` are
//! its own. Its config: an admin token, 1,000 events per request, workspace `bulk`
//! (`enterprise`, every limit 0 = unlimited) with no destination (housekeeping trims its
//! log each minute: nothing reads it), workspace `shop` (the same) with one `webhook`
//! destination `hook` (one event per request, the platform's maximum; `concurrency` 64,
//! pacing lifted) pointing at a do-nothing receiver in this process that answers
//! `200 {}` and counts the event ids it gets. `hook` is paused through the admin API
//! before anything is sent, so `shop`'s events pile up. Every other setting is the
//! default (dedup window 48 h, redb cache 64 MiB). The load generator (reqwest) and the
//! receiver run on their own tokio runtimes (2 workers each) in this process. Events are
//! small and realistic (about 300 bytes of JSON: unique `event_id`, one of five
//! `event_name`s, `event_time` now, `action_source`, `event_source_url`, `user_data`
//! with an email and an IP, `custom_data` value and currency).
//!
//! Phases, each printed when it ends with elapsed time, events accepted so far, the
//! daemon's VmRSS and VmHWM, the store file's size and the CPU it took:
//! 1. `empty rates`: single events for `SLUICE_SOAK_RATE_SECS` s, then 100-event batches
//!    for as long, both at 64 connections, into `bulk`, each after a 1 s warm-up (that
//!    starts 1 s past a minute mark when the window would hold one): events/s and answer times
//!    (p50 / p99 / max), with the CPU other processes took meanwhile and the dedup
//!    merges the daemon finished (from its log: how many, entries, levels) and the bytes
//!    it had the kernel read from storage (`/proc/<pid>/io`: page-cache hits are not
//!    counted; with a full store these are the dedup checks of filters' "maybe"s on
//!    pages of the file the page cache no longer holds).
//!    - Thirty seconds by default: the open epoch's merges rewrite 1.7 Mi, 7 Mi and
//!      28 Mi digests about every 7, 29 and 115 s of batches at these rates, so a 10 s
//!      window measured a level-2 merge or not depending on where the fill had left
//!      the levels, and the empty store's ten seconds never reached one.
//!    - Aligned to the minute: the daemon's housekeeping runs on the minute marks and
//!      asks for `bulk`'s log to be trimmed of everything accepted before the mark, which
//!      the writer then deletes beside the next commits (twice what each appends). A
//!      window holding a mark measures ingest plus the trim of up to a minute of
//!      ingest; one without measures ingest alone. Unaligned, which window got a mark
//!      depended on when the run started: in one run the full store's batch window held
//!      one (about 5.7 M events to trim) and the empty store's did not. Aligned, no
//!      window holds a mark: one that would starts 1 s after that mark instead (a
//!      window of at most 57 s then ends before the next). Trimming a minute of the log
//!      is the same work whatever the dedup window holds.
//! 2. `fill`: `SLUICE_SOAK_BACKLOG` events to `shop` (queued for the paused `hook`), then
//!    `bulk` until `SLUICE_SOAK_EVENTS` events in all are inside the dedup window (the
//!    rate phases' events count), in 1,000-event batches at `SLUICE_SOAK_CONNS`
//!    connections. A progress line every 5 M events (every tenth of the fill when that
//!    is less): events, rate, answer times, VmRSS, file size, free disk. Free disk is
//!    checked before each step: filling stops (and says how far it got) when less than
//!    5 GiB would remain after the step.
//! 3. `full rates`: phase 1 again against the full store, twice: `just filled` right
//!    after the fill, then — once the daemon's housekeeping pass on the next minute mark
//!    has run and the daemon is idle (under 0.05 of a core over 2 s, at most 10 minutes
//!    in all; the time it took is printed) — `full 1`. The fill puts in minutes what a
//!    store of that size gathers over the 48 h window, so the dedup merges and log trims
//!    it deferred run in the first measurement; a store filled at any real rate does
//!    them as it goes, which is what the second one measures. The minute mark matters:
//!    that pass asks for `bulk`'s log to be trimmed of the fill's last minute (millions
//!    of events, where a store at the real rate has a minute of its own ingest), and
//!    without waiting for it that trim ran inside the full measurement or not,
//!    depending on where the minute mark fell. `full 1` is aligned to the minute as in
//!    phase 1; `just filled` is not (it is taken right after the fill).
//! 4. Rounds (`SLUICE_SOAK_ROUNDS`, 3): in turn, a new empty store (`empty again k`: a
//!    second daemon on a new store in the same directory, the same config otherwise,
//!    while the full store's daemon idles beside it after the same settle wait; that
//!    store is deleted after), then the full store again (`full k+1`), ending on an
//!    empty store: E0 F1 E1 F2 E2 F3 E3, E0 being phase 1. Each full window is divided
//!    by the mean of the empty windows either side of it, and the target is checked on
//!    the median of those ratios. Why: one empty window against one full window decided
//!    little, because the box moves. With one build on one day the empty store's batch
//!    rate was 270–325 k events/s from run to run, and within one run 314,685 at the
//!    start against 273,001 after the full store's windows, or 240,210 against 303,019:
//!    a single ratio moved by ±0.1 with the box alone. Bracketed windows minutes apart
//!    move together, and with three rounds or more the median drops an odd one. What
//!    differs between the windows, beyond the store: in an empty window the idle full
//!    daemon counts among the other processes (its CPU shows there); E0 had no daemon
//!    beside it; the full windows after `full 1` come after a few idle minutes, in which
//!    this box's page cache gives back part of the store file (each window prints what
//!    the daemon read from storage); and each full window adds about 9 M events to the
//!    window (about 110 M at `full 1`, about 135 M after the third). The full store's daemon
//!    is stopped (its exit timed) after the last round.
//! 5. `restart`: the full store's daemon started again on its store; time from
//!    spawn to the first `GET /readyz` 200 (polled every 20 ms), VmRSS at ready; then the
//!    first `GET /metrics`, the first `GET /v1/destinations` and the first
//!    `sluice destinations status` (CLI subprocess), each timed once, and VmRSS after.
//! 6. `drain`: `POST /v1/destinations/hook/resume`; time until every queued event has
//!    arrived at the receiver, then until `sluice_queue_depth` of `hook` reads 0; the
//!    drain rate and the peak RSS during the drain (VmHWM reset through
//!    `/proc/<pid>/clear_refs` before it, and sampled RSS).
//! 7. A summary: every figure with its target and pass/fail; bytes per event in RAM
//!    (VmRSS at the end of the fill ÷ events in the window) and on disk (the file's
//!    allocated blocks, and its length, ÷ events in the window; `bulk`'s log is trimmed
//!    each minute, its dedup index is not); CPU taken by other processes and by the
//!    daemon and this bench during the run.
//!
//! Targets: RSS ≤ 512 MiB throughout (end of fill, high-water mark, after restart,
//! during the drain); restart to ready ≤ 5 s; each first answer after the restart ≤ 1 s;
//! ingest into the full store (settled) ≥ 0.9 × the rate into an empty one (single
//! events and 100-event batches; the median of the rounds of phase 4); the drain at
//! least as fast as the delivery bench's drain (`SLUICE_SOAK_DRAIN_REF`, 17,000
//! events/s: that bench drains 300 k at about 17–25 k events/s on the 2-core box). A
//! missed target is reported, exit 0; a failed correctness check exits 1: an ingest
//! answer other than 202, a 202 whose `accepted` is not the number of events sent, a
//! transport error, a daemon that does not stop with exit 0, a queue depth after the
//! restart other than what was queued, fewer distinct events delivered than queued, ids
//! the receiver did not expect.
//!
//! Environment: `SLUICE_SOAK_EVENTS` (100,000,000) events in the dedup window,
//! `SLUICE_SOAK_BACKLOG` (10,000,000) events queued for `hook`, `SLUICE_SOAK_CONNS` (8)
//! connections of the fill, `SLUICE_SOAK_RATE_SECS` (30) seconds per rate measurement,
//! `SLUICE_SOAK_ROUNDS` (3) rounds of phase 4, `SLUICE_SOAK_DRAIN_REF` (17000)
//! events/s the drain must reach, `SLUICE_BENCH_DIR` (where the temp dir goes; default
//! the system temp dir; it is deleted at the end).
//! The daemon's log is `<tmp>/daemon.log`; its WARN/ERROR lines are counted at the end,
//! and so are those of the empty stores' daemons of phase 4 (`<tmp>/empty-again.log`,
//! read and deleted after each round).
// Benches measure and print; the pedantic lints the library follows would cost
// them clarity.
#![allow(clippy::pedantic)]

#[path = "soak/daemon.rs"]
mod daemon;
#[path = "soak/load.rs"]
mod load;
#[path = "soak/phases.rs"]
mod phases;
#[path = "soak/procfs.rs"]
mod procfs;
#[path = "soak/report.rs"]
mod report;
mod support;

use daemon::*;
use load::*;
use phases::*;
use procfs::*;
use report::*;

use support::num;
use support::serve::{Served, runtime};

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::Value;

const ADMIN_TOKEN: &str = "soak_admin_token";
const BULK_KEY: &str = "soak_bulk_key";
const SHOP_KEY: &str = "soak_shop_key";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HOOK: &str = "hook";
/// Event id prefix of `shop`'s backlog: `q-<index>`.
const QUEUED_PREFIX: &str = "q";
const RATE_CONNS: usize = 64;
const RATE_BATCH: u64 = 100;
const FILL_BATCH: u64 = 1000;
const PROGRESS_STEP: u64 = 5_000_000;
const MIN_FREE_BYTES: u64 = 5 << 30;
const RSS_TARGET_KB: u64 = 512 * 1024;
const READY_TARGET: Duration = Duration::from_secs(5);
const FIRST_ANSWER_TARGET: Duration = Duration::from_secs(1);
const RATE_RATIO_TARGET: f64 = 0.9;
/// No new delivery for this long during the drain: give up.
const DRAIN_STALL: Duration = Duration::from_secs(120);

struct Settings {
    events: u64,
    backlog: u64,
    conns: usize,
    rate_secs: u64,
    rounds: usize,
    drain_ref: f64,
    dir: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            events: num("SLUICE_SOAK_EVENTS", 100_000_000u64).max(1),
            backlog: num("SLUICE_SOAK_BACKLOG", 10_000_000u64),
            conns: num("SLUICE_SOAK_CONNS", 8usize).max(1),
            rate_secs: num("SLUICE_SOAK_RATE_SECS", 30u64).max(1),
            rounds: num("SLUICE_SOAK_ROUNDS", 3usize).max(1),
            drain_ref: num("SLUICE_SOAK_DRAIN_REF", 17_000f64),
            dir: std::env::var_os("SLUICE_BENCH_DIR").map(PathBuf::from),
        }
    }
}

// ---------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let s = Settings::from_env();
    let dir = support::tempdir(&s.dir);
    let store = dir.path().join("sluice.redb");
    let config = dir.path().join("sluice.toml");
    let log = dir.path().join("daemon.log");
    let port = free_port();
    let receiver = Receiver::start(s.backlog);
    write_config(&config, &store, port, &receiver.url);
    let mut sample = String::new();
    push_event(&mut sample, "f", 12_345_678, now_secs());

    let mut run = Run {
        t0: Instant::now(),
        daemon: Daemon::new(config.clone(), log.clone(), port),
        store: store.clone(),
        dir: dir.path().to_path_buf(),
        accepted: 0,
        checks: Checks::default(),
        summary: Summary::default(),
        second_noisy: Vec::new(),
        s,
    };
    println!(
        "sluice soak: {} events in the dedup window, {} queued for the paused `{HOOK}`, fill at {} connections x {FILL_BATCH} events, \
         rates over {} s at {RATE_CONNS} connections; {} CPUs; temp dir {} ({} free); events ~{} bytes of JSON; daemon {}",
        fmt_int(run.s.events),
        fmt_int(run.s.backlog),
        run.s.conns,
        run.s.rate_secs,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        run.dir.display(),
        free_disk(&run.dir).map_or("?".into(), bytes_h),
        sample.len(),
        run.daemon.bin.display(),
    );
    let code = soak(&mut run, &receiver);
    let _ = run.daemon.stop(Duration::from_secs(30));
    receiver.stop();
    drop(run);
    drop(dir);
    code
}

fn soak(run: &mut Run, receiver: &Receiver) -> ExitCode {
    // ----- start, pause the hook
    if let Err(e) = run.daemon.spawn() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let run_cpu0 = cpu_snap(&run.daemon);
    let load = Load::new(&run.daemon.base, run.s.conns);
    let admin = admin_client();
    match wait_ready(&load, &run.daemon, run.t0, Duration::from_secs(60)) {
        Ok(t) => println!("daemon ready in {} (pid {})", fmt_dur(t), run.daemon.pid),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let pause_url = format!("{}/v1/destinations/{HOOK}/pause", run.daemon.base);
    let t = Instant::now();
    let paused = loop {
        match call(
            &load,
            &admin,
            "POST",
            &pause_url,
            Some(r#"{"reason":"soak"}"#),
        ) {
            // 409 not_running: the worker is still starting.
            Ok(a)
                if a.status == 409
                    && a.body.contains("not_running")
                    && t.elapsed() < Duration::from_secs(30) =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(a) => break a.status == 200,
            Err(e) => {
                eprintln!("error: {e}");
                break false;
            }
        }
    };
    run.checks.check(
        paused,
        format!("`{HOOK}` paused through the admin API before any event"),
    );
    if !paused {
        return finish(run);
    }

    // ----- a. empty rates
    println!("\n== a. empty rates (into `bulk`)");
    let empty_start = run.rates(&load, "empty", "e", true);

    // ----- b. fill
    println!("\n== b. fill");
    let fill = fill(run, &load);
    if !run.checks.failures.is_empty() {
        return finish(run);
    }

    // ----- c. full rates: just filled, then with the upkeep the fill deferred done
    println!("\n== c. full rates (into `bulk`)");
    let filled = run.rates(&load, "just filled", "g", false);
    let settled = settle(run);
    let mut full = vec![run.rates(&load, "full 1", "h", true)];
    // The mark with the window as the issue sizes it: the fill and one full window.
    let hwm_full_1 = (run.daemon.mem().hwm_kb, run.accepted);

    // ----- d. rounds: a new empty store, then the full one again, in turn
    let mut empty = Vec::new();
    for k in 1..=run.s.rounds {
        println!(
            "\n== d{k}. empty rates again (a new empty store; the full store's daemon idle beside it)"
        );
        settle(run);
        let Some(e) = empty_again(run, receiver, k) else {
            return finish(run);
        };
        empty.push(e);
        if k < run.s.rounds {
            println!("\n== d{k}. full rates again");
            full.push(run.rates(
                &load,
                &format!("full {}", k + 1),
                &format!("h{}", k + 1),
                true,
            ));
        }
    }
    let hwm_first = run.daemon.mem().hwm_kb;
    let window_events = run.accepted;
    if !stop_full(run) {
        return finish(run);
    }

    // ----- e. restart
    println!("\n== e. restart (the full store's daemon started again)");
    let queued = fill.shop_accepted;
    let Some(Restart {
        ready,
        rss_ready,
        rss_after,
        first_rows,
    }) = restart(run, &load, queued)
    else {
        return finish(run);
    };

    // ----- f. drain
    println!("\n== f. drain");
    let drain = drain(run, &load, receiver, queued);
    let run_cpu = CpuUse::between(run_cpu0, cpu_snap(&run.daemon));

    // ----- g. summary
    println!("\n== g. summary");
    if fill.stopped_early {
        println!(
            "  NOTE: the fill stopped early for lack of disk: {} of {} events in the window",
            fmt_int(fill.window_events),
            fmt_int(run.s.events)
        );
    }
    let sm = &mut run.summary;
    sm.add(
        "events in the window at the end of the fill",
        fmt_int(fill.window_events),
        &format!("{} wanted", fmt_int(run.s.events)),
        None,
    );
    sm.add(
        "events in the window at the restart",
        fmt_int(window_events),
        "(+ the full rates' events)",
        None,
    );
    sm.add(
        "events queued for `hook`",
        fmt_int(queued),
        &format!("{} wanted", fmt_int(run.s.backlog)),
        None,
    );
    sm.rss("VmRSS at the end of the fill", fill.rss_end_kb);
    sm.rss(
        &format!(
            "VmHWM through the fill and `full 1` ({} events in the window)",
            fmt_int(hwm_full_1.1)
        ),
        hwm_full_1.0,
    );
    // Past the issue's window (the rounds add about 35 M events): shown, not checked.
    sm.add(
        &format!(
            "VmHWM through the rounds, before the restart ({} events in the window)",
            fmt_int(window_events)
        ),
        mib(hwm_first),
        "(past the window the issue sizes)",
        None,
    );
    sm.rss("VmRSS at ready after the restart", rss_ready);
    sm.rss("VmRSS after the first answers", rss_after);
    if let Some(d) = &drain {
        sm.rss("peak RSS during the drain", d.peak_kb);
    }
    sm.add(
        "restart: spawn to /readyz 200",
        fmt_dur(ready),
        "<= 5 s",
        Some(ready <= READY_TARGET),
    );
    for (what, took) in first_rows {
        sm.add(
            what,
            fmt_dur(took),
            "<= 1 s",
            Some(took <= FIRST_ANSWER_TARGET),
        );
    }
    sm.add(
        "upkeep after the fill: settled in",
        match settled {
            Some(d) => fmt_dur(d),
            None => format!("not within {}", fmt_dur(SETTLE_MAX)),
        },
        "-",
        None,
    );
    for (k, shape) in ["single events/s", "100-event batches events/s"]
        .into_iter()
        .enumerate()
    {
        let r = Rounds::of(&empty_start, &empty, &full, k);
        sm.add(
            &format!("{shape}: full ÷ the new empty stores either side (median)"),
            r.describe(),
            ">= 0.90",
            Some(r.median >= RATE_RATIO_TARGET),
        );
        sm.add(
            &format!("{shape}: full ÷ the empty store at the start"),
            r.against_start(),
            "-",
            None,
        );
        sm.add(
            &format!("{shape}: daemon CPU per event, full ÷ empty (medians)"),
            r.cpu(),
            "-",
            None,
        );
        sm.add(
            &format!("{shape}: just filled ÷ the empty store at the start"),
            filled[k].against(empty_start[k]),
            "-",
            None,
        );
    }
    if let Some(d) = &drain {
        sm.add(
            "drain rate (events/s)",
            fmt_rate(d.rate),
            &format!(
                ">= {} (delivery bench: ~17-25k/s)",
                fmt_rate(run.s.drain_ref)
            ),
            Some(d.rate >= run.s.drain_ref),
        );
    }
    sm.add(
        "fill rate (1000-event batches)",
        format!("{} events/s", fmt_rate(fill.rate)),
        "(none)",
        None,
    );
    sm.add(
        "RAM per event in the window",
        format!(
            "{:.2} B",
            fill.rss_end_kb as f64 * 1024.0 / fill.window_events.max(1) as f64
        ),
        "(VmRSS end of fill / events)",
        None,
    );
    sm.add(
        "disk per event in the window",
        format!(
            "{:.1} B ({:.1} B of file length)",
            fill.alloc_end as f64 / fill.window_events.max(1) as f64,
            fill.file_end as f64 / fill.window_events.max(1) as f64
        ),
        "(end of fill; bulk log trimmed each minute)",
        None,
    );
    sm.add(
        "store file at the end",
        store_size(&run.store),
        "(none)",
        None,
    );
    if let Some(u) = run_cpu {
        sm.add(
            "CPU of other processes (whole run)",
            format!("{:.2} cores", u.others),
            "(< 0.1: figures clean)",
            None,
        );
        sm.add(
            "CPU daemon / bench (whole run)",
            format!("{:.2} / {:.2} cores", u.daemon, u.bench),
            "(none)",
            None,
        );
    }
    finish(run)
}

struct Restart {
    ready: Duration,
    rss_ready: u64,
    rss_after: u64,
    first_rows: Vec<(&'static str, Duration)>,
}

/// SIGTERM to the full store's daemon, timed; false when it did not exit.
fn stop_full(run: &mut Run) -> bool {
    match run.daemon.stop(Duration::from_secs(60)) {
        Ok((took, status)) => {
            println!("  SIGTERM to exit: {} ({status})", fmt_dur(took));
            run.summary
                .add("stop on SIGTERM", fmt_dur(took), "(none)", None);
            run.checks.check(
                status.success(),
                format!("the daemon exits 0 on SIGTERM: {status}"),
            );
            true
        }
        Err(e) => {
            run.checks.check(false, e);
            false
        }
    }
}

/// Phase 1's rates again (round `k`), on a second daemon with a new empty store in the
/// run's directory, while the full store's daemon idles beside it (see the module doc:
/// the empty store measured in the same state of the box as the full one). The second
/// store is deleted after. None when that daemon did not start; one that does not stop
/// cleanly fails a correctness check.
fn empty_again(run: &mut Run, receiver: &Receiver, k: usize) -> Option<[Rate; 2]> {
    let store = run.dir.join("empty-again.redb");
    let config = run.dir.join("empty-again.toml");
    let log = run.dir.join("empty-again.log");
    let port = free_port();
    write_config(&config, &store, port, &receiver.url);
    let mut second = Daemon::new(config, log, port);
    if let Err(e) = second.spawn() {
        run.checks.check(false, e);
        return None;
    }
    let load = Load::new(&second.base, run.s.conns);
    if let Err(e) = wait_ready(&load, &second, Instant::now(), Duration::from_secs(60)) {
        run.checks.check(false, e);
        let _ = second.stop(Duration::from_secs(30));
        return None;
    }
    // The rates are taken on `run`'s daemon and store: the second ones stand in.
    let full = std::mem::replace(&mut run.daemon, second);
    let full_store = std::mem::replace(&mut run.store, store.clone());
    let accepted = run.accepted;
    run.accepted = 0;
    let rates = run.rates(&load, &format!("empty again {k}"), &format!("k{k}"), true);
    let mut second = std::mem::replace(&mut run.daemon, full);
    run.store = full_store;
    run.accepted = accepted;
    let stopped = second.stop(Duration::from_secs(30));
    // The run's CPU counts it as the daemon's, not as another process's.
    run.daemon.reaped_cpu += second.reaped_cpu;
    run.checks.check(
        stopped.as_ref().is_ok_and(|(_, s)| s.success()),
        format!("the second daemon exits 0 on SIGTERM: {stopped:?}"),
    );
    let text = std::fs::read_to_string(&second.log).unwrap_or_default();
    run.second_noisy.extend(
        noisy_lines(&text)
            .into_iter()
            .map(|l| format!("empty again {k}: {l}")),
    );
    let _ = std::fs::remove_file(&second.log);
    let _ = std::fs::remove_file(&store);
    let _ = std::fs::remove_file(store.with_extension("redb.journal"));
    Some(rates)
}

/// Starts the full store's daemon again (stopped by [`stop_full`]): time to ready and
/// the first answers.
fn restart(run: &mut Run, load: &Load, queued: u64) -> Option<Restart> {
    let before = cpu_snap(&run.daemon);
    let spawned = Instant::now();
    if let Err(e) = run.daemon.spawn() {
        run.checks.check(false, e);
        return None;
    }
    let ready = match wait_ready(load, &run.daemon, spawned, Duration::from_secs(600)) {
        Ok(t) => t,
        Err(e) => {
            run.checks.check(false, e);
            return None;
        }
    };
    let rss_ready = run.daemon.mem().rss_kb;
    println!(
        "  spawn to first /readyz 200: {} (pid {}), VmRSS at ready {}",
        fmt_dur(ready),
        run.daemon.pid,
        mib(rss_ready)
    );
    // Fresh clients: no connection kept from the first daemon.
    let fresh = admin_client();
    let metrics = call(
        load,
        &fresh,
        "GET",
        &format!("{}/metrics", run.daemon.base),
        None,
    );
    let dests = call(
        load,
        &admin_client(),
        "GET",
        &format!("{}/v1/destinations", run.daemon.base),
        None,
    );
    let cli_t0 = Instant::now();
    let cli = Command::new(&run.daemon.bin)
        .arg("destinations")
        .arg("--url")
        .arg(&run.daemon.base)
        .arg("--config")
        .arg(&run.daemon.config)
        .arg("status")
        .env_remove("SLUICE_API_KEY")
        .output();
    let cli_took = cli_t0.elapsed();
    let rss_after = run.daemon.mem().rss_kb;
    let mut first_rows = Vec::new();
    match &metrics {
        Ok(a) => {
            let depth = queue_depth(&a.body);
            println!(
                "  first GET /metrics: {} ({}; {} bytes; sluice_queue_depth{{hook}} {:?})",
                fmt_dur(a.took),
                a.status,
                a.body.len(),
                depth
            );
            run.checks.check(
                a.status == 200 && depth == Some(queued),
                format!(
                    "after the restart /metrics answers 200 ({}) with `{HOOK}`'s queue depth {depth:?} = events queued {queued}",
                    a.status
                ),
            );
            first_rows.push(("first GET /metrics", a.took));
        }
        Err(e) => run.checks.check(false, format!("first GET /metrics: {e}")),
    }
    match &dests {
        Ok(a) => {
            let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
            let hook = v["destinations"]
                .as_array()
                .and_then(|l| l.iter().find(|d| d["destination_id"] == HOOK))
                .cloned()
                .unwrap_or(Value::Null);
            println!(
                "  first GET /v1/destinations: {} ({}; `{HOOK}` state {}, queue_depth {}, consumer_lag_seconds {})",
                fmt_dur(a.took),
                a.status,
                hook["state"],
                hook["queue_depth"],
                hook["consumer_lag_seconds"]
            );
            run.checks.check(
                a.status == 200 && hook["state"] == "paused" && hook["queue_depth"].as_u64() == Some(queued),
                format!(
                    "after the restart GET /v1/destinations answers 200 ({}) with `{HOOK}` paused ({}) holding {} = {queued} events",
                    a.status, hook["state"], hook["queue_depth"]
                ),
            );
            first_rows.push(("first GET /v1/destinations", a.took));
        }
        Err(e) => run
            .checks
            .check(false, format!("first GET /v1/destinations: {e}")),
    }
    match &cli {
        Ok(out) => {
            println!(
                "  first `sluice destinations status`: {} ({}):",
                fmt_dur(cli_took),
                out.status
            );
            for l in String::from_utf8_lossy(&out.stdout).lines() {
                println!("    | {l}");
            }
            for l in String::from_utf8_lossy(&out.stderr).lines() {
                println!("    ! {l}");
            }
            run.checks.check(
                out.status.success(),
                format!("`sluice destinations status` exits 0: {}", out.status),
            );
            first_rows.push(("first `sluice destinations status`", cli_took));
        }
        Err(e) => run.checks.check(false, format!("cannot run the CLI: {e}")),
    }
    println!("  VmRSS after them: {}", mib(rss_after));
    run.phase("restart", CpuUse::between(before, cpu_snap(&run.daemon)));
    Some(Restart {
        ready,
        rss_ready,
        rss_after,
        first_rows,
    })
}

fn finish(run: &mut Run) -> ExitCode {
    if !run.summary.rows.is_empty() {
        run.summary.print();
    }
    let log = std::fs::read_to_string(&run.daemon.log).unwrap_or_default();
    let noisy = noisy_lines(&log);
    println!(
        "\ndaemon log: {} lines, {} WARN/ERROR{}",
        log.lines().count(),
        noisy.len(),
        if noisy.is_empty() { "" } else { ", e.g.:" }
    );
    for l in noisy.iter().take(5) {
        println!("  {l}");
    }
    println!(
        "the empty stores' daemons (phase 4): {} WARN/ERROR{}",
        run.second_noisy.len(),
        if run.second_noisy.is_empty() {
            ""
        } else {
            ", e.g.:"
        }
    );
    for l in run.second_noisy.iter().take(5) {
        println!("  {l}");
    }
    println!("\ncorrectness:");
    for l in &run.checks.lines {
        println!("{l}");
    }
    let missed = run
        .summary
        .rows
        .iter()
        .filter(|r| r.pass == Some(false))
        .count();
    if missed > 0 {
        println!("{missed} target(s) missed");
    }
    if run.checks.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} correctness check(s) failed", run.checks.failures.len());
        ExitCode::FAILURE
    }
}
