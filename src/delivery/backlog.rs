//! What a destination has pending (SPEC §10: queue depth, consumer lag, oldest pending
//! age, events expiring soon), for `/metrics`, the admin API and the auto-clear check.
//!
//! Pending = the log events from the destination's cursor that route to it and are not
//! already settled, plus its scheduled retries (the DLQ is not pending). The log part
//! comes from the summary the store keeps up to date in every commit
//! ([`crate::store::backlog`]): a paused destination with ten million events waiting
//! costs a scrape a few rows. Only the oldest pending event is looked up in the log
//! (it is usually the first one at the cursor). While the store recounts a summary
//! (after a routing change) the backlog is read whole instead ([`read_whole`], also
//! the reference the summary is tested against). Retries are read every time (they are
//! bounded by what was attempted).

use super::routes_to;
use crate::config::Destination;
use crate::store::backlog::DestRoute;
use crate::store::codec::{StoredEvent, decode_event};
use crate::store::{StoreError, View};

/// A destination's backlog at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backlog {
    pub depth: u64,
    /// Accept time of the oldest pending event (ms): the first pending log event (the
    /// log is in commit order) or an older retry.
    pub oldest_accepted_ms: Option<i64>,
    /// `event_time` of that event (s).
    pub oldest_event_time: Option<i64>,
    /// Pending events within `soon_ms` of their age limit.
    pub expiring_soon: u64,
    pub dlq_depth: u64,
}

/// How the store routes and counts a destination (see [`crate::store::backlog`]).
pub fn route_of(dest: &Destination) -> DestRoute {
    DestRoute {
        workspace: dest.workspace.clone(),
        events: dest.events.clone(),
        by_event_time: dest.policy.age_limit.is_some(),
    }
}

/// What decides expiry: the platform's age limit on `event_time`, else
/// `storage.max_backlog_age` on the accept time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Age limit in ms, on `event_time`.
    EventTime(i64),
    /// `storage.max_backlog_age` in ms, on the accept time.
    Accepted(i64),
}

impl Expiry {
    fn of(dest: &Destination, max_backlog_age_ms: i64) -> Self {
        match dest.policy.age_limit {
            Some(l) => Expiry::EventTime(l.as_millis() as i64),
            None => Expiry::Accepted(max_backlog_age_ms),
        }
    }

    /// The second an event is counted under (its `event_time`, or its accept second).
    fn second(self, e: &StoredEvent) -> i64 {
        match self {
            Expiry::EventTime(_) => e.event.event_time,
            Expiry::Accepted(_) => e.accepted_ms.div_euclid(1000),
        }
    }

    /// Events whose second is below this are within `soon_ms` of the limit at `now`.
    fn soon_below(self, now: i64, soon_ms: i64) -> i64 {
        let limit = match self {
            Expiry::EventTime(l) | Expiry::Accepted(l) => l,
        };
        // second*1000 < now - limit + soon, for whole seconds.
        let edge = now.saturating_sub(limit).saturating_add(soon_ms);
        edge.div_euclid(1000) + i64::from(edge.rem_euclid(1000) != 0)
    }
}

/// Log events read at a time.
const PAGE: usize = 1000;
/// How far the oldest pending event is looked for past the cursor.
const OLDEST_SEARCH: u64 = 10_000;

/// Reads `dest`'s backlog from its persisted summary (or whole while the store recounts
/// it).
pub fn read(
    view: &View,
    dest: &Destination,
    now: i64,
    soon_ms: i64,
    max_backlog_age_ms: i64,
) -> Result<Backlog, StoreError> {
    let route = route_of(dest);
    let Some(sum) = view
        .backlog_summary(&dest.id)?
        .filter(|s| s.walk.is_none() && s.routing == route.key())
    else {
        return read_whole(view, dest, None, now, soon_ms, max_backlog_age_ms);
    };
    let mut b = Backlog {
        dlq_depth: sum.dlq,
        depth: sum.depth,
        ..Backlog::default()
    };
    let Some(cursor) = view.cursor(&dest.id)? else {
        return Ok(b);
    };
    let expiry = Expiry::of(dest, max_backlog_age_ms);
    let soon_below = expiry.soon_below(now, soon_ms);
    b.expiring_soon = view.backlog_seconds_below(&dest.id, soon_below)?;
    if sum.depth > 0 {
        let settled = view.settled_from(&dest.id, cursor)?;
        let ws = dest.workspace.as_str();
        let head = view.head(ws)?;
        let end = head.min(cursor.saturating_add(OLDEST_SEARCH));
        let mut at = cursor;
        'search: while at < end {
            let page = view.log(ws, at, PAGE.min((end - at) as usize))?;
            let Some(last) = page.last().map(|(s, _)| *s) else {
                break;
            };
            for (seq, raw) in &page {
                if settled.contains(seq) {
                    continue;
                }
                if let Ok(e) = decode_event(raw)
                    && routes_to(dest, &e.event)
                {
                    b.oldest_accepted_ms = Some(e.accepted_ms);
                    b.oldest_event_time = Some(e.event.event_time);
                    break 'search;
                }
            }
            at = last + 1;
        }
        if b.oldest_accepted_ms.is_none()
            && let Some(first) = view.backlog_min_second(&dest.id)?
        {
            // Past the search: the oldest second the summary knows.
            match expiry {
                Expiry::Accepted(_) => b.oldest_accepted_ms = Some(first * 1000),
                Expiry::EventTime(_) => b.oldest_event_time = Some(first),
            }
        }
    }
    add_retries(view, dest, expiry, soon_below, &mut b)?;
    Ok(b)
}

/// Adds the scheduled retries: each is pending, maybe expiring, maybe the oldest.
fn add_retries(
    view: &View,
    dest: &Destination,
    expiry: Expiry,
    soon_below: i64,
    b: &mut Backlog,
) -> Result<(), StoreError> {
    for row in view.retries(&dest.id, usize::MAX)? {
        b.depth += 1;
        let Some(e) = view
            .retry_event(&dest.workspace, row.seq, &row.record)?
            .and_then(|raw| decode_event(&raw).ok())
        else {
            continue;
        };
        b.expiring_soon += u64::from(expiry.second(&e) < soon_below);
        if b.oldest_accepted_ms
            .is_none_or(|o| row.record.first_seen_ms < o)
        {
            b.oldest_accepted_ms = Some(row.record.first_seen_ms);
            b.oldest_event_time = Some(e.event.event_time);
        }
    }
    Ok(())
}

/// The whole backlog read from the log at `cursor` (None: the stored one): what the
/// summary must always equal.
pub fn read_whole(
    view: &View,
    dest: &Destination,
    cursor: Option<u64>,
    now: i64,
    soon_ms: i64,
    max_backlog_age_ms: i64,
) -> Result<Backlog, StoreError> {
    let mut b = Backlog {
        dlq_depth: view.dlq_count(&dest.id)?,
        ..Backlog::default()
    };
    let cursor = match cursor {
        Some(c) => c,
        None => match view.cursor(&dest.id)? {
            Some(c) => c,
            None => return Ok(b),
        },
    };
    let expiry = Expiry::of(dest, max_backlog_age_ms);
    let soon_below = expiry.soon_below(now, soon_ms);
    let settled = view.settled_from(&dest.id, cursor)?;
    let ws = dest.workspace.as_str();
    let head = view.head(ws)?;
    let mut at = cursor;
    while at < head {
        let page = view.log(ws, at, PAGE.min((head - at) as usize))?;
        let Some(last) = page.last().map(|(s, _)| *s) else {
            break;
        };
        for (seq, raw) in &page {
            if settled.contains(seq) {
                continue;
            }
            if let Ok(e) = decode_event(raw)
                && routes_to(dest, &e.event)
            {
                b.depth += 1;
                b.expiring_soon += u64::from(expiry.second(&e) < soon_below);
                if b.oldest_accepted_ms.is_none() {
                    b.oldest_accepted_ms = Some(e.accepted_ms);
                    b.oldest_event_time = Some(e.event.event_time);
                }
            }
        }
        at = last + 1;
    }
    add_retries(view, dest, expiry, soon_below, &mut b)?;
    Ok(b)
}
