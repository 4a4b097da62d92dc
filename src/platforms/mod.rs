//! Platform adapters: how each destination API wants its request built, and how its
//! answers are classified (platforms.md, "Classification", is binding).
//!
//! An adapter is pure: it turns events into an [`HttpRequest`] and an [`HttpResponse`]
//! into a [`Verdict`]. Sending, timeouts, pacing, retries and the DLQ live in
//! [`crate::delivery`], shared by every platform rather than copied per adapter.

use std::collections::BTreeMap;

use crate::config::{Destination, Platform};
use crate::event::NormalizedEvent;

pub mod criteo;
pub mod google_ads;
pub mod klaviyo;
pub mod linkedin;
pub mod meta;
pub mod microsoft_ads;
pub mod oauth;
pub mod outbrain;
pub mod pinterest;
pub mod reddit;
pub mod snapchat;
pub mod taboola;
pub mod tiktok;
pub mod webhook;
pub mod x;

mod fields;
mod json;
#[cfg(test)]
pub(crate) mod testkit;

pub use fields::*;
pub use json::*;

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
    /// The request succeeded but the platform judged each row on its own (Google Ads
    /// `partialFailure`, Pinterest's per-event status, Microsoft Ads `PartialErrors`):
    /// one class per event of the request, in order. `Delivered` rows are done,
    /// `Rejected` rows go to the DLQ, any other class is retried with backoff (the
    /// request still counts as a success for the error rate).
    PerRow(Vec<Class>),
    /// A batch of more than one event rejected as invalid without naming rows (Meta):
    /// split it in halves until the bad events are found.
    Bisect,
}

/// A failure to build a request: the event cannot be expressed by this destination or
/// lacks every identifier the platform requires. It goes to the DLQ as `unsendable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable(pub String);

/// Whether a one-off test request to a destination can be marked so that the platform
/// answers as usual but does not count the event (platforms.md, "Test sends").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestMode {
    /// [`Adapter::mark_test`] marks the request with this (e.g. `test_event_code`,
    /// `validateOnly`).
    Marked(&'static str),
    /// The platform has a test mode, but this destination lacks the param it needs.
    NeedsParam(&'static str),
    /// The platform has none: every request it receives counts.
    Unsupported,
}

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

    /// Classifies the answer to the request built from `events`. Platforms that name
    /// failed rows by an id the events carry (Reddit's `invalid_events`) override this
    /// to map them back to row indexes; the others only need the count.
    fn classify_events(
        &self,
        dest: &Destination,
        events: &[OutEvent<'_>],
        resp: &HttpResponse,
    ) -> Verdict {
        self.classify(dest, events.len(), resp)
    }

    /// Whether a test send to this destination can be marked as a test (default: the
    /// platform has no test mode).
    fn test_mode(&self, _dest: &Destination) -> TestMode {
        TestMode::Unsupported
    }

    /// Marks a request [`Adapter::build`] made as a test, when [`Adapter::test_mode`]
    /// says [`TestMode::Marked`]. Only a test send calls it, never live delivery.
    fn mark_test(&self, _dest: &Destination, _req: &mut HttpRequest) {}

    /// The platform's id of this request, where it gives one (what its support asks
    /// for): by default the `request-id` / `x-request-id` response header; Meta's
    /// `fbtrace_id` and TikTok's `request_id` come in the body.
    fn request_id(&self, resp: &HttpResponse) -> Option<String> {
        ["request-id", "x-request-id"]
            .iter()
            .find_map(|h| resp.header(h))
            .and_then(clean_request_id)
    }
}

/// A request id as the platform sent it, if it looks like one: at most 128 printable
/// ASCII characters without spaces or quotes (it is shown in answers, logs and pages).
pub fn clean_request_id(id: &str) -> Option<String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'<' | b'>'));
    ok.then(|| id.to_string())
}

/// A string field of a JSON body (top level, or inside `error` for Graph errors).
pub fn body_request_id(body: &[u8], key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(key)
        .or_else(|| v.get("error").and_then(|e| e.get(key)))
        .and_then(serde_json::Value::as_str)
        .and_then(clean_request_id)
}

/// The adapter of a platform, or None while it has none.
pub fn adapter(p: Platform) -> Option<&'static dyn Adapter> {
    match p {
        Platform::Webhook => Some(&webhook::WEBHOOK),
        Platform::Meta => Some(&meta::META),
        Platform::Tiktok => Some(&tiktok::TIKTOK),
        Platform::Klaviyo => Some(&klaviyo::KLAVIYO),
        Platform::Reddit => Some(&reddit::REDDIT),
        Platform::Taboola => Some(&taboola::TABOOLA),
        Platform::Outbrain => Some(&outbrain::OUTBRAIN),
        Platform::Criteo => Some(&criteo::CRITEO),
        Platform::Linkedin => Some(&linkedin::LINKEDIN),
        Platform::Pinterest => Some(&pinterest::PINTEREST),
        Platform::Snapchat => Some(&snapchat::SNAPCHAT),
        Platform::X => Some(&x::X_ADS),
        Platform::GoogleAds => Some(&google_ads::GOOGLE_ADS),
        Platform::MicrosoftAds => Some(&microsoft_ads::MICROSOFT_ADS),
    }
}

/// Whether `req` can be sent at all: a method, a URL and header values HTTP allows. A
/// value from an event that HTTP cannot carry (a control character in a header) makes
/// the request unbuildable: the data's fault, never the pipe's. The reason names the
/// header, never its value.
pub fn buildable(req: &HttpRequest) -> Result<(), String> {
    reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| "the request method is not valid HTTP".to_string())?;
    reqwest::Url::parse(&req.url).map_err(|_| "the request URL is not valid".to_string())?;
    for (k, v) in &req.headers {
        reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| "a header name is not valid HTTP".to_string())?;
        reqwest::header::HeaderValue::from_str(v).map_err(|_| {
            format!("header {k} would hold characters HTTP does not allow (from the event's data)")
        })?;
    }
    Ok(())
}

/// Sends `req` (never following redirects: that is the client's setting) and reads the
/// whole answer. Transport errors never carry the URL, which may hold a token.
pub async fn execute(http: &reqwest::Client, req: HttpRequest) -> Result<HttpResponse, String> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut rb = http.request(method, &req.url).body(req.body);
    for (k, v) in &req.headers {
        rb = rb.header(k, v);
    }
    let resp = rb.send().await.map_err(|e| {
        // reqwest errors carry the URL, which may carry a token: drop it.
        format!("transport error: {}", e.without_url())
    })?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the response failed: {}", e.without_url()))?
        .to_vec();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
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
                .map_or(default_url.len(), |i| start + i);
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
        .map_or_else(|| name.to_string(), std::string::ToString::to_string)
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

/// Percent-encodes a URL path segment or query value: RFC 3986 unreserved characters
/// kept, every other byte as `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Replaces every secret (and its percent-encoded form) in `text` with `[redacted]`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "[redacted]");
        let enc = percent_encode(s);
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
        .map_or_else(
            || crate::clock::Clock::now_ms(&crate::clock::SystemClock),
            |t| t.unix_timestamp() * 1000,
        );
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

/// A credential of the destination in clear (empty when absent: config validation
/// makes the required ones present). It goes into the request's `secrets`.
pub fn credential(dest: &Destination, key: &str) -> String {
    dest.credentials
        .get(key)
        .map(|s| s.expose().to_string())
        .unwrap_or_default()
}

/// A batch body: `prefix`, each event written by `write` with commas between, `suffix`;
/// allocated once from the events' size hints.
pub fn batch_body(
    prefix: &[u8],
    suffix: &[u8],
    events: &[OutEvent<'_>],
    mut write: impl FnMut(&mut Vec<u8>, &OutEvent<'_>),
) -> Vec<u8> {
    let hint: usize = events.iter().map(|ev| size_hint(ev.event)).sum();
    let mut body = Vec::with_capacity(prefix.len() + suffix.len() + hint);
    body.extend_from_slice(prefix);
    for (i, ev) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write(&mut body, ev);
    }
    body.extend_from_slice(suffix);
    body
}

/// A JSON POST with the given extra headers.
pub fn json_post(
    url: String,
    content_type: &str,
    headers: Vec<(String, String)>,
    body: &serde_json::Value,
    secrets: Vec<String>,
) -> HttpRequest {
    json_post_bytes(
        url,
        content_type,
        headers,
        serde_json::to_vec(body).unwrap_or_default(),
        secrets,
    )
}

/// [`json_post`] with a body already serialized.
pub fn json_post_bytes(
    url: String,
    content_type: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    secrets: Vec<String>,
) -> HttpRequest {
    let mut all = Vec::with_capacity(1 + headers.len());
    all.push(("content-type".to_string(), content_type.to_string()));
    all.extend(headers);
    HttpRequest {
        method: "POST",
        url,
        headers: all,
        body,
        secrets,
    }
}

// ---- Writing request bodies straight into bytes ----
//
// The adapters write their bodies with these instead of building a `serde_json::Value`
// per event: strings and numbers go through serde_json's own serializer (same escaping
// and number formatting as serializing a `Value`), hashes are hex-encoded in place and
// `custom_data` is copied as the raw JSON it is stored as. Objects are written with
// their keys in sorted order, the order serializing a `Value` (a `BTreeMap`) gives, so
// the bytes stay what they were when bodies were built as `Value`s.

/// The event's `custom_data` as raw JSON, borrowed (None when absent or, defensively,
/// unreadable: the same cases in which [`custom_data_json`] gives None).
pub fn custom_data_raw(ev: &NormalizedEvent) -> Option<&serde_json::value::RawValue> {
    if ev.custom_data.is_empty() {
        return None;
    }
    serde_json::from_slice(&ev.custom_data).ok()
}

/// [`map_event_name`] without allocating: the destination's `event_map` first, then
/// `defaults`, else the canonical name itself.
pub fn event_name_for<'a>(
    dest: &'a Destination,
    defaults: &[(&'static str, &'static str)],
    name: &'a str,
) -> &'a str {
    if let Some(n) = dest.event_map.get(name) {
        return n;
    }
    defaults
        .iter()
        .find(|(k, _)| *k == name)
        .map_or(name, |(_, v)| *v)
}

/// Meta's and TikTok's test mode: the destination's `test_event_code` param (from the
/// platform's test-events tool).
pub fn test_event_code_mode(dest: &Destination) -> TestMode {
    match param(dest, "test_event_code") {
        Some(_) => TestMode::Marked("test_event_code"),
        None => TestMode::NeedsParam("test_event_code"),
    }
}

/// Meta's and TikTok's marker: `test_event_code` at the top level of the body.
pub fn mark_test_event_code(dest: &Destination, req: &mut HttpRequest) {
    if let Some(code) = param(dest, "test_event_code") {
        let mut v = Vec::with_capacity(code.len() + 2);
        write_json_str(&mut v, code.trim());
        insert_top_level(&mut req.body, "test_event_code", &v);
    }
}

/// A destination's param when set and not blank.
pub fn param<'a>(dest: &'a Destination, key: &str) -> Option<&'a str> {
    dest.params
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_come_from_the_body_or_a_header_and_only_when_they_look_like_one() {
        let resp = |headers: &[(&str, &str)], body: &str| super::HttpResponse {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        };
        let meta = super::adapter(crate::config::Platform::Meta).unwrap();
        let tiktok = super::adapter(crate::config::Platform::Tiktok).unwrap();
        let hook = super::adapter(crate::config::Platform::Webhook).unwrap();
        let ok = r#"{"events_received":1,"messages":[],"fbtrace_id":"AbC_12-x"}"#;
        assert_eq!(meta.request_id(&resp(&[], ok)).as_deref(), Some("AbC_12-x"));
        let err = r#"{"error":{"message":"m","code":190,"fbtrace_id":"Err9"}}"#;
        assert_eq!(meta.request_id(&resp(&[], err)).as_deref(), Some("Err9"));
        let tt = r#"{"code":0,"message":"OK","request_id":"2026120412","data":{}}"#;
        assert_eq!(
            tiktok.request_id(&resp(&[], tt)).as_deref(),
            Some("2026120412")
        );
        assert_eq!(
            hook.request_id(&resp(&[("x-request-id", "req-1")], ""))
                .as_deref(),
            Some("req-1")
        );
        assert_eq!(
            hook.request_id(&resp(&[("Request-Id", "g-7")], ""))
                .as_deref(),
            Some("g-7")
        );
        // Not an id: spaces, markup, quotes, too long, empty.
        for bad in ["a b", "<script>", "x\"y", &"z".repeat(129), ""] {
            assert_eq!(
                hook.request_id(&resp(&[("x-request-id", bad)], "")),
                None,
                "{bad}"
            );
        }
        assert_eq!(meta.request_id(&resp(&[], "not json")), None);
    }

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
    fn test_markers_go_first_in_an_object() {
        let mut b = br#"{"data":[1]}"#.to_vec();
        insert_top_level(&mut b, "test_event_code", br#""TEST1""#);
        assert_eq!(b, br#"{"test_event_code":"TEST1","data":[1]}"#);
        let mut empty = b"{ }".to_vec();
        insert_top_level(&mut empty, "validateOnly", b"true");
        assert_eq!(empty, br#"{"validateOnly":true }"#);
        let mut not_object = b"[1]".to_vec();
        insert_top_level(&mut not_object, "k", b"1");
        assert_eq!(not_object, b"[1]");
    }

    #[test]
    fn redacts_plain_and_encoded() {
        let s = vec!["tok/en+1".to_string()];
        assert_eq!(
            redact("a=tok/en+1&b=tok%2Fen%2B1", &s),
            "a=[redacted]&b=[redacted]"
        );
    }

    #[test]
    fn custom_data_value_and_currency_rules() {
        use serde_json::json;
        let num = |v| value_number(&v).map(|n| n.to_string());
        let text = |v| value_text(&v);
        assert_eq!(num(json!(12.5)), Some("12.5".into()));
        assert_eq!(num(json!(40)), Some("40".into()));
        assert_eq!(num(json!(" 7.10 ")), Some("7.1".into()));
        assert_eq!(text(json!(" 7.10 ")), Some("7.10".into()));
        assert_eq!(text(json!(40)), Some("40".into()));
        for bad in [json!("twelve"), json!("NaN"), json!("inf"), json!("1e400")] {
            assert_eq!((num(bad.clone()), text(bad)), (None, None));
        }
        for bad in [json!(null), json!(true), json!([1])] {
            assert_eq!((num(bad.clone()), text(bad)), (None, None));
        }
        assert_eq!(currency_text(&json!(" EUR ")), Some("EUR"));
        assert_eq!(currency_text(&json!("  ")), None);
        assert_eq!(currency_text(&json!(5)), None);
    }
}
