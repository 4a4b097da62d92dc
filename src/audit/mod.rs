//! The tamper-evident audit chain (SPEC §6).
//!
//! Every operator-visible state change (a pause, a resume, an alert's outcome, a reload,
//! a DLQ replay …) is one [`AuditRecord`], appended by the writer thread with
//! [`append`] in the same write transaction as the change it records, so the two commit
//! or vanish together.
//!
//! # Chain
//!
//! `hash = hex(sha256(prev_hash_bytes ‖ material))`, where `prev_hash_bytes` are the 32
//! raw bytes of the previous record's hash (32 zero bytes for the first record, whose
//! `prev_hash` is 64 zeros) and `material` is the RFC 8785 canonical JSON
//! ([`canonical_json`]) of `{actor, created_at, details, event_id, event_type,
//! resource_id}`. Editing any of those fields, or a `prev_hash`, breaks the chain at that
//! record; [`verify`] finds the first break. Removing records from the *tail* leaves a
//! valid shorter chain, which is why the head ([`head`]) is logged at start and hourly:
//! compare the logged length and hash with a later one.
//!
//! # Storage
//!
//! Table [`AUDIT`]: key = sequence number from 1, contiguous; value = [`RECORD_VERSION`]
//! followed by the record's JSON (`event_id`, `event_type`, `resource_id`, `actor`,
//! `created_at`, `details`, `prev_hash`, `hash`), with `details` written as its canonical
//! JSON byte for byte, so the hash can be recomputed from what is stored.
//!
//! # Ids
//!
//! `event_id` = `ae_` + the sequence as 12 decimal digits + 8 random lowercase hex, e.g.
//! `ae_0000000000429f1c03ab` (record 42): sorting ids sorts by position in the chain, and the
//! random tail keeps ids from two stores (a restored backup, a rebuilt file) apart.
//!
//! # Values
//!
//! `details` is a JSON object whose values are strings, integers within ±2^53, booleans
//! or null (no floats, no nested arrays or objects: SPEC §6). [`NewAuditEvent::new`]
//! checks this, the actor (`system_worker`, `api_user`, `cli`, `console`), the event type (the
//! SPEC §6 list) and the time; build events with it *before* queueing them for the
//! writer. [`append`] checks again as a last line of defence, and refuses an invalid
//! event with an `InvalidInput` I/O error rather than write a record nobody could
//! canonicalize.

mod canonical;

use std::io::Write;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub use canonical::{CanonError, MAX_SAFE_MAGNITUDE, canonical_json};

use crate::clock::rfc3339_ms;

/// The audit chain: sequence (from 1) → [`RECORD_VERSION`] + the record's JSON.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// The first byte of every stored record.
pub const RECORD_VERSION: u8 = 1;

/// The `prev_hash` of the first record, and the head of an empty chain.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The actors SPEC §6 names, and `console` (the web console, issue 16).
pub const ACTORS: &[&str] = &["system_worker", "api_user", "cli", "console"];

/// The event types SPEC §6 names, and `destination_test` (a test send, issue 15).
pub const EVENT_TYPES: &[&str] = &[
    "destination_pause",
    "destination_resume",
    "destination_probe_failed",
    "alert_sent",
    "alert_failed",
    "config_reloaded",
    "config_reload_failed",
    "dlq_replay",
    "dlq_discard",
    "destination_purge",
    "destination_test",
    "console_sign_in_failed",
    "watch_alert",
];

/// The latest time [`rfc3339_ms`] can print: 9999-12-31T23:59:59.999Z.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// An event refused before it reaches the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid audit event: {0}")]
pub struct InvalidAuditEvent(pub String);

impl From<CanonError> for InvalidAuditEvent {
    fn from(e: CanonError) -> Self {
        InvalidAuditEvent(e.0)
    }
}

/// The event types SPEC §6 names, typed (see [`EVENT_TYPES`] for their spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditType {
    DestinationPause,
    DestinationResume,
    DestinationProbeFailed,
    AlertSent,
    AlertFailed,
    ConfigReloaded,
    ConfigReloadFailed,
    DlqReplay,
    DlqDiscard,
    DestinationPurge,
    /// A one-off test send to a destination (`POST /v1/destinations/{id}/test`).
    DestinationTest,
    /// A failed sign-in to the web console (issue 16).
    ConsoleSignInFailed,
    /// A watch fired or resolved (issue 18).
    WatchAlert,
}

impl AuditType {
    pub fn name(self) -> &'static str {
        match self {
            AuditType::DestinationPause => "destination_pause",
            AuditType::DestinationResume => "destination_resume",
            AuditType::DestinationProbeFailed => "destination_probe_failed",
            AuditType::AlertSent => "alert_sent",
            AuditType::AlertFailed => "alert_failed",
            AuditType::ConfigReloaded => "config_reloaded",
            AuditType::ConfigReloadFailed => "config_reload_failed",
            AuditType::DlqReplay => "dlq_replay",
            AuditType::DlqDiscard => "dlq_discard",
            AuditType::DestinationPurge => "destination_purge",
            AuditType::DestinationTest => "destination_test",
            AuditType::ConsoleSignInFailed => "console_sign_in_failed",
            AuditType::WatchAlert => "watch_alert",
        }
    }
}

/// Who made a change: the actors SPEC §6 names (see [`ACTORS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    System,
    Api,
    Cli,
    /// The web console (issue 16).
    Console,
}

impl Actor {
    pub fn name(self) -> &'static str {
        match self {
            Actor::System => "system_worker",
            Actor::Api => "api_user",
            Actor::Cli => "cli",
            Actor::Console => "console",
        }
    }
}

/// The `details` of an event, built only from values the chain accepts: strings,
/// integers within ±2^53 and null.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details(Map<String, Value>);

impl Details {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn str(mut self, key: &str, v: impl Into<String>) -> Self {
        self.0.insert(key.into(), Value::String(v.into()));
        self
    }

    /// A string, or null.
    pub fn opt_str(mut self, key: &str, v: Option<impl Into<String>>) -> Self {
        self.0.insert(
            key.into(),
            v.map_or(Value::Null, |s| Value::String(s.into())),
        );
        self
    }

    /// An integer, clamped to the ±2^53 the chain allows.
    pub fn int(mut self, key: &str, v: i64) -> Self {
        const MAX: i64 = 1 << 53;
        self.0.insert(key.into(), Value::from(v.clamp(-MAX, MAX)));
        self
    }

    /// An integer or null.
    pub fn opt_int(self, key: &str, v: Option<i64>) -> Self {
        match v {
            Some(n) => self.int(key, n),
            None => self.null(key),
        }
    }

    pub fn bool(mut self, key: &str, v: bool) -> Self {
        self.0.insert(key.into(), Value::Bool(v));
        self
    }

    pub fn null(mut self, key: &str) -> Self {
        self.0.insert(key.into(), Value::Null);
        self
    }
}

/// An event to append; the chain assigns its id, hash and link. Built only through
/// [`NewAuditEvent::new`] (checked) or [`NewAuditEvent::record`] (typed, always valid).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    event_type: String,
    resource_id: String,
    actor: String,
    details: Map<String, Value>,
    created_at_ms: i64,
}

impl NewAuditEvent {
    /// Builds an event, refusing what SPEC §6 does not allow (see [`Self::validate`]).
    pub fn new(
        event_type: impl Into<String>,
        resource_id: impl Into<String>,
        actor: impl Into<String>,
        details: Map<String, Value>,
        created_at_ms: i64,
    ) -> Result<Self, InvalidAuditEvent> {
        let ev = NewAuditEvent {
            event_type: event_type.into(),
            resource_id: resource_id.into(),
            actor: actor.into(),
            details,
            created_at_ms,
        };
        ev.validate()?;
        Ok(ev)
    }

    /// An event of a known type and actor with typed details: valid by construction
    /// (`at_ms` is clamped into 1970..=9999).
    pub fn record(
        event_type: AuditType,
        resource_id: impl Into<String>,
        actor: Actor,
        details: Details,
        at_ms: i64,
    ) -> Self {
        NewAuditEvent {
            event_type: event_type.name().into(),
            resource_id: resource_id.into(),
            actor: actor.name().into(),
            details: details.0,
            created_at_ms: at_ms.clamp(0, MAX_TIME_MS),
        }
    }

    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }

    pub fn created_at_ms(&self) -> i64 {
        self.created_at_ms
    }

    /// The event type and actor are ones SPEC §6 names; `created_at_ms` lies in
    /// 1970..=9999; every `details` value is a string, an integer within ±2^53, a
    /// boolean or null (floats are refused: write rates as strings like `"0.312"`).
    pub fn validate(&self) -> Result<(), InvalidAuditEvent> {
        if !EVENT_TYPES.contains(&self.event_type.as_str()) {
            return Err(InvalidAuditEvent(format!(
                "event_type {:?} is not one of {}",
                self.event_type,
                EVENT_TYPES.join(", ")
            )));
        }
        if !ACTORS.contains(&self.actor.as_str()) {
            return Err(InvalidAuditEvent(format!(
                "actor {:?} is not one of {}",
                self.actor,
                ACTORS.join(", ")
            )));
        }
        if !(0..=MAX_TIME_MS).contains(&self.created_at_ms) {
            return Err(InvalidAuditEvent(format!(
                "created_at_ms {} is outside 1970..=9999",
                self.created_at_ms
            )));
        }
        validate_details(&self.details)
    }
}

/// Checks a `details` object against SPEC §6 (see [`NewAuditEvent::validate`]).
pub fn validate_details(details: &Map<String, Value>) -> Result<(), InvalidAuditEvent> {
    for (k, v) in details {
        match v {
            Value::Null | Value::Bool(_) | Value::String(_) => {}
            Value::Number(n) => canonical::check_number(n, &format!("details.{k}"))?,
            Value::Array(_) | Value::Object(_) => {
                return Err(InvalidAuditEvent(format!(
                    "details.{k} is an array or object; details values are strings, integers, booleans or null"
                )));
            }
        }
    }
    Ok(())
}

/// One record of the chain, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub event_id: String,
    pub event_type: String,
    pub resource_id: String,
    pub actor: String,
    pub details: Value,
    pub created_at: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// Every field, as the list and export routes show it.
    pub fn to_json(&self) -> Value {
        json!({
            "event_id": self.event_id,
            "event_type": self.event_type,
            "resource_id": self.resource_id,
            "actor": self.actor,
            "details": self.details,
            "created_at": self.created_at,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        })
    }

    /// The canonical JSON the hash covers: `{actor, created_at, details, event_id,
    /// event_type, resource_id}`.
    pub fn material(&self) -> Result<String, CanonError> {
        canonical_json(&json!({
            "actor": self.actor,
            "created_at": self.created_at,
            "details": self.details,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "resource_id": self.resource_id,
        }))
    }

    /// The hash this record should carry given its fields and its `prev_hash`.
    pub fn expected_hash(&self) -> Result<String, CanonError> {
        chain_hash(&self.prev_hash, &self.material()?)
    }
}

/// `hex(sha256(prev_hash_bytes ‖ material))`; fails if `prev_hash` is not 64 hex digits.
pub fn chain_hash(prev_hash: &str, material: &str) -> Result<String, CanonError> {
    let prev: [u8; 32] = hex::decode(prev_hash)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| CanonError(format!("prev_hash {prev_hash:?} is not 64 hex digits")))?;
    let mut h = Sha256::new();
    h.update(prev);
    h.update(material.as_bytes());
    Ok(hex::encode(h.finalize()))
}

/// The stored form: like [`AuditRecord`] but `details` kept as its exact canonical bytes.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    event_id: String,
    event_type: String,
    resource_id: String,
    actor: String,
    #[serde(borrow)]
    details: &'a RawValue,
    created_at: String,
    prev_hash: String,
    hash: String,
}

/// The bytes stored for `rec`: [`RECORD_VERSION`] + JSON with canonical `details`.
pub fn encode_record(rec: &AuditRecord) -> Result<Vec<u8>, CanonError> {
    let details = canonical_json(&rec.details)?;
    let raw = RawValue::from_string(details).map_err(|e| CanonError(e.to_string()))?;
    let stored = Stored {
        event_id: rec.event_id.clone(),
        event_type: rec.event_type.clone(),
        resource_id: rec.resource_id.clone(),
        actor: rec.actor.clone(),
        details: &raw,
        created_at: rec.created_at.clone(),
        prev_hash: rec.prev_hash.clone(),
        hash: rec.hash.clone(),
    };
    let mut out = vec![RECORD_VERSION];
    serde_json::to_writer(&mut out, &stored).map_err(|e| CanonError(e.to_string()))?;
    Ok(out)
}

/// Reads stored bytes back; `None` when they are not a record this build can read.
pub fn decode_record(bytes: &[u8]) -> Option<AuditRecord> {
    let (&version, body) = bytes.split_first()?;
    if version != RECORD_VERSION {
        return None;
    }
    let s: Stored = serde_json::from_slice(body).ok()?;
    Some(AuditRecord {
        details: serde_json::from_str(s.details.get()).ok()?,
        event_id: s.event_id,
        event_type: s.event_type,
        resource_id: s.resource_id,
        actor: s.actor,
        created_at: s.created_at,
        prev_hash: s.prev_hash,
        hash: s.hash,
    })
}

fn invalid_input(msg: String) -> redb::Error {
    redb::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg))
}

fn unreadable(seq: u64) -> redb::Error {
    redb::Error::Corrupted(format!("audit record {seq} is unreadable"))
}

/// Appends `ev` at the end of the chain, inside `txn` (the caller's write transaction,
/// which also holds the change the event records). Assigns the id (see the module doc)
/// and the link; returns the record as stored.
///
/// Errors: the store's; an `InvalidInput` I/O error for an event
/// [`NewAuditEvent::validate`] refuses; `Corrupted` when the last record cannot be read
/// (there is no hash to link to).
pub fn append(
    txn: &redb::WriteTransaction,
    ev: &NewAuditEvent,
) -> Result<AuditRecord, redb::Error> {
    append_inner(txn, ev, None)
}

/// [`append`] with a caller-chosen `event_id` (imports, tests with fixed vectors). The id
/// must not be empty; its uniqueness is the caller's business.
pub fn append_with_id(
    txn: &redb::WriteTransaction,
    event_id: &str,
    ev: &NewAuditEvent,
) -> Result<AuditRecord, redb::Error> {
    if event_id.is_empty() {
        return Err(invalid_input("an audit event_id cannot be empty".into()));
    }
    append_inner(txn, ev, Some(event_id))
}

fn append_inner(
    txn: &redb::WriteTransaction,
    ev: &NewAuditEvent,
    event_id: Option<&str>,
) -> Result<AuditRecord, redb::Error> {
    ev.validate().map_err(|e| invalid_input(e.to_string()))?;
    let mut table = txn.open_table(AUDIT)?;
    let (last_seq, prev_hash) = match table.last()? {
        None => (0, ZERO_HASH.to_string()),
        Some((k, v)) => {
            let seq = k.value();
            let rec = decode_record(v.value()).ok_or_else(|| unreadable(seq))?;
            (seq, rec.hash)
        }
    };
    let seq = last_seq + 1;
    let event_id = match event_id {
        Some(id) => id.to_string(),
        None => new_event_id(seq),
    };
    let mut rec = AuditRecord {
        event_id,
        event_type: ev.event_type.clone(),
        resource_id: ev.resource_id.clone(),
        actor: ev.actor.clone(),
        details: Value::Object(ev.details.clone()),
        created_at: rfc3339_ms(ev.created_at_ms),
        prev_hash,
        hash: String::new(),
    };
    rec.hash = rec
        .expected_hash()
        .map_err(|e| invalid_input(e.to_string()))?;
    let bytes = encode_record(&rec).map_err(|e| invalid_input(e.to_string()))?;
    table.insert(seq, bytes.as_slice())?;
    Ok(rec)
}

/// `ae_` + 12-digit sequence + 8 random hex digits.
fn new_event_id(seq: u64) -> String {
    let mut r = [0u8; 4];
    if getrandom::getrandom(&mut r).is_err() {
        // No entropy source: the sequence alone still makes the id unique in this file.
        r = [0; 4];
    }
    format!("ae_{seq:012}{}", hex::encode(r))
}

/// Opens the table in a read transaction; `None` when no event was ever appended.
fn open_read(
    txn: &redb::ReadTransaction,
) -> Result<Option<redb::ReadOnlyTable<u64, &'static [u8]>>, redb::Error> {
    match txn.open_table(AUDIT) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The chain's length (its last sequence number, which equals the number of records
/// while the chain is intact) and its head hash (64 zeros when empty). `Corrupted` when
/// the last record cannot be read.
pub fn head(txn: &redb::ReadTransaction) -> Result<(u64, String), redb::Error> {
    let Some(table) = open_read(txn)? else {
        return Ok((0, ZERO_HASH.to_string()));
    };
    match table.last()? {
        None => Ok((0, ZERO_HASH.to_string())),
        Some((k, v)) => {
            let seq = k.value();
            let rec = decode_record(v.value()).ok_or_else(|| unreadable(seq))?;
            Ok((seq, rec.hash))
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Every record's hash matches its fields and links to the one before.
    Ok { length: u64, head: String },
    /// The first record (in chain order) that does not check out. `length` is the number
    /// of records stored.
    Broken {
        length: u64,
        broken_at: String,
        reason: String,
    },
}

impl Verify {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verify::Ok { .. })
    }

    /// The body of `GET /v1/audit/verify`.
    pub fn to_json(&self) -> Value {
        match self {
            Verify::Ok { length, head } => json!({"ok": true, "length": length, "head": head}),
            Verify::Broken {
                length,
                broken_at,
                reason,
            } => json!({"ok": false, "length": length, "broken_at": broken_at, "reason": reason}),
        }
    }
}

/// Walks the chain from the start, recomputing every hash from the stored fields and
/// checking every link. The first problem wins:
/// - `unreadable record`: the bytes are not a record; `broken_at` is `seq:<n>` when not
///   even an id can be read.
/// - `sequence gap after <id>`: records are missing before this one (`broken_at` is the
///   record *after* the gap; `<id>` the last one before it). A gap at the very start
///   reads `sequence gap at the start of the chain`.
/// - `prev_hash does not match the previous event`: the link is wrong.
/// - `hash mismatch`: the fields (or the stored hash) were changed.
///
/// A truncated tail is *not* detectable here: compare the length and head with a logged
/// head instead.
pub fn verify(txn: &redb::ReadTransaction) -> Result<Verify, redb::Error> {
    let Some(table) = open_read(txn)? else {
        return Ok(Verify::Ok {
            length: 0,
            head: ZERO_HASH.to_string(),
        });
    };
    let length = table.len()?;
    let broken = |broken_at: String, reason: String| {
        Ok(Verify::Broken {
            length,
            broken_at,
            reason,
        })
    };
    let mut prev: Option<(u64, String, String)> = None; // (seq, event_id, hash)
    for row in table.iter()? {
        let (k, v) = row?;
        let seq = k.value();
        let Some(rec) = decode_record(v.value()) else {
            let id = serde_json::from_slice::<Value>(v.value().get(1..).unwrap_or_default())
                .ok()
                .and_then(|j| j["event_id"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("seq:{seq}"));
            return broken(id, "unreadable record".into());
        };
        let (expected_seq, expected_prev) = match &prev {
            None => (1, ZERO_HASH),
            Some((s, _, h)) => (s + 1, h.as_str()),
        };
        if seq != expected_seq {
            let reason = match &prev {
                None => "sequence gap at the start of the chain".to_string(),
                Some((_, id, _)) => format!("sequence gap after {id}"),
            };
            return broken(rec.event_id, reason);
        }
        if rec.prev_hash != expected_prev {
            return broken(
                rec.event_id,
                "prev_hash does not match the previous event".into(),
            );
        }
        match rec.expected_hash() {
            Ok(h) if h == rec.hash => {}
            Ok(_) => return broken(rec.event_id, "hash mismatch".into()),
            Err(_) => return broken(rec.event_id, "unreadable record".into()),
        }
        prev = Some((seq, rec.event_id, rec.hash));
    }
    Ok(match prev {
        None => Verify::Ok {
            length: 0,
            head: ZERO_HASH.to_string(),
        },
        Some((_, _, head)) => Verify::Ok { length, head },
    })
}

/// Checks an export (`GET /v1/audit/export`, `sluice audit export`: one record per line,
/// oldest first) without the store: each line's hash matches its fields and links to the
/// line before, from the zero hash. A line that is not a record breaks the chain there
/// (`line N`). Blank lines are skipped.
pub fn verify_export(text: &str) -> Verify {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect();
    let length = lines.len() as u64;
    let mut head = ZERO_HASH.to_string();
    let mut prev_id: Option<String> = None;
    for (n, line) in lines {
        let Ok(rec) = serde_json::from_str::<AuditRecord>(line) else {
            return Verify::Broken {
                length,
                broken_at: format!("line {n}"),
                reason: "not an audit record".into(),
            };
        };
        let reason = if rec.prev_hash == head {
            match rec.expected_hash() {
                Ok(h) if h == rec.hash => None,
                Ok(_) => Some("hash mismatch".to_string()),
                Err(_) => Some("unreadable record".to_string()),
            }
        } else {
            Some(match &prev_id {
                None => "the first record does not start from the zero hash".to_string(),
                Some(id) => format!("prev_hash does not match the hash of {id}"),
            })
        };
        if let Some(reason) = reason {
            return Verify::Broken {
                length,
                broken_at: rec.event_id,
                reason,
            };
        }
        head = rec.hash;
        prev_id = Some(rec.event_id);
    }
    Verify::Ok { length, head }
}

/// Records newest first, optionally only of one `event_type` and/or `resource_id`, at
/// most `limit` (0 counts as 1), starting below sequence `cursor` (exclusive; `None`: from the newest).
/// Returns the page and the cursor of the next one (the sequence of the page's last
/// record, as a string), `None` when nothing older matches. `Corrupted` on a record that
/// cannot be read (run verify).
pub fn list(
    txn: &redb::ReadTransaction,
    type_filter: Option<&str>,
    resource: Option<&str>,
    limit: usize,
    cursor: Option<u64>,
) -> Result<(Vec<AuditRecord>, Option<String>), redb::Error> {
    let Some(table) = open_read(txn)? else {
        return Ok((Vec::new(), None));
    };
    let limit = limit.max(1);
    let end = cursor.unwrap_or(u64::MAX);
    let mut out = Vec::new();
    let mut last_seq = 0;
    for row in table.range(0..end)?.rev() {
        let (k, v) = row?;
        let seq = k.value();
        let rec = decode_record(v.value()).ok_or_else(|| unreadable(seq))?;
        if type_filter.is_some_and(|t| t != rec.event_type)
            || resource.is_some_and(|r| r != rec.resource_id)
        {
            continue;
        }
        if out.len() == limit {
            return Ok((out, Some(last_seq.to_string())));
        }
        out.push(rec);
        last_seq = seq;
    }
    Ok((out, None))
}

/// Writes every record as one JSON line ([`AuditRecord::to_json`]), oldest first.
/// Returns how many. `Corrupted` on a record that cannot be read (run verify);
/// write failures come back as `Io`.
pub fn export(txn: &redb::ReadTransaction, out: &mut impl Write) -> Result<u64, redb::Error> {
    let Some(table) = open_read(txn)? else {
        return Ok(0);
    };
    let mut n = 0;
    for row in table.iter()? {
        let (k, v) = row?;
        let rec = decode_record(v.value()).ok_or_else(|| unreadable(k.value()))?;
        serde_json::to_writer(&mut *out, &rec.to_json()).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}
