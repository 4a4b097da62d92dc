//! Stage two: raw structs → typed [`Config`], with defaults, ranges, merges, secrets
//! and cross-checks. Every error names its key path; the line comes from the index.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::ConfigError;
use super::defaults::{
    OAUTH_REFRESH, builtin_policy, default_scope, known_credentials, max_batch_limit,
    needs_events_filter, optional_params, plan_from_name, plan_limits, required_params,
};
use super::duration::{format_duration, parse_duration};
use super::raw::{
    RawAlerts, RawAutoPause, RawConfig, RawDestination, RawIngest, RawPolicy, RawRate, RawRetry,
    RawServer, RawStorage, RawWorkspace,
};
use super::spans::SpanIndex;
use super::types::{
    AlertsConfig, Backpressure, Config, Destination, EmailAlert, IngestConfig, PagerDutyAlert,
    Plan, Platform, PlatformPolicy, Rate, RateScope, RateUnit, Secret, ServerConfig, SilentSource,
    SlackAlert, StorageConfig, WebhookAlert, Workspace,
};

mod alerts;
mod destinations;
mod watches;

use alerts::alerts;
use destinations::destinations;

type R<T> = Result<T, ConfigError>;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";
pub const DEFAULT_STORE: &str = "/var/lib/sluice/sluice.redb";
pub const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

pub struct Ctx<'a> {
    pub idx: &'a SpanIndex,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub base_dir: PathBuf,
}

impl Ctx<'_> {
    fn err(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key_path: Some(path.to_string()),
            line: self.idx.line_of(path),
            message: message.into(),
        }
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn int(&self, path: &str, v: i64, min: i64, max: i64) -> R<i64> {
        if v < min || v > max {
            return Err(self.err(path, format!("must be between {min} and {max}, got {v}")));
        }
        Ok(v)
    }

    fn uint(&self, path: &str, v: i64, min: i64, max: i64) -> R<u32> {
        let v = self.int(path, v, min, max)?;
        u32::try_from(v).map_err(|_| self.err(path, "out of range"))
    }

    fn nonneg(&self, path: &str, v: i64) -> R<u64> {
        u64::try_from(v).map_err(|_| self.err(path, format!("must be 0 or more, got {v}")))
    }

    fn float(&self, path: &str, v: f64, min: f64, max: f64, bounds: (&str, &str)) -> R<f64> {
        if !(v >= min && v <= max) {
            return Err(self.err(
                path,
                format!("must be between {} and {}, got {v}", bounds.0, bounds.1),
            ));
        }
        Ok(v)
    }

    fn dur(&self, path: &str, s: &str) -> R<Duration> {
        parse_duration(s).map_err(|m| self.err(path, m))
    }

    fn dur_in(&self, path: &str, s: &str, min: Duration, max: Duration) -> R<Duration> {
        let d = self.dur(path, s)?;
        if d < min || d > max {
            return Err(self.err(
                path,
                format!(
                    "must be between {} and {}, got {}",
                    format_duration(min),
                    format_duration(max),
                    format_duration(d)
                ),
            ));
        }
        Ok(d)
    }
}

fn join(prefix: &str, key: &str) -> String {
    format!("{prefix}.{key}")
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) => {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------------
// Secrets

/// The three spellings of one secret key.
struct Forms<'a> {
    literal: Option<&'a str>,
    env: Option<&'a str>,
    file: Option<&'a str>,
}

/// Resolves a secret given as `key`, `key_env` or `key_file` under `table`. `Ok(None)`
/// when none is given, or — with `unset_env_is_none` — when the named variable is unset.
fn secret(
    ctx: &Ctx,
    table: &str,
    key: &str,
    forms: Forms,
    unset_env_is_none: bool,
) -> R<Option<Secret>> {
    #[derive(Clone, Copy)]
    enum Kind {
        Literal,
        Env,
        File,
    }
    let given: Vec<(Kind, String, &str)> = [
        (Kind::Literal, key.to_string(), forms.literal),
        (Kind::Env, format!("{key}_env"), forms.env),
        (Kind::File, format!("{key}_file"), forms.file),
    ]
    .into_iter()
    .filter_map(|(kind, k, v)| v.map(|v| (kind, k, v)))
    .collect();
    let (kind, name, value) = match given.as_slice() {
        [] => return Ok(None),
        [one] => (one.0, one.1.as_str(), one.2),
        [first, second, ..] => {
            return Err(ctx.err(
                &join(table, &second.1),
                format!(
                    "`{key}` is given twice (`{}` and `{}`); keep one of `{key}`, `{key}_env`, `{key}_file`",
                    first.1, second.1
                ),
            ));
        }
    };
    let path = join(table, name);
    match kind {
        Kind::Env => {
            if value.is_empty() {
                return Err(ctx.err(&path, "must name an environment variable"));
            }
            // The variable is named only when it looks like one (`META_TOKEN`): a
            // secret pasted here by mistake (`access_token_env = "EAAB…"`) is not.
            let var = if conventional_env_name(value) {
                format!("environment variable `{value}`")
            } else {
                "the environment variable this key names (not shown: it is not an upper-case name such as META_TOKEN, and may be a pasted secret)".to_string()
            };
            match (ctx.env)(value) {
                None if unset_env_is_none => Ok(None),
                None => Err(ctx.err(&path, format!("{var} is not set"))),
                Some(v) if v.is_empty() => Err(ctx.err(&path, format!("{var} is set but empty"))),
                Some(v) => Ok(Some(Secret(v))),
            }
        }
        Kind::File => {
            if value.is_empty() {
                return Err(ctx.err(&path, "must name a file"));
            }
            let file = ctx.resolve_path(value);
            // The admin token, like an unset `admin_token_env`: a file not there (yet)
            // means no token; `serve` creates it on a first start
            // ([`super::files::create_missing_admin_token_file`]).
            if unset_env_is_none
                && std::fs::symlink_metadata(&file)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                return Ok(None);
            }
            let text = super::files::read_text(&file, super::files::SECRET_MAX_BYTES)
                .map_err(|e| ctx.err(&path, format!("cannot read file {}: {e}", file.display())))?;
            let trimmed = text.trim_end_matches(['\n', '\r']);
            if trimmed.is_empty() {
                return Err(ctx.err(&path, format!("file {} is empty", file.display())));
            }
            Ok(Some(Secret(trimmed.to_string())))
        }
        Kind::Literal if value.is_empty() => Err(ctx.err(&path, "must not be empty")),
        Kind::Literal => Ok(Some(Secret(value.to_string()))),
    }
}

/// `A-Z`, `0-9` and `_`, not starting with a digit, at most 64 characters: how
/// environment variables are named, and what an error may quote of a `*_env` value.
pub(super) fn conventional_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn required_secret(ctx: &Ctx, table: &str, key: &str, forms: Forms) -> R<Secret> {
    secret(ctx, table, key, forms, false)?.ok_or_else(|| {
        ctx.err(
            &join(table, key),
            format!("missing required key `{key}` (or `{key}_env` / `{key}_file`)"),
        )
    })
}

// ---------------------------------------------------------------------------------
// Top level

pub fn build(raw: RawConfig, ctx: &Ctx, sha256: String, origin: Option<&Path>) -> R<Config> {
    let server = server(ctx, &raw.server)?;
    let storage = storage(ctx, &raw.storage)?;
    let ingest = ingest(ctx, &raw.ingest)?;

    for name in raw.platforms.keys() {
        if Platform::from_name(name).is_none() {
            return Err(ctx.err(
                &format!("platforms.{name}"),
                format!("unknown platform; expected one of {}", platform_list()),
            ));
        }
    }
    let mut layered: BTreeMap<Platform, Layered> = BTreeMap::new();
    let mut platforms = BTreeMap::new();
    for p in Platform::ALL {
        let mut l = Layered::new(p);
        if let Some(rp) = raw.platforms.get(p.name()) {
            l.apply(ctx, rp, &format!("platforms.{}", p.name()))?;
        }
        platforms.insert(p, l.finish(ctx)?);
        layered.insert(p, l);
    }

    let workspaces = workspaces(
        ctx,
        &raw.workspaces,
        &raw.server,
        server.admin_token.as_ref(),
    )?;
    let destinations = destinations(
        ctx,
        &raw.destinations,
        &workspaces,
        &layered,
        storage.pii_key.is_some(),
    )?;
    let alerts = alerts(ctx, &raw.alerts)?;

    Ok(Config {
        sha256,
        path: origin.map(Path::to_path_buf),
        server,
        storage,
        ingest,
        platforms,
        workspaces,
        destinations,
        alerts,
    })
}

fn platform_list() -> String {
    Platform::ALL
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn server(ctx: &Ctx, raw: &RawServer) -> R<ServerConfig> {
    let listen: SocketAddr = raw
        .listen
        .as_deref()
        .unwrap_or(DEFAULT_LISTEN)
        .parse()
        .map_err(|_| {
            ctx.err(
                "server.listen",
                "must be an IP address and port, like 127.0.0.1:8470",
            )
        })?;
    // The one exception to "an unset variable is an error": `admin_token_env` naming
    // an unset variable means no admin token (admin routes answer 403
    // admin_disabled), so the example config starts without any environment.
    let admin_token = secret(
        ctx,
        "server",
        "admin_token",
        Forms {
            literal: raw.admin_token.as_deref(),
            env: raw.admin_token_env.as_deref(),
            file: raw.admin_token_file.as_deref(),
        },
        true,
    )?;
    let max_body_bytes = match raw.max_body_bytes {
        Some(v) => ctx.int("server.max_body_bytes", v, 1, 1 << 30)? as usize,
        None => 1_048_576,
    };
    let max_events_per_request = match raw.max_events_per_request {
        Some(v) => ctx.int("server.max_events_per_request", v, 1, 100_000)? as usize,
        None => 1000,
    };
    let header_timeout = match &raw.header_timeout {
        Some(s) => ctx.dur_in(
            "server.header_timeout",
            s,
            Duration::from_millis(100),
            10 * MIN,
        )?,
        None => Duration::from_secs(10),
    };
    let body_timeout = match &raw.body_timeout {
        Some(s) => ctx.dur_in("server.body_timeout", s, Duration::from_millis(100), HOUR)?,
        None => Duration::from_secs(30),
    };
    let max_connections = match raw.max_connections {
        Some(v) => Some(ctx.int("server.max_connections", v, 1, 1_000_000)? as usize),
        None => None,
    };
    let log_level = raw.log_level.clone().unwrap_or_else(|| "info".to_string());
    if log_level.trim().is_empty()
        || tracing_subscriber::EnvFilter::builder()
            .parse(&log_level)
            .is_err()
    {
        return Err(ctx.err(
            "server.log_level",
            "must be a log filter such as info, debug or sluice=debug,warn",
        ));
    }
    Ok(ServerConfig {
        listen,
        admin_token,
        admin_token_env: raw.admin_token_env.clone(),
        max_body_bytes,
        max_events_per_request,
        log_level,
        header_timeout,
        body_timeout,
        max_connections,
        console: raw.console.unwrap_or(true),
    })
}

fn storage(ctx: &Ctx, raw: &RawStorage) -> R<StorageConfig> {
    let path_s = raw.path.as_deref().unwrap_or(DEFAULT_STORE);
    if path_s.is_empty() {
        return Err(ctx.err("storage.path", "must not be empty"));
    }
    let path = ctx.resolve_path(path_s);
    let dedup_window = match &raw.dedup_window {
        Some(s) => ctx.dur_in("storage.dedup_window", s, MIN, 365 * DAY)?,
        None => 48 * HOUR,
    };
    let max_backlog_age = match &raw.max_backlog_age {
        Some(s) => ctx.dur_in("storage.max_backlog_age", s, HOUR, 365 * DAY)?,
        None => 30 * DAY,
    };
    let dlq_retention = match &raw.dlq_retention {
        Some(s) => ctx.dur_in("storage.dlq_retention", s, HOUR, 365 * DAY)?,
        None => 30 * DAY,
    };
    let request_log = match raw.request_log {
        Some(v) => ctx.uint("storage.request_log", v, 0, MAX_REQUEST_LOG)?,
        None => DEFAULT_REQUEST_LOG,
    };
    let backup_dir = match raw.backup_dir.as_deref() {
        Some("") => return Err(ctx.err("storage.backup_dir", "must not be empty")),
        Some(d) => ctx.resolve_path(d),
        None => path
            .parent()
            .map_or_else(|| PathBuf::from("backups"), |p| p.join("backups")),
    };
    let pii = secret(
        ctx,
        "storage",
        "pii_key",
        Forms {
            literal: None,
            env: raw.pii_key_env.as_deref(),
            file: raw.pii_key_file.as_deref(),
        },
        false,
    )?;
    let pii_key = match pii {
        None => None,
        Some(s) => {
            let at = if raw.pii_key_env.is_some() {
                "storage.pii_key_env"
            } else {
                "storage.pii_key_file"
            };
            let bytes = B64.decode(s.expose().trim()).ok();
            let key: Option<[u8; 32]> = bytes.and_then(|b| b.try_into().ok());
            Some(key.ok_or_else(|| {
                ctx.err(
                    at,
                    "must hold the base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)",
                )
            })?)
        }
    };
    let cache_size = match &raw.cache_size {
        None => DEFAULT_CACHE_SIZE,
        Some(v) => cache_size(ctx, v)?,
    };
    Ok(StorageConfig {
        path,
        dedup_window,
        max_backlog_age,
        dlq_retention,
        request_log,
        backup_dir,
        pii_key,
        cache_size,
    })
}

/// `storage.request_log` when not set: the last 1,000 requests of each destination.
pub const DEFAULT_REQUEST_LOG: u32 = 1000;
/// The most `storage.request_log` allows (a row takes at most about 1.4 KiB on disk:
/// 140 MB per destination at this limit).
pub const MAX_REQUEST_LOG: i64 = 100_000;

/// `storage.cache_size` when not set: 64 MiB.
pub const DEFAULT_CACHE_SIZE: usize = 64 << 20;

/// `storage.cache_size`: bytes as an integer, or a string with a unit (`KiB`, `MiB`,
/// `GiB`); 4 MiB to 64 GiB.
fn cache_size(ctx: &Ctx, v: &super::raw::ParamValue) -> R<usize> {
    const KEY: &str = "storage.cache_size";
    let bytes = match v {
        super::raw::ParamValue::Int(i) => *i,
        super::raw::ParamValue::Str(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let mult: i64 = match unit.trim() {
                "" | "B" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                _ => {
                    return Err(ctx.err(
                        KEY,
                        "must be bytes (an integer) or a size such as \"64MiB\" (units: KiB, MiB, GiB)",
                    ));
                }
            };
            num.parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(mult))
                .ok_or_else(|| ctx.err(KEY, "must be a size such as \"64MiB\""))?
        }
    };
    Ok(ctx.int(KEY, bytes, 4 << 20, 64 << 30)? as usize)
}

fn ingest(ctx: &Ctx, raw: &RawIngest) -> R<IngestConfig> {
    let cc = raw.default_country_code.as_deref().unwrap_or("1");
    if cc.is_empty() || cc.len() > 3 || !cc.chars().all(|c| c.is_ascii_digit()) {
        return Err(ctx.err(
            "ingest.default_country_code",
            "must be 1 to 3 digits (a country calling code without `+`, e.g. \"1\" or \"44\")",
        ));
    }
    Ok(IngestConfig {
        default_country_code: cc.to_string(),
    })
}

// ---------------------------------------------------------------------------------
// Policies

/// A policy being merged layer by layer, remembering where each key was last set so
/// cross-key errors name the key the operator wrote.
#[derive(Clone)]
struct Layered {
    platform: Platform,
    p: PlatformPolicy,
    window_set: bool,
    src: HashMap<&'static str, String>,
    /// Every rate (limit 0 included) with the key path it came from (None: built in).
    rates: Vec<(Rate, Option<String>)>,
}

impl Layered {
    fn new(platform: Platform) -> Layered {
        let p = builtin_policy(platform);
        let rates = p.rates.iter().cloned().map(|r| (r, None)).collect();
        Layered {
            platform,
            p,
            window_set: false,
            src: HashMap::new(),
            rates,
        }
    }

    fn apply(&mut self, ctx: &Ctx, raw: &RawPolicy, path: &str) -> R<()> {
        let max = max_batch_limit(self.platform);
        if let Some(v) = raw.max_batch {
            let k = join(path, "max_batch");
            if v < 1 || v > i64::from(max) {
                return Err(ctx.err(
                    &k,
                    format!(
                        "must be between 1 and {max} (the {} maximum), got {v}",
                        self.platform.name()
                    ),
                ));
            }
            self.p.max_batch = ctx.uint(&k, v, 1, i64::from(max))?;
        }
        if let Some(s) = &raw.linger {
            self.p.linger = ctx.dur_in(&join(path, "linger"), s, Duration::ZERO, 60 * SEC)?;
        }
        if let Some(v) = raw.concurrency {
            self.p.concurrency = ctx.uint(&join(path, "concurrency"), v, 1, 256)?;
        }
        if let Some(s) = &raw.timeout {
            self.p.timeout = ctx.dur_in(&join(path, "timeout"), s, 100 * MS, 60 * SEC)?;
        }
        if let Some(s) = &raw.age_limit {
            self.p.age_limit = if s == "none" {
                None
            } else {
                Some(ctx.dur_in(&join(path, "age_limit"), s, HOUR, 365 * DAY)?)
            };
        }
        match (&raw.rate, &raw.rates) {
            (Some(_), Some(_)) => {
                return Err(ctx.err(
                    &join(path, "rates"),
                    "give either `rate` or `rates`, not both",
                ));
            }
            (Some(r), None) => {
                let k = join(path, "rate");
                self.rates = vec![(self.rate(ctx, r, &k)?, Some(k))];
            }
            (None, Some(list)) => {
                let k = join(path, "rates");
                if list.is_empty() {
                    return Err(ctx.err(
                        &k,
                        "must list at least one rate (use `limit = 0` for no limit)",
                    ));
                }
                let mut rates = Vec::new();
                for (i, r) in list.iter().enumerate() {
                    let ki = format!("{k}[{i}]");
                    rates.push((self.rate(ctx, r, &ki)?, Some(ki)));
                }
                self.rates = rates;
            }
            (None, None) => {}
        }
        if let Some(r) = &raw.retry {
            self.apply_retry(ctx, r, &join(path, "retry"))?;
        }
        if let Some(a) = &raw.auto_pause {
            self.apply_auto_pause(ctx, a, &join(path, "auto_pause"))?;
        }
        if let Some(w) = &raw.watch {
            watches::apply_watch(ctx, &mut self.p.watch, w, &join(path, "watch"))?;
        }
        Ok(())
    }

    fn rate(&self, ctx: &Ctx, raw: &RawRate, path: &str) -> R<Rate> {
        let limit = ctx.nonneg(&join(path, "limit"), raw.limit)?;
        let per = ctx.dur_in(&join(path, "per"), &raw.per, SEC, DAY)?;
        let unit = match raw.unit.as_deref() {
            None | Some("events") => RateUnit::Events,
            Some("requests") => RateUnit::Requests,
            Some(_) => {
                return Err(ctx.err(&join(path, "unit"), "must be \"events\" or \"requests\""));
            }
        };
        let scope = match raw.scope.as_deref() {
            None => default_scope(self.platform),
            Some("destination") => RateScope::Destination,
            Some("token") => RateScope::Token,
            Some(p)
                if !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                RateScope::Param(p.to_string())
            }
            Some(_) => {
                return Err(ctx.err(
                    &join(path, "scope"),
                    "must be \"destination\", \"token\" or the name of a `params` key",
                ));
            }
        };
        Ok(Rate {
            limit,
            per,
            unit,
            scope,
        })
    }

    fn apply_retry(&mut self, ctx: &Ctx, raw: &RawRetry, path: &str) -> R<()> {
        let r = &mut self.p.retry;
        if let Some(v) = raw.max_retries {
            r.max_retries = ctx.uint(&join(path, "max_retries"), v, 0, 20)?;
        }
        if let Some(s) = &raw.base {
            let k = join(path, "base");
            r.base = ctx.dur_in(&k, s, 100 * MS, MIN)?;
            self.src.insert("retry.base", k);
        }
        if let Some(s) = &raw.max {
            let k = join(path, "max");
            r.max = ctx.dur_in(&k, s, 100 * MS, HOUR)?;
            self.src.insert("retry.max", k);
        }
        if let Some(v) = raw.jitter {
            r.jitter = ctx.float(&join(path, "jitter"), v, 0.0, 0.2, ("0", "0.2"))?;
        }
        Ok(())
    }

    fn apply_auto_pause(&mut self, ctx: &Ctx, raw: &RawAutoPause, path: &str) -> R<()> {
        let a = &mut self.p.auto_pause;
        if let Some(v) = raw.threshold {
            a.threshold = ctx.float(&join(path, "threshold"), v, 0.10, 0.75, ("0.10", "0.75"))?;
        }
        if let Some(s) = &raw.interval {
            let k = join(path, "interval");
            let d = ctx.dur(&k, s)?;
            if d != MIN && d != 5 * MIN {
                return Err(ctx.err(&k, format!("must be 1m or 5m, got {}", format_duration(d))));
            }
            a.interval = d;
        }
        if let Some(s) = &raw.window {
            a.window = ctx.dur_in(&join(path, "window"), s, MIN, HOUR)?;
            self.window_set = true;
        }
        if let Some(v) = raw.sample {
            let k = join(path, "sample");
            a.sample = ctx.uint(&k, v, 10, 10_000)?;
            self.src.insert("auto_pause.sample", k);
        }
        if let Some(v) = raw.min_samples {
            let k = join(path, "min_samples");
            a.min_samples = ctx.uint(&k, v, 1, 10_000)?;
            self.src.insert("auto_pause.min_samples", k);
        }
        if let Some(s) = &raw.auto_clear {
            let k = join(path, "auto_clear");
            let d = ctx.dur_in(&k, s, HOUR, 24 * HOUR)?;
            if d.as_millis() % HOUR.as_millis() != 0 {
                return Err(ctx.err(
                    &k,
                    format!(
                        "must be whole hours (1h to 24h), got {}",
                        format_duration(d)
                    ),
                ));
            }
            a.auto_clear = d;
        }
        if let Some(s) = &raw.reprobe {
            a.reprobe = ctx.dur_in(&join(path, "reprobe"), s, MIN, 24 * HOUR)?;
        }
        if let Some(v) = raw.probe_requests {
            a.probe_requests = ctx.uint(&join(path, "probe_requests"), v, 1, 100)?;
        }
        Ok(())
    }

    /// Cross-key checks and the effective policy.
    fn finish(&self, ctx: &Ctx) -> R<PlatformPolicy> {
        let mut p = self.p.clone();
        if !self.window_set {
            p.auto_pause.window = p.auto_pause.interval;
        }
        let a = &p.auto_pause;
        if a.min_samples > a.sample {
            let (path, msg) = match self.src.get("auto_pause.min_samples") {
                Some(k) => (
                    k.clone(),
                    format!(
                        "must be between 1 and sample ({}), got {}",
                        a.sample, a.min_samples
                    ),
                ),
                None => (
                    self.src
                        .get("auto_pause.sample")
                        .cloned()
                        .unwrap_or_default(),
                    format!(
                        "must be at least min_samples ({}), got {}",
                        a.min_samples, a.sample
                    ),
                ),
            };
            return Err(ctx.err(&path, msg));
        }
        let r = &p.retry;
        if r.max < r.base {
            let (path, msg) = match self.src.get("retry.max") {
                Some(k) => (
                    k.clone(),
                    format!(
                        "must be between base ({}) and 1h, got {}",
                        format_duration(r.base),
                        format_duration(r.max)
                    ),
                ),
                None => (
                    self.src.get("retry.base").cloned().unwrap_or_default(),
                    format!(
                        "must be at most max ({}), got {}",
                        format_duration(r.max),
                        format_duration(r.base)
                    ),
                ),
            };
            return Err(ctx.err(&path, msg));
        }
        p.rates = self
            .rates
            .iter()
            .filter(|(r, _)| r.limit > 0)
            .map(|(r, _)| r.clone())
            .collect();
        Ok(p)
    }
}

// ---------------------------------------------------------------------------------
// Workspaces

/// The workspaces. No ingest key may equal `admin_token` (resolved from `server`, whose
/// form the error names).
fn workspaces(
    ctx: &Ctx,
    raw: &[RawWorkspace],
    server: &RawServer,
    admin_token: Option<&Secret>,
) -> R<Vec<Workspace>> {
    let admin_key = if server.admin_token.is_some() {
        "server.admin_token"
    } else if server.admin_token_env.is_some() {
        "server.admin_token_env"
    } else {
        "server.admin_token_file"
    };
    let mut out: Vec<Workspace> = Vec::new();
    let mut key_owner: HashMap<String, String> = HashMap::new();
    for (i, w) in raw.iter().enumerate() {
        let path = format!("workspaces[{i}]");
        if !valid_id(&w.id) {
            return Err(ctx.err(
                &join(&path, "id"),
                "must be one or more of A-Z, a-z, 0-9, `_` and `-`",
            ));
        }
        if out.iter().any(|o| o.id == w.id) {
            return Err(ctx.err(
                &join(&path, "id"),
                format!("duplicate workspace id `{}`", w.id),
            ));
        }
        let plan = plan_from_name(&w.plan).ok_or_else(|| {
            ctx.err(
                &join(&path, "plan"),
                "must be one of starter, growth, scale, enterprise",
            )
        })?;
        let keys = ingest_keys(ctx, w, &path)?;
        for (key, key_path) in &keys {
            if admin_token.is_some_and(|t| t.expose() == key.expose()) {
                return Err(ctx.err(
                    key_path,
                    format!(
                        "an ingest key of this workspace is also the admin token (`{admin_key}`); an ingest key must never open the admin API, so give them different values"
                    ),
                ));
            }
            match key_owner.get(key.expose()) {
                Some(owner) if owner != &w.id => {
                    return Err(ctx.err(
                        key_path,
                        format!(
                            "an ingest key of this workspace is also an ingest key of workspace `{owner}`; ingest keys must be unique"
                        ),
                    ));
                }
                _ => {
                    key_owner.insert(key.expose().to_string(), w.id.clone());
                }
            }
        }
        let mut ingest_keys: Vec<Secret> = Vec::new();
        for (k, _) in keys {
            if !ingest_keys.contains(&k) {
                ingest_keys.push(k);
            }
        }
        let mut limits = plan_limits(plan);
        if let Some(l) = &w.limits {
            let lp = join(&path, "limits");
            if let Some(v) = l.rate {
                limits.rate = ctx.nonneg(&join(&lp, "rate"), v)?;
            }
            if let Some(v) = l.burst {
                limits.burst = ctx.nonneg(&join(&lp, "burst"), v)?;
            }
            if let Some(v) = l.monthly_cap {
                limits.monthly_cap = ctx.nonneg(&join(&lp, "monthly_cap"), v)?;
            }
        }
        let silent_source = match &w.silent_source {
            Some(s) => watches::silent_source(ctx, s, &join(&path, "silent_source"))?,
            None => SilentSource::default(),
        };
        out.push(Workspace {
            id: w.id.clone(),
            plan,
            ingest_keys,
            limits,
            silent_source,
        });
    }
    Ok(out)
}

/// The workspace's ingest keys with the key path each came from.
fn ingest_keys(ctx: &Ctx, w: &RawWorkspace, path: &str) -> R<Vec<(Secret, String)>> {
    let forms = [
        ("ingest_keys", w.ingest_keys.is_some()),
        ("ingest_keys_env", w.ingest_keys_env.is_some()),
        ("ingest_keys_file", w.ingest_keys_file.is_some()),
    ];
    let given: Vec<&str> = forms.iter().filter(|f| f.1).map(|f| f.0).collect();
    if given.len() > 1 {
        return Err(ctx.err(
            &join(path, given[1]),
            format!(
                "`ingest_keys` is given twice (`{}` and `{}`); keep one of `ingest_keys`, `ingest_keys_env`, `ingest_keys_file`",
                given[0], given[1]
            ),
        ));
    }
    let mut keys = Vec::new();
    if let Some(list) = &w.ingest_keys {
        for (j, k) in list.iter().enumerate() {
            let kp = format!("{path}.ingest_keys[{j}]");
            if k.trim().is_empty() {
                return Err(ctx.err(&kp, "must not be empty"));
            }
            keys.push((Secret(k.clone()), kp));
        }
    } else {
        let joined = secret(
            ctx,
            path,
            "ingest_keys",
            Forms {
                literal: None,
                env: w.ingest_keys_env.as_deref(),
                file: w.ingest_keys_file.as_deref(),
            },
            false,
        )?;
        if let Some(s) = joined {
            let kp = join(
                path,
                if w.ingest_keys_env.is_some() {
                    "ingest_keys_env"
                } else {
                    "ingest_keys_file"
                },
            );
            for k in s.expose().split([',', '\n']) {
                let k = k.trim();
                if !k.is_empty() {
                    keys.push((Secret(k.to_string()), kp.clone()));
                }
            }
        }
    }
    if keys.is_empty() {
        return Err(ctx.err(
            &join(path, "ingest_keys"),
            "needs at least one ingest key (`ingest_keys`, `ingest_keys_env` or `ingest_keys_file`)",
        ));
    }
    Ok(keys)
}
