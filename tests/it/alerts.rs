//! Alert senders against real local receivers: an HTTP server standing in for Slack,
//! the ops webhook and PagerDuty (with scripted failures), and a small SMTP server. The
//! clock is manual, so the 15-minute retry budget runs in milliseconds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::drive_alerter_to_idle;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use base64::Engine as _;
use serde_json::{Value, json};
use sluice::alerts::{Alert, AlertKind, AlertOutcome, Alerter, OutcomeFn};
use sluice::clock::{Clock, ManualClock, SharedClock};
use sluice::config::{AlertsConfig, EmailAlert, PagerDutyAlert, Secret, SlackAlert, WebhookAlert};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// 2026-11-02T12:00:00Z
const T0: i64 = 1_793_620_800_000;

const SLACK_PATH: &str = "/services/T0SLUICE/B0ALERTS/slacktok3nSECRETvalue";
const HOOK_PATH: &str = "/ops/hooks/sluice";
const HOOK_TOKEN: &str = "hooktok3nSECRETvalue";
const PD_PATH: &str = "/v2/enqueue";
const ROUTING_KEY: &str = "R0UTINGkeySECRET0123456789abcdef";
const SMTP_USER: &str = "sluice-mailer";
const SMTP_PASSWORD: &str = "smtpPASSWORDsecret42";

const RESUME: &str = r#"sluice destinations resume --id meta_glasshouse --reason "…""#;

const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------
// HTTP receiver

#[derive(Debug, Clone)]
struct Hit {
    path: String,
    query: Option<String>,
    at_ms: i64,
    body: Value,
}

#[derive(Clone, Copy)]
struct Script {
    /// Answer the first `fail_first` requests with `fail_status`.
    fail_first: u32,
    fail_status: u16,
}

#[derive(Clone)]
struct Receiver {
    clock: Arc<ManualClock>,
    hits: Arc<Mutex<Vec<Hit>>>,
    scripts: Arc<Mutex<HashMap<String, (Script, u32)>>>,
    seen: Arc<tokio::sync::watch::Sender<usize>>,
    addr: SocketAddr,
}

async fn receive(State(r): State<Receiver>, uri: Uri, body: Bytes) -> (StatusCode, String) {
    let path = uri.path().to_string();
    let hit = Hit {
        path: path.clone(),
        query: uri.query().map(str::to_string),
        at_ms: r.clock.now_ms(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let status = {
        let mut s = r.scripts.lock().unwrap();
        match s.get_mut(&path) {
            Some((script, n)) if *n < script.fail_first => {
                *n += 1;
                script.fail_status
            }
            _ if path == PD_PATH => 202,
            _ => 200,
        }
    };
    r.hits.lock().unwrap().push(hit);
    r.seen.send_modify(|n| *n += 1);
    let text = if status == 202 {
        r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#.to_string()
    } else if status >= 300 {
        "upstream unavailable".to_string()
    } else {
        "ok".to_string()
    };
    (StatusCode::from_u16(status).unwrap(), text)
}

impl Receiver {
    async fn start(clock: Arc<ManualClock>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = Receiver {
            clock,
            hits: Arc::default(),
            scripts: Arc::default(),
            seen: Arc::new(tokio::sync::watch::Sender::new(0)),
            addr,
        };
        let app = Router::new().fallback(receive).with_state(r.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        r
    }

    fn script(&self, path: &str, fail_first: u32, fail_status: u16) {
        self.scripts.lock().unwrap().insert(
            path.to_string(),
            (
                Script {
                    fail_first,
                    fail_status,
                },
                0,
            ),
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }
}

// ---------------------------------------------------------------------------------
// SMTP receiver

#[derive(Debug, Clone, Default)]
struct Mail {
    auth: Option<(String, String)>,
    from: String,
    rcpt: Vec<String>,
    data: String,
}

#[derive(Clone)]
struct SmtpServer {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    /// The verb of every command received.
    verbs: Arc<Mutex<Vec<String>>>,
}

impl SmtpServer {
    /// Speaks enough SMTP for one client at a time: greeting, EHLO (8BITMIME, AUTH
    /// PLAIN LOGIN), AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT. With `reject_auth`
    /// every AUTH gets `535`.
    async fn start(reject_auth: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = SmtpServer {
            addr: listener.local_addr().unwrap(),
            mails: Arc::default(),
            verbs: Arc::default(),
        };
        let mails = s.mails.clone();
        let verbs = s.verbs.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let mails = mails.clone();
                let verbs = verbs.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(sock, mails, verbs, reject_auth).await;
                });
            }
        });
        s
    }
}

async fn smtp_session(
    sock: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
    verbs: Arc<Mutex<Vec<String>>>,
    reject_auth: bool,
) -> std::io::Result<()> {
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    wr.write_all(b"220 test.local ESMTP ready\r\n").await?;
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        verbs
            .lock()
            .unwrap()
            .push(upper.split_whitespace().next().unwrap_or("").to_string());
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            wr.write_all(b"250-test.local\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 OK\r\n")
                .await?;
        } else if upper.starts_with("AUTH PLAIN") {
            if reject_auth {
                wr.write_all(b"535 5.7.8 Authentication credentials invalid\r\n")
                    .await?;
                continue;
            }
            let b64 = cmd.split_whitespace().nth(2).unwrap_or("").to_string();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            let parts: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            mail.auth = Some((
                parts.get(1).cloned().unwrap_or_default(),
                parts.get(2).cloned().unwrap_or_default(),
            ));
            wr.write_all(b"235 2.7.0 Authentication successful\r\n")
                .await?;
        } else if upper.starts_with("AUTH") {
            wr.write_all(b"504 5.5.4 only PLAIN here\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = cmd[10..].to_string();
            wr.write_all(b"250 2.1.0 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            mail.rcpt.push(cmd[8..].to_string());
            wr.write_all(b"250 2.1.5 OK\r\n").await?;
        } else if upper == "DATA" {
            wr.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if rd.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                // Undo dot-stuffing.
                let l = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(l);
            }
            mail.data = data;
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            wr.write_all(b"250 2.0.0 queued\r\n").await?;
        } else if upper == "QUIT" {
            wr.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            wr.write_all(b"250 OK\r\n").await?;
        } else {
            wr.write_all(b"502 5.5.2 unknown command\r\n").await?;
        }
    }
}

/// Decodes a quoted-printable body (soft breaks and `=XX`).
fn qp_decode(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 3 <= b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

/// The mail's headers (lowercased names) and decoded body.
fn parse_mail(data: &str) -> (HashMap<String, String>, String) {
    let (head, body) = data.split_once("\r\n\r\n").expect("headers and body");
    let mut headers = HashMap::new();
    let mut last: Option<String> = None;
    for l in head.split("\r\n") {
        if l.starts_with(' ') || l.starts_with('\t') {
            if let Some(k) = &last {
                headers
                    .entry(k.clone())
                    .and_modify(|v: &mut String| v.push_str(l.trim_start()));
            }
            continue;
        }
        let (k, v) = l.split_once(':').expect("header");
        headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
        last = Some(k.to_ascii_lowercase());
    }
    let body = match headers.get("content-transfer-encoding").map(String::as_str) {
        Some("quoted-printable") => qp_decode(body),
        _ => body.replace("\r\n", "\n"),
    };
    (headers, body)
}

// ---------------------------------------------------------------------------------
// Harness

struct Harness {
    clock: Arc<ManualClock>,
    alerter: Alerter,
    outcomes: Arc<Mutex<Vec<(AlertOutcome, i64)>>>,
    outcome_count: tokio::sync::watch::Receiver<usize>,
}

impl Harness {
    fn new(clock: Arc<ManualClock>, cfg: &AlertsConfig) -> Self {
        let outcomes: Arc<Mutex<Vec<(AlertOutcome, i64)>>> = Arc::default();
        let (tx, rx) = tokio::sync::watch::channel(0usize);
        let cb: OutcomeFn = {
            let outcomes = outcomes.clone();
            let clock = clock.clone();
            Arc::new(move |o: AlertOutcome| {
                outcomes.lock().unwrap().push((o, clock.now_ms()));
                tx.send_modify(|n| *n += 1);
            })
        };
        let shared: SharedClock = clock.clone();
        Harness {
            alerter: Alerter::new(cfg, shared, cb),
            clock,
            outcomes,
            outcome_count: rx,
        }
    }

    async fn wait_outcomes(&mut self, n: usize) {
        let mut rx = self.outcome_count.clone();
        if tokio::time::timeout(WAIT, rx.wait_for(|c| *c >= n))
            .await
            .is_err()
        {
            panic!("{n} outcomes expected, got {:?}", self.outcomes());
        }
    }

    fn outcomes(&self) -> Vec<(AlertOutcome, i64)> {
        self.outcomes.lock().unwrap().clone()
    }

    fn outcome(&self, channel: &str) -> (AlertOutcome, i64) {
        let all: Vec<_> = self
            .outcomes()
            .into_iter()
            .filter(|(o, _)| o.channel == channel)
            .collect();
        assert_eq!(all.len(), 1, "one outcome for {channel}: {all:?}");
        all[0].clone()
    }

    /// Moves the clock to each scheduled retry in turn (first checking that nothing
    /// happens a millisecond before it) until every delivery has finished.
    async fn drive_to_idle(&self, rx: Option<&Receiver>) {
        drive_alerter_to_idle(&self.alerter, &self.clock, WAIT, async |next| {
            if let Some(rx) = rx {
                let before = *rx.seen.borrow();
                self.clock.set_ms(next - 1);
                tokio::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(*rx.seen.borrow(), before, "retried before its time");
            }
        })
        .await;
    }
}

fn pause_alert() -> Alert {
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

fn resume_alert() -> Alert {
    Alert {
        kind: AlertKind::Resume,
        error_rate: None,
        auto_clear_at: None,
        reason: "ops_intervention".into(),
        at: "2026-11-02T12:30:00.000Z".into(),
        ..pause_alert()
    }
}

fn all_channels(rx: &Receiver, smtp: SocketAddr) -> AlertsConfig {
    AlertsConfig {
        slack: Some(SlackAlert {
            webhook_url: Secret(rx.url(SLACK_PATH)),
        }),
        email: Some(EmailAlert {
            smtp: smtp.to_string(),
            starttls: false,
            username: Some(SMTP_USER.into()),
            password: Some(Secret(SMTP_PASSWORD.into())),
            from: "sluice@example.com".into(),
            to: vec!["ops@example.com".into(), "oncall@example.com".into()],
        }),
        webhook: Some(WebhookAlert {
            url: Secret(format!("{}?token={HOOK_TOKEN}", rx.url(HOOK_PATH))),
        }),
        pagerduty: Some(PagerDutyAlert {
            routing_key: Secret(ROUTING_KEY.into()),
            events_url: rx.url(PD_PATH),
        }),
        backpressure: None,
    }
}

const SECRETS: [&str; 4] = [
    "slacktok3nSECRETvalue",
    HOOK_TOKEN,
    ROUTING_KEY,
    SMTP_PASSWORD,
];

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} leaks a secret: {text}");
    }
}

fn assert_outcomes_clean(h: &Harness) {
    for (o, _) in h.outcomes() {
        assert_no_secret("outcome error", o.error.as_deref().unwrap_or(""));
    }
}

// ---------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_reaches_all_four_channels_and_resume_resolves_the_incident() {
    let clock = ManualClock::new(T0);
    let rx = Receiver::start(clock.clone()).await;
    let smtp = SmtpServer::start(false).await;
    let mut h = Harness::new(clock.clone(), &all_channels(&rx, smtp.addr));
    assert_eq!(
        h.alerter.channel_names(),
        ["slack", "email", "webhook", "pagerduty"]
    );

    let tasks = h.alerter.dispatch(pause_alert());
    assert_eq!(tasks.len(), 4);
    for t in tasks {
        let o = tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
        assert!(o.ok, "{o:?}");
        assert_eq!(o.attempts, 1);
        assert_eq!(o.alert_kind, "destination_paused");
        assert_eq!(o.destination_id, "meta_glasshouse");
        assert_eq!(o.merchant_id, "glasshouse");
        assert_eq!(o.error, None);
    }
    h.wait_outcomes(4).await;

    let must_say = [
        "glasshouse",
        "meta_glasshouse",
        "meta",
        "31.2%",
        "25%",
        "2026-11-02T16:00:00.000Z",
        RESUME,
    ];

    // Slack
    let slack = rx.hits(SLACK_PATH);
    assert_eq!(slack.len(), 1);
    let text = slack[0].body["text"].as_str().unwrap();
    for s in must_say {
        assert!(text.contains(s), "slack text lacks {s:?}: {text}");
    }
    assert!(text.contains("Error rate:   31.2%"), "{text}");
    assert!(text.contains("Threshold:    25%"), "{text}");
    assert_no_secret("slack text", text);

    // Webhook
    let hook = rx.hits(HOOK_PATH);
    assert_eq!(hook.len(), 1);
    assert_eq!(
        hook[0].query.as_deref(),
        Some(&*format!("token={HOOK_TOKEN}"))
    );
    let b = &hook[0].body;
    for (k, v) in [
        ("type", json!("destination_paused")),
        ("merchant_id", json!("glasshouse")),
        ("destination_id", json!("meta_glasshouse")),
        ("platform", json!("meta")),
        ("error_rate", json!("31.2%")),
        ("threshold", json!("25%")),
        ("auto_clear_at", json!("2026-11-02T16:00:00.000Z")),
        ("reason", json!("error_rate_31.2%")),
        ("resume_command", json!(RESUME)),
        ("at", json!("2026-11-02T12:00:00.000Z")),
    ] {
        assert_eq!(b[k], v, "webhook {k}: {b}");
    }
    assert_no_secret("webhook body", &b.to_string());

    // PagerDuty trigger
    let pd = rx.hits(PD_PATH);
    assert_eq!(pd.len(), 1);
    let b = &pd[0].body;
    assert_eq!(b["routing_key"], ROUTING_KEY);
    assert_eq!(b["event_action"], "trigger");
    assert_eq!(b["dedup_key"], "meta_glasshouse:pause");
    assert_eq!(b["payload"]["source"], "sluice");
    assert_eq!(b["payload"]["severity"], "error");
    let summary = b["payload"]["summary"].as_str().unwrap();
    assert!(summary.contains("meta_glasshouse") && summary.contains("31.2%"));
    let d = &b["payload"]["custom_details"];
    assert_eq!(d["error_rate"], "31.2%");
    assert_eq!(d["threshold"], "25%");
    assert_eq!(d["auto_clear_at"], "2026-11-02T16:00:00.000Z");
    assert_eq!(d["resume_command"], RESUME);
    assert_eq!(d["merchant_id"], "glasshouse");
    assert_eq!(d["platform"], "meta");
    assert_no_secret("pagerduty payload", &b["payload"].to_string());

    // Email
    let mails = smtp.mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(
        m.auth,
        Some((SMTP_USER.to_string(), SMTP_PASSWORD.to_string()))
    );
    assert!(m.from.starts_with("<sluice@example.com>"), "{}", m.from);
    assert_eq!(
        m.rcpt
            .iter()
            .map(|r| r.split_whitespace().next().unwrap())
            .collect::<Vec<_>>(),
        ["<ops@example.com>", "<oncall@example.com>"]
    );
    let (headers, body) = parse_mail(&m.data);
    assert_eq!(
        headers["subject"],
        "[sluice] paused: meta_glasshouse (glasshouse)"
    );
    assert!(headers["content-type"].starts_with("text/plain"));
    assert!(
        headers["message-id"].starts_with("<sluice.1793620800000.")
            && headers["message-id"].ends_with("@example.com>"),
        "{headers:?}"
    );
    assert_eq!(headers["date"], "Mon, 02 Nov 2026 12:00:00 +0000");
    for s in must_say {
        assert!(body.contains(s), "email body lacks {s:?}: {body}");
    }
    assert_no_secret("email", &m.data);

    // Resume: PagerDuty resolves the same incident.
    clock.advance_ms(30 * 60_000);
    for t in h.alerter.dispatch(resume_alert()) {
        assert!(tokio::time::timeout(WAIT, t).await.unwrap().unwrap().ok);
    }
    h.wait_outcomes(8).await;
    let pd = rx.hits(PD_PATH);
    assert_eq!(pd.len(), 2);
    assert_eq!(
        pd[1].body,
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "resolve",
            "dedup_key": "meta_glasshouse:pause",
        })
    );
    let hook = rx.hits(HOOK_PATH);
    assert_eq!(hook[1].body["type"], "destination_resumed");
    assert_eq!(hook[1].body["error_rate"], Value::Null);
    assert_eq!(hook[1].body["auto_clear_at"], Value::Null);
    assert_eq!(hook[1].body["resume_command"], RESUME);
    let text = rx.hits(SLACK_PATH)[1].body["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("Auto-clear:   none"), "{text}");
    assert!(text.contains("Error rate:   none"), "{text}");
    assert!(text.contains(RESUME), "{text}");
    let mails = smtp.mails.lock().unwrap().clone();
    let (headers, _) = parse_mail(&mails[1].data);
    assert_eq!(
        headers["subject"],
        "[sluice] resumed: meta_glasshouse (glasshouse)"
    );
    assert_outcomes_clean(&h);
    h.alerter.idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failure_pause_says_fix_credentials_and_probe_failure_retriggers() {
    let clock = ManualClock::new(T0);
    let rx = Receiver::start(clock.clone()).await;
    let smtp = SmtpServer::start(false).await;
    let mut h = Harness::new(clock.clone(), &all_channels(&rx, smtp.addr));

    h.alerter.send(Alert {
        error_rate: None,
        auto_clear_at: None,
        reason: "auth_failed".into(),
        ..pause_alert()
    });
    h.wait_outcomes(4).await;
    let text = rx.hits(SLACK_PATH)[0].body["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("Fix the destination's credentials first"),
        "{text}"
    );
    assert!(text.contains("Auto-clear:   none"), "{text}");
    assert!(text.contains(RESUME), "{text}");

    h.alerter.send(Alert {
        kind: AlertKind::ProbeFailed,
        ..pause_alert()
    });
    h.wait_outcomes(8).await;
    let pd = rx.hits(PD_PATH);
    assert_eq!(pd[1].body["event_action"], "trigger");
    assert_eq!(pd[1].body["dedup_key"], "meta_glasshouse:pause");
    assert_eq!(
        rx.hits(HOOK_PATH)[1].body["type"],
        "destination_probe_failed"
    );

    // Backpressure uses its own incident per metric, as a warning, and resolves it.
    let bp = |kind| Alert {
        kind,
        error_rate: None,
        auto_clear_at: None,
        reason: "queue_depth_exceeded".into(),
        ..pause_alert()
    };
    h.alerter.send(bp(AlertKind::Backpressure {
        metric: "queue_depth".into(),
        value: "120000".into(),
        limit: "100000".into(),
    }));
    h.wait_outcomes(12).await;
    h.alerter.send(bp(AlertKind::BackpressureResolved {
        metric: "queue_depth".into(),
        value: "70000".into(),
        limit: "100000".into(),
    }));
    h.wait_outcomes(16).await;
    let pd = rx.hits(PD_PATH);
    assert_eq!(pd[2].body["event_action"], "trigger");
    assert_eq!(pd[2].body["dedup_key"], "meta_glasshouse:queue_depth");
    assert_eq!(pd[2].body["payload"]["severity"], "warning");
    assert_eq!(pd[3].body["event_action"], "resolve");
    assert_eq!(pd[3].body["dedup_key"], "meta_glasshouse:queue_depth");
    let hook = rx.hits(HOOK_PATH);
    assert_eq!(hook[2].body["type"], "backpressure");
    assert_eq!(hook[2].body["metric"], "queue_depth");
    assert_eq!(hook[2].body["value"], "120000");
    assert_eq!(hook[2].body["limit"], "100000");
    assert_eq!(hook[2].body["resume_command"], RESUME);
    assert_eq!(hook[3].body["type"], "backpressure_resolved");
    assert!(h.outcomes().iter().all(|(o, _)| o.ok));
}

/// 1, 2, 4, 8, 16, 32, 60, 60, … s after T0, and a last retry at the 15-minute mark.
fn expected_schedule_s() -> Vec<i64> {
    let mut at = vec![0i64];
    let mut delay = 1;
    loop {
        let next = at.last().unwrap() + delay;
        if next >= 900 {
            at.push(900);
            return at;
        }
        at.push(next);
        delay = (delay * 2).min(60);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_is_down_is_retried_on_the_backoff_schedule_then_fails_once() {
    let clock = ManualClock::new(T0);
    let rx = Receiver::start(clock.clone()).await;
    rx.script(PD_PATH, u32::MAX, 503);
    let smtp = SmtpServer::start(false).await;
    let mut h = Harness::new(clock.clone(), &all_channels(&rx, smtp.addr));

    h.alerter.send(pause_alert());
    // The other three deliver at once, with PagerDuty failing and the clock standing.
    h.wait_outcomes(3).await;
    for (o, at) in h.outcomes() {
        assert!(o.ok && o.attempts == 1, "{o:?}");
        assert_eq!(at, T0);
        assert_ne!(o.channel, "pagerduty");
    }
    assert_eq!(smtp.mails.lock().unwrap().len(), 1);

    h.drive_to_idle(Some(&rx)).await;
    h.wait_outcomes(4).await;

    let times: Vec<i64> = rx
        .hits(PD_PATH)
        .iter()
        .map(|hit| (hit.at_ms - T0) / 1000)
        .collect();
    let expected = expected_schedule_s();
    assert_eq!(
        expected,
        [
            0, 1, 3, 7, 15, 31, 63, 123, 183, 243, 303, 363, 423, 483, 543, 603, 663, 723, 783,
            843, 900
        ]
    );
    assert_eq!(times, expected);
    for hit in rx.hits(PD_PATH) {
        assert_eq!(hit.at_ms % 1000, 0, "attempts fall on whole seconds");
    }

    let (o, at) = h.outcome("pagerduty");
    assert!(!o.ok);
    assert_eq!(o.attempts, 21);
    assert_eq!(at, T0 + 900_000, "gives up at the 15-minute mark");
    let err = o.error.unwrap();
    assert!(err.contains("HTTP 503"), "{err}");
    assert_eq!(h.outcomes().len(), 4, "one outcome per channel");
    assert_outcomes_clean(&h);

    // Nothing more happens afterwards.
    clock.advance_ms(3_600_000);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(rx.hits(PD_PATH).len(), 21);
    assert_eq!(h.outcomes().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_channels_give_up_after_15_minutes_without_leaking_secrets() {
    let clock = ManualClock::new(T0);
    let rx = Receiver::start(clock.clone()).await;
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = all_channels(&rx, dead);
    cfg.slack = Some(SlackAlert {
        webhook_url: Secret(format!("http://{dead}{SLACK_PATH}")),
    });
    cfg.webhook = None;
    let mut h = Harness::new(clock.clone(), &cfg);

    h.alerter.send(pause_alert());
    h.wait_outcomes(1).await;
    assert_eq!(h.outcome("pagerduty").0.attempts, 1);
    h.drive_to_idle(None).await;
    h.wait_outcomes(3).await;

    for ch in ["slack", "email"] {
        let (o, at) = h.outcome(ch);
        assert!(!o.ok, "{o:?}");
        assert_eq!(o.attempts, 21, "{o:?}");
        assert_eq!(at, T0 + 900_000);
        let err = o.error.unwrap();
        assert!(!err.is_empty());
        assert_no_secret(ch, &err);
        assert!(!err.contains(SLACK_PATH), "{err}");
    }
    assert!(h.outcome("slack").0.error.unwrap().contains("slack"));
    assert!(h.outcome("email").0.error.unwrap().starts_with("smtp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_fails_twice_then_succeeds_reports_three_attempts() {
    let clock = ManualClock::new(T0);
    let rx = Receiver::start(clock.clone()).await;
    rx.script(HOOK_PATH, 2, 503);
    rx.script(SLACK_PATH, 1, 429);
    let cfg = AlertsConfig {
        webhook: Some(WebhookAlert {
            url: Secret(format!("{}?token={HOOK_TOKEN}", rx.url(HOOK_PATH))),
        }),
        slack: Some(SlackAlert {
            webhook_url: Secret(rx.url(SLACK_PATH)),
        }),
        ..AlertsConfig::default()
    };
    let mut h = Harness::new(clock.clone(), &cfg);
    h.alerter.send(pause_alert());
    h.drive_to_idle(Some(&rx)).await;
    h.wait_outcomes(2).await;

    let (o, at) = h.outcome("webhook");
    assert!(o.ok, "{o:?}");
    assert_eq!(o.attempts, 3);
    assert_eq!(o.error, None);
    assert_eq!(at, T0 + 3_000);
    let times: Vec<i64> = rx.hits(HOOK_PATH).iter().map(|h| h.at_ms - T0).collect();
    assert_eq!(times, [0, 1_000, 3_000]);

    let (o, _) = h.outcome("slack");
    assert!(o.ok && o.attempts == 2, "429 is retried: {o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_rejections_fail_at_once_without_leaking_secrets() {
    let clock = ManualClock::new(T0);
    let rx = Receiver::start(clock.clone()).await;
    rx.script(PD_PATH, u32::MAX, 400);
    rx.script(SLACK_PATH, u32::MAX, 404);
    let smtp = SmtpServer::start(true).await;
    let mut cfg = all_channels(&rx, smtp.addr);
    cfg.webhook = None;
    let mut h = Harness::new(clock.clone(), &cfg);
    h.alerter.send(pause_alert());
    h.wait_outcomes(3).await;
    h.alerter.idle().await;
    for ch in ["pagerduty", "slack", "email"] {
        let (o, at) = h.outcome(ch);
        assert!(!o.ok, "{o:?}");
        assert_eq!(o.attempts, 1, "{o:?}");
        assert_eq!(at, T0);
    }
    assert!(h.outcome("pagerduty").0.error.unwrap().contains("HTTP 400"));
    assert!(h.outcome("slack").0.error.unwrap().contains("HTTP 404"));
    let e = h.outcome("email").0.error.unwrap();
    assert!(e.contains("535"), "{e}");
    assert_eq!(h.alerter.activity().borrow().retries_scheduled, 0);
    assert_outcomes_clean(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_without_an_answer_times_out_on_the_injected_clock() {
    let clock = ManualClock::new(T0);
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (acc_tx, mut acc_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let _ = acc_tx.send(sock);
        }
    });
    let cfg = AlertsConfig {
        webhook: Some(WebhookAlert {
            url: Secret(format!("http://{addr}/hook?token={HOOK_TOKEN}")),
        }),
        ..AlertsConfig::default()
    };
    let mut h = Harness::new(clock.clone(), &cfg);
    h.alerter.send(pause_alert());
    let _held = tokio::time::timeout(WAIT, acc_rx.recv()).await.unwrap();
    clock.advance_ms(9_999);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(h.alerter.activity().borrow().retries_scheduled, 0);
    clock.advance_ms(1);
    let mut act = h.alerter.activity();
    let a = tokio::time::timeout(WAIT, act.wait_for(|a| a.retries_scheduled == 1))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(a.next_retry_at_ms, Some(T0 + 11_000));

    // Shutting down ends the wait with one failed outcome.
    h.alerter.shutdown();
    h.wait_outcomes(1).await;
    let (o, _) = h.outcome("webhook");
    assert!(!o.ok);
    assert_eq!(o.attempts, 1);
    let e = o.error.unwrap();
    assert!(e.contains("no answer within 10 s"), "{e}");
    assert!(e.contains("shutting down"), "{e}");
    h.alerter.idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_applies_to_later_alerts() {
    let clock = ManualClock::new(T0);
    let rx = Receiver::start(clock.clone()).await;
    let mut h = Harness::new(clock.clone(), &AlertsConfig::default());
    assert!(h.alerter.dispatch(pause_alert()).is_empty());

    h.alerter.reconfigure(&AlertsConfig {
        webhook: Some(WebhookAlert {
            url: Secret(rx.url(HOOK_PATH)),
        }),
        ..AlertsConfig::default()
    });
    assert_eq!(h.alerter.channel_names(), ["webhook"]);
    h.alerter.send(pause_alert());
    h.wait_outcomes(1).await;
    assert_eq!(rx.hits(HOOK_PATH).len(), 1);
    assert!(rx.hits(SLACK_PATH).is_empty());
    h.alerter.idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_required_never_falls_back_to_plaintext() {
    let clock = ManualClock::new(T0);
    let rx = Receiver::start(clock.clone()).await;
    // The test server offers no STARTTLS.
    let smtp = SmtpServer::start(false).await;
    let mut cfg = all_channels(&rx, smtp.addr);
    cfg.slack = None;
    cfg.webhook = None;
    cfg.pagerduty = None;
    if let Some(e) = cfg.email.as_mut() {
        e.starttls = true;
    }
    let mut h = Harness::new(clock.clone(), &cfg);
    h.alerter.send(pause_alert());
    h.drive_to_idle(None).await;
    h.wait_outcomes(1).await;
    let (o, _) = h.outcome("email");
    assert!(!o.ok, "{o:?}");
    assert!(
        o.error.as_deref().unwrap_or("").contains("STARTTLS"),
        "{o:?}"
    );
    assert_no_secret("email error", o.error.as_deref().unwrap_or(""));
    assert!(smtp.mails.lock().unwrap().is_empty());
    let verbs = smtp.verbs.lock().unwrap().clone();
    assert!(verbs.iter().any(|v| v == "EHLO"), "{verbs:?}");
    assert!(
        !verbs.iter().any(|v| v == "AUTH" || v == "MAIL"),
        "no credentials or mail in plaintext: {verbs:?}"
    );
}
