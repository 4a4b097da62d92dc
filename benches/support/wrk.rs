//! The `wrk` load generator with `benches/ingest/events.lua`: running it, reading the
//! lines the script prints.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wrk script (see its header for arguments and output).
pub const LUA: &str = include_str!("../ingest/events.lua");

/// Writes the script into `dir`; returns its path.
pub fn write_script(dir: &Path) -> PathBuf {
    let script = dir.join("events.lua");
    std::fs::write(&script, LUA).expect("write the wrk script");
    script
}

/// Whether `wrk` runs.
pub fn available() -> bool {
    Command::new("wrk")
        .arg("-v")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wrk"))
}

/// How to install wrk, for the error when it is missing.
pub const INSTALL_HINT: &str = "error: `wrk` (the HTTP load generator this benchmark uses) was not found in PATH.\n\
     Install it, then rerun:\n  \
     Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk\n  \
     Fedora:        sudo dnf install wrk\n  \
     macOS:         brew install wrk\n  \
     from source:   https://github.com/wg/wrk (make; put ./wrk in PATH)";

/// The `BENCH` and `BENCHTHREADS` lines printed by the Lua script's `done`.
#[derive(Debug, Default, Clone)]
pub struct WrkResult {
    pub duration_us: u64,
    pub requests: u64,
    pub err_connect: u64,
    pub err_read: u64,
    pub err_write: u64,
    pub err_status: u64,
    pub err_timeout: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub sent_requests: u64,
    pub sent_events: u64,
    pub ok_requests: u64,
    pub accepted_events: u64,
    pub bad_status: u64,
    pub bad_body: u64,
    /// Wall clock (unix µs) of the first request built, the first and the last 202
    /// (0 unless the run was stamped).
    pub first_send_us: u64,
    pub first_ok_us: u64,
    pub last_ok_us: u64,
    /// Events sent per wrk thread (1-based thread id → its ids' counters are 1..=n).
    /// `sent_*` count one request more than went out: wrk builds one on the first
    /// thread to check the script and never sends it.
    pub per_thread: Vec<(u32, u64)>,
    /// `<status> <body>` of the first non-202 answers (a few per thread).
    pub errors: Vec<String>,
    /// Cores used by the benchmark (incl. wrk) and by other processes during the run,
    /// when the caller measured them.
    pub cpu: Option<(f64, f64)>,
}

impl WrkResult {
    pub fn parse(out: &str) -> Option<WrkResult> {
        let line = out.lines().find_map(|l| l.strip_prefix("BENCH "))?;
        let mut r = WrkResult::default();
        for kv in line.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            // Lua prints numbers; latencies may come as floats.
            let v = v.parse::<f64>().ok()? as u64;
            let slot = match k {
                "duration_us" => &mut r.duration_us,
                "requests" => &mut r.requests,
                "err_connect" => &mut r.err_connect,
                "err_read" => &mut r.err_read,
                "err_write" => &mut r.err_write,
                "err_status" => &mut r.err_status,
                "err_timeout" => &mut r.err_timeout,
                "p50_us" => &mut r.p50_us,
                "p90_us" => &mut r.p90_us,
                "p99_us" => &mut r.p99_us,
                "max_us" => &mut r.max_us,
                "sent_requests" => &mut r.sent_requests,
                "sent_events" => &mut r.sent_events,
                "ok_requests" => &mut r.ok_requests,
                "accepted_events" => &mut r.accepted_events,
                "bad_status" => &mut r.bad_status,
                "bad_body" => &mut r.bad_body,
                "first_send_us" => &mut r.first_send_us,
                "first_ok_us" => &mut r.first_ok_us,
                "last_ok_us" => &mut r.last_ok_us,
                _ => continue,
            };
            *slot = v;
        }
        r.errors = out
            .lines()
            .filter_map(|l| l.strip_prefix("BENCHERR "))
            .map(str::to_string)
            .collect();
        if let Some(line) = out.lines().find_map(|l| l.strip_prefix("BENCHTHREADS ")) {
            for kv in line.split_whitespace() {
                let (k, v) = kv.split_once('=')?;
                r.per_thread.push((k.parse().ok()?, v.parse().ok()?));
            }
        }
        Some(r)
    }

    pub fn secs(&self) -> f64 {
        self.duration_us as f64 / 1e6
    }

    pub fn req_per_sec(&self) -> f64 {
        self.requests as f64 / self.secs()
    }

    /// Events the server reported accepted, per second.
    pub fn events_per_sec(&self) -> f64 {
        self.accepted_events as f64 / self.secs()
    }

    pub fn socket_errors(&self) -> u64 {
        self.err_connect + self.err_read + self.err_write + self.err_timeout
    }

    pub fn failures(&self) -> u64 {
        self.bad_status + self.bad_body + self.socket_errors()
    }

    /// The non-202 samples for a check line ("" when none).
    pub fn error_note(&self) -> String {
        if self.errors.is_empty() {
            String::new()
        } else {
            format!("; e.g. {}", self.errors.join(" | "))
        }
    }

    /// Seconds from the first to the last 202 (stamped runs).
    pub fn ok_window_secs(&self) -> f64 {
        self.last_ok_us.saturating_sub(self.first_ok_us) as f64 / 1e6
    }
}

/// One wrk run.
pub struct Load<'a> {
    pub addr: SocketAddr,
    pub threads: usize,
    pub conns: usize,
    pub per_req: usize,
    pub secs: u64,
    pub prefix: &'a str,
    pub key: &'a str,
    /// Stamp event ids with their send time (see the script).
    pub stamp: bool,
}

/// Runs wrk to the end; returns what the script printed, parsed, and wrk's stdout.
pub fn run(script: &Path, load: &Load) -> Result<(WrkResult, String), String> {
    let threads = load.threads.min(load.conns).max(1);
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{}", load.conns))
        .arg(format!("-d{}s", load.secs))
        .arg("--timeout")
        .arg("30s")
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(format!("http://{}/v1/events", load.addr))
        .arg("--")
        .arg(load.prefix)
        .arg(load.per_req.to_string())
        .arg(load.key);
    if load.stamp {
        cmd.arg("stamp");
    }
    let out = cmd.output().map_err(|e| format!("cannot run wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let r = WrkResult::parse(&stdout)
        .ok_or_else(|| format!("no BENCH line in wrk's output:\n{stdout}"))?;
    Ok((r, stdout))
}
