//! What a destination has pending (SPEC §10: queue depth, consumer lag, oldest pending
//! age, events expiring soon), read from the store.
//!
//! Pending = the log events from the destination's cursor that route to it, plus its
//! scheduled retries (the DLQ is not pending). Reading a large backlog whole on every
//! scrape costs about a microsecond per event, so the log part is kept as a
//! [`LogSummary`] per destination and brought up to date incrementally: events appended
//! since the last read are added, events the cursor has passed are subtracted (a read
//! of the delivered range only). A paused destination with a million events waiting
//! costs a scrape only what arrived since the last one. The summary is read again whole
//! when it cannot be updated (routing or age limit changed by a reload, the cursor moved
//! back, or the range to subtract was already trimmed from the log). Retries are read
//! every time (they are bounded by what was attempted).

use std::collections::BTreeMap;

use super::routes_to;
use crate::config::Destination;
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

/// The routed log events of one destination between `from` (its cursor when last
/// read) and `upto` (the log head then).
#[derive(Debug, Clone)]
pub struct LogSummary {
    routing: Vec<String>,
    expiry: Expiry,
    from: u64,
    upto: u64,
    depth: u64,
    /// Pending events per second (see [`Expiry::second`]).
    seconds: BTreeMap<i64, u64>,
    /// The first routed event at or after `from`: (seq, accept ms, event time).
    first: Option<(u64, i64, i64)>,
}

fn routing_key(dest: &Destination) -> Vec<String> {
    let mut k = vec![dest.id.clone(), dest.workspace.clone()];
    if let Some(ev) = &dest.events {
        k.push("\u{0}events".into());
        k.extend(ev.iter().cloned());
    }
    k
}

impl LogSummary {
    fn empty(dest: &Destination, expiry: Expiry, at: u64) -> Self {
        LogSummary {
            routing: routing_key(dest),
            expiry,
            from: at,
            upto: at,
            depth: 0,
            seconds: BTreeMap::new(),
            first: None,
        }
    }

    fn add(&mut self, seq: u64, e: &StoredEvent) {
        self.depth += 1;
        *self.seconds.entry(self.expiry.second(e)).or_default() += 1;
        if self.first.is_none_or(|(s, _, _)| seq < s) {
            self.first = Some((seq, e.accepted_ms, e.event.event_time));
        }
    }

    fn remove(&mut self, e: &StoredEvent) {
        self.depth = self.depth.saturating_sub(1);
        let k = self.expiry.second(e);
        if let Some(n) = self.seconds.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.seconds.remove(&k);
            }
        }
    }

    fn expiring(&self, now: i64, soon_ms: i64) -> u64 {
        let below = self.expiry.soon_below(now, soon_ms);
        self.seconds.range(..below).map(|(_, n)| n).sum()
    }
}

/// Reads `dest`'s backlog at `cursor` (None: its stored cursor), updating `cache` (the
/// summary of the last read, if any) instead of reading the whole log when it can.
pub fn read(
    view: &View,
    dest: &Destination,
    cursor: Option<u64>,
    cache: &mut Option<LogSummary>,
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
            None => {
                *cache = None;
                return Ok(b);
            }
        },
    };
    let ws = dest.workspace.as_str();
    let head = view.head(ws)?;
    let expiry = Expiry::of(dest, max_backlog_age_ms);
    let reusable = cache.take().filter(|c| {
        c.expiry == expiry && c.routing == routing_key(dest) && c.from <= cursor && c.upto <= head
    });
    let mut sum = match reusable {
        Some(c) => match advance(view, dest, c, cursor)? {
            Some(c) => c,
            None => LogSummary::empty(dest, expiry, cursor),
        },
        None => LogSummary::empty(dest, expiry, cursor),
    };
    // What was appended since, a page at a time.
    while head > sum.upto {
        let page = view.log(ws, sum.upto, PAGE.min((head - sum.upto) as usize))?;
        let Some(last) = page.last().map(|(s, _)| *s) else {
            break;
        };
        for (seq, raw) in page {
            if let Ok(e) = decode_event(&raw)
                && routes_to(dest, &e.event)
            {
                sum.add(seq, &e);
            }
        }
        sum.upto = last + 1;
    }
    sum.upto = sum.upto.max(head);
    b.depth = sum.depth;
    b.expiring_soon = sum.expiring(now, soon_ms);
    if let Some((_, accepted, event_time)) = sum.first {
        b.oldest_accepted_ms = Some(accepted);
        b.oldest_event_time = Some(event_time);
    }
    *cache = Some(sum);

    let soon_below = expiry.soon_below(now, soon_ms);
    for row in view.retries(&dest.id, usize::MAX)? {
        b.depth += 1;
        let Some(e) = view
            .retry_event(ws, row.seq, &row.record)?
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
    Ok(b)
}

/// Log events read at a time.
const PAGE: usize = 1000;

/// Moves a summary's start from `c.from` to `cursor` by subtracting the routed events in
/// between. None when that range is no longer in the log (trimmed): read again whole.
fn advance(
    view: &View,
    dest: &Destination,
    mut c: LogSummary,
    cursor: u64,
) -> Result<Option<LogSummary>, StoreError> {
    if cursor == c.from {
        return Ok(Some(c));
    }
    let ws = dest.workspace.as_str();
    // Only the part already summed (below `upto`) is subtracted.
    let end = cursor.min(c.upto);
    let mut at = c.from;
    while at < end {
        let gone = view.log(ws, at, PAGE.min((end - at) as usize))?;
        if gone.first().is_none_or(|(s, _)| *s != at)
            || gone.windows(2).any(|w| w[1].0 != w[0].0 + 1)
        {
            return Ok(None);
        }
        for (_, raw) in &gone {
            if let Ok(e) = decode_event(raw)
                && routes_to(dest, &e.event)
            {
                c.remove(&e);
            }
        }
        at += gone.len() as u64;
    }
    c.from = cursor;
    if cursor > c.upto {
        // Passed what was summed: nothing of it is pending (it must be empty now).
        c.upto = cursor;
        c.depth = 0;
        c.seconds.clear();
    }
    if c.first.is_some_and(|(s, _, _)| s < cursor) {
        // The first pending event is the first routed one from the new cursor.
        c.first = None;
        let mut at = cursor;
        while at < c.upto {
            let page = view.log(ws, at, PAGE.min((c.upto - at) as usize))?;
            let Some(last) = page.last().map(|(s, _)| *s) else {
                break;
            };
            if let Some((seq, e)) = page.iter().find_map(|(seq, raw)| {
                decode_event(raw)
                    .ok()
                    .filter(|e| routes_to(dest, &e.event))
                    .map(|e| (*seq, e))
            }) {
                c.first = Some((seq, e.accepted_ms, e.event.event_time));
                break;
            }
            at = last + 1;
        }
    }
    Ok(Some(c))
}

/// The whole backlog read from the log, no summary kept: the reference the incremental
/// summary is tested against.
pub fn read_whole(
    view: &View,
    dest: &Destination,
    cursor: Option<u64>,
    now: i64,
    soon_ms: i64,
    max_backlog_age_ms: i64,
) -> Result<Backlog, StoreError> {
    read(
        view,
        dest,
        cursor,
        &mut None,
        now,
        soon_ms,
        max_backlog_age_ms,
    )
}
