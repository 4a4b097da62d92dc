//! The validated, typed configuration (SPEC §8). Built only by [`super::load`] /
//! [`super::parse`]; every value here is already range-checked and every secret resolved.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A secret value resolved from a literal, `*_env` or `*_file`. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    Webhook,
    Meta,
    Tiktok,
    Klaviyo,
    GoogleAds,
    Linkedin,
    Pinterest,
    Snapchat,
    Reddit,
    X,
    MicrosoftAds,
    Taboola,
    Outbrain,
    Criteo,
}

impl Platform {
    pub const ALL: [Platform; 14] = [
        Platform::Webhook,
        Platform::Meta,
        Platform::Tiktok,
        Platform::Klaviyo,
        Platform::GoogleAds,
        Platform::Linkedin,
        Platform::Pinterest,
        Platform::Snapchat,
        Platform::Reddit,
        Platform::X,
        Platform::MicrosoftAds,
        Platform::Taboola,
        Platform::Outbrain,
        Platform::Criteo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Platform::Webhook => "webhook",
            Platform::Meta => "meta",
            Platform::Tiktok => "tiktok",
            Platform::Klaviyo => "klaviyo",
            Platform::GoogleAds => "google_ads",
            Platform::Linkedin => "linkedin",
            Platform::Pinterest => "pinterest",
            Platform::Snapchat => "snapchat",
            Platform::Reddit => "reddit",
            Platform::X => "x",
            Platform::MicrosoftAds => "microsoft_ads",
            Platform::Taboola => "taboola",
            Platform::Outbrain => "outbrain",
            Platform::Criteo => "criteo",
        }
    }

    pub fn from_name(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.name() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Starter,
    Growth,
    Scale,
    Enterprise,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// The file it came from (None when parsed from a string).
    pub path: Option<PathBuf>,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub ingest: IngestConfig,
    /// The effective policy of every platform: platforms.md defaults, then `[platforms.X]`.
    pub platforms: BTreeMap<Platform, PlatformPolicy>,
    pub workspaces: Vec<Workspace>,
    pub destinations: Vec<Destination>,
    pub alerts: AlertsConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// None: admin routes answer 403 admin_disabled.
    pub admin_token: Option<Secret>,
    /// The variable `admin_token_env` names (kept to say what is missing when it was
    /// not set).
    pub admin_token_env: Option<String>,
    pub max_body_bytes: usize,
    pub max_events_per_request: usize,
    pub log_level: String,
    /// A client must send a request's header (or, idle on a kept-alive connection, its
    /// next one) within this.
    pub header_timeout: Duration,
    /// A client must send an ingest request's body within this.
    pub body_timeout: Duration,
    /// Open inbound connections at most (None: the open-file limit less a reserve).
    pub max_connections: Option<usize>,
    /// The web console under `/console/` (issue 16); off: those routes answer 404.
    pub console: bool,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Relative paths in the file are resolved against the config file's directory.
    pub path: PathBuf,
    pub dedup_window: Duration,
    pub max_backlog_age: Duration,
    pub dlq_retention: Duration,
    /// Requests kept per destination in its request log (0: none recorded).
    pub request_log: u32,
    pub backup_dir: PathBuf,
    /// 32 bytes, from `pii_key_env` / `pii_key_file` (base64). Required when any
    /// destination is Klaviyo.
    pub pii_key: Option<[u8; 32]>,
    /// redb's page cache in bytes (`storage.cache_size`, default 64 MiB): the largest
    /// part of the daemon's memory, and the only one an operator sizes.
    pub cache_size: usize,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Digits only, e.g. "1".
    pub default_country_code: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Events,
    Requests,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateScope {
    Destination,
    Token,
    /// A `params` key such as `pixel_id`.
    Param(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    /// 0 = no limit.
    pub limit: u64,
    pub per: Duration,
    pub unit: RateUnit,
    pub scope: RateScope,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub max: Duration,
    pub jitter: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AutoPausePolicy {
    pub threshold: f64,
    pub interval: Duration,
    pub window: Duration,
    pub sample: u32,
    pub min_samples: u32,
    pub auto_clear: Duration,
    pub reprobe: Duration,
    pub probe_requests: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlatformPolicy {
    pub max_batch: u32,
    pub linger: Duration,
    pub concurrency: u32,
    pub timeout: Duration,
    /// None = `none` (no age limit).
    pub age_limit: Option<Duration>,
    /// `rate` or `rates`, normalized to a list (empty = unpaced).
    pub rates: Vec<Rate>,
    pub retry: RetryPolicy,
    pub auto_pause: AutoPausePolicy,
    pub watch: WatchPolicy,
}

/// `policy.watch` (issue 18): what the watches judge of one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchPolicy {
    /// Alert when the oldest queued event of an active destination is older than this
    /// (None: `none`, never).
    pub max_lag: Option<Duration>,
    /// Warn once when the error rate reaches this share of `auto_pause.threshold`
    /// (0: no warning).
    pub warn_at: f64,
    /// After a warning or a recovery, no other warning for this long.
    pub alert_cooldown: Duration,
    /// Alert when the share delivered of a finished hour is below this (None: off).
    pub min_accuracy: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct WorkspaceLimits {
    /// Events per second; 0 = unlimited.
    pub rate: u64,
    /// Bucket capacity; 0 = unlimited.
    pub burst: u64,
    /// Accepted events per calendar month (UTC); 0 = unlimited.
    pub monthly_cap: u64,
}

#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: String,
    pub plan: Plan,
    pub ingest_keys: Vec<Secret>,
    /// Plan defaults overridden by `limits`.
    pub limits: WorkspaceLimits,
    pub silent_source: SilentSource,
}

/// A workspace's `silent_source` watch (issue 18): alert when fewer events arrive over
/// `window` than usual (the median of the same window at the same time of day over the
/// last 7 days), or than a fixed minimum.
#[derive(Debug, Clone, PartialEq)]
pub struct SilentSource {
    pub enabled: bool,
    pub window: Duration,
    /// Alert below this share of the baseline.
    pub min_ratio: f64,
    /// ... only while the baseline is at least this many events.
    pub min_baseline: u64,
    /// A fixed minimum over the window (0: none): alert below it whatever the baseline.
    pub min_events: u64,
    /// Event names also watched on their own (a stopped `Purchase` while `PageView`
    /// flows is a broken checkout tag).
    pub event_names: Vec<String>,
}

impl Default for SilentSource {
    fn default() -> Self {
        SilentSource {
            enabled: true,
            window: Duration::from_secs(15 * 60),
            min_ratio: 0.2,
            min_baseline: 100,
            min_events: 0,
            event_names: Vec::new(),
        }
    }
}

impl Default for WatchPolicy {
    fn default() -> Self {
        WatchPolicy {
            max_lag: Some(Duration::from_secs(3600)),
            warn_at: 0.8,
            alert_cooldown: Duration::from_secs(3600),
            min_accuracy: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Destination {
    pub id: String,
    pub workspace: String,
    pub platform: Platform,
    /// For webhook: the whole URL. Otherwise replaces scheme, host and port.
    pub endpoint: Option<String>,
    /// None = all events.
    pub events: Option<Vec<String>>,
    pub event_map: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    /// Resolved credentials by base key (`access_token`, not `access_token_env`).
    pub credentials: BTreeMap<String, Secret>,
    /// The platform policy with this destination's `policy` deep-merged on top.
    pub policy: PlatformPolicy,
}

#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    pub slack: Option<SlackAlert>,
    pub email: Option<EmailAlert>,
    pub webhook: Option<WebhookAlert>,
    pub pagerduty: Option<PagerDutyAlert>,
    pub backpressure: Option<Backpressure>,
}

#[derive(Debug, Clone)]
pub struct SlackAlert {
    pub webhook_url: Secret,
}

#[derive(Debug, Clone)]
pub struct EmailAlert {
    /// host:port
    pub smtp: String,
    pub starttls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct WebhookAlert {
    pub url: Secret,
}

#[derive(Debug, Clone)]
pub struct PagerDutyAlert {
    pub routing_key: Secret,
    pub events_url: String,
}

#[derive(Debug, Clone)]
pub struct Backpressure {
    pub queue_depth: Option<u64>,
    pub consumer_lag: Option<Duration>,
    pub dlq_growth_per_min: Option<u64>,
}
