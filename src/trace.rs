//! The event trace: "was order 1234 sent to Meta, and what did Meta say?"
//!
//! From an event id (and a workspace, and optionally an event name) to each stored
//! event with that id and, per destination of its workspace, its fate. It reads what
//! the store already keeps: the dedup index says where in the log the event is
//! ([`crate::store::dedup::Mark`]), the log says what it was while it is not trimmed,
//! the event history ([`crate::store::history`]) what became of it, the cursor and the
//! worker's snapshot whether it still waits. So it answers for every event inside
//! `storage.dedup_window`, delivered or not, after a restart and after the log behind
//! it was trimmed.

use serde::Serialize;

use crate::clock::rfc3339_ms;
use crate::config::{Config, Destination};
use crate::delivery::{Engine, routes_to};
use crate::event::NormalizedEvent;
use crate::store::codec::{DestMode, ErrorClass, decode_event};
use crate::store::dedup::{DedupIndex, NO_SEQ};
use crate::store::history::{self, HistoryFate, HistoryRecord};
use crate::store::{Store, StoreError, View, dedup_digest};

/// Events counted one by one ahead of a queued one; past this, `ahead` is a floor.
const AHEAD_SCAN: usize = 50_000;

#[derive(Debug, Serialize)]
pub struct Trace {
    pub workspace: String,
    pub event_id: String,
    pub events: Vec<TracedEvent>,
}

#[derive(Debug, Serialize)]
pub struct TracedEvent {
    pub event_name: String,
    /// RFC 3339; None once the log is trimmed and no destination recorded it.
    pub event_time: Option<String>,
    pub accepted_at: String,
    pub destinations: Vec<DestFate>,
}

#[derive(Debug, Default, Serialize)]
pub struct DestFate {
    pub destination_id: String,
    pub platform: String,
    /// `queued`, `in_flight`, `delivered`, `retrying`, `dead_lettered`, `expired`,
    /// `unsendable` or `not_routed`.
    pub fate: &'static str,
    /// Queued: the destination's state (`active`, `paused`, `probing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_state: Option<&'static str>,
    /// Queued: events routed to the destination ahead of this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ahead: Option<u64>,
    /// `ahead` is a floor (more were ahead than were counted).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ahead_at_least: bool,
    /// When the fate was settled (delivered, dead-lettered…; retrying: the last
    /// attempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Dead-lettered: the DLQ class (`rejected`, `retries_exhausted`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlq_id: Option<u64>,
    /// Not routed: why (the destination's events filter, the event's destinations
    /// list, or passed without a recorded fate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The workspace has used more event names than are remembered: name it.
    #[error("this workspace has used more than {0} event names; give event_name")]
    NeedName(usize),
}

/// Every stored event of `ws` with `event_id` (under `name`, or under each name the
/// workspace has used), newest acceptance first; empty when the store knows none.
#[allow(clippy::too_many_arguments)]
pub fn trace(
    cfg: &Config,
    engine: &Engine,
    store: &Store,
    index: &DedupIndex,
    ws: &str,
    event_id: &str,
    name: Option<&str>,
    now_ms: i64,
) -> Result<Trace, TraceError> {
    let view = store.view()?;
    let names: Vec<String> = match name {
        Some(n) => vec![n.to_string()],
        None => {
            let names = view.event_names(ws)?;
            if names.len() >= history::MAX_NAMES {
                return Err(TraceError::NeedName(history::MAX_NAMES));
            }
            names
        }
    };
    let digests: Vec<u128> = names
        .iter()
        .map(|n| dedup_digest(ws, n, event_id))
        .collect();
    let cutoff = now_ms - index.window_ms();
    let marks = index.marks(&digests, cutoff, || store.view())?;
    let mut events = Vec::new();
    for (name, mark) in names.iter().zip(marks) {
        let Some(mark) = mark else { continue };
        events.push(one(
            cfg, engine, &view, ws, name, mark.ms, mark.seq, now_ms,
        )?);
    }
    events.sort_by(|a, b| b.accepted_at.cmp(&a.accepted_at));
    Ok(Trace {
        workspace: ws.to_string(),
        event_id: event_id.to_string(),
        events,
    })
}

#[allow(clippy::too_many_arguments)]
fn one(
    cfg: &Config,
    engine: &Engine,
    view: &View,
    ws: &str,
    name: &str,
    accepted_ms: i64,
    seq: u64,
    now_ms: i64,
) -> Result<TracedEvent, TraceError> {
    // The event itself, while the log holds it.
    let event: Option<NormalizedEvent> = if seq == NO_SEQ {
        None
    } else {
        view.log(ws, seq, 1)?
            .into_iter()
            .find(|(s, _)| *s == seq)
            .and_then(|(_, raw)| decode_event(&raw).ok())
            .map(|e| e.event)
    };
    let mut rows: Vec<(String, HistoryRecord)> = Vec::new();
    if seq != NO_SEQ {
        for d in cfg.destinations.iter().filter(|d| d.workspace == ws) {
            if let Some(r) = view.history(&d.id, seq, accepted_ms)? {
                rows.push((d.id.clone(), r));
            }
        }
    }
    let event_time = event
        .as_ref()
        .map(|e| e.event_time)
        .or_else(|| rows.first().map(|(_, r)| r.event_time))
        .map(|s| rfc3339_ms(s.saturating_mul(1000)));
    let mut destinations = Vec::new();
    for d in cfg.destinations.iter().filter(|d| d.workspace == ws) {
        let row = rows.iter().find(|(id, _)| *id == d.id).map(|(_, r)| r);
        destinations.push(fate_at(engine, view, d, seq, event.as_ref(), row, now_ms)?);
    }
    Ok(TracedEvent {
        event_name: name.to_string(),
        event_time,
        accepted_at: rfc3339_ms(accepted_ms),
        destinations,
    })
}

fn fate_at(
    engine: &Engine,
    view: &View,
    d: &Destination,
    seq: u64,
    event: Option<&NormalizedEvent>,
    row: Option<&HistoryRecord>,
    _now_ms: i64,
) -> Result<DestFate, TraceError> {
    let mut f = DestFate {
        destination_id: d.id.clone(),
        platform: d.platform.name().to_string(),
        ..DestFate::default()
    };
    if let Some(ev) = event
        && !routes_to(d, ev)
    {
        f.fate = "not_routed";
        f.reason = Some(
            if ev.destinations.is_empty() || ev.destinations.contains(&d.id) {
                "the destination's events filter"
            } else {
                "the event's destinations list"
            },
        );
        return Ok(f);
    }
    if let Some(r) = row {
        f.at = Some(rfc3339_ms(r.at_ms));
        f.attempts = Some(r.attempts);
        f.status = r.status;
        f.request_id.clone_from(&r.request_id);
        match &r.fate {
            HistoryFate::Delivered => f.fate = "delivered",
            HistoryFate::Retrying { due_ms } => {
                f.fate = "retrying";
                f.next_attempt_at = Some(rfc3339_ms(*due_ms as i64));
                f.last_error.clone_from(&r.error);
            }
            HistoryFate::DeadLettered { class, dlq_id } => {
                f.fate = match class {
                    ErrorClass::Expired => "expired",
                    ErrorClass::Unsendable => "unsendable",
                    _ => "dead_lettered",
                };
                f.class = Some(class.name());
                f.dlq_id = *dlq_id;
                f.last_error.clone_from(&r.error);
            }
        }
        return Ok(f);
    }
    let cursor = view.cursor(&d.id)?;
    let snap = engine.snapshot(&d.id);
    let below_cursor = cursor.is_some_and(|c| seq < c);
    if seq == NO_SEQ || below_cursor {
        // Passed without a history row: not for this destination (its filter said no
        // and the log is trimmed, so it cannot be asked again), accepted before the
        // destination was added, or settled before this store kept history.
        f.fate = "not_routed";
        f.reason = Some(
            "passed by the destination without a recorded fate: not routed to it, accepted before it was added, or settled before event history was kept",
        );
        return Ok(f);
    }
    if snap.as_ref().is_some_and(|s| seq < s.next_read) {
        f.fate = "in_flight";
        return Ok(f);
    }
    f.fate = "queued";
    let mode = view.dest_state(&d.id)?.map_or(DestMode::Active, |s| s.mode);
    f.destination_state = Some(mode.name());
    // Routed events between the cursor (or the log's start) and this one.
    let ws = d.workspace.as_str();
    let mut from = cursor.unwrap_or(0);
    let mut ahead = 0u64;
    let mut scanned = 0usize;
    'scan: while from < seq {
        let batch = view.log(ws, from, 1_000)?;
        if batch.is_empty() {
            break;
        }
        for (s, raw) in batch {
            if s >= seq {
                break 'scan;
            }
            from = s + 1;
            scanned += 1;
            if decode_event(&raw).is_ok_and(|e| routes_to(d, &e.event)) {
                ahead += 1;
            }
            if scanned >= AHEAD_SCAN {
                f.ahead_at_least = true;
                break 'scan;
            }
        }
    }
    f.ahead = Some(ahead);
    Ok(f)
}
