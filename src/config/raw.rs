//! Stage one: the file as written. Every table denies unknown keys; every value that
//! has a range or a unit is kept loosely typed (`i64`, `String`) so stage two can
//! report "must be between …" with the key path instead of a serde type error.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub ingest: RawIngest,
    #[serde(default)]
    pub platforms: BTreeMap<String, RawPolicy>,
    #[serde(default)]
    pub workspaces: Vec<RawWorkspace>,
    #[serde(default)]
    pub destinations: Vec<RawDestination>,
    #[serde(default)]
    pub alerts: RawAlerts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_token: Option<String>,
    pub admin_token_env: Option<String>,
    pub admin_token_file: Option<String>,
    pub max_body_bytes: Option<i64>,
    pub max_events_per_request: Option<i64>,
    pub log_level: Option<String>,
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub console: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub path: Option<String>,
    pub dedup_window: Option<String>,
    pub max_backlog_age: Option<String>,
    pub dlq_retention: Option<String>,
    pub request_log: Option<i64>,
    pub backup_dir: Option<String>,
    pub pii_key_env: Option<String>,
    pub pii_key_file: Option<String>,
    pub cache_size: Option<ParamValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    pub default_country_code: Option<String>,
}

/// A policy layer: `[platforms.X]` or a destination's `policy`. Every key optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub max_batch: Option<i64>,
    pub linger: Option<String>,
    pub concurrency: Option<i64>,
    pub timeout: Option<String>,
    pub age_limit: Option<String>,
    pub rate: Option<RawRate>,
    pub rates: Option<Vec<RawRate>>,
    pub retry: Option<RawRetry>,
    pub auto_pause: Option<RawAutoPause>,
    pub watch: Option<RawWatch>,
}

/// `policy.watch` (issue 18): the watches of one destination.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    pub max_lag: Option<String>,
    pub warn_at: Option<f64>,
    pub alert_cooldown: Option<String>,
    pub min_accuracy: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub limit: i64,
    pub per: String,
    pub unit: Option<String>,
    pub scope: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_retries: Option<i64>,
    pub base: Option<String>,
    pub max: Option<String>,
    pub jitter: Option<f64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutoPause {
    pub threshold: Option<f64>,
    pub interval: Option<String>,
    pub window: Option<String>,
    pub sample: Option<i64>,
    pub min_samples: Option<i64>,
    pub auto_clear: Option<String>,
    pub reprobe: Option<String>,
    pub probe_requests: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkspace {
    pub id: String,
    pub plan: String,
    pub ingest_keys: Option<Vec<String>>,
    pub ingest_keys_env: Option<String>,
    pub ingest_keys_file: Option<String>,
    pub limits: Option<RawLimits>,
    pub silent_source: Option<RawSilentSource>,
}

/// A workspace's `silent_source` watch (issue 18).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSilentSource {
    pub enabled: Option<bool>,
    pub window: Option<String>,
    pub min_ratio: Option<f64>,
    pub min_baseline: Option<i64>,
    pub min_events: Option<i64>,
    pub event_names: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub rate: Option<i64>,
    pub burst: Option<i64>,
    pub monthly_cap: Option<i64>,
}

/// A `params` value: ids are strings, but an operator may write `pixel_id = 123`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Str(String),
    Int(i64),
}

impl ParamValue {
    pub fn into_string(self) -> String {
        match self {
            ParamValue::Str(s) => s,
            ParamValue::Int(i) => i.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    pub id: String,
    pub workspace: String,
    pub platform: String,
    pub endpoint: Option<String>,
    pub events: Option<Vec<String>>,
    pub event_map: Option<BTreeMap<String, String>>,
    pub params: Option<BTreeMap<String, ParamValue>>,
    /// Keys are `<name>`, `<name>_env` or `<name>_file`; grouped and checked in stage two.
    pub credentials: Option<BTreeMap<String, String>>,
    pub policy: Option<RawPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub slack: Option<RawSlack>,
    pub email: Option<RawEmail>,
    pub webhook: Option<RawWebhookAlert>,
    pub pagerduty: Option<RawPagerDuty>,
    pub backpressure: Option<RawBackpressure>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    pub webhook_url: Option<String>,
    pub webhook_url_env: Option<String>,
    pub webhook_url_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    pub smtp: String,
    pub starttls: Option<bool>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhookAlert {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPagerDuty {
    pub routing_key: Option<String>,
    pub routing_key_env: Option<String>,
    pub routing_key_file: Option<String>,
    pub events_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackpressure {
    pub queue_depth: Option<i64>,
    pub consumer_lag: Option<String>,
    pub dlq_growth_per_min: Option<i64>,
}
