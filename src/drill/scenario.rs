//! The drill scenario: a TOML file saying what traffic to send (a curve of events per
//! minute, the mix of event names, payload sizes), which faults each destination's
//! simulator injects and when (each mapped onto a [`FaultScript`] the driver installs
//! at the window's start and removes at its end), and the next-morning DLQ replay.
//!
//! The built-in BFCM scenario (`scenarios/bfcm.toml` with the config it rehearses,
//! `scenarios/bfcm.sluice.toml`) is embedded, so `sluice drill` needs no file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::parse_duration;
use crate::sim::{Fault, FaultScript, RetryAfter, Rule};

/// The built-in scenario and the config it rehearses.
pub const BUILTIN: &str = include_str!("../../scenarios/bfcm.toml");
pub const BUILTIN_CONFIG: &str = include_str!("../../scenarios/bfcm.sluice.toml");

/// A scenario as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Drill time zero, RFC 3339 (default 2026-11-27T17:00:00Z, Black Friday evening).
    pub start: Option<String>,
    /// Length of the traffic window, e.g. "6h".
    pub duration: String,
    /// Traffic is posted in one batch per this much drill time (default "2s").
    pub post_every: Option<String>,
    /// The config rehearsed, relative to the scenario file (`--config` replaces it).
    pub config: Option<String>,
    pub traffic: TrafficFile,
    #[serde(default)]
    pub faults: Vec<FaultFile>,
    pub replay: Option<ReplayFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficFile {
    /// Points of (drill time, events per minute), straight lines between them.
    #[serde(default)]
    pub curve: Vec<(String, f64)>,
    /// Or a CSV file of `minute,events_per_minute` lines (relative to the scenario).
    pub csv: Option<String>,
    /// Event name → weight.
    pub mix: BTreeMap<String, f64>,
    /// (bytes of `custom_data`, weight) pairs.
    #[serde(default)]
    pub payload_bytes: Vec<(u32, f64)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFile {
    /// The destination whose simulator faults (or every destination of `platform`).
    pub destination: Option<String>,
    pub platform: Option<String>,
    /// throttle | errors | timeout | auth | invalid | code | slow
    pub kind: String,
    /// Start, in drill time ("150m").
    pub at: String,
    /// How long ("20m").
    #[serde(rename = "for")]
    pub length: String,
    /// Repeat the window this many times in all (default 1) …
    pub repeat: Option<u32>,
    /// … every this long from one start to the next.
    pub every: Option<String>,
    /// Fraction of requests faulted (errors, timeout, code); default 1.
    pub rate: Option<f64>,
    /// `Retry-After` of a throttle ("30s").
    pub retry_after: Option<String>,
    /// Latency of `slow` ("2s").
    pub latency: Option<String>,
    /// HTTP status (errors: a plain 5xx instead of the platform's transient error;
    /// code: the status of the platform's error body).
    pub status: Option<u16>,
    /// The platform's error code (code).
    pub code: Option<i64>,
    /// Whether the destination must pause (default: auth, and errors/timeout of at
    /// least 5 minutes).
    pub outage: Option<bool>,
    /// auth: the operator rotates the token at the window's end and resumes the
    /// destination (default true).
    pub operator_resume: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayFile {
    /// When the operator replays the DLQ, in drill time ("16h": next morning).
    pub at: String,
    /// How long the drill runs after the replay ("30m").
    pub run_for: String,
}

/// A validated scenario, all times in ms of drill time.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub start_ms: i64,
    pub duration_ms: i64,
    pub post_every_ms: i64,
    /// The config text rehearsed (before the drill swaps endpoints and secrets).
    pub config_text: Option<String>,
    /// (ms, events per minute), sorted.
    pub curve: Vec<(i64, f64)>,
    pub mix: Vec<(String, f64)>,
    pub payload_bytes: Vec<(u32, f64)>,
    pub faults: Vec<FaultWindow>,
    pub replay: Option<Replay>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Throttle,
    Errors,
    Timeout,
    Auth,
    Invalid,
    Code,
    Slow,
}

/// One window of one fault.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultWindow {
    pub destination: Option<String>,
    pub platform: Option<String>,
    pub kind: Kind,
    pub from_ms: i64,
    pub to_ms: i64,
    pub rate: f64,
    pub retry_after_s: Option<u64>,
    pub latency_ms: i64,
    pub status: Option<u16>,
    pub code: Option<i64>,
    pub outage: bool,
    pub operator_resume: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Replay {
    pub at_ms: i64,
    pub run_for_ms: i64,
}

fn dur(what: &str, s: &str) -> anyhow::Result<i64> {
    parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// 2026-11-27T17:00:00Z.
pub const DEFAULT_START_MS: i64 = 1_795_798_800_000;

impl Scenario {
    /// The built-in BFCM scenario.
    pub fn builtin() -> Scenario {
        Self::parse(BUILTIN, None).expect("the built-in scenario is valid")
    }

    /// Reads a scenario file (its `config` and `csv` are relative to it).
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read scenario {}: {e}", path.display()))?;
        Self::parse(&text, Some(path.parent().unwrap_or(Path::new("."))))
            .map_err(|e| anyhow::anyhow!("scenario {}: {e}", path.display()))
    }

    /// Parses and validates. `dir`: where relative files are (None: the built-in).
    pub fn parse(text: &str, dir: Option<&Path>) -> anyhow::Result<Scenario> {
        let f: ScenarioFile = toml::from_str(text)?;
        let start_ms = match &f.start {
            None => DEFAULT_START_MS,
            Some(s) => {
                let t =
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .map_err(|e| anyhow::anyhow!("start: {e}"))?;
                (t.unix_timestamp_nanos() / 1_000_000) as i64
            }
        };
        let duration_ms = dur("duration", &f.duration)?;
        anyhow::ensure!(duration_ms >= 60_000, "duration: at least 1m");
        let post_every_ms = dur("post_every", f.post_every.as_deref().unwrap_or("2s"))?;
        anyhow::ensure!(
            (1_000..=60_000).contains(&post_every_ms),
            "post_every: 1s to 1m"
        );
        let rel = |name: &str| -> PathBuf { dir.map_or_else(|| name.into(), |d| d.join(name)) };
        let config_text = match (&f.config, dir) {
            (None, _) => None,
            (Some(_), None) => Some(BUILTIN_CONFIG.to_string()),
            (Some(c), Some(_)) => Some(
                std::fs::read_to_string(rel(c)).map_err(|e| anyhow::anyhow!("config {c}: {e}"))?,
            ),
        };
        let mut curve = Vec::new();
        for (t, v) in &f.traffic.curve {
            anyhow::ensure!(*v >= 0.0, "traffic.curve: a rate below 0");
            curve.push((dur("traffic.curve", t)?, *v));
        }
        if let Some(csv) = &f.traffic.csv {
            let text = std::fs::read_to_string(rel(csv))
                .map_err(|e| anyhow::anyhow!("traffic.csv {csv}: {e}"))?;
            curve.extend(parse_csv(&text)?);
        }
        curve.sort_by_key(|p| p.0);
        anyhow::ensure!(!curve.is_empty(), "traffic: give curve or csv");
        let mix: Vec<(String, f64)> = f
            .traffic
            .mix
            .into_iter()
            .filter(|(_, w)| *w > 0.0)
            .collect();
        anyhow::ensure!(!mix.is_empty(), "traffic.mix: at least one event name");
        let payload_bytes = if f.traffic.payload_bytes.is_empty() {
            vec![(400, 1.0)]
        } else {
            f.traffic.payload_bytes
        };
        let mut faults = Vec::new();
        for (i, x) in f.faults.iter().enumerate() {
            faults.extend(window(x).map_err(|e| anyhow::anyhow!("faults[{i}]: {e}"))?);
        }
        let replay = match &f.replay {
            None => None,
            Some(r) => {
                let at_ms = dur("replay.at", &r.at)?;
                anyhow::ensure!(at_ms >= duration_ms, "replay.at: after the traffic window");
                Some(Replay {
                    at_ms,
                    run_for_ms: dur("replay.run_for", &r.run_for)?,
                })
            }
        };
        Ok(Scenario {
            name: f.name,
            description: f.description,
            start_ms,
            duration_ms,
            post_every_ms,
            config_text,
            curve,
            mix,
            payload_bytes,
            faults,
            replay,
        })
    }

    /// Events per minute at drill time `t` (straight lines between points, flat
    /// beyond the ends).
    pub fn rate_at(&self, t: i64) -> f64 {
        let c = &self.curve;
        if t <= c[0].0 {
            return c[0].1;
        }
        for w in c.windows(2) {
            let ((t0, v0), (t1, v1)) = (w[0], w[1]);
            if t <= t1 {
                if t1 == t0 {
                    return v1;
                }
                return v0 + (v1 - v0) * (t - t0) as f64 / (t1 - t0) as f64;
            }
        }
        c[c.len() - 1].1
    }

    /// Every fault window of this destination.
    pub fn windows_of<'a>(
        &'a self,
        dest: &'a str,
        platform: &'a str,
    ) -> impl Iterator<Item = &'a FaultWindow> + 'a {
        self.faults
            .iter()
            .filter(move |w| w.applies(dest, platform))
    }

    /// The fault windows of a destination in force at drill time `t` (indexes).
    pub fn active_at(&self, dest: &str, platform: &str, t: i64) -> Vec<usize> {
        self.faults
            .iter()
            .enumerate()
            .filter(|(_, w)| w.applies(dest, platform) && w.from_ms <= t && t < w.to_ms)
            .map(|(i, _)| i)
            .collect()
    }

    /// The script of these windows in force together.
    pub fn script_of(&self, active: &[usize]) -> FaultScript {
        let mut s = FaultScript::none();
        for &i in active {
            let w = &self.faults[i];
            if w.kind == Kind::Slow {
                s = s.with_latency(w.latency_ms);
            } else {
                s.rules.extend(w.rules());
            }
        }
        s
    }
}

impl FaultWindow {
    pub fn applies(&self, dest: &str, platform: &str) -> bool {
        match (&self.destination, &self.platform) {
            (Some(d), _) => d == dest,
            (None, Some(p)) => p == platform,
            (None, None) => false,
        }
    }

    /// Whether this window can throttle (its answers are not sluice's pacing).
    pub fn throttles(&self) -> bool {
        self.kind == Kind::Throttle
    }

    fn fault(&self) -> Fault {
        match self.kind {
            Kind::Throttle => Fault::Throttle {
                retry_after: self.retry_after_s.map(RetryAfter::Seconds),
            },
            Kind::Errors => self.status.map_or(Fault::Transient, Fault::ServerError),
            Kind::Timeout => Fault::Timeout,
            Kind::Auth => Fault::Auth,
            Kind::Invalid => Fault::Invalid,
            Kind::Code => Fault::Code {
                status: self.status.unwrap_or(200),
                code: self.code.unwrap_or(0),
            },
            Kind::Slow => Fault::Latency(self.latency_ms),
        }
    }

    /// The rules: every request, or a deterministic `rate` of them (request k fails
    /// when ⌊k·rate⌋ steps up: 40% fails 2 of every 5, evenly spread).
    fn rules(&self) -> Vec<Rule> {
        let fault = self.fault();
        if self.rate >= 1.0 {
            return vec![Rule::Always(fault)];
        }
        // 20,000 requests is far more than any window sends; past it, no faults.
        let mut rules: Vec<Rule> = Vec::new();
        for k in 1..=20_000u64 {
            let fails = (k as f64 * self.rate).floor() > ((k - 1) as f64 * self.rate).floor();
            if !fails {
                continue;
            }
            match rules.last_mut() {
                Some(Rule::Range { to, .. }) if *to + 1 == k => *to = k,
                _ => rules.push(Rule::Range {
                    from: k,
                    to: k,
                    fault: fault.clone(),
                }),
            }
        }
        rules
    }
}

fn window(x: &FaultFile) -> anyhow::Result<Vec<FaultWindow>> {
    let kind = match x.kind.as_str() {
        "throttle" => Kind::Throttle,
        "errors" => Kind::Errors,
        "timeout" => Kind::Timeout,
        "auth" => Kind::Auth,
        "invalid" => Kind::Invalid,
        "code" => Kind::Code,
        "slow" => Kind::Slow,
        k => {
            anyhow::bail!("kind `{k}`: one of throttle, errors, timeout, auth, invalid, code, slow")
        }
    };
    anyhow::ensure!(
        x.destination.is_some() || x.platform.is_some(),
        "give destination or platform"
    );
    if let Some(p) = &x.platform {
        anyhow::ensure!(
            crate::config::Platform::from_name(p).is_some(),
            "platform `{p}` is not one sluice knows"
        );
    }
    let from = dur("at", &x.at)?;
    let len = dur("for", &x.length)?;
    anyhow::ensure!(len > 0, "for: more than 0");
    let rate = x.rate.unwrap_or(1.0);
    anyhow::ensure!(rate > 0.0 && rate <= 1.0, "rate: above 0, at most 1");
    if kind == Kind::Code {
        anyhow::ensure!(x.code.is_some(), "kind code needs `code`");
    }
    let latency_ms = match &x.latency {
        Some(l) => dur("latency", l)?,
        None if kind == Kind::Slow => anyhow::bail!("kind slow needs `latency`"),
        None => 0,
    };
    let retry_after_s = match &x.retry_after {
        Some(r) => Some((dur("retry_after", r)? / 1000) as u64),
        None => None,
    };
    let outage = x.outage.unwrap_or(match kind {
        Kind::Auth => true,
        Kind::Errors | Kind::Timeout => len >= 300_000,
        _ => false,
    });
    let repeat = x.repeat.unwrap_or(1).max(1);
    let every = match &x.every {
        Some(e) => dur("every", e)?,
        None if repeat > 1 => anyhow::bail!("repeat needs `every`"),
        None => 0,
    };
    anyhow::ensure!(repeat == 1 || every >= len, "every: at least `for`");
    Ok((0..repeat)
        .map(|i| FaultWindow {
            destination: x.destination.clone(),
            platform: x.platform.clone(),
            kind,
            from_ms: from + i64::from(i) * every,
            to_ms: from + i64::from(i) * every + len,
            rate,
            retry_after_s,
            latency_ms,
            status: x.status,
            code: x.code,
            outage,
            operator_resume: x.operator_resume.unwrap_or(true),
        })
        .collect())
}

/// `minute,events_per_minute` lines; a first line that does not parse is a header.
fn parse_csv(text: &str) -> anyhow::Result<Vec<(i64, f64)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split(',').map(str::trim);
        let (m, v) = (parts.next(), parts.next());
        match (
            m.and_then(|m| m.parse::<f64>().ok()),
            v.and_then(|v| v.parse::<f64>().ok()),
        ) {
            (Some(m), Some(v)) if m >= 0.0 && v >= 0.0 => {
                out.push(((m * 60_000.0) as i64, v));
            }
            _ if i == 0 => {}
            _ => anyhow::bail!(
                "traffic.csv line {}: expected minute,events_per_minute",
                i + 1
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses_and_rates_are_exact() {
        let s = Scenario::builtin();
        assert_eq!(s.duration_ms, 6 * 3_600_000);
        assert!(s.config_text.is_some());
        let tiktok = s
            .faults
            .iter()
            .find(|w| w.kind == Kind::Errors)
            .expect("an error window");
        let script = FaultScript {
            rules: tiktok.rules(),
            latency_ms: 0,
        };
        let failed = (1..=1000)
            .filter(|k| script.fault_for(*k).is_some())
            .count();
        assert_eq!(failed, (tiktok.rate * 1000.0).round() as usize);
    }

    #[test]
    fn curve_interpolates_and_csv_reads() {
        let s = Scenario::parse(
            r#"name = "t"
duration = "1h"
[traffic]
curve = [["0m", 10.0], ["10m", 110.0]]
mix = { Purchase = 1.0 }
"#,
            None,
        )
        .unwrap();
        assert!((s.rate_at(300_000) - 60.0).abs() < 1e-9);
        assert!((s.rate_at(3_000_000) - 110.0).abs() < 1e-9);
        assert_eq!(
            parse_csv("minute,rate\n0,5\n1.5,7\n").unwrap(),
            vec![(0, 5.0), (90_000, 7.0)]
        );
        assert!(parse_csv("0,5\nx,y\n").is_err());
    }
}
