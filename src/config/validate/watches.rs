//! The watches' keys (issue 18): a destination's `policy.watch` (merged like every
//! policy layer) and a workspace's `silent_source`. A child of `validate` so it shares
//! its key-path errors and range checks.

use std::time::Duration;

use super::super::raw::{RawSilentSource, RawWatch};
use super::super::types::{SilentSource, WatchPolicy};
use super::{Ctx, DAY, HOUR, MIN, R, join};

/// Longest event name the ingest API accepts.
const NAME_MAX: usize = crate::ingest::validate::EVENT_NAME_MAX_CHARS;

/// Applies one `watch` layer on top of `w`.
pub(super) fn apply_watch(ctx: &Ctx, w: &mut WatchPolicy, raw: &RawWatch, path: &str) -> R<()> {
    if let Some(s) = &raw.max_lag {
        w.max_lag = if s == "none" {
            None
        } else {
            Some(ctx.dur_in(&join(path, "max_lag"), s, MIN, 30 * DAY)?)
        };
    }
    if let Some(v) = raw.warn_at {
        w.warn_at = ctx.float(&join(path, "warn_at"), v, 0.0, 0.99, ("0", "0.99"))?;
    }
    if let Some(s) = &raw.alert_cooldown {
        w.alert_cooldown = ctx.dur_in(&join(path, "alert_cooldown"), s, Duration::ZERO, DAY)?;
    }
    if let Some(v) = raw.min_accuracy {
        w.min_accuracy =
            Some(ctx.float(&join(path, "min_accuracy"), v, 0.01, 1.0, ("0.01", "1"))?);
    }
    Ok(())
}

/// A workspace's `silent_source` table over the defaults.
pub(super) fn silent_source(ctx: &Ctx, raw: &RawSilentSource, path: &str) -> R<SilentSource> {
    let mut s = SilentSource::default();
    if let Some(v) = raw.enabled {
        s.enabled = v;
    }
    if let Some(v) = &raw.window {
        let k = join(path, "window");
        let d = ctx.dur_in(&k, v, 5 * MIN, 6 * HOUR)?;
        if d.as_secs() % 60 != 0 {
            return Err(ctx.err(&k, "must be whole minutes"));
        }
        s.window = d;
    }
    if let Some(v) = raw.min_ratio {
        s.min_ratio = ctx.float(&join(path, "min_ratio"), v, 0.01, 0.99, ("0.01", "0.99"))?;
    }
    if let Some(v) = raw.min_baseline {
        s.min_baseline = ctx.nonneg(&join(path, "min_baseline"), v)?;
    }
    if let Some(v) = raw.min_events {
        s.min_events = ctx.nonneg(&join(path, "min_events"), v)?;
    }
    if let Some(names) = &raw.event_names {
        if names.len() > 20 {
            return Err(ctx.err(
                &join(path, "event_names"),
                format!("lists {} names; at most 20 are watched", names.len()),
            ));
        }
        for (i, n) in names.iter().enumerate() {
            let k = format!("{path}.event_names[{i}]");
            if n.trim().is_empty()
                || n.chars().count() > NAME_MAX
                || n.chars().any(char::is_control)
            {
                return Err(ctx.err(
                    &k,
                    format!(
                        "must be an event name: 1 to {NAME_MAX} characters, no control characters"
                    ),
                ));
            }
            if s.event_names.contains(n) {
                return Err(ctx.err(&k, "is listed twice"));
            }
            s.event_names.push(n.clone());
        }
    }
    Ok(s)
}
