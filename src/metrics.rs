//! Prometheus metrics (SPEC §10), through `prometheus-client`.
//!
//! Counters and the latency histogram are kept as things happen (the delivery workers
//! and the ingest route feed them). The per-destination gauges are computed at scrape
//! time from the workers' live state and one read transaction over each backlog
//! ([`crate::delivery::Engine::gauges`]): exact, at the cost of one decode per pending
//! event per scrape.
//!
//! Label sets are bounded: `destination`, `platform` and `merchant` come from the
//! configuration, `outcome` and `reason` from fixed lists (SPEC §2 error codes). Ingest
//! requests that name no known workspace count under `merchant="unknown"`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestLabels {
    pub destination: String,
    pub platform: String,
    pub merchant: String,
}

/// A watched source (issue 18): the workspace, and the event name (`""` for all).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub merchant: String,
    pub event_name: String,
}

impl DestLabels {
    pub fn of(d: &crate::config::Destination) -> Self {
        Self {
            destination: d.id.clone(),
            platform: d.platform.name().to_string(),
            merchant: d.workspace.clone(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    destination: String,
    platform: String,
    merchant: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MerchantLabels {
    merchant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    merchant: String,
    reason: String,
}

/// `sluice_deliveries_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retried,
    Throttled,
    DeadLettered,
    Expired,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retried => "retried",
            Outcome::Throttled => "throttled",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Expired => "expired",
        }
    }
}

/// The gauges of one destination at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct DestGauges {
    pub labels: DestLabels,
    pub queue_depth: u64,
    pub consumer_lag_seconds: f64,
    pub oldest_pending_age_seconds: f64,
    pub error_rate: f64,
    pub dlq_depth: u64,
    pub dlq_growth_per_min: f64,
    pub paused: bool,
    /// `+Inf` when events wait and nothing was sent for 5 minutes.
    pub projected_drain_seconds: f64,
    pub events_expiring_soon: u64,
}

/// Sliding 5-minute sums per destination: events sent and DLQ entries added.
const WINDOW_MS: i64 = 5 * 60_000;
const BUCKET_MS: i64 = 10_000;

#[derive(Default)]
struct Window {
    /// (bucket start, events sent, DLQ entries added), oldest first.
    buckets: VecDeque<(i64, u64, u64)>,
}

impl Window {
    fn add(&mut self, now: i64, sent: u64, dlq: u64) {
        let start = now.div_euclid(BUCKET_MS) * BUCKET_MS;
        match self.buckets.back_mut() {
            Some(b) if b.0 == start => {
                b.1 += sent;
                b.2 += dlq;
            }
            _ => self.buckets.push_back((start, sent, dlq)),
        }
        self.trim(now);
    }

    fn trim(&mut self, now: i64) {
        while self
            .buckets
            .front()
            .is_some_and(|b| b.0 + BUCKET_MS <= now - WINDOW_MS)
        {
            self.buckets.pop_front();
        }
    }

    /// (sent, dlq added) over the last 5 minutes.
    fn sums(&mut self, now: i64) -> (u64, u64) {
        self.trim(now);
        self.buckets
            .iter()
            .fold((0, 0), |(s, d), b| (s + b.1, d + b.2))
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;
/// Counts (depths, 0/1) print as integers.
type CountGauge = Gauge;

pub struct Metrics {
    registry: Registry,
    deliveries: Family<OutcomeLabels, Counter>,
    latency: Family<DestLabels, Histogram, fn() -> Histogram>,
    ingest_events: Family<MerchantLabels, Counter>,
    ingest_rejected: Family<RejectLabels, Counter>,
    stale: Family<DestLabels, Counter>,
    reload_success: CountGauge,
    reload_timestamp: FloatGauge,
    queue_depth: Family<DestLabels, CountGauge>,
    consumer_lag: Family<DestLabels, FloatGauge>,
    oldest_age: Family<DestLabels, FloatGauge>,
    error_rate: Family<DestLabels, FloatGauge>,
    dlq_depth: Family<DestLabels, CountGauge>,
    dlq_growth: Family<DestLabels, FloatGauge>,
    paused: Family<DestLabels, CountGauge>,
    drain: Family<DestLabels, FloatGauge>,
    expiring: Family<DestLabels, CountGauge>,
    source_window: Family<SourceLabels, CountGauge>,
    source_baseline: Family<SourceLabels, CountGauge>,
    windows: Mutex<HashMap<String, Window>>,
    /// Events delivered per destination since the process started (the console's
    /// series takes differences of it).
    delivered: Mutex<HashMap<String, u64>>,
    /// One scrape at a time sets and encodes the gauges.
    scrape: Mutex<()>,
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~20 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        let latency = Family::<DestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let ingest_events = Family::<MerchantLabels, Counter>::default();
        let ingest_rejected = Family::<RejectLabels, Counter>::default();
        let stale = Family::<DestLabels, Counter>::default();
        let build_info = Family::<BuildLabels, CountGauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version label names the running build",
            build_info,
        );
        // The config read at start counts as a successful load.
        let reload_success = CountGauge::default();
        reload_success.set(1);
        let reload_timestamp = FloatGauge::default();
        registry.register(
            "config_last_reload_success",
            "1 when the last config load or reload succeeded, 0 when it failed",
            reload_success.clone(),
        );
        registry.register(
            "config_last_reload_timestamp_seconds",
            "Unix time of the last config load or reload attempt",
            reload_timestamp.clone(),
        );
        let gauge = Family::<DestLabels, FloatGauge>::default;
        let count = Family::<DestLabels, CountGauge>::default;
        let (consumer_lag, oldest_age, error_rate, dlq_growth, drain) =
            (gauge(), gauge(), gauge(), gauge(), gauge());
        let (queue_depth, dlq_depth, paused, expiring) = (count(), count(), count(), count());
        registry.register(
            "queue_depth",
            "Events pending per destination: queued, throttled or waiting to retry (not the DLQ)",
            queue_depth.clone(),
        );
        registry.register(
            "consumer_lag_seconds",
            "Now minus the accept time of the oldest pending event, due or not",
            consumer_lag.clone(),
        );
        registry.register(
            "oldest_pending_age_seconds",
            "Now minus the event_time of the oldest pending event",
            oldest_age.clone(),
        );
        registry.register(
            "platform_latency_seconds",
            "Latency of requests to the platform",
            latency.clone(),
        );
        registry.register(
            "platform_error_rate",
            "The destination's last evaluated error rate (0-1)",
            error_rate.clone(),
        );
        registry.register("dlq_depth", "Dead-letter entries", dlq_depth.clone());
        registry.register(
            "dlq_growth_rate",
            "Dead-letter entries added per minute, 5-minute average",
            dlq_growth.clone(),
        );
        registry.register(
            "destination_paused",
            "1 while the destination is paused",
            paused.clone(),
        );
        registry.register(
            "deliveries",
            "Events by delivery outcome: delivered, retried, throttled, dead_lettered, expired",
            deliveries.clone(),
        );
        registry.register(
            "events_stale_on_arrival",
            "Events expired unsent because they were already past the platform's age limit (less 10 min) when accepted",
            stale.clone(),
        );
        registry.register(
            "projected_drain_seconds",
            "Queue depth divided by events sent per second over 5 minutes (0 when empty, +Inf when nothing is sent)",
            drain.clone(),
        );
        registry.register(
            "events_expiring_soon",
            "Pending events within 1 h of the platform's age limit",
            expiring.clone(),
        );
        registry.register(
            "ingest_events",
            "Events accepted per merchant",
            ingest_events.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Events rejected per merchant, by SPEC §2 error code",
            ingest_rejected.clone(),
        );
        let (source_window, source_baseline) = (
            Family::<SourceLabels, CountGauge>::default(),
            Family::<SourceLabels, CountGauge>::default(),
        );
        registry.register(
            "source_window_events",
            "Events accepted over the silent-source window that ended at the last whole minute, per merchant (event_name \"\" for all)",
            source_window.clone(),
        );
        registry.register(
            "source_baseline_events",
            "The silent-source baseline: the median of the same window at the same time of day over the last 7 days (absent until a day of counts is kept)",
            source_baseline.clone(),
        );
        Self {
            registry,
            deliveries,
            latency,
            ingest_events,
            ingest_rejected,
            stale,
            reload_success,
            reload_timestamp,
            queue_depth,
            consumer_lag,
            oldest_age,
            error_rate,
            dlq_depth,
            dlq_growth,
            paused,
            drain,
            expiring,
            source_window,
            source_baseline,
            windows: Mutex::new(HashMap::new()),
            delivered: Mutex::new(HashMap::new()),
            scrape: Mutex::new(()),
        }
    }

    /// `n` events of a destination reached `outcome` at `now_ms`.
    pub fn outcome(&self, d: &DestLabels, outcome: Outcome, n: u64, now_ms: i64) {
        if n == 0 {
            return;
        }
        self.deliveries
            .get_or_create(&OutcomeLabels {
                destination: d.destination.clone(),
                platform: d.platform.clone(),
                merchant: d.merchant.clone(),
                outcome: outcome.name(),
            })
            .inc_by(n);
        if outcome == Outcome::Delivered {
            let mut m = self.delivered.lock().expect("metrics lock");
            *m.entry(d.destination.clone()).or_default() += n;
        }
        if matches!(outcome, Outcome::DeadLettered | Outcome::Expired) {
            self.window_at(&d.destination, now_ms, 0, n);
        }
    }

    /// The rejection codes a known workspace's events can be counted under (SPEC §2).
    pub const REJECT_REASONS: [&'static str; 12] = [
        "missing_field",
        "invalid_field",
        "unknown_field",
        "event_time_in_future",
        "unknown_destination",
        "monthly_cap_reached",
        "unsupported_media_type",
        "payload_too_large",
        "invalid_json",
        "batch_exceeds_burst",
        "storage_unavailable",
        "rate_limited",
    ];

    /// Creates every counter series of the configured label sets at 0, so a rate or
    /// `increase()` over them works from the first scrape (a series that appears only
    /// at its first increment hides that increment). Counters never go away: series of
    /// a workspace or destination removed by a reload stay.
    pub fn init_known(&self, cfg: &crate::config::Config) {
        for w in &cfg.workspaces {
            let merchant = w.id.clone();
            let _ = self.ingest_events.get_or_create(&MerchantLabels {
                merchant: merchant.clone(),
            });
            for reason in Self::REJECT_REASONS {
                let _ = self.ingest_rejected.get_or_create(&RejectLabels {
                    merchant: merchant.clone(),
                    reason: reason.to_string(),
                });
            }
        }
        let _ = self.ingest_rejected.get_or_create(&RejectLabels {
            merchant: "unknown".to_string(),
            reason: "unauthorized".to_string(),
        });
        for d in &cfg.destinations {
            let l = DestLabels::of(d);
            for o in [
                Outcome::Delivered,
                Outcome::Retried,
                Outcome::Throttled,
                Outcome::DeadLettered,
                Outcome::Expired,
            ] {
                let _ = self.deliveries.get_or_create(&OutcomeLabels {
                    destination: l.destination.clone(),
                    platform: l.platform.clone(),
                    merchant: l.merchant.clone(),
                    outcome: o.name(),
                });
            }
            let _ = self.stale.get_or_create(&l);
        }
    }

    /// A config load or reload at `at_ms`: its outcome and time.
    pub fn config_loaded(&self, ok: bool, at_ms: i64) {
        self.reload_success.set(i64::from(ok));
        self.reload_timestamp.set(at_ms as f64 / 1000.0);
    }

    /// `n` events of a destination expired unsent because they were already past the
    /// platform's age limit when accepted.
    pub fn stale_on_arrival(&self, d: &DestLabels, n: u64) {
        self.stale.get_or_create(d).inc_by(n);
    }

    /// One answered (or failed) request of `events` events, at `now_ms`.
    pub fn request(&self, d: &DestLabels, events: u64, latency_ms: i64, now_ms: i64) {
        self.latency
            .get_or_create(d)
            .observe(latency_ms.max(0) as f64 / 1000.0);
        self.window_at(&d.destination, now_ms, events, 0);
    }

    fn window_at(&self, dest: &str, now: i64, sent: u64, dlq: u64) {
        let mut w = self.windows.lock().expect("metrics lock");
        w.entry(dest.to_string()).or_default().add(now, sent, dlq);
    }

    /// Events of `dest` delivered since the process started.
    pub fn delivered_total(&self, dest: &str) -> u64 {
        let m = self.delivered.lock().expect("metrics lock");
        m.get(dest).copied().unwrap_or(0)
    }

    /// (events sent, DLQ entries added) over the 5 minutes before `now`.
    pub fn window_sums(&self, dest: &str, now: i64) -> (u64, u64) {
        let mut w = self.windows.lock().expect("metrics lock");
        w.get_mut(dest).map_or((0, 0), |w| w.sums(now))
    }

    /// Accepted events of a merchant.
    /// The silent-source watch's last look at one source.
    pub fn source(&self, merchant: &str, event_name: &str, window: u64, baseline: Option<u64>) {
        let l = SourceLabels {
            merchant: merchant.to_string(),
            event_name: event_name.to_string(),
        };
        self.source_window.get_or_create(&l).set(window as i64);
        match baseline {
            Some(b) => {
                self.source_baseline.get_or_create(&l).set(b as i64);
            }
            None => {
                self.source_baseline.remove(&l);
            }
        }
    }

    pub fn ingested(&self, merchant: &str, n: u64) {
        if n > 0 {
            self.ingest_events
                .get_or_create(&MerchantLabels {
                    merchant: merchant.to_string(),
                })
                .inc_by(n);
        }
    }

    /// Rejected events of a merchant (`unknown` when the request named none).
    pub fn rejected(&self, merchant: &str, reason: &str, n: u64) {
        if n > 0 {
            self.ingest_rejected
                .get_or_create(&RejectLabels {
                    merchant: merchant.to_string(),
                    reason: reason.to_string(),
                })
                .inc_by(n);
        }
    }

    /// The exposition: sets the gauges to `gauges` (destinations not in it disappear)
    /// and encodes everything.
    pub fn encode(&self, gauges: &[DestGauges]) -> String {
        let _one = self.scrape.lock().expect("metrics lock");
        for f in [
            &self.consumer_lag,
            &self.oldest_age,
            &self.error_rate,
            &self.dlq_growth,
            &self.drain,
        ] {
            f.clear();
        }
        for f in [
            &self.queue_depth,
            &self.dlq_depth,
            &self.paused,
            &self.expiring,
        ] {
            f.clear();
        }
        for g in gauges {
            let l = &g.labels;
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.queue_depth.get_or_create(l).set(count(g.queue_depth));
            self.consumer_lag
                .get_or_create(l)
                .set(g.consumer_lag_seconds);
            self.oldest_age
                .get_or_create(l)
                .set(g.oldest_pending_age_seconds);
            self.error_rate.get_or_create(l).set(g.error_rate);
            self.dlq_depth.get_or_create(l).set(count(g.dlq_depth));
            self.dlq_growth.get_or_create(l).set(g.dlq_growth_per_min);
            self.paused.get_or_create(l).set(i64::from(g.paused));
            self.drain.get_or_create(l).set(g.projected_drain_seconds);
            self.expiring
                .get_or_create(l)
                .set(count(g.events_expiring_soon));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        // prometheus-client writes infinities as `inf`; the exposition formats spell
        // them `+Inf` (Prometheus reads both, strict OpenMetrics parsers only the latter).
        out.replace(" inf\n", " +Inf\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sums_the_last_five_minutes() {
        let mut w = Window::default();
        w.add(0, 10, 1);
        w.add(60_000, 5, 0);
        assert_eq!(w.sums(60_000), (15, 1));
        // 10 s buckets: the first leaves once the window has passed all of it.
        assert_eq!(w.sums(WINDOW_MS + 5_000), (15, 1));
        assert_eq!(w.sums(WINDOW_MS + 10_000), (5, 0));
        assert_eq!(w.sums(WINDOW_MS + 70_000), (0, 0));
    }

    #[test]
    fn infinity_is_spelled_plus_inf() {
        let m = Metrics::new();
        let g = DestGauges {
            labels: DestLabels {
                destination: "d".into(),
                platform: "meta".into(),
                merchant: "m".into(),
            },
            queue_depth: 3,
            consumer_lag_seconds: 1.5,
            oldest_pending_age_seconds: 2.0,
            error_rate: 0.0,
            dlq_depth: 0,
            dlq_growth_per_min: 0.0,
            paused: true,
            projected_drain_seconds: f64::INFINITY,
            events_expiring_soon: 0,
        };
        let text = m.encode(&[g]);
        assert!(
            text.contains(
                "sluice_projected_drain_seconds{destination=\"d\",platform=\"meta\",merchant=\"m\"} +Inf\n"
            ),
            "{text}"
        );
    }
}
