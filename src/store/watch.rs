//! What the watches count (issue 18), kept in the store so a restart keeps them:
//!
//! - `source_counts`: `(workspace, event name, minute) → events accepted`, the name `""`
//!   for the workspace's total and a name only where its `silent_source.event_names`
//!   lists it. Kept [`SOURCE_KEEP_MINUTES`] (7 days of baseline and the window).
//! - `accuracy`: `(destination, hour) → Accuracy`: of the events accepted in that hour
//!   and routed to the destination, how many were delivered, dead-lettered (by reason)
//!   and delivered by a DLQ replay. Kept [`ACCURACY_KEEP_HOURS`].
//!
//! Both are written by the commits that make them true — an ingest commit counts what
//! it appends, a delivery commit what it settles — so they are exact across a crash.
//! Each commit adds a handful of rows (one per workspace, watched name, destination
//! and hour it touched), never one per event.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::backlog::EventMeta;
use super::backlog::Routing;

pub const SOURCE_COUNTS: TableDefinition<(&str, &str, i64), u64> =
    TableDefinition::new("source_counts");
pub const ACCURACY: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("accuracy");

/// 7 days and the longest window (6 h), in minutes.
pub const SOURCE_KEEP_MINUTES: i64 = 7 * 1440 + 6 * 60;
/// 35 days, in hours.
pub const ACCURACY_KEEP_HOURS: i64 = 35 * 24;

const ACCURACY_V1: u8 = 1;

/// One destination's hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Events accepted in the hour and routed to the destination.
    pub routed: u64,
    /// Of those, delivered (the first time round).
    pub delivered: u64,
    /// Dead-lettered, by reason (`rejected`, `expired`, …).
    pub dead_lettered: BTreeMap<String, u64>,
    /// Delivered by a DLQ replay (they are also counted under `dead_lettered`).
    pub recovered: u64,
}

impl Accuracy {
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }

    /// Routed and not yet delivered or dead-lettered.
    pub fn pending(&self) -> u64 {
        self.routed
            .saturating_sub(self.delivered + self.dead_lettered_total())
    }

    /// Delivered (replays included) over routed; None when nothing was routed.
    pub fn share_delivered(&self) -> Option<f64> {
        (self.routed > 0)
            .then(|| ((self.delivered + self.recovered) as f64 / self.routed as f64).min(1.0))
    }

    fn add(&mut self, o: &Accuracy) {
        self.routed += o.routed;
        self.delivered += o.delivered;
        self.recovered += o.recovered;
        for (k, v) in &o.dead_lettered {
            *self.dead_lettered.entry(k.clone()).or_default() += v;
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = vec![ACCURACY_V1];
        b.extend(postcard::to_allocvec(self).unwrap_or_default());
        b
    }

    fn decode(b: &[u8]) -> Option<Accuracy> {
        match b.split_first() {
            Some((&ACCURACY_V1, rest)) => postcard::from_bytes(rest).ok(),
            _ => None,
        }
    }
}

pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(3_600_000)
}

/// What one commit adds, gathered before it is written.
#[derive(Debug, Default)]
pub struct Tally {
    source: HashMap<(String, String, i64), u64>,
    accuracy: HashMap<(String, i64), Accuracy>,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        self.source.is_empty() && self.accuracy.is_empty()
    }

    /// Events appended to `ws` at `accepted_ms`: the workspace's minute, its watched
    /// names' minutes, and the hour of each destination they route to (`routed`, as
    /// the backlog summary counted them in the same commit).
    pub fn appended(
        &mut self,
        routing: &Routing,
        ws: &str,
        accepted_ms: i64,
        metas: &[EventMeta],
        routed: Vec<(String, u64)>,
    ) {
        let minute = minute_of(accepted_ms);
        *self
            .source
            .entry((ws.to_string(), String::new(), minute))
            .or_default() += metas.len() as u64;
        if let Some(names) = routing.watched.get(ws) {
            for m in metas {
                if names.contains(&m.name) {
                    *self
                        .source
                        .entry((ws.to_string(), m.name.clone(), minute))
                        .or_default() += 1;
                }
            }
        }
        let hour = hour_of(accepted_ms);
        for (dest, n) in routed {
            self.accuracy.entry((dest, hour)).or_default().routed += n;
        }
    }

    /// One event of `dest` accepted at `accepted_ms` settled for good.
    pub fn settled(&mut self, dest: &str, accepted_ms: i64, fate: Settled<'_>) {
        let a = self
            .accuracy
            .entry((dest.to_string(), hour_of(accepted_ms)))
            .or_default();
        match fate {
            Settled::Delivered => a.delivered += 1,
            Settled::Recovered => a.recovered += 1,
            Settled::DeadLettered(reason) => {
                *a.dead_lettered.entry(reason.to_string()).or_default() += 1;
            }
        }
    }

    /// Writes the tally, and drops rows past their keep of the series it touched.
    pub fn write(
        self,
        source: &mut redb::Table<(&str, &str, i64), u64>,
        accuracy: &mut redb::Table<(&str, i64), &[u8]>,
    ) -> Result<(), redb::Error> {
        for ((ws, name, minute), n) in self.source {
            let old = source
                .get((ws.as_str(), name.as_str(), minute))?
                .map_or(0, |v| v.value());
            let fresh = old == 0;
            source.insert((ws.as_str(), name.as_str(), minute), old + n)?;
            if fresh {
                // A new minute: what fell out of the keep goes (usually one row).
                let cutoff = minute - SOURCE_KEEP_MINUTES;
                source.retain_in(
                    (ws.as_str(), name.as_str(), i64::MIN)..(ws.as_str(), name.as_str(), cutoff),
                    |_, _| false,
                )?;
            }
        }
        for ((dest, hour), add) in self.accuracy {
            let old = accuracy
                .get((dest.as_str(), hour))?
                .map(|v| v.value().to_vec());
            let fresh = old.is_none();
            let mut a = old
                .as_deref()
                .and_then(Accuracy::decode)
                .unwrap_or_default();
            a.add(&add);
            accuracy.insert((dest.as_str(), hour), a.encode().as_slice())?;
            if fresh {
                let cutoff = hour - ACCURACY_KEEP_HOURS;
                accuracy.retain_in(
                    (dest.as_str(), i64::MIN)..(dest.as_str(), cutoff),
                    |_, _| false,
                )?;
            }
        }
        Ok(())
    }
}

/// How an event left a destination's backlog for good.
#[derive(Debug, Clone, Copy)]
pub enum Settled<'a> {
    Delivered,
    /// Delivered by a DLQ replay.
    Recovered,
    DeadLettered(&'a str),
}

/// Events of `ws` (`name`, or `""` for all) accepted in minutes `from..to`.
pub fn source_sum(
    txn: &redb::ReadTransaction,
    ws: &str,
    name: &str,
    from: i64,
    to: i64,
) -> Result<u64, redb::Error> {
    let t = match txn.open_table(SOURCE_COUNTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut sum = 0;
    for row in t.range((ws, name, from)..(ws, name, to))? {
        sum += row?.1.value();
    }
    Ok(sum)
}

/// The first minute with a count of `ws` / `name` still kept (None: none yet).
pub fn source_first_minute(
    txn: &redb::ReadTransaction,
    ws: &str,
    name: &str,
) -> Result<Option<i64>, redb::Error> {
    let t = match txn.open_table(SOURCE_COUNTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let first = t.range((ws, name, i64::MIN)..=(ws, name, i64::MAX))?.next();
    Ok(match first {
        Some(row) => Some(row?.0.value().2),
        None => None,
    })
}

/// `dest`'s hours `from..to`, oldest first.
pub fn accuracy_rows(
    txn: &redb::ReadTransaction,
    dest: &str,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Accuracy)>, redb::Error> {
    let t = match txn.open_table(ACCURACY) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in t.range((dest, from)..(dest, to))? {
        let (k, v) = row?;
        if let Some(a) = Accuracy::decode(v.value()) {
            out.push((k.value().1, a));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_rows_round_trip_and_judge() {
        let mut a = Accuracy {
            routed: 10,
            delivered: 6,
            recovered: 1,
            ..Default::default()
        };
        a.dead_lettered.insert("rejected".into(), 3);
        assert_eq!(Accuracy::decode(&a.encode()), Some(a.clone()));
        assert_eq!(a.pending(), 1);
        assert_eq!(a.share_delivered(), Some(0.7));
        assert_eq!(Accuracy::default().share_delivered(), None);
        assert_eq!(Accuracy::decode(&[9, 1, 2]), None);
    }
}
