//! `sluice drill`: rehearse a peak (Black Friday by default) against simulated
//! platforms, and say in a report whether every guarantee held.
//!
//! The drill runs the real engine — the daemon's own [`Daemon`] with its redb store in
//! a temporary directory — on real loopback HTTP: traffic is POSTed to `/v1/events`,
//! deliveries go through the real client to one in-process simulator per destination
//! ([`crate::sim`]), and the drill reads the engine only through its admin API and
//! `/metrics`. Everything runs on one [`ManualClock`] that the driver moves in one-second
//! steps, each after the step's traffic was accepted and once no request has been in
//! flight for long (`Settler`), paced to `--speed` times real time: the clock never
//! outruns the machine (a slow machine makes the drill longer, never different).
//!
//! Owned here: the run (this file), the scenario format ([`scenario`]), the traffic
//! ([`traffic`]), the rehearsal's config and simulators ([`setup`]), what is read of
//! the engine (`read`), the verdicts ([`verdict`]), the HTML/JSON report ([`report`])
//! and the progress lines (`view`).

mod read;
pub mod report;
pub mod scenario;
pub mod setup;
pub mod traffic;
pub mod verdict;
mod view;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::app::{Daemon, StartOptions};
use crate::clock::{Clock, ManualClock};
use crate::sim::SimServer;
use scenario::Scenario;
use traffic::{Posted, Traffic};

/// Arguments of `sluice drill`.
#[derive(Debug, Clone, clap::Args)]
pub struct DrillArgs {
    /// Rehearse this config's workspaces, destinations and policies (endpoints are
    /// swapped for simulators; secrets are not needed). Default: the scenario's own.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The scenario (TOML, see docs/drill.md). Default: the built-in BFCM scenario.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// How many times faster than real time the drill clock runs (360: six hours in a
    /// minute).
    #[arg(long, default_value_t = 360.0, value_name = "N")]
    pub speed: f64,
    /// Where the report goes (default: a new `./drill-<UTC time>/`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// One destination under drill.
pub struct DestRun {
    pub id: String,
    pub platform: crate::config::Platform,
    pub workspace: String,
    /// The `events` filter (None: all).
    pub events: Option<Vec<String>>,
    pub threshold: f64,
    pub interval_ms: i64,
    pub auto_clear_ms: i64,
    pub reprobe_ms: i64,
    pub timeout_ms: i64,
    pub sim: SimServer,
    /// The fault windows in force (indexes into the scenario's faults).
    active: Vec<usize>,
}

/// One destination at one sample.
#[derive(Debug, Clone, Serialize)]
pub struct DestSample {
    pub state: String,
    pub queue_depth: u64,
    pub lag_s: f64,
    pub dlq_depth: u64,
    pub error_rate: Option<f64>,
    pub delivered: u64,
    pub throttled: u64,
    pub retried: u64,
    pub dead_lettered: u64,
}

/// The engine at one drill minute, as its admin API and `/metrics` told.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Drill time, ms from the scenario's start.
    pub t_ms: i64,
    /// Events accepted by the daemon so far (its own counter).
    pub ingested: u64,
    pub dests: Vec<DestSample>,
    /// DLQ entries by "destination reason".
    pub dlq: BTreeMap<String, u64>,
}

/// A time-stamped action of the drill's operator.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorAction {
    pub t_ms: i64,
    pub destination: String,
    pub action: String,
    pub result: String,
}

/// The replay: what was in each destination's DLQ and when it was replayed.
#[derive(Debug, Clone, Default)]
pub struct ReplayRun {
    pub t_ms: i64,
    /// Destination → (event id, event_time) of each replayed entry.
    pub entries: BTreeMap<String, Vec<(String, i64)>>,
    /// Destination → the simulator's request count before the replay.
    pub mark: BTreeMap<String, usize>,
}

/// What a drill leaves for the verdicts and the report.
pub struct Drill {
    pub scenario: Scenario,
    pub speed: f64,
    pub dests: Vec<DestRun>,
    pub posted: Vec<Posted>,
    /// The workspaces traffic went to ([`Posted::workspace`] indexes them).
    pub workspaces: Vec<String>,
    pub samples: Vec<Sample>,
    pub operator: Vec<OperatorAction>,
    pub replay: Option<ReplayRun>,
    /// Rows of `GET /v1/auto-pause-events`, oldest first.
    pub pause_rows: Vec<Value>,
    /// Every alert the daemon sent (its webhook bodies), in the order received: what
    /// the people on call would have been told.
    pub alerts: Vec<Value>,
    /// Final DLQ entries per destination: (event id, error class).
    pub dlq_final: BTreeMap<String, Vec<(String, String)>>,
    /// When the traffic window's backlog had drained (drill ms), if it did.
    pub drained_at: Option<i64>,
    pub wall: Duration,
    /// Events refused at ingest (not `429`): never accepted.
    pub ingest_refused: u64,
    /// Ingest requests answered `429 rate_limited` (their events are posted again at
    /// the next post, until accepted).
    pub ingest_retried: u64,
    /// What a `429` sent back, waiting for the next post.
    pending: Vec<(usize, Vec<Posted>, Vec<Value>)>,
}

/// A running rehearsal: the daemon, its clock and the client.
struct Rig {
    clock: Arc<ManualClock>,
    daemon: Option<Daemon>,
    url: String,
    http: reqwest::Client,
    admin: String,
    keys: Vec<String>,
    /// The store's directory (removed when the rig is dropped).
    _tmp: setup::TempDir,
    start_ms: i64,
}

impl Rig {
    fn t(&self) -> i64 {
        self.clock.now_ms() - self.start_ms
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
        Ok(r.json().await?)
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.admin)
            .json(body)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }
}

/// `sluice drill`: runs, prints the verdict, writes the report; exit 1 when a
/// verdict line fails.
pub fn main(args: DrillArgs) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run_and_report(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs the drill, writes the report, prints the verdict; true when every line passed.
pub async fn run_and_report(args: DrillArgs) -> anyhow::Result<bool> {
    let scenario = match &args.scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::builtin(),
    };
    let config_text = match &args.config {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?,
        None => scenario
            .config_text
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the scenario names no config: give --config"))?,
    };
    anyhow::ensure!(
        args.speed.is_finite() && args.speed >= 1.0,
        "--speed: a number of at least 1"
    );
    let out = args.out.clone().unwrap_or_else(|| {
        let now = crate::clock::rfc3339_ms(crate::clock::SystemClock.now_ms());
        PathBuf::from(format!(
            "drill-{}",
            now[..19].replace([':', '-'], "").replace('T', "-")
        ))
    });
    println!(
        "sluice drill: {} — {} of drill time at {}× ({}), report in {}",
        scenario.name,
        crate::config::format_duration(Duration::from_millis(scenario.duration_ms as u64)),
        args.speed,
        args.config.as_ref().map_or_else(
            || "the scenario's config".to_string(),
            |p| p.display().to_string()
        ),
        out.display()
    );
    let drill = run(scenario, &config_text, args.speed).await?;
    let verdicts = verdict::judge(&drill);
    let passed = verdicts.lines.iter().all(|l| l.pass);
    std::fs::create_dir_all(&out)?;
    let summary = report::summary(&drill, &verdicts);
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    std::fs::write(out.join("report.html"), report::html(&drill, &verdicts))?;
    println!();
    print!("{}", verdict::render(&verdicts));
    println!(
        "\n{} events pushed ({} accepted) in {:.1} s of wall time; report: {}",
        drill.posted.len(),
        drill.posted.iter().filter(|p| p.accepted).count(),
        drill.wall.as_secs_f64(),
        out.join("report.html").display()
    );
    if drill.ingest_retried > 0 {
        println!(
            "note: ingest answered 429 rate_limited (the workspace's plan limits) to {} requests; their events were posted again every {} s until accepted",
            drill.ingest_retried,
            drill.scenario.post_every_ms / 1000
        );
    }
    if drill.ingest_refused > 0 {
        println!(
            "note: {} events were refused at ingest: not counted as accepted",
            drill.ingest_refused
        );
    }
    Ok(passed)
}

/// Runs the scenario against `config_text` at `speed`.
pub async fn run(scenario: Scenario, config_text: &str, speed: f64) -> anyhow::Result<Drill> {
    let wall0 = Instant::now();
    let clock = ManualClock::new(scenario.start_ms);
    let specs = setup::destinations(config_text)?;
    // A fault for a destination (or platform) the config does not have injects
    // nothing: say so rather than pass a drill that tested less than it claims.
    let mut skipped = std::collections::BTreeSet::new();
    for w in &scenario.faults {
        if !specs.iter().any(|x| w.applies(&x.id, x.platform.name())) {
            skipped.insert(match (&w.destination, &w.platform) {
                (Some(d), _) => format!("{:?} faults of destination {d}", w.kind),
                (None, p) => format!(
                    "{:?} faults of platform {}",
                    w.kind,
                    p.as_deref().unwrap_or("")
                ),
            });
        }
    }
    for s in skipped {
        println!("note: this config has nothing the scenario's {s} apply to: skipped");
    }
    let sims = setup::start_sims(&specs, clock.clone()).await?;
    // Where the daemon's alerts go: a plain webhook receiver of the drill's own.
    let alert_sink = crate::sim::start(
        crate::config::Platform::Webhook,
        "127.0.0.1:0".parse()?,
        clock.clone(),
        crate::sim::FaultScript::none(),
    )
    .await?;
    let tmp = setup::temp_dir()?;
    let reh = setup::rewrite(config_text, tmp.path(), &sims, Some(&alert_sink.url()))?;
    let cfg = reh.config.clone();
    let mut dests = Vec::new();
    for (sim, spec) in sims.into_iter().zip(&specs) {
        let d = cfg
            .destinations
            .iter()
            .find(|d| d.id == spec.id)
            .ok_or_else(|| anyhow::anyhow!("destination {} not in the loaded config", spec.id))?;
        let ap = &d.policy.auto_pause;
        dests.push(DestRun {
            id: d.id.clone(),
            platform: d.platform,
            workspace: d.workspace.clone(),
            events: d.events.clone(),
            threshold: ap.threshold,
            interval_ms: ap.interval.as_millis() as i64,
            auto_clear_ms: ap.auto_clear.as_millis() as i64,
            reprobe_ms: ap.reprobe.as_millis() as i64,
            timeout_ms: d.policy.timeout.as_millis() as i64,
            sim,
            active: Vec::new(),
        });
    }
    // Traffic goes to the workspaces that have a destination.
    let workspaces: Vec<String> = reh
        .ingest_keys
        .keys()
        .filter(|w| dests.iter().any(|d| &d.workspace == *w))
        .cloned()
        .collect();
    anyhow::ensure!(!workspaces.is_empty(), "no workspace has a destination");
    let keys = workspaces
        .iter()
        .map(|w| reh.ingest_keys[w].clone())
        .collect();

    let mut opts = StartOptions::new(cfg);
    opts.config_path = Some(tmp.path().join("sluice.toml"));
    opts.clock = clock.clone();
    opts.listen = Some("127.0.0.1:0".parse()?);
    // The daemon closes a connection idle for its header timeout (real time) and the
    // clock may wait longer than that for the engine: a connection reused just as the
    // daemon closed it would fail the drill ("connection closed before message
    // completed"). Connections idle for half of it are not reused.
    let http = reqwest::Client::builder()
        .pool_idle_timeout(opts.http_limits.header_timeout / 2)
        .build()?;
    let daemon = Daemon::start(opts).await?;
    let rig = Rig {
        url: format!("http://{}", daemon.addr),
        daemon: Some(daemon),
        clock: clock.clone(),
        http,
        admin: reh.admin_token.clone(),
        keys,
        _tmp: tmp,
        start_ms: scenario.start_ms,
    };
    wait_ready(&rig).await?;
    let mut d = Drill {
        scenario,
        speed,
        dests,
        posted: Vec::new(),
        workspaces: workspaces.clone(),
        samples: Vec::new(),
        operator: Vec::new(),
        replay: None,
        pause_rows: Vec::new(),
        alerts: Vec::new(),
        dlq_final: BTreeMap::new(),
        drained_at: None,
        wall: Duration::ZERO,
        ingest_refused: 0,
        ingest_retried: 0,
        pending: Vec::new(),
    };
    let result = drive(&mut d, &rig, Traffic::new(workspaces), wall0).await;
    d.alerts = alert_sink.received().into_iter().map(|r| r.body).collect();
    let mut rig = rig;
    if let Some(daemon) = rig.daemon.take() {
        daemon.shutdown().await;
    }
    drop(rig);
    result?;
    d.wall = wall0.elapsed();
    Ok(d)
}

async fn wait_ready(rig: &Rig) -> anyhow::Result<()> {
    for _ in 0..1000 {
        if let Ok(r) = rig.http.get(format!("{}/readyz", rig.url)).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("the daemon never became ready")
}

const TICK_MS: i64 = 1_000;

/// The phases: traffic window, drain, overnight, replay, final reads.
async fn drive(
    d: &mut Drill,
    rig: &Rig,
    mut traffic: Traffic,
    wall0: Instant,
) -> anyhow::Result<()> {
    let mut view = view::View::new(d.speed);
    let mut settler = Settler::new(d);
    let pace0 = Instant::now();
    let speed = d.speed;
    let t_first = rig.t();
    let paced_ms =
        move |t: i64| pace0 + Duration::from_secs_f64((t - t_first) as f64 / 1000.0 / speed);
    let end = d.scenario.duration_ms;
    let post_every = d.scenario.post_every_ms;
    // Drain: up to the replay (or 6 more hours), ends once every queue is empty and
    // nothing is paused.
    let drain_cap = d.scenario.replay.map_or(end + 6 * 3_600_000, |r| r.at_ms);
    let mut t = rig.t();
    loop {
        apply_faults(d, t);
        operator(d, rig, t).await;
        if t % post_every == 0 && (t < end || !d.pending.is_empty()) {
            post(d, rig, &mut traffic, t).await?;
        }
        if t % 60_000 == 0 {
            let s = read::sample(d, rig, t).await?;
            view.show(d, &s, wall0.elapsed());
            let idle = s
                .dests
                .iter()
                .all(|x| x.queue_depth == 0 && x.state == "active");
            d.samples.push(s);
            if t >= end && idle && d.pending.is_empty() && operator_done(d, t) {
                d.drained_at = Some(t);
                break;
            }
            if t >= drain_cap {
                break;
            }
        }
        settler.settle(d, rig, t, TICK_MS).await?;
        rig.clock.advance_ms(TICK_MS);
        t += TICK_MS;
        tokio::time::sleep_until(paced_ms(t).into()).await;
    }
    view.finish();
    if let Some(r) = d.scenario.replay {
        // Overnight: nothing pending; the clock moves a minute at a time, unpaced.
        while t < r.at_ms {
            settler.settle(d, rig, t, 60_000).await?;
            rig.clock.advance_ms(60_000);
            t += 60_000;
            tokio::task::yield_now().await;
        }
        replay(d, rig, t).await?;
        let stop = t + r.run_for_ms;
        let base = Instant::now();
        let t0 = t;
        while t < stop {
            apply_faults(d, t);
            if t % 60_000 == 0 {
                let s = read::sample(d, rig, t).await?;
                view.show(d, &s, wall0.elapsed());
                d.samples.push(s);
            }
            settler.settle(d, rig, t, TICK_MS).await?;
            rig.clock.advance_ms(TICK_MS);
            t += TICK_MS;
            let due = base + Duration::from_secs_f64((t - t0) as f64 / 1000.0 / d.speed);
            tokio::time::sleep_until(due.into()).await;
        }
        let s = read::sample(d, rig, t).await?;
        d.samples.push(s);
        view.finish();
    }
    d.pause_rows = read::pause_rows(rig).await?;
    for dest in &d.dests {
        d.dlq_final
            .insert(dest.id.clone(), read::dlq_entries(rig, &dest.id).await?);
    }
    Ok(())
}

/// Installs each simulator's script when the windows in force change.
fn apply_faults(d: &mut Drill, t: i64) {
    for dest in &mut d.dests {
        let active = d.scenario.active_at(&dest.id, dest.platform.name(), t);
        if active != dest.active {
            dest.sim.set_script(d.scenario.script_of(&active));
            dest.active = active;
        }
    }
}

/// The operator's part: when a revoked token's window ends, the token is rotated and
/// a destination paused for it is resumed through the admin API.
async fn operator(d: &mut Drill, rig: &Rig, t: i64) {
    let mut todo = Vec::new();
    for w in &d.scenario.faults {
        if w.kind == scenario::Kind::Auth && w.operator_resume && w.to_ms == t {
            for dest in &d.dests {
                if w.applies(&dest.id, dest.platform.name()) {
                    todo.push(dest.id.clone());
                }
            }
        }
    }
    for id in todo {
        let (status, body) = match rig
            .post(
                &format!("/v1/destinations/{id}/resume"),
                &json!({"reason": "drill: token rotated"}),
            )
            .await
        {
            Ok(x) => x,
            Err(e) => (0, json!({"error": e.to_string()})),
        };
        let result = if status == 200 {
            "resumed".to_string()
        } else {
            format!(
                "{status} {}",
                body.get("error").and_then(Value::as_str).unwrap_or("")
            )
        };
        d.operator.push(OperatorAction {
            t_ms: t,
            destination: id,
            action: "rotate token, resume".into(),
            result,
        });
    }
}

/// Whether every operator action due by `t` is behind us.
fn operator_done(d: &Drill, t: i64) -> bool {
    d.scenario
        .faults
        .iter()
        .all(|w| !(w.kind == scenario::Kind::Auth && w.operator_resume) || w.to_ms <= t)
}

/// Keeps the clock from running past requests the machine has not got to yet, so a
/// timeout in a drill is the platform's, never the machine's: a destination may have
/// requests in flight (sent, not yet settled by the engine) for up to `slack_ms` of
/// drill time; then the clock waits until none is in flight and their outcomes are
/// committed. Alerts being sent are waited for at once (their attempts time out on the
/// drill's clock too).
///
/// That wait is for the machine's work alone (sending on loopback, committing, and the
/// rest of a backlog drained meanwhile), which the drill's clock plays no part in. It
/// lasts as long as that work goes on; if nothing changes for [`STALL_WAIT`] of real
/// time (or the step has waited [`STEP_WAIT`] in all), the machine or the engine is
/// stuck, and the drill stops with an error saying which destination, rather than move
/// the clock on and time its requests out for the machine's sake (the copies sent again
/// would not be the platform's duplicates). Destinations whose simulator holds requests
/// on purpose on the drill's clock (timeout and slow windows, and one request timeout
/// after them: what was held is given up by then) are not waited for.
const STALL_WAIT: Duration = Duration::from_secs(120);

/// The most one step waits for a destination (or the alerts) that keeps making progress.
const STEP_WAIT: Duration = Duration::from_secs(30 * 60);

/// How long the clock waits for a probe's steps. A probe may wait for the drill's
/// clock itself (a linger, a Retry-After), so the clock then moves on: no error.
const PROBE_WAIT: Duration = Duration::from_secs(10);

/// The drill time a destination may have requests in flight before the clock waits for
/// them: half the shortest request timeout, and less than that timeout less one step (a
/// request is seen in flight at the latest one step after its timeout starts, so none
/// times out while the clock moves on without waiting for it).
fn slack_ms(min_timeout_ms: i64) -> i64 {
    let half = min_timeout_ms / 2;
    let below = min_timeout_ms - TICK_MS - 1;
    (half.min(below).max(0) / TICK_MS) * TICK_MS
}

struct Settler {
    busy_since: Vec<Option<i64>>,
    slack_ms: i64,
}

/// What the engine says a destination is doing; any change is progress.
#[derive(Debug, Default, PartialEq)]
struct Busy {
    requests_in_flight: usize,
    /// Outcomes not yet committed.
    unsettled: usize,
    /// Probing, or due to probe.
    probing: bool,
    /// The worker has work due on the clock as it reads (an evaluation, a batch past
    /// its linger, a retry) that it has not done yet.
    due: bool,
    cursor: u64,
    next_read: u64,
    in_memory: usize,
}

impl Busy {
    /// Work of the machine's that the clock waits for.
    fn working(&self) -> bool {
        self.requests_in_flight > 0 || self.unsettled > 0
    }
}

impl Settler {
    fn new(d: &Drill) -> Settler {
        let min_timeout = d.dests.iter().map(|x| x.timeout_ms).min().unwrap_or(10_000);
        Settler {
            busy_since: vec![None; d.dests.len()],
            slack_ms: slack_ms(min_timeout),
        }
    }

    /// Before the clock moves from `t` by `step`.
    async fn settle(&mut self, d: &Drill, rig: &Rig, t: i64, step: i64) -> anyhow::Result<()> {
        let Some(daemon) = rig.daemon.as_ref() else {
            return Ok(());
        };
        let held = |x: &DestRun| {
            d.scenario.windows_of(&x.id, x.platform.name()).any(|w| {
                matches!(w.kind, scenario::Kind::Timeout | scenario::Kind::Slow)
                    && w.from_ms <= t
                    && t < w.to_ms + x.timeout_ms
            })
        };
        // The engine's count, not the simulator's: a request a timeout window held
        // stays open at the simulator after the engine gave up on it.
        let busy = |x: &DestRun| {
            let Some(s) = daemon.app.engine.snapshot(&x.id) else {
                return Busy::default();
            };
            // Probing, or due to probe: the worker reads its backlog first, real time
            // that must not count as drill time.
            let probing = match s.state.mode {
                crate::store::codec::DestMode::Probing => true,
                crate::store::codec::DestMode::Paused => s
                    .state
                    .auto_clear_at_ms
                    .is_some_and(|at| at <= rig.clock.now_ms()),
                crate::store::codec::DestMode::Active => false,
            };
            Busy {
                requests_in_flight: s.requests_in_flight,
                unsettled: s.unsettled,
                probing,
                due: s.wake_at_ms <= rig.clock.now_ms(),
                cursor: s.cursor,
                next_read: s.next_read,
                in_memory: s.in_memory,
            }
        };
        for (i, x) in d.dests.iter().enumerate() {
            let b = if held(x) { Busy::default() } else { busy(x) };
            if b.due {
                // Work due at this drill time (an evaluation above all: its window is
                // the minute before it) is done at this drill time, however long the
                // machine takes to get to it (a store write of the pass before).
                let _ = wait_while(PROBE_WAIT, PROBE_WAIT, || {
                    let b = busy(x);
                    b.due.then_some(b)
                })
                .await;
            }
            let b = if held(x) { Busy::default() } else { busy(x) };
            if !b.working() && !b.probing {
                self.busy_since[i] = None;
                continue;
            }
            let since = *self.busy_since[i].get_or_insert(t);
            if b.probing {
                // A probe is a few requests: the clock waits for each step of it, so its
                // verdict comes at the drill time it would in real time.
                let _ = wait_while(PROBE_WAIT, PROBE_WAIT, || {
                    let b = busy(x);
                    (b.working() || b.probing).then_some(b)
                })
                .await;
            } else if t + step - since <= self.slack_ms {
                // The step keeps the clock within the slack of when it was first seen.
                continue;
            }
            if let Err(stuck) = wait_while(STALL_WAIT, STEP_WAIT, || {
                let b = busy(x);
                b.working().then_some(b)
            })
            .await
            {
                let b = busy(x);
                anyhow::bail!(
                    "the drill stopped at {} of drill time: {} still had {} requests in flight and {} outcomes not committed, {stuck}; moving the clock on would time its requests out for the machine's sake",
                    hhmm(t),
                    x.id,
                    b.requests_in_flight,
                    b.unsettled,
                );
            }
            self.busy_since[i] = None;
        }
        // Alerts being sent: an attempt times out after 10 s of the drill's clock, so a
        // step past it would send the alert again (the on-call told twice). Those
        // waiting for a retry are the drill's to run.
        let alerter = daemon.app.alerter.activity();
        let sending = || {
            let a = alerter.borrow().clone();
            (a.in_flight > a.waiting).then_some(a)
        };
        if let Err(stuck) = wait_while(STALL_WAIT, STEP_WAIT, sending).await {
            anyhow::bail!(
                "the drill stopped at {} of drill time: alerts were still being sent, {stuck}; moving the clock on would time them out for the machine's sake",
                hhmm(t),
            );
        }
        Ok(())
    }
}

/// Why a wait ended with its condition still holding.
#[derive(Debug)]
enum Stuck {
    /// Nothing changed for this long.
    Stalled(Duration),
    /// Still changing after this long.
    TooLong(Duration),
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stuck::Stalled(d) => write!(
                f,
                "and nothing had changed for {} s of real time (the machine stalled, or the engine is stuck)",
                d.as_secs()
            ),
            Stuck::TooLong(d) => write!(
                f,
                "still busy after {} s of real time at this one step",
                d.as_secs()
            ),
        }
    }
}

/// Waits while `busy` tells what is going on (None: nothing is): at most `stall` of real
/// time without a change in what it tells, and `max` in all.
async fn wait_while<P: PartialEq>(
    stall: Duration,
    max: Duration,
    busy: impl Fn() -> Option<P>,
) -> Result<(), Stuck> {
    let start = Instant::now();
    let mut last: Option<(P, Instant)> = None;
    while let Some(now) = busy() {
        match &last {
            Some((p, since)) if *p == now => {
                if since.elapsed() >= stall {
                    return Err(Stuck::Stalled(stall));
                }
            }
            _ => last = Some((now, Instant::now())),
        }
        if start.elapsed() >= max {
            return Err(Stuck::TooLong(max));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(())
}

/// Posts the traffic of `[t, t + post_every)`, one request per workspace (in chunks of
/// 1,000), after what a `429 rate_limited` sent back last time (the same bodies: a
/// client retries). Other refusals are counted, not retried.
async fn post(d: &mut Drill, rig: &Rig, traffic: &mut Traffic, t: i64) -> anyhow::Result<()> {
    let now_s = rig.clock.now_secs();
    let mut groups = std::mem::take(&mut d.pending);
    if t < d.scenario.duration_ms {
        groups.extend(traffic.post(&d.scenario, t, d.scenario.post_every_ms, now_s));
    }
    for (ws, events, bodies) in groups {
        for chunk in 0..bodies.len().div_ceil(1000) {
            let lo = chunk * 1000;
            let hi = (lo + 1000).min(bodies.len());
            let r = rig
                .http
                .post(format!("{}/v1/events", rig.url))
                .bearer_auth(&rig.keys[ws])
                .json(&json!({"events": &bodies[lo..hi]}))
                .send()
                .await?;
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            let mut sent = events[lo..hi].to_vec();
            match status {
                202 => {
                    let rejected: Vec<u64> = v["rejected"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x["index"].as_u64()).collect())
                        .unwrap_or_default();
                    for (i, e) in sent.iter_mut().enumerate() {
                        e.accepted = !rejected.contains(&(i as u64));
                    }
                }
                429 => {
                    d.ingest_retried += 1;
                    d.pending.push((ws, sent, bodies[lo..hi].to_vec()));
                    continue;
                }
                _ => d.ingest_refused += (hi - lo) as u64,
            }
            d.posted.append(&mut sent);
        }
    }
    Ok(())
}

/// The next-morning replay of every destination's DLQ, through the admin API.
async fn replay(d: &mut Drill, rig: &Rig, t: i64) -> anyhow::Result<()> {
    let mut run = ReplayRun {
        t_ms: t,
        ..ReplayRun::default()
    };
    for dest in &d.dests {
        let entries = read::dlq_full(rig, &dest.id).await?;
        if entries.is_empty() {
            continue;
        }
        let ids: Vec<(String, i64)> = entries
            .iter()
            .map(|e| {
                (
                    e["event"]["event_id"].as_str().unwrap_or("").to_string(),
                    e["event"]["event_time"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        run.mark.insert(dest.id.clone(), dest.sim.count());
        dest.sim.set_keep_bodies(true);
        let (status, body) = rig
            .post("/v1/dlq/replay", &json!({"destination": dest.id}))
            .await?;
        d.operator.push(OperatorAction {
            t_ms: t,
            destination: dest.id.clone(),
            action: "dlq replay".into(),
            result: if status == 200 {
                format!(
                    "replayed {}, expired skipped {}",
                    body["replayed"], body["expired_skipped"]
                )
            } else {
                format!("{status} {body}")
            },
        });
        run.entries.insert(dest.id.clone(), ids);
    }
    d.replay = Some(run);
    Ok(())
}

/// RFC 3339 → ms.
pub fn parse_time(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `hh:mm` of drill time (hours may pass 24).
pub fn hhmm(t_ms: i64) -> String {
    let m = t_ms.div_euclid(60_000);
    format!("{:02}:{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_is_half_the_timeout_and_always_a_step_short_of_it() {
        assert_eq!(slack_ms(10_000), 5_000);
        assert_eq!(slack_ms(15_000), 7_000);
        assert_eq!(slack_ms(3_000), 1_000);
        // A request first seen one step after its timeout started is waited for before
        // the clock reaches its deadline (none is when a step is most of the timeout).
        for timeout in [2_001, 2_500, 3_000, 9_999, 10_000, 60_000] {
            let s = slack_ms(timeout);
            assert!(s + TICK_MS < timeout, "{timeout}: {s}");
        }
        for timeout in [100, 1_000, 1_999, 2_000] {
            assert_eq!(slack_ms(timeout), 0, "{timeout}");
        }
    }

    #[tokio::test]
    async fn a_wait_lasts_while_things_change_and_ends_when_they_stop() {
        let ms = Duration::from_millis;
        // Done at once.
        assert!(wait_while(ms(50), ms(500), || None::<u32>).await.is_ok());
        // Busy and changing for longer than the stall time: waited for, then done.
        let t = Instant::now();
        let busy = || {
            let e = t.elapsed().as_millis() / 10;
            (e < 20).then_some(e)
        };
        assert!(wait_while(ms(50), ms(5_000), busy).await.is_ok());
        assert!(t.elapsed() >= ms(200));
        // Busy with nothing changing: stalled.
        let r = wait_while(ms(50), ms(5_000), || Some(1)).await;
        assert!(matches!(r, Err(Stuck::Stalled(_))), "{r:?}");
        // Changing for ever: ends at the cap.
        let t = Instant::now();
        let r = wait_while(ms(50), ms(200), || Some(t.elapsed().as_micros())).await;
        assert!(matches!(r, Err(Stuck::TooLong(_))), "{r:?}");
    }
}
