//! Event history: the settled fates of each event at each destination, kept for
//! `storage.dedup_window` so the event trace ([`crate::trace`]) can say what became of
//! an event after the log behind it was trimmed.
//!
//! The fates one destination settles in one commit are written as a [`Batch`], inside
//! that settlement commit (no commit of its own), as a few rows rather than one row
//! per event: the events are sorted by sequence and cut into *runs* of at most
//! [`RUN_EVENTS`] events spanning at most [`MAX_SPAN`] sequences. A run's row is keyed
//! `(destination, first sequence, row number)` and holds its last sequence, the newest
//! accept time in it, the answers its events got (one per request: status, the
//! platform's request id, the error) and per event a few varints. So the writer that
//! ingest and delivery share does one B-tree insert per request's worth of events, not
//! one per event, and a destination appends at the right edge of its own range (it
//! settles in about sequence order).
//!
//! Finding an event's fate reads the rows whose first sequence lies within
//! [`MAX_SPAN`] below it (every run that holds it starts there) and takes the newest
//! row number that holds it: a later fate (delivered after a retry) is a newer row, the
//! older one stays until trimmed. Trimming goes by accept time from the left edge of
//! each destination, a slice per housekeeping pass.
//!
//! Rows of the table before runs (`event_history`, one row per event and destination)
//! are still read and trimmed; new fates never go there.
//!
//! Nothing in a row identifies a person: the platform's status and request id, the
//! class, a short excerpt of the error (redacted of the destination's secrets, as the
//! DLQ's response body is).

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::codec::{ErrorClass, decode_record};

/// `(destination, first sequence, row number) → run` (see the module doc): one row per run
/// of events a destination settled in one commit.
pub const RUNS: TableDefinition<(&str, u64, u64), &[u8]> =
    TableDefinition::new("event_history_runs");

/// `(destination, sequence) → HistoryRecord` (version byte + postcard): the table
/// before runs, one row per event. Read and trimmed, no longer written.
pub const LEGACY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("event_history");

/// `(workspace, event name) → ()`: the names a workspace's events have used (the
/// trace of an id without a name looks under each).
pub const EVENT_NAMES: TableDefinition<(&str, &str), ()> = TableDefinition::new("event_names");

/// Names remembered per workspace; past this a trace needs the name.
pub const MAX_NAMES: usize = 1_000;

/// Sequences one run may span (last − first): a look-up reads the rows starting this
/// far below the event.
pub const MAX_SPAN: u64 = 8_192;

/// Events per run at most (a row of a few KiB).
pub const RUN_EVENTS: usize = 1_024;

/// The error excerpt a row keeps (bytes).
pub const ERROR_KEEP: usize = 200;

/// Rows removed per trim pass (of each table).
pub const TRIM_SLICE: usize = 20_000;

/// Format version of a run row.
const RUN_V1: u8 = 1;
/// Version byte, last sequence, newest accept time.
const RUN_HEADER: usize = 1 + 8 + 8;

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

/// One event's fate at one destination, as the trace reads it.
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

/// The answer to one request, shared by the events it carried.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub status: Option<u16>,
    pub request_id: Option<String>,
    pub error: Option<String>,
}

/// One event of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub fate: HistoryFate,
    pub accepted_ms: i64,
    /// The event's own time (s).
    pub event_time: i64,
    pub attempts: u32,
    /// Its last answer: an index into [`Batch::answers`] (None: never answered).
    pub answer: Option<u32>,
    /// Dead-lettered by a `DlqPut` of the same op list: the row takes the id the writer
    /// gave that entry (the batch's flagged entries, in order, took the last ids).
    pub dlq_put: bool,
    /// It came back from the DLQ (a replay): delivered, it counts as recovered.
    pub replayed: bool,
}

/// The fates one destination settled in one commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// When they were settled (ms).
    pub at_ms: i64,
    pub answers: Vec<Answer>,
    pub entries: Vec<Entry>,
}

/// A run as stored after its header.
#[derive(Serialize, Deserialize)]
struct RunBody {
    at_ms: i64,
    answers: Vec<Answer>,
    events: Vec<RunEvent>,
}

/// One event in a run: small numbers, varint-encoded.
#[derive(Serialize, Deserialize)]
struct RunEvent {
    /// Sequence − the run's first.
    seq: u64,
    /// The run's newest accept time − this event's.
    accepted_back: u64,
    /// Event time (s) − accept time (s).
    time: i64,
    attempts: u32,
    answer: Option<u32>,
    fate: HistoryFate,
}

/// Writes `batch` for `dest` as runs. `dlq_ids` gives, in entry order, the ids of the
/// flagged entries' DLQ rows; `row_no` is the next row number (advanced).
pub fn write(
    t: &mut redb::Table<(&str, u64, u64), &[u8]>,
    dest: &str,
    batch: &Batch,
    mut dlq_ids: impl Iterator<Item = u64>,
    row_no: &mut u64,
) -> Result<(), redb::Error> {
    let mut fates: Vec<(usize, HistoryFate)> = Vec::with_capacity(batch.entries.len());
    for (i, e) in batch.entries.iter().enumerate() {
        let mut fate = e.fate.clone();
        if e.dlq_put
            && let HistoryFate::DeadLettered { dlq_id, .. } = &mut fate
        {
            *dlq_id = dlq_ids.next();
        }
        fates.push((i, fate));
    }
    fates.sort_by_key(|(i, _)| batch.entries[*i].seq);
    let mut start = 0;
    while start < fates.len() {
        let first = batch.entries[fates[start].0].seq;
        let mut end = start + 1;
        while end < fates.len()
            && end - start < RUN_EVENTS
            && batch.entries[fates[end].0].seq - first <= MAX_SPAN
        {
            end += 1;
        }
        let run = &fates[start..end];
        let value = encode_run(batch, first, run);
        t.insert((dest, first, *row_no), value.as_slice())?;
        *row_no += 1;
        start = end;
    }
    Ok(())
}

fn encode_run(batch: &Batch, first: u64, run: &[(usize, HistoryFate)]) -> Vec<u8> {
    let entries = || run.iter().map(|(i, _)| &batch.entries[*i]);
    let last = entries().map(|e| e.seq).max().unwrap_or(first);
    let newest = entries().map(|e| e.accepted_ms).max().unwrap_or(0);
    // The answers this run's events refer to, numbered again from 0.
    let mut answers: Vec<Answer> = Vec::new();
    let mut renumber: Vec<Option<u32>> = vec![None; batch.answers.len()];
    let events = run
        .iter()
        .map(|(i, fate)| {
            let e = &batch.entries[*i];
            let answer = e.answer.and_then(|a| {
                let slot = renumber.get_mut(a as usize)?;
                Some(*slot.get_or_insert_with(|| {
                    answers.push(batch.answers[a as usize].clone());
                    (answers.len() - 1) as u32
                }))
            });
            RunEvent {
                seq: e.seq - first,
                accepted_back: newest.abs_diff(e.accepted_ms),
                time: e.event_time - e.accepted_ms.div_euclid(1000),
                attempts: e.attempts,
                answer,
                fate: fate.clone(),
            }
        })
        .collect();
    let body = RunBody {
        at_ms: batch.at_ms,
        answers,
        events,
    };
    let mut out = Vec::with_capacity(RUN_HEADER + 16 + 12 * run.len());
    out.push(RUN_V1);
    out.extend_from_slice(&last.to_le_bytes());
    out.extend_from_slice(&newest.to_le_bytes());
    postcard::to_io(&body, &mut out).expect("postcard to Vec");
    out
}

/// A run row's last sequence and newest accept time, if it is one.
fn run_header(v: &[u8]) -> Option<(u64, i64)> {
    if v.len() < RUN_HEADER || v[0] != RUN_V1 {
        return None;
    }
    let last = u64::from_le_bytes(v[1..9].try_into().ok()?);
    let newest = i64::from_le_bytes(v[9..17].try_into().ok()?);
    Some((last, newest))
}

/// Event `seq` accepted at `accepted_ms` in the run starting at `first`, if it holds it.
fn find_in_run(v: &[u8], first: u64, seq: u64, accepted_ms: i64) -> Option<HistoryRecord> {
    let (last, newest) = run_header(v)?;
    if seq < first || seq > last {
        return None;
    }
    let body: RunBody = postcard::from_bytes(&v[RUN_HEADER..]).ok()?;
    // The last: an event settled twice in one commit (sorted stably) has its later fate last.
    let e = body
        .events
        .into_iter()
        .rev()
        .find(|e| e.seq == seq - first)?;
    let accepted = newest.checked_sub_unsigned(e.accepted_back)?;
    if accepted != accepted_ms {
        return None;
    }
    let answer = e
        .answer
        .and_then(|a| body.answers.get(a as usize).cloned())
        .unwrap_or_default();
    Some(HistoryRecord {
        fate: e.fate,
        at_ms: body.at_ms,
        accepted_ms,
        event_time: accepted.div_euclid(1000) + e.time,
        attempts: e.attempts,
        status: answer.status,
        request_id: answer.request_id,
        error: answer.error,
    })
}

/// `dest`'s latest fate of event `seq`, if it is the event accepted at `accepted_ms` (a
/// destination id used again in another workspace numbers another log).
pub fn get(
    runs: &impl ReadableTable<(&'static str, u64, u64), &'static [u8]>,
    legacy: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    dest: &str,
    seq: u64,
    accepted_ms: i64,
) -> Result<Option<HistoryRecord>, redb::Error> {
    let mut found: Option<(u64, HistoryRecord)> = None;
    for row in runs.range((dest, seq.saturating_sub(MAX_SPAN), 0)..=(dest, seq, u64::MAX))? {
        let (k, v) = row?;
        let (_, first, n) = k.value();
        if found.as_ref().is_some_and(|(m, _)| *m > n) {
            continue;
        }
        if let Some(r) = find_in_run(v.value(), first, seq, accepted_ms) {
            found = Some((n, r));
        }
    }
    if let Some((_, r)) = found {
        return Ok(Some(r));
    }
    Ok(legacy
        .get((dest, seq))?
        .and_then(|v| decode_record::<HistoryRecord>(v.value()).ok())
        .filter(|r| r.accepted_ms == accepted_ms))
}

/// Deletes up to `max` rows of each table whose events were all accepted at or before
/// `cutoff_ms`, from the left edge of each destination; returns how many went.
pub fn trim(
    runs: &mut redb::Table<(&str, u64, u64), &[u8]>,
    legacy: &mut redb::Table<(&str, u64), &[u8]>,
    cutoff_ms: i64,
    max: usize,
) -> Result<usize, redb::Error> {
    let mut gone: Vec<(String, u64, u64)> = Vec::new();
    // One destination after another, from its first row until its first recent one.
    let mut from = String::new();
    loop {
        let mut next = None;
        for row in runs.range((from.as_str(), 0u64, 0u64)..)? {
            if gone.len() >= max {
                break;
            }
            let (k, v) = row?;
            let (d, first, n) = k.value();
            if run_header(v.value()).is_none_or(|(_, newest)| newest <= cutoff_ms) {
                gone.push((d.to_string(), first, n));
                continue;
            }
            next = Some(after(d));
            break;
        }
        match next {
            Some(n) if gone.len() < max => from = n,
            _ => break,
        }
    }
    for (d, first, n) in &gone {
        runs.remove((d.as_str(), *first, *n))?;
    }
    Ok(gone.len() + trim_legacy(legacy, cutoff_ms, max)?)
}

/// A key that sorts after every row of destination `d` (ids hold no NUL).
fn after(d: &str) -> String {
    let mut n = d.to_string();
    n.push('\u{0}');
    n
}

fn trim_legacy(
    t: &mut redb::Table<(&str, u64), &[u8]>,
    cutoff_ms: i64,
    max: usize,
) -> Result<usize, redb::Error> {
    let mut gone: Vec<(String, u64)> = Vec::new();
    let mut from = String::new();
    loop {
        let mut next = None;
        for row in t.range((from.as_str(), 0u64)..)? {
            if gone.len() >= max {
                break;
            }
            let (k, v) = row?;
            let (d, seq) = k.value();
            if decode_record::<HistoryRecord>(v.value()).is_ok_and(|r| r.accepted_ms > cutoff_ms) {
                next = Some(after(d));
                break;
            }
            gone.push((d.to_string(), seq));
        }
        match next {
            Some(n) if gone.len() < max => from = n,
            _ => break,
        }
    }
    for (d, seq) in &gone {
        t.remove((d.as_str(), *seq))?;
    }
    Ok(gone.len())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use redb::ReadableTableMetadata;

    use super::*;
    use crate::store::codec::encode_record;

    fn entry(seq: u64, accepted_ms: i64, fate: HistoryFate, answer: Option<u32>) -> Entry {
        Entry {
            seq,
            fate,
            accepted_ms,
            event_time: accepted_ms / 1000 - 7,
            attempts: 1,
            answer,
            dlq_put: false,
            replayed: false,
        }
    }

    fn answer(status: u16, id: &str) -> Answer {
        Answer {
            status: Some(status),
            request_id: Some(id.to_string()),
            error: None,
        }
    }

    fn with_tables<R>(
        f: impl FnOnce(
            &mut redb::Table<(&str, u64, u64), &[u8]>,
            &mut redb::Table<(&str, u64), &[u8]>,
        ) -> R,
    ) -> R {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("h.redb")).unwrap();
        let w = db.begin_write().unwrap();
        let r = {
            let mut runs = w.open_table(RUNS).unwrap();
            let mut legacy = w.open_table(LEGACY).unwrap();
            f(&mut runs, &mut legacy)
        };
        w.commit().unwrap();
        r
    }

    #[test]
    fn a_batch_is_cut_into_runs_by_span_and_size_and_every_event_reads_back() {
        with_tables(|runs, legacy| {
            // Out of order, with a gap wider than a run may span, and more events than
            // a run holds.
            let mut entries: Vec<Entry> = (0..RUN_EVENTS as u64 + 10)
                .rev()
                .map(|s| {
                    entry(
                        100 + s,
                        5_000_000 + s as i64,
                        HistoryFate::Delivered,
                        Some(0),
                    )
                })
                .collect();
            entries.push(entry(
                100 + MAX_SPAN * 3,
                9_000_000,
                HistoryFate::Delivered,
                None,
            ));
            let batch = Batch {
                at_ms: 42,
                answers: vec![answer(200, "req-1")],
                entries,
            };
            let mut row_no = 7;
            write(runs, "d", &batch, std::iter::empty(), &mut row_no).unwrap();
            assert_eq!(row_no, 10, "three runs: a full one, the rest, the far one");
            assert_eq!(runs.len().unwrap(), 3);
            for e in &batch.entries {
                let r = get(runs, legacy, "d", e.seq, e.accepted_ms)
                    .unwrap()
                    .unwrap();
                assert_eq!(r.fate, HistoryFate::Delivered);
                assert_eq!(
                    (r.at_ms, r.accepted_ms, r.event_time),
                    (42, e.accepted_ms, e.event_time)
                );
                let want = if e.answer.is_some() {
                    Some("req-1")
                } else {
                    None
                };
                assert_eq!(r.request_id.as_deref(), want);
            }
            assert_eq!(get(runs, legacy, "d", 99, 5_000_000).unwrap(), None);
            assert_eq!(
                get(runs, legacy, "d", 100, 1).unwrap(),
                None,
                "another event"
            );
            assert_eq!(get(runs, legacy, "e", 100, 5_000_000).unwrap(), None);
        });
    }

    #[test]
    fn a_later_fate_wins_and_dlq_ids_go_to_flagged_entries_in_order() {
        with_tables(|runs, legacy| {
            let retry = HistoryFate::Retrying { due_ms: 9_000 };
            let first = Batch {
                at_ms: 1,
                answers: vec![answer(503, "a")],
                entries: (10..20)
                    .map(|s| entry(s, 1_000, retry.clone(), Some(0)))
                    .collect(),
            };
            let mut row_no = 1;
            write(runs, "d", &first, std::iter::empty(), &mut row_no).unwrap();
            // Later: 15 delivered alone, 12 and 11 dead-lettered (in that order).
            let dead = HistoryFate::DeadLettered {
                class: ErrorClass::Rejected,
                dlq_id: None,
            };
            let mut e12 = entry(12, 1_000, dead.clone(), Some(1));
            e12.dlq_put = true;
            let mut e11 = entry(11, 1_000, dead, Some(1));
            e11.dlq_put = true;
            let second = Batch {
                at_ms: 2,
                answers: vec![answer(200, "b"), answer(400, "c")],
                entries: vec![entry(15, 1_000, HistoryFate::Delivered, Some(0)), e12, e11],
            };
            write(runs, "d", &second, [70, 71].into_iter(), &mut row_no).unwrap();
            let fate = |s| get(runs, legacy, "d", s, 1_000).unwrap().unwrap();
            assert_eq!(fate(15).fate, HistoryFate::Delivered);
            assert_eq!(fate(15).request_id.as_deref(), Some("b"));
            let dlq = |s: u64| match fate(s).fate {
                HistoryFate::DeadLettered { dlq_id, .. } => dlq_id,
                f => panic!("{f:?}"),
            };
            assert_eq!((dlq(12), dlq(11)), (Some(70), Some(71)));
            assert_eq!(fate(11).status, Some(400));
            assert_eq!(fate(14).fate, retry, "untouched by the later batch");
            assert_eq!(fate(14).status, Some(503));
            // Settled twice in one commit: the later entry is its fate.
            let twice = Batch {
                at_ms: 3,
                answers: vec![],
                entries: vec![
                    entry(17, 1_000, HistoryFate::Retrying { due_ms: 5 }, None),
                    entry(17, 1_000, HistoryFate::Delivered, None),
                ],
            };
            write(runs, "d", &twice, std::iter::empty(), &mut row_no).unwrap();
            let r = get(runs, legacy, "d", 17, 1_000).unwrap().unwrap();
            assert_eq!(r.fate, HistoryFate::Delivered);
        });
    }

    #[test]
    fn rows_of_the_table_before_runs_are_read_and_trimmed() {
        with_tables(|runs, legacy| {
            let old = HistoryRecord {
                fate: HistoryFate::Delivered,
                at_ms: 5,
                accepted_ms: 1_000,
                event_time: 1,
                attempts: 1,
                status: Some(200),
                request_id: Some("old".into()),
                error: None,
            };
            legacy
                .insert(("d", 3), encode_record(&old).as_slice())
                .unwrap();
            assert_eq!(get(runs, legacy, "d", 3, 1_000).unwrap(), Some(old.clone()));
            assert_eq!(get(runs, legacy, "d", 3, 1_001).unwrap(), None);
            // A run for the same event is newer than any legacy row.
            let b = Batch {
                at_ms: 9,
                answers: vec![],
                entries: vec![entry(3, 1_000, HistoryFate::Delivered, None)],
            };
            write(runs, "d", &b, std::iter::empty(), &mut 1).unwrap();
            assert_eq!(get(runs, legacy, "d", 3, 1_000).unwrap().unwrap().at_ms, 9);
            assert_eq!(trim(runs, legacy, 1_000, 100).unwrap(), 2);
            assert_eq!(get(runs, legacy, "d", 3, 1_000).unwrap(), None);
        });
    }

    #[test]
    fn trimming_goes_by_the_newest_accept_time_of_a_run_in_every_destination() {
        with_tables(|runs, legacy| {
            let mut row_no = 1;
            for (dest, at) in [
                ("a", [10, 20, 30]),
                ("b", [10, 40, 50]),
                ("c", [99, 99, 99]),
            ] {
                for (i, accepted) in at.into_iter().enumerate() {
                    let seq = i as u64 * (MAX_SPAN + 1);
                    let b = Batch {
                        at_ms: accepted,
                        answers: vec![],
                        // A run holding an older and a newer event: its newest counts.
                        entries: vec![
                            entry(seq, accepted - 5, HistoryFate::Delivered, None),
                            entry(seq + 1, accepted, HistoryFate::Delivered, None),
                        ],
                    };
                    write(runs, dest, &b, std::iter::empty(), &mut row_no).unwrap();
                }
            }
            assert_eq!(trim(runs, legacy, 30, 2).unwrap(), 2, "a slice");
            assert_eq!(trim(runs, legacy, 30, 100).unwrap(), 2);
            assert_eq!(trim(runs, legacy, 30, 100).unwrap(), 0);
            assert_eq!(runs.len().unwrap(), 2 + 3);
            assert!(get(runs, legacy, "a", 1, 10).unwrap().is_none());
            assert!(get(runs, legacy, "b", MAX_SPAN + 2, 40).unwrap().is_some());
            assert!(get(runs, legacy, "c", 0, 94).unwrap().is_some());
        });
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
        /// Random batches against a plain map of each event's latest fate: mostly fresh
        /// events, some settled again, some far ahead (runs cut by span).
        #[test]
        fn every_event_reads_its_latest_fate_over_random_batches(
            commits in proptest::collection::vec(
                (0usize..2, proptest::collection::vec((0u8..10, 0u64..3 * MAX_SPAN, 0u64..1_000_000), 1..60)),
                1..120,
            )
        ) {
            with_tables(|runs, legacy| {
                let mut model: HashMap<(String, u64), (i64, u64)> = HashMap::new();
                let mut row_no = 1;
                let mut next = [0u64; 2];
                for (commit, (d, events)) in commits.iter().enumerate() {
                    let dest = ["x", "y"][*d];
                    let mut entries: Vec<Entry> = Vec::new();
                    for (kind, n, due) in events {
                        let seq = match kind {
                            0..=6 => {
                                next[*d] += 1 + n % 2;
                                next[*d]
                            }
                            7 | 8 => next[*d].saturating_sub(n % 200),
                            _ => next[*d] + n,
                        };
                        if entries.iter().any(|e| e.seq == seq) {
                            continue;
                        }
                        let fate = HistoryFate::Retrying { due_ms: *due };
                        entries.push(entry(seq, seq as i64 * 3, fate, None));
                        model.insert((dest.to_string(), seq), (commit as i64, *due));
                    }
                    let b = Batch { at_ms: commit as i64, answers: vec![], entries };
                    write(runs, dest, &b, std::iter::empty(), &mut row_no).unwrap();
                }
                for ((dest, seq), (commit, due)) in &model {
                    let r = get(runs, legacy, dest, *seq, *seq as i64 * 3).unwrap().unwrap();
                    assert_eq!((r.at_ms, r.fate), (*commit, HistoryFate::Retrying { due_ms: *due }));
                }
            });
        }
    }
}
