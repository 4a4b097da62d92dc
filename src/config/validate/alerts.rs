//! `[alerts]`: the channels (Slack, email, webhook, PagerDuty) with their secrets, and
//! the backpressure limits. A child of `validate`, sharing its key-path errors.

use super::{
    AlertsConfig, Backpressure, Ctx, DAY, DEFAULT_PAGERDUTY_URL, EmailAlert, Forms, PagerDutyAlert,
    R, RawAlerts, SEC, Secret, SlackAlert, WebhookAlert, is_http_url, join, required_secret,
    secret,
};

pub(super) fn alerts(ctx: &Ctx, raw: &RawAlerts) -> R<AlertsConfig> {
    let mut out = AlertsConfig::default();
    if let Some(s) = &raw.slack {
        let url = required_secret(
            ctx,
            "alerts.slack",
            "webhook_url",
            Forms {
                literal: s.webhook_url.as_deref(),
                env: s.webhook_url_env.as_deref(),
                file: s.webhook_url_file.as_deref(),
            },
        )?;
        check_secret_url(
            ctx,
            "alerts.slack",
            "webhook_url",
            &url,
            [&s.webhook_url, &s.webhook_url_env],
        )?;
        out.slack = Some(SlackAlert { webhook_url: url });
    }
    if let Some(e) = &raw.email {
        let p = "alerts.email";
        let smtp_ok = e
            .smtp
            .rsplit_once(':')
            .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0));
        if !smtp_ok {
            return Err(ctx.err(&join(p, "smtp"), "must be host:port, like 127.0.0.1:25"));
        }
        if !e.from.contains('@') {
            return Err(ctx.err(&join(p, "from"), "must be an email address"));
        }
        if e.to.is_empty() {
            return Err(ctx.err(&join(p, "to"), "must list at least one address"));
        }
        for (j, t) in e.to.iter().enumerate() {
            if !t.contains('@') {
                return Err(ctx.err(&format!("{p}.to[{j}]"), "must be an email address"));
            }
        }
        if e.username.as_deref() == Some("") {
            return Err(ctx.err(&join(p, "username"), "must not be empty"));
        }
        let password = secret(
            ctx,
            p,
            "password",
            Forms {
                literal: e.password.as_deref(),
                env: e.password_env.as_deref(),
                file: e.password_file.as_deref(),
            },
            false,
        )?;
        out.email = Some(EmailAlert {
            smtp: e.smtp.clone(),
            starttls: e.starttls.unwrap_or(false),
            username: e.username.clone(),
            password,
            from: e.from.clone(),
            to: e.to.clone(),
        });
    }
    if let Some(w) = &raw.webhook {
        let url = required_secret(
            ctx,
            "alerts.webhook",
            "url",
            Forms {
                literal: w.url.as_deref(),
                env: w.url_env.as_deref(),
                file: w.url_file.as_deref(),
            },
        )?;
        check_secret_url(ctx, "alerts.webhook", "url", &url, [&w.url, &w.url_env])?;
        out.webhook = Some(WebhookAlert { url });
    }
    if let Some(pd) = &raw.pagerduty {
        let p = "alerts.pagerduty";
        let routing_key = required_secret(
            ctx,
            p,
            "routing_key",
            Forms {
                literal: pd.routing_key.as_deref(),
                env: pd.routing_key_env.as_deref(),
                file: pd.routing_key_file.as_deref(),
            },
        )?;
        let events_url = pd
            .events_url
            .clone()
            .unwrap_or_else(|| DEFAULT_PAGERDUTY_URL.to_string());
        if !is_http_url(&events_url) {
            return Err(ctx.err(&join(p, "events_url"), "must be an http:// or https:// URL"));
        }
        out.pagerduty = Some(PagerDutyAlert {
            routing_key,
            events_url,
        });
    }
    if let Some(b) = &raw.backpressure {
        let p = "alerts.backpressure";
        let pos = |k: &str, v: Option<i64>| -> R<Option<u64>> {
            v.map(|v| ctx.int(&join(p, k), v, 1, i64::MAX).map(|v| v as u64))
                .transpose()
        };
        out.backpressure = Some(Backpressure {
            queue_depth: pos("queue_depth", b.queue_depth)?,
            consumer_lag: b
                .consumer_lag
                .as_deref()
                .map(|s| ctx.dur_in(&join(p, "consumer_lag"), s, SEC, 365 * DAY))
                .transpose()?,
            dlq_growth_per_min: pos("dlq_growth_per_min", b.dlq_growth_per_min)?,
        });
    }
    Ok(out)
}

/// A URL secret must be an http(s) URL; the error names the form it came from.
fn check_secret_url(
    ctx: &Ctx,
    table: &str,
    key: &str,
    url: &Secret,
    [lit, env]: [&Option<String>; 2],
) -> R<()> {
    if is_http_url(url.expose()) {
        return Ok(());
    }
    let form = if lit.is_some() {
        key.to_string()
    } else if env.is_some() {
        format!("{key}_env")
    } else {
        format!("{key}_file")
    };
    Err(ctx.err(&join(table, &form), "must be an http:// or https:// URL"))
}
