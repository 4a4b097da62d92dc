//! Platform adapters: how each destination API wants its request built, and how its
//! answers are classified (platforms.md, "Classification", is binding).
//!
//! An adapter is pure: it turns events into an [`HttpRequest`] and an [`HttpResponse`]
//! into a [`Verdict`]. Sending, timeouts, pacing, retries and the DLQ live in
//! [`crate::delivery`], shared by every platform rather than copied per adapter.

use std::collections::BTreeMap;

use crate::config::{Destination, Platform};
use crate::ingest::event::NormalizedEvent;

pub mod klaviyo;
pub mod meta;
pub mod tiktok;
pub mod webhook;

/// One event on its way out: the stored event (with `plaintext` filled in when the
/// destination needs it and the PII key could open it), and whose it is.
#[derive(Debug, Clone, Copy)]
pub struct OutEvent<'a> {
    pub event: &'a NormalizedEvent,
    pub merchant_id: &'a str,
    /// When sluice accepted it (ms).
    pub accepted_ms: i64,
}

/// A request ready to send. Never follow redirects when sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Strings that must never be shown (tokens in the URL, keys in headers): DLQ
    /// entries, errors and logs replace them with `[redacted]`.
    pub secrets: Vec<String>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// SPEC §3's outcome classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    Delivered,
    Retryable,
    /// Hold the whole scope until `hold_ms` from now (None: the 60 s default).
    Throttled {
        hold_ms: Option<i64>,
    },
    Auth,
    Rejected,
    /// `endpoint_gone` or `api_version_retired`: pause the destination at once.
    Gone(&'static str),
}

/// The classification of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every record of the request has this class.
    Whole(Class),
    /// The platform rejected the batch because of these rows (0-based indexes into the
    /// request's events): they go to the DLQ, the others are sent again at once with
    /// unchanged retry counts.
    RowsRejected(Vec<usize>),
    /// A batch of more than one event rejected as invalid without naming rows (Meta):
    /// split it in halves until the bad events are found.
    Bisect,
}

/// A failure to build a request: the event cannot be expressed by this destination or
/// lacks every identifier the platform requires. It goes to the DLQ as `unsendable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable(pub String);

pub trait Adapter: Send + Sync + 'static {
    fn platform(&self) -> Platform;

    /// Whether this destination can send this event at all (event-name mapping,
    /// required identifiers). Called once per event before batching.
    fn check(&self, dest: &Destination, ev: &OutEvent<'_>) -> Result<(), Unsendable>;

    /// The request for a batch of events that passed [`Adapter::check`] (at most the
    /// policy's `max_batch`). `now_ms` is the send time.
    fn build(&self, dest: &Destination, events: &[OutEvent<'_>], now_ms: i64) -> HttpRequest;

    /// Classifies the answer to a request of `n` events.
    fn classify(&self, dest: &Destination, n: usize, resp: &HttpResponse) -> Verdict;
}

/// The adapter of a platform, or None while it has none.
pub fn adapter(p: Platform) -> Option<&'static dyn Adapter> {
    match p {
        Platform::Webhook => Some(&webhook::WEBHOOK),
        Platform::Meta => Some(&meta::META),
        Platform::Tiktok => Some(&tiktok::TIKTOK),
        Platform::Klaviyo => Some(&klaviyo::KLAVIYO),
        _ => None,
    }
}

/// `endpoint` replaces scheme, host and port of `default_url` (for local simulators).
pub fn with_endpoint(default_url: &str, endpoint: Option<&str>) -> String {
    let Some(ep) = endpoint else {
        return default_url.to_string();
    };
    let ep = ep.trim_end_matches('/');
    match default_url.find("://").map(|i| i + 3) {
        Some(start) => {
            let path_at = default_url[start..]
                .find('/')
                .map(|i| start + i)
                .unwrap_or(default_url.len());
            format!("{ep}{}", &default_url[path_at..])
        }
        None => default_url.to_string(),
    }
}

/// The platform event name: the destination's `event_map` first, then the platform's
/// default map, else the canonical name itself.
pub fn map_event_name(dest: &Destination, defaults: &BTreeMap<&str, &str>, name: &str) -> String {
    if let Some(n) = dest.event_map.get(name) {
        return n.clone();
    }
    defaults
        .get(name)
        .map(|s| s.to_string())
        .unwrap_or_else(|| name.to_string())
}

/// `Retry-After` as milliseconds from `now_ms`: delta-seconds or an HTTP date, capped at
/// one hour. None when absent or unreadable.
pub fn retry_after_ms(resp: &HttpResponse, now_ms: i64) -> Option<i64> {
    let v = resp.header("retry-after")?.trim();
    let ms = if let Ok(secs) = v.parse::<i64>() {
        secs.max(0) * 1000
    } else {
        let t =
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
        (t.unix_timestamp() * 1000 - now_ms).max(0)
    };
    Some(ms.min(3_600_000))
}

/// Replaces every secret (and its percent-encoded form) in `text` with `[redacted]`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "[redacted]");
        let enc: String = s
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        if enc != *s {
            out = out.replace(&enc, "[redacted]");
        }
    }
    out
}

// ---- Helpers shared by the adapters ----

/// A hash as platforms want it: lowercase hex.
pub fn hex_hash(h: &[u8; 32]) -> String {
    hex::encode(h)
}

/// The event's `custom_data` as JSON (None when absent or, defensively, unreadable).
pub fn custom_data_json(ev: &NormalizedEvent) -> Option<serde_json::Value> {
    if ev.custom_data.is_empty() {
        return None;
    }
    serde_json::from_slice(&ev.custom_data).ok()
}

/// `Retry-After` in ms, for [`Adapter::classify`], which gets no clock: an HTTP date is
/// measured from the response's own `Date` header (RFC 9110 §10.2.3: the date is
/// relative to the server's clock, which also makes simulators under a manual clock
/// deterministic), else from the system clock.
pub fn retry_after_hint(resp: &HttpResponse) -> Option<i64> {
    let now_ms = resp
        .header("date")
        .and_then(|d| {
            time::OffsetDateTime::parse(d.trim(), &time::format_description::well_known::Rfc2822)
                .ok()
        })
        .map(|t| t.unix_timestamp() * 1000)
        .unwrap_or_else(|| crate::clock::Clock::now_ms(&crate::clock::SystemClock));
    retry_after_ms(resp, now_ms)
}

/// platforms.md "Classification", row "all", which every platform row refines: 2xx
/// delivered, 429 throttled (with `Retry-After`), 401 auth, 408 and 5xx retryable, 3xx
/// retryable (redirects are never followed, SPEC §3), other 4xx rejected. Anything else
/// (1xx) is retryable.
pub fn classify_status_all(resp: &HttpResponse) -> Class {
    match resp.status {
        200..=299 => Class::Delivered,
        429 => Class::Throttled {
            hold_ms: retry_after_hint(resp),
        },
        401 => Class::Auth,
        408 => Class::Retryable,
        400..=499 => Class::Rejected,
        _ => Class::Retryable,
    }
}

/// A JSON POST with the given extra headers.
pub fn json_post(
    url: String,
    content_type: &str,
    headers: Vec<(String, String)>,
    body: &serde_json::Value,
    secrets: Vec<String>,
) -> HttpRequest {
    let mut all = vec![("content-type".to_string(), content_type.to_string())];
    all.extend(headers);
    HttpRequest {
        method: "POST",
        url,
        headers: all,
        body: serde_json::to_vec(body).unwrap_or_default(),
        secrets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_replaces_scheme_host_port() {
        assert_eq!(
            with_endpoint(
                "https://graph.facebook.com/v24.0/1/events",
                Some("http://127.0.0.1:9100/")
            ),
            "http://127.0.0.1:9100/v24.0/1/events"
        );
        assert_eq!(
            with_endpoint("https://a.klaviyo.com/api/events", None),
            "https://a.klaviyo.com/api/events"
        );
    }

    #[test]
    fn retry_after_forms() {
        let r = |v: &str| HttpResponse {
            status: 429,
            headers: vec![("retry-after".into(), v.into())],
            body: vec![],
        };
        assert_eq!(retry_after_ms(&r("7"), 0), Some(7000));
        assert_eq!(retry_after_ms(&r("99999"), 0), Some(3_600_000));
        // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480
        assert_eq!(
            retry_after_ms(&r("Wed, 21 Oct 2015 07:28:00 GMT"), 1_445_412_470_000),
            Some(10_000)
        );
        assert_eq!(retry_after_ms(&r("soon"), 0), None);
    }

    #[test]
    fn redacts_plain_and_encoded() {
        let s = vec!["tok/en+1".to_string()];
        assert_eq!(
            redact("a=tok/en+1&b=tok%2Fen%2B1", &s),
            "a=[redacted]&b=[redacted]"
        );
    }
}
