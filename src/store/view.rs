//! Typed reads: what code outside `store/` asks of the file. A [`View`] is one read
//! transaction (a consistent snapshot while the writer goes on); its methods decode the
//! stored records, so table layouts and encodings stay inside `store/`.

use std::collections::{BTreeSet, HashSet};

use redb::{ReadTransaction, ReadableTable};

use super::backlog::{BACKLOG, BACKLOG_SECONDS, Summary, decode_summary};
use super::codec::{
    DestState, DlqRecord, ErrorClass, OutcomeRecord, RequestRecord, RetryRecord, decode_record,
    dlq_class_and_time,
};
use super::{
    AUTO_PAUSE_EVENTS, CURSORS, DEST_STATE, DLQ, EVENTS, OUTCOMES, REQUEST_LOG, RETRIES, SETTLED,
    StoreError, log,
};

fn err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(e.into().to_string())
}

/// A scheduled retry: its key and record.
#[derive(Debug, Clone)]
pub struct RetryRow {
    pub due_ms: u64,
    pub seq: u64,
    pub record: RetryRecord,
}

/// Retries due now, read for sending.
#[derive(Debug, Default)]
pub struct DueRetries {
    /// `(row, encoded event)`, in due order.
    pub rows: Vec<(RetryRow, Vec<u8>)>,
    /// When the next retry not taken falls due (`i64::MAX`: none); `now` when more are
    /// due than were asked for.
    pub next_due: i64,
}

/// A page of DLQ entries `(id, record)` and the id to continue after, if more remain.
pub type DlqPage = (Vec<(u64, DlqRecord)>, Option<u64>);

/// A page of a destination's request log `(n, record)`, newest first, and the number
/// to continue below, if more remain.
pub type RequestPage = (Vec<(u64, RequestRecord)>, Option<u64>);

/// One read transaction of the store.
pub struct View {
    txn: ReadTransaction,
}

impl View {
    pub(super) fn new(txn: ReadTransaction) -> Self {
        View { txn }
    }

    /// The raw transaction, for the modules that own their own tables (the audit chain,
    /// backups).
    pub fn txn(&self) -> &ReadTransaction {
        &self.txn
    }

    /// A destination's committed position in its workspace's log.
    pub fn cursor(&self, dest: &str) -> Result<Option<u64>, StoreError> {
        let t = self.txn.open_table(CURSORS).map_err(err)?;
        Ok(t.get(dest).map_err(err)?.map(|v| v.value()))
    }

    /// Every stored position.
    pub fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let t = self.txn.open_table(CURSORS).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    /// The next sequence number of a workspace's log (1 for an empty log).
    pub fn head(&self, ws: &str) -> Result<u64, StoreError> {
        let t = self.txn.open_table(EVENTS).map_err(err)?;
        log::head(&t, ws).map_err(err)
    }

    /// Up to `max` encoded events of `ws` from sequence `from` on: `(seq, event)`.
    pub fn log(&self, ws: &str, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let t = self.txn.open_table(EVENTS).map_err(err)?;
        log::read(&t, ws, from, max).map_err(err)
    }

    /// The event a retry is for: its own copy (a replayed DLQ entry) or the log's.
    pub fn retry_event(
        &self,
        ws: &str,
        seq: u64,
        rec: &RetryRecord,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match &rec.event_copy {
            Some(c) => Ok(Some(c.to_vec())),
            None => {
                let t = self.txn.open_table(EVENTS).map_err(err)?;
                log::get(&t, ws, seq).map_err(err)
            }
        }
    }

    /// The mark (accept time, log sequence) of digest `d` in dedup run `run`, if the
    /// run holds it.
    pub fn dedup_find(&self, run: u64, d: u128) -> Result<Option<super::dedup::Mark>, StoreError> {
        let t = self
            .txn
            .open_table(super::dedup::runs::DEDUP_RUNS)
            .map_err(err)?;
        super::dedup::find_in(&t, run, d).map_err(err)
    }

    /// `dest`'s history row of event `seq` accepted at `accepted_ms`
    /// ([`super::history`]).
    pub fn history(
        &self,
        dest: &str,
        seq: u64,
        accepted_ms: i64,
    ) -> Result<Option<super::history::HistoryRecord>, StoreError> {
        let runs = self.txn.open_table(super::history::RUNS).map_err(err)?;
        let legacy = self.txn.open_table(super::history::LEGACY).map_err(err)?;
        super::history::get(&runs, &legacy, dest, seq, accepted_ms).map_err(err)
    }

    /// The event names `ws` has used (at most [`super::history::MAX_NAMES`]).
    pub fn event_names(&self, ws: &str) -> Result<Vec<String>, StoreError> {
        let t = self
            .txn
            .open_table(super::history::EVENT_NAMES)
            .map_err(err)?;
        super::history::names(&t, ws).map_err(err)
    }

    /// A destination's backlog summary ([`super::backlog`]).
    pub fn backlog_summary(&self, dest: &str) -> Result<Option<Summary>, StoreError> {
        let t = self.txn.open_table(BACKLOG).map_err(err)?;
        Ok(t.get(dest)
            .map_err(err)?
            .and_then(|v| decode_summary(v.value())))
    }

    /// A destination's pending log events counted under a second below `below`.
    pub fn backlog_seconds_below(&self, dest: &str, below: i64) -> Result<u64, StoreError> {
        let t = self.txn.open_table(BACKLOG_SECONDS).map_err(err)?;
        let mut n = 0;
        for row in t.range((dest, i64::MIN)..(dest, below)).map_err(err)? {
            n += row.map_err(err)?.1.value();
        }
        Ok(n)
    }

    /// The oldest second a destination's summary counts pending events under.
    pub fn backlog_min_second(&self, dest: &str) -> Result<Option<i64>, StoreError> {
        let t = self.txn.open_table(BACKLOG_SECONDS).map_err(err)?;
        Ok(t.range((dest, i64::MIN)..=(dest, i64::MAX))
            .map_err(err)?
            .next()
            .transpose()
            .map_err(err)?
            .map(|(k, _)| k.value().1))
    }

    /// A destination's persisted health state.
    pub fn dest_state(&self, dest: &str) -> Result<Option<DestState>, StoreError> {
        let t = self.txn.open_table(DEST_STATE).map_err(err)?;
        Ok(t.get(dest)
            .map_err(err)?
            .and_then(|v| decode_record::<DestState>(v.value()).ok()))
    }

    /// Every persisted health state.
    pub fn dest_states(&self) -> Result<Vec<(String, DestState)>, StoreError> {
        let t = self.txn.open_table(DEST_STATE).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if let Ok(s) = decode_record::<DestState>(v.value()) {
                out.push((k.value().to_string(), s));
            }
        }
        Ok(out)
    }

    /// Events settled at or above `from` while a lower one was still in flight.
    pub fn settled_from(&self, dest: &str, from: u64) -> Result<BTreeSet<u64>, StoreError> {
        let t = self.txn.open_table(SETTLED).map_err(err)?;
        let mut out = BTreeSet::new();
        for row in t.range((dest, from)..=(dest, u64::MAX)).map_err(err)? {
            out.insert(row.map_err(err)?.0.value().1);
        }
        Ok(out)
    }

    /// A destination's outcome ring: `(slot, attempt)`.
    pub fn outcomes(&self, dest: &str) -> Result<Vec<(u32, OutcomeRecord)>, StoreError> {
        let t = self.txn.open_table(OUTCOMES).map_err(err)?;
        let mut out = Vec::new();
        for row in t.range((dest, 0u32)..=(dest, u32::MAX)).map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if let Ok(o) = decode_record::<OutcomeRecord>(v.value()) {
                out.push((k.value().1, o));
            }
        }
        Ok(out)
    }

    /// Up to `max` of a destination's scheduled retries, in due order (unreadable
    /// records skipped).
    pub fn retries(&self, dest: &str, max: usize) -> Result<Vec<RetryRow>, StoreError> {
        let t = self.txn.open_table(RETRIES).map_err(err)?;
        let mut out = Vec::new();
        for row in t
            .range((dest, 0u64, 0u64)..=(dest, u64::MAX, u64::MAX))
            .map_err(err)?
        {
            if out.len() == max {
                break;
            }
            let (k, v) = row.map_err(err)?;
            let (_, due_ms, seq) = k.value();
            match decode_record::<RetryRecord>(v.value()) {
                Ok(record) => out.push(RetryRow {
                    due_ms,
                    seq,
                    record,
                }),
                Err(e) => {
                    tracing::warn!(destination = %dest, seq, error = %e, "unreadable retry record skipped");
                }
            }
        }
        Ok(out)
    }

    /// Every scheduled retry of every destination: `(destination, row)`.
    pub fn all_retries(&self) -> Result<Vec<(String, RetryRow)>, StoreError> {
        let t = self.txn.open_table(RETRIES).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let (dest, due_ms, seq) = k.value();
            if let Ok(record) = decode_record::<RetryRecord>(v.value()) {
                out.push((
                    dest.to_string(),
                    RetryRow {
                        due_ms,
                        seq,
                        record,
                    },
                ));
            }
        }
        Ok(out)
    }

    /// The retries due at `now`, not in `taken`, at most `want`, each with its event.
    pub fn due_retries(
        &self,
        dest: &str,
        ws: &str,
        now: i64,
        taken: &HashSet<(u64, u64)>,
        want: usize,
    ) -> Result<DueRetries, StoreError> {
        let t = self.txn.open_table(RETRIES).map_err(err)?;
        let mut out = DueRetries {
            rows: Vec::new(),
            next_due: i64::MAX,
        };
        for row in t
            .range((dest, 0u64, 0u64)..=(dest, u64::MAX, u64::MAX))
            .map_err(err)?
        {
            let (k, v) = row.map_err(err)?;
            let (_, due_ms, seq) = k.value();
            if taken.contains(&(due_ms, seq)) {
                continue;
            }
            if due_ms as i64 > now {
                out.next_due = due_ms as i64;
                break;
            }
            if out.rows.len() >= want {
                out.next_due = now;
                break;
            }
            let Ok(record) = decode_record::<RetryRecord>(v.value()) else {
                tracing::warn!(destination = %dest, seq, "unreadable retry record skipped");
                continue;
            };
            let Some(raw) = self.retry_event(ws, seq, &record)? else {
                tracing::warn!(destination = %dest, seq, "retry for an event no longer in the log skipped");
                continue;
            };
            out.rows.push((
                RetryRow {
                    due_ms,
                    seq,
                    record,
                },
                raw,
            ));
        }
        Ok(out)
    }

    /// How many retries a destination has scheduled.
    pub fn retry_count(&self, dest: &str) -> Result<u64, StoreError> {
        let t = self.txn.open_table(RETRIES).map_err(err)?;
        Ok(t.range((dest, 0u64, 0u64)..=(dest, u64::MAX, u64::MAX))
            .map_err(err)?
            .count() as u64)
    }

    /// How many entries a destination has in the DLQ.
    pub fn dlq_count(&self, dest: &str) -> Result<u64, StoreError> {
        let t = self.txn.open_table(DLQ).map_err(err)?;
        Ok(t.range((dest, 0u64)..=(dest, u64::MAX))
            .map_err(err)?
            .count() as u64)
    }

    /// A destination's DLQ entries with id above `after` that `keep` accepts, oldest
    /// first, at most `limit`; and the id to continue after when more remain.
    pub fn dlq_page(
        &self,
        dest: &str,
        after: u64,
        limit: usize,
        keep: impl Fn(&DlqRecord) -> bool,
    ) -> Result<DlqPage, StoreError> {
        let t = self.txn.open_table(DLQ).map_err(err)?;
        let mut out: Vec<(u64, DlqRecord)> = Vec::new();
        for row in t
            .range((dest, after.saturating_add(1))..=(dest, u64::MAX))
            .map_err(err)?
        {
            let (k, v) = row.map_err(err)?;
            let Ok(r) = decode_record::<DlqRecord>(v.value()) else {
                continue;
            };
            if !keep(&r) {
                continue;
            }
            if out.len() == limit {
                let last = out.last().map_or(after, |(id, _)| *id);
                return Ok((out, Some(last)));
            }
            out.push((k.value().1, r));
        }
        Ok((out, None))
    }

    /// DLQ entries per destination and class whose last attempt (the moment they were
    /// dead-lettered) is at or after `since_ms` (all of them when None).
    pub fn dlq_counts(
        &self,
        since_ms: Option<i64>,
    ) -> Result<std::collections::BTreeMap<(String, ErrorClass), u64>, StoreError> {
        let t = self.txn.open_table(DLQ).map_err(err)?;
        let mut out = std::collections::BTreeMap::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let Ok((class, at)) = dlq_class_and_time(v.value()) else {
                continue;
            };
            if since_ms.is_none_or(|s| at >= s) {
                *out.entry((k.value().0.to_string(), class)).or_default() += 1;
            }
        }
        Ok(out)
    }

    /// One destination's DLQ entries per class (its range of the DLQ only).
    pub fn dlq_counts_of(
        &self,
        dest: &str,
    ) -> Result<std::collections::BTreeMap<ErrorClass, u64>, StoreError> {
        let t = self.txn.open_table(DLQ).map_err(err)?;
        let mut out = std::collections::BTreeMap::new();
        for row in t.range((dest, 0u64)..=(dest, u64::MAX)).map_err(err)? {
            let (_, v) = row.map_err(err)?;
            if let Ok((class, _)) = dlq_class_and_time(v.value()) {
                *out.entry(class).or_default() += 1;
            }
        }
        Ok(out)
    }

    /// A destination's request log below number `before`, newest first, at most
    /// `limit` rows (unreadable ones skipped); and the number to continue below.
    pub fn requests(
        &self,
        dest: &str,
        before: u64,
        limit: usize,
    ) -> Result<RequestPage, StoreError> {
        let t = self.txn.open_table(REQUEST_LOG).map_err(err)?;
        let mut out: Vec<(u64, RequestRecord)> = Vec::new();
        for row in t.range((dest, 0u64)..(dest, before)).map_err(err)?.rev() {
            let (k, v) = row.map_err(err)?;
            let Ok(r) = decode_record::<RequestRecord>(v.value()) else {
                continue;
            };
            if out.len() == limit {
                let last = out.last().map_or(before, |(n, _)| *n);
                return Ok((out, Some(last)));
            }
            out.push((k.value().1, r));
        }
        Ok((out, None))
    }

    /// Whether a destination has rows in its request log.
    pub fn has_requests(&self, dest: &str) -> Result<bool, StoreError> {
        let t = self.txn.open_table(REQUEST_LOG).map_err(err)?;
        Ok(t.range((dest, 0u64)..=(dest, u64::MAX))
            .map_err(err)?
            .next()
            .is_some())
    }

    /// Every DLQ entry (of any destination) whose last attempt is before `before_ms`:
    /// `(destination, id)`.
    pub fn dlq_older_than(&self, before_ms: i64) -> Result<Vec<(String, u64)>, StoreError> {
        let t = self.txn.open_table(DLQ).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if let Ok(r) = decode_record::<DlqRecord>(v.value())
                && r.last_attempt_ms < before_ms
            {
                let (dest, id) = k.value();
                out.push((dest.to_string(), id));
            }
        }
        Ok(out)
    }

    /// Every destination id the store holds something for: a position, retries or DLQ
    /// entries.
    pub fn known_destinations(&self) -> Result<BTreeSet<String>, StoreError> {
        let mut ids: BTreeSet<String> = self.cursors()?.into_iter().map(|(id, _)| id).collect();
        let r = self.txn.open_table(RETRIES).map_err(err)?;
        for row in r.iter().map_err(err)? {
            ids.insert(row.map_err(err)?.0.value().0.to_string());
        }
        let q = self.txn.open_table(DLQ).map_err(err)?;
        for row in q.iter().map_err(err)? {
            ids.insert(row.map_err(err)?.0.value().0.to_string());
        }
        Ok(ids)
    }

    /// `auto_pause_events` rows with id below `before`, newest first, that `keep`
    /// accepts, at most `limit`; and the cursor of the next page when more remain.
    pub fn auto_pause_rows(
        &self,
        before: u64,
        limit: usize,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(Vec<serde_json::Value>, Option<u64>), StoreError> {
        let t = self.txn.open_table(AUTO_PAUSE_EVENTS).map_err(err)?;
        let mut out = Vec::new();
        for row in t.range(..before).map_err(err)?.rev() {
            let (k, v) = row.map_err(err)?;
            let Some(json) = v
                .value()
                .get(1..)
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            else {
                continue;
            };
            if !keep(&json) {
                continue;
            }
            if out.len() == limit {
                return Ok((out, Some(k.value() + 1)));
            }
            out.push(json);
        }
        Ok((out, None))
    }
}
