//! What an alert says: the plain text shared by email and Slack, the email subject, the
//! structured webhook body and the PagerDuty Events API v2 body (SPEC §5).
//!
//! Everything here is built from the [`Alert`] alone, which never holds a secret; the
//! PagerDuty routing key is added by the sender, outside this module.

use serde_json::{Value, json};

use super::{Alert, AlertKind};

/// The literal placeholder of the resume command (SPEC §9 prints it the same way).
pub const REASON_PLACEHOLDER: &str = "…";

/// PagerDuty's limit on `payload.summary`.
const PD_SUMMARY_MAX: usize = 1024;

impl Alert {
    /// `sluice destinations resume --id <destination> --reason "…"`.
    pub fn resume_command(&self) -> String {
        format!(
            "sluice destinations resume --id {} --reason \"{REASON_PLACEHOLDER}\"",
            self.destination_id
        )
    }

    /// One line: what happened, where.
    pub fn headline(&self) -> String {
        let (d, m, p) = (&self.destination_id, &self.merchant_id, &self.platform);
        match &self.kind {
            AlertKind::Pause => {
                format!("sluice paused destination {d} (merchant {m}, platform {p})")
            }
            AlertKind::ProbeFailed => format!(
                "sluice probe failed: destination {d} stays paused (merchant {m}, platform {p})"
            ),
            AlertKind::Resume => {
                format!("sluice resumed destination {d} (merchant {m}, platform {p})")
            }
            AlertKind::Backpressure {
                metric,
                value,
                limit,
            } => format!(
                "sluice backpressure on destination {d}: {metric} {value} exceeds limit {limit} (merchant {m}, platform {p})"
            ),
            AlertKind::BackpressureResolved {
                metric,
                value,
                limit,
            } => format!(
                "sluice backpressure resolved on destination {d}: {metric} {value} is below 80% of limit {limit} (merchant {m}, platform {p})"
            ),
            AlertKind::ReloadFailed { .. } => {
                "sluice config reload failed: the running configuration stays".to_string()
            }
            AlertKind::Watch(w) => format!("sluice {}: {}", w.name, w.summary),
        }
    }

    /// The email subject, e.g. `[sluice] paused: meta_glasshouse (glasshouse)`.
    pub fn subject(&self) -> String {
        let (d, m) = (&self.destination_id, &self.merchant_id);
        match &self.kind {
            AlertKind::Pause => format!("[sluice] paused: {d} ({m})"),
            AlertKind::ProbeFailed => format!("[sluice] probe failed, still paused: {d} ({m})"),
            AlertKind::Resume => format!("[sluice] resumed: {d} ({m})"),
            AlertKind::Backpressure { metric, .. } => {
                format!("[sluice] backpressure {metric}: {d} ({m})")
            }
            AlertKind::BackpressureResolved { metric, .. } => {
                format!("[sluice] backpressure resolved {metric}: {d} ({m})")
            }
            AlertKind::ReloadFailed { .. } => "[sluice] config reload failed".to_string(),
            AlertKind::Watch(w) => format!("[sluice] {}: {} ({m})", w.name, w.subject),
        }
    }

    /// What the operator should do, ending with the exact resume command.
    pub fn action(&self) -> String {
        let cmd = self.resume_command();
        match &self.kind {
            AlertKind::Resume => {
                format!("Nothing to do. Should it pause again, resume it manually with: {cmd}")
            }
            AlertKind::BackpressureResolved { .. } => {
                format!("Nothing to do. Should the destination be paused, resume it with: {cmd}")
            }
            AlertKind::Watch(w) => w.action.clone(),
            AlertKind::ReloadFailed { .. } => "Fix the config file (sluice config check shows what is wrong), then reload again: sluice reload (or systemctl reload sluice).".to_string(),
            AlertKind::Backpressure { .. } => format!(
                "Check the destination's health (sluice destinations status). If it is paused and the platform is healthy, resume it with: {cmd}"
            ),
            AlertKind::Pause | AlertKind::ProbeFailed => match self.reason.as_str() {
                "auth_failed" => format!(
                    "The platform refused the credentials. Fix the destination's credentials first (update them and reload sluice), then resume: {cmd}"
                ),
                "endpoint_gone" | "api_version_retired" => format!(
                    "The platform no longer serves this endpoint or API version. Fix the destination's endpoint first (update the config and reload sluice), then resume: {cmd}"
                ),
                _ => match &self.auto_clear_at {
                    Some(t) => format!("Auto-clear at {t}, or resume manually: {cmd}"),
                    None => format!("No auto-clear for this pause. Resume manually: {cmd}"),
                },
            },
        }
    }

    /// The plain-text body shared by email and Slack.
    pub fn text(&self) -> String {
        let mut s = self.headline();
        s.push_str("\n\n");
        if let AlertKind::ReloadFailed { error, path } = &self.kind {
            s.push_str(&format!(
                "{:<14}{}\n{:<14}{error}\n{:<14}{}\n\n{}\n",
                "Config:",
                path.as_deref().unwrap_or("-"),
                "Error:",
                "At:",
                self.at,
                self.action()
            ));
            return s;
        }
        if let AlertKind::Watch(w) = &self.kind {
            let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<13} {v}\n"));
            line("Merchant:", &self.merchant_id);
            if !self.destination_id.is_empty() {
                line("Destination:", &self.destination_id);
                line("Platform:", &self.platform);
            }
            line("Watch:", w.watch);
            line("Subject:", &w.subject);
            for (k, v) in &self.figures {
                line(&format!("{k}:"), v);
            }
            line("At:", &self.at);
            s.push('\n');
            s.push_str(&self.action());
            s.push('\n');
            return s;
        }
        let mut line = |k: &str, v: &str| {
            s.push_str(&format!("{k:<13} {v}\n"));
        };
        line("Merchant:", &self.merchant_id);
        line("Destination:", &self.destination_id);
        line("Platform:", &self.platform);
        line("Error rate:", self.error_rate.as_deref().unwrap_or("none"));
        line("Threshold:", &self.threshold);
        line(
            "Auto-clear:",
            self.auto_clear_at.as_deref().unwrap_or("none"),
        );
        line("Reason:", &self.reason);
        if let Some(actor) = &self.actor {
            line("Actor:", actor);
        }
        if let Some(note) = &self.note {
            // One line: the operator's text cannot add lines of its own.
            let one: String = note
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            line("Note:", &one);
        }
        for (k, v) in &self.figures {
            line(&format!("{k}:"), v);
        }
        if let AlertKind::Backpressure {
            metric,
            value,
            limit,
        }
        | AlertKind::BackpressureResolved {
            metric,
            value,
            limit,
        } = &self.kind
        {
            line("Metric:", metric);
            line("Value:", value);
            line("Limit:", limit);
        }
        line("At:", &self.at);
        s.push('\n');
        s.push_str(&self.action());
        s.push('\n');
        s
    }

    /// `figures` as a JSON object (name → value).
    fn figures_object(&self) -> Value {
        Value::Object(
            self.figures
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        )
    }

    /// The fields every structured form carries.
    fn details(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        if let AlertKind::ReloadFailed { error, path } = &self.kind {
            m.insert("path".into(), json!(path));
            m.insert("error".into(), json!(error));
            m.insert("reason".into(), json!(self.reason));
            m.insert("action".into(), json!(self.action()));
            m.insert("at".into(), json!(self.at));
            return m;
        }
        if let AlertKind::Watch(w) = &self.kind {
            m.insert("merchant_id".into(), json!(self.merchant_id));
            m.insert("destination_id".into(), json!(self.destination_id));
            m.insert("platform".into(), json!(self.platform));
            m.insert("watch".into(), json!(w.watch));
            m.insert("subject".into(), json!(w.subject));
            m.insert("resolved".into(), json!(w.resolved));
            m.insert("summary".into(), json!(w.summary));
            m.insert("figures".into(), self.figures_object());
            m.insert("action".into(), json!(self.action()));
            m.insert("at".into(), json!(self.at));
            return m;
        }
        m.insert("merchant_id".into(), json!(self.merchant_id));
        m.insert("destination_id".into(), json!(self.destination_id));
        m.insert("platform".into(), json!(self.platform));
        m.insert("error_rate".into(), json!(self.error_rate));
        m.insert("threshold".into(), json!(self.threshold));
        m.insert("auto_clear_at".into(), json!(self.auto_clear_at));
        m.insert("reason".into(), json!(self.reason));
        m.insert("actor".into(), json!(self.actor));
        m.insert("note".into(), json!(self.note));
        if let AlertKind::Backpressure {
            metric,
            value,
            limit,
        }
        | AlertKind::BackpressureResolved {
            metric,
            value,
            limit,
        } = &self.kind
        {
            m.insert("metric".into(), json!(metric));
            m.insert("value".into(), json!(value));
            m.insert("limit".into(), json!(limit));
        }
        if !self.figures.is_empty() {
            m.insert("figures".into(), self.figures_object());
        }
        m.insert("resume_command".into(), json!(self.resume_command()));
        m.insert("action".into(), json!(self.action()));
        m.insert("at".into(), json!(self.at));
        m
    }

    /// The generic webhook body: `{"type", "merchant_id", …, "resume_command", "at"}`.
    pub fn webhook_body(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!(self.kind.name()));
        m.extend(self.details());
        m.insert("text".into(), json!(self.text()));
        Value::Object(m)
    }

    /// The Slack incoming-webhook body. Slack reads `&`, `<` and `>` as markup, so they
    /// are escaped as its docs ask.
    pub fn slack_body(&self) -> Value {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        json!({ "text": esc(&self.text()) })
    }

    /// `<destination>:pause` for pause, probe failure and resume; `<destination>:<metric>`
    /// for backpressure.
    pub fn dedup_key(&self) -> String {
        match &self.kind {
            AlertKind::Pause | AlertKind::ProbeFailed | AlertKind::Resume => {
                format!("{}:pause", self.destination_id)
            }
            AlertKind::Backpressure { metric, .. }
            | AlertKind::BackpressureResolved { metric, .. } => {
                format!("{}:{metric}", self.destination_id)
            }
            AlertKind::ReloadFailed { .. } => "config:reload".to_string(),
            // One incident per workspace and watch (and what it watches in it).
            AlertKind::Watch(w) if w.subject == self.merchant_id => {
                format!("{}:{}", self.merchant_id, w.watch)
            }
            AlertKind::Watch(w) => format!("{}:{}:{}", self.merchant_id, w.watch, w.subject),
        }
    }

    /// The PagerDuty Events API v2 body: a `trigger` with a payload, or a `resolve` that
    /// carries only the routing key, action and dedup key.
    pub fn pagerduty_body(&self, routing_key: &str) -> Value {
        let dedup_key = self.dedup_key();
        let severity = match &self.kind {
            AlertKind::Pause | AlertKind::ProbeFailed | AlertKind::ReloadFailed { .. } => "error",
            AlertKind::Backpressure { .. } => "warning",
            AlertKind::Watch(w) if !w.resolved => match w.watch {
                "silent_source" | "falling_behind" => "error",
                _ => "warning",
            },
            AlertKind::Resume | AlertKind::BackpressureResolved { .. } | AlertKind::Watch(_) => {
                return json!({
                    "routing_key": routing_key,
                    "event_action": "resolve",
                    "dedup_key": dedup_key,
                });
            }
        };
        let mut summary = self.headline();
        if let Some(rate) = &self.error_rate {
            summary.push_str(&format!(
                ": error rate {rate} > {} threshold",
                self.threshold
            ));
        }
        if summary.len() > PD_SUMMARY_MAX {
            let mut cut = PD_SUMMARY_MAX;
            while !summary.is_char_boundary(cut) {
                cut -= 1;
            }
            summary.truncate(cut);
        }
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": summary,
                "source": "sluice",
                "severity": severity,
                "component": self.destination_id,
                "group": self.merchant_id,
                "class": self.kind.name(),
                "custom_details": Value::Object(self.details()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause() -> Alert {
        Alert {
            kind: AlertKind::Pause,
            merchant_id: "glasshouse".into(),
            destination_id: "meta_glasshouse".into(),
            platform: "meta".into(),
            error_rate: Some("31.2%".into()),
            threshold: "25%".into(),
            auto_clear_at: Some("2026-11-02T16:00:00.000Z".into()),
            reason: "error_rate_31.2%".into(),
            at: "2026-11-02T12:00:00.000Z".into(),
            actor: Some("system_worker".into()),
            note: None,
            figures: Vec::new(),
        }
    }

    #[test]
    fn pause_text_names_everything_and_the_resume_command() {
        assert_eq!(
            pause().text(),
            "sluice paused destination meta_glasshouse (merchant glasshouse, platform meta)

Merchant:     glasshouse
Destination:  meta_glasshouse
Platform:     meta
Error rate:   31.2%
Threshold:    25%
Auto-clear:   2026-11-02T16:00:00.000Z
Reason:       error_rate_31.2%
Actor:        system_worker
At:           2026-11-02T12:00:00.000Z

Auto-clear at 2026-11-02T16:00:00.000Z, or resume manually: \
sluice destinations resume --id meta_glasshouse --reason \"…\"
"
        );
        assert_eq!(
            pause().subject(),
            "[sluice] paused: meta_glasshouse (glasshouse)"
        );
    }

    #[test]
    fn pauses_without_auto_clear_say_what_to_fix() {
        let a = Alert {
            error_rate: None,
            auto_clear_at: None,
            reason: "endpoint_gone".into(),
            ..pause()
        };
        assert!(a.text().contains("Error rate:   none"));
        assert!(a.text().contains("Auto-clear:   none"));
        assert!(a.action().starts_with("The platform no longer serves"));
        let manual = Alert {
            reason: "manual".into(),
            ..a
        };
        assert_eq!(
            manual.action(),
            "No auto-clear for this pause. Resume manually: \
             sluice destinations resume --id meta_glasshouse --reason \"…\""
        );
    }

    #[test]
    fn a_manual_change_names_actor_and_note_in_every_form() {
        let a = Alert {
            kind: AlertKind::Resume,
            error_rate: None,
            auto_clear_at: None,
            reason: "ops_intervention".into(),
            actor: Some("cli".into()),
            note: Some("receiver fixed, INC-42\nforged: line".into()),
            ..pause()
        };
        let text = a.text();
        assert!(text.contains("Actor:        cli\n"), "{text}");
        assert!(
            text.contains("Note:         receiver fixed, INC-42 forged: line\n"),
            "{text}"
        );
        assert!(a.slack_body()["text"].as_str().unwrap().contains("INC-42"));
        let hook = a.webhook_body();
        assert_eq!(hook["actor"], "cli");
        assert_eq!(hook["note"], "receiver fixed, INC-42\nforged: line");
        let pd = Alert {
            kind: AlertKind::Pause,
            ..a
        }
        .pagerduty_body("rk");
        assert_eq!(
            pd["payload"]["custom_details"]["note"],
            "receiver fixed, INC-42\nforged: line"
        );
        assert_eq!(pd["payload"]["custom_details"]["actor"], "cli");
        assert_eq!(
            super::super::bounded_note(&"x".repeat(600)).chars().count(),
            500
        );
    }

    #[test]
    fn slack_escapes_markup_and_pagerduty_summary_is_bounded() {
        let a = Alert {
            reason: "a<b>&c".into(),
            ..pause()
        };
        let t = a.slack_body()["text"].as_str().unwrap().to_string();
        assert!(t.contains("a&lt;b&gt;&amp;c"), "{t}");
        let long = Alert {
            merchant_id: "é".repeat(2000),
            ..pause()
        };
        let b = long.pagerduty_body("rk");
        assert!(b["payload"]["summary"].as_str().unwrap().len() <= 1024);
    }
}
