//! Trimming a workspace's event log: what housekeeping found every destination past
//! (`DeliveryOp::TrimLog`) is deleted a slice per commit, in proportion to what the
//! commit appends, so a large trim never stalls the commits that answer requests and
//! trimming still keeps pace with any rate of ingest.

use std::collections::HashMap;

use redb::{ReadableTable, Table};

use super::log::{LogKey, chunk_len};

/// What one commit may delete of the logs being trimmed: events (the pages read and
/// freed grow with them) and chunks (a B-tree delete each, whatever its size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    events: u64,
    chunks: usize,
}

impl Budget {
    /// A commit of its own (nothing else waited) trims the most. One that appends
    /// trims twice what it appends (at least one chunk): every event is trimmed once,
    /// so trimming keeps up with any rate of ingest, and no commit that answers
    /// requests carries a large delete (2,000 chunks per commit, as before, were up to
    /// 2 M events — a commit of seconds while a minute of a busy log was trimmed — and
    /// a floor of thousands of events made every small single-event commit read
    /// megabytes). A commit of delivery work alone trims a fixed slice, which keeps
    /// pace with delivery's cursors.
    pub fn for_commit(events: usize, chunks: usize, alone: bool) -> Self {
        const MOST: Budget = Budget {
            events: 65_536,
            chunks: 1_024,
        };
        if alone {
            MOST
        } else if events == 0 {
            Budget {
                events: 8_192,
                chunks: 256,
            }
        } else {
            Budget {
                events: (events as u64).saturating_mul(2).min(MOST.events),
                chunks: chunks.saturating_mul(2).min(MOST.chunks),
            }
        }
    }

    fn spent(&self) -> bool {
        self.events == 0 || self.chunks == 0
    }

    fn take(&mut self, events: u64) {
        self.events = self.events.saturating_sub(events.max(1));
        self.chunks = self.chunks.saturating_sub(1);
    }
}

/// Deletes what `budget` allows of the logs being trimmed: chunks wholly below each
/// workspace's goal, oldest first, in one pass over the range (each chunk's page read
/// once). The last chunk of a workspace always stays: the log's head (the next
/// sequence number) is read from it at start, and must never go back.
pub fn slice(
    events: &mut Table<LogKey, &'static [u8]>,
    trims: &mut HashMap<String, u64>,
    mut budget: Budget,
) -> Result<(), redb::Error> {
    let mut done = Vec::new();
    for (ws, below) in trims.iter() {
        if budget.spent() {
            break;
        }
        let ws = ws.as_str();
        let below = *below;
        let last = events
            .range((ws, 0u64)..=(ws, u64::MAX))?
            .next_back()
            .transpose()?
            .map(|(k, _)| k.value().1);
        let mut finished = true;
        let mut doomed = events.extract_from_if((ws, 0u64)..(ws, below), |(_, first), chunk| {
            Some(first) != last && chunk_len(chunk).is_ok_and(|n| first + n <= below)
        })?;
        loop {
            if budget.spent() {
                finished = false;
                break;
            }
            let Some(row) = doomed.next() else {
                break;
            };
            let (_, chunk) = row?;
            budget.take(chunk_len(chunk.value()).unwrap_or(1));
        }
        drop(doomed);
        if finished {
            done.push(ws.to_string());
        }
    }
    for ws in done {
        trims.remove(&ws);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EVENTS;
    use crate::store::log::encode_chunk;

    /// A log of `sizes` chunks for workspace `a` (first sequence 1) and one chunk of
    /// workspace `b`; returns the chunks' first sequences.
    fn log(db: &redb::Database, sizes: &[usize]) -> Vec<u64> {
        let w = db.begin_write().unwrap();
        let mut firsts = Vec::new();
        {
            let mut t = w.open_table(EVENTS).unwrap();
            let mut seq = 1u64;
            for &n in sizes {
                let evs = vec![b"e".to_vec(); n];
                t.insert(
                    ("a", seq),
                    encode_chunk(evs.iter().map(Vec::as_slice)).as_slice(),
                )
                .unwrap();
                firsts.push(seq);
                seq += n as u64;
            }
            t.insert(("b", 1), encode_chunk([&b"x"[..]].into_iter()).as_slice())
                .unwrap();
        }
        w.commit().unwrap();
        firsts
    }

    /// One commit's slice; returns the first sequences of `a` left.
    fn trim_once(db: &redb::Database, trims: &mut HashMap<String, u64>, b: Budget) -> Vec<u64> {
        let w = db.begin_write().unwrap();
        let left = {
            let mut t = w.open_table(EVENTS).unwrap();
            slice(&mut t, trims, b).unwrap();
            let left = t
                .range(("a", 0u64)..=("a", u64::MAX))
                .unwrap()
                .map(|r| r.unwrap().0.value().1)
                .collect();
            assert_eq!(
                t.get(("b", 1)).unwrap().map(|_| ()),
                Some(()),
                "b untouched"
            );
            left
        };
        w.commit().unwrap();
        left
    }

    fn db() -> (tempfile::TempDir, redb::Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        (dir, db)
    }

    #[test]
    fn only_whole_chunks_below_the_goal_go_and_never_the_last() {
        let (_d, db) = db();
        // a: 1..=3, 4, 5..=14, 15..=16 (the last).
        let firsts = log(&db, &[3, 1, 10, 2]);
        assert_eq!(firsts, vec![1, 4, 5, 15]);
        let all = Budget::for_commit(0, 0, true);
        // 5..=14 straddles 10: it stays, and the trim is done.
        let mut trims = HashMap::from([("a".to_string(), 10)]);
        assert_eq!(trim_once(&db, &mut trims, all), vec![5, 15]);
        assert!(trims.is_empty(), "a finished trim is forgotten");
        // Past the head: everything but the last chunk.
        let mut trims = HashMap::from([("a".to_string(), 100)]);
        assert_eq!(trim_once(&db, &mut trims, all), vec![15]);
        assert!(trims.is_empty());
        // Ending exactly at the goal: 5..=14 goes below 15.
        let (_d, db) = self::db();
        log(&db, &[3, 1, 10, 2]);
        let mut trims = HashMap::from([("a".to_string(), 15)]);
        assert_eq!(trim_once(&db, &mut trims, all), vec![15]);
    }

    /// A commit that answers requests deletes in proportion to what it appends: a
    /// minute of a busy log (here 300 chunks of 1,000 events) is trimmed over many
    /// commits, oldest first, and the trim is remembered until done. (The slice of
    /// 2,000 chunks this replaced deleted all 300 — 300,000 events — in one commit.)
    #[test]
    fn a_large_trim_is_spread_over_commits_in_proportion_to_their_ingest() {
        let (_d, db) = db();
        let firsts = log(&db, &[1_000; 300]);
        let mut trims = HashMap::from([("a".to_string(), u64::MAX)]);
        // A commit appending one 100-event request: one chunk (the one that crosses
        // its 200 events).
        let left = trim_once(&db, &mut trims, Budget::for_commit(100, 1, false));
        assert_eq!(300 - left.len(), 1);
        assert_eq!(left[0], firsts[1], "oldest first");
        assert!(trims.contains_key("a"), "not done: remembered");
        // A commit of delivery work alone: 8,192 events' worth (9 chunks of 1,000).
        let left = trim_once(&db, &mut trims, Budget::for_commit(0, 0, false));
        assert_eq!(300 - left.len(), 10);
        // A commit appending 20,000 events may delete 40,000.
        let left2 = trim_once(&db, &mut trims, Budget::for_commit(20_000, 200, false));
        assert_eq!(left.len() - left2.len(), 40);
        // Commits of their own take the rest, 65 chunks (65,536 events) at a time.
        let mut commits = 0;
        let mut left = left2;
        while trims.contains_key("a") {
            let before = left.len();
            left = trim_once(&db, &mut trims, Budget::for_commit(0, 0, true));
            assert!(before - left.len() <= 66);
            commits += 1;
        }
        assert_eq!(left, vec![firsts[299]], "all but the last chunk");
        assert_eq!(commits, 4, "249 chunks, 66 a commit");
    }

    /// Single-event chunks are bounded by the chunk budget: a B-tree delete each.
    #[test]
    fn small_chunks_are_bounded_by_their_count() {
        let (_d, db) = db();
        log(&db, &vec![1; 3_000]);
        let mut trims = HashMap::from([("a".to_string(), u64::MAX)]);
        let left = trim_once(&db, &mut trims, Budget::for_commit(10, 10, false));
        assert_eq!(3_000 - left.len(), 20, "twice the chunks appended");
        let left = trim_once(&db, &mut trims, Budget::for_commit(0, 0, false));
        assert_eq!(3_000 - 20 - left.len(), 256);
        let left = trim_once(&db, &mut trims, Budget::for_commit(0, 0, true));
        assert_eq!(3_000 - 276 - left.len(), 1_024);
    }
}
