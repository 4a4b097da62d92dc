//! The human summary `sluice config check` prints. Names where secrets come from only
//! by count ("admin token: set"), never their values.

use std::fmt::Write;

use super::defaults::plan_name;
use super::duration::format_duration;
use super::types::{Config, Rate, RateScope, RateUnit};

fn limit(n: u64) -> String {
    if n == 0 {
        "unlimited".to_string()
    } else {
        n.to_string()
    }
}

fn rate(r: &Rate) -> String {
    let unit = match r.unit {
        RateUnit::Events => "events",
        RateUnit::Requests => "requests",
    };
    let scope = match &r.scope {
        RateScope::Destination => "destination".to_string(),
        RateScope::Token => "token".to_string(),
        RateScope::Param(p) => p.clone(),
    };
    format!("{} {unit}/{} per {scope}", r.limit, format_duration(r.per))
}

/// A multi-line, secret-free description of `cfg`.
pub fn summary(cfg: &Config) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "config sha256: {}", cfg.sha256);
    let _ = writeln!(s, "listen: {}", cfg.server.listen);
    let _ = writeln!(
        s,
        "admin api: {}",
        if cfg.server.admin_token.is_some() {
            "enabled (token set)"
        } else {
            "disabled (no admin token)"
        }
    );
    let _ = writeln!(s, "store: {}", cfg.storage.path.display());
    let _ = writeln!(s, "backups: {}", cfg.storage.backup_dir.display());
    let _ = writeln!(
        s,
        "retention: dedup {}, backlog {}, dlq {}; pii key: {}",
        format_duration(cfg.storage.dedup_window),
        format_duration(cfg.storage.max_backlog_age),
        format_duration(cfg.storage.dlq_retention),
        if cfg.storage.pii_key.is_some() {
            "set"
        } else {
            "not set"
        }
    );
    let _ = match cfg.storage.request_log {
        0 => writeln!(s, "request log: off"),
        n => writeln!(s, "request log: last {n} requests per destination"),
    };
    let _ = writeln!(s, "workspaces ({}):", cfg.workspaces.len());
    for w in &cfg.workspaces {
        let _ = writeln!(
            s,
            "  {}: plan {}, {} ingest key(s), rate {}/s, burst {}, monthly cap {}",
            w.id,
            plan_name(w.plan),
            w.ingest_keys.len(),
            limit(w.limits.rate),
            limit(w.limits.burst),
            limit(w.limits.monthly_cap),
        );
        let ss = &w.silent_source;
        let _ = if ss.enabled {
            writeln!(
                s,
                "    silent source: alert under {}% of the 7-day baseline over {} (baseline at least {}){}{}",
                (ss.min_ratio * 1000.0).round() / 10.0,
                format_duration(ss.window),
                ss.min_baseline,
                if ss.min_events > 0 {
                    format!(", or under {} events", ss.min_events)
                } else {
                    String::new()
                },
                if ss.event_names.is_empty() {
                    String::new()
                } else {
                    format!("; also {}", ss.event_names.join(", "))
                },
            )
        } else {
            writeln!(s, "    silent source: off")
        };
    }
    let _ = writeln!(s, "destinations ({}):", cfg.destinations.len());
    for d in &cfg.destinations {
        let p = &d.policy;
        let rates = if p.rates.is_empty() {
            "unpaced".to_string()
        } else {
            p.rates.iter().map(rate).collect::<Vec<_>>().join(" + ")
        };
        let _ = writeln!(
            s,
            "  {}: {} for workspace {}; {}; max_batch {}, concurrency {}, age limit {}; events: {}",
            d.id,
            d.platform.name(),
            d.workspace,
            rates,
            p.max_batch,
            p.concurrency,
            p.age_limit.map_or("none".to_string(), format_duration),
            d.events
                .as_ref()
                .map_or("all".to_string(), |e| e.join(", ")),
        );
        let ap = &p.auto_pause;
        let _ = writeln!(
            s,
            "    auto-pause: above {}% errors over {} (evaluated every {}, at least {} attempts); auto-clear after {}, re-probe after {}",
            (ap.threshold * 1000.0).round() / 10.0,
            format_duration(ap.window),
            format_duration(ap.interval),
            ap.min_samples,
            format_duration(ap.auto_clear),
            format_duration(ap.reprobe),
        );
        let w = &p.watch;
        let _ = writeln!(
            s,
            "    watches: behind after {}; warn at {}; cooldown {}; accuracy {}",
            w.max_lag.map_or("never".to_string(), format_duration),
            if w.warn_at > 0.0 {
                format!(
                    "{}% errors",
                    (w.warn_at * ap.threshold * 1000.0).round() / 10.0
                )
            } else {
                "never".to_string()
            },
            format_duration(w.alert_cooldown),
            w.min_accuracy.map_or("not watched".to_string(), |m| {
                format!("at least {}% per hour", (m * 1000.0).round() / 10.0)
            }),
        );
    }
    let a = &cfg.alerts;
    let mut channels = Vec::new();
    if a.slack.is_some() {
        channels.push("slack".to_string());
    }
    if let Some(e) = &a.email {
        channels.push(format!(
            "email via {} to {} recipient(s)",
            e.smtp,
            e.to.len()
        ));
    }
    if a.webhook.is_some() {
        channels.push("webhook".to_string());
    }
    if a.pagerduty.is_some() {
        channels.push("pagerduty".to_string());
    }
    let _ = writeln!(
        s,
        "alert channels: {}",
        if channels.is_empty() {
            "none".to_string()
        } else {
            channels.join(", ")
        }
    );
    if let Some(b) = &a.backpressure {
        let _ = writeln!(
            s,
            "backpressure alerts: queue depth {}, consumer lag {}, dlq growth {}/min",
            b.queue_depth.map_or("off".to_string(), |v| v.to_string()),
            b.consumer_lag.map_or("off".to_string(), format_duration),
            b.dlq_growth_per_min
                .map_or("off".to_string(), |v| v.to_string()),
        );
    }
    s
}
