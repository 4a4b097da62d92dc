//! The dead-letter queue's operator side (SPEC §3): list, replay, discard, and the
//! counts per destination and reason ("what went undelivered, and why").
//! Selection is by destination and first-seen time (`from` inclusive, `to` exclusive);
//! a list also by reason (the error class) and event id.

use crate::audit::{Actor, AuditType, Details, NewAuditEvent};
use crate::clock::rfc3339_ms;
use crate::config::Destination;
use crate::platforms::OutEvent;
use crate::store::codec::{DlqRecord, ErrorClass, RetryRecord, decode_event};
use crate::store::{DeliveryOp, Store, StoreError};

/// Which entries of one destination.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Only entries of this class (lists only).
    pub reason: Option<ErrorClass>,
    /// Only entries of the event with this `event_id` (lists only).
    pub event_id: Option<String>,
}

impl Selector {
    fn matches(&self, r: &DlqRecord) -> bool {
        self.from_ms.is_none_or(|f| r.first_seen_ms >= f)
            && self.to_ms.is_none_or(|t| r.first_seen_ms < t)
            && self.reason.is_none_or(|c| r.error_class == c)
            && self
                .event_id
                .as_ref()
                .is_none_or(|id| decode_event(&r.event).is_ok_and(|e| e.event.event_id == *id))
    }
}

/// How many entries one destination holds of one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonCount {
    pub destination_id: String,
    pub reason: ErrorClass,
    pub count: u64,
}

/// DLQ entries per destination and reason dead-lettered at or after `since_ms` (their
/// last attempt; every entry when None), sorted by destination, then reason in the
/// order of [`ErrorClass::ALL`]; only reasons that have entries.
pub fn summary(store: &Store, since_ms: Option<i64>) -> Result<Vec<ReasonCount>, StoreError> {
    Ok(store
        .view()?
        .dlq_counts(since_ms)?
        .into_iter()
        .map(|((destination_id, reason), count)| ReasonCount {
            destination_id,
            reason,
            count,
        })
        .collect())
}

/// One entry as the API shows it.
pub fn entry_json(dest_id: &str, id: u64, r: &DlqRecord) -> serde_json::Value {
    let event = match decode_event(&r.event) {
        Ok(stored) => crate::platforms::webhook::webhook_event_json(
            &OutEvent {
                event: &stored.event,
                merchant_id: &r.workspace,
                accepted_ms: stored.accepted_ms,
            },
            dest_id,
        ),
        Err(_) => serde_json::Value::Null,
    };
    serde_json::json!({
        "id": id.to_string(),
        "destination_id": dest_id,
        "event": event,
        "error_class": r.error_class.name(),
        "status": r.status,
        "response_body": r.response_body,
        "retries": r.retries,
        "first_seen_at": rfc3339_ms(r.first_seen_ms),
        "last_attempt_at": rfc3339_ms(r.last_attempt_ms),
    })
}

/// Entries with id greater than `after`, oldest first, at most `limit`; and the cursor
/// for the next page.
pub fn list(
    store: &Store,
    dest: &str,
    sel: &Selector,
    after: u64,
    limit: usize,
) -> Result<(Vec<serde_json::Value>, Option<String>), StoreError> {
    let (rows, next) = store
        .view()?
        .dlq_page(dest, after, limit, |r| sel.matches(r))?;
    let entries = rows
        .iter()
        .map(|(id, r)| entry_json(dest, *id, r))
        .collect();
    Ok((entries, next.map(|n| n.to_string())))
}

fn matching(
    store: &Store,
    dest: &str,
    sel: &Selector,
) -> Result<Vec<(u64, DlqRecord)>, StoreError> {
    Ok(store
        .view()?
        .dlq_page(dest, 0, usize::MAX, |r| sel.matches(r))?
        .0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCount {
    pub replayed: u64,
    pub expired: u64,
}

/// Moves matching entries still inside the platform's age limit back to the queue with
/// retry count 0, keeping their event ids, event times, first-seen times and DLQ ids.
/// A dry run only counts.
pub async fn replay(
    store: &Store,
    dest: &Destination,
    sel: &Selector,
    now_ms: i64,
    max_backlog_age_ms: i64,
    dry_run: bool,
    actor: Actor,
) -> Result<ReplayCount, StoreError> {
    let entries = matching(store, &dest.id, sel)?;
    let mut count = ReplayCount {
        replayed: 0,
        expired: 0,
    };
    let mut ops = Vec::new();
    for (id, r) in entries {
        let Ok(stored) = decode_event(&r.event) else {
            continue;
        };
        let too_old = match dest.policy.age_limit {
            Some(l) => now_ms - stored.event.event_time * 1000 > l.as_millis() as i64 - 10 * 60_000,
            None => now_ms - stored.accepted_ms > max_backlog_age_ms,
        };
        if too_old {
            count.expired += 1;
            continue;
        }
        count.replayed += 1;
        ops.push(DeliveryOp::RetryPut {
            dest: dest.id.clone(),
            due_ms: now_ms.max(0) as u64,
            seq: r.seq,
            record: RetryRecord {
                retries: 0,
                first_seen_ms: r.first_seen_ms,
                last_attempt_ms: r.last_attempt_ms,
                last_status: r.status,
                event_copy: Some(r.event.clone()),
                dlq_id: Some(id),
            },
        });
        ops.push(DeliveryOp::DlqDel {
            dest: dest.id.clone(),
            id,
        });
    }
    if !dry_run {
        ops.push(audit_op(
            AuditType::DlqReplay,
            &dest.id,
            actor,
            sel,
            now_ms,
            [
                ("replayed", count.replayed),
                ("expired_skipped", count.expired),
            ],
        ));
        store.delivery(ops).await?;
    }
    Ok(count)
}

/// Drops matching entries; returns how many.
pub async fn discard(
    store: &Store,
    dest: &str,
    sel: &Selector,
    now_ms: i64,
    actor: Actor,
) -> Result<u64, StoreError> {
    let entries = matching(store, dest, sel)?;
    let n = entries.len() as u64;
    let mut ops: Vec<DeliveryOp> = entries
        .into_iter()
        .map(|(id, _)| DeliveryOp::DlqDel {
            dest: dest.to_string(),
            id,
        })
        .collect();
    ops.push(audit_op(
        AuditType::DlqDiscard,
        dest,
        actor,
        sel,
        now_ms,
        [("discarded", n)],
    ));
    store.delivery(ops).await?;
    Ok(n)
}

/// The audit event of a replay or discard: who, which destination, which window, how many.
fn audit_op<const N: usize>(
    event_type: AuditType,
    dest: &str,
    actor: Actor,
    sel: &Selector,
    now_ms: i64,
    counts: [(&str, u64); N],
) -> DeliveryOp {
    let mut details = Details::new()
        .str("destination_id", dest)
        .opt_str("from", sel.from_ms.map(rfc3339_ms))
        .opt_str("to", sel.to_ms.map(rfc3339_ms));
    for (k, v) in counts {
        details = details.int(k, i64::try_from(v).unwrap_or(i64::MAX));
    }
    DeliveryOp::Audit(NewAuditEvent::record(
        event_type, dest, actor, details, now_ms,
    ))
}
