//! The HTTP channels: Slack incoming webhook, the generic JSON webhook and PagerDuty
//! Events API v2. One JSON POST each; the client follows no redirects.
//!
//! A 2xx answer means sent (PagerDuty answers 202). 408, 425, 429 and 5xx are retried;
//! any other status is final (see the module docs of [`super`]). Errors never carry
//! the URL (reqwest's are stripped of it) and are redacted with the channel's secrets,
//! including the URL's path and query alone, where webhook tokens live.

use serde_json::Value;

use super::{Alert, Failure, error_chain};
use crate::config::{PagerDutyAlert, SlackAlert, WebhookAlert};
use crate::platforms::redact;

/// The secrets of a secret URL: the whole URL, and its path and query on their own.
fn url_secrets(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    if let Ok(u) = reqwest::Url::parse(url) {
        if u.path().len() > 1 {
            out.push(u.path().to_string());
        }
        if let Some(q) = u.query().filter(|q| !q.is_empty()) {
            out.push(q.to_string());
        }
        if !u.password().unwrap_or("").is_empty() {
            out.push(u.password().unwrap_or("").to_string());
        }
    }
    out
}

/// POSTs `body` as JSON; Ok on 2xx.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    what: &str,
    secrets: &[String],
) -> Result<(), Failure> {
    let resp = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| Failure {
            message: redact(
                &format!("{what}: request failed: {}", error_chain(&e.without_url())),
                secrets,
            ),
            retryable: true,
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let code = status.as_u16();
    // A short excerpt of the answer helps the operator (Slack says `invalid_token`,
    // PagerDuty lists the invalid fields); it is redacted like everything else.
    let text = resp.text().await.unwrap_or_default();
    let excerpt: String = text.chars().take(200).collect();
    let excerpt = excerpt.split_whitespace().collect::<Vec<_>>().join(" ");
    let retryable = matches!(code, 408 | 425 | 429) || status.is_server_error();
    let mut message = format!("{what}: HTTP {code}");
    if !excerpt.is_empty() {
        message.push_str(&format!(": {excerpt}"));
    }
    if !retryable {
        message.push_str(" (not retried: the same request would get the same answer)");
    }
    Err(Failure {
        message: redact(&message, secrets),
        retryable,
    })
}

/// A channel that POSTs one JSON body per alert to a URL: Slack's incoming webhook or
/// the generic alert webhook. The URL is a secret (it carries Slack's token).
pub(crate) struct JsonHook {
    url: String,
    secrets: Vec<String>,
    body: fn(&Alert) -> serde_json::Value,
    what: &'static str,
}

impl JsonHook {
    fn new(url: &str, body: fn(&Alert) -> serde_json::Value, what: &'static str) -> Self {
        Self {
            secrets: url_secrets(url),
            url: url.to_string(),
            body,
            what,
        }
    }

    pub fn slack(cfg: &SlackAlert) -> Self {
        Self::new(cfg.webhook_url.expose(), Alert::slack_body, "slack webhook")
    }

    pub fn webhook(cfg: &WebhookAlert) -> Self {
        Self::new(cfg.url.expose(), Alert::webhook_body, "alert webhook")
    }

    pub async fn send(&self, http: &reqwest::Client, alert: &Alert) -> Result<(), Failure> {
        post_json(
            http,
            &self.url,
            &(self.body)(alert),
            self.what,
            &self.secrets,
        )
        .await
    }
}

pub(crate) struct PagerDuty {
    routing_key: String,
    events_url: String,
    secrets: Vec<String>,
}

impl PagerDuty {
    pub fn new(cfg: &PagerDutyAlert) -> Self {
        let routing_key = cfg.routing_key.expose().to_string();
        Self {
            secrets: vec![routing_key.clone()],
            routing_key,
            events_url: cfg.events_url.clone(),
        }
    }

    pub async fn send(&self, http: &reqwest::Client, alert: &Alert) -> Result<(), Failure> {
        post_json(
            http,
            &self.events_url,
            &alert.pagerduty_body(&self.routing_key),
            "pagerduty",
            &self.secrets,
        )
        .await
    }
}
