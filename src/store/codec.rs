//! Stored value encoding: one format-version byte, then postcard. Free-form JSON
//! (`custom_data`) rides inside as raw JSON bytes. Stored types avoid `untagged`,
//! `flatten` and `skip_serializing_if` (postcard is not self-describing); any change to a
//! stored type bumps its version byte and keeps a decode path for the old one.

use serde::{Deserialize, Serialize};

use crate::event::{NormalizedEvent, PlainField};

/// Current version of [`StoredEvent`].
pub const EVENT_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("stored value is empty")]
    Empty,
    #[error("stored value has unknown format version {0}")]
    UnknownVersion(u8),
    #[error("stored value is truncated")]
    Truncated,
    #[error("stored value is corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
}

/// One event as kept in the `events` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// When sluice accepted it (ms since epoch, UTC).
    pub accepted_ms: i64,
    /// Plaintext identifiers sealed with XChaCha20-Poly1305 (nonce ‖ ciphertext), only for
    /// workspaces with a destination that needs them. `event.plaintext` is always empty.
    pub sealed: Vec<(PlainField, serde_bytes::ByteBuf)>,
    pub event: NormalizedEvent,
}

pub fn encode_event(e: &StoredEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_event_into(e, &mut out);
    out
}

/// Appends the encoded event to `out`.
pub fn encode_event_into(e: &StoredEvent, out: &mut Vec<u8>) {
    out.push(EVENT_V1);
    // Serializing plain owned data into a Vec cannot fail.
    postcard::to_io(e, out).expect("postcard to Vec");
}

pub fn decode_event(bytes: &[u8]) -> Result<StoredEvent, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&EVENT_V1, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&v, _)) => Err(CodecError::UnknownVersion(v)),
    }
}

/// Current version of [`RetryRecord`], [`DlqRecord`] and [`DestState`].
pub const RECORD_V1: u8 = 1;

/// A scheduled retry of one event for one destination (`retries` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryRecord {
    /// Retries already made (0 for a replayed DLQ entry).
    pub retries: u32,
    pub first_seen_ms: i64,
    pub last_attempt_ms: i64,
    pub last_status: Option<u16>,
    /// The event itself when it no longer lives in the log (a replayed DLQ entry).
    pub event_copy: Option<serde_bytes::ByteBuf>,
    /// The DLQ id it had, kept across a replay.
    pub dlq_id: Option<u64>,
}

/// Why an event was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ErrorClass {
    Rejected,
    RetriesExhausted,
    Expired,
    Unsendable,
}

impl ErrorClass {
    /// Every class, in stored order.
    pub const ALL: [ErrorClass; 4] = [
        ErrorClass::Rejected,
        ErrorClass::RetriesExhausted,
        ErrorClass::Expired,
        ErrorClass::Unsendable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Rejected => "rejected",
            ErrorClass::RetriesExhausted => "retries_exhausted",
            ErrorClass::Expired => "expired",
            ErrorClass::Unsendable => "unsendable",
        }
    }

    /// The class of a [`ErrorClass::name`].
    pub fn from_name(name: &str) -> Option<ErrorClass> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One dead-lettered event (`dlq` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqRecord {
    pub workspace: String,
    /// Its log sequence number.
    pub seq: u64,
    /// A copy of the [`StoredEvent`] (encoded), so the log can be trimmed.
    pub event: serde_bytes::ByteBuf,
    pub error_class: ErrorClass,
    pub status: Option<u16>,
    /// First 4 KiB of the platform's answer, secrets and plaintext identifiers redacted.
    pub response_body: String,
    pub retries: u32,
    pub first_seen_ms: i64,
    pub last_attempt_ms: i64,
}

/// The fields of a stored [`DlqRecord`] a count needs, read without copying the event
/// (same field order as [`DlqRecord`]: postcard is positional).
#[derive(Deserialize)]
struct DlqHead<'a> {
    #[serde(borrow)]
    _workspace: &'a str,
    _seq: u64,
    #[serde(borrow)]
    _event: &'a serde_bytes::Bytes,
    error_class: ErrorClass,
    _status: Option<u16>,
    #[serde(borrow)]
    _response_body: &'a str,
    _retries: u32,
    _first_seen_ms: i64,
    last_attempt_ms: i64,
}

/// The class and last-attempt time of an encoded [`DlqRecord`] (for counts over the
/// whole DLQ: the event copy is not decoded).
pub fn dlq_class_and_time(bytes: &[u8]) -> Result<(ErrorClass, i64), CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&RECORD_V1, rest)) => {
            let h: DlqHead<'_> = postcard::from_bytes(rest)?;
            Ok((h.error_class, h.last_attempt_ms))
        }
        Some((&v, _)) => Err(CodecError::UnknownVersion(v)),
    }
}

/// A destination's delivery state (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DestMode {
    #[default]
    Active,
    Paused,
    Probing,
}

impl DestMode {
    pub fn name(self) -> &'static str {
        match self {
            DestMode::Active => "active",
            DestMode::Paused => "paused",
            DestMode::Probing => "probing",
        }
    }
}

/// A destination's persisted state (`dest_state` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DestState {
    /// The destination's workspace and platform, kept so a destination removed from
    /// the config can still be listed and its position still holds back log trimming.
    pub workspace: String,
    pub platform: String,
    pub mode: DestMode,
    /// Set while paused or probing: e.g. `error_rate_31.2%`, `auth_failed`, `manual`.
    pub paused_reason: Option<String>,
    pub paused_at_ms: Option<i64>,
    /// Only for `rate_threshold_exceeded` pauses.
    pub auto_clear_at_ms: Option<i64>,
    /// Attempts before this time no longer count (set by every resume).
    pub window_start_ms: i64,
    pub last_checked_ms: Option<i64>,
    /// The last evaluated error rate (0–1).
    pub error_rate: Option<f64>,
    /// Attempts recorded so far: the next ring slot is `attempts % ring_size`.
    pub attempts: u64,
    /// The `sample` the ring was built with; a different one resets it.
    pub ring_size: u32,
}

/// One attempt in a destination's outcome ring (`outcomes` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub at_ms: i64,
    pub error: bool,
    pub status: Option<u16>,
    pub latency_ms: u32,
}

/// What one request to a platform came to, as its destination's request log keeps it.
/// Stored by position: new variants only ever go at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOutcome {
    /// The platform took every event.
    Delivered,
    /// The platform judged rows on their own and not all were taken (per-row
    /// failures, or named rows rejected while the others are sent again).
    Partial,
    /// The platform refused the request as invalid (a batch without named rows is
    /// then split).
    Rejected,
    /// A retryable answer (5xx, a transient error code).
    Retryable,
    /// The platform's throttle signal.
    Throttled,
    /// The credentials were refused.
    Auth,
    /// The endpoint is gone or the API version retired.
    Gone,
    /// No answer: a connection error or the destination's timeout.
    Transport,
}

impl RequestOutcome {
    pub fn name(self) -> &'static str {
        match self {
            RequestOutcome::Delivered => "delivered",
            RequestOutcome::Partial => "partial",
            RequestOutcome::Rejected => "rejected",
            RequestOutcome::Retryable => "retryable",
            RequestOutcome::Throttled => "throttled",
            RequestOutcome::Auth => "auth",
            RequestOutcome::Gone => "gone",
            RequestOutcome::Transport => "transport",
        }
    }
}

/// One request of a destination's request log (`request_log` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// When the request was sent (ms since epoch, UTC).
    pub sent_ms: i64,
    /// Events the request carried.
    pub events: u32,
    /// The HTTP status; None when there was no answer.
    pub status: Option<u16>,
    pub latency_ms: u32,
    pub outcome: RequestOutcome,
    /// The platform's id of the request, when it gave one.
    pub request_id: Option<String>,
    /// The first KiB of the answer (or the transport error): credentials and plaintext
    /// identifiers replaced by `[redacted]`, hex runs of a SHA-256's length or longer
    /// by `[hashed]`.
    pub excerpt: String,
}

pub fn encode_record<T: Serialize>(r: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(RECORD_V1);
    postcard::to_io(r, &mut out).expect("postcard to Vec");
    out
}

pub fn decode_record<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&RECORD_V1, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&v, _)) => Err(CodecError::UnknownVersion(v)),
    }
}

/// The associated data that binds a sealed identifier to its event.
pub fn pii_aad(workspace: &str, event_name: &str, event_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(workspace.len() + event_name.len() + event_id.len() + 12);
    for part in [workspace, event_name, event_id] {
        aad.extend_from_slice(&(part.len() as u32).to_le_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ClearField, Variant};

    #[test]
    fn roundtrip_and_version() {
        let e = StoredEvent {
            accepted_ms: 1_700_000_000_123,
            sealed: vec![(PlainField::Email, serde_bytes::ByteBuf::from(vec![1, 2, 3]))],
            event: NormalizedEvent {
                event_id: "e1".into(),
                event_name: "Purchase".into(),
                event_time: 1_700_000_000,
                action_source: Some("website".into()),
                event_source_url: None,
                hashed: vec![(Variant::Email, [7u8; 32])],
                clear: vec![(ClearField::Fbp, "fb.1.2".into())],
                plaintext: vec![],
                custom_data: br#"{"value":1.5}"#.to_vec(),
                destinations: vec!["d1".into()],
            },
        };
        let bytes = encode_event(&e);
        assert_eq!(bytes[0], EVENT_V1);
        assert_eq!(decode_event(&bytes).unwrap(), e);
        let mut bad = bytes.clone();
        bad[0] = 99;
        assert!(matches!(
            decode_event(&bad),
            Err(CodecError::UnknownVersion(99))
        ));
        assert!(matches!(decode_event(&[]), Err(CodecError::Empty)));
    }

    #[test]
    fn dlq_class_and_time_reads_the_full_record() {
        let r = DlqRecord {
            workspace: "glasshouse".into(),
            seq: 7,
            event: serde_bytes::ByteBuf::from(vec![1, 2, 3, 255]),
            error_class: ErrorClass::RetriesExhausted,
            status: Some(503),
            response_body: "Service Unavailable".into(),
            retries: 8,
            first_seen_ms: 1_700_000_000_000,
            last_attempt_ms: 1_700_000_255_000,
        };
        let bytes = encode_record(&r);
        assert_eq!(
            dlq_class_and_time(&bytes).unwrap(),
            (ErrorClass::RetriesExhausted, 1_700_000_255_000)
        );
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(matches!(
            dlq_class_and_time(&bad),
            Err(CodecError::UnknownVersion(9))
        ));
        for c in ErrorClass::ALL {
            assert_eq!(ErrorClass::from_name(c.name()), Some(c));
        }
        assert_eq!(ErrorClass::from_name("Rejected"), None);
    }

    #[test]
    fn request_record_roundtrip() {
        let r = RequestRecord {
            sent_ms: 1_700_000_000_000,
            events: 3,
            status: None,
            latency_ms: 10_000,
            outcome: RequestOutcome::Transport,
            request_id: Some("SimTrace1".into()),
            excerpt: "timed out after 10000 ms".into(),
        };
        let bytes = encode_record(&r);
        assert_eq!(decode_record::<RequestRecord>(&bytes).unwrap(), r);
    }
}
