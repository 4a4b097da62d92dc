//! Each destination's backlog summary, persisted and kept up to date by the commits
//! that change it, so the first `/metrics` scrape or `GET /v1/destinations` after a
//! restart reads a few rows instead of the backlog.
//!
//! The summary counts a destination's *pending log events*: events of its workspace
//! at or above its cursor, routed to it (its `events` filter and the event's own
//! `destinations` list), not already settled above the cursor. It holds their number,
//! their count per second (the second that decides expiry: `event_time` for platforms
//! with an age limit, the accept second otherwise) for "expiring soon", and the
//! destination's DLQ size. Retries are not in it (they are few, read when asked).
//!
//! Who changes it, in the same transaction as the change:
//! - an ingest commit adds each event it appends that routes to the destination;
//! - a cursor move subtracts the events it passes that were still pending (routed,
//!   not marked settled); a "settled above the cursor" mark subtracts its event;
//! - DLQ puts and deletes move the DLQ count; a purge drops the summary.
//!
//! Routing comes from the configuration ([`Routing`], set by the delivery engine on
//! every sync). A destination whose routing changed (or that has no summary yet) is
//! counted again by a *walk*: from its cursor to the log head, a slice per commit;
//! meanwhile appends are left to the walk and only passed events below it are
//! subtracted, so the count is exact when the walk ends. Readers fall back to a whole
//! read while a walk is under way.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::codec::decode_event;
use super::log;

/// `destination → Summary` (version byte + postcard).
pub const BACKLOG: TableDefinition<&str, &[u8]> = TableDefinition::new("backlog");
/// `(destination, second) → pending events of that second`.
pub const BACKLOG_SECONDS: TableDefinition<(&str, i64), u64> =
    TableDefinition::new("backlog_seconds");

const SUMMARY_V1: u8 = 1;

/// How one destination routes, as the configuration says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DestRoute {
    pub workspace: String,
    /// `events`: None = every event name.
    pub events: Option<Vec<String>>,
    /// Expiry by `event_time` (a platform age limit) rather than by accept time.
    pub by_event_time: bool,
}

impl DestRoute {
    /// What a summary remembers of the routing it was counted with.
    pub fn key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    pub fn routes(&self, dest: &str, name: &str, destinations: &[String]) -> bool {
        (destinations.is_empty() || destinations.iter().any(|d| d == dest))
            && self
                .events
                .as_ref()
                .is_none_or(|e| e.iter().any(|n| n == name))
    }

    /// The second an event is counted under.
    pub fn second(&self, accepted_ms: i64, event_time: i64) -> i64 {
        if self.by_event_time {
            event_time
        } else {
            accepted_ms.div_euclid(1000)
        }
    }
}

/// Every configured destination's routing, with a version that moves on each change.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub version: u64,
    pub dests: HashMap<String, DestRoute>,
    /// Each workspace's `silent_source.event_names` (counted per minute, issue 18);
    /// a change here does not move `version` (no summary depends on it).
    pub watched: HashMap<String, Vec<String>>,
}

/// Shared between the engine (writes it on sync) and the writer (reads it per commit).
pub type SharedRouting = Arc<ArcSwap<Routing>>;

/// One destination's summary as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The routing it was counted with ([`DestRoute`] hashed).
    pub routing: u64,
    pub depth: u64,
    pub dlq: u64,
    /// A walk under way: the next sequence to count.
    pub walk: Option<u64>,
}

pub fn decode_summary(b: &[u8]) -> Option<Summary> {
    match b.split_first() {
        Some((&SUMMARY_V1, rest)) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
}

fn encode_summary(s: &Summary) -> Vec<u8> {
    let mut out = vec![SUMMARY_V1];
    postcard::to_io(s, &mut out).expect("postcard to Vec");
    out
}

/// What an event contributes: its name, the destinations it names, its times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventMeta {
    pub name: String,
    pub destinations: Vec<String>,
    pub event_time: i64,
}

/// The tables a summary update touches, open in the commit's transaction.
pub struct Tables<'t> {
    pub events: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    pub cursors: redb::Table<'t, &'static str, u64>,
    pub settled: redb::Table<'t, (&'static str, u64), ()>,
    pub dlq: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    pub summary: redb::Table<'t, &'static str, &'static [u8]>,
    pub seconds: redb::Table<'t, (&'static str, i64), u64>,
}

/// Events counted per commit by a walk.
const WALK_SLICE: usize = 20_000;

/// The writer's side: summaries touched in this commit, written back at its end.
#[derive(Default)]
pub struct Backlogs {
    pub(super) routing: SharedRouting,
    version: Option<u64>,
    cache: HashMap<String, Option<Summary>>,
    deltas: HashMap<(String, i64), i64>,
    /// Destinations with a walk under way.
    walking: BTreeSet<String>,
    /// Workspaces that had events appended before any routing was known (the ingest
    /// journal replayed at open, before the delivery engine's first sync): their
    /// destinations' summaries did not count them and are counted again by a walk.
    blind: BTreeSet<String>,
}

fn corrupt(what: &str) -> redb::Error {
    redb::Error::Corrupted(format!("backlog summary: {what}"))
}

impl Backlogs {
    pub fn new(routing: SharedRouting) -> Self {
        Backlogs {
            routing,
            ..Backlogs::default()
        }
    }

    /// Forgets what it knew of the file (at every open).
    pub fn reset(&mut self) {
        self.version = None;
        self.cache.clear();
        self.deltas.clear();
        self.walking.clear();
    }

    /// Whether walks are under way (the writer keeps committing until they end).
    pub fn busy(&self) -> bool {
        !self.walking.is_empty()
    }

    fn load(&mut self, t: &Tables, dest: &str) -> Result<Option<Summary>, redb::Error> {
        if let Some(s) = self.cache.get(dest) {
            return Ok(s.clone());
        }
        let s = match t.summary.get(dest)? {
            Some(v) => Some(decode_summary(v.value()).ok_or_else(|| corrupt(dest))?),
            None => None,
        };
        self.cache.insert(dest.to_string(), s.clone());
        Ok(s)
    }

    fn put(&mut self, dest: &str, s: Option<Summary>) {
        match &s {
            Some(s) if s.walk.is_some() => {
                self.walking.insert(dest.to_string());
            }
            _ => {
                self.walking.remove(dest);
            }
        }
        self.cache.insert(dest.to_string(), s);
    }

    fn add(&mut self, dest: &str, second: i64, n: i64) {
        *self.deltas.entry((dest.to_string(), second)).or_default() += n;
    }

    /// Starts a commit: a routing change resets the summaries it affects.
    pub fn begin(&mut self, t: &mut Tables) -> Result<(), redb::Error> {
        let routing = self.routing.load_full();
        // Version 0: no configuration yet (the store opens before delivery starts);
        // nothing is counted against an empty routing.
        if routing.version == 0 || self.version == Some(routing.version) {
            return Ok(());
        }
        self.version = Some(routing.version);
        let blind = std::mem::take(&mut self.blind);
        let stored: Vec<(String, Option<Summary>)> = t
            .summary
            .iter()?
            .map(|r| r.map(|(k, v)| (k.value().to_string(), decode_summary(v.value()))))
            .collect::<Result<_, _>>()?;
        for (dest, s) in &stored {
            match (routing.dests.get(dest), s) {
                (None, _) => self.drop_summary(t, dest)?,
                (Some(r), Some(s)) if s.routing == r.key() && !blind.contains(&r.workspace) => {
                    if s.walk.is_some() {
                        self.walking.insert(dest.clone());
                    }
                }
                (Some(_), _) => self.restart_walk(t, dest)?,
            }
        }
        for dest in routing.dests.keys() {
            if !stored.iter().any(|(d, _)| d == dest) && t.cursors.get(dest.as_str())?.is_some() {
                self.restart_walk(t, dest)?;
            }
        }
        Ok(())
    }

    fn drop_summary(&mut self, t: &mut Tables, dest: &str) -> Result<(), redb::Error> {
        t.seconds
            .retain_in((dest, i64::MIN)..=(dest, i64::MAX), |_, _| false)?;
        self.deltas.retain(|(d, _), _| d != dest);
        self.put(dest, None);
        Ok(())
    }

    /// Counts `dest` again from its cursor (or from where it will start).
    fn restart_walk(&mut self, t: &mut Tables, dest: &str) -> Result<(), redb::Error> {
        let routing = self.routing.load_full();
        let Some(route) = routing.dests.get(dest) else {
            return self.drop_summary(t, dest);
        };
        self.drop_summary(t, dest)?;
        let from = t.cursors.get(dest)?.map(|v| v.value());
        let dlq = t.dlq.range((dest, 0u64)..=(dest, u64::MAX))?.count() as u64;
        self.put(
            dest,
            Some(Summary {
                routing: route.key(),
                depth: 0,
                dlq,
                walk: Some(from.unwrap_or(1)),
            }),
        );
        Ok(())
    }

    /// A cursor move from where it is to `next`: the events passed that were pending.
    /// Call before the move is applied.
    pub fn on_cursor(&mut self, t: &mut Tables, dest: &str, next: u64) -> Result<(), redb::Error> {
        let Some(old) = t.cursors.get(dest)?.map(|v| v.value()) else {
            // The destination's first position: count it from there.
            return self.restart_walk_at(t, dest, next);
        };
        let Some(mut s) = self.load(t, dest)? else {
            return self.restart_walk_at(t, dest, next);
        };
        let routing = self.routing.load_full();
        let Some(route) = routing.dests.get(dest) else {
            return Ok(());
        };
        let upto = match s.walk {
            Some(w) => next.min(w),
            None => next,
        };
        let ws = route.workspace.clone();
        let mut at = old;
        while at < upto {
            let page = log::read(&t.events, &ws, at, WALK_SLICE.min((upto - at) as usize))?;
            let Some(last) = page.last().map(|(s, _)| *s) else {
                break;
            };
            for (seq, raw) in page {
                if seq >= upto {
                    break;
                }
                if t.settled.get((dest, seq))?.is_some() {
                    continue;
                }
                if let Ok(e) = decode_event(&raw)
                    && route.routes(dest, &e.event.event_name, &e.event.destinations)
                {
                    s.depth = s.depth.saturating_sub(1);
                    self.add(dest, route.second(e.accepted_ms, e.event.event_time), -1);
                }
            }
            at = last + 1;
        }
        if next < old {
            // A cursor never moves back; if it did, count again.
            return self.restart_walk_at(t, dest, next);
        }
        self.put(dest, Some(s));
        Ok(())
    }

    fn restart_walk_at(&mut self, t: &mut Tables, dest: &str, at: u64) -> Result<(), redb::Error> {
        self.restart_walk(t, dest)?;
        if let Some(Some(s)) = self.cache.get_mut(dest) {
            s.walk = Some(at);
        }
        Ok(())
    }

    /// Events settled above the cursor: no longer pending.
    pub fn on_settled_above(
        &mut self,
        t: &mut Tables,
        dest: &str,
        seqs: &[u64],
    ) -> Result<(), redb::Error> {
        let Some(mut s) = self.load(t, dest)? else {
            return Ok(());
        };
        let routing = self.routing.load_full();
        let Some(route) = routing.dests.get(dest) else {
            return Ok(());
        };
        for seq in seqs {
            if s.walk.is_some_and(|w| *seq >= w) || t.settled.get((dest, *seq))?.is_some() {
                continue;
            }
            if let Some(raw) = log::get(&t.events, &route.workspace, *seq)?
                && let Ok(e) = decode_event(&raw)
                && route.routes(dest, &e.event.event_name, &e.event.destinations)
            {
                s.depth = s.depth.saturating_sub(1);
                self.add(dest, route.second(e.accepted_ms, e.event.event_time), -1);
            }
        }
        self.put(dest, Some(s));
        Ok(())
    }

    /// A DLQ entry added (+1) or removed (-1).
    pub fn on_dlq(&mut self, t: &Tables, dest: &str, n: i64) -> Result<(), redb::Error> {
        if let Some(mut s) = self.load(t, dest)? {
            s.dlq = s.dlq.saturating_add_signed(n);
            self.put(dest, Some(s));
        }
        Ok(())
    }

    pub fn on_purge(&mut self, t: &mut Tables, dest: &str) -> Result<(), redb::Error> {
        self.drop_summary(t, dest)
    }

    /// Events appended to `ws` from sequence `first`, one meta each. Returns how many
    /// route to each destination of the workspace (those with any), summary or not.
    pub fn on_append(
        &mut self,
        t: &Tables,
        ws: &str,
        first: u64,
        accepted_ms: i64,
        metas: &[EventMeta],
    ) -> Result<Vec<(String, u64)>, redb::Error> {
        let routing = self.routing.load_full();
        if routing.version == 0 && !metas.is_empty() {
            self.blind.insert(ws.to_string());
        }
        let mut routed = Vec::new();
        for (dest, route) in routing.dests.iter().filter(|(_, r)| r.workspace == ws) {
            let hits: Vec<&EventMeta> = metas
                .iter()
                .filter(|m| route.routes(dest, &m.name, &m.destinations))
                .collect();
            if !hits.is_empty() {
                routed.push((dest.clone(), hits.len() as u64));
            }
            let Some(mut s) = self.load(t, dest)? else {
                continue;
            };
            if s.walk.is_some_and(|w| w <= first) {
                continue;
            }
            for m in hits {
                s.depth += 1;
                self.add(dest, route.second(accepted_ms, m.event_time), 1);
            }
            self.put(dest, Some(s));
        }
        Ok(routed)
    }

    /// One slice of every walk under way.
    pub fn walk(&mut self, t: &mut Tables) -> Result<(), redb::Error> {
        let routing = self.routing.load_full();
        let walking: Vec<String> = self.walking.iter().cloned().collect();
        for dest in walking {
            let Some(route) = routing.dests.get(&dest) else {
                self.drop_summary(t, &dest)?;
                continue;
            };
            let Some(mut s) = self.load(t, &dest)? else {
                self.walking.remove(&dest);
                continue;
            };
            let Some(mut at) = s.walk else {
                self.walking.remove(&dest);
                continue;
            };
            let cursor = t.cursors.get(dest.as_str())?.map_or(at, |v| v.value());
            let head = log::head(&t.events, &route.workspace)?;
            let page = log::read(&t.events, &route.workspace, at, WALK_SLICE)?;
            for (seq, raw) in &page {
                at = seq + 1;
                if *seq < cursor || t.settled.get((dest.as_str(), *seq))?.is_some() {
                    continue;
                }
                if let Ok(e) = decode_event(raw)
                    && route.routes(&dest, &e.event.event_name, &e.event.destinations)
                {
                    s.depth += 1;
                    self.add(&dest, route.second(e.accepted_ms, e.event.event_time), 1);
                }
            }
            s.walk = (page.len() == WALK_SLICE && at < head).then_some(at.max(cursor));
            self.put(&dest, Some(s));
        }
        Ok(())
    }

    /// Writes every touched summary and second count.
    pub fn finish(&mut self, t: &mut Tables) -> Result<(), redb::Error> {
        for ((dest, second), n) in self.deltas.drain() {
            if n == 0 {
                continue;
            }
            let key = (dest.as_str(), second);
            let cur = t.seconds.get(key)?.map_or(0, |v| v.value());
            let new = cur.saturating_add_signed(n);
            if new == 0 {
                t.seconds.remove(key)?;
            } else {
                t.seconds.insert(key, new)?;
            }
        }
        for (dest, s) in self.cache.drain() {
            match s {
                Some(s) => {
                    t.summary
                        .insert(dest.as_str(), encode_summary(&s).as_slice())?;
                }
                None => {
                    t.summary.remove(dest.as_str())?;
                }
            }
        }
        Ok(())
    }

    /// A failed commit: nothing of it happened.
    pub fn abort(&mut self) {
        self.cache.clear();
        self.deltas.clear();
        self.version = None;
    }
}
