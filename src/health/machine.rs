//! One destination's health state machine: its persisted state, the outcome ring, the
//! probe under way, the auth streak and the next evaluation. The delivery worker owns
//! one and tells it what happens ([`Machine::on_attempt`], [`Machine::tick`]); the
//! machine answers with the store operations that record it and the [`Change`]s that
//! follow. A change is first planned ([`Machine::plan`]), committed by the worker, and
//! only then accepted ([`Machine::accept`]), so memory never runs ahead of the store.
//!
//! No I/O happens here: every row of the state-change table of SPEC §4 is tested against
//! the machine alone (see the tests at the bottom).

use crate::config::{AutoPausePolicy, Destination};
use crate::store::DeliveryOp;
use crate::store::codec::{DestMode, DestState, OutcomeRecord};

use super::{AUTH_STREAK, Change, Notice, Ring};

/// What an answered request was, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    /// Delivered, or rejected (a data problem, not a pipe failure).
    Success,
    /// Retryable, throttled or gone: an error that does not touch the auth streak.
    Error,
    /// The platform refused the credentials: an error, and one more in the auth streak.
    Auth,
}

/// A probe under way: requests sent, answered, and answered with an error.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Probe {
    pub sent: u32,
    pub answered: u32,
    pub errors: u32,
}

/// What the clock asks of the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    Nothing,
    /// An evaluation under the threshold (or without enough samples): persist its result.
    Persist(Vec<DeliveryOp>),
    /// A state change to plan and commit.
    Change(Change),
}

/// A change worked out but not yet committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    next: DestState,
    /// The writes that record the change (state, `auto_pause_events` row, audit event),
    /// to commit in one transaction.
    pub ops: Vec<DeliveryOp>,
    /// What alerts say once it is committed.
    pub notice: Notice,
    resumes: bool,
}

#[derive(Debug, Clone)]
pub struct Machine {
    state: DestState,
    ring: Ring,
    probe: Option<Probe>,
    auth_streak: u32,
    next_eval: i64,
}

/// Evaluations run on the interval's round times (every 5 minutes on the 5-minute
/// marks), so when one happens does not depend on when the worker started.
pub fn next_evaluation(now: i64, policy: &AutoPausePolicy) -> i64 {
    let every = (policy.interval.as_millis() as i64).max(1);
    (now.div_euclid(every) + 1) * every
}

impl Machine {
    /// A machine from its stored state and ring rows `(slot, outcome)`. A ring stored
    /// with another `sample` is dropped: the second value is then true and the caller
    /// clears the stored ring. A stored probe starts again (its counts were in memory).
    pub fn restore(
        mut state: DestState,
        rows: Vec<(u32, OutcomeRecord)>,
        policy: &AutoPausePolicy,
        now: i64,
    ) -> (Self, bool) {
        let sample = policy.sample;
        let mut ring = Ring::new(sample);
        let mut reset = false;
        if state.ring_size == sample {
            // Attempt order: slot = n % size, the oldest at `attempts`.
            let size = u64::from(sample);
            let mut rows = rows;
            rows.sort_by_key(|(slot, _)| (u64::from(*slot) + size - state.attempts % size) % size);
            for (_, o) in rows {
                ring.push(o);
            }
        } else {
            reset = !rows.is_empty();
            state.ring_size = sample;
            state.attempts = 0;
        }
        let probe = (state.mode == DestMode::Probing).then(Probe::default);
        let m = Machine {
            state,
            ring,
            probe,
            auth_streak: 0,
            next_eval: next_evaluation(now, policy),
        };
        (m, reset)
    }

    pub fn state(&self) -> &DestState {
        &self.state
    }

    pub fn mode(&self) -> DestMode {
        self.state.mode
    }

    pub fn is_paused(&self) -> bool {
        self.state.mode == DestMode::Paused
    }

    pub fn probe(&self) -> Option<&Probe> {
        self.probe
            .as_ref()
            .filter(|_| self.mode() == DestMode::Probing)
    }

    /// Sets who owns the destination (kept so a removed one can still be listed).
    pub fn set_owner(&mut self, workspace: &str, platform: &str) {
        self.state.workspace = workspace.to_string();
        self.state.platform = platform.to_string();
    }

    /// The write that persists the state as it is.
    pub fn state_op(&self, dest: &str) -> DeliveryOp {
        DeliveryOp::State {
            dest: dest.to_string(),
            record: self.state.clone(),
        }
    }

    /// The next time the machine needs the worker.
    pub fn wake_at(&self) -> i64 {
        match self.state.mode {
            DestMode::Active => self.next_eval,
            DestMode::Paused => self.state.auto_clear_at_ms.unwrap_or(i64::MAX),
            DestMode::Probing => i64::MAX,
        }
    }

    /// A reload changed `sample`: a new, empty ring. Returns the writes, if any.
    pub fn resize(&mut self, dest: &str, policy: &AutoPausePolicy) -> Option<Vec<DeliveryOp>> {
        if policy.sample == self.state.ring_size {
            return None;
        }
        self.ring = Ring::new(policy.sample);
        self.state.ring_size = policy.sample;
        self.state.attempts = 0;
        Some(vec![
            DeliveryOp::OutcomesClear {
                dest: dest.to_string(),
            },
            self.state_op(dest),
        ])
    }

    /// The evaluation on its interval while active, and the auto-clear while paused:
    /// with an empty backlog (`backlog_empty`, asked only then) it resumes at once,
    /// otherwise it starts probing.
    pub fn tick(
        &mut self,
        dest: &str,
        policy: &AutoPausePolicy,
        now: i64,
        backlog_empty: impl FnOnce() -> bool,
    ) -> Tick {
        match self.state.mode {
            DestMode::Active if now >= self.next_eval => {
                self.next_eval = next_evaluation(now, policy);
                let rate = self.ring.error_rate(
                    now,
                    policy.window.as_millis() as i64,
                    self.state.window_start_ms,
                    policy.min_samples,
                );
                self.state.last_checked_ms = Some(now);
                if let Some(r) = rate {
                    self.state.error_rate = Some(r);
                }
                match rate {
                    Some(r) if r > policy.threshold => {
                        Tick::Change(Change::RateExceeded { rate: r })
                    }
                    _ => Tick::Persist(vec![self.state_op(dest)]),
                }
            }
            DestMode::Paused if self.state.auto_clear_at_ms.is_some_and(|t| now >= t) => {
                if backlog_empty() {
                    Tick::Change(Change::AutoResume { rate: None })
                } else {
                    self.state.mode = DestMode::Probing;
                    self.probe = Some(Probe::default());
                    Tick::Persist(vec![self.state_op(dest)])
                }
            }
            _ => Tick::Nothing,
        }
    }

    /// Records one answered request: its place in the ring, the probe's count and the
    /// auth streak. Returns the write that persists its ring slot (commit it with
    /// [`Machine::state_op`] taken at commit time) and a change it causes (three auth
    /// refusals in a row, or a 410/426 `gone`).
    pub fn on_attempt(
        &mut self,
        dest: &str,
        o: OutcomeRecord,
        kind: AttemptKind,
        gone: Option<&'static str>,
    ) -> (Vec<DeliveryOp>, Option<Change>) {
        self.ring.push(o);
        let size = u64::from(self.state.ring_size.max(1));
        let slot = (self.state.attempts % size) as u32;
        self.state.attempts += 1;
        // The state (its attempt count) is written by whoever commits this outcome,
        // as it is then: a snapshot taken now could land after a later change.
        let ops = vec![DeliveryOp::Outcome {
            dest: dest.to_string(),
            slot,
            record: o,
        }];
        if let Some(p) = self.probe.as_mut() {
            p.answered += 1;
            p.errors += u32::from(o.error);
        }
        let mut change = None;
        if kind == AttemptKind::Auth {
            self.auth_streak += 1;
            if self.auth_streak >= AUTH_STREAK && !self.is_paused() {
                change = Some(Change::AuthFailed);
            }
        } else {
            self.auth_streak = 0;
        }
        if let Some(reason) = gone
            && !self.is_paused()
        {
            change = Some(Change::Gone(reason));
        }
        (ops, change)
    }

    /// A probe request went out.
    pub fn probe_sent(&mut self) {
        if let Some(p) = self.probe.as_mut() {
            p.sent += 1;
        }
    }

    /// Whether a probe may send another request (one event each).
    pub fn probe_may_send(&self, policy: &AutoPausePolicy) -> bool {
        self.probe().is_none_or(|p| p.sent < policy.probe_requests)
    }

    /// The verdict of a probe once every probe request is answered (or the backlog ran
    /// out, `out_of_events`): resume when its error rate is within the threshold.
    pub fn probe_verdict(&self, policy: &AutoPausePolicy, out_of_events: bool) -> Option<Change> {
        let p = self.probe()?;
        if p.answered < p.sent || (p.sent < policy.probe_requests && !out_of_events) {
            return None;
        }
        if p.sent == 0 {
            // Nothing left to probe with: an empty backlog resumes at once.
            return Some(Change::AutoResume { rate: None });
        }
        let rate = f64::from(p.errors) / f64::from(p.answered);
        Some(if rate <= policy.threshold {
            Change::AutoResume { rate: Some(rate) }
        } else {
            Change::ProbeFailed { rate }
        })
    }

    /// Works out `change`: None when it does not apply in the current state (pausing a
    /// paused destination, resuming an active one, a probe verdict outside a probe).
    pub fn plan(&self, dest: &Destination, change: &Change, now: i64) -> Option<Planned> {
        let mode = self.state.mode;
        let applies = match change {
            Change::RateExceeded { .. }
            | Change::AuthFailed
            | Change::Gone(_)
            | Change::ManualPause { .. } => mode != DestMode::Paused,
            Change::ProbeFailed { .. } => mode == DestMode::Probing,
            Change::AutoResume { .. } | Change::ManualResume { .. } => mode != DestMode::Active,
        };
        if !applies {
            return None;
        }
        let mut next = self.state.clone();
        let (ops, notice) = super::apply(dest, &mut next, &dest.policy.auto_pause, change, now);
        let resumes = next.mode == DestMode::Active;
        Some(Planned {
            next,
            ops,
            notice,
            resumes,
        })
    }

    /// A planned change was committed: it becomes the state. A resume starts a fresh
    /// evaluation window, clears the auth streak and schedules the next evaluation.
    pub fn accept(&mut self, p: Planned, policy: &AutoPausePolicy, now: i64) -> Notice {
        self.state = p.next;
        self.probe = None;
        if p.resumes {
            self.auth_streak = 0;
            self.next_eval = next_evaluation(now, policy);
        }
        p.notice
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Actor, NoticeKind};
    use serde_json::Value;
    use std::time::Duration;

    /// Not on an evaluation mark: the first evaluation comes before five minutes pass.
    const T0: i64 = 1_700_000_012_345;

    fn dest() -> Destination {
        crate::platforms::testkit::dests()[0].clone()
    }

    fn o(at_ms: i64, error: bool) -> OutcomeRecord {
        OutcomeRecord {
            at_ms,
            error,
            status: None,
            latency_ms: 1,
        }
    }

    fn fresh(d: &Destination) -> Machine {
        Machine::restore(DestState::default(), Vec::new(), &d.policy.auto_pause, T0).0
    }

    /// Commits a change as the worker would, returning its writes and notice.
    fn run(m: &mut Machine, d: &Destination, c: Change, now: i64) -> (Vec<DeliveryOp>, Notice) {
        let p = m.plan(d, &c, now).expect("the change applies");
        let ops = p.ops.clone();
        let n = m.accept(p, &d.policy.auto_pause, now);
        (ops, n)
    }

    /// (state, row action, row reason, note, audit type, actor, error rate string).
    fn row(ops: &[DeliveryOp]) -> (DestMode, String, String, Value, String, String, Value) {
        let mut state = None;
        let mut r = None;
        let mut audit = None;
        for op in ops {
            match op {
                DeliveryOp::State { record, .. } => state = Some(record.mode),
                DeliveryOp::AutoPauseEvent { row } => r = Some(row.clone()),
                DeliveryOp::Audit(a) => audit = Some(a.clone()),
                _ => {}
            }
        }
        let (r, a) = (r.expect("row"), audit.expect("audit"));
        assert_eq!(a.details()["reason"], r["reason"]);
        assert_eq!(a.details()["note"], r["note"]);
        (
            state.expect("state"),
            r["action"].as_str().unwrap().to_string(),
            r["reason"].as_str().unwrap().to_string(),
            r["note"].clone(),
            a.event_type().to_string(),
            a.actor().to_string(),
            a.details()["error_rate"].clone(),
        )
    }

    fn errors(m: &mut Machine, n: usize, error: bool, at: i64) {
        for i in 0..n {
            let kind = if error {
                AttemptKind::Error
            } else {
                AttemptKind::Success
            };
            m.on_attempt("meta_main", o(at + i as i64, error), kind, None);
        }
    }

    #[test]
    fn error_rate_row() {
        let d = dest();
        let mut m = fresh(&d);
        errors(&mut m, 7, false, T0);
        errors(&mut m, 3, true, T0 + 10);
        let at = next_evaluation(T0, &d.policy.auto_pause);
        let Tick::Change(c) = m.tick("meta_main", &d.policy.auto_pause, at, || false) else {
            panic!("30% errors over a 25% threshold must pause");
        };
        let (ops, n) = run(&mut m, &d, c, at);
        assert_eq!(
            row(&ops),
            (
                DestMode::Paused,
                "pause".into(),
                "rate_threshold_exceeded".into(),
                Value::Null,
                "destination_pause".into(),
                "system_worker".into(),
                Value::String("0.3".into()),
            )
        );
        assert_eq!(m.state().paused_reason.as_deref(), Some("error_rate_30.0%"));
        assert_eq!(m.state().auto_clear_at_ms, Some(at + 4 * 3_600_000));
        assert_eq!(n.kind, NoticeKind::Pause);
        assert_eq!(m.wake_at(), at + 4 * 3_600_000);
    }

    #[test]
    fn under_threshold_or_too_few_samples_only_persists() {
        let d = dest();
        let mut m = fresh(&d);
        errors(&mut m, 9, true, T0);
        let at = next_evaluation(T0, &d.policy.auto_pause);
        // Nine attempts: below min_samples (10), no verdict.
        assert!(matches!(
            m.tick("meta_main", &d.policy.auto_pause, at, || false),
            Tick::Persist(_)
        ));
        assert_eq!(m.state().last_checked_ms, Some(at));
        assert_eq!(m.state().error_rate, None);
        // Not yet the next mark: nothing.
        assert_eq!(
            m.tick("meta_main", &d.policy.auto_pause, at + 1, || false),
            Tick::Nothing
        );
    }

    #[test]
    fn credentials_row_after_three_auth_refusals() {
        let d = dest();
        let mut m = fresh(&d);
        for i in 0..2 {
            let (_, c) = m.on_attempt("meta_main", o(T0 + i, true), AttemptKind::Auth, None);
            assert_eq!(c, None);
        }
        // A success between breaks the streak.
        m.on_attempt("meta_main", o(T0 + 2, false), AttemptKind::Success, None);
        for i in 0..2 {
            assert_eq!(
                m.on_attempt("meta_main", o(T0 + 3 + i, true), AttemptKind::Auth, None)
                    .1,
                None
            );
        }
        let (_, c) = m.on_attempt("meta_main", o(T0 + 9, true), AttemptKind::Auth, None);
        let (ops, n) = run(&mut m, &d, c.expect("third refusal in a row"), T0 + 9);
        assert_eq!(
            row(&ops),
            (
                DestMode::Paused,
                "pause".into(),
                "auth_failed".into(),
                Value::Null,
                "destination_pause".into(),
                "system_worker".into(),
                Value::Null,
            )
        );
        assert_eq!(m.state().paused_reason.as_deref(), Some("auth_failed"));
        assert_eq!(m.state().auto_clear_at_ms, None);
        assert_eq!(n.kind, NoticeKind::Pause);
    }

    #[test]
    fn gone_rows() {
        for reason in ["endpoint_gone", "api_version_retired"] {
            let d = dest();
            let mut m = fresh(&d);
            let (_, c) = m.on_attempt("meta_main", o(T0, true), AttemptKind::Error, Some(reason));
            let (ops, _) = run(&mut m, &d, c.expect("pauses on the first answer"), T0);
            let r = row(&ops);
            assert_eq!(
                (r.0, r.1.as_str(), r.2.as_str()),
                (DestMode::Paused, "pause", reason)
            );
            assert_eq!(m.state().paused_reason.as_deref(), Some(reason));
            assert_eq!(m.state().auto_clear_at_ms, None);
            // Already paused: a second gone answer changes nothing.
            let (_, again) = m.on_attempt(
                "meta_main",
                o(T0 + 1, true),
                AttemptKind::Error,
                Some(reason),
            );
            assert_eq!(again, None);
        }
    }

    #[test]
    fn manual_pause_row_and_its_refusal_when_paused() {
        let d = dest();
        let mut m = fresh(&d);
        let c = Change::ManualPause {
            note: "INC-42".into(),
            actor: Actor::Cli,
        };
        let (ops, n) = run(&mut m, &d, c.clone(), T0);
        assert_eq!(
            row(&ops),
            (
                DestMode::Paused,
                "manual_pause".into(),
                "ops_intervention".into(),
                Value::String("INC-42".into()),
                "destination_pause".into(),
                "cli".into(),
                Value::Null,
            )
        );
        assert_eq!(m.state().paused_reason.as_deref(), Some("manual"));
        assert_eq!(n.kind, NoticeKind::Pause);
        assert!(m.plan(&d, &c, T0 + 1).is_none(), "already paused");
    }

    /// A rate pause, its auto-clear reached with a backlog: probing.
    fn probing(d: &Destination) -> (Machine, i64) {
        let mut m = fresh(d);
        errors(&mut m, 10, true, T0);
        let at = next_evaluation(T0, &d.policy.auto_pause);
        let Tick::Change(c) = m.tick("meta_main", &d.policy.auto_pause, at, || false) else {
            panic!("pause")
        };
        run(&mut m, d, c, at);
        let clear = m.state().auto_clear_at_ms.unwrap();
        assert_eq!(
            m.tick("meta_main", &d.policy.auto_pause, clear - 1, || false),
            Tick::Nothing
        );
        assert!(matches!(
            m.tick("meta_main", &d.policy.auto_pause, clear, || false),
            Tick::Persist(_)
        ));
        assert_eq!(m.mode(), DestMode::Probing);
        (m, clear)
    }

    #[test]
    fn probe_failed_row() {
        let d = dest();
        let (mut m, clear) = probing(&d);
        let reason_before = m.state().paused_reason.clone();
        for i in 0..5 {
            assert!(m.probe_may_send(&d.policy.auto_pause));
            m.probe_sent();
            assert_eq!(m.probe_verdict(&d.policy.auto_pause, false), None);
            m.on_attempt("meta_main", o(clear + i, i < 2), AttemptKind::Error, None);
        }
        assert!(!m.probe_may_send(&d.policy.auto_pause));
        // 2 errors of 5 = 40% > 25%.
        let c = m.probe_verdict(&d.policy.auto_pause, false).unwrap();
        assert_eq!(c, Change::ProbeFailed { rate: 0.4 });
        let (ops, n) = run(&mut m, &d, c, clear + 10);
        assert_eq!(
            row(&ops),
            (
                DestMode::Paused,
                "probe_failed".into(),
                "probe_threshold_exceeded".into(),
                Value::Null,
                "destination_probe_failed".into(),
                "system_worker".into(),
                Value::String("0.4".into()),
            )
        );
        assert_eq!(m.state().paused_reason, reason_before, "unchanged");
        assert_eq!(m.state().auto_clear_at_ms, Some(clear + 10 + 30 * 60_000));
        assert_eq!(n.kind, NoticeKind::ProbeFailed);
    }

    #[test]
    fn auto_clear_row_after_a_good_probe_and_on_an_empty_backlog() {
        let d = dest();
        let (mut m, clear) = probing(&d);
        for i in 0..5 {
            m.probe_sent();
            m.on_attempt(
                "meta_main",
                o(clear + i, i == 0),
                AttemptKind::Success,
                None,
            );
        }
        let c = m.probe_verdict(&d.policy.auto_pause, false).unwrap();
        assert_eq!(c, Change::AutoResume { rate: Some(0.2) });
        let (ops, n) = run(&mut m, &d, c, clear + 5);
        assert_eq!(
            row(&ops),
            (
                DestMode::Active,
                "auto_resume".into(),
                "auto_clear_4h_window".into(),
                Value::Null,
                "destination_resume".into(),
                "system_worker".into(),
                Value::String("0.2".into()),
            )
        );
        assert_eq!(m.state().paused_reason, None);
        assert_eq!(m.state().window_start_ms, clear + 5, "a fresh window");
        assert_eq!(n.kind, NoticeKind::Resume);

        // An empty backlog at auto-clear resumes at once, without a probe.
        let d = dest();
        let mut m = fresh(&d);
        errors(&mut m, 10, true, T0);
        let at = next_evaluation(T0, &d.policy.auto_pause);
        let Tick::Change(c) = m.tick("meta_main", &d.policy.auto_pause, at, || false) else {
            panic!()
        };
        run(&mut m, &d, c, at);
        let clear = m.state().auto_clear_at_ms.unwrap();
        assert_eq!(
            m.tick("meta_main", &d.policy.auto_pause, clear, || true),
            Tick::Change(Change::AutoResume { rate: None })
        );
        // A probe that ran out of events before sending resumes too.
        let (m, _) = probing(&d);
        assert_eq!(
            m.probe_verdict(&d.policy.auto_pause, true),
            Some(Change::AutoResume { rate: None })
        );
    }

    #[test]
    fn manual_resume_row_from_paused_and_from_probing() {
        let d = dest();
        let (mut m, clear) = probing(&d);
        let c = Change::ManualResume {
            note: "receiver fixed".into(),
            actor: Actor::Api,
        };
        let (ops, n) = run(&mut m, &d, c.clone(), clear + 1);
        assert_eq!(
            row(&ops),
            (
                DestMode::Active,
                "manual_resume".into(),
                "ops_intervention".into(),
                Value::String("receiver fixed".into()),
                "destination_resume".into(),
                "api_user".into(),
                Value::Null,
            )
        );
        assert_eq!(n.kind, NoticeKind::Resume);
        assert!(m.plan(&d, &c, clear + 2).is_none(), "not paused");
        assert!(
            m.plan(&d, &Change::ProbeFailed { rate: 1.0 }, clear + 2)
                .is_none(),
            "no probe"
        );
        // A manual pause is allowed while probing, and ends the probe.
        let (mut m, clear) = probing(&d);
        run(
            &mut m,
            &d,
            Change::ManualPause {
                note: "hold".into(),
                actor: Actor::Api,
            },
            clear + 1,
        );
        assert_eq!(m.mode(), DestMode::Paused);
        assert!(m.probe().is_none());
    }

    #[test]
    fn ring_survives_restore_in_attempt_order_and_resets_on_a_new_sample() {
        let d = dest();
        let mut policy = d.policy.auto_pause.clone();
        policy.sample = 4;
        let mut m = Machine::restore(DestState::default(), Vec::new(), &policy, T0).0;
        assert!(
            m.resize("meta_main", &policy).is_none(),
            "restored at this size"
        );
        let mut rows = Vec::new();
        for i in 0..6 {
            let (ops, _) = m.on_attempt("meta_main", o(T0 + i, i >= 4), AttemptKind::Success, None);
            for op in ops {
                if let DeliveryOp::Outcome { slot, record, .. } = op {
                    rows.retain(|(s, _)| *s != slot);
                    rows.push((slot, record));
                }
            }
        }
        let (again, reset) = Machine::restore(m.state().clone(), rows.clone(), &policy, T0);
        assert!(!reset);
        // The last four attempts, two of them errors.
        assert_eq!(again.ring.error_rate(T0 + 10, 60_000, 0, 4), Some(0.5));
        policy.sample = 8;
        let (again, reset) = Machine::restore(m.state().clone(), rows, &policy, T0);
        assert!(reset);
        assert!(again.ring.is_empty());
        assert_eq!(again.state().ring_size, 8);
        let _ = Duration::ZERO;
    }
}
