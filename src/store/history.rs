//! Event history: the latest settled fate of each event for each destination, kept
//! for `storage.dedup_window` so the event trace ([`crate::trace`]) can say what became
//! of an event after the log behind it was trimmed.
//!
//! One row per `(destination, event sequence)`, written in the settlement commit that
//! records the fate (no commit of its own): a retry scheduled, a delivery, a
//! dead-lettering (rejected, retries exhausted, expired, unsendable). A later fate of
//! the same event overwrites the row. A destination settles in about sequence order,
//! so its rows are appended at the right edge of its own range (a destination far
//! behind another never inserts into the middle of the other's rows) and trimmed from
//! its left edge (rows accepted before the window), a slice per housekeeping pass.
//!
//! Nothing in a row identifies a person: the platform's status and request id, the
//! class, a short excerpt of the error (redacted of the destination's secrets, as the
//! DLQ's response body is).

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::codec::{ErrorClass, decode_record, encode_record};

/// `(destination, sequence) → HistoryRecord` (version byte + postcard): each
/// destination's rows are appended at its own right edge (settlements come in about
/// sequence order per destination), and trimmed from its left edge.
pub const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("event_history");

/// `(workspace, event name) → ()`: the names a workspace's events have used (the
/// trace of an id without a name looks under each).
pub const EVENT_NAMES: TableDefinition<(&str, &str), ()> = TableDefinition::new("event_names");

/// Names remembered per workspace; past this a trace needs the name.
pub const MAX_NAMES: usize = 1_000;

/// The event names recorded for `ws`.
pub fn names<T: ReadableTable<(&'static str, &'static str), ()>>(
    t: &T,
    ws: &str,
) -> Result<Vec<String>, redb::Error> {
    let mut out = Vec::new();
    let mut end = ws.to_string();
    end.push('\u{0}');
    for row in t.range((ws, "")..(end.as_str(), ""))? {
        out.push(row?.0.value().1.to_string());
    }
    Ok(out)
}

/// The error excerpt a row keeps (bytes).
pub const ERROR_KEEP: usize = 200;

/// Rows removed per trim pass.
pub const TRIM_SLICE: usize = 20_000;

/// What became of an event at a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryFate {
    Delivered,
    /// Failed; sent again at `due_ms`.
    Retrying {
        due_ms: u64,
    },
    /// In the DLQ (`dlq_id`, assigned in the same commit).
    DeadLettered {
        class: ErrorClass,
        dlq_id: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub fate: HistoryFate,
    /// When the fate was settled (ms).
    pub at_ms: i64,
    /// When the event was accepted (ms): what trimming goes by.
    pub accepted_ms: i64,
    /// The event's own time (s).
    pub event_time: i64,
    /// Requests that carried it (0: never sent: expired or unsendable).
    pub attempts: u32,
    /// The last answer's HTTP status.
    pub status: Option<u16>,
    /// The platform's id of the last request (Meta `fbtrace_id`, TikTok `request_id`…).
    pub request_id: Option<String>,
    /// The last error, shortened (never a secret: redacted before it gets here).
    pub error: Option<String>,
}

pub fn encode(r: &HistoryRecord) -> Vec<u8> {
    encode_record(r)
}

pub fn decode(b: &[u8]) -> Option<HistoryRecord> {
    decode_record(b).ok()
}

/// `dest`'s row for event `seq`, if it is the event accepted at `accepted_ms` (a
/// destination id used again in another workspace numbers another log).
pub fn get<T: ReadableTable<(&'static str, u64), &'static [u8]>>(
    t: &T,
    dest: &str,
    seq: u64,
    accepted_ms: i64,
) -> Result<Option<HistoryRecord>, redb::Error> {
    Ok(t.get((dest, seq))?
        .and_then(|v| decode(v.value()))
        .filter(|r| r.accepted_ms == accepted_ms))
}

/// Deletes up to `max` rows of events accepted before `cutoff_ms`, oldest first in
/// each destination; returns how many went.
pub fn trim(
    t: &mut redb::Table<(&str, u64), &[u8]>,
    cutoff_ms: i64,
    max: usize,
) -> Result<usize, redb::Error> {
    let mut gone: Vec<(String, u64)> = Vec::new();
    // One destination after another, from its first row until its first recent one.
    let mut from = String::new();
    loop {
        let mut next = None;
        for row in t.range((from.as_str(), 0u64)..)? {
            if gone.len() >= max {
                break;
            }
            let (k, v) = row?;
            let (w, seq) = k.value();
            if decode(v.value()).is_none_or(|r| r.accepted_ms <= cutoff_ms) {
                gone.push((w.to_string(), seq));
                continue;
            }
            // Destination ids hold no NUL: this key sorts after every row of `w`.
            let mut n = w.to_string();
            n.push('\u{0}');
            next = Some(n);
            break;
        }
        match next {
            Some(n) if gone.len() < max => from = n,
            _ => break,
        }
    }
    for (w, seq) in &gone {
        t.remove((w.as_str(), *seq))?;
    }
    Ok(gone.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(accepted_ms: i64) -> HistoryRecord {
        HistoryRecord {
            fate: HistoryFate::Delivered,
            at_ms: accepted_ms + 5,
            accepted_ms,
            event_time: accepted_ms / 1000,
            attempts: 1,
            status: Some(200),
            request_id: Some("r1".into()),
            error: None,
        }
    }

    #[test]
    fn trimming_goes_by_accept_time_in_every_destination_and_stops_at_max() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("h.redb")).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(HISTORY).unwrap();
            for (dest, seqs) in [("a", 1..=5u64), ("b", 1..=3), ("c", 10..=12)] {
                for s in seqs {
                    // Destination c is all recent.
                    let at = if dest == "c" { 1_000 } else { s as i64 * 10 };
                    t.insert((dest, s), encode(&rec(at)).as_slice()).unwrap();
                }
            }
            // a: seqs 1..=3 (≤ 30) old; b: 1..=3 old; c: none.
            assert_eq!(trim(&mut t, 30, 4).unwrap(), 4, "a slice");
            assert_eq!(trim(&mut t, 30, 100).unwrap(), 2);
            assert_eq!(trim(&mut t, 30, 100).unwrap(), 0);
            let left: Vec<(String, u64)> = t
                .iter()
                .unwrap()
                .map(|r| {
                    let (k, _) = r.unwrap();
                    let (d, s) = k.value();
                    (d.to_string(), s)
                })
                .collect();
            assert_eq!(left.len(), 2 + 3, "{left:?}");
            assert!(left.iter().all(|(d, s)| d == "c" || *s > 3));
            assert_eq!(get(&t, "a", 4, 40).unwrap(), Some(rec(40)));
            assert_eq!(get(&t, "a", 4, 41).unwrap(), None, "another event");
            assert_eq!(get(&t, "b", 2, 20).unwrap(), None, "trimmed");
        }
        w.commit().unwrap();
    }
}
