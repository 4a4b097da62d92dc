//! Destination health (SPEC §4): the outcome ring of recent attempts, the error-rate
//! evaluation, and the state changes of the table in SPEC §4, each with its
//! `auto_pause_events` row and audit event (committed in one transaction by the
//! destination's worker) and the alert that follows.
//!
//! One [`machine::Machine`] per destination holds the state, the ring, the probe and the
//! auth streak; the destination's delivery worker ([`crate::delivery`]) owns it, so one
//! task owns a destination's state: no race between the evaluation, the sends and an
//! operator's pause or resume. [`apply`] is the table of SPEC §4: what each change
//! writes and what its alert says.

pub mod machine;

use std::collections::VecDeque;

use serde_json::json;

pub use crate::audit::Actor;
use crate::audit::{AuditType, Details, NewAuditEvent};
use crate::clock::rfc3339_ms;
use crate::config::{AutoPausePolicy, Destination};
use crate::store::DeliveryOp;
use crate::store::codec::{DestMode, DestState, OutcomeRecord};

/// Auth outcomes in a row that pause a destination at once.
pub const AUTH_STREAK: u32 = 3;

/// The last `sample` attempts, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    size: usize,
    entries: VecDeque<OutcomeRecord>,
}

impl Ring {
    pub fn new(size: u32) -> Self {
        Self {
            size: size.max(1) as usize,
            entries: VecDeque::new(),
        }
    }

    pub fn push(&mut self, o: OutcomeRecord) {
        if self.entries.len() == self.size {
            self.entries.pop_front();
        }
        self.entries.push_back(o);
    }

    /// Errors ÷ attempts over the attempts of the last `window` that are not older
    /// than `since` (a resume starts a fresh window); None below `min_samples`.
    pub fn error_rate(
        &self,
        now_ms: i64,
        window_ms: i64,
        since_ms: i64,
        min_samples: u32,
    ) -> Option<f64> {
        let (mut n, mut errors) = (0u32, 0u32);
        for o in self
            .entries
            .iter()
            .filter(|o| o.at_ms > now_ms - window_ms && o.at_ms >= since_ms)
        {
            n += 1;
            errors += u32::from(o.error);
        }
        (n >= min_samples && n > 0).then(|| f64::from(errors) / f64::from(n))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `error_rate_31.2%`.
pub fn rate_reason(rate: f64) -> String {
    format!("error_rate_{:.1}%", rate * 100.0)
}

/// A rate as the audit chain writes it: a string, `"0.312"` (no floats in details).
pub fn rate_string(rate: f64) -> String {
    let s = format!("{rate:.4}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.')
        .map_or_else(|| s.to_string(), |x| format!("{x}.0"))
}

/// Every state change of SPEC §4.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    RateExceeded {
        rate: f64,
    },
    AuthFailed,
    /// `endpoint_gone` or `api_version_retired`.
    Gone(&'static str),
    ManualPause {
        note: String,
        actor: Actor,
    },
    ProbeFailed {
        rate: f64,
    },
    AutoResume {
        rate: Option<f64>,
    },
    ManualResume {
        note: String,
        actor: Actor,
    },
}

impl Change {
    /// The change as a log field: `rate_exceeded`, `auth_failed`, `endpoint_gone`,
    /// `api_version_retired`, `manual_pause`, `probe_failed`, `auto_resume`,
    /// `manual_resume` (never Rust debug output, never the operator's note).
    pub fn kind(&self) -> &'static str {
        match self {
            Change::RateExceeded { .. } => "rate_exceeded",
            Change::AuthFailed => "auth_failed",
            Change::Gone(reason) => reason,
            Change::ManualPause { .. } => "manual_pause",
            Change::ProbeFailed { .. } => "probe_failed",
            Change::AutoResume { .. } => "auto_resume",
            Change::ManualResume { .. } => "manual_resume",
        }
    }
}

/// Which alert a committed change sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Pause,
    ProbeFailed,
    Resume,
    /// The error rate reached `watch.warn_at` of the threshold (issue 18).
    Warning,
    /// After a warning, the rate fell back below the warning level.
    WarningCleared,
}

impl NoticeKind {
    pub fn name(self) -> &'static str {
        match self {
            NoticeKind::Pause => "pause",
            NoticeKind::ProbeFailed => "probe_failed",
            NoticeKind::Resume => "resume",
            NoticeKind::Warning => "warning",
            NoticeKind::WarningCleared => "warning_cleared",
        }
    }
}

/// What an alert needs to say about a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub merchant_id: String,
    pub destination_id: String,
    pub platform: String,
    pub reason: String,
    pub error_rate: Option<f64>,
    pub threshold: f64,
    pub auto_clear_at_ms: Option<i64>,
    pub at_ms: i64,
    /// Who made the change (`system_worker`, `api_user`, `cli`).
    pub actor: &'static str,
    /// The operator's reason of a manual pause or resume (their own text).
    pub note: Option<String>,
    /// Named figures for the alert (filled in by whoever sends it).
    pub figures: Vec<(String, String)>,
}

/// Applies `change` to `state` and returns the writes that record it (state, row,
/// audit event — to commit together) and the alert to send after the commit.
pub fn apply(
    dest: &Destination,
    state: &mut DestState,
    policy: &AutoPausePolicy,
    change: &Change,
    now_ms: i64,
) -> (Vec<DeliveryOp>, Notice) {
    let clear_h = policy.auto_clear.as_secs() / 3600;
    let (action, row_reason, note, audit_type, actor, rate): (
        &str,
        String,
        Option<String>,
        AuditType,
        Actor,
        Option<f64>,
    ) = match change {
        Change::RateExceeded { rate } => {
            state.mode = DestMode::Paused;
            state.paused_reason = Some(rate_reason(*rate));
            state.paused_at_ms = Some(now_ms);
            state.auto_clear_at_ms = Some(now_ms + policy.auto_clear.as_millis() as i64);
            (
                "pause",
                "rate_threshold_exceeded".into(),
                None,
                AuditType::DestinationPause,
                Actor::System,
                Some(*rate),
            )
        }
        Change::AuthFailed => {
            state.mode = DestMode::Paused;
            state.paused_reason = Some("auth_failed".into());
            state.paused_at_ms = Some(now_ms);
            state.auto_clear_at_ms = None;
            (
                "pause",
                "auth_failed".into(),
                None,
                AuditType::DestinationPause,
                Actor::System,
                None,
            )
        }
        Change::Gone(reason) => {
            state.mode = DestMode::Paused;
            state.paused_reason = Some(reason.to_string());
            state.paused_at_ms = Some(now_ms);
            state.auto_clear_at_ms = None;
            (
                "pause",
                reason.to_string(),
                None,
                AuditType::DestinationPause,
                Actor::System,
                None,
            )
        }
        Change::ManualPause { note, actor } => {
            state.mode = DestMode::Paused;
            state.paused_reason = Some("manual".into());
            state.paused_at_ms = Some(now_ms);
            state.auto_clear_at_ms = None;
            (
                "manual_pause",
                "ops_intervention".into(),
                Some(note.clone()),
                AuditType::DestinationPause,
                *actor,
                None,
            )
        }
        Change::ProbeFailed { rate } => {
            state.mode = DestMode::Paused;
            state.auto_clear_at_ms = Some(now_ms + policy.reprobe.as_millis() as i64);
            (
                "probe_failed",
                "probe_threshold_exceeded".into(),
                None,
                AuditType::DestinationProbeFailed,
                Actor::System,
                Some(*rate),
            )
        }
        Change::AutoResume { rate } => {
            resume(state, now_ms);
            (
                "auto_resume",
                format!("auto_clear_{clear_h}h_window"),
                None,
                AuditType::DestinationResume,
                Actor::System,
                *rate,
            )
        }
        Change::ManualResume { note, actor } => {
            resume(state, now_ms);
            (
                "manual_resume",
                "ops_intervention".into(),
                Some(note.clone()),
                AuditType::DestinationResume,
                *actor,
                None,
            )
        }
    };
    let row = json!({
        "merchant_id": dest.workspace,
        "destination_id": dest.id,
        "platform": dest.platform.name(),
        "action": action,
        "error_rate": rate,
        "reason": row_reason,
        "note": note,
        "created_at": rfc3339_ms(now_ms),
    });
    let details = Details::new()
        .str("destination_id", &dest.id)
        .str("merchant_id", &dest.workspace)
        .str("platform", dest.platform.name())
        .str("reason", row_reason.clone())
        .opt_str("error_rate", rate.map(rate_string))
        .opt_str("note", note.clone());
    let ops = vec![
        DeliveryOp::State {
            dest: dest.id.clone(),
            record: state.clone(),
        },
        DeliveryOp::AutoPauseEvent { row },
        DeliveryOp::Audit(NewAuditEvent::record(
            audit_type, &dest.id, actor, details, now_ms,
        )),
    ];
    let notice = Notice {
        kind: match change {
            Change::ProbeFailed { .. } => NoticeKind::ProbeFailed,
            Change::AutoResume { .. } | Change::ManualResume { .. } => NoticeKind::Resume,
            _ => NoticeKind::Pause,
        },
        merchant_id: dest.workspace.clone(),
        destination_id: dest.id.clone(),
        platform: dest.platform.name().into(),
        reason: state.paused_reason.clone().unwrap_or(row_reason),
        error_rate: rate,
        threshold: policy.threshold,
        auto_clear_at_ms: state.auto_clear_at_ms,
        at_ms: now_ms,
        actor: actor.name(),
        note: note.clone(),
        figures: Vec::new(),
    };
    (ops, notice)
}

fn resume(state: &mut DestState, now_ms: i64) {
    state.mode = DestMode::Active;
    state.paused_reason = None;
    state.paused_at_ms = None;
    state.auto_clear_at_ms = None;
    // A resume starts a fresh window: the rate of the old one no longer describes the
    // destination, and none is known until the new window has enough attempts.
    state.window_start_ms = now_ms;
    state.error_rate = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(at_ms: i64, error: bool) -> OutcomeRecord {
        OutcomeRecord {
            at_ms,
            error,
            status: None,
            latency_ms: 0,
        }
    }

    #[test]
    fn changes_log_as_plain_names() {
        let c = Change::ManualPause {
            note: "x\ny".into(),
            actor: Actor::Cli,
        };
        assert_eq!(c.kind(), "manual_pause");
        assert_eq!(Change::Gone("endpoint_gone").kind(), "endpoint_gone");
        assert_eq!(Change::RateExceeded { rate: 0.3 }.kind(), "rate_exceeded");
    }

    #[test]
    fn rate_over_window_sample_and_floor() {
        let mut r = Ring::new(10);
        for i in 0..20 {
            r.push(o(i * 1000, i % 4 == 0));
        }
        assert_eq!(r.len(), 10);
        // Last 10 attempts (10..19 s): errors at 12 and 16.
        assert_eq!(r.error_rate(20_000, 60_000, 0, 10), Some(0.2));
        // Window of 5 s: attempts after 15 s: 16..19, one error.
        assert_eq!(r.error_rate(20_000, 5_000, 0, 1), Some(0.25));
        assert_eq!(r.error_rate(20_000, 5_000, 0, 5), None);
        // A resume at 18 s: only 18 and 19 count.
        assert_eq!(r.error_rate(20_000, 60_000, 18_000, 1), Some(0.0));
    }

    #[test]
    fn reasons_and_rate_strings() {
        assert_eq!(rate_reason(0.312), "error_rate_31.2%");
        assert_eq!(rate_reason(0.3), "error_rate_30.0%");
        assert_eq!(rate_string(0.312), "0.312");
        assert_eq!(rate_string(0.3), "0.3");
        assert_eq!(rate_string(1.0), "1.0");
        assert_eq!(rate_string(0.0), "0.0");
    }
}
