//! The email channel: one plain-text message per alert over SMTP, with `lettre`'s async
//! Tokio transport (no connection pool: alerts are rare, so each attempt connects,
//! optionally upgrades with STARTTLS through rustls, authenticates with PLAIN or LOGIN
//! when both a username and a password are configured, sends and quits).
//!
//! The body is 7-bit when it is ASCII, else quoted-printable, so it passes any relay
//! whether or not it offers 8BITMIME. SMTP transient replies (4yz) and connection
//! errors are retried; permanent replies (5yz: unknown recipient, bad credentials) are
//! reported at once. With `starttls = true` a server that offers no STARTTLS is an
//! error (retried like a connection failure): credentials and mail are never sent in
//! clear. lettre's `hostname` feature is off, so EHLO names `[127.0.0.1]`. The `Date`
//! header comes from the injected clock; the `Message-ID` uses the sender's domain.

use std::time::{Duration, SystemTime};

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{ATTEMPT_TIMEOUT_MS, Alert, Failure, error_chain};
use crate::clock::SharedClock;
use crate::config::EmailAlert;
use crate::platforms::redact;

pub(crate) struct Email {
    host: String,
    port: u16,
    starttls: bool,
    credentials: Option<(String, String)>,
    from: String,
    to: Vec<String>,
    secrets: Vec<String>,
}

impl Email {
    pub fn new(cfg: &EmailAlert) -> Self {
        // Validated as host:port; `[::1]:25` names an IPv6 host.
        let (host, port) = cfg
            .smtp
            .rsplit_once(':')
            .unwrap_or((cfg.smtp.as_str(), "25"));
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let credentials = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.expose().to_string())),
            _ => None,
        };
        Self {
            host,
            port: port.parse().unwrap_or(25),
            starttls: cfg.starttls,
            secrets: cfg
                .password
                .iter()
                .map(|p| p.expose().to_string())
                .collect(),
            credentials,
            from: cfg.from.clone(),
            to: cfg.to.clone(),
        }
    }

    fn fail(&self, message: String, retryable: bool) -> Failure {
        Failure {
            message: redact(&message, &self.secrets),
            retryable,
        }
    }

    fn message(&self, clock: &SharedClock, alert: &Alert) -> Result<Message, Failure> {
        let mailbox = |s: &str| {
            s.parse::<Mailbox>()
                .map_err(|e| self.fail(format!("smtp: bad address {s:?}: {e}"), false))
        };
        let from = mailbox(&self.from)?;
        let mut nonce = [0u8; 8];
        let _ = getrandom::getrandom(&mut nonce);
        let message_id = format!(
            "<sluice.{}.{}@{}>",
            clock.now_ms(),
            hex::encode(nonce),
            from.email.domain()
        );
        let mut b = Message::builder()
            .from(from)
            .message_id(Some(message_id))
            .subject(alert.subject())
            .date(SystemTime::UNIX_EPOCH + Duration::from_millis(clock.now_ms().max(0) as u64))
            .header(ContentType::TEXT_PLAIN);
        for t in &self.to {
            b = b.to(mailbox(t)?);
        }
        let text = alert.text();
        let body = if text.is_ascii() {
            Body::new(text)
        } else {
            Body::new_with_encoding(text, ContentTransferEncoding::QuotedPrintable)
                .map_err(|_| self.fail("smtp: could not encode the body".into(), false))?
        };
        b.body(body)
            .map_err(|e| self.fail(format!("smtp: could not build the message: {e}"), false))
    }

    pub async fn send(&self, clock: &SharedClock, alert: &Alert) -> Result<(), Failure> {
        let message = self.message(clock, alert)?;
        let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.as_str())
            .port(self.port)
            // Backstop on the wall clock; the caller's limit runs on the injected clock.
            .timeout(Some(Duration::from_millis(ATTEMPT_TIMEOUT_MS as u64)));
        if self.starttls {
            let tls = TlsParameters::new(self.host.clone())
                .map_err(|e| self.fail(format!("smtp: TLS setup failed: {e}"), false))?;
            t = t.tls(Tls::Required(tls));
        }
        if let Some((user, password)) = &self.credentials {
            t = t
                .credentials(Credentials::new(user.clone(), password.clone()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        let transport = t.build();
        match transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let retryable = !e.is_permanent();
                Err(self.fail(format!("smtp: {}", error_chain(&e)), retryable))
            }
        }
    }
}
