//! Ingest benchmark: sluice's `POST /v1/events` against a do-nothing HTTP server and a
//! group-fsync server, under the same load generator (`wrk` + `benches/ingest/events.lua`,
//! the same bodies), plus the redb store's own ceiling for the same inserts.
//!
//! Run: `cargo bench --bench ingest` (optionally followed by `-- <filter>...`, where the
//! filters pick scenarios by name: `ceiling`, `fsync`, `sluice`, `single`, `batch`,
//! `redb`). In one invocation the servers run in this order: `ceiling-single`,
//! `fsync-single`, `sluice-single`, `ceiling-batch`, `fsync-batch`, `sluice-batch`, so
//! every ratio compares runs of the same invocation.
//! `SLUICE_BENCH_ROUNDS=n` runs that order n times over, and each target is judged
//! by the median over the rounds of its figure, each ratio taken within one round: on a
//! shared VM the box's own speed moves between runs (the group-fsync server's batch
//! figure by up to a third), more than sluice's ratio does within a round.
//!
//! Scenarios (all on loopback, each server on its own multi-thread tokio runtime with 2
//! worker threads whose HTTP threads run at the daemon's nice value — so `wrk`, at nice 0
//! on the same cores, competes with each server alike —, each run after a
//! `SLUICE_BENCH_WARMUP_SECS` warm-up):
//! 1. `ceiling-single`: an axum server that reads the body and answers 202 with a tiny
//!    JSON body, single-event bodies, `SLUICE_BENCH_CONNS` connections (64).
//! 2. `fsync-single`: the floor of any durable server, same load: an axum server that
//!    queues each body to one writer thread, which takes everything queued, appends it
//!    to one file (in a temp dir under `SLUICE_BENCH_DIR`, like sluice's store) with one
//!    write, calls `sync_data` (fdatasync) once, and only then answers all of those
//!    requests 202 (group fsync; steady state, the file grows). Printed: fdatasyncs,
//!    requests per fdatasync, mean fdatasync time.
//! 3. `sluice-single`: the real daemon ([`Daemon::start`], temp store, one `enterprise`
//!    workspace with every limit 0 = unlimited), same load. Targets: ≥ 50% of (1)'s
//!    requests/s; ≥ 80% of (2)'s.
//! 4. `ceiling-batch` / `fsync-batch` / `sluice-batch`: `{"events": [100 events]}` bodies
//!    at `SLUICE_BENCH_BATCH_CONNS` connections (32). Targets for sluice: ≥ 200,000
//!    events/s; ≥ 50% of `fsync-batch`'s events/s.
//! 5. `redb-*`: the writer's inserts without HTTP or intake: per event one `events`
//!    insert keyed `(workspace, seq)` with a real encoded event (~500 bytes) and one
//!    `dedup_log` row keyed by a sequence, one `monthly` update per commit, 1,000
//!    events per durable commit. Plus two breakdown runs (events only, dedup only).
//!
//! Every event id is unique (`<run>-<wrk thread>-<counter>`), every body is a realistic
//! event (email and phone to hash, IP, user agent, fbp, custom_data). Correctness is
//! checked after each sluice run: every response was 202 with `accepted` equal to the
//! events it carried, and the store (reopened after a graceful shutdown) holds between
//! "accepted in answers" and "sent" events (the difference is what was in flight when
//! wrk stopped), with `events`, the dedup index and `monthly` agreeing; after each fsync
//! run, every answer was 202, the writer wrote and synced at least as many requests as
//! were answered, and the file holds every byte written. A failed check exits 1;
//! a missed performance target is reported (exit 0 unless `SLUICE_BENCH_STRICT=1`).
//!
//! Environment: `SLUICE_BENCH_SECS` (10) measured seconds per run,
//! `SLUICE_BENCH_WARMUP_SECS` (2), `SLUICE_BENCH_CONNS` (64), `SLUICE_BENCH_BATCH_CONNS`
//! (32), `SLUICE_BENCH_BATCH` (100 events per batch request), `SLUICE_BENCH_WRK_THREADS`
//! (2), `SLUICE_BENCH_DIR` (where temp stores go; default the system temp dir),
//! `SLUICE_BENCH_VERBOSE=1` (print wrk's own output), `SLUICE_BENCH_STRICT=1`,
//! `SLUICE_BENCH_HTTP_NICE` (the HTTP threads' nice value; default the daemon's, 5),
//! `SLUICE_BENCH_ROUNDS` (1; at most 20).
// Benches measure and print; the pedantic lints the library follows would cost
// them clarity.
#![allow(clippy::pedantic)]

mod support;

use support::fsync::{self, FsyncStats, GroupFsync};
use support::serve::{self, Served};
use support::wrk::{self, WrkResult};
use support::{flag, http_nice, median, now_ms, num};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use redb::{ReadableDatabase, ReadableTable};
use serde_json::Value;
use sluice::app::{Daemon, StartOptions};
use sluice::ingest::validate::{ValidateCtx, validate_event};
use sluice::store::codec::{StoredEvent, encode_event};
use sluice::store::dedup::{DEDUP_LOG, DEDUP_META, RunState, decode_log, decode_meta, encode_log};
use sluice::store::{EVENTS, MONTHLY, dedup_digest};

const KEY: &str = "bench_live_ingest_key";
const WORKSPACE: &str = "bench";
const SINGLE_TARGET_RATIO: f64 = 0.50;
const BATCH_TARGET_EVENTS_PER_SEC: f64 = 200_000.0;
/// sluice ÷ the group-fsync server, single events (requests/s = events/s).
const FSYNC_SINGLE_TARGET_RATIO: f64 = 0.8;
/// sluice ÷ the group-fsync server, 100-event batches, in events/s.
const FSYNC_BATCH_TARGET_RATIO: f64 = 0.5;
const REDB_EVENTS_PER_COMMIT: usize = 1_000;

/// Which server a scenario runs.
#[derive(Clone, Copy)]
enum Server {
    Ceiling,
    Fsync,
    Sluice,
}

struct Settings {
    secs: u64,
    warmup_secs: u64,
    conns: usize,
    batch_conns: usize,
    batch: usize,
    wrk_threads: usize,
    dir: Option<PathBuf>,
    verbose: bool,
    strict: bool,
    filters: Vec<String>,
    /// Rounds of the scenarios, one after another in one invocation.
    rounds: usize,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            secs: num("SLUICE_BENCH_SECS", 10u64).max(1),
            warmup_secs: num("SLUICE_BENCH_WARMUP_SECS", 2u64),
            conns: num("SLUICE_BENCH_CONNS", 64usize).max(1),
            batch_conns: num("SLUICE_BENCH_BATCH_CONNS", 32usize).max(1),
            batch: num("SLUICE_BENCH_BATCH", 100usize).clamp(2, 1000),
            wrk_threads: num("SLUICE_BENCH_WRK_THREADS", 2usize).max(1),
            dir: std::env::var_os("SLUICE_BENCH_DIR").map(PathBuf::from),
            verbose: flag("SLUICE_BENCH_VERBOSE"),
            strict: flag("SLUICE_BENCH_STRICT"),
            filters: support::filters(),
            rounds: num("SLUICE_BENCH_ROUNDS", 1usize).clamp(1, 20),
        }
    }

    /// A scenario's name in round `round` (suffixed `#<round>` when there are several).
    fn label(&self, name: &str, round: usize) -> String {
        if self.rounds > 1 {
            format!("{name}#{round}")
        } else {
            name.to_string()
        }
    }

    fn wants(&self, name: &str) -> bool {
        support::wants(&self.filters, name)
    }

    fn tempdir(&self) -> tempfile::TempDir {
        support::tempdir(&self.dir)
    }
}

// ---------------------------------------------------------------------------------------
// CPU accounting: how much of the machine this process (and the wrk children it reaped)
// used during a run, and how much other processes took: on a shared 2-core box a
// concurrent build skews every figure, so each row says how busy the box was otherwise.

#[derive(Clone, Copy)]
struct CpuSnap {
    at: Instant,
    /// Busy jiffies of the whole machine (/proc/stat: all but idle and iowait).
    machine_busy: u64,
    /// utime + stime + cutime + cstime of this process (/proc/self/stat).
    own: u64,
}

fn cpu_snap() -> Option<CpuSnap> {
    let machine_busy = support::machine_busy_ticks()?;
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)`; utime is field 14 overall, i.e. index 11 here.
    let rest: Vec<u64> = me
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let own = rest.get(11)? + rest.get(12)? + rest.get(13)? + rest.get(14)?;
    Some(CpuSnap {
        at: Instant::now(),
        machine_busy,
        own,
    })
}

/// (cores used by this benchmark incl. wrk, cores used by everything else) between two snaps.
fn cpu_between(a: Option<CpuSnap>, b: Option<CpuSnap>) -> Option<(f64, f64)> {
    let (a, b) = (a?, b?);
    let hz = 100.0; // USER_HZ, 100 on every mainstream Linux build.
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let own = (b.own - a.own) as f64 / hz / secs;
    let all = (b.machine_busy - a.machine_busy) as f64 / hz / secs;
    Some((own, (all - own).max(0.0)))
}

// ---------------------------------------------------------------------------------------
// wrk

struct Load<'a> {
    addr: SocketAddr,
    conns: usize,
    per_req: usize,
    secs: u64,
    prefix: &'a str,
}

fn run_wrk(s: &Settings, script: &Path, load: &Load) -> Result<WrkResult, String> {
    let before = cpu_snap();
    let (mut r, stdout) = wrk::run(
        script,
        &wrk::Load {
            addr: load.addr,
            threads: s.wrk_threads,
            conns: load.conns,
            per_req: load.per_req,
            secs: load.secs,
            prefix: load.prefix,
            key: KEY,
            stamp: false,
        },
    )?;
    r.cpu = cpu_between(before, cpu_snap());
    if s.verbose {
        println!("--- wrk ({}) ---\n{stdout}", load.prefix);
    }
    Ok(r)
}

/// A short warm-up, then the measured run.
fn warm_and_measure(
    s: &Settings,
    script: &Path,
    addr: SocketAddr,
    conns: usize,
    per_req: usize,
    name: &str,
) -> Result<(Option<WrkResult>, WrkResult), String> {
    let warm = if s.warmup_secs > 0 {
        Some(run_wrk(
            s,
            script,
            &Load {
                addr,
                conns,
                per_req,
                secs: s.warmup_secs,
                prefix: &format!("{name}-warm"),
            },
        )?)
    } else {
        None
    };
    let run = run_wrk(
        s,
        script,
        &Load {
            addr,
            conns,
            per_req,
            secs: s.secs,
            prefix: &format!("{name}-run"),
        },
    )?;
    Ok((warm, run))
}

// ---------------------------------------------------------------------------------------
// Servers

/// The runtime of a ceiling server: its threads at the daemon's HTTP priority, so
/// `wrk` (at nice 0 on the same cores) competes with every server alike.
fn server_runtime() -> tokio::runtime::Runtime {
    serve::runtime_with("server-rt", 2, Some(http_nice()))
}

/// The answer of the ceiling servers: sluice's own for `per_req` events accepted.
fn accepted_reply(per_req: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"accepted":{per_req},"duplicates":0,"rejected":[]}}"#
    ))
}

async fn do_nothing(State(reply): State<Bytes>, body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body.len());
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        reply,
    )
}

/// The do-nothing server: reads the body, answers 202 with a fixed tiny JSON body.
fn ceiling(per_req: usize) -> Served {
    let router = axum::Router::new()
        .route("/v1/events", axum::routing::post(do_nothing))
        .with_state(accepted_reply(per_req));
    Served::start(server_runtime(), router, "the do-nothing server")
}

/// The group-fsync server: the floor of any server that answers only after its data is
/// durable. Each request's body goes to the group-fsync writer ([`GroupFsync`]: one
/// append and one fdatasync for everything queued), and the request is answered 202
/// (the same tiny JSON body as [`ceiling`]) once its body is synced.
struct Fsync {
    served: Served,
    writer: GroupFsync,
    _dir: tempfile::TempDir,
}

#[derive(Clone)]
struct FsyncState {
    jobs: fsync::Jobs,
    reply: Bytes,
}

async fn fsync_append(State(st): State<FsyncState>, body: Bytes) -> axum::response::Response {
    if fsync::append(&st.jobs, body).await {
        (
            StatusCode::ACCEPTED,
            [(header::CONTENT_TYPE, "application/json")],
            st.reply,
        )
            .into_response()
    } else {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    }
}

impl Fsync {
    fn start(s: &Settings, per_req: usize) -> Fsync {
        let dir = s.tempdir();
        let writer = GroupFsync::start(&dir.path().join("fsync.log"), "fsync-writer");
        let state = FsyncState {
            jobs: writer.jobs(),
            reply: accepted_reply(per_req),
        };
        let router = axum::Router::new()
            .route("/v1/events", axum::routing::post(fsync_append))
            .with_state(state);
        Fsync {
            served: Served::start(server_runtime(), router, "the fsync server"),
            writer,
            _dir: dir,
        }
    }

    /// Stops the server, then the writer; the writer's counts and the file's size.
    fn stop(self) -> (FsyncStats, u64) {
        self.served.stop();
        self.writer.stop()
    }
}

fn sluice_config(store: &Path) -> sluice::config::Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[storage]
path = "{store}"

[[workspaces]]
id = "{WORKSPACE}"
plan = "enterprise"
ingest_keys = ["{KEY}"]
limits = {{ rate = 0, burst = 0, monthly_cap = 0 }}
"#,
        store = store.display()
    );
    sluice::config::parse(&text, None, &|_| None)
        .unwrap_or_else(|e| panic!("bench config invalid: {e}"))
}

/// The daemon in-process on its own runtime, over a fresh temp store.
struct Sluice {
    rt: tokio::runtime::Runtime,
    daemon: Daemon,
    store_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sluice {
    fn start(s: &Settings) -> Sluice {
        let dir = s.tempdir();
        let store_path = dir.path().join("sluice.redb");
        let mut opts = StartOptions::new(sluice_config(&store_path));
        opts.listen = Some("127.0.0.1:0".parse().expect("addr"));
        // The HTTP threads' nice value (default the daemon's own).
        opts.http_nice = http_nice();
        let rt = serve::runtime("sluice-rt");
        let daemon = rt.block_on(Daemon::start(opts)).expect("daemon starts");
        let t0 = Instant::now();
        // Ready as ingest sees it: store open and delivery positioned (until then
        // ingest answers 503).
        while !daemon.app.is_ready() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the daemon never became ready"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Sluice {
            rt,
            daemon,
            store_path,
            _dir: dir,
        }
    }

    /// Graceful shutdown, then counts what the file holds.
    fn stop_and_count(self) -> StoreCounts {
        self.rt.block_on(self.daemon.shutdown());
        self.rt.shutdown_timeout(Duration::from_secs(1));
        let size = std::fs::metadata(&self.store_path).map_or(0, |m| m.len());
        let db = redb::Database::open(&self.store_path).expect("reopen the store");
        let read = db.begin_read().expect("read txn");
        // Every event ever appended: the log's head (housekeeping may have trimmed the
        // log of this workspace, which no destination reads; the head stays).
        let events = sluice::store::log::head(&read.open_table(EVENTS).expect("events"), WORKSPACE)
            .expect("read log head")
            - 1;
        // Digests not yet sealed (in `dedup_log`) plus those in live runs.
        let mut dedup = 0u64;
        for row in read
            .open_table(DEDUP_LOG)
            .expect("dedup_log")
            .iter()
            .expect("iter")
        {
            let (_, v) = row.expect("row");
            dedup += decode_log(v.value()).expect("dedup_log row").2.len() as u64;
        }
        let mut covered = 0u64;
        for row in read
            .open_table(DEDUP_META)
            .expect("dedup_meta")
            .iter()
            .expect("iter")
        {
            let (_, v) = row.expect("row");
            let m = decode_meta(v.value()).expect("dedup_meta row");
            if m.state == RunState::Live {
                dedup += m.count;
                covered = covered.max(m.through_log);
            }
        }
        // Rows a run covers but not yet trimmed were counted twice.
        for row in read
            .open_table(DEDUP_LOG)
            .expect("dedup_log")
            .range(..=covered)
            .expect("range")
        {
            let (_, v) = row.expect("row");
            dedup -= decode_log(v.value()).expect("dedup_log row").2.len() as u64;
        }
        let mut monthly = 0;
        for row in read
            .open_table(MONTHLY)
            .expect("monthly")
            .iter()
            .expect("iter")
        {
            let (k, v) = row.expect("row");
            if k.value().0 == WORKSPACE {
                monthly += v.value();
            }
        }
        StoreCounts {
            events,
            dedup,
            monthly,
            file_bytes: size,
        }
    }
}

#[derive(Debug)]
struct StoreCounts {
    events: u64,
    dedup: u64,
    monthly: u64,
    file_bytes: u64,
}

// ---------------------------------------------------------------------------------------
// Checks

#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    lines: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: String) {
        let mark = if ok { "ok  " } else { "FAIL" };
        self.lines.push(format!("  [{mark}] {what}"));
        if !ok {
            self.failures.push(what);
        }
    }

    /// Every answer 202 with the right `accepted`, and the store agrees with the answers.
    fn verify_sluice(
        &mut self,
        name: &str,
        conns: usize,
        per_req: usize,
        runs: &[&WrkResult],
        counts: &StoreCounts,
    ) {
        let sum = |f: fn(&WrkResult) -> u64| runs.iter().map(|r| f(r)).sum::<u64>();
        let sent = sum(|r| r.sent_events);
        let accepted = sum(|r| r.accepted_events);
        let ok_req = sum(|r| r.ok_requests);
        let bad_status = sum(|r| r.bad_status);
        let bad_body = sum(|r| r.bad_body);
        let sock = sum(WrkResult::socket_errors);
        let errors: String = runs.iter().map(|r| r.error_note()).collect();
        self.check(
            bad_status == 0 && bad_body == 0 && sock == 0,
            format!(
                "{name}: non-202 answers {bad_status}, wrong `accepted` {bad_body}, socket errors {sock}{errors}"
            ),
        );
        self.check(
            accepted == ok_req * per_req as u64,
            format!(
                "{name}: accepted in answers {accepted} = 202 answers {ok_req} x {per_req} events"
            ),
        );
        // Per run: a request per connection, and the one wrk builds but never sends.
        let in_flight_max = (runs.len() * (conns + 1) * per_req) as u64;
        self.check(
            counts.events >= accepted
                && counts.events <= sent
                && sent - counts.events <= in_flight_max,
            format!(
                "{name}: stored {} events; accepted in answers {accepted} <= stored <= sent {sent} \
                 (sent - stored {}: in flight when wrk stopped and wrk's unsent check request, at most {in_flight_max})",
                counts.events,
                sent.saturating_sub(counts.events)
            ),
        );
        self.check(
            counts.dedup == counts.events && counts.monthly == counts.events,
            format!(
                "{name}: dedup rows {} and monthly count {} equal stored events {}",
                counts.dedup, counts.monthly, counts.events
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Realistic events (the same shape as events.lua builds)

const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
                  (KHTML, like Gecko) Version/17.4 Safari/605.1.15";

fn event_json(prefix: &str, tid: u64, c: u64, now_secs: i64) -> Value {
    serde_json::json!({
        "event_id": format!("{prefix}-{tid}-{c}"),
        "event_name": "Purchase",
        "event_time": now_secs,
        "action_source": "website",
        "event_source_url": "https://shop.example.com/checkout/thank-you",
        "user_data": {
            "email": format!("Buyer.{tid}.{c}@Example.com"),
            "phone": format!("+1 (415) 555-{:04}", c % 10000),
            "client_ip_address": format!("203.0.113.{}", c % 250 + 1),
            "client_user_agent": UA,
            "fbp": format!("fb.1.1700000000000.{c}"),
        },
        "custom_data": {"currency": "EUR", "value": (c % 500) as f64 + 0.5, "order_id": format!("ord-{tid}-{c}")}
    })
}

fn encoded_event(prefix: &str, c: u64, now_ms: i64) -> Vec<u8> {
    let ctx = ValidateCtx {
        now_secs: now_ms / 1000,
        default_country_code: "1",
        destination_ids: &[],
        keep_plaintext: false,
    };
    let event = validate_event(&event_json(prefix, 1, c, now_ms / 1000), &ctx)
        .unwrap_or_else(|e| panic!("bench event invalid: {e:?}"));
    encode_event(&StoredEvent {
        accepted_ms: now_ms,
        sealed: Vec::new(),
        event,
    })
}

// ---------------------------------------------------------------------------------------
// redb alone

struct RedbResult {
    label: String,
    events: u64,
    commits: u64,
    wall: Duration,
    /// Time inside write transactions (begin → commit returned), the store's own cost.
    in_txn: Duration,
    commit_p50: Duration,
    commit_p99: Duration,
    value_bytes: usize,
    file_bytes: u64,
    cpu: Option<(f64, f64)>,
}

/// What the writer does: per request one packed `events` chunk and one `dedup_log`
/// row; per commit one monthly counter update and one fsync.
fn redb_loop(s: &Settings, requests: usize, per_request: usize, secs: f64) -> RedbResult {
    let per_commit = requests * per_request;
    let dir = s.tempdir();
    let path = dir.path().join("redb-only.redb");
    let db = redb::Database::create(&path).expect("create redb");
    {
        let txn = db.begin_write().expect("txn");
        txn.open_table(EVENTS).expect("events");
        txn.open_table(DEDUP_LOG).expect("dedup_log");
        txn.open_table(MONTHLY).expect("monthly");
        txn.commit().expect("commit");
    }
    let now_ms = now_ms();
    // A pool of distinct real encoded events; values repeat across commits, keys never do.
    let pool: Vec<Vec<u8>> = (0..per_commit.max(1) as u64)
        .map(|c| encoded_event("redb", c, now_ms))
        .collect();
    let value_bytes = pool.iter().map(Vec::len).sum::<usize>() / pool.len();
    let month = sluice::clock::utc_month(now_ms);

    let mut seq = 1u64;
    let mut counter = 0u64;
    let mut commits = 0u64;
    let mut in_txn = Duration::ZERO;
    let mut commit_times = Vec::new();
    let mut digests = Vec::with_capacity(per_commit);
    let start = Instant::now();
    let budget = Duration::from_secs_f64(secs);
    let before = cpu_snap();
    while start.elapsed() < budget {
        // Digests (SHA-256 per event) are intake's work, not the store's: made outside.
        digests.clear();
        for _ in 0..per_commit {
            counter += 1;
            digests.push(dedup_digest(
                WORKSPACE,
                "Purchase",
                &format!("redb-1-{counter}"),
            ));
        }
        let accepted = self::now_ms() as u64;
        let t = Instant::now();
        let txn = db.begin_write().expect("txn");
        {
            let mut events = txn.open_table(EVENTS).expect("events");
            let mut dedup = txn.open_table(DEDUP_LOG).expect("dedup_log");
            for (r, ds) in digests.chunks(per_request).enumerate() {
                let chunk = sluice::store::log::encode_chunk(
                    (0..ds.len()).map(|i| pool[(r * per_request + i) % pool.len()].as_slice()),
                );
                events
                    .insert((WORKSPACE, seq), chunk.as_slice())
                    .expect("insert events");
                dedup
                    .insert(seq, encode_log(accepted as i64, seq, ds).as_slice())
                    .expect("insert dedup_log");
                seq += ds.len() as u64;
            }
            let mut monthly = txn.open_table(MONTHLY).expect("monthly");
            let cur = monthly
                .get((WORKSPACE, month))
                .expect("get")
                .map_or(0, |v| v.value());
            monthly
                .insert((WORKSPACE, month), cur + per_commit as u64)
                .expect("monthly insert");
        }
        txn.commit().expect("commit");
        let dt = t.elapsed();
        in_txn += dt;
        commit_times.push(dt);
        commits += 1;
    }
    let wall = start.elapsed();
    let cpu = cpu_between(before, cpu_snap());
    commit_times.sort();
    let pct = |p: f64| commit_times[((commit_times.len() - 1) as f64 * p) as usize];
    drop(db);
    RedbResult {
        label: format!("{requests} req x {per_request} ev/commit"),
        events: commits * per_commit as u64,
        commits,
        wall,
        in_txn,
        commit_p50: pct(0.5),
        commit_p99: pct(0.99),
        value_bytes,
        file_bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
        cpu,
    }
}

// ---------------------------------------------------------------------------------------
// Report

struct Row {
    name: String,
    scenario: &'static str,
    round: usize,
    conns: usize,
    per_req: usize,
    r: WrkResult,
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn fmt_rate(x: f64) -> String {
    let s = format!("{x:.0}");
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `row`'s requests/s as a share of the ceiling's, and its events/s as a share of the
/// fsync server's.
fn print_row(row: &Row, ceiling: Option<&Row>, fsync: Option<&Row>) {
    let r = &row.r;
    let ratio = match ceiling {
        Some(c) => format!("{:.1}%", 100.0 * r.req_per_sec() / c.r.req_per_sec()),
        None => "-".into(),
    };
    let vs_fsync = match fsync {
        Some(f) => format!("{:.1}%", 100.0 * r.events_per_sec() / f.r.events_per_sec()),
        None => "-".into(),
    };
    println!(
        "{:<16} {:>5} {:>6} {:>11} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10} {:>9} {:>10}",
        row.name,
        row.conns,
        row.per_req,
        fmt_rate(r.req_per_sec()),
        fmt_rate(r.events_per_sec()),
        fmt_us(r.p50_us),
        fmt_us(r.p90_us),
        fmt_us(r.p99_us),
        fmt_us(r.max_us),
        r.failures(),
        ratio,
        vs_fsync,
        match r.cpu {
            Some((own, other)) => format!("{own:.2}/{other:.2}"),
            None => "-".into(),
        }
    );
}

/// "61.2%" for one round; "61.2% (median of 58.0%, 61.2%, 64.9%)" for several.
fn percent_figure(ratios: &[f64]) -> String {
    let m = median(ratios).unwrap_or(f64::NAN);
    if ratios.len() < 2 {
        return format!("{:.1}%", 100.0 * m);
    }
    let all: Vec<String> = ratios
        .iter()
        .map(|r| format!("{:.1}%", 100.0 * r))
        .collect();
    format!("{:.1}% (median of {})", 100.0 * m, all.join(", "))
}

fn main() -> ExitCode {
    let s = Settings::from_env();
    if !wrk::available() {
        eprintln!("{}", wrk::INSTALL_HINT);
        return ExitCode::from(2);
    }
    // Fail early if the bodies the Lua script builds would not validate.
    encoded_event("selftest", 1, now_ms());

    let script_dir = s.tempdir();
    let script = wrk::write_script(script_dir.path());

    println!(
        "sluice ingest benchmark: wrk -t{} on loopback, {} s measured after {} s warm-up per run; \
         servers on tokio multi-thread runtimes with 2 workers, HTTP threads at nice {} (the daemon's); {} CPUs",
        s.wrk_threads,
        s.secs,
        s.warmup_secs,
        http_nice(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let mut checks = Checks::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut store_notes: Vec<String> = Vec::new();

    // In each load, the ceilings first, then sluice, so every ratio comes from one run.
    let scenarios: [(&str, Server, usize, usize); 6] = [
        ("ceiling-single", Server::Ceiling, s.conns, 1),
        ("fsync-single", Server::Fsync, s.conns, 1),
        ("sluice-single", Server::Sluice, s.conns, 1),
        ("ceiling-batch", Server::Ceiling, s.batch_conns, s.batch),
        ("fsync-batch", Server::Fsync, s.batch_conns, s.batch),
        ("sluice-batch", Server::Sluice, s.batch_conns, s.batch),
    ];
    for (round, (scenario, kind, conns, per_req)) in
        (1..=s.rounds).flat_map(|round| scenarios.iter().map(move |sc| (round, *sc)))
    {
        if !s.wants(scenario) {
            continue;
        }
        let label = s.label(scenario, round);
        let name = label.as_str();
        eprintln!("running {name} ({conns} connections, {per_req} events/request)...");
        match kind {
            Server::Sluice => {
                let server = Sluice::start(&s);
                let res = warm_and_measure(&s, &script, server.daemon.addr, conns, per_req, name);
                let counts = server.stop_and_count();
                match res {
                    Ok((warm, run)) => {
                        let mut runs = vec![&run];
                        runs.extend(warm.as_ref());
                        checks.verify_sluice(name, conns, per_req, &runs, &counts);
                        store_notes.push(format!(
                            "  {name}: store file {:.1} MiB for {} events ({:.0} bytes/event)",
                            counts.file_bytes as f64 / 1048576.0,
                            counts.events,
                            counts.file_bytes as f64 / counts.events.max(1) as f64
                        ));
                        rows.push(Row {
                            name: name.into(),
                            scenario,
                            round,
                            conns,
                            per_req,
                            r: run,
                        });
                    }
                    Err(e) => checks.check(false, format!("{name}: {e}")),
                }
            }
            Server::Fsync => {
                let server = Fsync::start(&s, per_req);
                let res = warm_and_measure(&s, &script, server.served.addr, conns, per_req, name);
                let (st, file_bytes) = server.stop();
                match res {
                    Ok((warm, run)) => {
                        let ok_requests =
                            run.ok_requests + warm.as_ref().map_or(0, |w| w.ok_requests);
                        checks.check(
                            run.failures() == 0 && st.failures == 0,
                            format!(
                                "{name}: non-202 / bad answers / socket errors: {}; failed writes or syncs: {}{}",
                                run.failures(),
                                st.failures,
                                run.error_note()
                            ),
                        );
                        checks.check(
                            st.requests >= ok_requests && file_bytes == st.bytes,
                            format!(
                                "{name}: requests written and synced {} >= 202 answers {ok_requests} (warm-up and run); file {file_bytes} bytes = bytes written {}",
                                st.requests, st.bytes
                            ),
                        );
                        store_notes.push(format!(
                            "  {name}: {} fdatasyncs for {} requests ({:.1} requests per fsync, largest group {}), \
                             mean fdatasync {}, file {:.1} MiB",
                            st.syncs,
                            st.requests,
                            st.requests as f64 / st.syncs.max(1) as f64,
                            st.largest_group,
                            fmt_us((st.sync_time.as_micros() as u64) / st.syncs.max(1)),
                            file_bytes as f64 / 1048576.0
                        ));
                        rows.push(Row {
                            name: name.into(),
                            scenario,
                            round,
                            conns,
                            per_req,
                            r: run,
                        });
                    }
                    Err(e) => checks.check(false, format!("{name}: {e}")),
                }
            }
            Server::Ceiling => {
                let server = ceiling(per_req);
                let res = warm_and_measure(&s, &script, server.addr, conns, per_req, name);
                server.stop();
                match res {
                    Ok((_, run)) => {
                        checks.check(
                            run.failures() == 0,
                            format!(
                                "{name}: non-202 / bad answers / socket errors: {}{}",
                                run.failures(),
                                run.error_note()
                            ),
                        );
                        rows.push(Row {
                            name: name.into(),
                            scenario,
                            round,
                            conns,
                            per_req,
                            r: run,
                        });
                    }
                    Err(e) => checks.check(false, format!("{name}: {e}")),
                }
            }
        }
    }

    let mut redb_rows = Vec::new();
    if s.wants("redb") {
        eprintln!("running redb-only loops...");
        let n = REDB_EVENTS_PER_COMMIT;
        let half = s.secs as f64 / 2.0;
        // Batched load: many 100-event requests per commit.
        redb_rows.push(redb_loop(&s, n / s.batch, s.batch, s.secs as f64));
        // What single-event load at `conns` connections gives the writer: small commits.
        redb_rows.push(redb_loop(&s, s.conns, 1, half));
    }

    // ----- report
    let find_in = |n: &str, round: usize| rows.iter().find(|r| r.scenario == n && r.round == round);
    if !rows.is_empty() {
        println!();
        println!(
            "{:<16} {:>5} {:>6} {:>11} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10} {:>9} {:>10}",
            "target",
            "conns",
            "ev/req",
            "requests/s",
            "events/s",
            "p50",
            "p90",
            "p99",
            "max",
            "errors",
            "vs ceiling",
            "vs fsync",
            "cpu b/o"
        );
        for row in &rows {
            let find = |n: &str| find_in(n, row.round);
            let (ceiling, fsync) = match row.scenario {
                "sluice-single" => (find("ceiling-single"), find("fsync-single")),
                "sluice-batch" => (find("ceiling-batch"), find("fsync-batch")),
                "fsync-single" => (find("ceiling-single"), None),
                "fsync-batch" => (find("ceiling-batch"), None),
                _ => (None, None),
            };
            print_row(row, ceiling, fsync);
        }
        println!(
            "(events/s = events answered 202 and counted in `accepted`; errors = non-202, wrong `accepted`, socket errors;\n \
             vs ceiling = requests/s ÷ the do-nothing server's; vs fsync = events/s ÷ the group-fsync server's (same load, same bodies);\n \
             cpu b/o = cores used by this benchmark incl. wrk / by other processes during the run: other > 0.1 means the figures are skewed)"
        );
    }
    if !redb_rows.is_empty() {
        println!();
        println!(
            "{:<28} {:>9} {:>8} {:>14} {:>14} {:>11} {:>11} {:>10} {:>12} {:>10}",
            "redb alone, x ev/commit",
            "events",
            "commits",
            "events/s txn",
            "events/s wall",
            "commit p50",
            "commit p99",
            "value B",
            "file MiB",
            "cpu b/o"
        );
        for r in &redb_rows {
            println!(
                "{:<28} {:>9} {:>8} {:>14} {:>14} {:>11} {:>11} {:>10} {:>12.1} {:>10}",
                r.label,
                r.events,
                r.commits,
                fmt_rate(r.events as f64 / r.in_txn.as_secs_f64()),
                fmt_rate(r.events as f64 / r.wall.as_secs_f64()),
                fmt_us(r.commit_p50.as_micros() as u64),
                fmt_us(r.commit_p99.as_micros() as u64),
                r.value_bytes,
                r.file_bytes as f64 / 1048576.0,
                match r.cpu {
                    Some((own, other)) => format!("{own:.2}/{other:.2}"),
                    None => "-".into(),
                }
            );
        }
        println!(
            "(events/s txn = events / time inside write transactions incl. fsync; wall includes making the digests)"
        );
    }

    // ----- targets
    let mut missed = Vec::new();
    println!();
    println!("targets:");
    // Each figure per round, judged by its median over the rounds (the box's own
    // speed moves between runs more than within one round's pair of runs).
    let rounds: Vec<usize> = (1..=s.rounds).collect();
    // The rounds that ran both `a` and `b`, with their rows.
    let pairs = |a: &str, b: &str| -> Vec<(&Row, &Row)> {
        rounds
            .iter()
            .filter_map(|&k| Some((find_in(a, k)?, find_in(b, k)?)))
            .collect()
    };
    let single_ceiling: Vec<f64> = pairs("sluice-single", "ceiling-single")
        .into_iter()
        .map(|(r, c)| r.r.req_per_sec() / c.r.req_per_sec())
        .collect();
    if let Some(ratio) = median(&single_ceiling) {
        let ok = ratio >= SINGLE_TARGET_RATIO;
        println!(
            "  [{}] sluice single-event requests/s = {} of the do-nothing server's (target >= {:.0}%)",
            if ok { "met " } else { "MISS" },
            percent_figure(&single_ceiling),
            100.0 * SINGLE_TARGET_RATIO
        );
        if !ok {
            missed.push("single-event ratio");
        }
    }
    let batch_eps: Vec<f64> = rounds
        .iter()
        .filter_map(|&k| find_in("sluice-batch", k))
        .map(|r| r.r.events_per_sec())
        .collect();
    if let Some(eps) = median(&batch_eps) {
        let ok = eps >= BATCH_TARGET_EVENTS_PER_SEC;
        println!(
            "  [{}] sluice {}-event batches {} events/s{} (target >= {})",
            if ok { "met " } else { "MISS" },
            s.batch,
            fmt_rate(eps),
            if batch_eps.len() > 1 {
                format!(
                    " (median of {})",
                    batch_eps
                        .iter()
                        .map(|x| fmt_rate(*x))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            },
            fmt_rate(BATCH_TARGET_EVENTS_PER_SEC)
        );
        if !ok {
            missed.push("batch events/s");
        }
    }

    for (sl, fs, target, what) in [
        (
            "sluice-single",
            "fsync-single",
            FSYNC_SINGLE_TARGET_RATIO,
            "single-event",
        ),
        (
            "sluice-batch",
            "fsync-batch",
            FSYNC_BATCH_TARGET_RATIO,
            "batch",
        ),
    ] {
        let both = pairs(sl, fs);
        let ratios: Vec<f64> = both
            .iter()
            .map(|(r, f)| r.r.events_per_sec() / f.r.events_per_sec())
            .collect();
        let Some(ratio) = median(&ratios) else {
            continue;
        };
        let ok = ratio >= target;
        let figures: Vec<String> = both
            .iter()
            .map(|(r, f)| {
                format!(
                    "{} / {}",
                    fmt_rate(r.r.events_per_sec()),
                    fmt_rate(f.r.events_per_sec())
                )
            })
            .collect();
        println!(
            "  [{}] sluice {what} events/s = {} of the group-fsync server's, same load and bodies ({}; target >= {:.0}%)",
            if ok { "met " } else { "MISS" },
            percent_figure(&ratios),
            figures.join(", "),
            100.0 * target
        );
        if !ok {
            missed.push(if sl == "sluice-single" {
                "single-event vs fsync"
            } else {
                "batch vs fsync"
            });
        }
    }

    println!();
    println!("correctness:");
    for l in &checks.lines {
        println!("{l}");
    }
    for n in &store_notes {
        println!("{n}");
    }

    if !checks.failures.is_empty() {
        eprintln!("{} correctness check(s) failed", checks.failures.len());
        return ExitCode::FAILURE;
    }
    if s.strict && !missed.is_empty() {
        eprintln!("missed targets: {}", missed.join(", "));
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
