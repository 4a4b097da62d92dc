//! The warning before a pause (issue 18): when an evaluation finds the error rate at
//! `watch.warn_at` of the threshold or more (but not over it), one warning; when a
//! later evaluation finds it back under that level, or the destination pauses, the
//! warning is cleared. After a warning or a recovery (a resume), no new warning for
//! `watch.alert_cooldown`, so a flapping destination does not page every interval.
//! The cooldown lives in the worker's memory: a restart may warn once more.

use super::Worker;
use crate::health::{Notice, NoticeKind};
use crate::store::codec::DestMode;
use crate::watch::percent;

/// What an evaluation means for the warning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Warn {
    Fire(f64),
    Clear(f64),
}

/// The warning's step for an evaluated `rate` (None: too few samples).
pub(super) fn decide(
    rate: Option<f64>,
    threshold: f64,
    warn_at: f64,
    warned: bool,
    now: i64,
    quiet_until: i64,
) -> Option<Warn> {
    let r = rate?;
    let level = warn_at * threshold;
    if warned {
        return (r < level).then_some(Warn::Clear(r));
    }
    (warn_at > 0.0 && r >= level && r <= threshold && now >= quiet_until).then_some(Warn::Fire(r))
}

/// The warning state of one worker.
#[derive(Debug, Default)]
pub(super) struct WarnState {
    /// A warning is out and not cleared.
    warned: bool,
    /// No new warning before this (clock ms).
    quiet_until: i64,
}

impl Worker {
    /// After an evaluation of an active destination at `now`.
    pub(super) fn after_evaluation(&mut self, now: i64) {
        if self.health.mode() != DestMode::Active
            || self.health.state().last_checked_ms != Some(now)
        {
            return;
        }
        let p = &self.ctx.dest.policy;
        let rate = self.health.state().error_rate;
        match decide(
            rate,
            p.auto_pause.threshold,
            p.watch.warn_at,
            self.warn.warned,
            now,
            self.warn.quiet_until,
        ) {
            Some(Warn::Fire(r)) => {
                self.warn.warned = true;
                self.warn.quiet_until = now + p.watch.alert_cooldown.as_millis() as i64;
                tracing::warn!(destination = %self.id, error_rate = %percent(r), "error rate at the warning level");
                self.engine
                    .notify(self.warning(NoticeKind::Warning, Some(r), now, None));
            }
            Some(Warn::Clear(r)) => {
                self.warn.warned = false;
                self.engine
                    .notify(self.warning(NoticeKind::WarningCleared, Some(r), now, None));
            }
            None => {}
        }
    }

    /// After a committed pause or resume.
    pub(super) fn after_transition(&mut self, now: i64) {
        if self.health.is_paused() {
            if self.warn.warned {
                self.warn.warned = false;
                let why = "the destination paused: the pause alert says what to do".to_string();
                self.engine
                    .notify(self.warning(NoticeKind::WarningCleared, None, now, Some(why)));
            }
        } else {
            // A recovery: no warning for a cooldown.
            self.warn.warned = false;
            self.warn.quiet_until =
                now + self.ctx.dest.policy.watch.alert_cooldown.as_millis() as i64;
        }
    }

    fn warning(
        &self,
        kind: NoticeKind,
        rate: Option<f64>,
        now: i64,
        note: Option<String>,
    ) -> Notice {
        let d = &self.ctx.dest;
        let level = d.policy.watch.warn_at * d.policy.auto_pause.threshold;
        Notice {
            kind,
            merchant_id: d.workspace.clone(),
            destination_id: d.id.clone(),
            platform: d.platform.name().into(),
            reason: kind.name().into(),
            error_rate: rate,
            threshold: d.policy.auto_pause.threshold,
            auto_clear_at_ms: None,
            at_ms: now,
            actor: crate::audit::Actor::System.name(),
            note,
            figures: vec![("Warn at".into(), percent(level))],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_in_the_band_clears_below_and_keeps_quiet_in_the_cooldown() {
        // threshold 25 %, warn at 0.8 → 20 %.
        assert_eq!(decide(Some(0.19), 0.25, 0.8, false, 0, 0), None);
        assert_eq!(
            decide(Some(0.20), 0.25, 0.8, false, 0, 0),
            Some(Warn::Fire(0.20))
        );
        assert_eq!(
            decide(Some(0.25), 0.25, 0.8, false, 0, 0),
            Some(Warn::Fire(0.25))
        );
        // Over the threshold: the pause says it.
        assert_eq!(decide(Some(0.26), 0.25, 0.8, false, 0, 0), None);
        // Out already: nothing until it falls below the level.
        assert_eq!(decide(Some(0.22), 0.25, 0.8, true, 0, 0), None);
        assert_eq!(
            decide(Some(0.1), 0.25, 0.8, true, 0, 0),
            Some(Warn::Clear(0.1))
        );
        // Within the cooldown: no new warning.
        assert_eq!(decide(Some(0.22), 0.25, 0.8, false, 10, 11), None);
        assert_eq!(
            decide(Some(0.22), 0.25, 0.8, false, 11, 11),
            Some(Warn::Fire(0.22))
        );
        // Off, or too few samples.
        assert_eq!(decide(Some(0.22), 0.25, 0.0, false, 0, 0), None);
        assert_eq!(decide(None, 0.25, 0.8, false, 0, 0), None);
    }
}
