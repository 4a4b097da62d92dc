//! The long phases: the fill to the dedup window's size and the drain of the backlog.

use crate::*;

pub(crate) struct Fill {
    pub(crate) shop_accepted: u64,
    pub(crate) window_events: u64,
    pub(crate) alloc_end: u64,
    pub(crate) rss_end_kb: u64,
    pub(crate) file_end: u64,
    pub(crate) rate: f64,
    pub(crate) stopped_early: bool,
}

pub(crate) fn fill(run: &mut Run, load: &Load) -> Fill {
    let shop_n = run.s.backlog;
    let bulk_n = run.s.events.saturating_sub(run.accepted + shop_n);
    let total = shop_n + bulk_n;
    let step = PROGRESS_STEP.min((total / 10).max(FILL_BATCH));
    let segments: [(&'static str, &'static str, &str, u64); 2] = [
        (SHOP_KEY, QUEUED_PREFIX, "shop", shop_n),
        (BULK_KEY, "f", "bulk", bulk_n),
    ];
    println!(
        "  {} events to `shop`, then {} to `bulk`; a line every {} events",
        fmt_int(shop_n),
        fmt_int(bulk_n),
        fmt_int(step)
    );
    let file0 = file_alloc(&run.store);
    let t_fill = Instant::now();
    let cpu0 = cpu_snap(&run.daemon);
    let mut done = 0u64;
    let mut shop_accepted = 0u64;
    let mut stopped_early = false;
    let mut step_t = Instant::now();
    let mut step_start = 0u64;
    let mut failed = false;
    let mut all = Tally::default();
    'segments: for (key, prefix, ws, n) in segments {
        let mut pos = 0u64;
        while pos < n {
            let next_mark = (done / step + 1) * step;
            let len = (n - pos).min(next_mark - done);
            // Free disk before the step: growth so far per event, 1 kB before any.
            let grown = file_alloc(&run.store).saturating_sub(file0);
            let per_event = if done > 0 {
                (grown as f64 / done as f64).max(1.0)
            } else {
                1000.0
            };
            let need = (per_event * len as f64 * 1.25) as u64;
            if let Some(free) = free_disk(&run.dir)
                && free < MIN_FREE_BYTES + need
            {
                println!(
                    "  STOP: {} free, the next {} events need about {}, and {} must remain: stopping the fill at {} of {} events",
                    bytes_h(free),
                    fmt_int(len),
                    bytes_h(need),
                    bytes_h(MIN_FREE_BYTES),
                    fmt_int(done),
                    fmt_int(total)
                );
                stopped_early = true;
                break 'segments;
            }
            let mut t = load.range(key, prefix, pos, pos + len, run.s.conns);
            run.accepted += t.accepted;
            if ws == "shop" {
                shop_accepted += t.accepted;
            }
            let ok = t.failures() == 0 && t.accepted == t.sent && t.duplicates == 0;
            if !ok {
                run.checks.check(
                    false,
                    format!("fill `{ws}` {pos}..{}: {}", pos + len, t.describe()),
                );
                failed = true;
                break 'segments;
            }
            pos += len;
            done += len;
            if done.is_multiple_of(step) || pos == n {
                let m = run.daemon.mem();
                let took = step_t.elapsed().as_secs_f64();
                println!(
                    "  [{:>8.1} s] {:>11} of {} filled ({ws}), {} events/s (answers {}), window {}, VmRSS {}, VmHWM {}, file {}, free disk {}",
                    run.t0.elapsed().as_secs_f64(),
                    fmt_int(done),
                    fmt_int(total),
                    fmt_rate((done - step_start) as f64 / took),
                    t.latency(),
                    fmt_int(run.accepted),
                    mib(m.rss_kb),
                    mib(m.hwm_kb),
                    store_size(&run.store),
                    free_disk(&run.dir).map_or("?".into(), bytes_h)
                );
                step_t = Instant::now();
                step_start = done;
            }
            all.merge(t);
        }
    }
    let secs = t_fill.elapsed().as_secs_f64();
    let cpu = CpuUse::between(cpu0, cpu_snap(&run.daemon));
    let m = run.daemon.mem();
    let rate = done as f64 / secs;
    if !failed {
        run.checks.check(
            true,
            format!(
                "fill: {} events in {FILL_BATCH}-event batches, every answer 202 with all accepted",
                fmt_int(done)
            ),
        );
    }
    println!(
        "  fill: {} events in {:.1} s = {} events/s; answers {}",
        fmt_int(done),
        secs,
        fmt_rate(rate),
        all.latency()
    );
    run.phase("fill", cpu);
    Fill {
        shop_accepted,
        window_events: run.accepted,
        rss_end_kb: m.rss_kb,
        file_end: file_size(&run.store),
        alloc_end: file_alloc(&run.store),
        rate,
        stopped_early,
    }
}

pub(crate) struct Drain {
    pub(crate) rate: f64,
    pub(crate) peak_kb: u64,
}

pub(crate) fn drain(run: &mut Run, load: &Load, receiver: &Receiver, queued: u64) -> Option<Drain> {
    let a = &receiver.arrivals;
    if queued == 0 {
        println!("  nothing queued: no drain");
        return None;
    }
    let hwm_reset = std::fs::write(format!("/proc/{}/clear_refs", run.daemon.pid), "5").is_ok();
    let before_requests = a.requests.load(Ordering::Relaxed);
    let before_distinct = a.distinct.load(Ordering::Relaxed);
    run.checks.check(
        before_requests == 0,
        format!(
            "nothing reached the receiver while `{HOOK}` was paused ({before_requests} requests)"
        ),
    );
    let cpu0 = cpu_snap(&run.daemon);
    let admin = admin_client();
    let resume = call(
        load,
        &admin,
        "POST",
        &format!("{}/v1/destinations/{HOOK}/resume", run.daemon.base),
        Some(r#"{"reason":"soak drain"}"#),
    );
    let t_resume = Instant::now();
    match resume {
        Ok(r) if r.status == 200 => {}
        Ok(r) => {
            run.checks
                .check(false, format!("resume `{HOOK}`: {} {}", r.status, r.body));
            return None;
        }
        Err(e) => {
            run.checks.check(false, format!("resume `{HOOK}`: {e}"));
            return None;
        }
    }
    let mut peak = 0u64;
    let mut last_count = before_distinct;
    let mut last_progress = Instant::now();
    let mut last_line = Instant::now();
    let mut last_line_count = before_distinct;
    let all_arrived = loop {
        let distinct = a.distinct.load(Ordering::Relaxed);
        peak = peak.max(run.daemon.mem().rss_kb);
        if distinct >= queued {
            break true;
        }
        if distinct != last_count {
            last_count = distinct;
            last_progress = Instant::now();
        }
        if last_progress.elapsed() > DRAIN_STALL {
            break false;
        }
        if last_line.elapsed() >= Duration::from_secs(10) {
            let m = run.daemon.mem();
            println!(
                "  [{:>8.1} s] {} of {} delivered, {} events/s, VmRSS {}",
                run.t0.elapsed().as_secs_f64(),
                fmt_int(distinct),
                fmt_int(queued),
                fmt_rate((distinct - last_line_count) as f64 / last_line.elapsed().as_secs_f64()),
                mib(m.rss_kb)
            );
            last_line = Instant::now();
            last_line_count = distinct;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let arrived_at = a.last_new();
    let drain_time = arrived_at.saturating_duration_since(t_resume);
    // Then until the metrics say the queue is empty (the last cursor commit).
    let mut depth_zero = None;
    let mut depth = None;
    let client = admin_client();
    let t = Instant::now();
    while all_arrived && t.elapsed() < Duration::from_secs(60) {
        if let Ok(ans) = call(
            load,
            &client,
            "GET",
            &format!("{}/metrics", run.daemon.base),
            None,
        ) {
            depth = queue_depth(&ans.body);
            if depth == Some(0) {
                depth_zero = Some(t_resume.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu = CpuUse::between(cpu0, cpu_snap(&run.daemon));
    let m = run.daemon.mem();
    peak = peak.max(m.rss_kb);
    if hwm_reset {
        peak = peak.max(m.hwm_kb);
    }
    let distinct = a.distinct.load(Ordering::Relaxed);
    let rate = distinct as f64 / drain_time.as_secs_f64().max(1e-3);
    run.checks.check(
        all_arrived && distinct == queued,
        format!(
            "every queued event delivered: {} distinct of {} (requests {}, events {}, duplicates {}){}",
            fmt_int(distinct),
            fmt_int(queued),
            fmt_int(a.requests.load(Ordering::Relaxed)),
            fmt_int(a.events.load(Ordering::Relaxed)),
            fmt_int(a.duplicates.load(Ordering::Relaxed)),
            if all_arrived {
                String::new()
            } else {
                format!("; no new delivery for {DRAIN_STALL:?}")
            }
        ),
    );
    run.checks.check(
        a.unexpected.load(Ordering::Relaxed) == 0,
        format!(
            "no unexpected event ids at the receiver: {}",
            a.unexpected.load(Ordering::Relaxed)
        ),
    );
    run.checks.check(
        depth_zero.is_some(),
        format!("`{HOOK}`'s sluice_queue_depth reaches 0 after the drain (last read {depth:?})"),
    );
    println!(
        "  {} events in {} = {} events/s (reference: the delivery bench drains 300k at about 17-25k events/s on this box; target >= {}); \
         queue_depth 0 after {}; peak RSS during the drain {} ({})",
        fmt_int(distinct),
        fmt_dur(drain_time),
        fmt_rate(rate),
        fmt_rate(run.s.drain_ref),
        depth_zero.map_or("-".into(), fmt_dur),
        mib(peak),
        if hwm_reset {
            "VmHWM reset at the resume, and sampled VmRSS"
        } else {
            "sampled VmRSS every 20 ms; VmHWM could not be reset"
        }
    );
    run.phase("drain", cpu);
    Some(Drain {
        rate,
        peak_kb: peak,
    })
}
