//! What the soak reads of `/proc` and the file system: a process's memory, CPU and
//! storage reads, the box's CPU, free disk and file sizes, and how figures print.

use crate::*;

#[derive(Clone, Copy, Default)]
pub(crate) struct Mem {
    pub(crate) rss_kb: u64,
    pub(crate) hwm_kb: u64,
}

/// Bytes the process made the kernel fetch from storage (`read_bytes` of
/// `/proc/<pid>/io`): reads the page cache answered are not in it. (Its `write_bytes`
/// counts pages as they are dirtied, several times the bytes that reach the disk
/// here, so it is not shown.)
pub(crate) fn io_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("read_bytes:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
}

pub(crate) fn mem_of(pid: u32) -> Option<Mem> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Mem {
        rss_kb: field("VmRSS:")?,
        hwm_kb: field("VmHWM:")?,
    })
}

pub(crate) fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

pub(crate) fn bytes_h(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// The fields after `(comm)` of a `/proc/.../stat` file.
pub(crate) fn stat_fields(path: &str) -> Option<(char, Vec<u64>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = text.rsplit_once(')')?.1.trim_start();
    let state = rest.chars().next()?;
    let fields = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    Some((state, fields))
}

/// utime + stime of a process, in jiffies, and its state letter.
pub(crate) fn proc_cpu(pid: u32) -> Option<(char, u64)> {
    let (state, f) = stat_fields(&format!("/proc/{pid}/stat"))?;
    Some((state, f.get(11)? + f.get(12)?))
}

#[derive(Clone, Copy)]
pub(crate) struct CpuSnap {
    pub(crate) at: Instant,
    /// Busy jiffies of the whole machine (/proc/stat: all but idle and iowait).
    pub(crate) machine: u64,
    /// utime + stime + cutime + cstime of this process (children it reaped included).
    pub(crate) own_all: u64,
    /// CPU of daemons already reaped (so inside `own_all`'s cutime).
    pub(crate) daemon_reaped: u64,
    /// CPU of the running daemon.
    pub(crate) daemon_live: u64,
}

pub(crate) fn cpu_snap(d: &Daemon) -> Option<CpuSnap> {
    let machine = support::machine_busy_ticks()?;
    let (_, me) = stat_fields("/proc/self/stat")?;
    let own_all = me.get(11)? + me.get(12)? + me.get(13)? + me.get(14)?;
    let daemon_live = if d.running() {
        proc_cpu(d.pid).map_or(0, |(_, j)| j)
    } else {
        0
    };
    Some(CpuSnap {
        at: Instant::now(),
        machine,
        own_all,
        daemon_reaped: d.reaped_cpu,
        daemon_live,
    })
}

/// Cores used between two snaps: (this bench, the daemon, every other process).
#[derive(Clone, Copy, Default)]
pub(crate) struct CpuUse {
    pub(crate) bench: f64,
    pub(crate) daemon: f64,
    pub(crate) others: f64,
}

impl CpuUse {
    pub(crate) fn between(a: Option<CpuSnap>, b: Option<CpuSnap>) -> Option<CpuUse> {
        let (a, b) = (a?, b?);
        let hz = 100.0; // USER_HZ, 100 on every mainstream Linux build.
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
        let cores = |j: u64| j as f64 / hz / secs;
        let bench_a = a.own_all.saturating_sub(a.daemon_reaped);
        let bench_b = b.own_all.saturating_sub(b.daemon_reaped);
        let daemon_a = a.daemon_reaped + a.daemon_live;
        let daemon_b = b.daemon_reaped + b.daemon_live;
        let bench = cores(bench_b.saturating_sub(bench_a));
        let daemon = cores(daemon_b.saturating_sub(daemon_a));
        let all = cores(b.machine.saturating_sub(a.machine));
        Some(CpuUse {
            bench,
            daemon,
            others: (all - bench - daemon).max(0.0),
        })
    }

    pub(crate) fn text(u: Option<CpuUse>) -> String {
        match u {
            Some(u) => format!(
                "cpu: daemon {:.2}, bench {:.2}, other processes {:.2} cores",
                u.daemon, u.bench, u.others
            ),
            None => "cpu: -".into(),
        }
    }
}

/// Free bytes on the file system holding `dir` (`df`, as std has no statvfs).
pub(crate) fn free_disk(dir: &Path) -> Option<u64> {
    let out = Command::new("df")
        .arg("-B1")
        .arg("--output=avail")
        .arg(dir)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}

pub(crate) fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// Bytes the file really occupies on disk (its length may include unwritten space).
pub(crate) fn file_alloc(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map_or(0, |m| m.blocks() * 512)
}

/// `<length> (<allocated> on disk)` of the store file.
pub(crate) fn store_size(p: &Path) -> String {
    format!(
        "{} ({} on disk)",
        bytes_h(file_size(p)),
        bytes_h(file_alloc(p))
    )
}

pub(crate) fn fmt_int(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub(crate) fn fmt_rate(x: f64) -> String {
    fmt_int(x.max(0.0).round() as u64)
}

pub(crate) fn fmt_dur(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}
