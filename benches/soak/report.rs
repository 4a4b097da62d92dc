//! The run's state and what it prints: correctness checks, the summary of figures and
//! targets, the rate windows (aligned to the minute), and the settle wait after the fill.

use crate::*;

#[derive(Default)]
pub(crate) struct Checks {
    pub(crate) failures: Vec<String>,
    pub(crate) lines: Vec<String>,
}

impl Checks {
    pub(crate) fn check(&mut self, ok: bool, what: String) {
        let mark = if ok { "ok  " } else { "FAIL" };
        let line = format!("  [{mark}] {what}");
        if !ok {
            eprintln!("{line}");
            self.failures.push(what);
        }
        self.lines.push(line);
    }

    pub(crate) fn load(&mut self, name: &str, t: &Tally) {
        self.check(
            t.failures() == 0 && t.accepted == t.sent && t.duplicates == 0,
            format!("{name}: {}", t.describe()),
        );
    }
}

pub(crate) struct Row {
    pub(crate) what: String,
    pub(crate) figure: String,
    pub(crate) target: String,
    pub(crate) pass: Option<bool>,
}

#[derive(Default)]
pub(crate) struct Summary {
    pub(crate) rows: Vec<Row>,
}

impl Summary {
    pub(crate) fn add(&mut self, what: &str, figure: String, target: &str, pass: Option<bool>) {
        self.rows.push(Row {
            what: what.into(),
            figure,
            target: target.into(),
            pass,
        });
    }

    pub(crate) fn rss(&mut self, what: &str, kb: u64) {
        self.add(what, mib(kb), "<= 512 MiB", Some(kb <= RSS_TARGET_KB));
    }

    pub(crate) fn print(&self) {
        let w = self.rows.iter().map(|r| r.what.len()).max().unwrap_or(10);
        let f = self.rows.iter().map(|r| r.figure.len()).max().unwrap_or(10);
        let t = self.rows.iter().map(|r| r.target.len()).max().unwrap_or(10);
        println!(
            "{:<w$}  {:>f$}  {:<t$}  result",
            "figure", "value", "target"
        );
        for r in &self.rows {
            let result = match r.pass {
                Some(true) => "pass",
                Some(false) => "MISS",
                None => "-",
            };
            println!(
                "{:<w$}  {:>f$}  {:<t$}  {result}",
                r.what, r.figure, r.target
            );
        }
    }
}

/// One rate window: events/s, the cores other processes took meanwhile, and the
/// daemon's CPU per event (µs).
#[derive(Clone, Copy, Default)]
pub(crate) struct Rate {
    pub(crate) eps: f64,
    pub(crate) others: f64,
    pub(crate) daemon_us: f64,
}

impl Rate {
    /// This window against `base`: both rates, their ratio and the cores other
    /// processes took in each.
    pub(crate) fn against(&self, base: Rate) -> String {
        format!(
            "{} / {} = {:.2} (others {:.2} / {:.2} cores)",
            fmt_rate(self.eps),
            fmt_rate(base.eps),
            self.eps / base.eps.max(1e-9),
            self.others,
            base.others
        )
    }
}

/// Everything a phase line needs.
pub(crate) struct Run {
    pub(crate) s: Settings,
    pub(crate) t0: Instant,
    pub(crate) daemon: Daemon,
    pub(crate) store: PathBuf,
    pub(crate) dir: PathBuf,
    /// Events accepted so far (all workspaces).
    pub(crate) accepted: u64,
    pub(crate) checks: Checks,
    pub(crate) summary: Summary,
    /// The WARN and ERROR lines of the empty stores' daemons (phase 4), each with its
    /// round: their logs go with their stores.
    pub(crate) second_noisy: Vec<String>,
}

/// A daemon log's WARN and ERROR lines.
pub(crate) fn noisy_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

impl Run {
    pub(crate) fn phase(&self, name: &str, cpu: Option<CpuUse>) {
        let m = self.daemon.mem();
        println!(
            "[{:>8.1} s] {name}: events so far {}, VmRSS {}, VmHWM {}, store {}; {}",
            self.t0.elapsed().as_secs_f64(),
            fmt_int(self.accepted),
            mib(m.rss_kb),
            mib(m.hwm_kb),
            store_size(&self.store),
            CpuUse::text(cpu)
        );
    }

    /// Single events, then 100-event batches, into `bulk`, each after a 1 s warm-up
    /// (its events count as accepted, not in the rate): a [`Rate`] of each.
    /// With `aligned`, a warm-up and its window that would hold a minute mark of the
    /// system clock (the daemon's housekeeping clock) start 1 s after that mark instead,
    /// so no housekeeping pass falls inside a measurement while `rate_secs` is at most
    /// [`ALIGNED_MAX_SECS`] (see the module doc). Waiting only then keeps the idle time
    /// short: the page cache of this box gives back part of an idle store file within
    /// minutes, and the dedup checks of a full store read what it gave back.
    pub(crate) fn rates(
        &mut self,
        load: &Load,
        label: &str,
        tag: &str,
        aligned: bool,
    ) -> [Rate; 2] {
        let secs = self.s.rate_secs;
        let mut out = [Rate::default(); 2];
        for (k, (per_req, what)) in [(1u64, "single"), (RATE_BATCH, "batch100")]
            .into_iter()
            .enumerate()
        {
            // The warm-up, the window and a second of slack.
            let needs = Duration::from_secs(secs + 2);
            if aligned && until_minute_mark() < needs {
                let wait = until_minute_mark() + Duration::from_secs(1);
                println!(
                    "  {label} {what}: waiting {} for 1 s past the minute mark{}",
                    fmt_dur(wait),
                    if secs > ALIGNED_MAX_SECS {
                        " (the window is longer than the gap to the next mark: the next pass falls inside it)"
                    } else {
                        ""
                    }
                );
                std::thread::sleep(wait);
            }
            let (warm, _) = load.timed(BULK_KEY, &format!("{tag}{k}w"), RATE_CONNS, per_req, 1);
            self.accepted += warm.accepted;
            self.checks.load(&format!("{label} {what} warm-up"), &warm);
            let log_at = file_size(&self.daemon.log);
            let io_before = io_of(self.daemon.pid);
            let before = cpu_snap(&self.daemon);
            let (mut t, took) =
                load.timed(BULK_KEY, &format!("{tag}{k}c"), RATE_CONNS, per_req, secs);
            let cpu = CpuUse::between(before, cpu_snap(&self.daemon));
            let merges = merges_logged(&self.daemon.log, log_at);
            let io = match (io_before, io_of(self.daemon.pid)) {
                (Some(r0), Some(r1)) => {
                    format!("{} read from storage", bytes_h(r1.saturating_sub(r0)))
                }
                _ => "? (no /proc/<pid>/io)".into(),
            };
            self.accepted += t.accepted;
            let eps = t.accepted as f64 / took.as_secs_f64();
            out[k] = Rate {
                eps,
                others: cpu.map_or(f64::NAN, |u| u.others),
                daemon_us: cpu.map_or(f64::NAN, |u| u.daemon * 1e6 / eps.max(1e-9)),
            };
            self.checks.load(&format!("{label} {what}"), &t);
            println!(
                "  {label} {what}: {} events/s ({} requests/s, {RATE_CONNS} connections, {} events in {}; answers {})",
                fmt_rate(eps),
                fmt_rate(t.requests as f64 / took.as_secs_f64()),
                fmt_int(t.accepted),
                fmt_dur(took),
                t.latency()
            );
            println!(
                "    dedup merges finished meanwhile: {merges}; the daemon's I/O: {io}; its CPU per event: {:.2} µs",
                out[k].daemon_us
            );
            self.phase(&format!("{label} {what}"), cpu);
        }
        out
    }
}

/// The dedup merges the daemon logged (`dedup runs merged`, INFO) after byte `from`
/// of its log: how many, the entries they wrote, their levels, and how long the writer
/// waited in all for their sources to be read (`source_wait_ms`). A merge rewrites
/// every entry of its sources, so where the big ones land decides much of a short
/// rate window.
pub(crate) fn merges_logged(log: &Path, from: u64) -> String {
    let Ok(bytes) = std::fs::read(log) else {
        return "? (no daemon log)".into();
    };
    let tail = String::from_utf8_lossy(bytes.get(from as usize..).unwrap_or_default());
    let field = |line: &str, key: &str| -> Option<u64> {
        let at = line.find(key)? + key.len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let (mut n, mut entries, mut levels, mut waited) = (0u64, 0u64, Vec::new(), 0u64);
    for line in tail.lines().filter(|l| l.contains("dedup runs merged")) {
        n += 1;
        entries += field(line, "entries=").unwrap_or(0);
        waited += field(line, "source_wait_ms=").unwrap_or(0);
        if let Some(l) = field(line, "level=") {
            levels.push(l.to_string());
        }
    }
    if n == 0 {
        return "none".into();
    }
    format!(
        "{n} ({} entries written; levels {}; the writer waited {} ms for their sources)",
        fmt_int(entries),
        levels.join(", "),
        fmt_int(waited)
    )
}

/// Longest aligned rate window that ends before the next minute mark: the 1 s offset,
/// the 1 s warm-up and this leave a second of slack.
pub(crate) const ALIGNED_MAX_SECS: u64 = 57;

/// How long until the next minute mark of the system clock, where the daemon's
/// housekeeping passes run.
pub(crate) fn until_minute_mark() -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    Duration::from_millis((now / 60_000 + 1) * 60_000 - now)
}

/// Longest wait for the daemon's upkeep to settle after the fill.
pub(crate) const SETTLE_MAX: Duration = Duration::from_secs(600);

/// Waits for the daemon's upkeep of the fill to be done: the first housekeeping pass
/// after the fill, then the daemon idle — under 0.05 of a core over 2 s. The fill puts
/// in minutes what a store at the size takes in 48 hours, so the dedup merges
/// and log trims it deferred run after it (a store filled at the real rate does them
/// as it goes). Housekeeping runs on the minute marks of the daemon's clock (the system
/// clock here) and asks for `bulk`'s log to be trimmed of everything accepted before
/// the mark: the pass after the fill hands the writer the fill's last minute (millions
/// of events at the fill's rate, where a store at the real rate has a minute of its own
/// ingest), which it trims beside later commits. Waiting for that pass and its trim
/// keeps the debt out of the `full` rates. Returns how long it all took, None past
/// [`SETTLE_MAX`].
pub(crate) fn settle(run: &mut Run) -> Option<Duration> {
    let start = Instant::now();
    let before = cpu_snap(&run.daemon);
    let mark = until_minute_mark() + Duration::from_secs(1);
    println!(
        "  waiting {} for the daemon's housekeeping pass on the next minute mark",
        fmt_dur(mark)
    );
    std::thread::sleep(mark);
    let mut last = cpu_snap(&run.daemon);
    let out = loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = cpu_snap(&run.daemon);
        let idle = CpuUse::between(last, now).is_some_and(|u| u.daemon < 0.05);
        last = now;
        if idle {
            break Some(start.elapsed());
        }
        if start.elapsed() > SETTLE_MAX {
            break None;
        }
    };
    let cpu = CpuUse::between(before, cpu_snap(&run.daemon));
    match out {
        Some(d) => println!(
            "  upkeep settled after {} (the minute mark's housekeeping pass, then the daemon under 0.05 cores over 2 s)",
            fmt_dur(d)
        ),
        None => println!("  upkeep still busy after {}", fmt_dur(SETTLE_MAX)),
    }
    run.phase("settle", cpu);
    out
}

/// The full store's rate windows of one shape (single events or batches) against the
/// empty stores: each full window `F_i` against the mean of the empty windows either
/// side of it (`E_{i-1}`, the empty store at the start for the first, and `E_i`), so a
/// box that drifts between the windows moves both sides of a ratio alike. The target
/// is checked on the median of those ratios.
pub(crate) struct Rounds {
    pub(crate) ratios: Vec<f64>,
    pub(crate) median: f64,
    full: Vec<Rate>,
    /// The empty store at the start, then each new one.
    empty: Vec<Rate>,
}

impl Rounds {
    /// `k`: 0 single events, 1 batches. `full[i]` was measured between `empty[i - 1]`
    /// (`start` for `i` = 0) and `empty[i]`.
    pub(crate) fn of(
        start: &[Rate; 2],
        empty: &[[Rate; 2]],
        full: &[[Rate; 2]],
        k: usize,
    ) -> Rounds {
        let empty: Vec<Rate> = std::iter::once(start[k])
            .chain(empty.iter().map(|e| e[k]))
            .collect();
        let full: Vec<Rate> = full.iter().map(|f| f[k]).collect();
        let ratios: Vec<f64> = full
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let after = empty.get(i + 1)?;
                Some(f.eps / ((empty[i].eps + after.eps) / 2.0).max(1e-9))
            })
            .collect();
        Rounds {
            median: median(&ratios),
            ratios,
            full,
            empty,
        }
    }

    /// The median, each round's ratio, the rates and the most CPU other processes took
    /// in any of the windows.
    pub(crate) fn describe(&self) -> String {
        let list = |v: &[Rate]| {
            v.iter()
                .map(|r| fmt_rate(r.eps))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let others = self
            .full
            .iter()
            .chain(&self.empty)
            .map(|r| r.others)
            .fold(0.0f64, f64::max);
        format!(
            "{:.2} (rounds {}; full {}; empty {}; others <= {:.2} cores)",
            self.median,
            self.ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            list(&self.full),
            list(&self.empty),
            others
        )
    }

    /// The first full window against the empty store at the start: the ratio the soak
    /// printed before it measured rounds.
    pub(crate) fn against_start(&self) -> String {
        self.full[0].against(self.empty[0])
    }

    /// The daemon's CPU per event: the full windows' median against the empty ones'.
    pub(crate) fn cpu(&self) -> String {
        let us = |v: &[Rate]| median(&v.iter().map(|r| r.daemon_us).collect::<Vec<_>>());
        let (f, e) = (us(&self.full), us(&self.empty));
        format!("{f:.2} / {e:.2} µs = {:.2}", f / e)
    }
}

/// The median of `v`'s numbers ([`support::median`] of those that are not NaN; NaN when
/// there are none: a window whose CPU could not be read).
pub(crate) fn median(v: &[f64]) -> f64 {
    let v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    support::median(&v).unwrap_or(f64::NAN)
}
